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
