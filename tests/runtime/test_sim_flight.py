"""runtime.sim end to end: the simulated bag's layout, GPS errors, truth, IMU vs the rendered view, determinism,
the ``skyfix simulate`` CLI on a real orthophoto and ``runtime inspect`` on a real bag."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from calibration.camera_io import load_camera
from calibration.geometry import Attitude
from calibration.view import render
from maps.geodesy import LocalFrame
from maps.geotiff import load_orthophoto, write_geotiff
from maps.ortho import Orthophoto
from runtime.bags import BagReader, typestore
from runtime.cli.common import run_handler
from runtime.errors import SimulationError
from runtime.events import Frame, GpsFix, ImuSample, TruthPose
from runtime.sim.config import SimConfig
from runtime.sim.flight import TOPICS, plan_flight, simulate

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
DURATION = 20.0
OUTAGE = (5.0, 8.0)
SPOOF = (12.0, 15.0, 150.0)


def _parser(register) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _skyfix(argv):
    from runtime.sim.cli import register

    return run_handler(_parser(register).parse_args(argv))


def _runtime(argv):
    from runtime.cli.bag import register

    return run_handler(_parser(register).parse_args(argv))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A textured 400 x 300 m GeoTIFF (0.5 m/px, local frame at 47 N 8 E) and a 160x120 camera file."""
    root = tmp_path_factory.mktemp("sim")
    gen = np.random.default_rng(0)
    h, w = 600, 800
    tex = np.zeros((h, w, 3), np.float32)
    for sigma, amp in ((24, 90), (6, 50), (1.5, 25)):
        n = gen.standard_normal((h, w, 3)).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), sigma)
        tex += amp * n / n.std()
    img = np.clip(tex + 128, 0, 255).astype(np.uint8)
    ortho = Orthophoto(img, np.ones((h, w), bool), 0.5, -200.0, 150.0, LocalFrame(47.0, 8.0))
    tif = write_geotiff(root / "synthetic.tif", ortho)
    cam = root / "cam160.yaml"
    cam.write_text(CAMERA_YAML)
    return {"root": root, "ortho": tif, "camera": cam}


@pytest.fixture(scope="module")
def flight(synthetic):
    out = synthetic["root"] / "flight.bag"
    cfg = SimConfig(
        ortho=str(synthetic["ortho"]), camera=str(synthetic["camera"]), out=str(out), duration_s=DURATION,
        gps_sigma_m=5.0, gps_bias_m=3.0, gps_bias_mode="constant", gps_outages=(OUTAGE,), gps_spoofs=(SPOOF,),
        seed=4,
    )
    summary = simulate(cfg)
    with BagReader(out) as bag:
        events = list(bag.events())
    return {"cfg": cfg, "summary": summary, "out": out, "events": events}


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


# ---------------------------------------------------------------------------------------------- layout
def test_bag_layout_with_anyreader(flight):
    with AnyReader([flight["out"]], default_typestore=typestore()) as r:
        topics = {n: (t.msgtype, t.msgcount) for n, t in r.topics.items()}
        n_gps = 100 - 15  # 5 Hz, minus the 3 s outage
        assert topics == {
            "/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 100),
            "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 100),
            "/gps/fix": ("sensor_msgs/msg/NavSatFix", n_gps),
            "/gps/vel": ("geometry_msgs/msg/TwistWithCovarianceStamped", n_gps),
            "/ground_truth/fix": ("sensor_msgs/msg/NavSatFix", 100),
            "/ground_truth/pose": ("geometry_msgs/msg/PoseStamped", 100),
            "/imu/data": ("sensor_msgs/msg/Imu", 1000),
        }
        assert r.duration == pytest.approx((DURATION - 0.02) * 1e9, abs=1)  # last IMU sample at 19.98 s
        first = {}
        for conn, t, raw in r.messages():
            first.setdefault(conn.topic, (t, r.deserialize(raw, conn.msgtype)))
    img_msg = first["/camera/image_raw/compressed"][1]
    assert img_msg.format == "jpeg" and bytes(img_msg.data[:2]) == b"\xff\xd8"
    assert first["/camera/camera_info"][1].width == 160
    assert first["/ground_truth/pose"][1].header.frame_id.startswith("enu@")
    assert first["/imu/data"][1].header.frame_id == "imu"
    assert flight["summary"].counts == {k: v for k, (_, v) in topics.items()} | {}
    assert set(flight["summary"].counts) == set(TOPICS)
    assert flight["out"].stat().st_size < 2_000_000


