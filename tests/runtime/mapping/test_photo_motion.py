"""runtime.mapping.photo_motion: the displacement between consecutive photos from their homography.

Rendered photos of a flat ground at known places (the displacement must come out as placed, whatever the recorded
tilt, and turned by exactly a recorded heading's error), and real Seneca photos against their GPS."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from calibration.geometry import Attitude
from runtime.events import GroundMotion
from runtime.mapping.attitude_check import check_attitude
from runtime.mapping.photo_motion import pair_motion, pair_motions, with_motions

ATTS = (Attitude.from_degrees(2.0, -3.0, 10.0), Attitude.from_degrees(-1.5, 2.0, 12.0),
        Attitude.from_degrees(1.0, 1.0, 8.0))
PLACES = ((-30.0, -5.0), (-2.0, 3.0), (25.0, 8.0))


def _photos(ground, recorded=None):
    shots = [ground.shot(f"p{k}.jpg", xy, att, (recorded or {}).get(k, att), 5.0 * k)
             for k, (xy, att) in enumerate(zip(PLACES, ATTS))]
    metas = [m for m, _ in shots]
    images = {m.name: g for m, g in shots}
    return metas, check_attitude(metas, [[0, 1, 2]], load=lambda m: images[m.name])


def test_displacement_is_where_the_photos_were_taken(ground):
    metas, check = _photos(ground)
    motions = pair_motions(metas, check, 17.0)
    assert set(motions) == {"p1.jpg", "p2.jpg"}
    for k in (1, 2):
        m = motions[f"p{k}.jpg"]
        assert isinstance(m, GroundMotion) and m.t_ref_ns == metas[k - 1].t_ns and m.t_ns == metas[k].t_ns
        want = np.subtract(PLACES[k], PLACES[k - 1])
        np.testing.assert_allclose(m.displacement_en, want, atol=0.3)
        assert m.heading_sigma_rad == pytest.approx(math.radians(17.0))
        assert m.sigma_m == pytest.approx(math.hypot(0.05 * np.hypot(*want), 1.0), rel=0.02)
        assert m.frame_id == f"p{k}.jpg" and m.topic == "photos"


def test_a_wrong_recorded_tilt_does_not_move_it_and_a_wrong_heading_turns_it(ground):
    """The pair's own ground normal replaces the recorded vertical (a 5 degree roll error changes nothing); the
    recorded heading is what turns the displacement into the world (an error of 20 degrees turns it by 20)."""
    tilted = Attitude(ATTS[0].roll + math.radians(5.0), ATTS[0].pitch, ATTS[0].yaw)
    metas, check = _photos(ground, {0: tilted})
    m = pair_motions(metas, check, 17.0)["p1.jpg"]
    np.testing.assert_allclose(m.displacement_en, np.subtract(PLACES[1], PLACES[0]), atol=0.3)
    metas, check = _photos(ground)
    off = math.radians(20.0)
    turned = replace(metas[0], attitude=Attitude(ATTS[0].roll, ATTS[0].pitch, ATTS[0].yaw + off))
    m = pair_motion(turned, metas[1], check.pairs[0], heading_sigma_deg=17.0)
    want = np.subtract(PLACES[1], PLACES[0])
    c, s = math.cos(off), math.sin(off)
    np.testing.assert_allclose(m.displacement_en, [c * want[0] - s * want[1], s * want[0] + c * want[1]], atol=0.4)


def test_a_recorded_course_points_the_displacement_whatever_the_crab(ground):
    """A heading that is the course over ground (senseFly's): the camera is yawed 36 degrees off it (the crab into a
    cross wind), the images give the displacement in the camera's axes, and turned by the course it would point
    36 degrees off; with ``heading_is_course`` it points along the course and keeps the images' length."""
    want = np.subtract(PLACES[1], PLACES[0])
    course_yaw = math.atan2(want[1], want[0])  # REP-103 yaw of the ground track
    crab = math.radians(36.0)
    true0 = Attitude(ATTS[0].roll, ATTS[0].pitch, course_yaw - crab)
    shots = [ground.shot("c0.jpg", PLACES[0], true0, Attitude(true0.roll, true0.pitch, course_yaw), 0.0),
             ground.shot("c1.jpg", PLACES[1], ATTS[1], Attitude(ATTS[1].roll, ATTS[1].pitch, course_yaw), 5.0)]
    metas = [m for m, _ in shots]
    images = {m.name: g for m, g in shots}
    check = check_attitude(metas, [[0, 1]], load=lambda m: images[m.name])
    course = pair_motion(metas[0], metas[1], check.pairs[0], heading_sigma_deg=17.0, heading_is_course=True)
    np.testing.assert_allclose(course.displacement_en, want, atol=0.5)
    yawed = pair_motion(metas[0], metas[1], check.pairs[0], heading_sigma_deg=17.0)
    d = np.asarray(yawed.displacement_en)
    assert np.hypot(*d) == pytest.approx(np.hypot(*want), abs=0.5)
    assert math.degrees(math.atan2(d[1], d[0]) - course_yaw) == pytest.approx(36.0, abs=1.5)
    # the photos' maker says which: senseFly's Heading is a course (with_motions), a DJI yaw is not
    assert with_motions(metas, check)[0][1].motion.displacement_en == pytest.approx(course.displacement_en)
    dji = [replace(m, maker="dji") for m in metas]
    assert with_motions(dji, check)[0][1].motion.displacement_en == pytest.approx(yawed.displacement_en)


