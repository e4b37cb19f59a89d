"""How well a track (``track.jsonl``) follows the ground truth of its bag, by GPS phase, next to GPS alone.

:func:`evaluate_track` reads the truth (role ``truth_fix``, ``/ground_truth/fix``; else ``truth_pose`` with an
``enu@LAT,LON,ALT`` frame) and the GPS fixes (role ``gps``) of a bag with :class:`~runtime.bags.BagReader` and calls
:func:`evaluate_events`, the pure core (events in, numbers out).

Method
------
* Metres, not degrees: truth, estimates and fixes are projected into a :class:`maps.geodesy.LocalFrame` centred on
  the first truth sample (x east, y north); errors are horizontal distances there.
* Estimates without a position (lat/lon NaN, tracker not initialised) are not in the error statistics
  (``n_no_position``); for convergence they count as not within the threshold.
* Truth at an estimate's ``t_ns``: linear interpolation between the two truth samples around it (exact at a sample);
  estimates before the first / after the last truth sample, or inside a truth gap longer than ``max_truth_gap_s``,
  are not evaluated (counted in ``n_unmatched``).
* Phase of an estimate at time t, from the GPS fixes (only fixes with ``has_fix``):
  ``outage`` when t lies strictly inside a gap between consecutive fixes longer than
  ``outage_gap_s = max(outage_s, 2.5 x the median fix interval)`` (before the first / after the last fix: when
  more than half that from it; no fix at all: always); otherwise the nearest fix in time decides: ``spoof`` when
  that fix is more than ``spoof_m`` from the truth at its own time, else ``gps_ok``.
* GPS alone: every fix against the truth at its time, phase ``spoof`` (> ``spoof_m``) or ``gps_ok``; ``outage``
  has no fixes by definition.
* Statistics per phase and ``all``: n, median, p95 (linear interpolation), max, mean, RMS, share of errors within
  1 / 3 / 10 m (fractions in [0, 1]).
* Convergence: the first time (seconds after the first estimate with truth) the error is <= ``converge_m`` and the
  time from which it stays <= ``converge_m`` until the end (None when the last error is above).
* Heading (when the truth has attitudes and the estimates headings): |wrapped difference| of compass headings.

:func:`plot_track` draws the tracks over the map imagery (or a plain background with a scale bar) and an
error-over-time panel with the phases shaded, as a PNG written with OpenCV.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from maps.geodesy import LocalFrame

from ..errors import OnboardError
from ..events import GpsFix, TruthPose
from ..outputs import EstimateRecord, OutputError

PHASES = ("all", "gps_ok", "outage", "spoof")
WITHIN_M = (1.0, 3.0, 10.0)


class EvaluationError(OnboardError):
    """A track that cannot be evaluated against a bag (no truth, no overlap in time, bad parameters)."""


# ============================================================================================== statistics
@dataclass(frozen=True)
class ErrorStats:
    """Horizontal error statistics of n values (metres; None when n == 0). ``within_*`` are fractions in [0, 1]."""

    n: int
    median_m: float | None = None
    p95_m: float | None = None
    max_m: float | None = None
    mean_m: float | None = None
    rmse_m: float | None = None
    within_1m: float | None = None
    within_3m: float | None = None
    within_10m: float | None = None

    @classmethod
    def of(cls, errors) -> "ErrorStats":
        e = np.asarray(errors, dtype=float).ravel()
        e = e[np.isfinite(e)]
        if e.size == 0:
            return cls(0)
        return cls(
            n=int(e.size),
            median_m=float(np.median(e)),
            p95_m=float(np.percentile(e, 95)),
            max_m=float(e.max()),
            mean_m=float(e.mean()),
            rmse_m=float(np.sqrt(np.mean(e * e))),
            within_1m=float(np.mean(e <= WITHIN_M[0])),
            within_3m=float(np.mean(e <= WITHIN_M[1])),
            within_10m=float(np.mean(e <= WITHIN_M[2])),
        )

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Convergence:
    """When the error first got / stayed within ``threshold_m`` (seconds after the first estimate with truth).

    ``converged_s`` / ``converged_t_ns``: from then on every error is <= threshold (None if the last one is above);
    ``first_within_s``: the first error <= threshold (None if none); ``max_after_m``: the largest error from
    ``converged_s`` on.
    """

    threshold_m: float
    first_within_s: float | None
    converged_s: float | None
    converged_t_ns: int | None
    max_after_m: float | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class HeadingStats:
    """Absolute compass heading errors, degrees."""

    n: int
    median_deg: float | None = None
    p95_deg: float | None = None
    max_deg: float | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class EvalSeries:
    """Per-sample arrays behind the statistics (for plots). Times are int64 ns; errors metres (NaN = no truth).

    ``phase``: str per estimate (``gps_ok`` / ``outage`` / ``spoof``; ``""`` where not evaluated).
    ``gps_phase``: ``gps_ok`` / ``spoof`` per fix (``""`` where no truth).
    """

    t_ns: np.ndarray
    err_m: np.ndarray
    phase: tuple
    gps_t_ns: np.ndarray
    gps_err_m: np.ndarray
    gps_phase: tuple


@dataclass(frozen=True, eq=False)
class EvalResult:
    """What :func:`evaluate_track` / :func:`evaluate_events` found.

    Attributes:
        track, bag: the files evaluated ('' when given as events).
        n_estimates: records in the track; n_evaluated: those with a position and truth; n_unmatched = the rest;
        n_no_position: records without a position (tracker not initialised; part of n_unmatched).
        n_gps: valid fixes; n_gps_evaluated: those with truth.
        params: the thresholds used, ``outage_gap_s`` being the effective outage gap.
        estimate, gps: phase (:data:`PHASES`) -> :class:`ErrorStats` of the track and of GPS alone.
        convergence: :class:`Convergence`. heading: :class:`HeadingStats` or None (no headings in truth or track).
        status_counts: status -> records. latency_ms: stage -> {n, median, p95, max} in ms.
        frame: the :class:`LocalFrame` the errors were computed in. series: :class:`EvalSeries`.
    """

    track: str
    bag: str
    n_estimates: int
    n_evaluated: int
    n_no_position: int
    n_gps: int
    n_gps_evaluated: int
    params: dict
    estimate: dict
    gps: dict
    convergence: Convergence
    heading: HeadingStats | None
    status_counts: dict
    latency_ms: dict
    frame: LocalFrame
    series: EvalSeries = field(repr=False)

    @property
    def n_unmatched(self) -> int:
        return self.n_estimates - self.n_evaluated

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-sample series)."""
        return {
            "track": self.track,
            "bag": self.bag,
            "n_estimates": self.n_estimates,
            "n_evaluated": self.n_evaluated,
            "n_unmatched": self.n_unmatched,
            "n_no_position": self.n_no_position,
            "n_gps": self.n_gps,
            "n_gps_evaluated": self.n_gps_evaluated,
            "params": dict(self.params),
            "frame": {"lat0": self.frame.lat0, "lon0": self.frame.lon0},
            "estimate": {p: s.to_dict() for p, s in self.estimate.items()},
            "gps": {p: s.to_dict() for p, s in self.gps.items()},
            "convergence": self.convergence.to_dict(),
            "heading": None if self.heading is None else self.heading.to_dict(),
            "status_counts": dict(self.status_counts),
            "latency_ms": {k: dict(v) for k, v in self.latency_ms.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def format_table(self) -> str:
        """The plain-text table ``runtime eval`` prints (aligned columns; '-' where there is no value)."""

        def num(v, fmt="{:.2f}"):
            return "-" if v is None else fmt.format(v)

        def pct(v):
            return "-" if v is None else f"{100 * v:.0f}%"

        head = ["phase", "n", "median", "p95", "max", "<1m", "<3m", "<10m"]
        rows = []
        for who, stats in (("estimate", self.estimate), ("GPS alone", self.gps)):
            for p in PHASES:
                s = stats[p]
                rows.append([who if p == "all" else "", p, str(s.n), num(s.median_m), num(s.p95_m), num(s.max_m),
                             pct(s.within_1m), pct(s.within_3m), pct(s.within_10m)])
        head = [""] + head
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

        def line(cells):
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        out = []
        src = f"{self.track or 'track'} vs {self.bag or 'truth'}"
        outside = self.n_unmatched - self.n_no_position
        out.append(f"{src}: {self.n_estimates} estimates, {self.n_evaluated} with truth"
                   + (f" ({outside} outside the truth's time span)" if outside else "")
                   + (f" ({self.n_no_position} without a position)" if self.n_no_position else "")
                   + f"; {self.n_gps} GPS fixes")
        out.append("horizontal error, metres")
        out.append(line(head).rstrip())
        for i, r in enumerate(rows):
            if i == len(PHASES):
                out.append("")
            out.append(line(r).rstrip())
        c = self.convergence
        conv = f"convergence (error <= {c.threshold_m:g} m): "
        if c.first_within_s is None:
            conv += "never within"
        else:
            conv += f"first within after {c.first_within_s:.1f} s, "
            conv += ("never stays within" if c.converged_s is None else
                     f"stays within from {c.converged_s:.1f} s (max after {c.max_after_m:.2f} m)")
        out.append(conv)
        if self.heading is not None and self.heading.n:
            h = self.heading
            out.append(f"heading error, degrees: median {h.median_deg:.1f}, p95 {h.p95_deg:.1f}, max {h.max_deg:.1f}"
                       f" (n={h.n})")
        if self.status_counts:
            out.append("status: " + ", ".join(f"{k} {v}" for k, v in self.status_counts.items()))
        if self.latency_ms:
            w = max(len(k) for k in self.latency_ms)
            out.append(f"latency ms  {'stage'.ljust(w)}  {'median':>8}  {'p95':>8}  {'max':>8}")
            for k, v in self.latency_ms.items():
                out.append(f"            {k.ljust(w)}  {v['median']:8.1f}  {v['p95']:8.1f}  {v['max']:8.1f}")
        p = self.params
        out.append(f"phases: outage = no GPS fix for > {p['outage_gap_s']:.2f} s; spoof = GPS fix > {p['spoof_m']:g} m "
                   "from truth")
        return "\n".join(out)


# ============================================================================================== reading the bag
def _photo_reference(folder) -> tuple[list[TruthPose], list[GpsFix]]:
    """A photo survey's own GPS as the reference: one TruthPose per photo (its EXIF position, altitude and the
    attitude of its XMP) and the same positions as the GPS. That GPS is itself a few metres off (a consumer
    receiver, its fix time a fraction of a second from the exposure): errors measured against it include that."""
    from ..sources.photos import PhotoFolder

    truth, gps = [], []
    with PhotoFolder(folder) as photos:
        for m in photos.photos:
            att = None if m.attitude is None else tuple(float(q) for q in m.attitude.to_quaternion())
            truth.append(TruthPose(int(m.t_ns), float(m.lat), float(m.lon), float(m.alt_m), attitude=att,
                                   topic="photos", frame_id=str(m.path)))
            gps.append(GpsFix(int(m.t_ns), float(m.lat), float(m.lon), float(m.alt_m), topic="photos"))
    if not truth:
        raise EvaluationError(f"{folder} holds no geotagged photo to use as the reference")
    return truth, gps


def read_truth_and_gps(bag_path, *, topics: dict | None = None) -> tuple[list[TruthPose], list[GpsFix]]:
    """Ground truth (``truth_fix`` and/or ``truth_pose``) and GPS fixes (``gps``) of a bag, in time order.

    Args:
        bag_path: a ROS1 ``.bag`` (or what :class:`~runtime.bags.BagReader` takes).
        topics: role -> topic overrides for the reader.
    Raises:
        EvaluationError: the bag has no ground truth (or none with a position in WGS84).
        BagError: the bag cannot be read.
    """
    from ..bags import BagReader
    from ..sources.photos import is_photo_folder

    if is_photo_folder(bag_path):
        return _photo_reference(bag_path)
    with BagReader(bag_path, topics=topics or {}) as bag:
        sel = bag.selection
        roles = [r for r in ("gps", "truth_fix", "truth_pose") if sel.get(r)]
        if not sel.get("truth_fix") and not sel.get("truth_pose"):
            raise EvaluationError(
                f"bag {bag_path} has no ground truth (a NavSatFix topic named like /ground_truth/fix, or a "
                "PoseStamped with an enu@LAT,LON,ALT frame); evaluation needs one (simulated bags have it)"
            )
        truth, gps = [], []
        for ev in bag.events(roles=roles):
            if isinstance(ev, TruthPose):
                truth.append(ev)
            elif isinstance(ev, GpsFix):
                gps.append(ev)
    truth = [t for t in truth if math.isfinite(t.lat) and math.isfinite(t.lon)]
    if not truth:
        raise EvaluationError(
            f"the ground truth of {bag_path} has no WGS84 position (a pose frame_id other than enu@LAT,LON,ALT and no "
            "truth NavSatFix); cannot compare it with lat/lon estimates"
        )
    return truth, gps


# ============================================================================================== core
def _heading_from_quat(q) -> float:
    x, y, z, w = q
    # R_body2world[:, 0] (body x axis in ENU): yaw = atan2(R10, R00)
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + z * w)
    return (90.0 - math.degrees(math.atan2(r10, r00))) % 360.0


def _interp_index(tt: np.ndarray, t: np.ndarray, max_gap_ns: int):
    """For each t: (i0, i1, w) with value = (1-w) v[i0] + w v[i1], and ok (bool) where t is covered."""
    n = tt.size
    i1 = np.searchsorted(tt, t, side="left")
    exact = (i1 < n) & (tt[np.minimum(i1, n - 1)] == t)
    i1c = np.clip(i1, 1, n - 1) if n > 1 else np.zeros_like(i1)
    i0c = np.maximum(i1c - 1, 0)
    gap = tt[i1c] - tt[i0c]
    inside = (i1 > 0) & (i1 < n) & (gap <= max_gap_ns)
    w = np.where(gap > 0, (t - tt[i0c]) / np.maximum(gap, 1), 0.0)
    ok = exact | inside
    i0 = np.where(exact, np.minimum(i1, n - 1), i0c)
    i1f = np.where(exact, np.minimum(i1, n - 1), i1c)
    w = np.where(exact, 0.0, w)
    return i0, i1f, w.astype(float), ok


def _phases(t: np.ndarray, fix_t: np.ndarray, fix_spoof: np.ndarray, gap_ns: int) -> list[str]:
    """Phase per time t (see the module docstring)."""
    n = fix_t.size
    if n == 0:
        return ["outage"] * t.size
    out = []
    half = gap_ns / 2
    for tv in t.tolist():
        i = int(np.searchsorted(fix_t, tv, side="left"))
        if i < n and fix_t[i] == tv:
            k = i
        elif i == 0:
            k = 0 if fix_t[0] - tv <= half else -1
        elif i == n:
            k = n - 1 if tv - fix_t[n - 1] <= half else -1
        else:
            a, b = int(fix_t[i - 1]), int(fix_t[i])
            k = -1 if b - a > gap_ns else (i - 1 if tv - a <= b - tv else i)
        out.append("outage" if k < 0 else ("spoof" if fix_spoof[k] else "gps_ok"))
    return out


def evaluate_events(records: Sequence[EstimateRecord], truth: Sequence[TruthPose], gps: Sequence[GpsFix], *,
                    outage_s: float = 1.0, spoof_m: float = 50.0, converge_m: float = 6.0,
                    max_truth_gap_s: float = 2.0, frame: LocalFrame | None = None, track: str = "",
                    bag: str = "") -> EvalResult:
    """Evaluate estimate records against truth and GPS events (the pure core of :func:`evaluate_track`).

    Args:
        records: the track (any order; sorted by ``t_ns`` here).
        truth: ground-truth samples with WGS84 positions (NaN lat/lon are ignored).
        gps: GPS fixes (those without ``has_fix`` are ignored).
        outage_s: a gap between fixes longer than max(outage_s, 2.5 x median fix interval) is an outage.
        spoof_m: a fix farther than this from the truth is spoofed.
        converge_m: the convergence threshold.
        max_truth_gap_s: truth is not interpolated across a longer gap.
        frame: the local frame for metres (default: centred on the first truth sample).
        track, bag: names recorded in the result.
    Raises:
        EvaluationError: no records, no truth, bad parameters, or no estimate within the truth's time span.
    """
    for name, v in (("outage_s", outage_s), ("spoof_m", spoof_m), ("converge_m", converge_m),
                    ("max_truth_gap_s", max_truth_gap_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise EvaluationError(f"{name} must be a positive number, got {v!r}")
    records = sorted(records, key=lambda r: r.t_ns)
    for i, r in enumerate(records):
        if not isinstance(r, EstimateRecord):
            raise EvaluationError(f"record {i} is a {type(r).__name__}, expected an EstimateRecord")
    if not records:
        raise EvaluationError(f"track {track + ' ' if track else ''}has no estimates; nothing to evaluate")
    truth = sorted((p for p in truth if math.isfinite(p.lat) and math.isfinite(p.lon)), key=lambda p: p.t_ns)
    if not truth:
        raise EvaluationError("no ground truth with a WGS84 position; cannot evaluate")
    fixes = sorted((f for f in gps if f.has_fix), key=lambda f: f.t_ns)

    # truth: unique times, local metres
    tt_all = np.array([p.t_ns for p in truth], dtype=np.int64)
    keep = np.concatenate([[True], np.diff(tt_all) > 0])
    truth = [p for p, k in zip(truth, keep) if k]
    tt = tt_all[keep]
    frame = frame or LocalFrame(truth[0].lat, truth[0].lon)
    tx, ty = (np.asarray(v, dtype=float) for v in frame.to_local(np.array([p.lat for p in truth]),
                                                                  np.array([p.lon for p in truth])))
    max_gap = int(max_truth_gap_s * 1e9)

    def truth_at(t: np.ndarray):
        i0, i1, w, ok = _interp_index(tt, t, max_gap)
        return (1 - w) * tx[i0] + w * tx[i1], (1 - w) * ty[i0] + w * ty[i1], ok, (i0, i1, w)

    # GPS alone
    ft = np.array([f.t_ns for f in fixes], dtype=np.int64)
    if fixes:
        fx, fy = (np.asarray(v, dtype=float) for v in frame.to_local(np.array([f.lat for f in fixes]),
                                                                      np.array([f.lon for f in fixes])))
        gx, gy, gok, _ = truth_at(ft)
        gerr = np.where(gok, np.hypot(fx - gx, fy - gy), np.nan)
    else:
        gerr = np.zeros(0)
    gspoof = np.nan_to_num(gerr, nan=0.0) > spoof_m
    gphase = tuple("" if not np.isfinite(e) else ("spoof" if s else "gps_ok") for e, s in zip(gerr, gspoof))
    period = float(np.median(np.diff(ft))) if ft.size > 1 else 0.0
    gap_ns = int(max(outage_s * 1e9, 2.5 * period))

    # estimates
    et = np.array([r.t_ns for r in records], dtype=np.int64)
    has_pos = np.array([r.has_position for r in records], dtype=bool)
    ex, ey = np.full(et.size, np.nan), np.full(et.size, np.nan)
    if has_pos.any():
        px_, py_ = frame.to_local(np.array([r.lat for r in records])[has_pos],
                                  np.array([r.lon for r in records])[has_pos])
        ex[has_pos], ey[has_pos] = np.asarray(px_, dtype=float), np.asarray(py_, dtype=float)
    rx, ry, covered, (i0, i1, w) = truth_at(et)
    eok = covered & has_pos
    err = np.where(eok, np.hypot(ex - rx, ey - ry), np.nan)
    if not has_pos.any():
        raise EvaluationError(
            f"none of the {len(records)} estimates has a position (lat/lon null: the tracker never initialised); "
            "nothing to compare with the truth"
        )
    if not eok.any():
        raise EvaluationError(
            f"none of the {len(records)} estimates (t {et[0]} .. {et[-1]} ns) falls within the ground truth's time "
            f"span ({tt[0]} .. {tt[-1]} ns, gaps up to {max_truth_gap_s:g} s); is the track from this bag?"
        )
    ph_all = _phases(et, ft, gspoof, gap_ns)
    phase = tuple(p if ok else "" for p, ok in zip(ph_all, eok))
    ph_arr = np.array(phase, dtype=object)

    est_stats = {"all": ErrorStats.of(err)}
    gps_stats = {"all": ErrorStats.of(gerr)}
    gph_arr = np.array(gphase, dtype=object)
    for p in PHASES[1:]:
        est_stats[p] = ErrorStats.of(err[ph_arr == p]) if err.size else ErrorStats(0)
        gps_stats[p] = ErrorStats.of(gerr[gph_arr == p]) if gerr.size else ErrorStats(0)

    # convergence over the estimates with truth (one without a position counts as not within)
    ev_t, ev_e = et[covered], np.where(has_pos[covered], err[covered], np.inf)
    within = ev_e <= converge_m
    first = int(np.argmax(within)) if within.any() else None
    above = np.flatnonzero(~within)
    conv = 0 if above.size == 0 else int(above[-1]) + 1
    conv = None if conv >= ev_e.size else conv
    convergence = Convergence(
        threshold_m=float(converge_m),
        first_within_s=None if first is None else (int(ev_t[first]) - int(ev_t[0])) / 1e9,
        converged_s=None if conv is None else (int(ev_t[conv]) - int(ev_t[0])) / 1e9,
        converged_t_ns=None if conv is None else int(ev_t[conv]),
        max_after_m=None if conv is None else float(ev_e[conv:].max()),
    )

    # heading
    heading = None
    has_att = np.array([p.attitude is not None for p in truth])
    if has_att.any() and any(r.heading_deg is not None for r in records):
        th = np.array([_heading_from_quat(p.attitude) if p.attitude is not None else np.nan for p in truth])
        hs, hc = np.sin(np.radians(th)), np.cos(np.radians(th))
        s_i = (1 - w) * hs[i0] + w * hs[i1]
        c_i = (1 - w) * hc[i0] + w * hc[i1]
        true_h = np.degrees(np.arctan2(s_i, c_i))
        est_h = np.array([np.nan if r.heading_deg is None else r.heading_deg for r in records])
        d = np.abs((est_h - true_h + 180.0) % 360.0 - 180.0)
        d = d[eok & np.isfinite(d)]
        heading = HeadingStats(0) if d.size == 0 else HeadingStats(
            int(d.size), float(np.median(d)), float(np.percentile(d, 95)), float(d.max()))

    status_counts = dict(Counter(r.status for r in records).most_common())
    stages: dict[str, list[float]] = {}
    for r in records:
        for k, v in r.latency_ms.items():
            stages.setdefault(k, []).append(v)
    latency = {k: {"n": len(v), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                   "max": float(np.max(v))} for k, v in stages.items()}

    params = {"outage_s": float(outage_s), "outage_gap_s": gap_ns / 1e9, "spoof_m": float(spoof_m),
              "converge_m": float(converge_m), "max_truth_gap_s": float(max_truth_gap_s)}
    series = EvalSeries(et, err, phase, ft, gerr, gphase)
    return EvalResult(
        track=str(track), bag=str(bag), n_estimates=len(records), n_evaluated=int(eok.sum()),
        n_no_position=int((~has_pos).sum()), n_gps=len(fixes),
        n_gps_evaluated=int(np.isfinite(gerr).sum()), params=params, estimate=est_stats, gps=gps_stats,
        convergence=convergence, heading=heading, status_counts=status_counts, latency_ms=latency, frame=frame,
        series=series,
    )


def evaluate_track(records: Sequence[EstimateRecord], bag_path, *, topics: dict | None = None, track: str = "",
                   **kwargs) -> EvalResult:
    """Evaluate a track against the ground truth and GPS of ``bag_path`` (see the module docstring).

    Args:
        records: the track's :class:`EstimateRecord` s (e.g. from :func:`runtime.outputs.read_track`).
        bag_path: the bag the track was computed from (it must hold ground truth).
        topics: role -> topic overrides for the bag reader (e.g. ``{"gps": "/fix"}``).
        track: the track's name for the report.
        **kwargs: ``outage_s``, ``spoof_m``, ``converge_m``, ``max_truth_gap_s``, ``frame`` of
            :func:`evaluate_events`.
    """
    truth, gps = read_truth_and_gps(bag_path, topics=topics)
    return evaluate_events(records, truth, gps, track=track, bag=str(bag_path), **kwargs)


# ============================================================================================== plot
_BG = (245, 245, 245)
_TRUTH = (40, 160, 40)      # BGR: green
_GPS = (0, 140, 255)        # orange
_EST = (200, 70, 20)        # blue
_PHASE_FILL = {"outage": (160, 235, 255), "spoof": (200, 200, 255), "": (225, 225, 225)}


def _nice(x: float) -> float:
    """The largest 1/2/5 x 10^k not above x (x > 0)."""
    k = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10**k <= x:
            return float(m * 10**k)
    return float(10**k)


def _nice_ceil(x: float) -> float:
    """The smallest 1/2/5 x 10^k not below x (x > 0)."""
    k = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10**k >= x:
            return float(m * 10**k)
    return float(10 ** (k + 1))  # pragma: no cover


def _text(img, s, org, scale=0.45, color=(0, 0, 0), thick=1) -> None:
    import cv2

    cv2.putText(img, s, (int(org[0]), int(org[1])), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _ortho_background(imagery, x0: float, y_top: float, s: float, W: int, H: int) -> np.ndarray | None:
    """BGR uint8[H, W, 3] of the imagery under the view (x0 left, y_top top, s px per metre), or None if no overlap."""
    import cv2

    g = imagery.gsd
    k = 1.0 / (s * g)                            # ortho px per output px
    u0 = (x0 - imagery.x_min) / g                # ortho pixel-edge coordinate of the view's left edge
    v0 = (imagery.y_max - y_top) / g
    cu0, cv0 = max(int(math.floor(u0)) - 1, 0), max(int(math.floor(v0)) - 1, 0)
    cu1 = min(int(math.ceil(u0 + W * k)) + 1, imagery.width)
    cv1 = min(int(math.ceil(v0 + H * k)) + 1, imagery.height)
    if cu1 <= cu0 or cv1 <= cv0:
        return None
    crop = imagery.image[cv0:cv1, cu0:cu1, ::-1]
    mask = imagery.mask[cv0:cv1, cu0:cu1].astype(np.uint8) * 255
    f = 1.0
    if k > 2:                                    # pre-shrink so bilinear sampling does not alias
        f = 1.0 / math.floor(k)
        size = (max(1, int(round(crop.shape[1] * f))), max(1, int(round(crop.shape[0] * f))))
        fx, fy = size[0] / crop.shape[1], size[1] / crop.shape[0]
        crop = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    else:
        fx = fy = 1.0
        crop = np.ascontiguousarray(crop)
    # output pixel centre (u + 0.5) -> ortho edge coordinate u0 + (u + 0.5) k -> crop pixel centre coordinate
    M = np.array([[k * fx, 0.0, (u0 + 0.5 * k - cu0) * fx - 0.5],
                  [0.0, k * fy, (v0 + 0.5 * k - cv0) * fy - 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    img = cv2.warpAffine(crop, M, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=_BG)
    m = cv2.warpAffine(mask, M, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    img[m < 128] = _BG
    # lighten so the tracks stand out
    return (0.7 * img + 0.3 * 255).astype(np.uint8)


def plot_track(records: Sequence[EstimateRecord], truth: Sequence[TruthPose], gps: Sequence[GpsFix], out_png,
               imagery=None, *, width: int = 1000, map_height: int = 750, panel_height: int = 250,
               title: str = "", **kwargs) -> Path:
    """Draw truth, GPS and estimated tracks (over ``imagery`` when given) and the error over time, as a PNG.

    Args:
        records, truth, gps: as for :func:`evaluate_events` (the errors and phases come from it; ``**kwargs`` go
            to it).
        out_png: the ``.png`` to write (its folder must exist).
        imagery: a :class:`maps.ortho.Orthophoto` (e.g. ``MapPackage.imagery()``) to draw under the tracks, in its
            own local frame; None for a plain background with a grid.
        width, map_height, panel_height: pixel sizes; the image is ``width x (map_height + panel_height)``.
        title: a line drawn at the top of the map panel (default: the estimate's median / p95 error).
    Returns:
        the path written.
    Raises:
        EvaluationError / OutputError: nothing to evaluate, bad sizes, or the PNG cannot be written.
    """
    import cv2

    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise OutputError(f"the plot is written as PNG; give a path ending in .png, got {str(out_png)!r}")
    if not out_png.parent.is_dir():
        raise OutputError(f"cannot write {out_png}: folder {out_png.parent} does not exist; create it first")
    W, H, P = int(width), int(map_height), int(panel_height)
    if W < 300 or H < 200 or P < 120:
        raise EvaluationError(f"plot sizes must be width >= 300, map_height >= 200, panel_height >= 120 px, got "
                              f"{W}, {H}, {P}")
    if imagery is not None and kwargs.get("frame") is None:
        kwargs["frame"] = imagery.frame
    res = evaluate_events(records, truth, gps, **kwargs)
    frame = imagery.frame if imagery is not None else res.frame
    records = sorted((r for r in records if r.has_position), key=lambda r: r.t_ns)
    truth = sorted((p for p in truth if math.isfinite(p.lat) and math.isfinite(p.lon)), key=lambda p: p.t_ns)
    fixes = sorted((f for f in gps if f.has_fix), key=lambda f: f.t_ns)

    def local(items):
        if not items:
            return np.zeros((0, 2))
        x, y = frame.to_local(np.array([i.lat for i in items]), np.array([i.lon for i in items]))
        return np.column_stack([np.asarray(x, float).ravel(), np.asarray(y, float).ravel()])

    T, G, E = local(truth), local(fixes), local(records)
    ok_fix = np.array([p == "gps_ok" for p in res.series.gps_phase], dtype=bool)
    ext = np.vstack([T, E] + ([G[ok_fix]] if G.size else []))
    lo, hi = ext.min(axis=0), ext.max(axis=0)
    centre = (lo + hi) / 2
    span = np.maximum((hi - lo) * 1.1, 40.0)
    s = min(W / span[0], H / span[1])            # px per metre
    x0, y_top = centre[0] - W / (2 * s), centre[1] + H / (2 * s)

    canvas = np.full((H + P, W, 3), 255, np.uint8)
    view = None if imagery is None else _ortho_background(imagery, x0, y_top, s, W, H)
    if view is None:
        view = np.full((H, W, 3), _BG, np.uint8)
        step = _nice(W / s / 8)
        for gx in np.arange(math.ceil(x0 / step) * step, x0 + W / s, step):
            u = int(round((gx - x0) * s))
            cv2.line(view, (u, 0), (u, H - 1), (225, 225, 225), 1)
        for gy in np.arange(math.ceil((y_top - H / s) / step) * step, y_top, step):
            v = int(round((y_top - gy) * s))
            cv2.line(view, (0, v), (W - 1, v), (225, 225, 225), 1)
    canvas[:H] = view

    def px(P_):
        uv = np.column_stack([(P_[:, 0] - x0) * s, (y_top - P_[:, 1]) * s])
        return np.clip(np.round(uv), -1e5, 1e5).astype(np.int32)

    if len(T) > 1:
        cv2.polylines(canvas, [px(T)], False, _TRUTH, 5, cv2.LINE_AA)
    for (u, v) in px(G):
        cv2.circle(canvas, (int(u), int(v)), 2, _GPS, -1, cv2.LINE_AA)
    if len(E) > 1:
        cv2.polylines(canvas, [px(E)], False, _EST, 2, cv2.LINE_AA)
    elif len(E) == 1:
        u, v = px(E)[0]
        cv2.circle(canvas, (int(u), int(v)), 3, _EST, -1, cv2.LINE_AA)
    if len(T):
        u, v = px(T[:1])[0]
        cv2.circle(canvas, (int(u), int(v)), 6, (0, 0, 0), 2, cv2.LINE_AA)

    # legend
    cv2.rectangle(canvas, (8, 8), (190, 92), (255, 255, 255), -1)
    cv2.rectangle(canvas, (8, 8), (190, 92), (120, 120, 120), 1)
    for i, (name, col, kind) in enumerate((("truth", _TRUTH, "line"), ("GPS", _GPS, "dot"),
                                           ("estimate", _EST, "line"))):
        yy = 28 + 24 * i
        if kind == "line":
            cv2.line(canvas, (18, yy - 4), (52, yy - 4), col, 3, cv2.LINE_AA)
        else:
            for xx in (22, 35, 48):
                cv2.circle(canvas, (xx, yy - 4), 3, col, -1, cv2.LINE_AA)
        _text(canvas, name, (62, yy))
    a = res.estimate["all"]
    _text(canvas, title or f"estimate error: median {a.median_m:.1f} m, p95 {a.p95_m:.1f} m (n={a.n})",
          (200, 26), 0.5, (0, 0, 0), 1)
    # scale bar and north arrow
    bar_m = _nice(W / s / 5)
    bar_px = int(round(bar_m * s))
    yb = H - 20
    cv2.rectangle(canvas, (12, yb - 22), (28 + bar_px + 60, yb + 8), (255, 255, 255), -1)
    cv2.line(canvas, (20, yb), (20 + bar_px, yb), (0, 0, 0), 3)
    for xx in (20, 20 + bar_px):
        cv2.line(canvas, (xx, yb - 6), (xx, yb + 4), (0, 0, 0), 2)
    _text(canvas, f"{bar_m:g} m", (26 + bar_px, yb + 4))
    cv2.arrowedLine(canvas, (W - 25, 60), (W - 25, 25), (0, 0, 0), 2, cv2.LINE_AA, tipLength=0.35)
    _text(canvas, "N", (W - 31, 78), 0.5)
    cv2.line(canvas, (0, H), (W - 1, H), (120, 120, 120), 1)

    # error panel
    ser = res.series
    L, R, TOP, BOT = 60, 20, H + 22, H + P - 32
    t0 = int(min(ser.t_ns[0], ser.gps_t_ns[0] if ser.gps_t_ns.size else ser.t_ns[0]))
    t1 = int(max(ser.t_ns[-1], ser.gps_t_ns[-1] if ser.gps_t_ns.size else ser.t_ns[-1]))
    dur = max((t1 - t0) / 1e9, 1e-3)
    e_ok = ser.err_m[np.isfinite(ser.err_m)]
    g_ok = ser.gps_err_m[np.array([p == "gps_ok" for p in ser.gps_phase], dtype=bool)] if ser.gps_t_ns.size else []
    ref = np.concatenate([e_ok, np.asarray(g_ok, float)])
    ymax = max(2.0 * res.convergence.threshold_m, 1.2 * float(np.percentile(ref, 99)) if ref.size else 0.0)
    ymax = _nice_ceil(ymax)

    def tu(t):
        return L + (np.asarray(t, dtype=np.int64) - t0) / 1e9 / dur * (W - L - R)

    def ev(e):
        return BOT - np.clip(np.asarray(e, float), 0, ymax) / ymax * (BOT - TOP)

    ts = ser.t_ns
    for i, p in enumerate(ser.phase):
        if p == "gps_ok":
            continue
        ua = tu(ts[i])
        ub = tu(ts[i + 1]) if i + 1 < ts.size else ua + 1
        cv2.rectangle(canvas, (int(ua), TOP), (max(int(ub), int(ua) + 1), BOT), _PHASE_FILL[p], -1)
    cv2.rectangle(canvas, (L, TOP), (W - R, BOT), (120, 120, 120), 1)
    for k in range(5):
        yv = ymax * k / 4
        v = int(round(ev(yv)))
        cv2.line(canvas, (L - 4, v), (L, v), (0, 0, 0), 1)
        if 0 < k < 4:
            cv2.line(canvas, (L + 1, v), (W - R - 1, v), (215, 215, 215), 1)
        _text(canvas, f"{yv:g}", (6, v + 5), 0.4)
    _text(canvas, "error (m)", (6, TOP - 6), 0.4)
    clipped = np.concatenate([ser.err_m[np.isfinite(ser.err_m)], ser.gps_err_m[np.isfinite(ser.gps_err_m)]])
    if clipped.size and clipped.max() > ymax:
        _text(canvas, f"(values above {ymax:g} m drawn at the top)", (L + 90, TOP - 6), 0.4, (90, 90, 90))
    tstep = _nice(dur / 8) if dur > 0.01 else 1.0
    for tv in np.arange(0.0, dur + 1e-9, tstep):
        u = int(round(L + tv / dur * (W - L - R)))
        cv2.line(canvas, (u, BOT), (u, BOT + 4), (0, 0, 0), 1)
        _text(canvas, f"{tv:g}", (u - 8, BOT + 18), 0.4)
    _text(canvas, "time (s)", (W - R - 60, BOT + 28), 0.4)
    vth = int(round(ev(res.convergence.threshold_m)))
    for u in range(L, W - R, 12):
        cv2.line(canvas, (u, vth), (min(u + 6, W - R), vth), (90, 90, 90), 1)
    if ser.gps_t_ns.size:
        fin = np.isfinite(ser.gps_err_m)
        for u, v in zip(tu(ser.gps_t_ns[fin]), ev(ser.gps_err_m[fin])):
            cv2.circle(canvas, (int(round(u)), int(round(v))), 2, _GPS, -1, cv2.LINE_AA)
    fin = np.isfinite(ser.err_m)
    if fin.sum() > 1:
        pts = np.column_stack([tu(ts[fin]), ev(ser.err_m[fin])])
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, _EST, 2, cv2.LINE_AA)
    # phase legend
    xl = W - R - 300
    for i, (name, col) in enumerate((("gps_ok", (255, 255, 255)), ("outage", _PHASE_FILL["outage"]),
                                     ("spoof", _PHASE_FILL["spoof"]))):
        xx = xl + 100 * i
        cv2.rectangle(canvas, (xx, H + 6), (xx + 16, H + 18), col, -1)
        cv2.rectangle(canvas, (xx, H + 6), (xx + 16, H + 18), (120, 120, 120), 1)
        _text(canvas, name, (xx + 22, H + 17), 0.4)
    if not cv2.imwrite(str(out_png), canvas):
        raise OutputError(f"OpenCV could not write {out_png}")
    return out_png


__all__ = [
    "Convergence",
    "ErrorStats",
    "EvalResult",
    "EvalSeries",
    "EvaluationError",
    "HeadingStats",
    "PHASES",
    "evaluate_events",
    "evaluate_track",
    "plot_track",
    "read_truth_and_gps",
]
