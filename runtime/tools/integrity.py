"""The product's rules as numbers: how a track behaves in each GPS phase of a flight whose fault windows are known.

Pure functions over the onboard loop's :class:`~runtime.outputs.EstimateRecord` s, the ground truth and the GPS
fixes as :func:`runtime.tools.evaluation.read_truth_and_gps` reads them from a bag, and the flight's fault windows
(:class:`FlightWindows`, seconds from the flight's start, as in :class:`runtime.sim.config.SimConfig`).

Phases (times t in seconds from the flight's start; a window ``(start, end, ...)`` holds ``start <= t < end``)
------------------------------------------------------------------------------------------------------------------
* fault windows: outages, spoofs (a jump of METRES) and drags (the fix pulled away at MPS m/s);
* healthy: a GPS fix within ``Rules.fix_gap_s`` of t, t in no fault window and not in the first ``Rules.settle_s``
  after the end of one.

Rules (thresholds in :class:`Rules`)
------------------------------------
=====  ======================================================================================================
R1     healthy phases: the estimate's median and p95 error <= those of GPS alone (the fixes at healthy times)
R2a    integrity: no estimate reports status OK while more than ``ok_limit_m`` (10 m) off
R2b    covariance: the share of estimates (finite covariance, status not LOST) whose error lies inside the
       reported 95 % ellipse (e^T C^-1 e <= 5.991) is within [0.90, 0.99]; judged per scenario family
       (:func:`family_coverage`), reported per run
R3     recovery: after each fault window, from the first healthy fix, the error is below max(10 m, GPS p95)
       for good within ``recovery_s`` (3 s)
R4a    spoof (jumps >= 50 m): an estimate says GPS rejected (``gps == "rejected"`` or status GPS_REJECTED)
       within ``spoof_delay_s`` (1 s) of the window's start
R4b    drag: detected (GPS rejected or status not OK) before the estimate is ``drag_limit_m`` (10 m) off the
       truth, or never reporting OK while more than that off inside the window
=====  ======================================================================================================

Errors are horizontal, metres, in a :class:`maps.geodesy.LocalFrame` (centred on the first truth sample unless
given); truth is interpolated at each estimate's time as :mod:`runtime.tools.evaluation` does (not across truth gaps
longer than ``max_truth_gap_s``). Estimates without a position have no error: they are left out of the statistics
and count as "not within" for recovery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from maps.geodesy import LocalFrame

from .evaluation import ErrorStats, EvaluationError, _interp_index, read_truth_and_gps
from ..events import GpsFix, TruthPose
from ..outputs import EstimateRecord

#: chi-square quantile, 2 degrees of freedom, 95 %: e^T C^-1 e <= this inside the 95 % ellipse.
CHI2_2D_95 = 5.991
FAULT_KINDS = ("outage", "spoof", "drag")


class IntegrityError(EvaluationError):
    """Inputs the integrity metrics cannot use (bad windows, bad thresholds, no estimates, no truth)."""


# ============================================================================================== configuration
@dataclass(frozen=True)
class Rules:
    """Thresholds of the product rules (metres, seconds, fractions).

    ``ok_limit_m``: R2a (an OK estimate farther than this breaks integrity). ``settle_s``: seconds after a fault
    window that are not yet "healthy" (R1). ``fix_gap_s``: a healthy time has a GPS fix at most this far.
    ``spoof_min_m``: jumps at least this large are checked by R4a; ``spoof_delay_s``: their rejection deadline;
    ``spoof_tail_s``: the max error is taken over the window plus this. ``drag_limit_m``: R4b.
    ``chi2``: the 95 % ellipse's squared Mahalanobis radius; ``coverage_min``/``coverage_max``: R2b's range.
    ``recovery_m``: R3's floor (the threshold is max(recovery_m, healthy GPS p95)); ``recovery_s``: R3's deadline.
    """

    ok_limit_m: float = 10.0
    settle_s: float = 3.0
    fix_gap_s: float = 1.0
    spoof_min_m: float = 50.0
    spoof_delay_s: float = 1.0
    spoof_tail_s: float = 5.0
    drag_limit_m: float = 10.0
    chi2: float = CHI2_2D_95
    coverage_min: float = 0.90
    coverage_max: float = 0.99
    recovery_m: float = 10.0
    recovery_s: float = 3.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise IntegrityError(f"Rules.{name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.coverage_min <= self.coverage_max <= 1.0:
            raise IntegrityError(f"Rules coverage range must satisfy 0 <= min <= max <= 1, got "
                                 f"[{self.coverage_min}, {self.coverage_max}]")


def _window(spec, n: int, what: str) -> tuple[float, ...]:
    """``"A:B[:C]"`` or a sequence of n numbers -> floats, checked 0 <= A < B (and C >= 0)."""
    raw = spec.strip().split(":") if isinstance(spec, str) else spec
    try:
        vals = tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        raise IntegrityError(f"{what} window {spec!r} is not {n} numbers") from None
    if len(vals) != n or not all(math.isfinite(v) for v in vals) or not 0 <= vals[0] < vals[1] or min(vals) < 0:
        form = "START:END" if n == 2 else "START:END:VALUE"
        raise IntegrityError(f"{what} window {spec!r} must be {form} with 0 <= START < END (seconds), VALUE >= 0")
    return vals


@dataclass(frozen=True)
class FlightWindows:
    """A flight's GPS fault windows: seconds from its start ``start_ns`` (integer ns, the first message's stamp).

    ``outages``: ((start, end), ...); ``spoofs``: ((start, end, jump metres), ...); ``drags``: ((start, end, m/s),
    ...). Windows are given as tuples or ``"START:END[:VALUE]"`` strings and stored as float tuples.
    """

    start_ns: int
    outages: tuple = ()
    spoofs: tuple = ()
    drags: tuple = ()

    def __post_init__(self) -> None:
        if isinstance(self.start_ns, (bool, np.bool_)) or not isinstance(self.start_ns, (int, np.integer)):
            raise IntegrityError(f"start_ns must be integer nanoseconds, got {self.start_ns!r}")
        object.__setattr__(self, "start_ns", int(self.start_ns))
        for name, n in (("outages", 2), ("spoofs", 3), ("drags", 3)):
            object.__setattr__(self, name, tuple(_window(w, n, name[:-1]) for w in (getattr(self, name) or ())))

    @classmethod
    def from_sim(cls, cfg) -> "FlightWindows":
        """The windows of a :class:`runtime.sim.config.SimConfig` (``gps_drags`` where the simulator has it)."""
        return cls(int(cfg.start_time_ns), tuple(cfg.gps_outages), tuple(cfg.gps_spoofs),
                   tuple(getattr(cfg, "gps_drags", ()) or ()))

    def faults(self) -> list[tuple[str, float, float]]:
        """Every fault window as (kind, start s, end s), sorted by start."""
        out = [("outage", a, b) for a, b in self.outages] + [("spoof", a, b) for a, b, _ in self.spoofs]
        out += [("drag", a, b) for a, b, _ in self.drags]
        return sorted(out, key=lambda w: (w[1], w[2]))

    def seconds(self, t_ns) -> np.ndarray:
        """Integer ns stamps -> float64 seconds from the flight's start."""
        return (np.asarray(t_ns, dtype=np.int64) - self.start_ns) / 1e9


