"""runtime.tools.photo_protocol: flight lines of a real survey and the structure measure of its frames."""

from __future__ import annotations

import math

import numpy as np


def test_the_seneca_survey_splits_into_flight_lines_flown_both_ways(shared_data):
    from maps.geodesy import LocalFrame
    from runtime.sources.photos import read_photo_folder
    from runtime.tools.photo_protocol import flight_lines

    metas = list(read_photo_folder(shared_data("real/seneca/images")).photos)
    lines = flight_lines(metas)
    assert sum(len(line) for line in lines) == len(metas) == 167
    assert [k for line in lines for k in line] == list(range(167))  # time order kept, nothing lost
    frame = LocalFrame(metas[0].lat, metas[0].lon)
    long_lines = [line for line in lines if len(line) >= 5]
    assert len(long_lines) >= 8
    bearings = []
    for line in long_lines:
        x, y = frame.to_local(np.array([metas[k].lat for k in line]), np.array([metas[k].lon for k in line]))
        steps = np.arctan2(np.diff(y), np.diff(x))
        mean = math.atan2(np.sin(steps).mean(), np.cos(steps).mean())
        assert np.all(np.abs((steps - mean + math.pi) % (2 * math.pi) - math.pi) < math.radians(60))  # straight
        bearings.append(mean)
    compass = np.degrees(np.pi / 2 - np.array(bearings)) % 360.0
    ne = (np.abs(compass - 55.0) < 25.0).sum()
    sw = (np.abs(compass - 240.0) < 25.0).sum()
    assert ne >= 4 and sw >= 4 and ne + sw >= len(long_lines) - 3  # the survey flies its lines back and forth


def test_structure_is_higher_where_a_road_is(shared_data):
    """IMG_0451 looks at a road crossing and a house; IMG_0460 at a ploughed field only."""
    from runtime.sources.photos import read_photo
    from runtime.tools.photo_protocol import ProtocolConfig, structure_of

    cfg = ProtocolConfig()
    d = shared_data("real/seneca/images")
    road = structure_of(read_photo(d / "IMG_0451.jpg"), 0.4, cfg.edge_level)
    field = structure_of(read_photo(d / "IMG_0460.jpg"), 0.4, cfg.edge_level)
    assert road >= cfg.structure_min > field


def test_the_table_says_what_happened_inside_the_cut_and_without_gps():
    from runtime.tools.photo_protocol import format_table

    stats = {"n": 9, "median_m": 14.43, "p95_m": 96.9, "max_m": 119.9, "within_10m": 0.33}
    none = {"n": 0, "median_m": None, "p95_m": None, "max_m": None, "within_10m": None}
    res = {"cases": {
        "cut": {"localized": 0.98, "all": stats, "structured": stats, "structured_within_10m": 0.81,
                "ok_over_10m": 0, "gps_fed": stats, "during_cut": stats, "during_cut_frames": 11,
                "during_cut_structured_within_10m": 1 / 3},
        "no_gps": {"localized": 0.12, "all": none, "structured": none, "structured_within_10m": 0.07,
                   "ok_over_10m": 0, "frames_to_fix_after_first_structure": None},
    }}
    text = format_table(res)
    assert "| cut | 98% | 14.4 / 96.9 / 119.9 |" in text
    assert ("cut, inside the cut: 9 of 11 frames localized, median / max 14.4 / 119.9 m; frames with structure "
            "within 10 m: 33%") in text
    assert "| no_gps | 12% | - / - / - |" in text
    assert "no_gps: first estimate within 10 m never" in text
    res["cases"]["cut"]["far_why"] = {"wrong visual fix": 2, "followed the GPS": 3}
    assert "cut: frames more than 10 m off: wrong visual fix 2, followed the GPS 3" in format_table(res)


def test_why_a_frame_is_far_follows_what_it_had():
    from runtime.tools.photo_protocol import WHY, why_far

    assert why_far(math.nan, None, 3.0, True) == "lost"
    assert why_far(14.0, 12.5, 3.0, True) == "wrong visual fix"  # a fix that passed the gates, 12.5 m off
    assert why_far(12.0, None, 11.0, True) == "followed the GPS"
    assert why_far(12.0, None, 11.0, False) == "uniform field, followed the GPS"
    assert why_far(30.0, None, None, True) == "no visual fix, no GPS"
    assert why_far(30.0, None, None, False) == "uniform field, no GPS"
    assert why_far(11.0, 4.0, 9.0, True) == "fused off"  # a good fix and a GPS within 10 m: the fusion ended off
    assert why_far(11.0, None, 8.0, True) == "fused off"
    assert all(why_far(*a) in WHY for a in [(math.nan, None, None, False), (20.0, 2.0, None, False)])