def test_courses_through_a_turn_point_the_displacement_along_their_chord(ground):
    """Two courses 60 degrees apart (a turn at a constant rate): the displacement points halfway between them, the
    chord of the arc. Two courses 190 degrees apart (a turn-around, flown the long way): halfway between them lies
    both the chord and its opposite, and the images' own direction (the camera 10 degrees off the first course, the
    crab) picks the chord."""
    want = np.subtract(PLACES[1], PLACES[0])
    chord_yaw = math.atan2(want[1], want[0])
    metas, check = _photos(ground)
    turn = [replace(m, attitude=Attitude(m.attitude.roll, m.attitude.pitch, chord_yaw + s * math.radians(30.0)))
            for m, s in zip(metas[:2], (-1.0, 1.0))]
    m = pair_motion(turn[0], turn[1], check.pairs[0], heading_sigma_deg=17.0, heading_is_course=True)
    np.testing.assert_allclose(m.displacement_en, want, atol=0.5)
    course_a, course_b = chord_yaw + math.radians(95.0), chord_yaw - math.radians(95.0)  # their mean: minus the chord
    true_a = Attitude(ATTS[0].roll, ATTS[0].pitch, course_a - math.radians(10.0))
    shots = [ground.shot("u0.jpg", PLACES[0], true_a, Attitude(true_a.roll, true_a.pitch, course_a), 0.0),
             ground.shot("u1.jpg", PLACES[1], ATTS[1], Attitude(ATTS[1].roll, ATTS[1].pitch, course_b), 5.0)]
    images = {mm.name: g for mm, g in shots}
    uturn = [mm for mm, _ in shots]
    pair = check_attitude(uturn, [[0, 1]], load=lambda mm: images[mm.name]).pairs[0]
    m = pair_motion(uturn[0], uturn[1], pair, heading_sigma_deg=17.0, heading_is_course=True)
    np.testing.assert_allclose(m.displacement_en, want, atol=0.5)


def test_no_motion_without_height_attitude_or_the_earlier_photo(ground):
    metas, check = _photos(ground)
    p = check.pairs[0]
    assert pair_motion(replace(metas[0], height_m=None), metas[1], p, heading_sigma_deg=5.0) is None
    assert pair_motion(replace(metas[0], attitude=None), metas[1], p, heading_sigma_deg=5.0) is None
    assert pair_motion(metas[1], metas[0], p, heading_sigma_deg=5.0) is None  # not after it
    assert set(pair_motions(metas[1:], check, 5.0)) == {"p2.jpg"}  # p0 is not among the photos given
    per_photo = pair_motions(metas, check, lambda m: 3.0)
    assert all(m.heading_sigma_rad == pytest.approx(math.radians(3.0)) for m in per_photo.values())
    assert pair_motions(metas, check, lambda m: None) == {}  # a heading that is no measurement gives no motion
    moved, n = with_motions(metas, check)  # the maker's heading error: senseFly's 17 degrees
    assert n == 2 and moved[0].motion is None and moved[0] is metas[0]
    assert [m.motion.frame_id for m in moved[1:]] == ["p1.jpg", "p2.jpg"]
    assert moved[1].motion.heading_sigma_rad == pytest.approx(math.radians(17.0))


