"""runtime.sim building blocks: trajectories (smoothness, speed, containment), GNSS errors, photometry, config."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maps.geodesy import LocalFrame
from runtime.errors import SimulationError
from runtime.sim.config import SimConfig, parse_outage, parse_spoof
from runtime.truth_frame import TruthFrame, parse_truth_frame_id
from runtime.sim.gnss import GnssErrorModel, simulate_errors
from runtime.sim.noise import SmoothNoise, rng
from runtime.sim.photometric import PhotometricConfig, PhotometricModel
from runtime.sim.trajectory import (
    Area,
    BSplinePath,
    Trajectory,
    densify,
    flight_area,
    lawnmower_polyline,
    largest_rectangle,
    load_waypoints,
    loop_polyline,
    racetrack_polyline,
    racetrack_radius,
    random_polyline,
    rounding_distance,
)

AREA = Area(-150.0, -80.0, 150.0, 80.0)
V = 8.0


def _fly(poly, duration=100.0, d=None):
    d = d or rounding_distance(V, 2.0)
    return Trajectory(BSplinePath(densify(poly, d)), V, 60.0, duration)


def _check_smooth(traj: Trajectory, a_limit: float, jerk_limit: float):
    dt = 0.01
    t = np.arange(0.0, traj.duration_s, dt)
    k = traj.sample(t)
    step = np.linalg.norm(np.diff(k.position[:, :2], axis=0), axis=1) / dt
    assert np.allclose(step, V, atol=2e-3), (step.min(), step.max())  # constant speed
    assert np.allclose(np.linalg.norm(k.velocity, axis=1), V)
    acc = np.linalg.norm(k.acceleration, axis=1)
    assert acc.max() < a_limit
    # the analytic acceleration is the derivative of the velocity (C1 velocity, continuous acceleration)
    fd = np.diff(k.velocity, axis=0) / dt
    assert np.max(np.abs(fd - 0.5 * (k.acceleration[1:] + k.acceleration[:-1]))) < 0.01
    jerk = np.linalg.norm(np.diff(k.acceleration, axis=0) / dt, axis=1)
    assert jerk.max() < jerk_limit  # bounded jerk: no jump in acceleration
    # yaw follows the velocity
    np.testing.assert_allclose(np.cos(k.yaw) * V, k.velocity[:, 0], atol=1e-9)
    np.testing.assert_allclose(np.sin(k.yaw) * V, k.velocity[:, 1], atol=1e-9)
    assert np.all(k.position[:, 2] == 60.0)
    return k


def test_lawnmower_is_smooth_constant_speed_and_inside():
    poly = lawnmower_polyline(AREA, 60.0, 1200.0)
    assert np.all(AREA.contains(poly))
    k = _check_smooth(_fly(poly), a_limit=3.5, jerk_limit=3.0)
    assert np.all(AREA.contains(k.position[:, :2]))
    # legs run along the long side, 60 m apart or closer
    ys = np.unique(np.round(poly[:, 1], 6))
    assert len(ys) >= 3 and np.all(np.diff(ys) <= 60.0 + 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_paths_are_smooth_and_inside(seed):
    d = rounding_distance(V, 2.0)
    poly = random_polyline(AREA, rng(seed, 1), 1000.0, min_leg=d)
    k = _check_smooth(_fly(poly), a_limit=6.0, jerk_limit=6.0)
    assert np.all(AREA.contains(k.position[:, :2]))


def test_random_paths_are_deterministic_by_seed():
    a = random_polyline(AREA, rng(5, 1), 800.0, 50.0)
    b = random_polyline(AREA, rng(5, 1), 800.0, 50.0)
    c = random_polyline(AREA, rng(6, 1), 800.0, 50.0)
    assert np.array_equal(a, b) and not np.array_equal(a[:3], c[:3])


def test_path_starts_and_ends_on_the_polyline():
    poly = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]])
    path = BSplinePath(densify(poly, 20.0))
    np.testing.assert_allclose(path.eval([0.0])[0], poly[0], atol=1e-9)
    np.testing.assert_allclose(path.eval([path.n_seg])[0], poly[-1], atol=1e-9)
    assert 180.0 < path.length < 200.0
    s = np.linspace(0, path.length, 50)
    u = path.u_at(s)
    assert np.all(np.diff(u) > 0)


def test_too_short_path_is_an_error():
    with pytest.raises(SimulationError, match="the path is 100 m long but 20 s at 8 m/s needs 160 m"):
        Trajectory(BSplinePath(np.array([[0.0, 0.0], [100.0, 0.0]])), 8.0, 60.0, 20.0)
    with pytest.raises(SimulationError, match="at least 2"):
        BSplinePath(np.array([[1.0, 1.0], [1.0, 1.0]]))


def test_loop_polyline_repeats_short_waypoint_paths():
    pts = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]])
    out = loop_polyline(pts, 1000.0)
    assert np.sum(np.linalg.norm(np.diff(out, axis=0), axis=1)) >= 1000.0
    np.testing.assert_array_equal(out[:3], pts)
    np.testing.assert_array_equal(out[3], pts[0])


@pytest.mark.parametrize("area", [Area(-150.0, -31.0, 150.0, 31.0), Area(10.0, -200.0, 70.0, 120.0)])
@pytest.mark.parametrize("clockwise", [False, True])
def test_racetrack_is_an_oval_along_the_long_side_inside_the_area(area, clockwise):
    v, a = 6.0, 2.0
    r = racetrack_radius(area, v, a)
    short, long_ = min(area.width, area.height), max(area.width, area.height)
    assert r == pytest.approx(min(short / 2.0, long_ / 4.0)) and r >= v * v / a  # as wide as the area allows
    poly = racetrack_polyline(area, r, 1500.0, clockwise=clockwise, step=min(2.0, r / 8.0))
    assert np.all(area.contains(poly)) and np.sum(np.linalg.norm(np.diff(poly, axis=0), axis=1)) >= 1500.0
    traj = Trajectory(BSplinePath(densify(poly, rounding_distance(v, a))), v, 60.0, 1400.0 / v, "racetrack")
    t = np.arange(0.0, traj.duration_s, 0.02)
    k = traj.sample(t)
    xy = k.position[:, :2]
    assert np.all(area.contains(xy))
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.02
    assert np.allclose(step, v, rtol=1e-3)  # constant speed
    acc = np.linalg.norm(k.acceleration, axis=1)
    assert acc.max() <= a and acc.max() == pytest.approx(v * v / r, rel=0.03)  # turns at 1/r
    assert np.percentile(acc, 10) < 0.01  # and straights
    # centred, spanning the long side, 2 r across; the vehicle turns one way only
    along, across = (0, 1) if area.width >= area.height else (1, 0)
    centre = np.array([(area.x_min + area.x_max) / 2.0, (area.y_min + area.y_max) / 2.0])
    assert np.ptp(xy[:, along]) == pytest.approx(long_, abs=0.5)
    assert np.ptp(xy[:, across]) == pytest.approx(2 * r, abs=0.5)
    np.testing.assert_allclose((xy.max(0) + xy.min(0)) / 2.0, centre, atol=0.5)
    turn = k.velocity[:, 0] * k.acceleration[:, 1] - k.velocity[:, 1] * k.acceleration[:, 0]  # > 0: to the left
    assert np.all(turn < 1e-6) if clockwise else np.all(turn > -1e-6)


def test_racetrack_too_narrow_names_the_speed_that_fits():
    narrow = Area(-150.0, -15.0, 150.0, 15.0)  # 30 m: turns of 15 m at most; 2 m/s^2 -> sqrt(30) = 5.48 m/s
    assert racetrack_radius(narrow, 5.4, 2.0) == pytest.approx(15.0)
    with pytest.raises(SimulationError, match=r"a racetrack at 8 m/s turns with a radius of at least v\^2/a = 32.0 m "
                       r"\(max_accel_mps2 = 2\), so it needs a usable area 64 m wide, but the usable area is 300 x 30 m "
                       r"\(the camera footprint needs 64 m .*\); fly at most 5.4 m/s \(--speed 5.4\)"):
        racetrack_radius(narrow, 8.0, 2.0, margin_m=64.0)


def test_largest_rectangle_and_flight_area():
    m = np.zeros((10, 12), bool)
    m[2:8, 1:11] = True
    m[0:10, 5:7] = True
    assert largest_rectangle(m) == (2, 1, 8, 11)
    assert largest_rectangle(np.zeros((3, 3), bool)) is None

    class Raster:
        gsd = 1.0
        x_min = -50.0
        y_max = 40.0
        mask = np.ones((80, 100), bool)

    Raster.mask[:, :20] = False  # invalid left strip (x < -30)
    area, allowed = flight_area(Raster, margin_m=10.0)
    assert area.x_min >= -20.0 - 1e-9 and area.x_max <= 40.0 and area.y_min >= -30.0 and area.y_max <= 30.0
    assert area.width > 55 and area.height > 55
    assert not allowed[:, :30].any()


def test_load_waypoints_formats(tmp_path):
    frame = LocalFrame(47.0, 8.0)
    lat, lon = frame.to_wgs84(np.array([10.0, 50.0]), np.array([-20.0, 30.0]))
    lat, lon = [float(v) for v in lat], [float(v) for v in lon]
    (tmp_path / "w.csv").write_text(f"# my path\nlat,lon\n{lat[0]!r},{lon[0]!r}\n{lat[1]!r},{lon[1]!r}\n")
    np.testing.assert_allclose(load_waypoints(tmp_path / "w.csv", frame), [[10, -20], [50, 30]], atol=1e-6)
    (tmp_path / "l.csv").write_text("x,y\n1,2\n3,4\n")
    np.testing.assert_allclose(load_waypoints(tmp_path / "l.csv", frame), [[1, 2], [3, 4]])
    (tmp_path / "w.yaml").write_text("- {x: 1, y: 2}\n- {lat: %r, lon: %r}\n" % (lat[1], lon[1]))
    np.testing.assert_allclose(load_waypoints(tmp_path / "w.yaml", frame), [[1, 2], [50, 30]], atol=1e-6)
    (tmp_path / "w.json").write_text('{"frame": "local", "points": [[5, 6], [7, 8]]}')
    np.testing.assert_allclose(load_waypoints(tmp_path / "w.json", frame), [[5, 6], [7, 8]])


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("a.csv", "1,2,3\n", "does not have 2 values"),
        ("b.csv", "47.0,8.0\n", "holds 1 waypoint"),
        ("c.csv", "470,8\n4,5\n", "is not a latitude/longitude"),
        ("d.csv", "a,b\n1,2\n", "not numeric"),
        ("e.yaml", "points: [[1, 2]]\nalt: 3\n", "unknown keys \\['alt'\\]"),
        ("f.yaml", "- {x: 1, z: 2}\n- {x: 1, y: 2}\n", "has keys \\['x', 'z'\\]"),
        ("g.yaml", "frame: utm\npoints: [[1, 2], [3, 4]]\n", "frame must be 'wgs84' or 'local'"),
        ("h.yaml", "[unclosed\n", "not valid YAML"),
    ],
)
def test_load_waypoints_errors(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(SimulationError, match=match):
        load_waypoints(tmp_path / name, LocalFrame(47.0, 8.0))


def test_load_waypoints_missing_file(tmp_path):
    with pytest.raises(SimulationError, match="cannot read waypoints file"):
        load_waypoints(tmp_path / "nope.csv", LocalFrame(47.0, 8.0))


# ---------------------------------------------------------------------------------------------- GNSS
def test_gnss_statistics():
    model = GnssErrorModel(sigma_m=5.0, bias_m=3.0, vertical_sigma_m=7.5, bias_mode="constant",
                           outages=((40.0, 70.0),), spoofs=((90.0, 95.0, 200.0),))
    t = np.arange(0.0, 4000.0, 0.2)
    e = simulate_errors(model, t, seed=3)
    normal = e.available & ~e.spoofed
    noise = e.error_enu[normal] - e.bias_enu[normal]
    assert np.std(noise[:, 0]) == pytest.approx(5.0, rel=0.03)
    assert np.std(noise[:, 1]) == pytest.approx(5.0, rel=0.03)
    assert np.std(noise[:, 2]) == pytest.approx(7.5, rel=0.03)
    assert np.allclose(np.linalg.norm(e.bias_enu[:, :2], axis=1), 3.0)
    assert np.linalg.norm(np.mean(e.error_enu[normal, :2], axis=0)) == pytest.approx(3.0, abs=0.15)
    # outages: no fix in [40, 70)
    assert not e.available[(t >= 40) & (t < 70)].any() and e.available[(t < 40) | (t >= 70)].all()
    # spoof: offset ~200 m during [90, 95), none outside
    sp = (t >= 90) & (t < 95)
    assert np.array_equal(e.spoofed, sp)
    assert np.allclose(np.linalg.norm(e.jump_enu[sp, :2], axis=1), 200.0) and not e.jump_enu[~sp].any()
    np.testing.assert_allclose(model.covariance_enu, np.diag([25.0, 25.0, 56.25]))


def test_gnss_gauss_markov_bias_keeps_magnitude_and_wanders():
    model = GnssErrorModel(sigma_m=1.0, bias_m=4.0, bias_mode="gauss_markov", bias_tau_s=100.0)
    t = np.arange(0.0, 2000.0, 1.0)
    e = simulate_errors(model, t, seed=1)
    assert np.allclose(np.linalg.norm(e.bias_enu[:, :2], axis=1), 4.0)
    ang = np.unwrap(np.arctan2(e.bias_enu[:, 1], e.bias_enu[:, 0]))
    assert np.std(ang) > math.radians(10)  # wanders
    # first-order Gauss-Markov: steps of 45 deg * sqrt(1 - exp(-2 dt / tau)) rms
    assert np.std(np.diff(ang)) == pytest.approx(math.radians(45) * math.sqrt(1 - math.exp(-2 / 100)), rel=0.1)
    again = simulate_errors(model, t, seed=1)
    assert np.array_equal(e.error_enu, again.error_enu)
    assert not np.array_equal(e.error_enu, simulate_errors(model, t, seed=2).error_enu)


def test_gnss_model_validation():
    with pytest.raises(SimulationError, match="sigma_m must be a number of metres >= 0"):
        GnssErrorModel(sigma_m=-1.0)
    with pytest.raises(SimulationError, match="bias mode"):
        GnssErrorModel(bias_mode="random")
    with pytest.raises(SimulationError, match="time constant"):
        GnssErrorModel(bias_tau_s=0.0)


# ---------------------------------------------------------------------------------------------- noise, photometry
def test_smooth_noise_rms_and_derivative():
    n = SmoothNoise.make(rng(1, 2), 0.5, 0.05, 0.5, channels=2)
    t = np.linspace(0, 2000, 200001)
    x = n(t)
    assert x.shape == (200001, 2)
    assert np.sqrt(np.mean(x**2, axis=0)) == pytest.approx([0.5, 0.5], rel=0.15)
    fd = np.gradient(x[:1000, 0], t[:1000])
    np.testing.assert_allclose(fd[1:-1], n.derivative(t[:1000])[1:-1, 0], atol=1e-4)


def test_photometric_model_is_deterministic_and_bounded():
    img = np.full((40, 50, 3), 128, np.uint8)
    cfg = PhotometricConfig(brightness=0.2, noise_sigma=3.0)
    a = PhotometricModel(cfg, 4).apply(img, 1.0, 7)
    b = PhotometricModel(cfg, 4).apply(img, 1.0, 7)
    c = PhotometricModel(cfg, 4).apply(img, 1.0, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    m = PhotometricModel(cfg, 4)
    assert 0.7 < m.gains_at(0.0).mean() < 1.3
    assert 1.5 < np.std(a.astype(float) - a.mean(axis=(0, 1))) < 5
    off = PhotometricModel(PhotometricConfig(0, 0, 0, 0, 0, 90), 1).apply(img, 3.0, 0)
    assert np.array_equal(off, img)
    with pytest.raises(SimulationError, match="jpeg_quality"):
        PhotometricConfig(jpeg_quality=0)
    with pytest.raises(SimulationError, match="brightness must be < 1"):
        PhotometricConfig(brightness=1.5)


# ---------------------------------------------------------------------------------------------- frames
def test_truth_frame_id_round_trip():
    f = TruthFrame(47.376716106, 8.488427057, 408.5)
    assert f.frame_id == "enu@47.376716106,8.488427057,408.500"
    assert parse_truth_frame_id(f.frame_id) == f
    x, y, z = f.to_local(47.377, 8.489, 468.5)
    lat, lon, alt = f.to_wgs84(x, y, z)
    assert (lat, lon, alt) == pytest.approx((47.377, 8.489, 468.5))
    assert z == pytest.approx(60.0)
    assert parse_truth_frame_id("map") is None and parse_truth_frame_id("enu@95,0,0") is None


# ---------------------------------------------------------------------------------------------- config
def test_window_specs():
    assert parse_outage("40:70") == (40.0, 70.0)
    assert parse_outage([1, 2.5]) == (1.0, 2.5)
    assert parse_spoof("90:95:200") == (90.0, 95.0, 200.0)


@pytest.mark.parametrize(
    "func, spec, match",
    [
        (parse_outage, "40-70", "malformed window '40-70': 1 value\\(s\\), expected START:END"),
        (parse_outage, "40:70:3", "expected START:END \\(seconds"),
        (parse_outage, "70:40", "needs 0 <= START < END; expected START:END"),
        (parse_outage, "a:5", "'a' is not a number; expected START:END"),
        (parse_outage, "1:inf", "not finite; expected START:END"),
        (parse_spoof, "90:95", "expected START:END:METRES"),
        (parse_spoof, "90:95:-5", "METRES must be >= 0; expected START:END:METRES"),
        (parse_spoof, 12, "malformed window 12; expected START:END:METRES"),
    ],
)
def test_window_spec_errors(func, spec, match):
    with pytest.raises(SimulationError, match=match):
        func(spec)


def test_config_from_dict_and_yaml(tmp_path):
    cfg = SimConfig.from_dict({"ortho": "o.tif", "gps_outages": ["40:70", [80, 90]], "gps_spoofs": ["90:95:200"]})
    assert cfg.gps_outages == ((40.0, 70.0), (80.0, 90.0)) and cfg.gps_spoofs == ((90.0, 95.0, 200.0),)
    assert cfg.vertical_sigma_m == 7.5
    (tmp_path / "sim.yaml").write_text("ortho: maps/o.tif\nduration_s: 30\ngps_outages: ['5:10']\nseed: 9\n")
    y = SimConfig.from_yaml(tmp_path / "sim.yaml")
    assert y.ortho == str(tmp_path / "maps" / "o.tif") and y.duration_s == 30.0 and y.seed == 9
    assert SimConfig.from_dict(y.to_dict()) == y  # to_dict round trip
    with pytest.raises(SimulationError, match=r"unknown key\(s\) \['altitude', 'sped'\]; valid keys: ortho, out"):
        SimConfig.from_dict({"altitude": 50, "sped": 3})
    (tmp_path / "sexagesimal.yaml").write_text("gps_outages: [40:50]\n")
    with pytest.raises(SimulationError, match="holds the number 2450: YAML reads an unquoted window like 40:50"):
        SimConfig.from_yaml(tmp_path / "sexagesimal.yaml")
    (tmp_path / "bad.yaml").write_text("[1, 2]\n")
    with pytest.raises(SimulationError, match="must be a mapping"):
        SimConfig.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    with pytest.raises(SimulationError, match="not valid YAML"):
        SimConfig.from_yaml(tmp_path / "broken.yaml")
    with pytest.raises(SimulationError, match="cannot read simulation config"):
        SimConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "values, match",
    [
        ({"duration_s": 0}, "duration_s must be a finite number > 0"),
        ({"speed_mps": "fast"}, "speed_mps must be a finite number > 0"),
        ({"gps_sigma_m": -1}, "gps_sigma_m must be a finite number >= 0"),
        ({"trajectory": "spiral"}, "trajectory must be one of lawnmower, racetrack, waypoints, random"),
        ({"trajectory": "waypoints"}, "needs a waypoints file"),
        ({"gps_outages": ["130:140"]}, "starts after the flight ends \\(120 s\\)"),
        ({"gps_outages": "40:70"}, 'gps_outages must be a list of windows like \\["40:70"\\]'),
        ({"gps_spoofs": ["1:2"]}, "expected START:END:METRES"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"jpeg_quality": 101}, "jpeg_quality must be in \\[1, 100\\]"),
        ({"gps_bias_mode": "walk"}, "gps_bias_mode must be one of gauss_markov, constant"),
        ({"lawnmower_overlap": 1.0}, "lawnmower_overlap must be < 1"),
        ({"duration_s": 1e6}, "at most a day"),
        ({"bank_into_turns": "yes"}, "bank_into_turns must be true or false"),
        ({"ortho": 5}, "ortho must be a path"),
    ],
)
def test_config_validation_messages(values, match):
    with pytest.raises(SimulationError, match=match):
        SimConfig.from_dict(values)


def test_more_model_errors(tmp_path):
    with pytest.raises(SimulationError, match="all the same point"):
        loop_polyline(np.array([[1.0, 1.0], [1.0, 1.0]]), 100.0)
    with pytest.raises(SimulationError, match="photometric noise_sigma must be a number >= 0"):
        PhotometricConfig(noise_sigma=-1.0)
    (tmp_path / "a.yaml").write_text("- 5\n- [1, 2]\n")
    with pytest.raises(SimulationError, match="waypoint 0 in .* is 5; expected"):
        load_waypoints(tmp_path / "a.yaml", LocalFrame(47.0, 8.0))
    (tmp_path / "b.csv").write_text("x,y\nnan,2\n3,4\n")
    with pytest.raises(SimulationError, match="is not finite"):
        load_waypoints(tmp_path / "b.csv", LocalFrame(47.0, 8.0))
    with pytest.raises(SimulationError, match="must be a mapping of simulation settings"):
        SimConfig.from_dict(["ortho"])