def test_a_frames_visual_fix_is_its_best_passed_alignment():
    from runtime.events import Frame
    from runtime.localizer import FrameCandidates
    from runtime.tools.photo_protocol import _note_fix

    aligned = np.array([[10.0, 20.0, 0.8, 1.0, 1.5, 0.0, 0.0],   # best score but dropped by the gates
                        [11.0, 21.0, 0.6, 1.0, 1.5, 1.0, 0.0],   # passed
                        [12.0, 22.0, 0.7, 1.0, 1.5, 1.0, 0.0]])  # passed, the best of those
    c = FrameCandidates(t_ns=5, aligned=aligned, retrieved=np.zeros((0, 7)), retrieved_used=False,
                        embeddings=np.zeros((1, 4), np.float32), scope=None)
    fixes = {}
    _note_fix(c, Frame(5, np.zeros((4, 4, 3), np.uint8)), fixes)
    assert fixes == {5: (12.0, 22.0)}
    _note_fix(c, Frame(6, np.zeros((4, 4, 3), np.uint8)), fixes)  # another frame's candidates: nothing
    none = FrameCandidates(t_ns=7, aligned=aligned[:1], retrieved=np.zeros((0, 7)), retrieved_used=False,
                           embeddings=np.zeros((1, 4), np.float32), scope=None)
    _note_fix(none, Frame(7, np.zeros((4, 4, 3), np.uint8)), fixes)  # nothing passed: no fix
    assert fixes == {5: (12.0, 22.0)}


def test_the_split_takes_its_tilt_from_the_images_map_both_ways_held_out_from_the_photo_before(shared_data):
    """Four real flight lines: the map photos (lines 0 and 2) take their tilt from both neighbours, the held-out
    ones (lines 1 and 3) only from the photo before them (as the loop would have it in flight): each line's first
    held-out photo keeps its recorded attitude; each photo changed states a tilt sigma well under the recorded
    tilt's error, and the two-pair ones a smaller one. The held-out photos with a pair also get their displacement
    from the photo before (each line's first none)."""
    from runtime.mapping.attitude_check import check_attitude
    from runtime.sources.photos import read_photo_folder
    from runtime.tools.photo_protocol import _motion_from_images, _tilt_from_images, flight_lines, split_survey

    every = list(read_photo_folder(shared_data("real/seneca/images")).photos)
    keep = [k for line in flight_lines(every)[6:10] for k in line]
    metas = [every[k] for k in keep]
    lines = flight_lines(metas)
    assert len(lines) == 4
    map_idx, test_idx = split_survey(lines, "lines")
    said = []
    check = check_attitude(metas, lines)
    out, changed, recorded = _tilt_from_images(metas, check, map_idx, test_idx, said.append)
    assert recorded is not None and 2.0 < recorded < 10.0
    assert "tilt from the images:" in said[0] and "the recorded tilt to" in said[0]
    for line in (lines[1], lines[3]):
        assert out[line[0]] is metas[line[0]] and metas[line[0]].name not in changed
    held = [k for k in test_idx if metas[k].name in changed]
    inner = {k for line in (lines[0], lines[2]) for k in line[1:-1]}  # map photos with a photo before and after
    both = [k for k in map_idx if k in inner and metas[k].name in changed]
    assert held and both
    one = max(out[k].tilt_sigma_deg for k in held)
    assert one < recorded / 2.0
    assert all(out[k].tilt_sigma_deg <= one for k in both)
    assert all(out[k].attitude != metas[k].attitude for k in held + both)
    moved = _motion_from_images(out, check, test_idx, said.append)
    assert "motion from the images:" in said[-1]
    with_motion = [k for k in test_idx if moved[k].motion is not None]
    assert sorted(with_motion) == sorted(held)  # the same registered pairs (photo before -> photo)
    assert all(moved[k].motion is None for k in map_idx)
    for k in with_motion:
        assert moved[k].motion.t_ns == metas[k].t_ns and moved[k].motion.t_ref_ns == metas[k - 1].t_ns
        assert 10.0 < float(np.hypot(*moved[k].motion.displacement_en)) < 80.0


def test_the_covariance_check_counts_errors_inside_the_95_ellipse_with_the_reference_noise():
    """Errors of 3 m and 5 m east against a reported 1 m sigma plus a reference of 1 m per axis: 9 / 2 = 4.5 is inside
    the 95 % ellipse (5.99), 12.5 is not; LOST frames and frames without an estimate are not counted."""
    from types import SimpleNamespace

    from maps.geodesy import LocalFrame
    from runtime.tools.photo_protocol import covariance_held, format_table

    frame = LocalFrame(41.0, -83.0)
    metas, errs = [], []
    for k, (east, status) in enumerate(((3.0, "DEGRADED"), (5.0, "OK"), (50.0, "LOST"), (0.0, None))):
        lat, lon = frame.to_wgs84(100.0 * k, 0.0)
        metas.append(SimpleNamespace(lat=float(lat), lon=float(lon)))
        if status is None:
            errs.append((None, math.nan))
            continue
        elat, elon = frame.to_wgs84(100.0 * k + east, 0.0)
        rec = SimpleNamespace(lat=float(elat), lon=float(elon), status=status, cov_en=((1.0, 0.0), (0.0, 1.0)))
        errs.append((rec, east))
    assert covariance_held(errs, metas, frame, 1.0) == 0.5  # 3 m: 9 / 2 = 4.5 <= 5.99; 5 m: 12.5 > 5.99
    assert covariance_held(errs, metas, frame, 3.0) == 1.0  # 25 / 10 = 2.5
    assert covariance_held(errs[2:], metas[2:], frame, 1.0) is None
    none = {"n": 0, "median_m": None, "p95_m": None, "max_m": None, "within_10m": None}
    res = {"reference_sigma_m": 2.1, "cases": {"noisy": {"localized": 1.0, "all": none, "structured": none,
                                                         "structured_within_10m": 0.5, "ok_over_10m": 0,
                                                         "covariance_held_95": 0.93}}}
    assert ("95 % ellipse (reported covariance + the reference's 2.1 m) holds noisy 93% of the localized frames' "
            "errors") in format_table(res)