# ============================================================================================== errors per sample
@dataclass(frozen=True, eq=False)
class TrackErrors:
    """A track's errors against the truth, and GPS alone's, per sample (n estimates, m fixes).

    Attributes:
        t_ns: int64[n] estimate times. err_en: float64[n, 2] estimate - truth (east, north), metres; NaN where the
            estimate has no position or no truth. err_m: float64[n] its norm. status, gps: the records' strings.
        cov: float64[n, 2, 2] reported east/north covariance, m^2 (NaN where none).
        fix_t_ns: int64[m] GPS fix times; fix_err_m: float64[m] their horizontal error (NaN where no truth).
        frame: the local frame of the metres.
    """

    t_ns: np.ndarray
    err_en: np.ndarray
    err_m: np.ndarray
    status: tuple
    gps: tuple
    cov: np.ndarray
    fix_t_ns: np.ndarray
    fix_err_m: np.ndarray
    frame: LocalFrame


def track_errors(records: Sequence[EstimateRecord], truth: Sequence[TruthPose], gps: Sequence[GpsFix], *,
                 frame: LocalFrame | None = None, max_truth_gap_s: float = 2.0) -> TrackErrors:
    """Per-sample errors of ``records`` (sorted by time here) and of the fixes in ``gps`` (those with a fix).

    Raises:
        IntegrityError: no records, a record that is not an EstimateRecord, or no truth with a WGS84 position.
    """
    records = list(records)
    if not records:
        raise IntegrityError("the track has no estimates; nothing to evaluate")
    for i, r in enumerate(records):
        if not isinstance(r, EstimateRecord):
            raise IntegrityError(f"record {i} is a {type(r).__name__}, expected an EstimateRecord")
    records.sort(key=lambda r: r.t_ns)
    truth = sorted((p for p in truth if math.isfinite(p.lat) and math.isfinite(p.lon)), key=lambda p: p.t_ns)
    if not truth:
        raise IntegrityError("no ground truth with a WGS84 position; cannot evaluate")
    tt = np.array([p.t_ns for p in truth], dtype=np.int64)
    keep = np.concatenate([[True], np.diff(tt) > 0])
    truth, tt = [p for p, k in zip(truth, keep) if k], tt[keep]
    frame = frame or LocalFrame(truth[0].lat, truth[0].lon)
    tx, ty = _local(frame, truth)
    max_gap = int(max_truth_gap_s * 1e9)

    def offsets(t_ns: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if tt.size == 1:
            ok = t_ns == tt[0]
            return np.where(ok[:, None], np.column_stack([x - tx[0], y - ty[0]]), np.nan)
        i0, i1, w, ok = _interp_index(tt, t_ns, max_gap)
        d = np.column_stack([x - ((1 - w) * tx[i0] + w * tx[i1]), y - ((1 - w) * ty[i0] + w * ty[i1])])
        return np.where(ok[:, None], d, np.nan)

    et = np.array([r.t_ns for r in records], dtype=np.int64)
    ex, ey = _local(frame, records)
    err_en = offsets(et, ex, ey)
    cov = np.full((len(records), 2, 2), np.nan)
    for i, r in enumerate(records):
        if r.cov_en is not None:
            cov[i] = r.cov_en
    fixes = sorted((f for f in gps if f.has_fix), key=lambda f: f.t_ns)
    ft = np.array([f.t_ns for f in fixes], dtype=np.int64)
    fx, fy = _local(frame, fixes)
    fix_err = np.hypot(*offsets(ft, fx, fy).T) if fixes else np.zeros(0)
    return TrackErrors(et, err_en, np.hypot(err_en[:, 0], err_en[:, 1]), tuple(r.status for r in records),
                       tuple(r.gps for r in records), cov, ft, fix_err, frame)


def _local(frame: LocalFrame, items) -> tuple[np.ndarray, np.ndarray]:
    """lat/lon of ``items`` -> local x, y metres (NaN where lat/lon are NaN)."""
    lat = np.array([i.lat for i in items], dtype=float)
    lon = np.array([i.lon for i in items], dtype=float)
    x, y = np.full(lat.size, np.nan), np.full(lat.size, np.nan)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if ok.any():
        px, py = frame.to_local(lat[ok], lon[ok])
        x[ok], y[ok] = np.asarray(px, float).ravel(), np.asarray(py, float).ravel()
    return x, y


# ============================================================================================== phases
def in_windows(t_s: np.ndarray, windows: Iterable[Sequence[float]], *, tail_s: float = 0.0) -> np.ndarray:
    """bool[n]: t (seconds) inside any window ``start <= t < end + tail_s``."""
    t_s = np.asarray(t_s, dtype=float)
    out = np.zeros(t_s.shape, dtype=bool)
    for w in windows:
        out |= (t_s >= w[0]) & (t_s < w[1] + tail_s)
    return out


def healthy_mask(t_s: np.ndarray, fix_t_s: np.ndarray, windows: FlightWindows, rules: Rules = Rules()) -> np.ndarray:
    """bool[n]: healthy times (seconds): a fix within ``rules.fix_gap_s``, in no fault window and not within
    ``rules.settle_s`` after one ends."""
    t_s = np.asarray(t_s, dtype=float)
    fix_t_s = np.sort(np.asarray(fix_t_s, dtype=float))
    if fix_t_s.size == 0:
        return np.zeros(t_s.shape, dtype=bool)
    i = np.clip(np.searchsorted(fix_t_s, t_s), 1, max(fix_t_s.size - 1, 1))
    near = np.minimum(np.abs(fix_t_s[i - 1] - t_s), np.abs(fix_t_s[np.minimum(i, fix_t_s.size - 1)] - t_s))
    faults = [(a, b) for _, a, b in windows.faults()]
    return (near <= rules.fix_gap_s) & ~in_windows(t_s, faults, tail_s=rules.settle_s)


def healthy_stats(te: TrackErrors, windows: FlightWindows, rules: Rules = Rules()) -> tuple[ErrorStats, ErrorStats]:
    """(estimate, GPS alone) error statistics over the healthy phases; GPS alone = the fixes at healthy times."""
    fix_s = windows.seconds(te.fix_t_ns)
    est = healthy_mask(windows.seconds(te.t_ns), fix_s, windows, rules)
    fix = healthy_mask(fix_s, fix_s, windows, rules)
    return ErrorStats.of(te.err_m[est]), ErrorStats.of(te.fix_err_m[fix])


def outage_stats(te: TrackErrors, windows: FlightWindows) -> ErrorStats:
    """Error statistics of the estimates inside the outage windows (metres)."""
    return ErrorStats.of(te.err_m[in_windows(windows.seconds(te.t_ns), windows.outages)])


# ============================================================================================== spoof and drag
@dataclass(frozen=True)
class SpoofCheck:
    """One spoof window (seconds from the start; ``offset_m`` the jump). ``rejected_after_s``: from the window's
    start to the first estimate inside it saying GPS rejected (None: none did; also None when the jump is below
    ``Rules.spoof_min_m``, ``checked`` False). ``max_error_m``: the largest error over the window + the tail."""

    start_s: float
    end_s: float
    offset_m: float
    checked: bool
    rejected_after_s: float | None
    max_error_m: float | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _rejected(status: str, gps: str) -> bool:
    return gps == "rejected" or status == "GPS_REJECTED"


def _nanmax(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else None


def spoof_checks(te: TrackErrors, windows: FlightWindows, rules: Rules = Rules()) -> tuple[SpoofCheck, ...]:
    """One :class:`SpoofCheck` per spoof window."""
    t_s = windows.seconds(te.t_ns)
    out = []
    for a, b, m in windows.spoofs:
        inside = np.flatnonzero((t_s >= a) & (t_s < b))
        hit = [i for i in inside if _rejected(te.status[i], te.gps[i])]
        checked = m >= rules.spoof_min_m
        delay = float(t_s[hit[0]] - a) if hit and checked else None
        tail = (t_s >= a) & (t_s <= b + rules.spoof_tail_s)
        out.append(SpoofCheck(a, b, m, checked, delay, _nanmax(te.err_m[tail])))
    return tuple(out)


@dataclass(frozen=True)
class DragCheck:
    """One drag window (seconds from the start, ``mps`` the drag speed). Detection: the first estimate inside it
    saying GPS rejected or a status other than OK. ``detected_after_s`` (None: never), ``drag_at_detection_m`` =
    mps x that, ``error_at_detection_m``; ``max_error_before_detection_m``: the largest error from the window's
    start to the detection (to its end when never detected); ``max_error_ok_m``: the largest error of an OK
    estimate inside the window (None: none). ``passed``: R4b (see the module docstring)."""

    start_s: float
    end_s: float
    mps: float
    detected_after_s: float | None
    drag_at_detection_m: float | None
    error_at_detection_m: float | None
    max_error_before_detection_m: float | None
    max_error_ok_m: float | None
    passed: bool

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def drag_checks(te: TrackErrors, windows: FlightWindows, rules: Rules = Rules()) -> tuple[DragCheck, ...]:
    """One :class:`DragCheck` per drag window."""
    t_s = windows.seconds(te.t_ns)
    out = []
    for a, b, v in windows.drags:
        inside = np.flatnonzero((t_s >= a) & (t_s < b))
        hit = [i for i in inside if _rejected(te.status[i], te.gps[i]) or te.status[i] != "OK"]
        det = hit[0] if hit else None
        upto = inside if det is None else inside[inside <= det]
        before = _nanmax(te.err_m[upto])
        ok = np.array([te.status[i] == "OK" for i in inside], dtype=bool)
        ok_max = _nanmax(te.err_m[inside[ok]]) if ok.any() else None
        passed = (det is not None and (before is None or before <= rules.drag_limit_m)) or (
            ok_max is None or ok_max <= rules.drag_limit_m)
        after = None if det is None else float(t_s[det] - a)
        err_det = None if det is None or not np.isfinite(te.err_m[det]) else float(te.err_m[det])
        out.append(DragCheck(a, b, v, after, None if after is None else v * after, err_det, before, ok_max,
                             bool(passed)))
    return tuple(out)


# ============================================================================================== integrity, covariance
def ok_over_limit(te: TrackErrors, limit_m: float = 10.0) -> int:
    """Number of estimates with status OK whose error exceeds ``limit_m`` metres (R2a)."""
    ok = np.array([s == "OK" for s in te.status], dtype=bool)
    return int(np.sum(ok & np.isfinite(te.err_m) & (te.err_m > limit_m)))


def ellipse_coverage(te: TrackErrors, chi2: float = CHI2_2D_95) -> tuple[int, int]:
    """(inside, n): of the n estimates with an error, a finite covariance and a status other than LOST, how many
    lie inside the reported ellipse e^T C^-1 e <= ``chi2`` (5.991: 95 %). A singular covariance holds only a zero
    error (computed with the pseudo-inverse, so errors along its null space count as outside)."""
    use = np.isfinite(te.err_m) & np.all(np.isfinite(te.cov), axis=(1, 2))
    use &= np.array([s != "LOST" for s in te.status], dtype=bool)
    idx = np.flatnonzero(use)
    inside = 0
    for i in idx:
        e, c = te.err_en[i], te.cov[i]
        d2 = float(e @ np.linalg.pinv(c) @ e)
        resid = e - c @ np.linalg.pinv(c) @ e  # the part of e outside the covariance's range
        inside += int(d2 <= chi2 and float(resid @ resid) <= 1e-9 * (1.0 + float(e @ e)))
    return inside, int(idx.size)


# ============================================================================================== recovery
@dataclass(frozen=True)
class RecoveryCheck:
    """Recovery after one fault window (seconds from the start). ``first_fix_s``: the first healthy fix after it
    (None: none before the next window or the end, ``measured`` False). ``recovery_s``: from that fix until the
    error is below ``threshold_m`` for good until the next fault window or the end (0 when it already is; None
    when it never settles)."""

    kind: str
    start_s: float
    end_s: float
    threshold_m: float
    measured: bool
    first_fix_s: float | None
    recovery_s: float | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def recovery_checks(te: TrackErrors, windows: FlightWindows, threshold_m: float) -> tuple[RecoveryCheck, ...]:
    """One :class:`RecoveryCheck` per fault window; ``threshold_m`` = max(10 m, healthy GPS p95) in the report."""
    t_s = windows.seconds(te.t_ns)
    fix_s = np.sort(windows.seconds(te.fix_t_ns))
    faults = windows.faults()
    spans = [(a, b) for _, a, b in faults]
    out = []
    for kind, a, b in faults:
        nxt = min([s for s, _ in spans if s >= b] + [math.inf])
        cand = fix_s[(fix_s >= b) & (fix_s < nxt) & ~in_windows(fix_s, spans)]
        if cand.size == 0:
            out.append(RecoveryCheck(kind, a, b, threshold_m, False, None, None))
            continue
        f0 = float(cand[0])
        sel = (t_s >= f0) & (t_s < nxt)
        if not sel.any():
            out.append(RecoveryCheck(kind, a, b, threshold_m, False, f0, None))
            continue
        good = np.nan_to_num(te.err_m[sel], nan=np.inf) <= threshold_m
        bad = np.flatnonzero(~good)
        if bad.size == 0:
            rec = 0.0
        elif bad[-1] == good.size - 1:
            rec = None
        else:
            rec = float(t_s[sel][bad[-1] + 1] - f0)
        out.append(RecoveryCheck(kind, a, b, threshold_m, True, f0, rec))
    return tuple(out)


# ============================================================================================== report
@dataclass(frozen=True)
class IntegrityReport:
    """Everything :func:`evaluate_integrity` measured for one run (metres, seconds).

    ``healthy`` / ``gps_healthy``: :class:`ErrorStats` of the estimate / GPS alone in the healthy phases;
    ``outage``: of the estimate inside outages; ``spoofs``, ``drags``, ``recoveries``: the per-window checks;
    ``ok_over_limit``: R2a's count; ``coverage_inside`` / ``coverage_n``: R2b's counts (``coverage`` their share,
    None when n == 0); ``broken``: the broken rules as short strings (R2b is judged per family, not here).
    """

    healthy: ErrorStats
    gps_healthy: ErrorStats
    outage: ErrorStats
    spoofs: tuple
    drags: tuple
    recoveries: tuple
    ok_over_limit: int
    coverage_inside: int
    coverage_n: int
    rules: Rules = field(default_factory=Rules)
    broken: tuple = ()

    @property
    def coverage(self) -> float | None:
        return self.coverage_inside / self.coverage_n if self.coverage_n else None

    @property
    def spoof_rejected_after_s(self) -> float | None:
        """The slowest rejection among the checked spoofs (inf when one was never rejected; None: none checked)."""
        d = [math.inf if s.rejected_after_s is None else s.rejected_after_s for s in self.spoofs if s.checked]
        return max(d) if d else None

    @property
    def drag_at_detection_m(self) -> float | None:
        """The largest drag offset at detection (inf when a drag was never detected; None: no drag)."""
        d = [math.inf if x.drag_at_detection_m is None else x.drag_at_detection_m for x in self.drags]
        return max(d) if d else None

    @property
    def recovery_s(self) -> float | None:
        """The slowest measured recovery (inf when one never settled; None: none measured)."""
        d = [math.inf if r.recovery_s is None else r.recovery_s for r in self.recoveries if r.measured]
        return max(d) if d else None

    def to_dict(self) -> dict:
        """JSON-ready (infinite values as None)."""
        def fin(v):
            return None if v is None or not math.isfinite(v) else v

        return {"healthy": self.healthy.to_dict(), "gps_healthy": self.gps_healthy.to_dict(),
                "outage": self.outage.to_dict(), "spoofs": [s.to_dict() for s in self.spoofs],
                "drags": [d.to_dict() for d in self.drags], "recoveries": [r.to_dict() for r in self.recoveries],
                "ok_over_limit": self.ok_over_limit, "coverage_inside": self.coverage_inside,
                "coverage_n": self.coverage_n, "coverage": self.coverage,
                "spoof_rejected_after_s": fin(self.spoof_rejected_after_s),
                "drag_at_detection_m": fin(self.drag_at_detection_m), "recovery_s": fin(self.recovery_s),
                "rules": {k: getattr(self.rules, k) for k in self.rules.__dataclass_fields__},
                "broken": list(self.broken)}


def broken_rules(report: IntegrityReport) -> tuple[str, ...]:
    """The rules ``report`` breaks, as short strings (e.g. ``"R1 p95 4.1 > GPS 3.9"``, ``"R2a OK>10m: 3"``)."""
    r, out = report.rules, []
    h, g = report.healthy, report.gps_healthy
    if h.n and g.n:
        if h.median_m > g.median_m:
            out.append(f"R1 median {h.median_m:.1f} > GPS {g.median_m:.1f}")
        if h.p95_m > g.p95_m:
            out.append(f"R1 p95 {h.p95_m:.1f} > GPS {g.p95_m:.1f}")
    if report.ok_over_limit:
        out.append(f"R2a OK>{r.ok_limit_m:g}m: {report.ok_over_limit}")
    for c in report.recoveries:
        if not c.measured:
            continue
        if c.recovery_s is None:
            out.append(f"R3 no recovery after {c.kind} {c.start_s:g}-{c.end_s:g} s")
        elif c.recovery_s > r.recovery_s:
            out.append(f"R3 recovery {c.recovery_s:.1f} s > {r.recovery_s:g} s after {c.kind} {c.start_s:g}-"
                       f"{c.end_s:g} s")
    for s in report.spoofs:
        if not s.checked:
            continue
        if s.rejected_after_s is None:
            out.append(f"R4a spoof {s.offset_m:g} m @{s.start_s:g} s never rejected")
        elif s.rejected_after_s > r.spoof_delay_s:
            out.append(f"R4a spoof {s.offset_m:g} m @{s.start_s:g} s rejected after {s.rejected_after_s:.1f} s > "
                       f"{r.spoof_delay_s:g} s")
    for d in report.drags:
        if not d.passed:
            how = ("never detected" if d.detected_after_s is None else
                   f"detected at {d.drag_at_detection_m:.1f} m of drag")
            out.append(f"R4b drag {d.mps:g} m/s @{d.start_s:g} s: {d.max_error_ok_m:.1f} m off while OK, {how}")
    return tuple(out)


def evaluate_integrity(records: Sequence[EstimateRecord], truth: Sequence[TruthPose], gps: Sequence[GpsFix],
                       windows: FlightWindows, rules: Rules = Rules(), *, frame: LocalFrame | None = None,
                       max_truth_gap_s: float = 2.0) -> IntegrityReport:
    """Every metric of the module docstring for one run, with the broken rules filled in.

    Args:
        records: the track; truth, gps: as :func:`runtime.tools.evaluation.read_truth_and_gps` returns them.
        windows: the flight's fault windows (:meth:`FlightWindows.from_sim`). rules: the thresholds.
        frame: the local frame of the metres (default: centred on the first truth sample).
    Raises:
        IntegrityError: no estimates or no truth.
    """
    if not isinstance(windows, FlightWindows):
        raise IntegrityError(f"windows must be a FlightWindows, got {type(windows).__name__}")
    if not isinstance(rules, Rules):
        raise IntegrityError(f"rules must be a Rules, got {type(rules).__name__}")
    te = track_errors(records, truth, gps, frame=frame, max_truth_gap_s=max_truth_gap_s)
    healthy, gps_healthy = healthy_stats(te, windows, rules)
    threshold = max(rules.recovery_m, gps_healthy.p95_m or 0.0)
    inside, n = ellipse_coverage(te, rules.chi2)
    report = IntegrityReport(healthy=healthy, gps_healthy=gps_healthy, outage=outage_stats(te, windows),
                             spoofs=spoof_checks(te, windows, rules), drags=drag_checks(te, windows, rules),
                             recoveries=recovery_checks(te, windows, threshold),
                             ok_over_limit=ok_over_limit(te, rules.ok_limit_m), coverage_inside=inside,
                             coverage_n=n, rules=rules)
    return IntegrityReport(**{**{k: getattr(report, k) for k in report.__dataclass_fields__},
                              "broken": broken_rules(report)})


def integrity_of_bag(records: Sequence[EstimateRecord], bag_path, windows: FlightWindows, rules: Rules = Rules(),
                     *, topics: dict | None = None) -> IntegrityReport:
    """:func:`evaluate_integrity` with the truth and fixes read from ``bag_path`` by
    :func:`runtime.tools.evaluation.read_truth_and_gps`."""
    truth, gps = read_truth_and_gps(bag_path, topics=topics)
    return evaluate_integrity(records, truth, gps, windows, rules)


# ============================================================================================== families
@dataclass(frozen=True)
class FamilyCoverage:
    """R2b over a scenario family: pooled ``inside`` / ``n`` estimates, ``share`` (None when n == 0) and whether it
    lies within the rule's range [``low``, ``high``] (``passed``; True when there is nothing to judge)."""

    family: str
    inside: int
    n: int
    share: float | None
    passed: bool
    low: float = 0.90
    high: float = 0.99

    @property
    def flag(self) -> str:
        """'' when passed, else e.g. ``"R2b ellipse 0.75 outside [0.90, 0.99]"``."""
        return "" if self.passed else f"R2b ellipse {self.share:.2f} outside [{self.low:.2f}, {self.high:.2f}]"

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "flag": self.flag}


def family_coverage(rows: Iterable[tuple[str, int, int]], rules: Rules = Rules()) -> dict[str, FamilyCoverage]:
    """Pool (family, inside, n) per family -> family -> :class:`FamilyCoverage` (R2b), in first-seen order."""
    acc: dict[str, list[int]] = {}
    for fam, inside, n in rows:
        a = acc.setdefault(str(fam), [0, 0])
        a[0] += int(inside)
        a[1] += int(n)
    out = {}
    for fam, (inside, n) in acc.items():
        share = inside / n if n else None
        ok = share is None or rules.coverage_min <= share <= rules.coverage_max
        out[fam] = FamilyCoverage(fam, inside, n, share, bool(ok), rules.coverage_min, rules.coverage_max)
    return out


__all__ = [
    "CHI2_2D_95",
    "DragCheck",
    "FamilyCoverage",
    "FlightWindows",
    "IntegrityError",
    "IntegrityReport",
    "RecoveryCheck",
    "Rules",
    "SpoofCheck",
    "TrackErrors",
    "broken_rules",
    "drag_checks",
    "ellipse_coverage",
    "evaluate_integrity",
    "family_coverage",
    "healthy_mask",
    "healthy_stats",
    "in_windows",
    "integrity_of_bag",
    "ok_over_limit",
    "outage_stats",
    "recovery_checks",
    "spoof_checks",
    "track_errors",
]