SENECA = "real/seneca/images"
LINE = [f"IMG_{k:04d}.jpg" for k in range(446, 451)]  # one flight line, photos ~4.5 s apart


def test_real_sensefly_motion_agrees_with_the_gps(shared_data):
    """Five consecutive real photos: each displacement the images give agrees with the photos' GPS within what
    both state -- the displacement's own sigma and heading error, the survey's ground scale (the XMP heights make
    every length ~1.2x the GPS's until the survey calibration scales them) and the GPS's own noise (~2.5 m per fix
    and axis on this survey)."""
    from maps.geodesy import LocalFrame
    from runtime.sources.photos import read_photo_folder

    metas = list(read_photo_folder([shared_data(SENECA) / n for n in LINE]).photos)
    check = check_attitude(metas, [list(range(len(metas)))])
    motions = pair_motions(metas, check, 17.0)
    assert len(motions) >= 3
    frame = LocalFrame(metas[0].lat, metas[0].lon)
    xy = {m.name: np.array(frame.to_local(m.lat, m.lon), dtype=float) for m in metas}
    prev = {b.name: a.name for a, b in zip(metas, metas[1:])}
    ratios = []
    for name, mo in motions.items():
        gps = xy[name] - xy[prev[name]]
        d = np.array(mo.displacement_en)
        ratios.append(np.hypot(*d) / np.hypot(*gps))
        d_scaled = d / 1.2
        along = float(np.hypot(*d_scaled)) - float(np.hypot(*gps))
        turn = math.atan2(d_scaled[1], d_scaled[0]) - math.atan2(gps[1], gps[0])
        turn = (turn + math.pi) % (2 * math.pi) - math.pi
        gps_sigma = 2.5 * math.sqrt(2.0)
        assert abs(along) < 3.0 * math.hypot(mo.sigma_m, gps_sigma)
        assert abs(turn) * np.hypot(*gps) < 3.0 * math.hypot(mo.sigma_m, gps_sigma,
                                                           np.hypot(*gps) * mo.heading_sigma_rad)
    assert 1.05 < float(np.median(ratios)) < 1.35


CROSSWIND = [f"IMG_{k:04d}.jpg" for k in range(591, 596)]  # a line flown south-east, across the wind


def test_real_sensefly_heading_is_the_course_across_the_wind(shared_data):
    """Five consecutive real photos of a line flown across the wind: the camera's axes show the motion 42-51
    degrees off its recorded Heading (the crab), so turning the images' displacement by the Heading puts it that far
    off the GPS's; taken along the Heading (a course over ground, with_motions for a senseFly folder) each agrees
    with the GPS within its stated heading error (17 degrees: 2 sigma of it here)."""
    from maps.geodesy import LocalFrame
    from runtime.sources.photos import read_photo_folder

    metas = list(read_photo_folder([shared_data(SENECA) / n for n in CROSSWIND]).photos)
    check = check_attitude(metas, [list(range(len(metas)))])
    moved, n = with_motions(metas, check)
    yawed = pair_motions(metas, check, 17.0)
    assert n >= 3 and set(yawed) == {m.name for m in moved if m.motion is not None}
    frame = LocalFrame(metas[0].lat, metas[0].lon)
    xy = {m.name: np.array(frame.to_local(m.lat, m.lon), dtype=float) for m in metas}

    def off_gps_deg(prev, m, d):
        gps = xy[m.name] - xy[prev.name]
        a = math.atan2(d[1], d[0]) - math.atan2(gps[1], gps[0])
        return math.degrees((a + math.pi) % (2 * math.pi) - math.pi)

    course_off, yawed_off = [], []
    for prev, m in zip(moved, moved[1:]):
        if m.motion is None:
            continue
        course_off.append(off_gps_deg(prev, m, m.motion.displacement_en))
        yawed_off.append(off_gps_deg(prev, m, yawed[m.name].displacement_en))
        assert abs(course_off[-1]) < 2.0 * math.degrees(m.motion.heading_sigma_rad)
    assert np.median(np.abs(yawed_off)) > 30.0  # the crab, counted twice
    assert np.median(np.abs(course_off)) < 15.0
