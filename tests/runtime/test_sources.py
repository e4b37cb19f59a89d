"""runtime.sources: serial GPS over a pseudo-terminal (real logs, unplug/replug), NMEA writer, OpenCV camera
(latest-frame dropping, every-frame files), replay pacing on a fake clock, and the real bag's input notices."""

from __future__ import annotations

import errno
import itertools
import os
import select
import time
import tty
from pathlib import Path

import numpy as np
import pynmea2
import pytest

from runtime.events import GpsFix
from runtime.nmea import NmeaParser, format_gga, format_rmc, parse_nmea_bytes, utc_ns
from runtime.sources import EndOfStream, SourceError
from runtime.sources.camera import (
    KIND_DEVICE,
    KIND_FILE,
    KIND_GSTREAMER,
    KIND_STREAM,
    LatestFrameCamera,
    capture_spec,
    opencv_has_gstreamer,
)
from runtime.sources.replay import describe_bag_inputs, replay_events
from runtime.sources.serial_gps import NmeaSerialWriter, SerialGps

cv2 = pytest.importorskip("cv2")

DATA = Path(os.environ.get("SKYFIX_DATA", "/work/shared/data"))
NMEA_DIR = DATA / "nmea"
BAGS = DATA / "bags"


# ============================================================================================== pty helpers
class FakeSerialDevice:
    """A pseudo-terminal whose slave is reachable through a stable symlink (like /dev/serial/by-id/...)."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.slave_path = os.ttyname(self.slave)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(self.slave_path)

    def write(self, data: bytes, chunk: int = 512) -> None:
        for i in range(0, len(data), chunk):
            view = data[i:i + chunk]
            while view:
                n = os.write(self.master, view)
                view = view[n:]

    def read_available(self, timeout: float = 1.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                try:
                    out += os.read(self.master, 4096)
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        break
                    raise
            elif out:
                break
        return out

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link.is_symlink():
            self.link.unlink()


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _key(fixes):
    return [(f.t_ns, f.lat, f.lon, f.alt, f.status, None if f.cov_enu is None else f.sigma_h) for f in fixes]


# ============================================================================================== SerialGps
@pytest.mark.parametrize("name", ["bu353s4.log", "ublox-zed-f9p-nmea.log", "ac12_binary.log", "telit-he910.log"])
def test_real_log_through_a_pty_gives_the_same_fixes_as_the_file(tmp_path, name):
    path = NMEA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} absent")
    data = path.read_bytes()
    ref, ref_parser = parse_nmea_bytes(data, clock_ns=lambda: 0)
    assert ref, name
    dev = FakeSerialDevice(tmp_path / "ttyGPS")
    got: list[GpsFix] = []
    gps = SerialGps(str(dev.link), 9600, on_fix=got.append, clock_ns=lambda: 0, reconnect_s=0.2)
    try:
        assert gps.wait_connected(5.0), gps.last_error
        dev.write(data)
        assert wait_for(lambda: gps.bytes_read >= len(data)), (gps.bytes_read, len(data))
    finally:
        gps.close()
        dev.unplug()
    assert not gps.running
    assert _key(got) == _key(ref)
    assert gps.latest is got[-1]
    c = gps.counters
    for k in ("sentences", "parsed", "bad_checksum", "malformed", "ignored", "fixes"):
        assert c[k] == getattr(ref_parser.counters, k), k
    assert c["connects"] == 1 and c["bytes_read"] == len(data)


def _sentences(k: int, t0: int = utc_ns(2024, 6, 1, 10, 0, 0)) -> bytes:
    t = t0 + k * 10**9
    lat, lon = 47.0 + k * 1e-4, 8.0 - k * 1e-4
    return (format_gga(t, lat, lon, 500.0 + k, 1, 9, 0.8) + format_rmc(t, lat, lon, 3.0, 90.0, True)).encode()


def test_unplug_then_replug_reconnects_and_counts(tmp_path):
    link = tmp_path / "gps0"
    dev = FakeSerialDevice(link)
    gps = SerialGps(str(link), 38400, queue_size=100, reconnect_s=0.1)
    try:
        assert gps.wait_connected(5.0)
        dev.write(b"".join(_sentences(k) for k in range(3)))
        assert wait_for(lambda: gps.counters["fixes"] >= 3)
        # unplug: the pty goes away and so does the path
        dev.unplug()
        assert wait_for(lambda: gps.disconnects == 1 and not gps.connected)
        # the reason is published before the counter; last_error may already say the reopen failed
        assert "failed" in gps.last_disconnect and "reconnecting every 0.1 s" in gps.last_disconnect
        assert gps.last_error == gps.last_disconnect or "cannot open serial port" in gps.last_error
        assert wait_for(lambda: gps.open_failures >= 2)
        assert "cannot open serial port" in gps.last_error
        # replug at the same path
        dev = FakeSerialDevice(link)
        assert wait_for(lambda: gps.connects == 2 and gps.connected), gps.last_error
        dev.write(b"".join(_sentences(k) for k in range(3, 5)))
        assert wait_for(lambda: gps.counters["fixes"] >= 5)
    finally:
        gps.close()
        dev.unplug()
    fixes = gps.drain()
    assert [round(f.lat, 6) for f in fixes] == [round(47.0 + k * 1e-4, 6) for k in range(5)]
    assert [f.t_ns for f in fixes] == [utc_ns(2024, 6, 1, 10, 0, k) for k in range(5)]
    assert gps.latest.t_ns == fixes[-1].t_ns


def test_port_absent_at_start_is_retried_not_raised(tmp_path):
    gps = SerialGps(str(tmp_path / "nothing"), 9600, reconnect_s=0.05)
    try:
        assert wait_for(lambda: gps.open_failures >= 2)
        assert not gps.connected and gps.latest is None
        assert gps.last_error.startswith(f"cannot open serial port {str(tmp_path / 'nothing')!r} at 9600 baud")
    finally:
        gps.close()
    assert not gps.running


def test_bounded_queue_drops_oldest_and_callback_errors_are_contained(tmp_path):
    dev = FakeSerialDevice(tmp_path / "tty")
    calls = []

    def bad_callback(fix):
        calls.append(fix)
        raise RuntimeError("consumer bug")

    gps = SerialGps(str(dev.link), queue_size=3, on_fix=bad_callback)
    try:
        assert gps.wait_connected(5.0)
        dev.write(b"".join(_sentences(k) for k in range(10)))
        assert wait_for(lambda: gps.counters["fixes"] == 10)
        assert gps.dropped == 7 and gps.callback_errors == 10 and len(calls) == 10
        assert gps.last_error == "on_fix raised RuntimeError: consumer bug"
        got = [gps.get(timeout=0.5) for _ in range(3)]
        assert [f.t_ns for f in got] == [utc_ns(2024, 6, 1, 10, 0, k) for k in (7, 8, 9)]
        assert gps.get(timeout=0.05) is None and gps.get(timeout=0) is None
        assert gps.running  # the callback errors did not stop the thread
    finally:
        gps.close()
        dev.unplug()


def test_serial_gps_argument_errors(tmp_path):
    cases = [
        (lambda: SerialGps("", 9600, start=False), r"port must be a serial device path such as '/dev/ttyUSB0', got ''"),
        (lambda: SerialGps("/dev/x", 0, start=False), r"baud must be a positive integer such as 9600.*got 0"),
        (lambda: SerialGps("/dev/x", 9600, queue_size=-1, start=False),
         r"queue_size must be an integer >= 0 \(0: no queue\), got -1"),
        (lambda: SerialGps("/dev/x", 9600, on_fix=3, start=False),
         r"on_fix must be a callable taking a GpsFix, or None; got int"),
        (lambda: SerialGps("/dev/x", 9600, reconnect_s=0, start=False),
         r"reconnect_s must be a positive number of seconds, got 0"),
        (lambda: SerialGps("/dev/x", 9600, uere_m=-2, start=False), r"uere_m must be a positive number"),
    ]
    for fn, pattern in cases:
        with pytest.raises(SourceError, match=pattern):
            fn()
    gps = SerialGps("/dev/x", 9600, start=False)
    with pytest.raises(SourceError, match=r"this SerialGps has no queue; build it with queue_size > 0"):
        gps.get()
    gps.close()
    with pytest.raises(SourceError, match=r"SerialGps\('/dev/x'\) was closed; create a new one"):
        gps.start()


# ============================================================================================== NmeaSerialWriter
def test_writer_sentences_reach_the_port_and_parse_back(tmp_path):
    dev = FakeSerialDevice(tmp_path / "ap")
    t = utc_ns(2025, 3, 4, 5, 6, 7, 890_000_000)
    with NmeaSerialWriter(str(dev.link), 57600, talker="GN") as w:
        assert w.write(t, -12.3456789, 130.9876543, 34.5, speed_mps=7.5, course_deg=45.0, sigma_h_m=2.5)
        raw = dev.read_available()
        assert w.sentences_written == 2
    lines = raw.decode("ascii").split("\r\n")
    assert lines[0].startswith("$GNGGA,050607.89,") and lines[1].startswith("$GNRMC,050607.89,A,")
    p = NmeaParser()
    (fix,) = p.feed(raw)
    assert fix.t_ns == t and fix.lat == pytest.approx(-12.3456789, abs=2e-7)
    assert fix.lon == pytest.approx(130.9876543, abs=2e-7) and fix.alt == pytest.approx(34.5)
    assert fix.sigma_h == pytest.approx(2.5, abs=0.03)  # HDOP 0.50 * 5 m
    assert p.speed_mps == pytest.approx(7.5, abs=1e-3) and p.course_deg == pytest.approx(45.0)
    for line in lines[:2]:
        msg = pynmea2.parse(line, check=True)
        assert msg.latitude == pytest.approx(-12.3456789, abs=2e-7)
    dev.unplug()


def test_writer_write_fix_errors_and_failed_port(tmp_path):
    with pytest.raises(SourceError, match=r"cannot open serial port '.*nope' at 9600 baud: .*group dialout"):
        NmeaSerialWriter(str(tmp_path / "nope"), 9600)
    with pytest.raises(SourceError, match=r"talker must be two capital letters"):
        NmeaSerialWriter(str(tmp_path / "nope"), 9600, talker="x")
    dev = FakeSerialDevice(tmp_path / "ap")
    w = NmeaSerialWriter(str(dev.link), 9600, reconnect_s=10.0)
    fix = GpsFix(utc_ns(2025, 1, 1), 10.0, 20.0, 30.0, 4.0, status=1)
    assert w.write_fix(fix, speed_mps=1.0, course_deg=10.0)
    gga = dev.read_available().decode().split("\r\n")[0]
    assert gga.split(",")[6] == "2" and gga.split(",")[8] == "0.80"  # SBAS -> DGPS quality, HDOP = 4 m / 5 m
    with pytest.raises(SourceError, match=r"cannot write an NMEA estimate: latitude must be finite degrees"):
        w.write(utc_ns(2025, 1, 1), 100.0, 0.0, 0.0)
    dev.unplug()  # the autopilot link goes away: write reports False, counts, and does not raise
    ok = [w.write(utc_ns(2025, 1, 1), 1.0, 2.0, 3.0) for _ in range(3)]
    assert ok[0] is False and not any(ok) and w.write_errors == 3
    assert w.last_error.startswith("writing to serial port")
    w.close()


# ============================================================================================== camera
N_FRAMES = 30


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 100.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MJPG .avi")
    for i in range(N_FRAMES):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, i * 8, 200  # B, G = 8 * index, R
        writer.write(bgr)
    writer.release()
    return path


def _index_of(frame) -> int:
    img = frame.image
    assert img.dtype == np.uint8 and img.shape == (48, 64, 3)
    assert abs(float(img[..., 0].mean()) - 200) < 6 and abs(float(img[..., 2].mean()) - 10) < 6  # RGB order
    return int(round(float(img[..., 1].mean()) / 8))


def test_every_frame_of_a_file_in_order(video):
    with LatestFrameCamera(str(video), every_frame=True, topic="cam", frame_id="cam_optical") as cam:
        assert cam.kind == KIND_FILE and cam.fps == pytest.approx(100.0) and cam.frame_count == N_FRAMES
        frames = list(cam)
        with pytest.raises(EndOfStream, match=rf"video file '.*clip\.avi' ended after {N_FRAMES} frames"):
            cam.read(timeout=1.0)
        with pytest.raises(EndOfStream):
            cam.read(timeout=1.0)
    assert [_index_of(f) for f in frames] == list(range(N_FRAMES))
    t = np.array([f.t_ns for f in frames])
    assert np.all(np.diff(t) == 10_000_000)  # the file's time line, 100 fps
    assert abs(t[0] - time.time_ns()) < 60e9 and frames[0].topic == "cam" and frames[0].frame_id == "cam_optical"
    assert cam.stats["dropped"] == 0 and cam.stats["delivered"] == N_FRAMES


def test_every_frame_paced_in_real_time(video):
    t0 = time.monotonic()
    with LatestFrameCamera(str(video), every_frame=True, realtime=True) as cam:
        n = sum(1 for _ in cam)
    assert n == N_FRAMES and time.monotonic() - t0 >= (N_FRAMES - 1) / 100.0 * 0.95


def test_latest_mode_drops_for_a_slow_consumer_and_stays_bounded(video):
    seen = []
    with LatestFrameCamera(str(video)) as cam:  # a file in latest mode plays at its frame rate, like a camera
        while True:
            try:
                frame = cam.read(timeout=2.0)
            except EndOfStream:
                break
            assert frame is not None
            seen.append((_index_of(frame), cam.last_index))
            s = cam.stats
            assert s["grabbed"] - s["delivered"] - s["dropped"] <= 1  # at most one frame held
            time.sleep(0.04)  # slow consumer: 25 Hz against 100 Hz
    s = cam.stats
    assert s["grabbed"] == N_FRAMES and s["delivered"] + s["dropped"] == N_FRAMES
    assert s["dropped"] > N_FRAMES // 3 and 2 <= s["delivered"] < N_FRAMES
    idx = [a for a, _ in seen]
    assert idx == [b for _, b in seen] and all(b > a for a, b in zip(idx, idx[1:]))
    assert idx[-1] == N_FRAMES - 1  # the newest frame is never lost


def test_capture_spec_kinds():
    assert capture_spec(0) == (0, cv2.CAP_ANY, KIND_DEVICE)
    assert capture_spec(np.int64(2)) == (2, cv2.CAP_ANY, KIND_DEVICE)
    assert capture_spec(" 1 ") == (1, cv2.CAP_ANY, KIND_DEVICE)
    assert capture_spec("/dev/video3") == ("/dev/video3", cv2.CAP_ANY, KIND_DEVICE)
    pipe = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! appsink"
    assert capture_spec(pipe) == (pipe, cv2.CAP_GSTREAMER, KIND_GSTREAMER)
    assert capture_spec("rtsp://10.0.0.2:8554/cam") == ("rtsp://10.0.0.2:8554/cam", cv2.CAP_FFMPEG, KIND_STREAM)


def test_camera_errors(tmp_path, video):
    cases = [
        (lambda: capture_spec(True), r"a camera source must be a device index \(int\), .* got True \(bool\)"),
        (lambda: capture_spec(-1), r"a camera device index must be >= 0 \(0 is /dev/video0\), got -1"),
        (lambda: capture_spec("  "), r"the camera source is an empty string"),
        (lambda: capture_spec(str(tmp_path / "missing.mp4")),
         r"video file '.*missing\.mp4' does not exist \(or is not a file\); give an existing video file"),
        (lambda: LatestFrameCamera(0, every_frame=True),
         r"--every-frame \(every_frame=True\) needs a video file; 0 is a device source"),
        (lambda: LatestFrameCamera(str(video), queue_size=0), r"queue_size must be an integer >= 1, got 0"),
        (lambda: LatestFrameCamera(str(video), camera="cam.yaml"), r"camera must be a CameraModel or None, got str"),
        (lambda: LatestFrameCamera(str(video), fps=-5), r"fps must be a positive frame rate or None"),
        (lambda: LatestFrameCamera(str(video), reconnect_s=0), r"reconnect_s must be a positive number of seconds"),
        (lambda: LatestFrameCamera(str(video), max_failures=0), r"max_failures must be an integer >= 1, got 0"),
        (lambda: LatestFrameCamera(str(video), properties={"fps": 30}),
         r"properties must map cv2\.CAP_PROP_\* ids \(int\) to numbers, .*got 'fps': 30"),
        (lambda: LatestFrameCamera(63), r"cannot open camera device 63; check that it exists \(ls /dev/video\*\)"),
    ]
    junk = tmp_path / "junk.avi"
    junk.write_bytes(os.urandom(4096))
    cases.append((lambda: LatestFrameCamera(str(junk)),
                  r"cannot decode video file '.*junk\.avi' with OpenCV; expected a complete video"))
    for fn, pattern in cases:
        with pytest.raises(SourceError, match=pattern):
            fn()
    cam = LatestFrameCamera(str(video), every_frame=True)
    cam.close()
    with pytest.raises(SourceError, match=r"camera '.*clip\.avi' is closed; create a new LatestFrameCamera"):
        cam.read()


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer: the pipeline might open")
def test_gstreamer_pipeline_without_gstreamer_says_so():
    with pytest.raises(SourceError, match=r"cannot open GStreamer pipeline 'videotestsrc ! appsink': this OpenCV "
                                          r"build has no GStreamer support"):
        LatestFrameCamera("videotestsrc ! appsink")


# ============================================================================================== replay
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def _fixes(times_s):
    return [GpsFix(int(round(t * 1e9)), 1.0, 2.0, 3.0) for t in times_s]


def test_replay_paces_by_t_ns_on_a_fake_clock():
    clock = FakeClock()
    evs = _fixes([10.0, 10.5, 12.0, 11.0, 12.5])
    out = list(replay_events(evs, realtime=True, clock=clock, sleep=clock.sleep))
    assert out == evs
    assert clock.sleeps == pytest.approx([0.5, 1.5, 0.5])  # 11.0 is late: at once; schedule, not deltas
    clock = FakeClock()
    list(replay_events(evs, realtime=True, speed=2.0, clock=clock, sleep=clock.sleep))
    assert clock.sleeps == pytest.approx([0.25, 0.75, 0.25])
    clock = FakeClock()  # consumer time counts against the schedule
    for _ in replay_events(evs, realtime=True, clock=clock, sleep=clock.sleep):
        clock.now += 0.2
    assert clock.sleeps == pytest.approx([0.3, 1.3, 0.1])  # 0.2 s of work per event: 12.5 due 0.1 s after
    clock = FakeClock()
    assert list(replay_events(evs, clock=clock, sleep=clock.sleep)) == evs and clock.sleeps == []


def test_replay_errors():
    with pytest.raises(SourceError, match=r"speed must be a positive finite number \(1\.0 = real time.*got 0"):
        replay_events([], realtime=True, speed=0)
    with pytest.raises(SourceError, match=r"got nan"):
        replay_events([], speed=float("nan"))
    with pytest.raises(SourceError, match=r"replay needs events with an integer t_ns \(runtime\.events\), got 5"):
        list(replay_events([5]))


def test_real_bag_notices_and_paced_replay():
    path = BAGS / "husky_gps_imu_odom.bag"
    if not path.exists():
        pytest.skip(f"{path} absent")
    from runtime.bags.reader import BagReader

    with BagReader(path) as reader:
        notes = describe_bag_inputs(reader)
        assert "no camera topic (sensor_msgs/CompressedImage or Image): tracking on GPS alone" in notes
        assert not any(n.startswith("no GPS topic") for n in notes)
        assert not any(n.startswith("no IMU topic") for n in notes)
        evs = list(itertools.islice(reader.events(roles=("gps",)), 20))
    clock = FakeClock()
    out = list(replay_events(iter(evs), realtime=True, speed=4.0, clock=clock, sleep=clock.sleep))
    assert out == evs and all(isinstance(e, GpsFix) for e in out)
    assert clock.now - 100.0 == pytest.approx((evs[-1].t_ns - evs[0].t_ns) / 1e9 / 4.0, abs=1e-6)
    no_gps = BAGS / "husky_imu_odom_no_gps.bag"
    if no_gps.exists():
        with BagReader(no_gps) as reader:
            notes = describe_bag_inputs(reader)
        assert "no GPS topic (sensor_msgs/NavSatFix): the runtime needs an initial position to start" in notes
