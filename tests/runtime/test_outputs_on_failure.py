"""What a run leaves behind: a replay that fails before its first estimate leaves no track files, one that fails
mid-way keeps every estimate written so far; GPS-only replay needs no map (``--camera-topic none`` without ``--map``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import Attitude
from runtime.bags.writer import BagWriter
from runtime.cli.onboard import main
from runtime.outputs import EstimateRecord, TrackWriter, read_track

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000


def _rec(i: int) -> EstimateRecord:
    return EstimateRecord(t_ns=T0 + i * 10 ** 8, lat=47.0 + i * 1e-5, lon=8.0, heading_deg=0.0, sigma_m=3.0,
                          cov_en=((9.0, 0.0), (0.0, 9.0)), status="GPS_ONLY", latency_ms={"total": 0.1})


def _outputs(path: Path) -> list[Path]:
    return [path, path.with_suffix(".geojson"), path.with_suffix(".gpx")]


# ============================================================================================== TrackWriter
def test_writer_failing_before_the_first_record_creates_no_file(tmp_path):
    path = tmp_path / "t.jsonl"
    with pytest.raises(RuntimeError, match="no GPS yet"):
        with TrackWriter(path, geojson=True, gpx=True):
            raise RuntimeError("no GPS yet")
    assert sorted(tmp_path.iterdir()) == []


def test_writer_failing_before_the_first_record_keeps_an_earlier_runs_files(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrackWriter(path, geojson=True, gpx=True) as w:
        w.write(_rec(0))
        w.write(_rec(1))
    before = {p.name: p.read_bytes() for p in _outputs(path)}
    with pytest.raises(RuntimeError):
        with TrackWriter(path, geojson=True, gpx=True, overwrite=True):
            raise RuntimeError("map failed")
    assert {p.name: p.read_bytes() for p in _outputs(path)} == before
    assert read_track(path) == [_rec(0), _rec(1)]


def test_writer_failing_mid_run_keeps_the_estimates_so_far(tmp_path):
    path = tmp_path / "t.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with TrackWriter(path, geojson=True, gpx=True) as w:
            for i in range(3):
                w.write(_rec(i))
            raise KeyboardInterrupt
    assert read_track(path) == [_rec(i) for i in range(3)]
    assert len(json.loads(path.with_suffix(".geojson").read_text())["features"]) == 1 + 3
    assert path.with_suffix(".gpx").read_text().count("<trkpt") == 3


def test_writer_ending_normally_without_an_estimate_writes_an_empty_track(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrackWriter(path, geojson=True, gpx=True) as w:
        assert not path.exists()  # created by the first record, or at a normal close
    assert w.count == 0 and read_track(path) == [] and path.read_text() == ""
    assert json.loads(path.with_suffix(".geojson").read_text()) == {"type": "FeatureCollection", "features": []}
    assert path.with_suffix(".gpx").read_text().count("<trkpt") == 0


def test_writer_refuses_at_open_what_it_could_not_write_later(tmp_path):
    from runtime.outputs import OutputError

    (tmp_path / "t.geojson").mkdir()
    with pytest.raises(OutputError, match=r"cannot write .*t\.geojson: it is a folder; choose a file path"):
        TrackWriter(tmp_path / "t.jsonl", geojson=True).open()
    (tmp_path / "u.gpx").write_text("old")
    with pytest.raises(OutputError, match=r"u\.gpx exists already; remove it, choose another output path or pass "
                                          r"--overwrite"):
        TrackWriter(tmp_path / "u.jsonl", gpx=True).open()
    assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "u.jsonl").exists()


# ============================================================================================== bags
def _camera_bag(path: Path, n: int = 20) -> Path:
    """Camera frames + CameraInfo + GPS + IMU, 10 Hz: what `--camera-topic none` must replay on GPS alone."""
    cam = CameraModel.from_fov(64, 48, 60.0)
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    q = Attitude(0.0, 0.0, 0.0).to_quaternion()
    with BagWriter(path) as bag:
        for k in range(n):
            t = T0 + k * 100_000_000
            bag.write_camera_info("/cam/camera_info", t, cam)
            bag.write_image("/cam/image", t, img)
            bag.write_navsatfix("/gps/fix", t + 1, 47.0 + k * 1e-5, 8.0, 500.0, cov_enu=2.0)
            bag.write_imu("/imu/data", t + 2, q, (0.0, 0.0, 0.0), (0.0, 0.0, 9.8))
    return path


def _late_gps_bag(path: Path, gps_after_s: float, n_gps: int) -> Path:
    """IMU at 50 Hz from the start, GPS at 10 Hz only from ``gps_after_s``: with --realtime the first estimate comes
    ``gps_after_s`` seconds into the run."""
    q = Attitude(0.0, 0.0, 0.0).to_quaternion()
    first_gps = T0 + int(gps_after_s * 1e9)
    with BagWriter(path) as bag:
        t_end = first_gps + n_gps * 100_000_000
        for t in range(T0, t_end, 20_000_000):
            bag.write_imu("/imu/data", t, q, (0.0, 0.0, 0.0), (0.0, 0.0, 9.8))
        for k in range(n_gps):
            bag.write_navsatfix("/gps/fix", first_gps + k * 100_000_000 + 1, 47.0 + k * 1e-6, 8.0, 500.0, cov_enu=2.0)
    return path


def test_gps_only_replay_of_a_camera_bag_needs_no_map(tmp_path, capsys):
    bag = _camera_bag(tmp_path / "cam.bag")
    out = tmp_path / "track.jsonl"
    assert main(["replay", str(bag), "--camera-topic", "none", "-o", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "notice: --camera-topic none: tracking on GPS alone (no visual fixes)" in cap.err
    assert "gsd" not in cap.err
    assert cap.out.startswith(f"20 estimates -> {out}") and "0 frames" in cap.out and "GPS alone" in cap.out
    recs = read_track(out)
    assert len(recs) == 20 and all(r.has_position for r in recs)
    assert all(abs(r.lat - 47.0) < 1e-3 and abs(r.lon - 8.0) < 1e-3 for r in recs)
    assert all(math.isfinite(r.sigma_m) for r in recs)
    assert out.with_suffix(".geojson").is_file() and out.with_suffix(".gpx").is_file()


def test_gps_only_replay_of_a_real_ros1_bag_without_map(shared_data, tmp_path, capsys):
    bag = shared_data("bags/husky_gps_imu_odom.bag")
    out = tmp_path / "husky.jsonl"
    assert main(["replay", str(bag), "-o", str(out), "--quiet"]) == 0
    recs = read_track(out)
    assert len(recs) == 989  # one estimate per /fix message
    lat = np.array([r.lat for r in recs])
    assert np.all(np.isfinite(lat)) and 42.0 < lat.min() < lat.max() < 42.6  # Cambridge, MA
    assert "no camera topic" in capsys.readouterr().err


def test_camera_bag_without_map_says_pass_map_and_leaves_no_file(tmp_path, capsys):
    bag = _camera_bag(tmp_path / "cam.bag", n=3)
    out = tmp_path / "track.jsonl"
    assert main(["replay", str(bag), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("error: the recording has camera frames (/cam/image): pass --map MAP (a map built with `skyfix "
                   "maps build`) to localize with them")
    assert not any(p.exists() for p in _outputs(out))


def test_a_recording_with_nothing_to_localize_with_is_a_typed_error_and_leaves_no_file(tmp_path, capsys):
    bag = tmp_path / "imu.bag"
    with BagWriter(bag) as w:
        for k in range(5):
            w.write_imu("/imu/data", T0 + k * 10 ** 7, (0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.8))
    out = tmp_path / "track.jsonl"
    assert main(["replay", str(bag), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("error: the recording has neither camera frames nor GPS fixes to localize with (topics: /imu/data "
                   "(sensor_msgs/msg/Imu)); see `runtime inspect BAG`, or name them with --camera-topic / --gps-topic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imu.bag"]


def test_the_real_bag_without_gps_or_camera_leaves_no_file(shared_data, tmp_path, capsys):
    bag = shared_data("bags/husky_imu_odom_no_gps.bag")
    out = tmp_path / "track.jsonl"
    assert main(["replay", str(bag), "-o", str(out), "--quiet"]) == 2
    assert "neither camera frames nor GPS fixes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _interrupted_replay(bag: Path, out: Path, *, wait_for_estimate: bool, delay_s: float = 0.0):
    """Run `runtime replay --realtime` in a process, interrupt it (SIGINT, as Ctrl-C) either once its first
    estimate is on disk or ``delay_s`` after its replay started; returns (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # SIGINT back to its default in the child: a test run started in the background of a non-interactive shell (CI
    # under nohup, `cmd &`) inherits SIGINT ignored, and Python then installs no Ctrl-C handler at all
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli.onboard", "replay", str(bag), "-o", str(out),
                             "--realtime", "--quiet"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in proc.stderr:  # "notice: ... GPS alone" comes right before the writer opens and the replay starts
            lines.append(line)
            if line.startswith("notice:"):
                break
        deadline = time.monotonic() + 60.0
        if wait_for_estimate:
            while not (out.exists() and out.read_text().count("\n") >= 1) and time.monotonic() < deadline:
                assert proc.poll() is None, "".join(lines)
                time.sleep(0.05)
        else:
            time.sleep(delay_s)
        assert proc.poll() is None, "the replay ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        return proc.wait(timeout=60), "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_replay_interrupted_before_its_first_estimate_leaves_no_file(tmp_path):
    bag = _late_gps_bag(tmp_path / "late.bag", gps_after_s=6.0, n_gps=3)
    out = tmp_path / "track.jsonl"
    code, err = _interrupted_replay(bag, out, wait_for_estimate=False, delay_s=1.0)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.bag"]


def test_a_replay_interrupted_mid_run_keeps_the_estimates_so_far(tmp_path):
    bag = _late_gps_bag(tmp_path / "long.bag", gps_after_s=0.5, n_gps=300)  # 30 s of GPS
    out = tmp_path / "track.jsonl"
    code, err = _interrupted_replay(bag, out, wait_for_estimate=True)
    assert code == 130 and "interrupted" in err
    recs = read_track(out)
    assert 1 <= len(recs) < 300
    assert [r.t_ns for r in recs] == sorted(r.t_ns for r in recs)
    gj = json.loads(out.with_suffix(".geojson").read_text())
    assert sum(f["properties"]["kind"] == "estimate" for f in gj["features"]) == len(recs)
    assert out.with_suffix(".gpx").read_text().count("<trkpt") == len(recs)
