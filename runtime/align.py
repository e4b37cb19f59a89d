"""Fine alignment: refine retrieval candidates (tile centres, errors of a tile stride or more) to a sub-metre position
and a yaw correction by matching the rectified context view against the map imagery.

Method
------
Masked normalised cross-correlation (``cv2.matchTemplate`` with ``TM_CCOEFF_NORMED`` and the view's mask, so
pixels the camera does not see take no part) of grey images on a two-level pyramid:

1. coarse (``coarse_factor`` x the map gsd, default 4 -> 1.6 m at 0.4 m): the view, rotated about its nadir point by
   every yaw correction in ``[-yaw_search_deg, +yaw_search_deg]`` (step ``yaw_step_deg``), against the map window
   around each candidate, +/- ``search_m``; the best (yaw, shift) wins, refined by parabolas (yaw over the neighbouring
   steps, shift over the neighbouring pixels);
2. fine (``fine_factor`` x the map gsd, default 2 -> 0.8 m): the view rotated by the coarse yaw over a small window
   (+/- ``coarse_factor / fine_factor + 1`` px) around the coarse position, searched once more recentred when its
   peak lies on the window border; a parabola gives the sub-pixel position. With ``refine_yaw=True`` the yaw is also
   tried at +/- half a step there and refined by a parabola (about +1 ms per candidate; the coarse parabola alone
   already gives ~0.1-0.2 deg median, ~0.5 deg p90).

Rotating the view about the nadir point by ``d`` (counter-clockwise, ENU) gives exactly the view that yaw
``view.yaw_rad + d`` would have given (the yaw is the outermost rotation of ``R_body2world``), so the returned yaw is
``view.yaw_rad + d``.

Quality numbers: ``score`` is the fine peak NCC; ``peak_ratio`` is the coarse peak over the highest other local
maximum, at least ``distinct_m`` away, of the NCC profiled over yaw (the best yaw at each shift), so values near 1
mean an ambiguous (repetitive or textureless, e.g. water) match; ``sigma_m`` comes from the fine peak's curvature
and height (see :func:`_peak_sigma_px`), at least the map gsd, at least the distance of a rival peak scaled by
``(1.2 - peak_ratio) / 0.2`` when ``peak_ratio < 1.2``, and is ``search_m`` when the coarse peak lies on the border
of the search window (the true position may be outside it). On rendered frames with photometric noise the position
errors were below ``sigma_m`` in ~90% of cases (it is conservative on texture; heuristic, not a calibrated
covariance).

Real photometry (``highpass_m`` > 0): a real camera's frame carries brightness that moves with the camera, not the
ground -- vignetting, the sun's hotspot (the bright spot around the antisolar point), exposure gradients -- at
scales of tens of metres on the ground, and a mosaic of many photos carries a blend of theirs. Over uniform fields
those gradients are most of the view's variance, so NCC follows them to wrong places with a high score. With
``highpass_m`` the grey map and each grey view lose what a masked Gaussian of that sigma (metres) keeps (the mask's
own weight divides it out, so the footprint's edge is no step): field edges, roads and buildings stay. Off (0) by
default; photo folders turn it on (``runtime.sources.photos``, 4 m).

What the image cannot tell: a roll/pitch error ``e`` of the attitude used for the view moves the result by about
``height * tan(e)`` (1.4 m at 80 m per degree) and a height error scales the view about the nadir point; neither is
in ``sigma_m``: add them in the filter.

Speed (one core, cv2.setNumThreads(1), 256 px context view at 0.4 m, defaults): about 3.2 ms CPU per candidate
(9 coarse masked NCCs of a 64 px template over 84 px, one fine one of <= 128 px over <= 134 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import OnboardError

__all__ = ["AlignError", "AlignResult", "FineAligner", "highpass_gray"]

_SCORE_FLOOR = 0.01  # second-best peaks below this count as this in peak_ratio (so the ratio stays finite)
_SIGMA_SCALE = 1.0  # multiplier of the curvature-based sigma (checked on rendered flights: conservative)
_AMBIGUOUS_RATIO = 1.2  # below this peak ratio sigma_m grows towards the distance of the rival peak (at ratio 1)
_MIN_VALID_PX = 64  # a template needs at least this many valid pixels at the coarse level


def highpass_gray(gray: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """``gray`` minus its masked Gaussian low-pass, re-centred on 128: uint8[h, w] (0 where ``valid`` is False).

    Args:
        gray: uint8[h, w] grey image. valid: bool[h, w] pixels with imagery. sigma_px: the Gaussian's sigma, pixels
            (> 0).
    The low-pass is ``G * (gray valid) / G * valid``, so pixels outside ``valid`` do not pull it towards 0 at the
    footprint's edge; the result is clipped to 0..255 (differences beyond +/-127 grey levels are rare: edges of
    strong contrast).
    """
    import cv2

    g = np.asarray(gray, dtype=np.float32)
    m = np.asarray(valid, dtype=bool)
    w = m.astype(np.float32)
    low = cv2.GaussianBlur(g * w, (0, 0), float(sigma_px)) / np.maximum(cv2.GaussianBlur(w, (0, 0), float(sigma_px)),
                                                                          1e-3)
    out = np.clip(np.rint(g - low + 128.0), 0.0, 255.0).astype(np.uint8)
    out[~m] = 0
    return out


class AlignError(OnboardError):
    """Fine alignment that cannot run: bad imagery, bad view, bad candidates, mismatched resolutions, bad settings."""


@dataclass(frozen=True)
class AlignResult:
    """The refined pose of one candidate.

    Attributes:
        x, y: refined vehicle (nadir point) position, local metres (x east, y north).
        yaw_rad: refined vehicle yaw (REP-103, ENU, radians), wrapped to (-pi, pi].
        score: peak normalised cross-correlation in [-1, 1] at the fine level; -1 when the candidate's window holds
            no map imagery.
        sigma_m: positional 1-sigma estimate per axis, metres (>= the map gsd; ``search_m`` when unreliable).
        peak_ratio: best coarse peak / highest other local maximum at least ``distinct_m`` away (> 1 for a unique
            match, near 1 when ambiguous; both floored at 0.01, so it stays finite).
    """

    x: float
    y: float
    yaw_rad: float
    score: float
    sigma_m: float
    peak_ratio: float


def _wrap_pi(a: float) -> float:
    a = math.fmod(a + math.pi, 2.0 * math.pi)
    if a <= 0.0:
        a += 2.0 * math.pi
    return a - math.pi


def _parabola(a: float, b: float, c: float) -> tuple[float, float]:
    """Vertex offset in [-0.5, 0.5] (from the middle sample) and the curvature (second difference, <= 0 at a peak)
    of the parabola through (-1, a), (0, b), (1, c)."""
    d2 = a - 2.0 * b + c
    if not (d2 < -1e-12):
        return 0.0, min(d2, 0.0)
    off = 0.5 * (a - c) / d2
    return float(min(0.5, max(-0.5, off))), float(d2)


def _peak_sigma_px(r: np.ndarray, iy: int, ix: int) -> tuple[float, float, float]:
    """Sub-pixel peak (dy, dx offsets) and a 1-sigma per axis (pixels) from the NCC map ``r`` around (iy, ix).

    sigma = sqrt((1 - peak) / -d2) per axis (d2: second difference): the shift at which the fitted parabola loses
    as much as the peak falls short of a perfect match. Sharp, high peaks give small values; flat or low ones large.
    Returns inf for an axis whose peak lies on the map's border (no curvature there).
    """
    h, w = r.shape
    peak = float(r[iy, ix])
    loss = max(1.0 - peak, 1e-3)
    dx = dy = 0.0
    sx = sy = math.inf
    if 0 < ix < w - 1:
        dx, d2 = _parabola(float(r[iy, ix - 1]), peak, float(r[iy, ix + 1]))
        sx = math.sqrt(loss / -d2) if d2 < 0 else math.inf
    if 0 < iy < h - 1:
        dy, d2 = _parabola(float(r[iy - 1, ix]), peak, float(r[iy + 1, ix]))
        sy = math.sqrt(loss / -d2) if d2 < 0 else math.inf
    return dy, dx, math.sqrt(0.5 * (sx * sx + sy * sy))


class _Template:
    """The grey view at one pyramid level: image float32[h, w] (0 where invalid), weight float32[h, w] (1 valid),
    and the nadir point in pixel-edge coordinates (nu, nv) of this level."""

    __slots__ = ("image", "weight", "nu", "nv")

    def __init__(self, image: np.ndarray, weight: np.ndarray, nu: float, nv: float) -> None:
        self.image, self.weight, self.nu, self.nv = image, weight, nu, nv

    def rotated(self, angle_deg: float) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Rotated counter-clockwise (ENU, north-up) by ``angle_deg`` about the nadir point and cropped to the valid
        pixels: (image float32[h', w'], mask uint8[h', w'], row0, col0) with (row0, col0) the crop's offset."""
        import cv2

        h, w = self.image.shape
        if angle_deg == 0.0:
            img, wt = self.image, self.weight
        else:
            M = cv2.getRotationMatrix2D((self.nu - 0.5, self.nv - 0.5), float(angle_deg), 1.0)
            img = cv2.warpAffine(self.image, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
            wt = cv2.warpAffine(self.weight, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        ok = wt > 0.5
        rows = np.flatnonzero(ok.any(axis=1))
        cols = np.flatnonzero(ok.any(axis=0))
        if rows.size == 0:
            return np.zeros((1, 1), np.float32), np.zeros((1, 1), np.uint8), 0, 0
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        img, wt, ok = img[r0:r1, c0:c1], wt[r0:r1, c0:c1], ok[r0:r1, c0:c1]
        out = np.where(ok, img / np.maximum(wt, 1e-6), 0.0).astype(np.float32)
        return out, ok.astype(np.uint8), r0, c0


class FineAligner:
    """Refines candidate positions (and the yaw) of a ground view against the map imagery.

    Args:
        imagery: the map's imagery as an ``maps.ortho.Orthophoto`` (``MapPackage.imagery()``), at the gsd of the
            views (``GroundViewer.gsd``); uint8[h, w, 3] RGB with its mask. Or grey already: anything with
            ``gray`` uint8[h, w], ``mask``, ``gsd``, ``x_min``, ``y_max`` (a region shard's
            ``maps.region.ShardImagery``; no copy is made).
        search_m: the search window is the candidate +/- this, metres (> 0).
        yaw_search_deg: yaw corrections tried: -this .. +this degrees (>= 0; 0 = trust the view's yaw).
        yaw_step_deg: spacing of the coarse yaw corrections, degrees (> 0).
        coarse_factor: coarse level = this x the imagery gsd (integer >= 1).
        fine_factor: fine level = this x the imagery gsd (integer, 1 <= fine_factor <= coarse_factor).
        distinct_m: peaks closer than this to the best are not "distinct" for ``peak_ratio``, metres.
        refine_yaw: also refine the yaw at the fine level (3 fine matches instead of 1 per candidate).
        highpass_m: sigma (metres, >= 0) of the low frequencies removed from the grey map and views (module
            docstring, "Real photometry"); 0: none.

    A grey copy of the imagery is made here (one byte per pixel), not per frame; the imagery must stay unchanged.

    Raises:
        AlignError: imagery that is not an RGB raster with a mask, or bad settings.
    """

    def __init__(self, imagery, *, search_m: float = 16.0, yaw_search_deg: float = 10.0, yaw_step_deg: float = 2.5,
                 coarse_factor: int = 4, fine_factor: int = 2, distinct_m: float = 4.0,
                 refine_yaw: bool = False, highpass_m: float = 0.0) -> None:
        gray_given = hasattr(imagery, "gray")  # a region shard's grey imagery (maps.region.ShardImagery)
        need = ("gray" if gray_given else "image", "mask", "gsd", "x_min", "y_max")
        missing = [n for n in need if not hasattr(imagery, n)]
        if missing:
            raise AlignError(
                f"imagery must be a maps.ortho.Orthophoto (image, mask, gsd, x_min, y_max), got "
                f"{type(imagery).__name__} lacking {missing}; use MapPackage.imagery()"
            )
        img, mask = (imagery.gray if gray_given else imagery.image), imagery.mask
        if gray_given:
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 2:
                raise AlignError(f"grey imagery must be uint8[h, w], got {getattr(img, 'dtype', type(img).__name__)}"
                                 f"{list(getattr(img, 'shape', []))}")
        elif not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise AlignError(
                f"imagery image must be RGB uint8[h, w, 3], got {getattr(img, 'dtype', type(img).__name__)}"
                f"{list(getattr(img, 'shape', []))}"
            )
        if not isinstance(mask, np.ndarray) or mask.shape != img.shape[:2]:
            raise AlignError(
                f"imagery mask must be bool{list(img.shape[:2])}, got {getattr(mask, 'dtype', type(mask).__name__)}"
                f"{list(getattr(mask, 'shape', []))}"
            )
        self.imagery = imagery
        self.gsd = self._number("imagery gsd", imagery.gsd, positive=True)
        self.x_min = self._number("imagery x_min", imagery.x_min)
        self.y_max = self._number("imagery y_max", imagery.y_max)
        self.search_m = self._number("search_m", search_m, positive=True)
        self.yaw_search_deg = self._number("yaw_search_deg", yaw_search_deg)
        if self.yaw_search_deg < 0.0 or self.yaw_search_deg >= 90.0:
            raise AlignError(f"yaw_search_deg must be in [0, 90) degrees, got {yaw_search_deg!r}")
        self.yaw_step_deg = self._number("yaw_step_deg", yaw_step_deg, positive=True)
        self.distinct_m = self._number("distinct_m", distinct_m, positive=True)
        for name, v in (("coarse_factor", coarse_factor), ("fine_factor", fine_factor)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise AlignError(f"{name} must be an integer >= 1 (pyramid factor over the imagery gsd), got {v!r}")
        if fine_factor > coarse_factor:
            raise AlignError(f"fine_factor ({fine_factor}) must be <= coarse_factor ({coarse_factor})")
        self.coarse_factor, self.fine_factor = int(coarse_factor), int(fine_factor)
        self.refine_yaw = bool(refine_yaw)
        self.highpass_m = self._number("highpass_m", highpass_m)
        if self.highpass_m < 0.0:
            raise AlignError(f"highpass_m must be >= 0 metres (0: off), got {highpass_m!r}")
        n = int(math.floor(self.yaw_search_deg / self.yaw_step_deg + 1e-9))
        self.yaw_offsets_deg = np.arange(-n, n + 1) * self.yaw_step_deg  # coarse yaw corrections
        import cv2

        # grey imagery once (1 byte/px, a third of the RGB), so each candidate only cuts a window
        self._gray = img if gray_given else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        self._mask = mask
        if self.highpass_m > 0.0:
            self._gray = highpass_gray(self._gray, mask, self.highpass_m / self.gsd)

    @staticmethod
    def _number(name: str, value, positive: bool = False) -> float:
        try:
            f = float(value)
        except (TypeError, ValueError) as exc:
            raise AlignError(f"{name} must be a number, got {value!r}") from exc
        if not math.isfinite(f) or (positive and f <= 0.0):
            raise AlignError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
        return f

    # ------------------------------------------------------------------------------------------ inputs
    def _check_view(self, view):
        missing = [n for n in ("image", "mask", "gsd", "yaw_rad") if not hasattr(view, n)]
        if missing:
            raise AlignError(
                f"view must be a runtime.ground_view.GroundView, got {type(view).__name__} lacking {missing}"
            )
        img, mask = view.image, view.mask
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 \
                or img.shape[0] != img.shape[1]:
            raise AlignError(
                f"view image must be square RGB uint8[s, s, 3], got {getattr(img, 'dtype', type(img).__name__)}"
                f"{list(getattr(img, 'shape', []))}"
            )
        if not isinstance(mask, np.ndarray) or mask.shape != img.shape[:2]:
            raise AlignError(
                f"view mask must be bool{list(img.shape[:2])}, got {getattr(mask, 'dtype', type(mask).__name__)}"
                f"{list(getattr(mask, 'shape', []))}"
            )
        g = self._number("view gsd", view.gsd, positive=True)
        if abs(g - self.gsd) > 1e-6 * self.gsd:
            raise AlignError(
                f"the view is at {g:g} m/px but the map imagery at {self.gsd:g} m/px; make the views at the map's gsd "
                "(GroundViewer(camera, gsd=imagery.gsd, ...)) or resample the imagery (maps.tiling.resample_to_gsd)"
            )
        yaw = self._number("view yaw_rad", view.yaw_rad)
        s = img.shape[0]
        if s < 2 * self.coarse_factor * 4:
            raise AlignError(
                f"the view is {s} px, too small for coarse_factor {self.coarse_factor} (needs >= "
                f"{8 * self.coarse_factor} px); use a larger context_px or a smaller coarse_factor"
            )
        return img, mask.astype(bool, copy=False), yaw

    @staticmethod
    def _check_candidates(candidates) -> np.ndarray:
        try:
            c = np.asarray(candidates, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise AlignError(f"candidates must be float[k, 2] (x, y local metres), got {candidates!r}") from exc
        if c.ndim == 1 and c.shape == (2,):
            raise AlignError("candidates must be float[k, 2] (x, y local metres); got one point of shape [2]: use "
                             "[[x, y]]")
        if c.ndim != 2 or c.shape[1] != 2:
            raise AlignError(f"candidates must be float[k, 2] (x, y local metres), got shape {list(c.shape)}")
        if not np.all(np.isfinite(c)):
            raise AlignError("candidates must be finite numbers (x, y local metres); got NaN or inf")
        return c

    # ------------------------------------------------------------------------------------------ pyramids
    @staticmethod
    def _level(gray: np.ndarray, valid: np.ndarray, factor: int, nadir: float) -> _Template:
        """Block-average the grey view (weights = mask) by ``factor``; the nadir point (pixel-edge coordinate
        ``nadir`` on both axes at level 0) keeps its place."""
        import cv2

        s = gray.shape[0]
        o = (s % factor) // 2
        n = (s - o) // factor
        g = gray[o:o + n * factor, o:o + n * factor]
        m = valid[o:o + n * factor, o:o + n * factor]
        if factor == 1:
            return _Template(g.astype(np.float32), m.astype(np.float32), nadir - o, nadir - o)
        gi = cv2.resize(g, (n, n), interpolation=cv2.INTER_AREA)
        wi = cv2.resize(m.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
        img = np.where(wi > 0.5, gi / np.maximum(wi, 1e-6), 0.0).astype(np.float32)
        wt = (wi > 0.5).astype(np.float32)
        return _Template(img, wt, (nadir - o) / factor, (nadir - o) / factor)

    def _window(self, u0: int, v0: int, n_cols: int, n_rows: int, factor: int) -> tuple[np.ndarray, float]:
        """Grey map window float32[n_rows, n_cols] at level ``factor`` whose top-left is level-0 pixel edge
        (u0, v0); pixels outside the map or without imagery take the window's mean. Also the valid fraction."""
        import cv2

        gray, mask = self._gray, self._mask
        H, W = gray.shape
        w, h = n_cols * factor, n_rows * factor
        a0, b0 = max(u0, 0), max(v0, 0)
        a1, b1 = min(u0 + w, W), min(v0 + h, H)
        out = np.zeros((h, w), np.float32)
        ok = np.zeros((h, w), bool)
        if a1 > a0 and b1 > b0:
            out[b0 - v0:b1 - v0, a0 - u0:a1 - u0] = gray[b0:b1, a0:a1]
            ok[b0 - v0:b1 - v0, a0 - u0:a1 - u0] = mask[b0:b1, a0:a1]
        frac = float(np.count_nonzero(ok)) / ok.size
        if frac == 0.0:
            return out[:n_rows, :n_cols], 0.0
        if frac < 1.0:
            out[~ok] = float(out[ok].mean())
        if factor > 1:
            out = cv2.resize(out, (n_cols, n_rows), interpolation=cv2.INTER_AREA)
        return out, frac

    # ------------------------------------------------------------------------------------------ matching
    @staticmethod
    def _ncc(window: np.ndarray, tmpl: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        r = cv2.matchTemplate(window, tmpl, cv2.TM_CCOEFF_NORMED, mask=mask)
        r[~np.isfinite(r)] = -1.0  # flat windows (no variance) give 0/0
        return np.clip(r, -1.0, 1.0, out=r)

    def _origin(self, nu: float, nv: float, x: float, y: float, radius: int, factor: int):
        """Where the search window of a template (nadir point at pixel-edge (``nu``, ``nv``) of its level) around
        (x, y) lies: (u0, v0) the level-0 map pixel edge of the window's top-left, and (x0, y0) the metres of the
        nadir point at shift (0, 0); shift (i, j) puts it at ``(x0 + j * g, y0 - i * g)``, g = factor * gsd."""
        # level-0 pixel edge of the template's top-left when the nadir point is at (x, y), minus the radius
        ue = (x - self.x_min) / self.gsd - nu * factor - radius * factor
        ve = (self.y_max - y) / self.gsd - nv * factor - radius * factor
        u0, v0 = int(round(ue)), int(round(ve))
        g = factor * self.gsd
        x0 = self.x_min + u0 * self.gsd + nu * g
        y0 = self.y_max - v0 * self.gsd - nv * g
        return u0, v0, x0, y0

    def _search(self, tmpl: _Template, rotated: list, x: float, y: float, radius: int, factor: int):
        """NCC maps of the rotated templates (``_Template.rotated`` of ``tmpl``), nadir point shifted by -radius..radius
        level pixels around (x, y). Returns (maps float32[len(rotated), 2r+1, 2r+1], x0, y0) where shift (i, j) puts
        the nadir point at ``(x0 + j * g, y0 - i * g)`` metres, g = factor * gsd; maps is None without imagery."""
        h, w = tmpl.image.shape
        u0, v0, x0, y0 = self._origin(tmpl.nu, tmpl.nv, x, y, radius, factor)
        n = 2 * radius + 1
        win, frac = self._window(u0, v0, w + n - 1, h + n - 1, factor)
        if frac == 0.0:
            return None, x0, y0
        maps = np.full((len(rotated), n, n), -1.0, np.float32)
        for k, (t, m, r0, c0) in enumerate(rotated):
            if t.size < 16:  # (almost) nothing valid left after the rotation
                continue
            th, tw = t.shape
            maps[k] = self._ncc(win[r0:r0 + th + n - 1, c0:c0 + tw + n - 1], t, m)
        return maps, x0, y0

    def _peak_ratio(self, maps: np.ndarray, iy: int, ix: int, best: float, g: float) -> tuple[float, float]:
        """(best / the highest rival, the rival's distance in metres). A rival is a local maximum (3x3) at least
        ``distinct_m`` from (iy, ix) of the NCC profiled over yaw (the best yaw at each shift), i.e. another place.

        Flanks of the best peak descend and are no local maxima, so a broad unique peak keeps a high ratio. Maxima
        of single yaw slices are not rivals: along an edge (a shoreline, a road) each yaw's best match slides along
        the edge, so every slice peaks somewhere on the same ridge, metres from the best, with almost its height;
        that is one place seen at slightly wrong yaws, not a second place.
        """
        import cv2

        prof = maps.max(axis=0)
        n = prof.shape[0]
        jj, ii = np.meshgrid(np.arange(n), np.arange(n))
        dist = np.hypot((jj - ix) * g, (ii - iy) * g)
        peaks = (prof >= cv2.dilate(prof, np.ones((3, 3), np.uint8))) & (dist >= self.distinct_m)
        if not peaks.any():
            return max(best, _SCORE_FLOOR) / _SCORE_FLOOR, 0.0
        k = int(np.argmax(np.where(peaks, prof, -np.inf)))
        return max(best, _SCORE_FLOOR) / max(float(prof.flat[k]), _SCORE_FLOOR), float(dist.flat[k])

    def align(self, view, candidates) -> list:
        """Refine each candidate.

        Args:
            view: a :class:`runtime.ground_view.GroundView` (context size; the nadir point at its centre) at the
                imagery's gsd; its ``yaw_rad`` is the yaw around which corrections are searched.
            candidates: float[k, 2] candidate nadir positions (x east, y north), local metres (e.g. retrieved tile
                centres).
        Returns:
            list of k :class:`AlignResult`, in the order of ``candidates``.
        Raises:
            AlignError: a view that is not a square RGB GroundView with a mask, at another gsd than the imagery,
            too small or with too little valid ground; candidates not float[k, 2] finite.
        """
        import cv2

        img, valid, yaw0 = self._check_view(view)
        cands = self._check_candidates(candidates)
        if len(cands) == 0:
            return []
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        if self.highpass_m > 0.0:
            gray = highpass_gray(gray, valid, self.highpass_m / self.gsd)
        gray = gray.astype(np.float32)
        nadir = img.shape[0] / 2.0
        cf, ff = self.coarse_factor, self.fine_factor
        coarse = self._level(gray, valid, cf, nadir)
        if float(coarse.weight.sum()) < _MIN_VALID_PX:
            raise AlignError(
                f"the view has too little valid ground ({view.mask.mean():.0%} of {img.shape[0]} px) to align at "
                f"coarse_factor {cf}; fly higher, widen context_px, or lower coarse_factor"
            )
        fine = coarse if ff == cf else self._level(gray, valid, ff, nadir)
        rc, rf = self._radii()
        gf = ff * self.gsd
        coarse_rot = [coarse.rotated(float(a)) for a in self.yaw_offsets_deg]
        out = []
        for cx, cy in cands:
            # ---- coarse: all yaw corrections over the whole search window
            maps, x0, y0 = self._search(coarse, coarse_rot, float(cx), float(cy), rc, cf)
            if maps is None:
                out.append(self._no_imagery(cx, cy, yaw0))
                continue
            peak = self._coarse_peak(maps, x0, y0)
            xe, ye = peak.x, peak.y
            # ---- fine: the coarse yaw and +/- half a step, small window around the coarse position
            angles = self._fine_angles(peak.dyaw_deg)
            rotated = [fine.rotated(a) for a in angles]
            for _ in range(2):  # once more, recentred, when the fine peak lies on the border of its window
                fmaps, fx0, fy0 = self._search(fine, rotated, xe, ye, rf, ff)
                if fmaps is None:
                    break
                fpeak = self._fine_peak(fmaps, rf)
                if fpeak.inside:
                    break
                xe, ye = fx0 + fpeak.ix * gf, fy0 - fpeak.iy * gf
            if fmaps is None:  # the fine window slid off the imagery (a candidate at the very edge of the map)
                out.append(self._no_imagery(cx, cy, yaw0))
                continue
            out.append(self._result(fmaps, fpeak, fx0, fy0, angles, peak, yaw0))
        return out

    # ------------------------------------------------------------------------------------------ peak logic
    # Shared with runtime.gpu.align (the same decisions on NCC maps computed on a torch device).
    def _radii(self) -> tuple[int, int]:
        """(coarse, fine) search radius in level pixels."""
        cf, ff = self.coarse_factor, self.fine_factor
        rc = max(1, int(math.ceil(self.search_m / (cf * self.gsd))))
        rf = max(1, int(math.ceil(cf / ff)) + 1)
        return rc, rf

    def _half_step(self) -> float:
        """Yaw offset (degrees) of the extra fine-level hypotheses (0: the coarse yaw only)."""
        return 0.5 * self.yaw_step_deg if self.yaw_search_deg > 0 and self.refine_yaw else 0.0

    def _no_imagery(self, cx, cy, yaw0: float) -> AlignResult:
        """The result of a candidate whose window holds no map imagery."""
        return AlignResult(float(cx), float(cy), _wrap_pi(yaw0), -1.0, self.search_m, 1.0)

    def _coarse_peak(self, maps: np.ndarray, x0: float, y0: float) -> "_CoarsePeak":
        """The best (yaw, shift) of the coarse NCC maps float32[len(yaw_offsets_deg), n, n] (shift (i, j): nadir
        point at ``(x0 + j * g, y0 - i * g)``), refined by parabolas, with its peak ratio."""
        gc = self.coarse_factor * self.gsd
        k, iy, ix = np.unravel_index(int(np.argmax(maps)), maps.shape)
        best = float(maps[k, iy, ix])
        on_border = iy in (0, maps.shape[1] - 1) or ix in (0, maps.shape[2] - 1)
        ratio, second_m = self._peak_ratio(maps, int(iy), int(ix), best, gc)
        dyaw = float(self.yaw_offsets_deg[k])
        if 0 < k < len(self.yaw_offsets_deg) - 1:
            peaks = maps.reshape(len(maps), -1).max(axis=1)
            off, _ = _parabola(float(peaks[k - 1]), best, float(peaks[k + 1]))
            dyaw += off * self.yaw_step_deg
        sdy, sdx, _ = _peak_sigma_px(maps[k], iy, ix)
        xe = x0 + (ix + sdx) * gc
        ye = y0 - (iy + sdy) * gc
        return _CoarsePeak(xe, ye, dyaw, ratio, second_m, on_border)

    def _fine_angles(self, dyaw_deg: float) -> list[float]:
        """Yaw corrections (degrees) tried at the fine level around the coarse one."""
        half_step = self._half_step()
        return [dyaw_deg] if half_step == 0.0 else [dyaw_deg - half_step, dyaw_deg, dyaw_deg + half_step]

    @staticmethod
    def _fine_peak(fmaps: np.ndarray, rf: int) -> "_FinePeak":
        """The best angle and shift of the fine NCC maps float32[len(angles), 2 rf + 1, 2 rf + 1]; ``inside``:
        the peak is off the window border (else the window is recentred on it once)."""
        peaks = fmaps.reshape(len(fmaps), -1).max(axis=1)
        kb = int(np.argmax(peaks))
        fy_i, fx_i = np.unravel_index(int(np.argmax(fmaps[kb])), fmaps[kb].shape)
        return _FinePeak(kb, fy_i, fx_i, peaks, bool(0 < fy_i < 2 * rf and 0 < fx_i < 2 * rf))

    def _result(self, fmaps: np.ndarray, fpeak: "_FinePeak", fx0: float, fy0: float, angles: list[float],
                peak: "_CoarsePeak", yaw0: float) -> AlignResult:
        """The refined pose from the fine maps' peak (sub-pixel, yaw parabola) and the coarse peak's quality."""
        gf = self.fine_factor * self.gsd
        half_step = self._half_step()
        kb, peaks = fpeak.k, fpeak.peaks
        fyaw = angles[kb]
        if len(angles) == 3 and kb == 1:
            off, _ = _parabola(float(peaks[0]), float(peaks[1]), float(peaks[2]))
            fyaw += off * half_step
        fdy, fdx, sig_px = _peak_sigma_px(fmaps[kb], int(fpeak.iy), int(fpeak.ix))
        x = fx0 + (fpeak.ix + fdx) * gf
        y = fy0 - (fpeak.iy + fdy) * gf
        score = float(peaks[kb])
        sigma = _SIGMA_SCALE * sig_px * gf
        ratio = peak.ratio
        if ratio < _AMBIGUOUS_RATIO:  # a rival peak almost as high: the position is uncertain up to its distance
            sigma = max(sigma, peak.second_m * (_AMBIGUOUS_RATIO - ratio) / (_AMBIGUOUS_RATIO - 1.0))
        if peak.on_border or not math.isfinite(sigma):
            sigma = self.search_m
        sigma = float(min(max(sigma, self.gsd), self.search_m))
        return AlignResult(float(x), float(y), _wrap_pi(yaw0 + math.radians(fyaw)), score, sigma, float(ratio))


class _CoarsePeak(NamedTuple):
    """The coarse level's answer for one candidate: (x, y) metres of the refined coarse peak, the yaw correction
    (degrees), the peak ratio and the rival's distance (metres), and whether the peak lies on the window border."""

    x: float
    y: float
    dyaw_deg: float
    ratio: float
    second_m: float
    on_border: bool


class _FinePeak(NamedTuple):
    """The fine maps' best angle index ``k`` and shift (``iy``, ``ix``), every angle's peak (``peaks``), and whether
    the shift lies inside the window (not on its border)."""

    k: int
    iy: int
    ix: int
    peaks: np.ndarray
    inside: bool
