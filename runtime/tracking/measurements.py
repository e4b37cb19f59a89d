"""What the tracker consumes besides motion: visual fixes (retrieval candidates) and what it answers to a GPS fix.

Units: local metres of the map's :class:`~maps.geodesy.LocalFrame` (ENU, x east, y north), radians (ENU yaw,
0 = east, counter-clockwise), integer nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import TrackingError


def int_ns(value, what: str) -> int:
    """``value`` as an int of nanoseconds, or TrackingError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TrackingError(f"{what} must be an integer number of nanoseconds, got {value!r} ({type(value).__name__})")
    return int(value)


def finite_float(value, what: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 when ``positive``), or TrackingError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TrackingError(f"{what} must be a number, got {value!r} ({type(value).__name__})") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise TrackingError(f"{what} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return v


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class VisualFix:
    """Candidate vehicle positions from one camera frame (retrieval, optionally fine-aligned).

    Attributes:
        t_ns: frame time, integer nanoseconds.
        positions: float64[k, 2] candidate vehicle positions, local metres (x east, y north). k may be 0 (no
            candidate: the fix carries no information).
        scores: float64[k] similarity of each candidate (cosine in [-1, 1] or NCC); only differences matter
            (softmax with the tracker's temperature). Drop padded search results (id -1, score -inf) first.
        sigma_m: float64[k] positional std of each candidate, metres (~1 m fine-aligned, ~stride/2 tile-only). A
            single number applies to every candidate.
        yaws: float64[k] vehicle yaw per candidate (rad, ENU, 0 = east, CCW), NaN where unknown; None = all unknown.
        yaw_sigma_rad: std of the candidate yaws, rad.
        scope: (x, y, radius_m) that was searched, or None when the whole map was searched; sets the density of the
            outlier floor (a wrong retrieval lands anywhere in the searched area).
        probs: float64[k] calibrated probability that each candidate is at the vehicle (:mod:`runtime.likelihood`),
            or None. When given, the mixture weights are ``probs / sum(probs)`` instead of the softmax of ``scores``.
        inlier_prob: calibrated probability that the fix holds the vehicle at all (:func:`runtime.likelihood.
            fix_probability`), or None: ``max(probs)`` with ``probs``, else the tracker's constant
            ``visual_inlier_prob``. Kept within the tracker's ``visual_inlier_min`` .. ``visual_inlier_max``.
    Arrays are stored as read-only float64 copies.
    """

    t_ns: int
    positions: np.ndarray
    scores: np.ndarray
    sigma_m: np.ndarray
    yaws: np.ndarray | None = None
    yaw_sigma_rad: float = 0.1
    scope: tuple[float, float, float] | None = None
    probs: np.ndarray | None = None
    inlier_prob: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", int_ns(self.t_ns, "VisualFix.t_ns"))
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.size == 0:
            pos = pos.reshape(0, 2)
        if pos.ndim != 2 or pos.shape[1] != 2:
            raise TrackingError(
                f"VisualFix.positions must be float[k, 2] (x east, y north metres), got shape {list(pos.shape)}"
            )
        if not np.all(np.isfinite(pos)):
            raise TrackingError("VisualFix.positions must be finite; drop padded or invalid candidates first")
        k = pos.shape[0]
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.shape != (k,):
            raise TrackingError(f"VisualFix.scores must be float[{k}] (one per candidate), got shape {list(scores.shape)}")
        if not np.all(np.isfinite(scores)):
            raise TrackingError(
                "VisualFix.scores must be finite; drop padded search results (id -1, score -inf) before building a fix"
            )
        sig = np.asarray(self.sigma_m, dtype=np.float64)
        if sig.ndim == 0:
            sig = np.full(k, float(sig))
        sig = sig.reshape(-1)
        if sig.shape != (k,):
            raise TrackingError(f"VisualFix.sigma_m must be float[{k}] or one number (metres), got shape {list(sig.shape)}")
        if not np.all(np.isfinite(sig) & (sig > 0)):
            raise TrackingError(f"VisualFix.sigma_m must be finite and > 0 metres, got {sig[:8].tolist()}")
        object.__setattr__(self, "positions", _frozen(pos))
        object.__setattr__(self, "scores", _frozen(scores))
        object.__setattr__(self, "sigma_m", _frozen(sig))
        if self.yaws is not None:
            yaws = np.asarray(self.yaws, dtype=np.float64).reshape(-1)
            if yaws.shape != (k,):
                raise TrackingError(
                    f"VisualFix.yaws must be float[{k}] (rad, NaN = unknown) or None, got shape {list(yaws.shape)}"
                )
            if np.any(np.isinf(yaws)):
                raise TrackingError("VisualFix.yaws must be finite radians or NaN (unknown), got an infinity")
            object.__setattr__(self, "yaws", _frozen(yaws))
        object.__setattr__(self, "yaw_sigma_rad", finite_float(self.yaw_sigma_rad, "VisualFix.yaw_sigma_rad", positive=True))
        if self.scope is not None:
            sc = np.asarray(self.scope, dtype=np.float64).reshape(-1)
            if sc.shape != (3,) or not np.all(np.isfinite(sc)) or sc[2] <= 0:
                raise TrackingError(
                    f"VisualFix.scope must be None (whole map) or (x, y, radius_m) with radius > 0, got {self.scope!r}"
                )
            object.__setattr__(self, "scope", (float(sc[0]), float(sc[1]), float(sc[2])))
        if self.probs is not None:
            pr = np.asarray(self.probs, dtype=np.float64).reshape(-1)
            if pr.shape != (k,) or not np.all(np.isfinite(pr) & (pr >= 0.0) & (pr <= 1.0)):
                raise TrackingError(
                    f"VisualFix.probs must be float[{k}] probabilities in [0, 1] (or None), got "
                    f"{np.asarray(self.probs).reshape(-1)[:8].tolist()}")
            object.__setattr__(self, "probs", _frozen(pr))
        if self.inlier_prob is not None:
            v = finite_float(self.inlier_prob, "VisualFix.inlier_prob")
            if not 0.0 <= v <= 1.0:
                raise TrackingError(f"VisualFix.inlier_prob must be a probability in [0, 1] (or None), got {v!r}")
            object.__setattr__(self, "inlier_prob", v)

    @property
    def k(self) -> int:
        """Number of candidates."""
        return int(self.positions.shape[0])


@dataclass(frozen=True)
class GpsDecision:
    """What :meth:`ParticleTracker.update_gps` did with a fix.

    Attributes:
        accepted: the fix was used (initialised or weighted the particles).
        reason: one of ``"init"``, ``"consistent"``, ``"gate"`` (rejected: inconsistent with the belief),
            ``"probation"`` (consistent, but not yet for ``gps_reaccept_s`` after a rejection), ``"reaccepted"``,
            ``"reinit"`` (the belief was LOST without visual support: particles re-initialised at the fix), each
            followed by details after ``": "``.
        distance_m: distance from the belief mean to the fix, metres (NaN when not initialised).
        nis: normalised innovation squared (2 dof) of the fix against the belief (NaN when not initialised).
    """

    accepted: bool
    reason: str
    distance_m: float
    nis: float


__all__ = ["GpsDecision", "VisualFix"]
