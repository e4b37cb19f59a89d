"""GpsMonitor: the GPS's own track, without any belief -- outliers, confirmed jumps, gaps, understated noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.tracking.gps_monitor import GpsMonitor

NS = 1_000_000_000
DT = NS // 5  # 5 Hz


def _fly(mon: GpsMonitor, rng, n: int, start: int = 0, t0: int = 0, offset=(0.0, 0.0), sigma: float = 5.0,
         stated: float = 5.0):
    """``n`` fixes of a vehicle going east at 10 m/s (true noise ``sigma``, stated ``stated``); returns the checks."""
    out = []
    for i in range(start, start + n):
        t = t0 + i * DT
        x = 10.0 * i * 0.2 + offset[0] + rng.normal(0.0, sigma)
        y = offset[1] + rng.normal(0.0, sigma)
        out.append(mon.update(t, x, y, stated))
    return out


def test_a_steady_track_is_continuous_and_never_suspect():
    rng = np.random.default_rng(0)
    mon = GpsMonitor()
    checks = _fly(mon, rng, 300)
    assert not any(c.suspect or c.jump for c in checks)
    assert checks[-1].continuous_s == pytest.approx(299 * 0.2)
    assert np.all(np.abs(mon.velocity - [10.0, 0.0]) <= 3.0 * mon.velocity_sigma) and mon.velocity_sigma < 4.0
    assert mon.noise_scale == pytest.approx(1.0, abs=0.15) and mon.jumps == 0
    assert math.isnan(checks[0].nis)  # the first fix starts the track


def test_a_lone_outlier_is_suspect_and_the_track_goes_on():
    rng = np.random.default_rng(1)
    mon = GpsMonitor()
    _fly(mon, rng, 50)
    c = mon.update(50 * DT, 100.0 + 80.0, 0.0, 5.0)
    assert c.suspect and not c.jump and c.distance_m == pytest.approx(80.0, abs=20.0) and c.nis > 25.0
    after = _fly(mon, rng, 10, start=51)
    assert not any(a.suspect for a in after) and after[-1].continuous_s == pytest.approx(60 * 0.2)
    assert mon.jumps == 0


def test_a_jump_confirmed_by_the_next_fix_breaks_the_continuity():
    rng = np.random.default_rng(2)
    mon = GpsMonitor()
    _fly(mon, rng, 50)
    jumped = _fly(mon, rng, 20, start=50, offset=(0.0, 60.0))
    assert jumped[0].suspect and not jumped[0].jump
    assert jumped[1].suspect and jumped[1].jump and mon.jumps == 1
    assert not any(c.suspect for c in jumped[2:])  # the new track goes on from the jump
    assert jumped[-1].continuous_s == pytest.approx(19 * 0.2)


def test_a_gap_restarts_the_track():
    rng = np.random.default_rng(3)
    mon = GpsMonitor(gap_s=2.0)
    _fly(mon, rng, 20)
    back = _fly(mon, rng, 5, start=20, t0=5 * NS, offset=(200.0, 0.0))  # 5 s later, far away: no jump, a restart
    assert not any(c.suspect or c.jump for c in back) and back[0].continuous_s == 0.0 and mon.jumps == 0


def test_a_receiver_that_understates_its_noise_is_scaled_up():
    rng = np.random.default_rng(4)
    mon = GpsMonitor()
    checks = _fly(mon, rng, 400, sigma=5.0, stated=2.0)
    assert mon.noise_scale == pytest.approx(2.5, rel=0.3)
    assert sum(c.suspect for c in checks[100:]) <= 3  # its own noise is no jump once the scale is learnt


def test_the_ground_velocity_is_used_when_given():
    mon = GpsMonitor()
    for i in range(10):
        mon.update(i * DT, 2.0 * i, 0.0, 5.0, velocity_xy=(10.0, 0.0), velocity_sigma=0.3)
    assert mon.velocity == pytest.approx([10.0, 0.0], abs=0.5) and mon.velocity_sigma < 0.4
