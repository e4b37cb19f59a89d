"""IMU acceleration as the filter's motion input: the integrator and the tracker following a turn."""

from __future__ import annotations

import math

import pytest

from runtime.tracking import ParticleTracker, TrackerConfig, TrackingError
def test_imu_velocity_integrates_world_horizontal_acceleration():
    from runtime.events import ImuSample
    from runtime.localizer import ImuVelocity

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