def test_every_frame_gets_a_row_with_what_it_had():
    """Three photos flying north-east: one estimated 3 m east with a fix 2 m north and its GPS 4 m off, one 12 m
    off with a wrong fix, one without an estimate; each row carries its error and the fix's as east/north from the
    reference, the reported sigma per axis, the recorded heading and, beyond 10 m, why."""
    from types import SimpleNamespace

    from calibration.geometry import Attitude
    from maps.geodesy import LocalFrame
    from runtime.tools.photo_protocol import frame_rows

    frame = LocalFrame(41.0, -83.0)
    att = Attitude.from_degrees(2.0, -3.0, 90.0 - 55.0)  # yaw from east: heading 55 degrees
    test, errs = [], []
    for k, (east, cov) in enumerate(((3.0, ((4.0, 0.0), (0.0, 4.0))), (12.0, ((1.0, 0.0), (0.0, 1.0))), (None, None))):
        lat, lon = frame.to_wgs84(100.0 * k, 0.0)
        test.append(SimpleNamespace(lat=float(lat), lon=float(lon), t_ns=k, path=f"/x/p{k}.jpg", name=f"p{k}.jpg",
                                    attitude=att))
        if east is None:
            errs.append((None, math.nan))
            continue
        elat, elon = frame.to_wgs84(100.0 * k + east, 0.0)
        errs.append((SimpleNamespace(lat=float(elat), lon=float(elon), status="DEGRADED", cov_en=cov), east))
    fixes = {0: (0.0, 2.0), 1: (100.0 + 11.0, 0.0)}
    rows = frame_rows(test, errs, np.array([0.1, 0.01, 0.05]), fixes, np.array([4.0, 2.0, math.nan]), {"p0.jpg"},
                      frame, 0.03, 1.0)
    assert [r["photo"] for r in rows] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    a, b, c = rows
    assert a["error_m"] == 3.0 and a["error_en_m"] == [3.0, 0.0] and a["sigma_m"] == 2.0 and a["why"] is None
    # 3 m against 2 m reported + 1 m reference: 9 / 5 <= 5.99 inside; 12 m against 1 + 1: 144 / 2 outside
    assert a["ellipse_95"] is True and rows[1]["ellipse_95"] is False and rows[2]["ellipse_95"] is None
    assert a["visual_fix_m"] == 2.0 and a["visual_fix_en_m"] == [0.0, 2.0] and a["gps_fed_m"] == 4.0
    assert a["tilt"] == "images" and b["tilt"] == "recorded" and a["heading_deg"] == 55.0
    assert a["roll_deg"] == 2.0 and a["pitch_deg"] == -3.0 and a["status"] == "DEGRADED"
    assert b["why"] == "wrong visual fix" and b["visual_fix_m"] == 11.0 and b["sigma_m"] == 1.0
    assert c["why"] == "lost" and c["error_m"] is None and c["error_en_m"] is None and c["status"] is None
    assert c["gps_fed_m"] is None and c["visual_fix_m"] is None
    assert frame_rows(test, errs, np.zeros(3), {}, None, set(), frame, 0.03)[1]["why"] == "uniform field, no GPS"


def test_the_protocol_runs_the_cases_asked_and_refuses_others(capsys):
    import pytest

    from runtime.cli.onboard import main as runtime_main
    from runtime.tools.photo_protocol import CASES, ProtocolConfig

    assert ProtocolConfig().cases == CASES
    assert ProtocolConfig(cases=("noisy",)).cases == ("noisy",)
    with pytest.raises(ValueError, match=r"cases must be a non-empty subset of \('noisy', 'cut', 'no_gps'\), got "
                                         r"\('noisy', 'gps_off'\)"):
        ProtocolConfig(cases=("noisy", "gps_off"))
    with pytest.raises(ValueError, match="non-empty subset"):
        ProtocolConfig(cases=())
    assert runtime_main(["photo-eval", "photos", "--cases", "noisy,jammed"]) == 2
    assert "runtime photo-eval: cases must be a non-empty subset of ('noisy', 'cut', 'no_gps'), got ('noisy', " \
           "'jammed')" in capsys.readouterr().err
