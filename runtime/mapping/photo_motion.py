"""The vehicle's motion between consecutive photos, from their images (flat ground).

Photos seconds apart (a fixed-wing survey: 5-6 s, 30-80 m) overlap too little, and move too far, for the loop's
ground odometry (phase correlation of views about a second apart, :mod:`runtime.ground_odometry`); but the
homography of two consecutive photos (:func:`runtime.mapping.attitude_check.pair_check`: SIFT, RANSAC,
``cv2.decomposeHomographyMat``) gives the second camera's centre in the first camera's axes over the first camera's
height above the ground plane: ``centre_b = -R^T t / d``. Turned into the world with the first photo's attitude (its
tilt made the ground normal the pair gives, its heading as recorded) and scaled by its height above ground, that is
the displacement of the camera between the two photos, east/north metres: a :class:`runtime.events.GroundMotion`
that the loop weighs its particles with (each by how far it moved since the earlier photo).

Its error (stated with each measurement):

* the heading the displacement is turned into the world with: the photo's recorded heading, off by
  ``heading_sigma_deg`` (the maker's: 17 degrees for senseFly, :data:`runtime.sources.photos.SENSEFLY_HEADING_SIGMA_DEG`);
  it rotates the whole vector, an error across the track of ``|d| * heading_sigma``. A recorded heading that is the
  course over ground (senseFly's, :data:`runtime.sources.photos.SENSEFLY_HEADING_IS_COURSE`) gives the
  displacement's direction itself, the chord of the two photos' courses: the angle of the motion in the camera's axes
  is then the crab, not part of the direction;
* the height: the displacement scales with it (``height_sigma`` relative, a barometric height over a survey's
  ground; a survey whose heights are off by a ground scale needs its calibration applied first, as the loop's
  visual fixes do);
* a floor ``floor_m`` per axis (the registration and the tilt of the pair's ground normal, about a degree: well
  under a metre at survey heights).

Measured on Seneca (113 of 142 consecutive pairs, 30 m median apart, against the photos' own GPS; README): the
displacement's direction along the chord of the two Headings (courses) is off the GPS's by 5.9 degrees (robust
sigma, about what the photos' GPS noise alone makes over 30 m), with no pattern by flight direction; along the first
photo's Heading alone by 12.7; turned by the Heading as a yaw by 15.4, and by 34-38 degrees on every pair of the lines
flown across the wind (the crab counted twice). Its length is the GPS's x 1.18 before the survey's ground scale (0.82)
is applied, i.e. the same scale the mosaic measures.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from calibration.geometry import R_cam2world, heading_from_yaw
from calibration.rotations import rotation_between

from ..events import GroundMotion
from .attitude_check import AttitudeCheck

__all__ = ["pair_motion", "pair_motions", "with_motions"]

_DOWN = np.array([0.0, 0.0, -1.0])


def pair_motion(meta_a, meta_b, pair, *, heading_sigma_deg: float, height_sigma: float = 0.05,
                floor_m: float = 1.0, heading_is_course: bool = False) -> GroundMotion | None:
    """The displacement from photo ``meta_a`` to ``meta_b`` that their registered ``pair``
    (:class:`runtime.mapping.attitude_check.PairCheck` with ``centre_b``) gives (module docstring); None when
    ``meta_a`` has no height above ground or attitude, or the pair carries no translation.

    Args:
        meta_a, meta_b: :class:`runtime.sources.photos.PhotoMeta` (``meta_a`` earlier), heights in metres above
            the ground (with the survey's ground scale applied where it has one).
        heading_sigma_deg: how far ``meta_a``'s recorded heading may be off, degrees (1 sigma).
        height_sigma: relative std of ``meta_a``'s height. floor_m: std per axis added, metres.
        heading_is_course: the photos' recorded headings are courses over ground (a senseFly's,
            :func:`runtime.sources.photos.heading_is_course`), not where the camera points: the displacement then
            points along the chord of the two (:func:`_chord`), and the images give its length only (the angle of
            the motion in the camera's axes is the crab into the wind, which turning by a course would count twice:
            31-40 degrees on Seneca's lines flown across the wind).
    """
    if pair.centre_b is None or meta_a.attitude is None or meta_a.height_m is None or meta_b.t_ns <= meta_a.t_ns:
        return None
    R = R_cam2world(meta_a.attitude, meta_a.mount)
    R = rotation_between(R @ pair.down_a, _DOWN) @ R  # the pair's ground normal is the vertical; heading kept
    d = (R @ np.asarray(pair.centre_b, dtype=np.float64) * float(meta_a.height_m))[:2]
    length = float(np.hypot(*d))
    if heading_is_course:
        d = length * _chord(meta_a, meta_b, d)
    sigma = math.hypot(height_sigma * length, floor_m)
    return GroundMotion(meta_b.t_ns, meta_a.t_ns, (float(d[0]), float(d[1])), sigma,
                        math.radians(heading_sigma_deg), topic="photos", frame_id=meta_b.name)


def _chord(meta_a, meta_b, d: np.ndarray) -> np.ndarray:
    """float64[2] unit (east, north) direction of the displacement from ``meta_a`` to ``meta_b`` whose recorded
    headings are courses over ground: the chord of a turn at a constant rate points at the mean of the courses at
    its two ends (on a straight line, the course itself); of the two directions halfway between them, the one
    nearer ``d``, the displacement the images give turned by the course as a yaw (off by the crab, under 90 degrees:
    a turn-around between flight lines, where the two courses are opposite, is told by it)."""
    ca = heading_from_yaw(meta_a.attitude.yaw)  # clockwise from north
    cb = ca if meta_b.attitude is None else heading_from_yaw(meta_b.attitude.yaw)
    u = np.array([math.sin(ca) + math.sin(cb), math.cos(ca) + math.cos(cb)])
    n = float(np.hypot(*u))
    u = u / n if n >= 1e-6 else np.array([math.cos(ca), -math.sin(ca)])  # opposite courses: across them
    return u if float(u @ d) >= 0.0 else -u


def pair_motions(photos: Sequence, check: AttitudeCheck, heading_sigma_deg, *, height_sigma: float = 0.05,
                 floor_m: float = 1.0, heading_is_course=False) -> dict:
    """name of the later photo -> its :class:`runtime.events.GroundMotion` from the photo before it, for every
    registered pair of ``check`` (:func:`runtime.mapping.attitude_check.check_attitude`) whose two photos are in
    ``photos`` (matched by name; their heights and attitudes are used as given). Causal: a photo's motion needs
    only the photo before it.

    Args:
        heading_sigma_deg: a number, or a callable photo -> degrees or None (each maker's heading error; None: the
            photo's heading is no measurement, its pair gives no motion).
        heading_is_course: a bool, or a callable photo -> bool (:func:`pair_motion`).
    """
    by_name = {m.name: m for m in photos}
    out = {}
    for p in check.pairs:
        a, b = by_name.get(p.a), by_name.get(p.b)
        if a is None or b is None:
            continue
        hs = heading_sigma_deg(a) if callable(heading_sigma_deg) else heading_sigma_deg
        course = heading_is_course(a) if callable(heading_is_course) else bool(heading_is_course)
        m = None if hs is None else pair_motion(a, b, p, heading_sigma_deg=hs, height_sigma=height_sigma,
                                                floor_m=floor_m, heading_is_course=course)
        if m is not None:
            out[b.name] = m
    return out


def with_motions(photos: Sequence, check: AttitudeCheck) -> tuple[list, int]:
    """(``photos`` each with its :attr:`~runtime.sources.photos.PhotoMeta.motion` from the photo before where
    :func:`pair_motions` has one, with its maker's heading error and convention
    (:func:`runtime.sources.photos.heading_sigma_deg`, :func:`~runtime.sources.photos.heading_is_course`), how many
    have one)."""
    from dataclasses import replace

    from ..sources.photos import heading_is_course, heading_sigma_deg

    motions = pair_motions(photos, check, heading_sigma_deg, heading_is_course=heading_is_course)
    return [replace(m, motion=motions[m.name]) if m.name in motions else m for m in photos], len(motions)
