"""Ground velocity from the image sequence alone: phase correlation of north-up ground views about a second apart.

Two ground views (:class:`runtime.ground_view.GroundView`: north-up, ``gsd`` metres per pixel, centred on the
vehicle's nadir point) of overlapping ground differ by a translation: the vehicle's displacement between them. Phase
correlation (``cv2.phaseCorrelate``, Hann-windowed, sub-pixel) measures it without the map, so it works where the map
matching cannot decide (look-alike fields, the first seconds after a re-initialisation) and gives the filter the one
thing it cannot get from single fixes: the velocity. Over water (flat or moving texture) the correlation peak is
weak and the measurement is refused.

The result is the mean ground velocity over ``[t_ref, t]`` (``baseline_s`` or a little more): one pixel of error is
``gsd / baseline`` m/s (0.4 m/s at 0.4 m and 1 s; sub-pixel peaks do several times better). Measurements do not
overlap (the reference moves to the current view after each), so consecutive ones are independent.

Pure computation on arrays: no I/O, no state beyond the reference view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import OnboardError

__all__ = ["GroundOdometry", "GroundVelocity", "OdometryError"]


class OdometryError(OnboardError):
    """Bad settings or inputs of the ground odometry."""


@dataclass(frozen=True)
class GroundVelocity:
    """One ground-velocity measurement.

    Attributes:
        t_ns: time of the current view, ns.
        t_ref_ns: time of the reference view, ns (the velocity is the mean over ``[t_ref_ns, t_ns]``).
        velocity_xy: float64[2] (east, north) mean ground velocity over the interval, m/s.
        sigma_mps: its std per axis, m/s (``px_sigma * gsd * sqrt(2) / dt``).
        response: phase-correlation peak (0..1; higher: a cleaner match).
        ref_tag: what the caller stored with the reference view (:meth:`GroundOdometry.measure` ``tag``).
    """

    t_ns: int
    t_ref_ns: int
    velocity_xy: np.ndarray
    sigma_mps: float
    response: float
    ref_tag: object = None

    @property
    def dt_s(self) -> float:
        return (self.t_ns - self.t_ref_ns) * 1e-9


class GroundOdometry:
    """Measures the ground velocity between ground views ``baseline_s`` apart.

    Args:
        baseline_s: least time between the reference and the current view, seconds.
        max_baseline_s: a reference older than this is dropped (too little overlap left), seconds.
        min_response: least phase-correlation peak to accept (water and blur stay below).
        min_valid: least fraction of valid pixels in both views.
        px_sigma: std of the measured shift, pixels per axis.
        max_speed_mps: a shift implying more than this is refused.
    """

    def __init__(self, *, baseline_s: float = 1.0, max_baseline_s: float = 2.5, min_response: float = 0.2,
                 min_valid: float = 0.95, px_sigma: float = 0.4, max_speed_mps: float = 40.0) -> None:
        for name, v in (("baseline_s", baseline_s), ("max_baseline_s", max_baseline_s), ("px_sigma", px_sigma),
                        ("max_speed_mps", max_speed_mps)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise OdometryError(f"ground odometry {name} must be a number > 0, got {v!r}")
        if max_baseline_s < baseline_s:
            raise OdometryError(f"ground odometry max_baseline_s ({max_baseline_s}) must be >= baseline_s "
                                f"({baseline_s})")
        for name, v in (("min_response", min_response), ("min_valid", min_valid)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise OdometryError(f"ground odometry {name} must be in [0, 1], got {v!r}")
        self.baseline_s = float(baseline_s)
        self.max_baseline_s = float(max_baseline_s)
        self.min_response = float(min_response)
        self.min_valid = float(min_valid)
        self.px_sigma = float(px_sigma)
        self.max_speed_mps = float(max_speed_mps)
        self._ref: tuple | None = None  # (t_ns, gray float32[s, s], gsd, tag)
        self._window: np.ndarray | None = None
        #: measurements made / refused (weak peak, too fast)
        self.measured = 0
        self.refused = 0

    def reset(self) -> None:
        """Forget the reference view (e.g. the heading assumption changed)."""
        self._ref = None

    def measure(self, t_ns: int, image: np.ndarray, mask: np.ndarray, gsd: float, *, tag=None) -> GroundVelocity | None:
        """Offer the current north-up ground view (RGB uint8[s, s, 3], bool[s, s] valid mask, metres per pixel).

        Returns the velocity since the reference view when that is at least ``baseline_s`` old (the current view
        then becomes the reference), else None (also when either view has too few valid pixels, the peak is weak,
        or the shift is implausibly fast). ``tag`` is kept with the view and returned as ``ref_tag`` when it is
        the reference.
        """
        import cv2

        if image.ndim != 3 or image.shape[0] != image.shape[1] or mask.shape != image.shape[:2]:
            raise OdometryError(f"ground odometry expects a square RGB view uint8[s, s, 3] and its bool[s, s] mask, got "
                                f"{image.shape} and {mask.shape}")
        t_ns = int(t_ns)
        valid = float(np.count_nonzero(mask)) / mask.size
        if valid < self.min_valid:
            return None
        ref = self._ref
        if ref is not None and (ref[1].shape != mask.shape or ref[2] != gsd or t_ns <= ref[0]
                                or (t_ns - ref[0]) * 1e-9 > self.max_baseline_s):
            ref = self._ref = None
        if ref is not None and (t_ns - ref[0]) * 1e-9 < self.baseline_s:
            return None  # too soon: not even converted (most frames)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gray -= float(gray.mean())
        if ref is None:
            self._ref = (t_ns, gray, float(gsd), tag)
            return None
        if self._window is None or self._window.shape != gray.shape:
            self._window = cv2.createHanningWindow(gray.shape[::-1], cv2.CV_32F)
        dt = (t_ns - ref[0]) * 1e-9
        (sx, sy), response = cv2.phaseCorrelate(ref[1], gray, self._window)
        self._ref = (t_ns, gray, float(gsd), tag)
        # The content moved by (sx, sy) pixels (x right = east, y down = south) from the reference to this view; the
        # vehicle moved the other way.
        v = np.array([-sx * gsd / dt, sy * gsd / dt])
        if not (math.isfinite(response) and response >= self.min_response) or float(np.hypot(*v)) > self.max_speed_mps:
            self.refused += 1
            return None
        self.measured += 1
        sigma = self.px_sigma * gsd * math.sqrt(2.0) / dt
        return GroundVelocity(t_ns, ref[0], v, sigma, float(response), ref[3])
