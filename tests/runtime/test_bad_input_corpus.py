"""The bad-input corpus (issue 12): every kind of bad input a user can hand SkyFix -- bags, NMEA, maps, GeoTIFFs,
camera and config files -- run through the command a user would type, each with its stated outcome:

* ``skip``: one bad message inside a good recording: the run ends normally (exit 0), every good frame still gives
  its estimate (nothing before or after is lost) and the skip is said with topic, time and reason;
* ``error``: an input that is unusable as a whole: exit 2 with one ``error:`` line saying what was expected, what
  came and how to fix it, no traceback, and no track file left behind.

The cases are data (``CASES``): adding one is a builder and its expectation. The recording is a real simulated
flight (the project's simulator and bag writer over a small synthetic map, :mod:`tests.runtime.sim_flight`).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from runtime.bags import BagWriter
from runtime.cli.onboard import main as runtime_main
from runtime.cli.skyfix import main as skyfix_main
from runtime.events import Frame, GpsFix, ImuSample

from .sim_flight import CAMERA_YAML, flight  # noqa: F401 (the fixture)


@dataclass(frozen=True)
class Case:
    """``build(flight, tmp) -> (cli, argv, n_bad_frames)``: ``cli`` is "runtime" or "skyfix"; ``n_bad_frames`` the
    frames the bad input removes (skip cases). ``outcome``: "skip" or "error"; ``says``: substrings of stderr."""

    name: str
    outcome: str
    build: Callable
    says: tuple[str, ...]


# ------------------------------------------------------------------------------------------------ builders
def _frames(events):
    return [e for e in events if isinstance(e, Frame)]


def _bag_with(tmp, events, *, extra=(), replace=None, after=None, drop_imu_at=None):
    """The flight's events written again, ``extra`` messages (callables taking the writer) inserted after the event
    ``after`` (default: the 15th frame); ``replace`` maps an event to the events written in its place."""
    frames = _frames(events)
    anchor = after if after is not None else frames[15]
    path = tmp / "flight.bag"
    with BagWriter(path) as w:
        for ev in events:
            out = (replace or {}).get(id(ev), [ev])
            for e in out:
                w.write_event(e)
            if ev is anchor:
                for write in extra:
                    write(w)
    return path


def _replay(flight, bag, *more):
    map_dir, _, cam, _, root = flight
    return ["replay", str(bag), "--map", str(map_dir), "--camera", str(cam), "--quiet", "--no-geojson", "--no-gpx",
            *more]


def corrupt_jpeg(flight, tmp):
    events = flight[3]
    f = _frames(events)[15]
    bad = Frame(f.t_ns + 7, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, None, f.topic, f.frame_id)
    return "runtime", _replay(flight, _bag_with(tmp, events, replace={id(f): [f, bad]})), 0


def empty_jpeg(flight, tmp):
    events = flight[3]
    f = _frames(events)[15]
    t = f.t_ns + 7
    extra = [lambda w: w.write_compressed_image(f.topic, t, b"", fmt="jpeg")]
    return "runtime", _replay(flight, _bag_with(tmp, events, extra=extra)), 0


def nan_latitude(flight, tmp):
    events = flight[3]
    g = [e for e in events if isinstance(e, GpsFix)][30]
    extra = [lambda w: w.write_navsatfix(g.topic, g.t_ns + 3, math.nan, g.lon, g.alt, cov_enu=2.0)]
    return "runtime", _replay(flight, _bag_with(tmp, events, extra=extra, after=g)), 0


def nan_imu_acceleration(flight, tmp):
    events = flight[3]
    s = [e for e in events if isinstance(e, ImuSample)][100]
    extra = [lambda w: w.write_imu(s.topic, s.t_ns + 3, s.orientation, s.angular_velocity,
                                   (math.nan, 0.0, 9.81))]
    return "runtime", _replay(flight, _bag_with(tmp, events, extra=extra, after=s)), 0


def non_unit_quaternion(flight, tmp):
    events = flight[3]
    s = [e for e in events if isinstance(e, ImuSample)][100]
    q = tuple(3.0 * v for v in s.orientation)
    extra = [lambda w: w.write_imu(s.topic, s.t_ns + 3, q, s.angular_velocity, s.linear_acceleration)]
    return "runtime", _replay(flight, _bag_with(tmp, events, extra=extra, after=s)), 0


def duplicated_messages(flight, tmp):
    events = flight[3]
    f = _frames(events)[15]
    g = [e for e in events if isinstance(e, GpsFix)][20]
    return "runtime", _replay(flight, _bag_with(tmp, events, replace={id(f): [f, f], id(g): [g, g]})), 0


def gps_clock_back(flight, tmp):
    """One GPS fix whose header stamp is 5 s behind, recorded in place."""
    events = flight[3]
    g = [e for e in events if isinstance(e, GpsFix)][40]
    back = GpsFix(g.t_ns - 5_000_000_000, g.lat, g.lon, g.alt, g.cov_enu, topic=g.topic)

    def jumped(w):
        record = w.write_message
        w.write_message = lambda topic, t, msg: record(topic, g.t_ns + 3, msg)
        try:
            w.write_event(back)
        finally:
            w.write_message = record

    return "runtime", _replay(flight, _bag_with(tmp, events, extra=[jumped], after=g)), 0


def bag_cut_short(flight, tmp):
    data = flight[1].read_bytes()
    path = tmp / "cut.bag"
    path.write_bytes(data[: len(data) * 6 // 10])
    return "runtime", _replay(flight, path), None


def not_a_bag(flight, tmp):
    path = tmp / "noise.bag"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return "runtime", _replay(flight, path), None


def empty_bag(flight, tmp):
    path = tmp / "empty.bag"
    path.write_bytes(b"")
    return "runtime", _replay(flight, path), None


def first_fix_off_the_map(flight, tmp):
    """Every GPS fix before the 10th frame moved 3 km north (a GPS that starts elsewhere): the run goes on, one
    estimate per frame, on GPS alone while the belief is off the map (coming back over it:
    ``test_localizer_bad_input``)."""
    events = flight[3]
    t_cut = _frames(events)[10].t_ns
    repl = {id(g): [GpsFix(g.t_ns, g.lat + 0.027, g.lon, g.alt, g.cov_enu, topic=g.topic)]
            for g in events if isinstance(g, GpsFix) and g.t_ns < t_cut}
    return "runtime", _replay(flight, _bag_with(tmp, events, replace=repl)), 0


def camera_of_another_aspect(flight, tmp):
    cam = tmp / "cam.yaml"
    cam.write_text(CAMERA_YAML.replace("image_width: 160", "image_width: 120"))
    argv = _replay(flight, flight[1])
    argv[argv.index("--camera") + 1] = str(cam)
    return "runtime", argv, len(_frames(flight[3]))


def _camera_file(text):
    def build(flight, tmp):
        cam = tmp / "cam.yaml"
        cam.write_text(text)
        argv = _replay(flight, flight[1])
        argv[argv.index("--camera") + 1] = str(cam)
        return "runtime", argv, None
    return build


def _config_file(text):
    def build(flight, tmp):
        cfg = tmp / "cfg.yaml"
        cfg.write_text(text)
        return "runtime", _replay(flight, flight[1], "--config", str(cfg)), None
    return build


def altered_map(flight, tmp):
    src = flight[0]
    dst = tmp / "map"
    shutil.copytree(src, dst)
    emb = dst / "embeddings.f16.npy"
    data = bytearray(emb.read_bytes())
    data[-3] ^= 0xFF
    emb.write_bytes(bytes(data))
    argv = _replay(flight, flight[1])
    argv[argv.index("--map") + 1] = str(dst)
    return "runtime", argv, None


def geotiff_cut_short(flight, tmp):
    data = (flight[4] / "o.tif").read_bytes()
    path = tmp / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    return "skyfix", ["maps", "build", str(path), "-o", str(tmp / "m"), "--model", "classical"], None


def not_a_geotiff(flight, tmp):
    path = tmp / "notes.tif"
    path.write_text("this is not an image\n")
    return "skyfix", ["maps", "build", str(path), "-o", str(tmp / "m"), "--model", "classical"], None


def map_output_exists(flight, tmp):
    out = tmp / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return "skyfix", ["maps", "build", str(flight[4] / "o.tif"), "-o", str(out), "--model", "classical"], None


def mbtiles_of_vector_tiles(flight, tmp):
    path = tmp / "v.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "v"), ("format", "pbf")])
    db.close()
    return "skyfix", ["maps", "build", str(path), "--bbox", "8.0,47.0,8.01,47.01", "-o", str(tmp / "m"),
                      "--model", "classical"], None


CASES = [
    # bags: one bad message, the run goes on
    Case("bag/corrupt-jpeg", "skip", corrupt_jpeg, ("JPEG cut short or corrupt",)),
    Case("bag/zero-length-jpeg", "skip", empty_jpeg, ("empty",)),
    Case("bag/nan-latitude", "skip", nan_latitude, ("latitude nan",)),
    Case("bag/nan-imu-acceleration", "skip", nan_imu_acceleration, ("linear_acceleration must be 3 finite numbers",)),
    Case("bag/non-unit-quaternion", "skip", non_unit_quaternion,
         ("orientation quaternion of norm 3 is no rotation", "orientation dropped, rates and acceleration kept")),
    Case("bag/duplicated-messages", "skip", duplicated_messages, ("the same message again",)),
    Case("bag/gps-clock-back", "skip", gps_clock_back, ("the clock went back",)),
    Case("bag/first-fix-off-the-map", "skip", first_fix_off_the_map, ("outside the map: tracking on GPS alone",)),
    Case("camera/another-aspect-ratio", "skip", camera_of_another_aspect,
         ("is 120x120 px but the frames are 160x120 (another aspect ratio)", "--camera CAMERA.yaml")),
    # bags unusable as a whole
    Case("bag/cut-short", "error", bag_cut_short, ("cut.bag",)),
    Case("bag/not-a-bag", "error", not_a_bag, ("noise.bag",)),
    Case("bag/empty-file", "error", empty_bag, ("empty.bag",)),
    # camera files
    Case("camera/no-intrinsics", "error", _camera_file("image_width: 160\nimage_height: 120\n"), ("cam.yaml",)),
    Case("camera/python-tag", "error", _camera_file("!!python/object/apply:os.system ['echo pwned']\n"),
         ("cam.yaml",)),
    Case("camera/not-yaml", "error", _camera_file("\x00\x01\x02 {{{ :::\n"), ("cam.yaml",)),
    Case("camera/kalibr-omni", "error", _camera_file(
        "cam0:\n  camera_model: omni\n  intrinsics: [0.8, 400, 400, 320, 240]\n  distortion_model: radtan\n"
        "  distortion_coeffs: [0, 0, 0, 0]\n  resolution: [640, 480]\n"), ("omni",)),
    # config files
    Case("config/huge-k", "error", _config_file("k: 1000000000\n"),
         ("localizer k = 1000000000 is out of range: allowed 1 to 1000",)),
    Case("config/huge-particles", "error", _config_file("tracker:\n  n_particles: 1000000000\n"),
         ("n_particles = 1000000000 is out of range",)),
    Case("config/nan", "error", _config_file("align_min_score: .nan\n"), ("align_min_score",)),
    Case("config/unknown-key", "error", _config_file("kk: 3\n"), ("kk",)),
    Case("config/wrong-type", "error", _config_file("k: many\n"), ("k",)),
    Case("config/python-tag", "error", _config_file("k: !!python/object/apply:os.system ['echo pwned']\n"),
         ("cfg.yaml",)),
    Case("config/not-a-mapping", "error", _config_file("- 1\n- 2\n"), ("cfg.yaml",)),
    # maps and GeoTIFFs
    Case("map/altered-embeddings", "error", altered_map, ("embeddings.f16.npy",)),
    Case("geotiff/cut-short", "error", geotiff_cut_short, ("cut.tif",)),
    Case("geotiff/not-an-image", "error", not_a_geotiff, ("notes.tif",)),
    Case("map/output-exists", "error", map_output_exists, ("exists and is not a map package; refusing to replace it",)),
    Case("mbtiles/vector-tiles", "error", mbtiles_of_vector_tiles, ("pbf",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, flight, tmp_path, capsys):
    cli, argv, n_bad = case.build(flight, tmp_path)
    track = tmp_path / "track.jsonl"
    if cli == "runtime":
        argv = [*argv, "-o", str(track)]
    main = runtime_main if cli == "runtime" else skyfix_main
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in case.says:
        assert text in err, f"{case.name}: {text!r} not said:\n{err}"
    if case.outcome == "skip":
        assert rc == 0, err
        recs = [json.loads(x) for x in track.read_text().splitlines()]
        n_frames = len(_frames(flight[3]))
        if n_bad == n_frames:  # every frame refused (camera file): the run still tracks on GPS, one estimate each
            assert len(recs) == 0 or all(r["lat"] is not None for r in recs)
        else:
            assert len(recs) == n_frames - n_bad, f"{case.name}: {len(recs)} estimates for {n_frames} good frames"
    else:
        assert rc == 2, f"{case.name}: exit {rc}:\n{err}"
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, err
        assert not track.exists() and not track.with_suffix(".geojson").exists()


HOSTILE_NMEA = [
    b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,1e308,545.4,M,46.9,M,,*%02X",
    b"$GPGGA,123519,nan,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*%02X",
    b"$GPGGA,123519,4807.038,N,inf,E,1,08,0.9,545.4,M,46.9,M,,*%02X",
    b"$GPRMC,123519,A,4807.038,N,01131.000,E,1e400,084.4,230394,003.1,W*%02X",
    b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,99999999999999999999999,M,46.9,M,,*%02X",
    b"$GPGGA," + b"9" * 10_000 + b"*%02X",
    b"$GPGGA,,,,,,,,,,,,,,*%02X",
    b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*00",  # bad checksum
    bytes(range(256)),
    "$GPGGA,123519,48\u00b007.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*00".encode(),
]


def _checksummed(line: bytes) -> bytes:
    if b"%02X" not in line:
        return line
    body = line[1:line.index(b"*")]
    c = 0
    for b in body:
        c ^= b
    return line.replace(b"%02X", b"%02X" % c)


def test_bad_nmea_is_counted_never_raised_and_the_good_fix_after_it_comes_through():
    """Each hostile sentence (checksums valid where it has one), then one good GGA: the parser counts every bad one
    with a reason, raises nothing, and the good fix after them is read."""
    from runtime.nmea import NmeaParser

    parser = NmeaParser(time_source="host")
    lines = [_checksummed(x) for x in HOSTILE_NMEA]
    good = _checksummed(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*%02X")
    fixes = parser.feed(b"\r\n".join([*lines, good]) + b"\r\n", recv_ns=1_700_000_000_000_000_000)
    assert len(fixes) == 1 and fixes[0].lat == pytest.approx(48.1173) and fixes[0].lon == pytest.approx(11.516667)
    skips = parser.counters.skips()
    assert sum(v for k, v in skips.items()) >= len(HOSTILE_NMEA) - 1, skips
    assert parser.counters.internal_errors == 0
