"""The product rules as metrics (runtime.tools.integrity), on hand-built tracks whose right answers are known:
each rule breaking and holding, the phases, the windows from a SimConfig; and one end-to-end run over a simulated
bag (GPS alone, no map)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maps.geodesy import LocalFrame
from runtime.events import GpsFix, TruthPose
from runtime.outputs import EstimateRecord
from runtime.tools.integrity import (
    FlightWindows,
    IntegrityError,
    Rules,
    broken_rules,
    ellipse_coverage,
    evaluate_integrity,
    family_coverage,
    healthy_mask,
    in_windows,
    track_errors,
)

FRAME = LocalFrame(47.38, 8.49)
T0 = 1_700_000_000_000_000_000
DT = 0.2  # 5 Hz


def _t(s: float) -> int:
    return T0 + int(round(s * 1e9))


def _truth_xy(s: float) -> tuple[float, float]:
    return 8.0 * s, 0.0  # flying east at 8 m/s


def _latlon(x, y):
    lat, lon = FRAME.to_wgs84(np.array([x], float), np.array([y], float))
    return float(np.ravel(lat)[0]), float(np.ravel(lon)[0])


def _flight(duration_s=60.0, est_err=None, status=None, gps_state=None, cov=None, fix_err=None, no_fix=()):
    """(records, truth, fixes) of a flight east at 8 m/s, 5 Hz everything.

    est_err(s) -> (de, dn) metres, status(s) -> str, gps_state(s) -> str, cov(s) -> 2x2 or None,
    fix_err(s) -> (de, dn) metres; no fix during the (start, end) windows in ``no_fix``.
    """
    est_err = est_err or (lambda s: (1.0, 0.0))
    status = status or (lambda s: "OK")
    gps_state = gps_state or (lambda s: "ok")
    cov = cov or (lambda s: ((4.0, 0.0), (0.0, 4.0)))
    fix_err = fix_err or (lambda s: (3.0, 0.0) if int(round(s / DT)) % 2 else (0.0, 4.0))
    records, truth, fixes = [], [], []
    for k in range(int(round(duration_s / DT))):
        s = k * DT
        x, y = _truth_xy(s)
        lat, lon = _latlon(x, y)
        truth.append(TruthPose(_t(s), lat, lon, 60.0))
        de, dn = est_err(s)
        elat, elon = _latlon(x + de, y + dn)
        records.append(EstimateRecord(_t(s), elat, elon, None, 2.0, cov(s), status(s), {}, gps=gps_state(s)))
        if not any(a <= s < b for a, b in no_fix):
            fe, fn = fix_err(s)
            flat, flon = _latlon(x + fe, y + fn)
            fixes.append(GpsFix(_t(s), flat, flon, 60.0))
    return records, truth, fixes


def _run(windows=None, **kw):
    rec, truth, fixes = _flight(**kw)
    return evaluate_integrity(rec, truth, fixes, windows or FlightWindows(T0), frame=FRAME)


# ---------------------------------------------------------------------------------------------- windows, phases
def test_windows_from_strings_tuples_and_a_simconfig():
    w = FlightWindows(T0, outages=["10:20"], spoofs=[(30, 35, 200)], drags=["40:50:0.5"])
    assert w.outages == ((10.0, 20.0),) and w.spoofs == ((30.0, 35.0, 200.0),) and w.drags == ((40.0, 50.0, 0.5),)
    assert [k for k, _, _ in w.faults()] == ["outage", "spoof", "drag"]
    assert w.seconds([T0 + 1_500_000_000]).tolist() == [1.5]
    from runtime.sim.config import SimConfig

    cfg = SimConfig(gps_outages=("10:20",), gps_spoofs=("30:35:200",))
    assert FlightWindows.from_sim(cfg) == FlightWindows(cfg.start_time_ns, ((10, 20),), ((30, 35, 200),))
    for bad in ("20:10", "a:b", "1:2:3"):
        with pytest.raises(IntegrityError, match="window"):
            FlightWindows(T0, outages=[bad])
    with pytest.raises(IntegrityError, match="start_ns"):
        FlightWindows(1.5)
    with pytest.raises(IntegrityError, match="Rules.settle_s"):
        Rules(settle_s=-1)


def test_healthy_excludes_fault_windows_the_settling_time_and_times_without_a_fix():
    w = FlightWindows(T0, outages=[(10, 20)])
    t = np.array([5.0, 12.0, 21.0, 22.9, 23.0, 40.0])
    fixes = np.arange(0.0, 60.0, 0.2)
    assert healthy_mask(t, fixes, w).tolist() == [True, False, False, False, True, True]
    assert healthy_mask(t, fixes[fixes < 30], w).tolist() == [True, False, False, False, True, False]
    assert not healthy_mask(t, np.zeros(0), w).any()
    assert in_windows(np.array([9.9, 10.0, 19.9, 20.0]), [(10, 20)]).tolist() == [False, True, True, False]


def test_errors_per_sample_are_vectors_in_metres():
    rec, truth, fixes = _flight(10.0, est_err=lambda s: (3.0, -4.0))
    te = track_errors(rec, truth, fixes, frame=FRAME)
    assert np.allclose(te.err_en, [3.0, -4.0], atol=1e-3) and np.allclose(te.err_m, 5.0, atol=1e-3)
    assert np.allclose(te.fix_err_m[:2], [4.0, 3.0], atol=1e-3)
    with pytest.raises(IntegrityError, match="no estimates"):
        track_errors([], truth, fixes)
    with pytest.raises(IntegrityError, match="no ground truth"):
        track_errors(rec, [], fixes)


# ---------------------------------------------------------------------------------------------- R1
def test_r1_holds_when_the_estimate_beats_gps_and_breaks_when_not():
    good = _run()
    assert good.healthy.median_m == pytest.approx(1.0, abs=1e-3)
    assert good.gps_healthy.median_m == pytest.approx(3.5, abs=1e-3)  # half 3 m, half 4 m
    assert good.broken == ()
    bad = _run(est_err=lambda s: (5.0, 0.0))
    assert bad.broken == ("R1 median 5.0 > GPS 3.5", "R1 p95 5.0 > GPS 4.0")


def test_r1_ignores_fault_windows_and_the_3_s_after():
    # 50 m off during the outage and for 2.8 s after it: not healthy, so R1 holds
    w = FlightWindows(T0, outages=[(20, 30)])
    rep = _run(w, est_err=lambda s: (50.0, 0.0) if 20 <= s < 32.8 else (1.0, 0.0), no_fix=[(20, 30)])
    assert rep.healthy.max_m == pytest.approx(1.0, abs=1e-3)
    assert rep.outage.n == 50 and rep.outage.p95_m == pytest.approx(50.0, abs=1e-3)
    assert not any(b.startswith("R1") for b in rep.broken)
    # recovery: 50 m until 32.8 s, the first fix after the outage at 30 s -> 2.8 s (within 3 s)
    (r,) = rep.recoveries
    assert (r.kind, r.measured, r.first_fix_s, r.threshold_m) == ("outage", True, 30.0, 10.0)
    assert r.recovery_s == pytest.approx(2.8)


# ---------------------------------------------------------------------------------------------- R2a, R2b
def test_r2a_counts_ok_estimates_more_than_10_m_off():
    err = lambda s: (12.0, 0.0) if 10 <= s < 11 else (1.0, 0.0)  # noqa: E731  5 estimates 12 m off
    rep = _run(est_err=err, status=lambda s: "OK" if s < 10.6 else "DEGRADED")
    assert rep.ok_over_limit == 3 and "R2a OK>10m: 3" in rep.broken
    rep = _run(est_err=err, status=lambda s: "DEGRADED" if 10 <= s < 11 else "OK")
    assert rep.ok_over_limit == 0 and not any(b.startswith("R2a") for b in rep.broken)


def test_r2b_ellipse_coverage():
    # error (1, 0) with variance 4 east: d2 = 0.25 inside; variance 0.1: d2 = 10 outside
    cov = lambda s: ((4.0, 0.0), (0.0, 4.0)) if s < 45 else ((0.1, 0.0), (0.0, 4.0))  # noqa: E731
    rep = _run(cov=cov)
    assert (rep.coverage_inside, rep.coverage_n) == (225, 300) and rep.coverage == pytest.approx(0.75)
    # LOST and covariance-less estimates are not counted; a singular covariance holds only errors in its range
    rec, truth, fixes = _flight(2.0, status=lambda s: "LOST" if s < 1 else "OK",
                                cov=lambda s: ((0.0, 0.0), (0.0, 4.0)) if s < 1.6 else None)
    te = track_errors(rec, truth, fixes, frame=FRAME)
    assert ellipse_coverage(te) == (0, 3)
    rec, truth, fixes = _flight(1.0, est_err=lambda s: (0.0, 1.0), cov=lambda s: ((0.0, 0.0), (0.0, 4.0)))
    assert ellipse_coverage(track_errors(rec, truth, fixes, frame=FRAME)) == (5, 5)
    fams = family_coverage([("gps", 95, 100), ("gps", 0, 0), ("imu", 50, 100), ("cam", 0, 0)])
    assert fams["gps"].passed and fams["gps"].share == 0.95 and fams["gps"].flag == ""
    assert not fams["imu"].passed and "R2b ellipse 0.50" in fams["imu"].flag
    assert fams["cam"].passed and fams["cam"].share is None
    assert not family_coverage([("x", 100, 100)])["x"].passed  # 1.00 > 0.99: the ellipse is too wide


# ---------------------------------------------------------------------------------------------- R3
def test_r3_recovery_too_slow_or_never():
    w = FlightWindows(T0, outages=[(20, 30)])
    slow = _run(w, est_err=lambda s: (30.0, 0.0) if 20 <= s < 34 else (1.0, 0.0), no_fix=[(20, 30)])
    assert slow.recovery_s == pytest.approx(4.0)
    assert "R3 recovery 4.0 s > 3 s after outage 20-30 s" in slow.broken
    never = _run(w, est_err=lambda s: (30.0, 0.0) if s >= 20 else (1.0, 0.0), no_fix=[(20, 30)])
    assert never.recovery_s == math.inf and "R3 no recovery after outage 20-30 s" in never.broken
    # an outage running to the end has no healthy phase after it: not measured
    tail = _run(FlightWindows(T0, outages=[(40, 61)]), no_fix=[(40, 61)])
    assert not tail.recoveries[0].measured and tail.recovery_s is None and tail.broken == ()


def test_r3_threshold_is_the_healthy_gps_p95_when_above_10_m():
    w = FlightWindows(T0, outages=[(20, 30)])
    rep = _run(w, fix_err=lambda s: (14.0, 0.0), est_err=lambda s: (12.0, 0.0) if s >= 20 else (1.0, 0.0),
               no_fix=[(20, 30)])
    assert rep.recoveries[0].threshold_m == pytest.approx(14.0, abs=1e-3) and rep.recovery_s == 0.0


# ---------------------------------------------------------------------------------------------- R4a
def _spoof_flight(rejected_from_s, offset_m=200.0):
    w = FlightWindows(T0, spoofs=[(30, 35, offset_m)])
    fix = lambda s: (offset_m, 0.0) if 30 <= s < 35 else (3.0, 0.0)  # noqa: E731
    state = lambda s: "rejected" if rejected_from_s <= s < 35 else "ok"  # noqa: E731
    return _run(w, fix_err=fix, gps_state=state, est_err=lambda s: (2.0, 0.0) if 30 <= s < 40 else (1.0, 0.0))


def test_r4a_spoof_rejection_delay():
    fast = _spoof_flight(30.4)
    (s,) = fast.spoofs
    assert s.checked and s.rejected_after_s == pytest.approx(0.4) and s.max_error_m == pytest.approx(2.0, abs=1e-3)
    assert not any(b.startswith("R4a") for b in fast.broken)
    slow = _spoof_flight(31.6)
    assert "R4a spoof 200 m @30 s rejected after 1.6 s > 1 s" in slow.broken
    never = _spoof_flight(99.0)
    assert never.spoof_rejected_after_s == math.inf and "R4a spoof 200 m @30 s never rejected" in never.broken
    small = _spoof_flight(99.0, offset_m=20.0)  # below 50 m: not checked
    assert not small.spoofs[0].checked and small.spoof_rejected_after_s is None
    # status GPS_REJECTED counts as a rejection too
    w = FlightWindows(T0, spoofs=[(30, 35, 200)])
    rep = _run(w, status=lambda s: "GPS_REJECTED" if 30.2 <= s < 35 else "OK")
    assert rep.spoofs[0].rejected_after_s == pytest.approx(0.2)


# ---------------------------------------------------------------------------------------------- R4b
def _drag_flight(mps, detect_s, follow=True, ok_after=False):
    """A drag from 20 s to 50 s; the estimate follows the drag (error = mps * elapsed) when ``follow``."""
    w = FlightWindows(T0, drags=[(20, 50, mps)])
    fix = lambda s: (mps * (s - 20), 0.0) if 20 <= s < 50 else (3.0, 0.0)  # noqa: E731
    err = lambda s: (mps * (s - 20) if follow and 20 <= s < 50 else 1.0, 0.0)  # noqa: E731
    status = lambda s: "DEGRADED" if detect_s <= s < 50 and not ok_after else "OK"  # noqa: E731
    state = lambda s: "rejected" if detect_s <= s < 50 else "ok"  # noqa: E731
    return _run(w, fix_err=fix, est_err=err, status=status, gps_state=state)


def test_r4b_drag_detected_in_time_holds():
    rep = _drag_flight(1.0, detect_s=28.0)
    (d,) = rep.drags
    assert d.detected_after_s == pytest.approx(8.0) and d.drag_at_detection_m == pytest.approx(8.0)
    assert d.error_at_detection_m == pytest.approx(8.0, abs=1e-3) and d.passed
    assert not any(b.startswith("R4b") for b in rep.broken)


def test_r4b_drag_detected_late_breaks():
    rep = _drag_flight(1.0, detect_s=35.0)
    (d,) = rep.drags
    assert d.drag_at_detection_m == pytest.approx(15.0) and d.max_error_ok_m == pytest.approx(14.8, abs=1e-3)
    assert not d.passed
    assert "R4b drag 1 m/s @20 s: 14.8 m off while OK, detected at 15.0 m of drag" in rep.broken
    never = _drag_flight(0.5, detect_s=99.0)
    assert never.drag_at_detection_m == math.inf and never.drags[0].detected_after_s is None
    assert any(b.startswith("R4b drag 0.5 m/s @20 s") and b.endswith("never detected") for b in never.broken)


def test_r4b_drag_never_ok_while_off_holds():
    # the estimate follows the drag but says DEGRADED from 28 s (8 m): detected in time
    assert _drag_flight(0.5, detect_s=28.0).drags[0].passed
    # undetected, but the estimate does not follow the drag: never OK while > 10 m off
    rep = _drag_flight(1.0, detect_s=99.0, follow=False)
    assert rep.drags[0].passed and rep.drags[0].detected_after_s is None


def test_broken_rules_is_recomputable_and_report_is_json_ready():
    import json

    rep = _drag_flight(1.0, detect_s=35.0)
    assert broken_rules(rep) == rep.broken
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert d["drags"][0]["passed"] is False and d["broken"] == list(rep.broken)
    with pytest.raises(IntegrityError, match="FlightWindows"):
        evaluate_integrity([], [], [], windows=None)


# ---------------------------------------------------------------------------------------------- end to end
def test_end_to_end_over_a_simulated_bag_gps_only(tmp_path):
    """A short simulated flight with a spoof, tracked on GPS alone by the loop (no camera: no map needed), read
    back from the bag by runtime.tools.evaluation's readers."""
    pytest.importorskip("rosbags")
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto
    from runtime.sim.config import SimConfig
    from runtime.sim.flight import simulate
    from runtime.tools.integrity import integrity_of_bag

    gen = np.random.default_rng(0)
    img = gen.integers(0, 255, (800, 800, 3), dtype=np.uint8)
    tif = write_geotiff(tmp_path / "o.tif", Orthophoto(img, np.ones((800, 800), bool), 0.5, -200, 200, FRAME))
    cfg = SimConfig(ortho=str(tif), out=str(tmp_path / "f.bag"), duration_s=30.0, speed_mps=5.0,
                    trajectory="racetrack", gps_spoofs=("15:20:200",), gps_outages=("5:10",), camera_rate_hz=1.0)
    simulate(cfg)
    # a track that is the GPS itself (rejected nowhere) -> R4a never rejected; R1 ties with GPS (holds)
    from runtime.tools.evaluation import read_truth_and_gps

    truth, fixes = read_truth_and_gps(cfg.out)
    records = [EstimateRecord(f.t_ns, f.lat, f.lon, None, 5.0, ((25.0, 0.0), (0.0, 25.0)), "OK", {}, gps="ok")
               for f in fixes]
    rep = integrity_of_bag(records, cfg.out, FlightWindows.from_sim(cfg))
    assert rep.healthy.n > 50 and rep.healthy.median_m == pytest.approx(rep.gps_healthy.median_m)
    assert rep.outage.n == 0  # the GPS-only track has no estimate in the outage
    assert rep.spoofs[0].rejected_after_s is None and rep.spoofs[0].max_error_m > 150
    assert rep.ok_over_limit >= 20  # the spoofed fixes, reported OK 200 m off
    assert any(b.startswith("R4a spoof 200 m @15 s never rejected") for b in rep.broken)
    assert any(b.startswith("R2a OK>10m") for b in rep.broken)
    assert not any(b.startswith("R1") for b in rep.broken)
