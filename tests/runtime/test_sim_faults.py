"""runtime.sim domain randomisation and sensor faults: vehicles, IMU faults and frames, GPS drags, correlated GPS
noise, no /gps/vel, randomized flights and resampled imagery, on short flights over a real orthophoto."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from calibration.camera_io import load_camera
from calibration.geometry import NADIR_MOUNT
from maps.geodesy import LocalFrame
from maps.geotiff import load_orthophoto
from runtime.bags import typestore
from runtime.errors import SimulationError
from runtime.events import quaternion_to_matrix
from runtime.sim.config import SimConfig, parse_drag
from runtime.sim.flight import accel_faults, fixed_wing_roll, from_ned_frd, plan_flight, simulate, to_ned_frd
from runtime.sim.gnss import GnssErrorModel, simulate_errors
from runtime.sim.trajectory import GRAVITY

ZURICH = "ortho/swissimage_zurich_a_0.5m.tif"
CAMERA_YAML = """%YAML:1.0
---
image_width: 160
image_height: 120
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 117.1, 0., 79.5, 0., 117.1, 59.5, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ -0.05, 0., 0., 0., 0. ]
"""
QUIET_IMU = dict(imu_accel_sigma_mps2=0.0, imu_gyro_sigma_rps=0.0, imu_attitude_sigma_deg=0.0, imu_yaw_sigma_deg=0.0)


@pytest.fixture(scope="module")
def zurich(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    cam = root / "cam160.yaml"
    cam.write_text(CAMERA_YAML)
    return {"ortho": str(shared_data(ZURICH)), "camera": str(cam), "root": root}


def _fly(zurich, name: str, **kw) -> Path:
    base = dict(ortho=zurich["ortho"], camera=zurich["camera"], out=str(zurich["root"] / f"{name}.bag"),
                duration_s=6.0, camera_rate_hz=1.0, imu_rate_hz=20.0, seed=3)
    simulate(SimConfig(**(base | kw)))
    return Path(base["out"] if "out" not in kw else kw["out"])


def _msgs(path: Path, topic: str) -> list:
    with AnyReader([path], default_typestore=typestore()) as r:
        conns = [c for c in r.connections if c.topic == topic]
        return [(t, r.deserialize(raw, c.msgtype)) for c, t, raw in r.messages(connections=conns)]


def _imu(path: Path):
    msgs = _msgs(path, "/imu/data")
    t = np.array([t for t, _ in msgs])
    q = np.array([[m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w] for _, m in msgs])
    w = np.array([[m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z] for _, m in msgs])
    a = np.array([[m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z] for _, m in msgs])
    return t, np.array([quaternion_to_matrix(x) for x in q]), w, a, msgs[0][1].header.frame_id


def _plan(zurich, **kw):
    cfg = SimConfig(ortho=zurich["ortho"], camera=zurich["camera"], duration_s=30.0, **kw)
    return plan_flight(cfg, load_orthophoto(cfg.ortho), load_camera(cfg.camera), NADIR_MOUNT)


# ---------------------------------------------------------------------------------------------- GPS
def test_drag_grows_at_its_rate_and_ends():
    t = np.arange(0.0, 20.0, 0.2)
    model = GnssErrorModel(sigma_m=0.0, bias_m=0.0, vertical_sigma_m=0.0, velocity_sigma_mps=0.0,
                           drags=((5.0, 12.0, 2.5),))
    e = simulate_errors(model, t, seed=2)
    inside = (t >= 5.0) & (t < 12.0)
    np.testing.assert_array_equal(e.dragged, inside)
    np.testing.assert_allclose(np.linalg.norm(e.drag_enu, axis=1), np.where(inside, 2.5 * (t - 5.0), 0.0), atol=1e-9)
    np.testing.assert_allclose(e.error_enu[:, :2], e.drag_enu, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(e.velocity_error_enu[:, :2], axis=1), np.where(inside, 2.5, 0.0))
    direction = e.drag_enu[inside][-1] / np.linalg.norm(e.drag_enu[inside][-1])
    np.testing.assert_allclose(e.velocity_error_enu[inside][:, :2], np.tile(2.5 * direction, (inside.sum(), 1)))
    assert parse_drag("5:12:2.5") == (5.0, 12.0, 2.5)


def test_drag_in_the_bag_moves_fixes_and_velocity(zurich):
    quiet = dict(gps_sigma_m=0.0, gps_bias_m=0.0, gps_vertical_sigma_m=0.0, gps_velocity_sigma_mps=0.0,
                 camera_rate_hz=5.0)
    plain = _fly(zurich, "nodrag", **quiet)
    drag = _fly(zurich, "drag", gps_drags=("1:4:3",), **quiet)
    fixes, truth = _msgs(drag, "/gps/fix"), _msgs(drag, "/ground_truth/fix")
    assert [t for t, _ in fixes] == [t for t, _ in truth]  # 5 Hz both
    frame = LocalFrame(truth[0][1].latitude, truth[0][1].longitude)
    off = []
    for (t, f), (_, g) in zip(fixes, truth):
        fx, fy = frame.to_local(f.latitude, f.longitude)
        gx, gy = frame.to_local(g.latitude, g.longitude)
        off.append(math.hypot(fx - gx, fy - gy))
    ts = (np.array([t for t, _ in fixes]) - fixes[0][0]) / 1e9
    expected = np.where((ts >= 1.0) & (ts < 4.0), 3.0 * (ts - 1.0), 0.0)
    np.testing.assert_allclose(off, expected, atol=0.01)
    v0 = np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y] for _, m in _msgs(plain, "/gps/vel")])
    v1 = np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y] for _, m in _msgs(drag, "/gps/vel")])
    np.testing.assert_allclose(np.linalg.norm(v1 - v0, axis=1), np.where((ts >= 1.0) & (ts < 4.0), 3.0, 0.0),
                               atol=1e-9)


def test_no_gps_velocity_topic(zurich):
    out = _fly(zurich, "novel", gps_velocity=False)
    with AnyReader([out], default_typestore=typestore()) as r:
        topics = set(r.topics)
    assert "/gps/vel" not in topics and "/gps/fix" in topics


@pytest.mark.parametrize("tau", [0.0, 30.0])
def test_gauss_markov_gps_noise_is_correlated_with_the_stated_sigma(tau):
    t = np.arange(0.0, 30000.0, 1.0)
    model = GnssErrorModel(sigma_m=5.0, bias_m=0.0, noise_tau_s=tau)
    x = simulate_errors(model, t, seed=1).error_enu[:, 0]
    assert np.std(x) == pytest.approx(5.0, rel=0.1)
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 == pytest.approx(math.exp(-1.0 / tau) if tau else 0.0, abs=0.03)
    if tau:
        lag30 = np.corrcoef(x[:-30], x[30:])[0, 1]
        assert lag30 == pytest.approx(math.exp(-1.0), abs=0.1)


# ---------------------------------------------------------------------------------------------- IMU
def test_ned_frd_round_trip(zurich):
    t0, R0, w0, a0, f0 = _imu(_fly(zurich, "enu"))
    t1, R1, w1, a1, f1 = _imu(_fly(zurich, "ned", imu_frame="ned_frd"))
    assert (f0, f1) == ("imu", "imu_frd")
    np.testing.assert_array_equal(t0, t1)
    R, w, a = from_ned_frd(R1, w1, a1)
    np.testing.assert_allclose(R, R0, atol=1e-9)
    np.testing.assert_allclose(w, w0, atol=1e-12)
    np.testing.assert_allclose(a, a0, atol=1e-12)
    assert np.all(a1[:, 2] < -8.0) and np.all(a0[:, 2] > 8.0)  # FRD z points down: gravity's reaction reads -g
    assert np.all(R1[:, 2, 2] > 0.9)  # body down ~ world down
    yaw_enu, heading = np.arctan2(R0[:, 1, 0], R0[:, 0, 0]), np.arctan2(R1[:, 1, 0], R1[:, 0, 0])  # NED yaw = heading
    np.testing.assert_allclose(np.cos(heading - (math.pi / 2 - yaw_enu)), 1.0, atol=1e-9)
    Rt, wt, at = to_ned_frd(*from_ned_frd(R1, w1, a1))
    np.testing.assert_allclose(Rt, R1, atol=1e-12)


def test_accelerometer_bias_and_scale_error_in_the_body_frame(zurich):
    _, _, _, a0, _ = _imu(_fly(zurich, "quiet", **QUIET_IMU))
    _, _, _, a1, _ = _imu(_fly(zurich, "bias", imu_accel_bias_mps2=0.4, **QUIET_IMU))
    bias, _ = accel_faults(3, 0.4, 0.0)
    assert np.linalg.norm(bias) == pytest.approx(0.4)
    np.testing.assert_allclose(a1 - a0, np.tile(bias, (len(a0), 1)), atol=1e-6)
    _, _, _, a2, _ = _imu(_fly(zurich, "scale", imu_accel_scale_error=0.05, **QUIET_IMU))
    ratio = a2[:, 2] / a0[:, 2]
    assert np.allclose(ratio, ratio[0]) and abs(ratio[0] - 1.0) == pytest.approx(0.05)
    _, scale = accel_faults(3, 0.0, 0.05)
    np.testing.assert_allclose(a2, a0 * (1.0 + scale), atol=1e-6)


def test_soft_mount_leaks_gravity_by_the_wobble(zurich):
    kw = dict(attitude_jitter_deg=2.0, imu_rate_hz=50.0, **QUIET_IMU)
    t, R, _, a_true, _ = _imu(_fly(zurich, "stiff", **kw))
    _, R2, _, a_soft, _ = _imu(_fly(zurich, "soft", imu_accel_sees_attitude=False, **kw))
    np.testing.assert_allclose(R2, R, atol=1e-12)  # the orientation still reports the wobble
    f_true = np.einsum("nij,nj->ni", R, a_true)  # a + g e_z
    f_soft = np.einsum("nij,nj->ni", R, a_soft)
    leak = np.linalg.norm(f_soft[:, :2] - f_true[:, :2], axis=1)
    from runtime.sim.flight import FlightModel

    cfg = SimConfig(seed=3, **kw)
    j = FlightModel(None, cfg).jitter((t - t[0]) / 1e9)
    tilt = np.arccos(np.cos(j[:, 0]) * np.cos(j[:, 1]))
    np.testing.assert_allclose(leak, GRAVITY * np.sin(tilt), rtol=0.15, atol=0.03)
    assert np.sqrt(np.mean(leak**2)) > 0.2  # ~ g * 2 deg
    assert np.max(np.abs(f_true[:, 2] - GRAVITY)) < 0.5


def test_imu_time_offset_shifts_the_stamps(zurich):
    t0, _, _, a0, _ = _imu(_fly(zurich, "t0"))
    t1, _, _, a1, _ = _imu(_fly(zurich, "t1", imu_time_offset_s=-0.25))
    np.testing.assert_array_equal(t1, t0 - 250_000_000)
    np.testing.assert_array_equal(a1, a0)  # the same samples, stamped by an offset clock
    cam0 = [t for t, _ in _msgs(zurich["root"] / "t0.bag", "/camera/camera_info")]
    cam1 = [t for t, _ in _msgs(zurich["root"] / "t1.bag", "/camera/camera_info")]
    assert cam0 == cam1


# ---------------------------------------------------------------------------------------------- vehicles
def test_fixed_wing_banks_like_a_coordinated_turn(zurich):
    plan = _plan(zurich, vehicle="fixed_wing", trajectory="racetrack", attitude_jitter_deg=0.0, speed_mps=8.0,
                 max_accel_mps2=2.5)
    t = np.arange(0.0, 30.0, 0.05)
    R = plan.model.attitude(t)
    kin = plan.trajectory.sample(t)
    yaw_rate = np.gradient(np.unwrap(kin.yaw), t)
    expected = -np.arctan(8.0 * yaw_rate / GRAVITY)  # banked into the turn: a left turn lowers the left wing
    roll = np.arcsin(R[:, 2, 1])  # body y (left) against the horizon
    np.testing.assert_allclose(roll[2:-2], expected[2:-2], atol=2e-3)
    np.testing.assert_allclose(roll, fixed_wing_roll(kin), atol=1e-9)
    assert np.max(np.abs(roll)) > math.radians(3.0)  # it turned (racetrack radius: as wide as the area allows)
    vel_dir = kin.velocity / np.linalg.norm(kin.velocity, axis=1, keepdims=True)
    nose = np.degrees(np.arcsin(np.einsum("ni,ni->n", R[:, :, 0], [[0, 0, 1]])))
    # 3 deg nose up in the rolled frame (the roll is about the velocity axis): elevation asin(cos(roll) sin 3 deg)
    np.testing.assert_allclose(nose, np.degrees(np.arcsin(np.cos(roll) * math.sin(math.radians(3.0)))), atol=1e-9)
    assert np.all(np.einsum("ni,ni->n", R[:, :, 0], vel_dir) > math.cos(math.radians(3.01)))


def test_ground_vehicle_stays_level_and_multicopter_tilts(zurich):
    kw = dict(trajectory="racetrack", attitude_jitter_deg=0.0, speed_mps=8.0, max_accel_mps2=2.5)
    t = np.arange(0.0, 30.0, 0.1)
    R = _plan(zurich, vehicle="ground", **kw).model.attitude(t)
    np.testing.assert_allclose(R[:, 2, 2], 1.0, atol=1e-12)
    Rm = _plan(zurich, **kw).model.attitude(t)
    assert np.degrees(np.max(np.arccos(np.clip(Rm[:, 2, 2], -1, 1)))) > 3.0


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw, message", [
    (dict(vehicle="boat"), "vehicle must be one of multicopter, fixed_wing, ground, got 'boat'"),
    (dict(imu_frame="ned"), "imu_frame must be one of enu_flu, ned_frd .*got 'ned'"),
    (dict(imu_accel_bias_mps2=-1.0), "imu_accel_bias_mps2 must be a finite number >= 0, got -1.0"),
    (dict(imu_accel_scale_error=-0.1), "imu_accel_scale_error must be a finite number >= 0, got -0.1"),
    (dict(imu_accel_scale_error=1.5), r"imu_accel_scale_error must be < 1 \(a fraction, e.g. 0.02 for 2%\), got 1.5"),
    (dict(imu_accel_sees_attitude="no"), "imu_accel_sees_attitude must be true or false, got 'no'"),
    (dict(gps_velocity=0), "gps_velocity must be true or false, got 0"),
    (dict(imu_time_offset_s=1.5), r"imu_time_offset_s must be a finite number of seconds in \[-1, 1\], got 1.5"),
    (dict(imu_time_offset_s=float("nan")), r"imu_time_offset_s must be a finite number of seconds in \[-1, 1\]"),
    (dict(gps_noise_tau_s=-2.0), "gps_noise_tau_s must be a finite number >= 0, got -2.0"),
    (dict(gps_drags=("5:3:1",)), r"malformed window '5:3:1': needs 0 <= START < END; expected START:END:MPS"),
    (dict(gps_drags=("5:8",)), r"malformed window '5:8': 2 value\(s\), expected START:END:MPS"),
    (dict(gps_drags=("5:8:-1",)), "malformed window '5:8:-1': MPS must be >= 0; expected START:END:MPS"),
    (dict(gps_drags=("5:8:x",)), "malformed window '5:8:x': 'x' is not a number; expected START:END:MPS"),
    (dict(gps_drags=("500:600:1",)), "window 500:600 starts after the flight ends"),
])
def test_new_settings_are_validated(kw, message):
    with pytest.raises(SimulationError, match=message):
        SimConfig(**kw)


def test_new_settings_load_from_a_mapping_and_round_trip():
    with pytest.raises(SimulationError, match=r"gps_drags must be a list of windows like \[\"60:90:2\"\]"):
        SimConfig.from_dict({"gps_drags": "60:90:2"})
    cfg = SimConfig.from_dict({"gps_drags": ["60:90:2"], "vehicle": "ground", "imu_frame": "ned_frd",
                               "gps_velocity": False, "imu_time_offset_s": -0.5})
    assert cfg.gps_drags == ((60.0, 90.0, 2.0),) and cfg.to_dict()["gps_drags"] == ["60:90:2"]
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SimulationError, match="GNSS noise_tau_s must be a number of seconds >= 0"):
        GnssErrorModel(noise_tau_s=-1.0)


def test_simulate_cli_fault_flags():
    import argparse

    from runtime.sim.cli import config_from_args, register

    parser = argparse.ArgumentParser(prog="test")
    register(parser.add_subparsers(dest="command", required=True))
    cfg = config_from_args(parser.parse_args([
        "simulate", "--vehicle", "fixed_wing", "--imu-accel-bias", "0.2", "--imu-accel-scale-error", "0.01",
        "--imu-accel-no-attitude", "--imu-frame", "ned_frd", "--imu-time-offset", "-0.1", "--gps-drag", "10:20:1",
        "--gps-drag", "30:40:2", "--no-gps-velocity", "--gps-noise-tau", "60",
    ]))
    assert (cfg.vehicle, cfg.imu_accel_bias_mps2, cfg.imu_accel_scale_error, cfg.imu_accel_sees_attitude,
            cfg.imu_frame, cfg.imu_time_offset_s, cfg.gps_drags, cfg.gps_velocity, cfg.gps_noise_tau_s) == (
        "fixed_wing", 0.2, 0.01, False, "ned_frd", -0.1, ((10.0, 20.0, 1.0), (30.0, 40.0, 2.0)), False, 60.0)
    default = config_from_args(parser.parse_args(["simulate"]))
    assert default.gps_velocity and default.imu_accel_sees_attitude
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--help"])


# ---------------------------------------------------------------------------------------------- randomisation
def test_write_camera_file_reads_back(tmp_path):
    from runtime.sim.randomize import write_camera_file

    path = write_camera_file(tmp_path / "c.yaml", width=1280, height=720, fx=800.0, k1=-0.2, k2=0.05)
    cam = load_camera(path)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) == (1280, 720, 800.0, 800.0, 639.5, 359.5)
    assert cam.distortion[:2] == (-0.2, 0.05)
    assert not any(load_camera(write_camera_file(tmp_path / "d.yaml", width=640, height=480, fx=500.0)).distortion)
    with pytest.raises(SimulationError, match="cannot write camera file"):
        write_camera_file(tmp_path / "e.yaml", width=640, height=480, fx=-5.0)


def test_draw_flight_is_deterministic_and_inside_the_ranges(zurich, tmp_path):
    from runtime.sim.randomize import DomainRanges, draw_flight

    ranges = DomainRanges()
    drawn = []
    for seed in range(4):
        a = draw_flight(seed, ranges, ortho=zurich["ortho"], out=tmp_path / "a.bag", workdir=tmp_path,
                        duration_s=10.0)
        text = Path(a.camera).read_text()
        b = draw_flight(seed, ranges, ortho=zurich["ortho"], out=tmp_path / "a.bag", workdir=tmp_path,
                        duration_s=10.0)
        assert a == b and Path(b.camera).read_text() == text
        cam = load_camera(a.camera)
        assert (cam.width, cam.height) in ranges.resolution and 300.0 <= cam.fx <= 1200.0
        assert -0.3 <= (cam.distortion or (0.0,))[0] <= 0.1
        assert 40.0 <= a.altitude_m <= 150.0 and 3.0 <= a.speed_mps <= 20.0 and 1.0 <= a.max_accel_mps2 <= 4.0
        assert 0.5 <= a.attitude_jitter_deg <= 2.0 and a.camera_rate_hz == 5.0 and a.vehicle in ranges.vehicle
        assert a.duration_s == 10.0 and a.seed == seed
        drawn.append((a.altitude_m, a.vehicle))
    assert len(set(drawn)) == 4
    over = draw_flight(1, ranges, ortho=zurich["ortho"], out=tmp_path / "a.bag", workdir=tmp_path,
                       duration_s=10.0, vehicle="ground")
    assert over.vehicle == "ground"


def test_draw_flight_says_why_when_nothing_fits(zurich, tmp_path):
    from runtime.sim.randomize import DomainRanges, draw_flight

    wide = DomainRanges(fx=(300.0, 300.0), k1=(0.0, 0.0), resolution=((1920, 1080),), height_m=(140.0, 150.0))
    with pytest.raises(SimulationError, match=r"draw_flight\(seed=0\): the planner refused 8 draws .*last reason"):
        draw_flight(0, wide, ortho=zurich["ortho"], out=tmp_path / "a.bag", workdir=tmp_path, duration_s=10.0)
    with pytest.raises(SimulationError, match="DomainRanges.speed_mps must be finite with 0 <= low <= high"):
        DomainRanges(speed_mps=(5.0, 2.0))
    with pytest.raises(SimulationError, match="DomainRanges.vehicle must be a non-empty subset"):
        DomainRanges(vehicle=("boat",))


# ---------------------------------------------------------------------------------------------- imagery
@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_resample_ortho_covers_the_same_ground(zurich, tmp_path, crs):
    import rasterio
    from pyproj import Transformer

    from runtime.sim.imagery import resample_ortho

    src = load_orthophoto(zurich["ortho"])
    path = resample_ortho(zurich["ortho"], tmp_path / "sat.tif", gsd_m=1.0, crs=crs)
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == int(crs[5:]) and ds.count == 4
        # the centre pixel: raster -> CRS -> WGS84 -> CRS -> raster
        col, row = ds.width / 2.0, ds.height / 2.0
        x, y = ds.transform @ (col, row)
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
        x2, y2 = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        c2, r2 = ~ds.transform @ (x2, y2)
        assert (c2, r2) == pytest.approx((col, row), abs=1e-6)
    sat = load_orthophoto(path)
    assert sat.gsd == pytest.approx(1.0, rel=0.02)
    area_src, area_sat = src.mask.sum() * src.gsd**2, sat.mask.sum() * sat.gsd**2
    assert area_sat == pytest.approx(area_src, rel=0.03)
    # the same ground: the centre of the source (WGS84) looks the same in both
    la, lo = src.frame.to_wgs84(0.0, 0.0)
    sx, sy = sat.frame.to_local(la, lo)
    assert abs(sx) < 30 and abs(sy) < 30
    gray = lambda o, x, y: o.image[  # noqa: E731
        np.round((o.y_max - y) / o.gsd).astype(int), np.round((x - o.x_min) / o.gsd).astype(int)].mean(axis=-1)
    gx, gy = np.meshgrid(np.linspace(-150, 150, 31), np.linspace(-100, 100, 21))
    lat, lon = src.frame.to_wgs84(gx.ravel(), gy.ravel())
    ux, uy = sat.frame.to_local(lat, lon)
    a, b = gray(src, gx.ravel(), gy.ravel()), gray(sat, np.asarray(ux), np.asarray(uy))
    assert np.corrcoef(a, b)[0, 1] > 0.8


def test_resample_ortho_errors(zurich, tmp_path):
    from runtime.sim.imagery import resample_ortho

    with pytest.raises(SimulationError, match="gsd_m must be a finite number of metres per pixel > 0"):
        resample_ortho(zurich["ortho"], tmp_path / "x.tif", gsd_m=0.0)
    with pytest.raises(SimulationError, match="crs must be a CRS rasterio accepts"):
        resample_ortho(zurich["ortho"], tmp_path / "x.tif", gsd_m=1.0, crs="EPSG:999999")
    with pytest.raises(SimulationError, match="folder .* does not exist"):
        resample_ortho(zurich["ortho"], tmp_path / "nope" / "x.tif", gsd_m=1.0)
