"""ATTITUDE / HIGHRES_IMU / GPS_RAW_INT from a pymavlink peer become ImuSample / GpsFix events; bad ones are skipped."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from calibration.rotations import quaternion_to_matrix
from runtime.events import COVARIANCE_TYPE_APPROXIMATED, COVARIANCE_TYPE_DIAGONAL_KNOWN, GpsFix, ImuSample
from runtime.mavlink.link import MavlinkError

from .conftest import free_udp_port, open_peer

G = 9.80665
ROLL, PITCH, YAW = 0.2, -0.1, math.radians(30.0)  # NED yaw 30 deg: heading 30 deg east of north


def _wait_events(source, n, timeout=3.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += source.drain()
        time.sleep(0.01)
    return out


@pytest.fixture
def link_and_peer(pymavlink):
    from runtime.mavlink import MavlinkLink

    port = free_udp_port()
    link = MavlinkLink(f"udpin:127.0.0.1:{port}", source_system=1, source_component=191)
    peer = open_peer(f"udpout:127.0.0.1:{port}", sysid=1, compid=1)  # the autopilot
    yield link, peer
    peer.close()
    link.close()


def _gps_raw(peer, **kw):
    f = dict(time_usec=1_704_067_200_000_000, fix_type=3, lat=473977419, lon=85455938, alt=488_500, eph=120,
             epv=200, vel=500, cog=9000, satellites_visible=14, alt_ellipsoid=0, h_acc=1500, v_acc=2500,
             vel_acc=300, hdg_acc=0, yaw=0)
    f.update(kw)
    peer.mav.gps_raw_int_send(**f)


def test_source_yields_imu_and_gps_and_skips_bad_ones(link_and_peer):
    from runtime.mavlink import MavlinkSource

    link, peer = link_and_peer
    t_host = [1_704_067_200 * 10**9]

    def clock():
        t_host[0] += 1_000_000  # 1 ms per message: deterministic, increasing
        return t_host[0]

    src = MavlinkSource(link, clock_ns=clock)
    try:
        acc_frd = (0.5, -0.3, -9.7)
        peer.mav.highres_imu_send(1000, *acc_frd, 0.01, 0.02, 0.03, 0, 0, 0, 1013.0, 0, 0, 25.0, 0b111111)
        peer.mav.attitude_send(1234, ROLL, PITCH, YAW, 0.01, -0.02, 0.03)
        peer.mav.attitude_send(1250, math.nan, PITCH, YAW, 0.0, 0.0, 0.0)  # malformed: NaN roll
        _gps_raw(peer, lat=950_000_000)  # malformed: lat 95 deg
        _gps_raw(peer, fix_type=1)  # no fix: counted, no event
        _gps_raw(peer, alt_ellipsoid=536_300)
        _gps_raw(peer, h_acc=0, v_acc=0, vel=65535, cog=65535)  # accuracy from HDOP; velocity unknown
        peer.mav.sys_status_send(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # another message: ignored
        events = _wait_events(src, 3)
        deadline = time.monotonic() + 2
        while src.counters["messages"] < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        src.close()
    imu = [e for e in events if isinstance(e, ImuSample)]
    fixes = [e for e in events if isinstance(e, GpsFix)]
    assert len(imu) == 1 and len(fixes) == 2
    c = src.counters
    assert c["bad"] == 2 and c["no_fix"] == 1 and c["fixes"] == 2 and c["imu_samples"] == 1 and c["other"] == 1
    notes = src.notes
    assert any("ATTITUDE" in n and "not finite" in n for n in notes)
    assert any("GPS_RAW_INT" in n and "95.0000000" in n for n in notes)

    # IMU in ENU/FLU. MAVLink: yaw 30 deg (east of north), pitch -0.1 (nose down), roll +0.2 (right wing down).
    s = imu[0]
    R = quaternion_to_matrix(s.orientation)  # FLU -> ENU
    fwd, left = R[:, 0], R[:, 1]
    assert math.degrees(math.atan2(fwd[0], fwd[1])) == pytest.approx(30.0)  # compass heading: atan2(east, north)
    assert fwd[2] == pytest.approx(math.sin(PITCH))  # nose down: the forward axis points below the horizon
    assert left[2] == pytest.approx(math.cos(PITCH) * math.sin(ROLL))  # right wing down lifts the left axis
    assert s.angular_velocity == pytest.approx((0.01, 0.02, -0.03))  # FRD -> FLU: y, z flip
    assert s.linear_acceleration == pytest.approx((0.5, 0.3, 9.7))
    assert s.topic == "mavlink/ATTITUDE"

    f = fixes[0]
    assert (f.lat, f.lon, f.alt) == pytest.approx((47.3977419, 8.5455938, 536.3))  # WGS84 height
    assert fixes[1].alt == pytest.approx(488.5)  # no alt_ellipsoid: MSL, noted
    assert src.decoder.geoid_sep_m == pytest.approx(47.8)
    assert any("no alt_ellipsoid" in n for n in notes)
    assert np.allclose(f.cov_enu, np.diag([1.5**2, 1.5**2, 2.5**2]))
    assert f.covariance_type == COVARIANCE_TYPE_DIAGONAL_KNOWN and f.status == 0
    assert f.velocity_xy == pytest.approx((5.0, 0.0), abs=1e-9)  # 5 m/s on course 90: east
    assert f.velocity_sigma_mps == pytest.approx(0.3)
    assert f.t_ns > 1_704_067_200 * 10**9 and f.topic == "mavlink/GPS_RAW_INT"
    g = fixes[1]
    assert np.allclose(g.cov_enu, np.diag([6.0**2, 6.0**2, 10.0**2]))  # eph 1.2 x 5 m, epv 2.0 x 5 m
    assert g.covariance_type == COVARIANCE_TYPE_APPROXIMATED and g.velocity_enu is None


def test_attitude_without_highres_imu_uses_gravity():
    from runtime.mavlink.source import MavlinkDecoder

    class Msg:
        def __init__(self, t, **kw):
            self.__dict__.update(kw)
            self._t = t

        def get_type(self):
            return self._t

        def get_srcSystem(self):
            return 1

        def get_srcComponent(self):
            return 1

    d = MavlinkDecoder()
    (s,) = d.handle(Msg("ATTITUDE", time_boot_ms=0, roll=ROLL, pitch=PITCH, yaw=YAW, rollspeed=0.0,
                        pitchspeed=0.0, yawspeed=0.0), 10**18)
    world = quaternion_to_matrix(s.orientation) @ np.array(s.linear_acceleration)
    assert world == pytest.approx((0.0, 0.0, G))  # specific force of an unaccelerated vehicle, ENU: +g up
    assert d.counters["gravity_only"] == 1
    # time from the autopilot when asked and UNIX-like
    d2 = MavlinkDecoder(time_source="autopilot")
    (fix,) = d2.handle(Msg("GPS_RAW_INT", time_usec=1_704_067_200_000_000, fix_type=6, lat=1, lon=2, alt=0,
                           eph=65535, epv=65535, vel=65535, cog=65535), 5)
    assert fix.t_ns == 1_704_067_200 * 10**9 and fix.cov_enu is None and fix.status == 2
    with pytest.raises(MavlinkError, match="time source"):
        MavlinkDecoder(time_source="gps")


def test_reader_thread_survives_an_exception():
    from runtime.mavlink.source import MavlinkSource

    class FlakyLink:
        calls = 0

        def recv(self, timeout):
            FlakyLink.calls += 1
            if FlakyLink.calls == 1:
                raise OSError("port hiccup")
            time.sleep(0.01)
            return None

    src = MavlinkSource(FlakyLink())
    try:
        deadline = time.monotonic() + 2
        while FlakyLink.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert src.running and src.counters["errors"] == 1 and "port hiccup" in src.notes[0]
    finally:
        src.close()