def test_reader_picks_the_simulated_topics(flight):
    with BagReader(flight["out"]) as bag:
        assert bag.selection == {
            "camera": "/camera/image_raw/compressed", "camera_info": "/camera/camera_info", "gps": "/gps/fix",
            "imu": "/imu/data", "truth_fix": "/ground_truth/fix", "truth_pose": "/ground_truth/pose",
            "gps_velocity": "/gps/vel",
        }
        assert bag.missing_notes() == [] and bag.notes == []
    times = [e.t_ns for e in flight["events"]]
    assert times == sorted(times)


# ---------------------------------------------------------------------------------------------- truth, GPS
def _truth_by_t(events):
    return {e.t_ns: e for e in _of(events, TruthPose)}


def test_truth_is_consistent_and_inside_the_orthophoto(flight, synthetic):
    truth = _of(flight["events"], TruthPose)
    t0 = flight["cfg"].start_time_ns
    assert truth[0].t_ns == t0 and truth[0].x == pytest.approx(0, abs=1e-6) and truth[0].y == pytest.approx(0, abs=1e-6)
    assert all(tp.z == pytest.approx(60.0) and tp.alt == pytest.approx(60.0) for tp in truth)
    ortho = load_orthophoto(synthetic["ortho"])
    x, y = ortho.frame.to_local(np.array([t.lat for t in truth]), np.array([t.lon for t in truth]))
    x0, y0, x1, y1 = ortho.bounds
    radius = flight["summary"].footprint_radius_m
    assert np.all((x > x0 + radius) & (x < x1 - radius) & (y > y0 + radius) & (y < y1 - radius))
    # constant ground speed in the pose frame
    p = np.array([[t.x, t.y] for t in truth])
    speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / 0.2
    np.testing.assert_allclose(speed, 8.0, atol=0.01)
    # frames are fully inside valid imagery (the render mask never fell off it; no black border)
    assert flight["summary"].invalid_pixel_fraction == 0.0
    for f in _of(flight["events"], Frame)[::10]:
        img = f.image
        for border in (img[:2], img[-2:], img[:, :2], img[:, -2:]):
            assert np.mean(np.all(border < 3, axis=-1)) < 0.05


def test_gps_errors_outage_and_spoof(flight):
    truth = _truth_by_t(flight["events"])
    fixes = _of(flight["events"], GpsFix)
    t0 = flight["cfg"].start_time_ns
    frame = LocalFrame(fixes[0].lat, fixes[0].lon)
    ts = np.array([(f.t_ns - t0) / 1e9 for f in fixes])
    assert not np.any((ts >= OUTAGE[0]) & (ts < OUTAGE[1]))  # absent during the outage
    assert len(fixes) == 85
    gx, gy = frame.to_local(np.array([f.lat for f in fixes]), np.array([f.lon for f in fixes]))
    tx, ty = frame.to_local(np.array([truth[f.t_ns].lat for f in fixes]), np.array([truth[f.t_ns].lon for f in fixes]))
    err = np.column_stack([gx - tx, gy - ty])
    spoof = (ts >= SPOOF[0]) & (ts < SPOOF[1])
    assert spoof.sum() == 15
    normal = err[~spoof]
    assert np.std(normal, axis=0) == pytest.approx([5.0, 5.0], rel=0.35)
    assert np.linalg.norm(normal.mean(axis=0)) < 3.0 + 3 * 5.0 / math.sqrt(len(normal)) * 1.5
    jump = np.linalg.norm(err[spoof].mean(axis=0) - normal.mean(axis=0))
    assert jump == pytest.approx(SPOOF[2], abs=5.0)
    for f in fixes:  # the covariance claims the nominal sigma, spoofed or not
        np.testing.assert_allclose(f.cov_enu, np.diag([25.0, 25.0, 56.25]))
        assert f.covariance_type == 2 and f.status == 0
    alt_err = np.array([f.alt - truth[f.t_ns].alt for f in fixes])
    assert 3.0 < np.std(alt_err) < 12.0


