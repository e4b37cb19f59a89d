"""IMU acceleration as the filter's motion input: the integrator and the tracker following a turn."""

from __future__ import annotations

import math

import pytest

from runtime.tracking import ParticleTracker, TrackerConfig, TrackingError
def test_imu_velocity_integrates_world_horizontal_acceleration():
    from runtime.events import ImuSample
    from runtime.imu_velocity import ImuVelocity

    s = math.sqrt(0.5)
    yaw90 = (0.0, 0.0, s, s)  # body x (forward) points north
    iv = ImuVelocity(0.5)
    for k in range(11):  # 1 s at 10 Hz: 2 m/s^2 forward, gravity on body z
        iv.add(ImuSample(k * 100_000_000, yaw90, linear_acceleration=(2.0, 0.0, 9.81)))
    dv = iv.take(1_000_000_000)
    assert dv == pytest.approx([0.0, 2.0], abs=1e-9)  # 10 intervals of 0.1 s, rotated to north; gravity dropped
    assert iv.take(1_000_000_000) == pytest.approx([0.0, 0.0])  # taken: starts again from zero
    assert iv.take(2_000_000_000) is None  # the last sample is 1 s old
    iv.add(ImuSample(3_000_000_000, yaw90, linear_acceleration=(5.0, 0.0, 9.81)))  # 2 s gap: not integrated across
    assert iv.take(3_000_000_000) == pytest.approx([0.0, 0.0])
    iv.add(ImuSample(3_100_000_000, None, linear_acceleration=(5.0, 0.0, 9.81)))  # no orientation: ignored
    assert iv.take(3_100_000_000) == pytest.approx([0.0, 0.0])


def test_tracker_follows_a_turn_with_imu_velocity_changes():
    """A vehicle at 6 m/s turning on a 25 m circle: the IMU's velocity changes keep the particles on it; constant
    velocity flies off the tangent."""
    v, r = 6.0, 25.0
    w = v / r
    errs = {}
    for use_imu in (True, False):
        t = ParticleTracker(TrackerConfig(n_particles=500, seed=1))
        t.update_gps(0, r, 0.0, 1.0, velocity_xy=(0.0, v))
        for _ in range(20):  # settle the velocity on (0, v)
            t.update_gps(0, r, 0.0, 1.0, velocity_xy=(0.0, v))
        dt = 0.1
        for k in range(1, 41):  # 4 s, 1.5 rad of the circle
            a = k * dt * w
            a0 = (k - 1) * dt * w
            dv = (-v * math.sin(a) + v * math.sin(a0), v * math.cos(a) - v * math.cos(a0))
            t.predict(int(k * dt * 1e9), delta_v=dv if use_imu else None)
        e = t.estimate()
        errs[use_imu] = math.hypot(e.x - r * math.cos(4 * w), e.y - r * math.sin(4 * w))
    assert errs[True] < 2.0 < 8.0 < errs[False]
    with pytest.raises(TrackingError, match="predict delta_v"):
        ParticleTracker(TrackerConfig(n_particles=50)).predict(0, delta_v=(1.0, math.nan))


@pytest.mark.parametrize("mode, used", [("always", True), ("never", False), ("no_imu", False)])
def test_gps_velocity_setting_with_an_imu(mode, used):
    """A fix's ground velocity reaches the particle velocities as ``gps_velocity`` says (an IMU yaw is fresh)."""
    import numpy as np

    from runtime.events import GpsFix, ImuSample
    from runtime.localizer import Localizer, LocalizerConfig

    loop = Localizer(None, None, config=LocalizerConfig(gps_velocity=mode, tracker={"seed": 2}))
    level = (0.0, 0.0, 0.0, 1.0)
    for k in range(25):
        t = k * 200_000_000
        loop.on_imu(ImuSample(t - 1_000_000, level, linear_acceleration=(0.0, 0.0, 9.81)))
        lat = 47.0 + k * 0.2 * 3.0 / 111_320.0  # 3 m/s north
        loop.on_gps(GpsFix(t, lat, 8.0, 500.0, 1.0, velocity_enu=(0.0, 3.0), velocity_sigma_mps=0.1))
    s, w = loop.tracker.particles()
    vn = s[:, 3]
    vn_spread = float(np.sqrt(np.average((vn - np.average(vn, weights=w)) ** 2, weights=w)))
    assert (vn_spread < 0.3) == used


