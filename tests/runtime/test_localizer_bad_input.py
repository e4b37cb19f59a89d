"""Issue 12, "never die on one bad input", at the loop: a real simulated flight (the project's simulator and bag
writer over a small synthetic map) replayed with one bad message at a time through `runtime replay`: a corrupt and
a zero-length JPEG frame, a NaN latitude, a GPS clock jumping back, duplicated messages; a first GPS fix 2 km off
the map; a camera file whose size differs from the frames; absurd numeric settings. Each run goes on, keeps what
came before and after, counts the skip and says so (topic, time, reason)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields

import numpy as np
import pytest

from runtime.bags import BagWriter
from runtime.cli.onboard import main as runtime_main
from runtime.events import CameraInfoEvent, Frame, GpsFix, ImuSample
from runtime.localizer import LOCALIZER_RANGES, Localizer, LocalizerConfig, LocalizerError
from runtime.feed import run_events
from runtime.sources.sanitize import EventSanitizer
from runtime.tracking import TrackerConfig
from runtime.tracking.config import MAXIMA
from runtime.tracking.errors import TrackingError

from .sim_flight import CAMERA_YAML, flight  # noqa: F401 (the fixture)


def _write(path, events) -> None:
    with BagWriter(path) as w:
        for ev in events:
            w.write_event(ev)


def _replay(bag, map_dir, out, capsys, *extra):
    rc = runtime_main(["replay", str(bag), "--map", str(map_dir), "-o", str(out), "--quiet", "--no-geojson",
                       "--no-gpx", *extra])
    cap = capsys.readouterr()
    recs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return rc, recs, cap


def _frames(events):
    return [e for e in events if isinstance(e, Frame)]


def test_the_clean_flight_gives_one_estimate_per_frame(flight, tmp_path, capsys):
    map_dir, bag, cam, events, root = flight
    rc, recs, cap = _replay(bag, map_dir, tmp_path / "t.jsonl", capsys)
    assert rc == 0, cap.err
    assert len(recs) == len(_frames(events)) > 40
    assert "input checks" not in cap.err  # nothing skipped, nothing said


def test_bad_messages_are_skipped_and_the_replay_goes_on(flight, tmp_path, capsys):
    """One corrupt JPEG frame, a duplicated frame and GPS fix, a NaN latitude, and five GPS fixes whose header clock
    jumped back 5 s (recorded in place, stamped 5 s early): the replay runs to the end with one estimate per good
    frame, and each skip is counted and said."""
    map_dir, bag, cam, events, root = flight
    frames = _frames(events)
    gps = [e for e in events if isinstance(e, GpsFix)]
    f_dup, g_dup = frames[10], gps[20]
    t_bad_jpeg = frames[20].t_ns + 50_000_000
    t_nan = gps[30].t_ns + 10_000_000
    jumped = {id(g) for g in gps[40:45]}
    bad = []
    for ev in events:
        bad.append(ev)
        if ev is f_dup or ev is g_dup:
            bad.append(ev)  # the same message twice
        if ev is frames[20]:
            bad.append(Frame(t_bad_jpeg, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, None, ev.topic, ev.frame_id))
        if ev is gps[30]:
            bad.append(GpsFix(t_nan, math.nan, ev.lon, ev.alt, 2.0, topic=ev.topic))
    path = tmp_path / "bad.bag"
    with BagWriter(path) as w:
        record = w.write_message
        for ev in bad:
            if id(ev) in jumped:  # header stamp 5 s back, recorded at its own time
                w.write_message = lambda topic, t, msg, _t=ev.t_ns: record(topic, _t, msg)
                w.write_event(GpsFix(ev.t_ns - 5_000_000_000, ev.lat, ev.lon, ev.alt, ev.cov_enu, topic=ev.topic))
                w.write_message = record
            else:
                w.write_event(ev)
    rc, recs, cap = _replay(path, map_dir, tmp_path / "t.jsonl", capsys)
    assert rc == 0, cap.err
    # every good frame (and nothing else) gave its estimate: before and after the bad messages
    assert len(recs) == len(frames)
    assert [r["t_ns"] for r in recs] == [f.t_ns for f in frames]
    err = cap.err
    topic_cam, topic_gps = frames[0].topic, gps[0].topic
    # the corrupt JPEG: skipped by the bag reader (it checks the JPEG's structure) or, where one gets through, by
    # the loop's decode; either way named with topic and time
    note = [ln for ln in err.splitlines() if topic_cam in ln and str(t_bad_jpeg) in ln]
    assert note and ("corrupt" in note[0] or "cannot decode" in note[0]), err
    assert f"GPS {topic_gps} at t=" in err and f"(t_ns {t_nan}): latitude nan is not a WGS84 latitude" in err
    assert f"(t_ns {f_dup.t_ns}): the same message again (same topic, time and content)" in err
    assert f"(t_ns {g_dup.t_ns}): the same message again" in err
    # the reader releases the jumped fixes at once and the topic's own later ones after its reorder window, so the
    # first jumped fix is seen 4.4 s (not 5 s) behind the newest fix before it; one jump, five fixes skipped
    t_jump = gps[40].t_ns - 5_000_000_000
    assert re.search(rf"GPS {topic_gps} at t=3.000 s \(t_ns {t_jump}\): the clock went back 4.400 s \(from t=7.400 s "
                     r"\(t_ns \d+\)\); its events are skipped until its time passes t=7.400 s", err), err
    assert "input checks: 8 events skipped (2 duplicate, 5 clock back, 1 gps position); 1 backward clock jump, " \
           f"largest 4.400 s on GPS {topic_gps} at t=7.400 s" in err and "(5 events skipped in it)" in err


def test_a_corrupt_jpeg_that_reaches_the_loop_is_skipped(flight):
    map_dir, bag, cam, events, root = flight
    from maps.package import MapPackage
    from runtime.encoder import load_encoder

    loop = Localizer(MapPackage.load(map_dir), load_encoder("classical"))
    frames = _frames(events)
    evs = []
    for ev in events[: events.index(frames[8]) + 1]:
        evs.append(ev)
        if ev is frames[4]:
            evs.append(Frame(ev.t_ns + 1, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, None, ev.topic))
    recs = run_events(loop, EventSanitizer().filter(evs))
    assert len(recs) == 9 and loop.counts["frames_undecodable"] == 1
    assert any(f"camera {frames[4].topic} at t_ns {frames[4].t_ns + 1}: cannot decode a 1028-byte compressed image"
               in n for n in loop.notes)


def test_a_zero_length_image_is_skipped_by_the_loop(flight):
    """A Frame of 0 bytes (what a bag's empty CompressedImage gives once the reader lets it through)."""
    map_dir, bag, cam, events, root = flight
    from maps.package import MapPackage
    from runtime.encoder import load_encoder

    enc = load_encoder("classical")
    loop = Localizer(MapPackage.load(map_dir), enc)
    frames = _frames(events)
    evs = []
    for ev in events[: events.index(frames[8]) + 1]:
        evs.append(ev)
        if ev is frames[4]:
            evs.append(Frame(ev.t_ns + 1, b"", None, ev.topic))
    recs = run_events(loop, EventSanitizer().filter(evs))
    assert len(recs) == 9 and loop.counts["frames_undecodable"] == 1
    assert any(f"at t_ns {frames[4].t_ns + 1}: compressed image is empty (0 bytes); frame skipped" in n
               for n in loop.notes)


def test_a_first_gps_fix_two_km_off_the_map_tracks_on_gps_alone_then_uses_the_frames(flight, tmp_path, capsys):
    """The vehicle's GPS starts 2 km away and flies onto the map along the flight's first heading: every frame
    gives an estimate (from GPS while off the map, said once), and once over the map the frames fix it again."""
    map_dir, bag, cam, events, root = flight
    gps = [e for e in events if isinstance(e, GpsFix)]
    frames = _frames(events)
    # the flight's start and velocity from its first second of fixes
    xy = np.array([FRAME_OF(map_dir).to_local(g.lat, g.lon) for g in gps[:6]], float)
    v = (xy[-1] - xy[0]) / ((gps[5].t_ns - gps[0].t_ns) / 1e9)
    speed = float(np.hypot(*v))
    approach_s = 2000.0 / speed
    t0 = gps[0].t_ns
    lead = []
    frame_tpl = frames[0]
    n_lead = int(approach_s * 5)
    for i in range(n_lead, 0, -1):  # 5 Hz fixes on the line towards the flight's first fix
        t = t0 - i * 200_000_000
        x, y = xy[0] - v * i * 0.2
        lat, lon = FRAME_OF(map_dir).to_wgs84(x, y)
        lead.append(GpsFix(t, float(lat), float(lon), gps[0].alt, 2.0, topic=gps[0].topic,
                           velocity_enu=(float(v[0]), float(v[1]), 0.0), velocity_sigma_mps=0.3))
        if i % 5 == 0:  # a frame a second (what the camera sees there is not on the map)
            lead.append(Frame(t + 100_000_000, frame_tpl.encoded, frame_tpl.camera, frame_tpl.topic))
    path = tmp_path / "far.bag"
    info = [e for e in events if isinstance(e, CameraInfoEvent)][:1]
    _write(path, [CameraInfoEvent(lead[0].t_ns, info[0].camera, info[0].topic)] + lead + events)
    rc, recs, cap = _replay(path, map_dir, tmp_path / "t.jsonl", capsys)
    assert rc == 0, cap.err
    n_lead_frames = sum(isinstance(e, Frame) for e in lead)
    assert len(recs) == n_lead_frames + len(frames)
    assert "outside the map: tracking on GPS alone (the belief is" in cap.err
    assert "over the map again: frames are used" in cap.err
    assert "frames with the belief outside the map (GPS alone)" in cap.err
    first = recs[0]
    x, y = FRAME_OF(map_dir).to_local(first["lat"], first["lon"])
    assert math.hypot(x - (xy[0][0] - v[0] * approach_s), y - (xy[0][1] - v[1] * approach_s)) < 30.0
    assert "frames_used" not in cap.err
    m = [ln for ln in cap.out.splitlines() if "estimates ->" in ln][0]
    used = int(m.split(" with a visual fix")[0].rsplit(", ", 1)[1])
    assert used >= 0.5 * len(frames)


def FRAME_OF(map_dir):
    from maps.package import MapPackage

    return MapPackage.load(map_dir).frame


def test_a_camera_file_of_another_size_is_said_not_misleading(flight, tmp_path, capsys):
    map_dir, bag, cam, events, root = flight
    wrong = tmp_path / "square.yaml"
    wrong.write_text(CAMERA_YAML.replace("image_width: 160", "image_width: 120"))
    rc, recs, cap = _replay(bag, map_dir, tmp_path / "t.jsonl", capsys, "--camera", str(wrong))
    assert rc == 0 and recs == []
    n = len(_frames(events))
    assert "the camera file/CameraInfo is 120x120 px but the frames are 160x120 (another aspect ratio): frames " \
           "skipped; pass the camera file calibrated for this camera at this resolution (--camera CAMERA.yaml)" in cap.err
    assert f"loop: {n} frames of another size than the camera model" in cap.err
    # the same lens at twice the resolution: scaled, and said
    double = tmp_path / "double.yaml"
    double.write_text(CAMERA_YAML.replace("160", "320").replace("120", "240")
                      .replace("[ 240.0, 0., 79.5, 0., 240.0, 59.5", "[ 240.0, 0., 159.5, 0., 240.0, 119.5"))
    rc, recs, cap = _replay(bag, map_dir, tmp_path / "t2.jsonl", capsys, "--camera", str(double))
    assert rc == 0 and len(recs) == n
    assert "the camera model is 320x240 px, the frames 160x120: intrinsics scaled by 0.5" in cap.err


# ---------------------------------------------------------------------------------------------- bounded settings
ABSURD = (1e9, -1, math.nan, math.inf, -math.inf, 10**9)


@pytest.mark.parametrize("key", sorted(LOCALIZER_RANGES))
def test_every_numeric_localizer_setting_is_bounded(key):
    lo, hi, _ = LOCALIZER_RANGES[key]
    for v in ABSURD:
        if isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi:
            continue  # -1 is a valid NCC and IMU offset
        with pytest.raises(LocalizerError) as e:
            LocalizerConfig.from_dict({key: v})
        assert f"localizer {key}" in str(e.value) and repr(v) in str(e.value)


@pytest.mark.parametrize("key", [f.name for f in fields(TrackerConfig)])
def test_every_numeric_tracker_setting_is_bounded(key):
    assert key in MAXIMA
    for v in ABSURD:
        if key == "seed" and v == 10**9:
            continue  # a valid seed (0 .. 2**32 - 1)
        with pytest.raises(TrackingError) as e:
            TrackerConfig.from_dict({key: v})
        assert f"tracker config {key}" in str(e.value)


def test_the_defaults_are_in_range():
    LocalizerConfig()
    c = TrackerConfig()
    assert all(getattr(c, k) <= MAXIMA[k] for k in MAXIMA)


def test_config_with_a_huge_k_is_refused_naming_the_key(flight, tmp_path, capsys):
    map_dir, bag, cam, events, root = flight
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("k: 1000000000\n")
    assert runtime_main(["replay", str(bag), "--map", str(map_dir), "-o", str(tmp_path / "t.jsonl"), "--config",
                         str(cfg)]) == 2
    assert "localizer k = 1000000000 is out of range: allowed 1 to 1000 candidates" in capsys.readouterr().err
    cfg.write_text("tracker: {n_particles: 1000000000}\n")
    assert runtime_main(["replay", str(bag), "--map", str(map_dir), "-o", str(tmp_path / "t.jsonl"), "--config",
                         str(cfg)]) == 2
    assert "tracker config n_particles = 1000000000 is out of range: allowed 10 to 100000" in capsys.readouterr().err


def test_imu_samples_pass_unchanged(flight):
    map_dir, bag, cam, events, root = flight
    s = EventSanitizer()
    out = list(s.filter(events))
    assert len(out) == len(events) and all(a is b for a, b in zip(out, events))
    assert any(isinstance(e, ImuSample) for e in events) and s.skipped == 0
