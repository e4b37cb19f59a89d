"""Autopilot layouts: mavros (the receiver's raw/fix over the autopilot's fused global) and PX4 uXRCE-DDS px4_msgs
(SensorGps, VehicleAttitude, SensorCombined) in ROS 2 bags written with rosbags' rosbag2 Writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calibration.geometry import Attitude
from calibration.rotations import R_FRD2FLU, R_NED2ENU
from runtime.bags import BagReader, BagWriter
from runtime.bags.msgtypes import reading_typestore
from runtime.cli.onboard import main as runtime_main
from runtime.errors import BagError
from runtime.events import STATUS_GBAS_FIX, GpsFix, ImuSample, quaternion_to_matrix

from .conftest import T0, humble_style

US = 1_000  # ns per microsecond


# ---------------------------------------------------------------------------------------------- mavros
def test_mavros_prefers_the_receiver_over_the_fused_global(tmp_path, capsys):
    path = tmp_path / "mavros.bag"
    with BagWriter(path) as bag:
        for k in range(10):
            t = T0 + k * 200_000_000
            # the autopilot's fused estimate: more messages, a shorter name -- the old choice
            for j in range(3):
                bag.write_navsatfix("/mavros/global_position/global", t + j, 47.5, 8.5, 400.0, cov_enu=1.0)
            bag.write_navsatfix("/mavros/global_position/raw/fix", t, 47.0 + k * 1e-5, 8.0, 450.0, cov_enu=3.0)
            bag.write_imu("/mavros/imu/data_raw", t, None, (0, 0, 0), (0, 0, 9.8))
            bag.write_imu("/mavros/imu/data", t, (0, 0, 0, 1), (0, 0, 0), (0, 0, 9.8))
    with BagReader(path) as bag:
        assert bag.selection["gps"] == "/mavros/global_position/raw/fix"
        assert bag.selection["imu"] == "/mavros/imu/data"  # with orientation, not data_raw
        note = next(n for n in bag.notes if n.startswith("gps:"))
        fixes = list(bag.events(roles=["gps"]))
    assert "using /mavros/global_position/raw/fix: the receiver's fixes" in note
    assert "/mavros/global_position/global is the autopilot's own fused estimate" in note
    assert [f.lat for f in fixes] == pytest.approx([47.0 + k * 1e-5 for k in range(10)])
    assert runtime_main(["inspect", str(path)]) == 0
    assert "autopilot's own fused estimate" in capsys.readouterr().out
    with BagReader(path, gps_topic="/mavros/global_position/global") as bag:  # still choosable by name
        assert bag.selection["gps"] == "/mavros/global_position/global"


# ---------------------------------------------------------------------------------------------- PX4
def _px4_bag(path, *, n=50, boot=False, storage="sqlite3", typestore=None, gps_type="px4_msgs/msg/SensorGps",
             make_gps=None):
    """A PX4 uXRCE-DDS recording: SensorCombined at 50 Hz, VehicleAttitude at 50 Hz, SensorGps at 5 Hz.
    The vehicle sits level, its nose 30 deg east of north (NED yaw 30 deg), rotating at 0.1 rad/s about its
    FRD z (down). Timestamps are UNIX microseconds unless ``boot`` (microseconds since boot)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore or reading_typestore("ros2_jazzy")
    T = ts.types
    yaw = math.radians(30)
    q_frd2ned = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))  # w, x, y, z
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    base_us = (10_000_000 if boot else T0 // US)
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_imu = w.add_connection("/fmu/out/sensor_combined", "px4_msgs/msg/SensorCombined", typestore=ts)
        c_att = w.add_connection("/fmu/out/vehicle_attitude", "px4_msgs/msg/VehicleAttitude", typestore=ts)
        c_gps = w.add_connection("/fmu/out/vehicle_gps_position", gps_type, typestore=ts)
        for k in range(n):
            us = base_us + k * 20_000
            rec = T0 + k * 20_000 * US + 1_500_000  # received 1.5 ms later
            att = T["px4_msgs/msg/VehicleAttitude"](
                timestamp=us, timestamp_sample=us, q=np.array(q_frd2ned, np.float32),
                delta_q_reset=np.zeros(4, np.float32), quat_reset_counter=0)
            w.write(c_att, rec, ts.serialize_cdr(att, "px4_msgs/msg/VehicleAttitude"))
            imu = T["px4_msgs/msg/SensorCombined"](
                timestamp=us, gyro_rad=np.array([0.0, 0.0, 0.1], np.float32), gyro_integral_dt=20_000,
                accelerometer_timestamp_relative=0, accelerometer_m_s2=np.array([0.2, 0.0, -9.81], np.float32),
                accelerometer_integral_dt=20_000, accelerometer_clipping=0, gyro_clipping=0,
                accel_calibration_count=0, gyro_calibration_count=0)
            w.write(c_imu, rec + 1, ts.serialize_cdr(imu, "px4_msgs/msg/SensorCombined"))
            if k % 10 == 0:
                gps = (make_gps or _sensor_gps)(T, us, k)
                w.write(c_gps, rec + 2, ts.serialize_cdr(gps, gps_type))
    return path


def _sensor_gps(T, us, k):
    fields = dict(
        timestamp=us, timestamp_sample=us, device_id=1, latitude_deg=47.123456789 + k * 1e-6,
        longitude_deg=8.987654321, altitude_msl_m=430.0, altitude_ellipsoid_m=478.5, s_variance_m_s=0.3,
        c_variance_rad=0.1, fix_type=6, eph=0.8, epv=1.5, hdop=0.7, vdop=1.1, noise_per_ms=0,
        automatic_gain_control=0, jamming_state=1, jamming_indicator=0, spoofing_state=1, authentication_state=0,
        vel_m_s=5.0, vel_n_m_s=3.0, vel_e_m_s=4.0, vel_d_m_s=-0.5, cog_rad=0.9, vel_ned_valid=True,
        timestamp_time_relative=0, time_utc_usec=us, satellites_used=14, system_error=0, heading=float("nan"),
        heading_offset=float("nan"), heading_accuracy=0.0, rtcm_injection_rate=0.0, selected_rtcm_instance=0,
        rtcm_crc_failed=False, rtcm_msg_used=0, quality_corrections=0, quality_receiver=0, quality_gnss_signals=0,
        quality_post_processing=0)
    return T["px4_msgs/msg/SensorGps"](**fields)


def _check_px4_events(gps: list[GpsFix], imu: list[ImuSample], *, t_from_stamp: bool):
    assert len(gps) == 5 and len(imu) == 50
    f = gps[0]
    assert (f.lat, f.lon, f.alt) == (pytest.approx(47.123456789, abs=1e-12), pytest.approx(8.987654321, abs=1e-12),
                                     478.5)  # float64 degrees kept to the nanodegree; ellipsoid height
    assert f.status == STATUS_GBAS_FIX and f.sigma_h == pytest.approx(0.8, rel=1e-6)
    np.testing.assert_allclose(np.diag(f.cov_enu), [0.64, 0.64, 2.25], rtol=1e-6)
    np.testing.assert_allclose(f.velocity_enu, [4.0, 3.0, 0.5], rtol=1e-6)  # NED (3, 4, -0.5) -> ENU
    assert f.velocity_sigma_mps == pytest.approx(0.3, rel=1e-6)
    s = imu[0]
    # FRD (0.2, 0, -9.81) -> FLU (0.2, 0, +9.81); FRD rate about down -> FLU rate about up, negated
    np.testing.assert_allclose(s.linear_acceleration, [0.2, 0.0, 9.81], rtol=1e-6)
    np.testing.assert_allclose(s.angular_velocity, [0.0, 0.0, -0.1], rtol=1e-6)
    # nose 30 deg east of north: REP-103 yaw (from east, counter-clockwise) = 60 deg, level
    att = Attitude.from_quaternion(*s.orientation)
    assert (math.degrees(att.yaw), att.roll, att.pitch) == (pytest.approx(60.0, abs=1e-4), pytest.approx(0, abs=1e-6),
                                                            pytest.approx(0, abs=1e-6))
    # the same as R_NED2ENU @ R_frd2ned @ R_FRD2FLU written out
    yaw = math.radians(30)
    R_frd2ned = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    np.testing.assert_allclose(quaternion_to_matrix(s.orientation), R_NED2ENU @ R_frd2ned @ R_FRD2FLU, atol=1e-6)
    if t_from_stamp:
        assert [x.t_ns for x in imu[:3]] == [T0, T0 + 20_000_000, T0 + 40_000_000]
        assert gps[1].t_ns == T0 + 10 * 20_000_000


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_px4_bag_with_stored_definitions(tmp_path, storage):
    path = _px4_bag(tmp_path / "px4", storage=storage)
    with BagReader(path) as bag:
        assert bag.selection["gps"] == "/fmu/out/vehicle_gps_position"
        assert bag.selection["imu"] == "/fmu/out/sensor_combined"
        assert bag.selection["imu_attitude"] == "/fmu/out/vehicle_attitude"
        assert bag.typestore_used == "stored in the bag"
        evs = list(bag.events())
    _check_px4_events([e for e in evs if isinstance(e, GpsFix)], [e for e in evs if isinstance(e, ImuSample)],
                      t_from_stamp=True)


def test_px4_humble_bag_without_definitions_uses_the_shipped_ones(tmp_path, capsys):
    path = humble_style(_px4_bag(tmp_path / "px4h"))
    with BagReader(path) as bag:
        assert bag.typestore_used == "ros2_humble"
        evs = list(bag.events())
    _check_px4_events([e for e in evs if isinstance(e, GpsFix)], [e for e in evs if isinstance(e, ImuSample)],
                      t_from_stamp=True)
    assert runtime_main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {t["topic"]: t["type"] for t in info["topics"]}["/fmu/out/sensor_combined"] == "px4_msgs/SensorCombined"
    assert info["selection"]["imu_attitude"] == "/fmu/out/vehicle_attitude"
    assert info["first_fix"]["lat"] == pytest.approx(47.123456789)


def test_px4_boot_timestamps_fall_back_to_record_time(tmp_path):
    path = _px4_bag(tmp_path / "px4b", boot=True)
    with BagReader(path) as bag:
        imu = [e for e in bag.events(roles=["imu"]) if isinstance(e, ImuSample)]
        notes = bag.reading_notes()
    assert imu[0].t_ns == T0 + 1_500_000 + 1 and imu[1].t_ns == T0 + 20_000_000 + 1_500_000 + 1
    assert all(s.orientation is not None for s in imu)
    assert any("PX4 timestamps count from boot" in n and "record time" in n for n in notes)


OLD_SENSOR_GPS = """
uint64 timestamp
uint64 timestamp_sample
uint32 device_id
int32 lat
int32 lon
int32 alt
int32 alt_ellipsoid
float32 s_variance_m_s
float32 c_variance_rad
uint8 fix_type
float32 eph
float32 epv
float32 hdop
float32 vdop
int32 noise_per_ms
uint16 automatic_gain_control
uint8 jamming_state
int32 jamming_indicator
uint8 spoofing_state
float32 vel_m_s
float32 vel_n_m_s
float32 vel_e_m_s
float32 vel_d_m_s
float32 cog_rad
bool vel_ned_valid
int32 timestamp_time_relative
uint64 time_utc_usec
uint8 satellites_used
float32 heading
float32 heading_offset
float32 heading_accuracy
float32 rtcm_injection_rate
uint8 selected_rtcm_instance
"""  # PX4 v1.14's layout: lat/lon int32 1e-7 deg, alt mm


def _old_typestore():
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    from runtime.bags.msgtypes import px4_types

    ts = get_typestore(Stores.ROS2_JAZZY)
    types = px4_types()
    types.update(get_types_from_msg(OLD_SENSOR_GPS, "px4_msgs/msg/SensorGps"))
    ts.register(types)
    return ts


def _old_gps(T, us, k):
    return T["px4_msgs/msg/SensorGps"](
        timestamp=us, timestamp_sample=us, device_id=1, lat=471234567 + 10 * k, lon=89876543, alt=430000,
        alt_ellipsoid=478500, s_variance_m_s=0.3, c_variance_rad=0.1, fix_type=3, eph=2.0, epv=3.0, hdop=0.9,
        vdop=1.2, noise_per_ms=0, automatic_gain_control=0, jamming_state=0, jamming_indicator=0, spoofing_state=0,
        vel_m_s=0.0, vel_n_m_s=0.0, vel_e_m_s=0.0, vel_d_m_s=0.0, cog_rad=0.0, vel_ned_valid=False,
        timestamp_time_relative=0, time_utc_usec=us, satellites_used=9, heading=0.0, heading_offset=0.0,
        heading_accuracy=0.0, rtcm_injection_rate=0.0, selected_rtcm_instance=0)


def test_old_px4_sensor_gps_read_with_the_bags_own_definitions(tmp_path):
    path = _px4_bag(tmp_path / "old", n=20, typestore=_old_typestore(), make_gps=_old_gps)
    with BagReader(path) as bag:
        fixes = [e for e in bag.events(roles=["gps"]) if isinstance(e, GpsFix)]
    assert fixes[0].lat == pytest.approx(47.1234567, abs=1e-9) and fixes[0].lon == pytest.approx(8.9876543)
    assert fixes[0].alt == pytest.approx(478.5) and fixes[0].velocity_enu is None


def test_old_px4_layout_without_definitions_is_a_clear_error(tmp_path):
    """The shipped (recent) SensorGps does not fit v1.14 bytes: CDR sizes differ, every fix fails -> BagError."""
    path = humble_style(_px4_bag(tmp_path / "oldh", n=250, typestore=_old_typestore(), make_gps=_old_gps))
    with BagReader(path) as bag:
        with pytest.raises(BagError, match="/fmu/out/vehicle_gps_position: none of its first 20 messages can be used "
                                           ".*does not deserialize.*--typestore"):
            list(bag.events(roles=["gps"]))
