"""GPS_INPUT / VISION_POSITION_ESTIMATE / ODOMETRY: every field, checked on what a pymavlink peer receives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.mavlink.link import MavlinkError
from runtime.mavlink.sink import (MavEstimate, MavlinkSink, SinkConfig, VelocityFromTrack, cov6_upper,
                                  estimate_from_record, gps_input_fields, gps_time, odometry_fields,
                                  vision_position_fields)
from runtime.outputs import EstimateRecord

from .conftest import free_udp_port, open_peer, recv_all

T0_NS = 1_704_067_200 * 10**9 + 250_000_000  # 2024-01-01T00:00:00.250Z
# An elongated covariance: sigma 10 m along ENU angle 30 deg (from east towards north), 2 m across.
# By hand: ee = 100 cos^2 30 + 4 sin^2 30 = 76, nn = 100 sin^2 30 + 4 cos^2 30 = 28, en = 96 sin30 cos30 = 41.569
EE, NN, EN = 76.0, 28.0, 96 * 0.5 * math.sqrt(3) / 2
COV_EN = np.array([[EE, EN], [EN, NN]])


def _est(status="OK", **kw):
    base = dict(t_ns=T0_NS, status=status, lat=47.3977419, lon=8.5455938, cov_en=COV_EN, sigma_m=10.0,
                x_m=100.0, y_m=-50.0, alt_amsl_m=488.5, height_agl_m=80.0, vert_sigma_m=3.0,
                velocity_en=(3.0, 4.0), velocity_up=-0.5, velocity_sigma_mps=0.7,
                attitude_rpy_ned=(0.1, -0.05, math.radians(60.0)), heading_deg=60.0)
    base.update(kw)
    return MavEstimate(**base)


def test_gps_time_from_utc_with_leap_seconds():
    # 2024-01-01T00:00:00Z is 1 day + 18 leap seconds into GPS week 2295 (which began 2023-12-31)
    assert gps_time(1_704_067_200 * 10**9) == (2295, 86_418_000)
    assert gps_time(T0_NS) == (2295, 86_418_250)
    assert gps_time(315_964_800 * 10**9, leap_seconds=0) == (0, 0)


def test_gps_input_fields_ok():
    f = gps_input_fields(_est(), SinkConfig(satellites=11, uere_m=5.0))
    assert f["fix_type"] == 3 and f["ignore_flags"] == 0
    assert f["lat"] == 473977419 and f["lon"] == 85455938
    assert f["vn"] == 4.0 and f["ve"] == 3.0 and f["vd"] == 0.5  # NED: north, east, down
    assert f["horiz_accuracy"] == pytest.approx(10.0)  # the covariance's major axis
    assert f["hdop"] == pytest.approx(2.0) and f["vdop"] == pytest.approx(0.6)
    assert f["yaw"] == 0  # not sent by default


def test_gps_input_unknowns_are_flagged():
    est = _est("DEGRADED", alt_amsl_m=None, vert_sigma_m=None, velocity_en=None, velocity_sigma_mps=None,
               velocity_up=None, cov_en=None, sigma_m=math.inf)
    f = gps_input_fields(est)
    assert f["fix_type"] == 3
    assert f["ignore_flags"] == 255  # alt, hdop, vdop, vel h/v, speed acc, horiz acc, vert acc
    assert f["hdop"] == 65535.0 and f["vdop"] == 65535.0


@pytest.mark.parametrize("status,degraded,fix", [("OK", 3, 3), ("DEGRADED", 3, 3), ("DEGRADED", 1, 1),
                                                 ("GPS_REJECTED", 2, 2), ("GPS_ONLY", 3, 3), ("LOST", 3, 1),
                                                 ("SOMETHING_NEW", 3, 1)])
def test_fix_type_policy(status, degraded, fix):
    f = gps_input_fields(_est(status), SinkConfig(degraded_fix_type=degraded))
    assert f["fix_type"] == fix
    if fix == 1:
        assert f["lat"] == f["lon"] == 0 and f["ignore_flags"] == 255 and f["satellites_visible"] == 0


def test_no_position_is_no_fix_and_no_vision():
    est = _est("OK", lat=math.nan, lon=math.nan, x_m=None, y_m=None)
    assert gps_input_fields(est)["fix_type"] == 1
    assert vision_position_fields(est) is None and odometry_fields(est) is None
    assert vision_position_fields(_est("LOST")) is None


def test_vision_enu_to_ned_with_an_elongated_covariance_at_30_degrees():
    f = vision_position_fields(_est(), reset_counter=3)
    assert (f["x"], f["y"], f["z"]) == (-50.0, 100.0, -80.0)  # north, east, down
    cov = f["covariance"]
    assert len(cov) == 21
    assert cov[0] == pytest.approx(NN)   # xx = north-north
    assert cov[1] == pytest.approx(EN)   # xy = north-east
    assert cov[6] == pytest.approx(EE)   # yy = east-east
    assert cov[2] == 0 and cov[7] == 0   # xz, yz
    assert cov[11] == pytest.approx(9.0)  # zz
    assert all(math.isnan(cov[i]) for i in (15, 18, 20))  # roll, pitch, yaw variances unknown
    assert f["yaw"] == pytest.approx(math.radians(60)) and f["reset_counter"] == 3


def test_cov6_upper_layout():
    c = np.arange(36, dtype=float).reshape(6, 6)
    up = cov6_upper(c)
    assert up[:6] == [0, 1, 2, 3, 4, 5] and up[6:11] == [7, 8, 9, 10, 11] and up[20] == 35


def test_odometry_fields():
    f = odometry_fields(_est())
    assert f["frame_id"] == 1 and f["child_frame_id"] == 1 and f["estimator_type"] == 2 and f["quality"] == 100
    w, x, y, z = f["q"]
    # body FRD -> NED for roll 0.1, pitch -0.05, yaw 60 deg: rotate the body x axis
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    fwd = R[:, 0]
    assert math.degrees(math.atan2(fwd[1], fwd[0])) == pytest.approx(60.0)  # heading east of north
    assert fwd[2] == pytest.approx(math.sin(0.05))  # nose down (pitch -0.05) points +down
    assert (f["vx"], f["vy"], f["vz"]) == (4.0, 3.0, 0.5)
    assert f["velocity_covariance"][0] == pytest.approx(0.49) and f["velocity_covariance"][6] == pytest.approx(0.49)
    assert f["pose_covariance"][1] == pytest.approx(EN)


def test_estimate_from_record_and_velocity_from_track():
    rec = EstimateRecord(t_ns=T0_NS, lat=47.0, lon=8.0, heading_deg=90.0, sigma_m=2.0,
                         cov_en=((4.0, 0.0), (0.0, 1.0)), status="OK", latency_ms={}, x_m=10.0, y_m=20.0)
    est = estimate_from_record(rec, alt_amsl_m=500.0)
    assert est.horizontal_sigma_m == pytest.approx(2.0) and est.velocity_en is None
    vt = VelocityFromTrack(window_s=1.0)
    assert vt.update(est) is None
    later = MavEstimate(T0_NS + 1_500_000_000, "OK", 47.0, 8.0, cov_en=est.cov_en, x_m=13.0, y_m=14.0)
    (ve, vn), sig = vt.update(later)
    assert (ve, vn) == pytest.approx((2.0, -4.0)) and sig == pytest.approx(math.sqrt(8) / 1.5)


class _FakeLink:
    def __init__(self):
        self.sent = []

    def encode(self, name, fields):
        return (name, fields)

    def send(self, msg):
        self.sent.append(msg)
        return True


def test_rate_limit_counts_with_a_fake_clock():
    now = [0]
    sink = MavlinkSink(_FakeLink(), "gps_input", rate_hz=5.0, clock_ns=lambda: now[0])
    for i in range(100):  # 50 Hz for 2 s
        now[0] = i * 20_000_000
        sink.offer(_est(t_ns=T0_NS + now[0]))
    assert sink.counters.sent == 10 and sink.counters.rate_skipped == 90
    assert [m[1]["time_usec"] for m in sink.link.sent] == [(T0_NS + k * 200_000_000) // 1000 for k in range(10)]


def test_reset_counter_after_lost():
    now = [0]
    sink = MavlinkSink(_FakeLink(), "vision", rate_hz=100.0, clock_ns=lambda: now[0])
    for i, st in enumerate(["OK", "OK", "LOST", "OK", "OK"]):
        now[0] = i * 100_000_000
        sink.offer(_est(st))
    counters = [m[1]["reset_counter"] for m in sink.link.sent]
    assert counters == [0, 0, 1, 1] and sink.counters.withheld == 1


def test_bad_settings_are_typed_errors():
    with pytest.raises(MavlinkError, match="gps_input"):
        MavlinkSink(_FakeLink(), "nmea")
    with pytest.raises(MavlinkError, match="rate"):
        MavlinkSink(_FakeLink(), rate_hz=0)
    with pytest.raises(MavlinkError, match="degraded_fix_type"):
        SinkConfig(degraded_fix_type=5)


# ------------------------------------------------------------------------------------------ loopback, real peer
def _sink_and_peer(message, rate_hz=50.0, clock=None, config=SinkConfig()):
    from runtime.mavlink import MavlinkLink

    port = free_udp_port()
    peer = open_peer(f"udpin:127.0.0.1:{port}", sysid=1, compid=1)
    link = MavlinkLink(f"udpout:127.0.0.1:{port}", source_system=1, source_component=191)
    kw = {} if clock is None else {"clock_ns": clock}
    return MavlinkSink(link, message, rate_hz=rate_hz, config=config, **kw), peer


def test_gps_input_over_udp_every_field(pymavlink):
    sink, peer = _sink_and_peer("gps_input", config=SinkConfig(gps_id=1, satellites=9, send_yaw=True))
    try:
        assert sink.offer(_est())
        hb = recv_all(peer, "HEARTBEAT", n=1)  # sent first, when due
        (m,) = recv_all(peer, "GPS_INPUT", n=1)
    finally:
        sink.link.close()
        peer.close()
    assert m.get_srcSystem() == 1 and m.get_srcComponent() == 191
    assert m.time_usec == T0_NS // 1000
    assert (m.gps_id, m.ignore_flags, m.time_week, m.time_week_ms) == (1, 0, 2295, 86_418_250)
    assert (m.fix_type, m.lat, m.lon) == (3, 473977419, 85455938)
    assert m.alt == pytest.approx(488.5)
    assert m.hdop == pytest.approx(2.0) and m.vdop == pytest.approx(0.6)
    assert (m.vn, m.ve, m.vd) == pytest.approx((4.0, 3.0, 0.5))
    assert m.speed_accuracy == pytest.approx(0.7)
    assert m.horiz_accuracy == pytest.approx(10.0, rel=1e-6) and m.vert_accuracy == pytest.approx(3.0)
    assert m.satellites_visible == 9 and m.yaw == 6000
    assert hb and hb[0].type == 18 and hb[0].autopilot == 8  # onboard controller, no autopilot


def test_gps_input_lost_over_udp(pymavlink):
    sink, peer = _sink_and_peer("gps_input")
    try:
        sink.offer(_est("LOST"))
        (m,) = recv_all(peer, "GPS_INPUT", n=1)
    finally:
        sink.link.close()
        peer.close()
    assert (m.fix_type, m.lat, m.lon, m.ignore_flags, m.satellites_visible) == (1, 0, 0, 255, 0)


def test_vision_position_estimate_over_udp_every_field(pymavlink):
    sink, peer = _sink_and_peer("vision")
    try:
        sink.offer(_est())
        (m,) = recv_all(peer, "VISION_POSITION_ESTIMATE", n=1)
    finally:
        sink.link.close()
        peer.close()
    assert m.usec == T0_NS // 1000
    assert (m.x, m.y, m.z) == pytest.approx((-50.0, 100.0, -80.0))
    assert (m.roll, m.pitch, m.yaw) == pytest.approx((0.1, -0.05, math.radians(60)))
    cov = list(m.covariance)
    assert cov[0] == pytest.approx(NN, rel=1e-6) and cov[1] == pytest.approx(EN, rel=1e-6)
    assert cov[6] == pytest.approx(EE, rel=1e-6) and cov[11] == pytest.approx(9.0)
    assert all(math.isnan(cov[i]) for i in (15, 18, 20)) and m.reset_counter == 0


def test_odometry_over_udp_every_field(pymavlink):
    sink, peer = _sink_and_peer("odometry")
    try:
        sink.offer(_est())
        (m,) = recv_all(peer, "ODOMETRY", n=1)
    finally:
        sink.link.close()
        peer.close()
    expected = odometry_fields(_est())
    assert m.time_usec == expected["time_usec"]
    assert (m.frame_id, m.child_frame_id, m.estimator_type, m.quality, m.reset_counter) == (1, 1, 2, 100, 0)
    assert (m.x, m.y, m.z) == pytest.approx((-50.0, 100.0, -80.0))
    assert list(m.q) == pytest.approx(expected["q"], rel=1e-6)
    assert (m.vx, m.vy, m.vz) == pytest.approx((4.0, 3.0, 0.5))
    assert all(math.isnan(v) for v in (m.rollspeed, m.pitchspeed, m.yawspeed))
    for got, want in zip(list(m.pose_covariance) + list(m.velocity_covariance),
                         expected["pose_covariance"] + expected["velocity_covariance"]):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-6)


def test_rate_limit_over_udp(pymavlink):
    now = [0]
    sink, peer = _sink_and_peer("gps_input", rate_hz=5.0, clock=lambda: now[0])
    try:
        for i in range(50):  # 25 Hz for 2 s
            now[0] = i * 40_000_000
            sink.offer(_est(t_ns=T0_NS + now[0]))
        got = recv_all(peer, "GPS_INPUT", n=None, timeout=3.0)
    finally:
        sink.link.close()
        peer.close()
    assert sink.counters.sent == 10 and len(got) == 10
    assert [m.time_usec for m in got] == [(T0_NS + k * 200_000_000) // 1000 for k in range(10)]


def test_gps_input_over_a_serial_port(pymavlink, tmp_path):
    """``serial:DEVICE:BAUD``: a real pseudo-terminal stands for the autopilot's UART; the bytes that come out of
    its other end parse (pymavlink, MAVLink 2) to the GPS_INPUT sent."""
    import os
    import select
    import time

    from pymavlink.dialects.v20 import ardupilotmega as mav2

    from runtime.mavlink import MavlinkLink

    master, slave = os.openpty()
    try:
        link = MavlinkLink(f"serial:{os.ttyname(slave)}:57600", source_system=1, source_component=191)
        sink = MavlinkSink(link, "gps_input", rate_hz=50.0)
        try:
            assert sink.offer(_est())
            parser = mav2.MAVLink(None)
            parser.robust_parsing = True
            got, deadline = [], time.monotonic() + 3.0
            while time.monotonic() < deadline and not any(m.get_type() == "GPS_INPUT" for m in got):
                r, _, _ = select.select([master], [], [], 0.1)
                if r:
                    got += [m for m in (parser.parse_buffer(os.read(master, 4096)) or []) if m is not None]
        finally:
            link.close()
    finally:
        os.close(master)
        os.close(slave)
    (m,) = [g for g in got if g.get_type() == "GPS_INPUT"]
    assert (m.fix_type, m.lat, m.lon) == (3, 473977419, 85455938)
    assert m.horiz_accuracy == pytest.approx(10.0, rel=1e-6) and (m.vn, m.ve) == pytest.approx((4.0, 3.0))