def test_gps_velocity_is_the_true_velocity_plus_noise_even_when_spoofed(flight):
    """Round trip: simulated /gps/vel -> BagReader -> GpsFix.velocity_enu vs the truth's velocity (8 m/s track)."""
    truth = _of(flight["events"], TruthPose)
    fixes = _of(flight["events"], GpsFix)
    t0 = flight["cfg"].start_time_ns
    assert all(f.velocity_enu is not None and f.velocity_sigma_mps == pytest.approx(0.3) for f in fixes)
    # true velocity at each fix from the truth poses (5 Hz, same clock): central differences
    tt = np.array([p.t_ns for p in truth]) / 1e9
    p = np.array([[q.x, q.y] for q in truth])
    vt = np.column_stack([np.gradient(p[:, 0], tt), np.gradient(p[:, 1], tt)])
    ft = np.array([f.t_ns for f in fixes]) / 1e9
    inner = (ft > tt[1]) & (ft < tt[-2])
    true_v = np.column_stack([np.interp(ft, tt, vt[:, 0]), np.interp(ft, tt, vt[:, 1])])[inner]
    # the pose frame and the GPS's ENU differ by a tiny grid convergence: compare within the noise
    err = np.array([f.velocity_xy for f in fixes])[inner] - true_v
    assert np.std(err, axis=0) == pytest.approx([0.3, 0.3], rel=0.35)
    assert np.all(np.abs(err.mean(axis=0)) < 0.15)
    speed = np.linalg.norm(np.array([f.velocity_xy for f in fixes]), axis=1)
    assert np.median(speed) == pytest.approx(8.0, abs=0.2)
    ts = (ft * 1e9 - t0) / 1e9
    spoof = (ts >= SPOOF[0]) & (ts < SPOOF[1])
    assert np.all(np.linalg.norm(err[spoof[inner]], axis=1) < 1.5)  # position-only spoof: the velocity stays true


# ---------------------------------------------------------------------------------------------- IMU vs view
def test_imu_yaw_follows_the_track_and_gravity(flight):
    imu = _of(flight["events"], ImuSample)
    truth = _of(flight["events"], TruthPose)
    p = np.array([[t.x, t.y] for t in truth])
    track = np.arctan2(np.gradient(p[:, 1]), np.gradient(p[:, 0]))
    imu_at = {s.t_ns: s for s in imu}
    for k, tp in enumerate(truth[1:-1], 1):
        s = imu_at[tp.t_ns]
        yaw = Attitude.from_quaternion(*s.orientation).yaw
        assert abs(math.remainder(yaw - track[k], 2 * math.pi)) < math.radians(6)
        # truth attitude and IMU orientation agree within the simulated AHRS error
        d = s.R_body2world.T @ tp.R_body2world
        assert math.degrees(math.acos(np.clip((np.trace(d) - 1) / 2, -1, 1))) < 5
    f = np.array([s.linear_acceleration for s in imu])
    assert np.linalg.norm(f, axis=1) == pytest.approx(9.81, abs=0.5)
    # the specific force is along the body z axis (thrust) within the wobble
    assert np.median(f[:, 2] / np.linalg.norm(f, axis=1)) > 0.99
    # body yaw rate integrates to the change of yaw
    w = np.array([s.angular_velocity for s in imu])
    yaws = np.unwrap([Attitude.from_quaternion(*s.orientation).yaw for s in imu])
    assert np.sum(w[:, 2]) * 0.02 == pytest.approx(yaws[-1] - yaws[0], abs=0.15)


def _ncc(a, b):
    a = a.astype(float) - a.mean()
    b = b.astype(float) - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_imu_orientation_matches_the_rendered_view(flight, synthetic):
    """Re-render at the truth position with the IMU's attitude: the recorded frame matches it, and not the view
    turned by 90 degrees (so yaw, and image top = body forward, are consistent)."""
    ortho = load_orthophoto(synthetic["ortho"])
    cam = load_camera(synthetic["camera"])
    imu_at = {s.t_ns: s for s in _of(flight["events"], ImuSample)}
    truth = _truth_by_t(flight["events"])
    for frame in _of(flight["events"], Frame)[5::30]:
        tp = truth[frame.t_ns]
        att = Attitude.from_quaternion(*imu_at[frame.t_ns].orientation)
        x, y = ortho.frame.to_local(tp.lat, tp.lon)
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        scores = []
        for dyaw in (0.0, math.pi / 2, math.pi):
            ref, _ = render(ortho, cam, (x, y), tp.alt, Attitude(att.roll, att.pitch, att.yaw + dyaw))
            scores.append(_ncc(grey, cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)))
        assert scores[0] > 0.8 and scores[0] > scores[1] + 0.3 and scores[0] > scores[2] + 0.3, scores