def _level_sample(t_ns: int, yaw: float, a_body, bias):
    """An IMU sample of a level body at ``yaw`` (ENU rad) measuring ``a_body`` (body x/y, m/s^2) plus ``bias``."""
    from runtime.events import ImuSample

    q = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    return ImuSample(t_ns, q, linear_acceleration=(a_body[0] + bias[0], a_body[1] + bias[1], 9.81))


def test_imu_bias_is_estimated_from_ground_velocity_in_the_body_frame():
    """A body-frame bias (a tilt error leaking gravity) on a vehicle that circles at 6 m/s: GPS ground velocity
    (0.3 m/s noise) pins the bias although it turns with the vehicle in the world; the bias-corrected velocity
    changes then match the true ones where raw integration drifts."""
    import numpy as np

    from runtime.imu_velocity import ImuVelocity

    rng = np.random.default_rng(3)
    bias = (0.06, -0.04)
    v, w = 6.0, 0.1  # speed m/s, yaw rate rad/s (centripetal 0.6 m/s^2 along body y)
    est = ImuVelocity(0.5, estimate_bias=True, bias_tau_s=1e6)
    raw = ImuVelocity(0.5)
    for k in range(50 * 40):  # 40 s at 50 Hz, a ground velocity at 5 Hz
        t_ns, yaw = k * 20_000_000, w * k * 0.02
        for iv in (est, raw):
            iv.add(_level_sample(t_ns, yaw, (0.0, v * w), bias))
        if k % 10 == 0:
            true_v = (v * math.cos(yaw), v * math.sin(yaw))
            assert est.update_velocity(np.add(true_v, rng.normal(0.0, 0.3, 2)), 0.3)
    assert est.bias == pytest.approx(bias, abs=0.015)
    assert est.bias_sigma < 0.02
    assert est.updates == 200 and est.rejected == 0
    # 10 s of outage: the velocity change integrated with the bias taken out vs raw
    est.take(40 * 10**9), raw.take(40 * 10**9)
    for k in range(2000, 2501):
        for iv in (est, raw):
            iv.add(_level_sample(k * 20_000_000, w * k * 0.02, (0.0, v * w), bias))
    y0, y1 = w * 40.0, w * 50.0
    true_dv = np.array([v * (math.cos(y1) - math.cos(y0)), v * (math.sin(y1) - math.sin(y0))])
    err_est = float(np.linalg.norm(est.take(50 * 10**9) - true_dv))
    err_raw = float(np.linalg.norm(raw.take(50 * 10**9) - true_dv))
    assert err_est < 0.2 < 0.4 < err_raw


def test_imu_bias_estimate_fades_without_ground_velocity_and_refuses_glitches():
    from runtime.imu_velocity import ImuVelocity

    iv = ImuVelocity(0.5, estimate_bias=True, bias_tau_s=10.0)
    for k in range(50 * 20):  # 20 s still, bias 0.05 along body x
        iv.add(_level_sample(k * 20_000_000, 0.0, (0.0, 0.0), (0.05, 0.0)))
        if k % 10 == 0:
            iv.update_velocity((0.0, 0.0), 0.1)
    b0 = iv.bias[0]
    assert 0.02 < b0 < 0.06  # learnt (the Gauss-Markov prior holds it somewhat below 0.05)
    assert not iv.update_velocity((30.0, 0.0), 0.1)  # 30 m/s off: a glitch, refused
    assert iv.rejected == 1
    for k in range(1000, 1500):  # 10 s without ground velocity: one time constant
        iv.add(_level_sample(k * 20_000_000, 0.0, (0.0, 0.0), (0.05, 0.0)))
    assert iv.bias[0] == pytest.approx(b0 * math.exp(-1.0), rel=0.02)
    assert not ImuVelocity(0.5).update_velocity((1.0, 0.0), 0.3)  # bias estimation off: nothing to update
    assert ImuVelocity(0.5, estimate_bias=True).update_velocity((1.0, math.nan), 0.3) is False
