"""The loop's handling of a displacement measured between two frames (runtime.events.GroundMotion)."""

from __future__ import annotations

import numpy as np

from runtime.events import Frame, GpsFix, GroundMotion
from runtime.localizer import Localizer

NS = 1_000_000_000


def test_a_motion_weighs_each_particle_by_how_far_it_moved_since_the_frame_before():
    """A map-less loop (frames are not matched, but each one still marks where the particles were): a motion
    before any belief is counted unused; one measured from the last frame moves the belief by it (velocity unknown:
    the particles are redrawn onto it); one measured from a time the tracker holds no positions for is not used, and
    says why."""
    loop = Localizer(None, None)
    loop.process(GroundMotion(NS, NS // 2, (30.0, 0.0), 1.0))
    assert loop.counts["motion_unused"] == 1 and not loop.tracker.initialized
    cov = np.diag([4.0, 4.0, 16.0])
    loop.process(GpsFix(NS, 47.0, 8.0, 500.0, cov))
    loop.process(Frame(NS, np.zeros((8, 8, 3), np.uint8), None))
    assert loop.tracker.anchor_t_ns == NS
    x0 = loop.tracker.estimate().x
    loop.process(GroundMotion(7 * NS, NS, (30.0, 0.0), 1.0))
    assert loop.counts["motion"] == 1
    e = loop.tracker.estimate()
    assert abs(e.x - x0 - 30.0) < 2.0
    loop.process(GroundMotion(9 * NS, 8 * NS, (10.0, 0.0), 1.0))  # no frame at 8 s
    assert loop.counts["motion_unused"] == 2
    assert any("a ground motion measured from a frame the tracker holds no positions for" in n for n in loop.notes)


def test_a_source_whose_yaw_is_poor_pins_the_particle_yaws_that_loosely():
    """``attitude_yaw_sigma_deg`` (a senseFly heading, 17 degrees) views each frame over +/- 2 sigma of yaw and lets
    the fix take the yaw that matches; the tracker must then hold the attitude's yaw that loosely too, or the
    particles, pinned at its default 3 degrees, give a fix 20 degrees off the recorded heading no support."""
    import math

    from runtime.events import ImuSample
    from runtime.localizer import LocalizerConfig

    yaw = 0.3
    q = (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))
    cov = np.diag([4.0, 4.0, 16.0])
    sds = {}
    for sigma_deg in (0.0, 17.0):
        loop = Localizer(None, None, config=LocalizerConfig(attitude_yaw_sigma_deg=sigma_deg))
        for k in range(3):
            loop.process(ImuSample(k * NS, q, (0.0, 0.0, 0.0), (0.0, 0.0, 9.81)))
            loop.process(GpsFix(k * NS, 47.0, 8.0, 500.0, cov))
        e = loop.tracker.estimate()
        assert abs(e.yaw_rad - yaw) < 0.05
        sds[sigma_deg] = math.degrees(e.yaw_sigma_rad)
    assert sds[0.0] < 4.0  # the tracker's own imu_yaw_sigma_rad, 0.05 rad
    assert 14.0 < sds[17.0] < 20.0