def test_ground_moves_down_the_image_when_flying_forward(flight):
    """Body forward = image top: consecutive frames shift the ground towards the image bottom by v dt / gsd."""
    frames = _of(flight["events"], Frame)
    shifts = []
    for a, b in zip(frames[:-1], frames[1:]):
        ga = cv2.cvtColor(a.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gb = cv2.cvtColor(b.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
        shifts.append((dx, dy))
    dx, dy = np.median(np.array(shifts), axis=0)
    expected = 8.0 * 0.2 / (60.0 / 117.1)  # ~3.1 px per frame
    assert dy == pytest.approx(expected, rel=0.35) and abs(dx) < 0.7


# ---------------------------------------------------------------------------------------------- determinism
def _payloads(path):
    with AnyReader([Path(path)], default_typestore=typestore()) as r:
        return [(c.topic, t, bytes(raw)) for c, t, raw in r.messages()]


def test_same_seed_same_bytes_other_seed_other_flight(synthetic, tmp_path):
    base = dict(ortho=str(synthetic["ortho"]), camera=str(synthetic["camera"]), duration_s=3.0, trajectory="random",
                gps_spoofs=("1:2:50",))
    a = simulate(SimConfig(out=str(tmp_path / "a.bag"), seed=7, **base))
    b = simulate(SimConfig(out=str(tmp_path / "b.bag"), seed=7, **base))
    c = simulate(SimConfig(out=str(tmp_path / "c.bag"), seed=8, **base))
    pa, pb, pc = _payloads(a.out), _payloads(b.out), _payloads(c.out)
    assert pa == pb
    assert (tmp_path / "a.bag").read_bytes() == (tmp_path / "b.bag").read_bytes()
    by_topic = lambda p, topic: [x for x in p if x[0] == topic]  # noqa: E731
    for topic in ("/gps/fix", "/gps/vel", "/ground_truth/pose", "/camera/image_raw/compressed", "/imu/data"):
        assert by_topic(pa, topic) != by_topic(pc, topic), topic


def test_gps_velocity_noise_has_its_own_stream(synthetic, tmp_path):
    """Changing the velocity noise changes /gps/vel only: the positions of a seed stay what they were."""
    base = dict(ortho=str(synthetic["ortho"]), camera=str(synthetic["camera"]), duration_s=3.0, seed=7)
    a = simulate(SimConfig(out=str(tmp_path / "a.bag"), **base))
    b = simulate(SimConfig(out=str(tmp_path / "b.bag"), gps_velocity_sigma_mps=0.0, **base))
    pa, pb = _payloads(a.out), _payloads(b.out)
    by_topic = lambda p, topic: [x for x in p if x[0] == topic]  # noqa: E731
    assert by_topic(pa, "/gps/fix") == by_topic(pb, "/gps/fix")
    assert by_topic(pa, "/gps/vel") != by_topic(pb, "/gps/vel")
    with BagReader(b.out) as bag:
        fixes = list(bag.events(roles=["gps"]))
    speeds = [math.hypot(*f.velocity_xy) for f in fixes]
    assert speeds == pytest.approx([8.0] * len(fixes), abs=1e-6)  # noise-free: the true 8 m/s
    assert all(f.velocity_sigma_mps is None for f in fixes)  # a zero covariance reads as unknown
    with pytest.raises(SimulationError, match="gps_velocity_sigma_mps must be a finite number >= 0"):
        SimConfig(gps_velocity_sigma_mps=-0.1)


# ---------------------------------------------------------------------------------------------- options and errors
def test_waypoints_rates_and_mount(synthetic, tmp_path):
    wp = tmp_path / "wp.csv"
    wp.write_text("x,y\n-60,-30\n60,-30\n60,30\n")
    mount = tmp_path / "mount.yaml"
    mount.write_text("rpy_cam2body_deg: [180, 0, -90]\n")  # nadir, image top = body left
    cfg = SimConfig(ortho=str(synthetic["ortho"]), camera=str(synthetic["camera"]), out=str(tmp_path / "w.bag"),
                    duration_s=4.0, trajectory="waypoints", waypoints=str(wp), camera_rate_hz=2.0, gps_rate_hz=1.0,
                    imu_rate_hz=10.0, mount=str(mount), ground_elevation_m=400.0, altitude_m=50.0)
    s = simulate(cfg)
    assert s.counts["/camera/image_raw/compressed"] == 8 and s.counts["/gps/fix"] == 4 and s.counts["/imu/data"] == 40
    with BagReader(s.out) as bag:
        ev = list(bag.events())
    truth = _of(ev, TruthPose)
    assert truth[0].alt == pytest.approx(450.0) and truth[0].z == pytest.approx(50.0)
    assert truth[0].frame_id.endswith(",400.000")
    ortho = load_orthophoto(synthetic["ortho"])
    x, y = ortho.frame.to_local(truth[0].lat, truth[0].lon)
    assert (x, y) == pytest.approx((-60.0, -30.0), abs=0.01)
    # the first leg goes east: yaw ~ 0
    assert abs(Attitude.from_quaternion(*truth[1].attitude).yaw) < math.radians(5)


def test_flight_errors(synthetic, tmp_path):
    base = dict(ortho=str(synthetic["ortho"]), camera=str(synthetic["camera"]), out=str(tmp_path / "e.bag"),
                duration_s=5.0)
    with pytest.raises(SimulationError, match="leaves no room for this flight: the camera footprint at 400 m reaches"):
        simulate(SimConfig(**base | {"altitude_m": 400.0}))
    far = tmp_path / "far.csv"
    far.write_text("x,y\n0,0\n1000,0\n")
    with pytest.raises(SimulationError, match="waypoint 1 \\(1000, 0 m from the map centre\\) is outside the usable"):
        simulate(SimConfig(**base | {"trajectory": "waypoints", "waypoints": str(far)}))
    hairpin = tmp_path / "hairpin.csv"
    hairpin.write_text("x,y\n-50,0\n50,0\n-50,1\n")
    loop = tmp_path / "loop.csv"
    loop.write_text("x,y\n-50,0\n50,0\n49,-20\n")
    with pytest.raises(SimulationError, match="where the path loops back to its first waypoint"):
        simulate(SimConfig(**base | {"trajectory": "waypoints", "waypoints": str(loop), "duration_s": 30.0}))
    with pytest.raises(SimulationError, match="turns by 179 degrees at waypoint 1: a hairpin"):
        simulate(SimConfig(**base | {"trajectory": "waypoints", "waypoints": str(hairpin)}))
    with pytest.raises(SimulationError, match="no orthophoto given"):
        simulate(SimConfig(**base | {"ortho": ""}))
    with pytest.raises(SimulationError, match="must be a ROS1 .bag file"):
        simulate(SimConfig(**base | {"out": str(tmp_path / "x.mcap")}))
    assert not (tmp_path / "e.bag").exists()


def test_path_through_invalid_imagery_and_camera_that_misses_the_ground(synthetic, tmp_path):
    gen = np.random.default_rng(1)
    img = cv2.GaussianBlur(gen.integers(0, 255, (600, 800, 3), dtype=np.uint8), (0, 0), 3)
    mask = np.ones((600, 800), bool)
    mask[250:350, 300:500] = False  # a hole in the middle (nodata)
    tif = write_geotiff(tmp_path / "hole.tif", Orthophoto(img, mask, 0.5, -200.0, 150.0, LocalFrame(47.0, 8.0)))
    wp = tmp_path / "across.csv"
    wp.write_text("x,y\n-120,0\n120,0\n")
    base = dict(ortho=str(tif), camera=str(synthetic["camera"]), out=str(tmp_path / "h.bag"), duration_s=20.0,
                altitude_m=20.0)
    with pytest.raises(SimulationError, match="the waypoints path leaves the usable area at t = .* s"):
        simulate(SimConfig(**base | {"trajectory": "waypoints", "waypoints": str(wp)}))
    up = tmp_path / "up.yaml"
    up.write_text("R_cam2body: [[0, -1, 0], [1, 0, 0], [0, 0, 1]]\n")  # looking at the sky
    with pytest.raises(SimulationError, match="the camera does not see the ground properly from 20 m"):
        simulate(SimConfig(**base | {"mount": str(up)}))
    assert not (tmp_path / "h.bag").exists()


def _band(synthetic, tmp_path, name: str, half_width_m: float):
    """The synthetic texture (400 x 300 m) with valid imagery only where |y| <= half_width_m (nodata elsewhere)."""
    ortho = load_orthophoto(synthetic["ortho"])
    y = ortho.y_max - (np.arange(ortho.mask.shape[0]) + 0.5) * ortho.gsd
    mask = np.zeros_like(ortho.mask)
    mask[np.abs(y) <= half_width_m] = True
    band = Orthophoto(ortho.image, mask, ortho.gsd, ortho.x_min, ortho.y_max, ortho.frame)
    return write_geotiff(tmp_path / f"{name}.tif", band)


def test_racetrack_fits_a_narrow_band_at_constant_speed(synthetic, tmp_path):
    from calibration.geometry import NADIR_MOUNT

    tif = _band(synthetic, tmp_path, "band", 60.0)  # 120 m of imagery; the footprint at 30 m needs ~32 m of it
    camera = load_camera(synthetic["camera"])
    ortho = load_orthophoto(tif)
    base = dict(ortho=str(tif), camera=str(synthetic["camera"]), out=str(tmp_path / "r.bag"), duration_s=60.0,
                altitude_m=30.0, trajectory="racetrack")
    with pytest.raises(SimulationError, match=r"a racetrack at 8 m/s turns with a radius of at least v\^2/a = 32.0 m .*"
                       r"usable area is 330 x 50 m .*fly at most ([\d.]+) m/s \(--speed \1\)") as exc:
        plan_flight(SimConfig(**base), ortho, camera, NADIR_MOUNT)
    assert float(exc.value.args[0].split("fly at most ")[1].split(" ")[0]) == 7.0  # sqrt(2 m/s^2 * 25 m)
    v_fit = 5.0
    plan = plan_flight(SimConfig(**base | {"speed_mps": v_fit}), ortho, camera, NADIR_MOUNT)
    assert plan.trajectory.kind == "racetrack" and plan.outside_m == 0.0
    k = plan.trajectory.sample(np.arange(0.0, 60.0, 0.02))
    xy = k.position[:, :2]
    assert np.all(plan.area.contains(xy)) and np.all(np.abs(xy[:, 1]) < 60.0 - plan.footprint_radius_m)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.02
    assert np.allclose(step, v_fit, rtol=1e-3)  # constant speed
    acc = np.linalg.norm(k.acceleration, axis=1)
    assert acc.max() <= 2.0 and acc.max() > 0.8 * v_fit**2 / (plan.area.height / 2.0)  # turns within max_accel
    assert np.ptp(xy[:, 0]) > 3 * np.ptp(xy[:, 1])  # an oval along the band, not across it
    # the written flight: racetrack, every frame on valid imagery, truth inside the band
    s = simulate(SimConfig(**base | {"speed_mps": v_fit, "duration_s": 20.0}))
    assert s.trajectory == "racetrack" and s.invalid_pixel_fraction == 0.0
    with BagReader(s.out) as bag:
        truth = _of(list(bag.events()), TruthPose)
    y = np.array([ortho.frame.to_local(t.lat, t.lon)[1] for t in truth])
    assert np.all(np.abs(y) < 60.0 - plan.footprint_radius_m)


def test_waypoints_along_a_strip_are_checked_with_the_exact_footprint(synthetic, tmp_path):
    from calibration.geometry import NADIR_MOUNT

    camera = load_camera(synthetic["camera"])
    wp = tmp_path / "line.csv"
    wp.write_text("x,y\n-150,0\n150,0\n")
    base = dict(camera=str(synthetic["camera"]), out=str(tmp_path / "l.bag"), duration_s=20.0, altitude_m=30.0,
                trajectory="waypoints", waypoints=str(wp))
    # 50 m of imagery: narrower than the footprint's circle (it may turn any way) but wider than its 41 m across
    # track when flying straight along the strip: the exact per-frame check decides, and it fits
    wide = _band(synthetic, tmp_path, "wide", 25.0)
    plan = plan_flight(SimConfig(ortho=str(wide), **base), load_orthophoto(wide), camera, NADIR_MOUNT)
    assert 2 * 25.0 < 2 * plan.footprint_radius_m and plan.outside_m == 0.0
    s = simulate(SimConfig(ortho=str(wide), **base))
    assert s.invalid_pixel_fraction == 0.0
    # 40 m: the footprint's edges fall on nodata; refused with the exact numbers, unless max_outside_m allows it
    narrow = _band(synthetic, tmp_path, "narrow", 20.0)
    with pytest.raises(SimulationError, match=r"waypoint 0 \(-150, 0 m from the map centre\) is outside the usable "
                       r"area.*; the camera footprint reaches (\d+\.\d) m onto invalid imagery at t = .* s \(checked "
                       r"frame by frame at the true attitude; max_outside_m = 0\)") as exc:
        simulate(SimConfig(ortho=str(narrow), **base))
    over = float(exc.value.args[0].split("reaches ")[-1].split(" ")[0])
    assert 0.0 < over < 5.0
    s = simulate(SimConfig(ortho=str(narrow), **base | {"max_outside_m": over + 0.5}))
    assert 0.0 < s.invalid_pixel_fraction < 0.1  # the few metres beyond the imagery are rendered as nodata
    with pytest.raises(SimulationError, match="max_outside_m must be a finite number >= 0"):
        SimConfig(max_outside_m=-1.0)


# ---------------------------------------------------------------------------------------------- CLIs on real data
def test_simulate_cli_on_a_real_orthophoto(shared_data, tmp_path, capsys):
    ortho = shared_data("ortho/swissimage_zurich_a_0.5m.tif")
    cam = tmp_path / "cam.yaml"
    cam.write_text(CAMERA_YAML)
    out = tmp_path / "zurich.bag"
    code = _skyfix([
        "simulate", "--ortho", str(ortho), "--camera", str(cam), "--out", str(out), "--duration", "12",
        "--altitude", "60", "--speed", "8", "--gps-sigma", "5", "--gps-bias", "3", "--gps-outage", "2:4",
        "--gps-outage", "6:7", "--gps-spoof", "8:10:200", "--seed", "1", "--trajectory", "lawnmower",
    ])
    text = capsys.readouterr().out
    assert code == 0 and out.exists() and "wrote" in text and "/gps/fix" in text
    with AnyReader([out], default_typestore=typestore()) as r:
        counts = {n: t.msgcount for n, t in r.topics.items()}
    assert counts["/camera/image_raw/compressed"] == 60 and counts["/gps/fix"] == 60 - 10 - 5
    code = _runtime(["inspect", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["selection"]["camera"] == "/camera/image_raw/compressed"
    assert info["camera"]["width"] == 160 and 47.3 < info["first_fix"]["lat"] < 47.4
    assert info["selection"]["gps_velocity"] == "/gps/vel"
    assert info["notes"] == ["/gps/fix: no message for 2.2 s from 1.8 s into the recording",  # the first outage
                             "/gps/vel: no message for 2.2 s from 1.8 s into the recording"]
    gps = next(t for t in info["topics"] if t["topic"] == "/gps/fix")
    assert gps["rate_hz"] == 5.0 and gps["mean_rate_hz"] < 4.0 and gps["max_gap_s"] == 2.2


def test_simulate_cli_config_file_and_flag_precedence(synthetic, tmp_path, capsys):
    from runtime.sim.cli import config_from_args, register

    cfg = tmp_path / "sim.yaml"
    cfg.write_text(f"ortho: {synthetic['ortho']}\nduration_s: 3\nspeed_mps: 5\ngps_outages: ['1:2']\n")
    args = _parser(register).parse_args(
        ["simulate", "--config", str(cfg), "--speed", "6", "--waypoints", "w.csv", "--camera-rate", "2"])
    c = config_from_args(args)
    assert (c.duration_s, c.speed_mps, c.trajectory, c.camera_rate_hz) == (3.0, 6.0, "waypoints", 2.0)
    assert c.gps_outages == ((1.0, 2.0),) and c.ortho == str(synthetic["ortho"])
    out = tmp_path / "q.bag"
    assert _skyfix(["simulate", "--config", str(cfg), "--camera", str(synthetic["camera"]), "-o", str(out), "-q"]) == 0
    assert capsys.readouterr().out == "" and out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gps-outage", "40-70"], "error: malformed window '40-70': 1 value(s), expected START:END (seconds"),
        (["--gps-spoof", "90:95"], "expected START:END:METRES (seconds from the start, offset in metres, e.g. 90:95:200)"),
        (["--gps-outage", "150:160"], "starts after the flight ends (120 s)"),
        ([], "no orthophoto given: pass --ortho ORTHO.tif"),
        (["--ortho", "/nonexistent/ortho.tif"], "error: "),
    ],
)
def test_simulate_cli_errors(argv, message, capsys, tmp_path):
    code = _skyfix(["simulate", "--out", str(tmp_path / "x.bag")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.bag").exists()


def test_runtime_inspect_real_husky_bag(shared_data, capsys):
    bag = shared_data("bags/husky_gps_imu_odom.bag")
    assert _runtime(["inspect", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "395.3 s" in out and "16806 messages" in out
    assert "/fix" in out and "sensor_msgs/NavSatFix" in out and " 989 " in out and "2.50" in out
    assert "gps          /fix" in out and "imu          /imu/data" in out
    assert "camera       -" in out
    assert "no camera topic (sensor_msgs/CompressedImage or Image): the runtime will track on GPS alone" in out
    assert "not used by the runtime: /husky_velocity_controller/odom (nav_msgs/Odometry)" in out
    assert "first fix 42.37" in out


def test_runtime_inspect_errors(shared_data, tmp_path, capsys):
    assert _runtime(["inspect", str(tmp_path / "none.bag")]) == 2
    assert "error: bag" in capsys.readouterr().err
    bag = shared_data("bags/husky_gps_imu_odom.bag")
    assert _runtime(["inspect", str(bag), "--gps-topic", "/imu/data"]) == 2
    assert "gps topic /imu/data carries sensor_msgs/Imu, expected sensor_msgs/NavSatFix" in capsys.readouterr().err
    assert _runtime(["inspect", str(bag), "--gps-topic", "none", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["selection"]["gps"] is None and any("no GPS topic" in n for n in info["notes"])


def test_help_of_both_commands(capsys):
    from runtime.cli.bag import register as reg_inspect
    from runtime.sim.cli import register as reg_sim

    for reg, argv, words in ((reg_sim, ["simulate", "--help"], ["--gps-outage START:END", "--gps-spoof"]),
                             (reg_inspect, ["inspect", "--help"], ["BAG", "--gps-topic"])):
        with pytest.raises(SystemExit) as exc:
            _parser(reg).parse_args(argv)
        out = capsys.readouterr().out
        assert exc.value.code == 0 and all(w in out for w in words)


def test_simulate_cli_racetrack_and_max_outside_flags():
    from runtime.sim.cli import TRAJECTORY_CHOICES, config_from_args, register
    from runtime.sim.trajectory import TRAJECTORIES

    assert set(TRAJECTORY_CHOICES) == set(TRAJECTORIES)  # the CLI's light copy of the simulator's list
    args = _parser(register).parse_args(["simulate", "--ortho", "o.tif", "--trajectory", "racetrack", "--speed", "6",
                                         "--max-outside", "2.5"])
    cfg = config_from_args(args)
    assert (cfg.trajectory, cfg.speed_mps, cfg.max_outside_m) == ("racetrack", 6.0, 2.5)
    assert config_from_args(_parser(register).parse_args(["simulate"])).max_outside_m == 0.0


def test_runtime_inspect_columns_stay_aligned_for_long_type_names():
    from runtime.cli.bag import format_text

    info = {"paths": ["f.bag"], "bytes": 1e6, "duration_s": 10.0, "messages": 60, "start_ns": None, "notes": [],
            "selection": {"gps_velocity": "/gps/vel"},
            "topics": [{"topic": "/gps/vel", "type": "geometry_msgs/msg/TwistWithCovarianceStamped", "count": 50,
                        "rate_hz": 5.0},
                       {"topic": "/fix", "type": "sensor_msgs/msg/NavSatFix", "count": 10, "rate_hz": 1.0}]}
    head, *rows = format_text(info).splitlines()[1:4]
    assert len({line.index(word) + len(word) for line, word in zip([head] + rows, ["count", "50", "10"])}) == 1
