"""An orthomosaic from a survey's own geotagged photos: rectify, register to each other, blend.

A user flies an area once with GPS and later navigates it without; the photos of that first flight become the map.

Stages (flat ground is the stated assumption throughout):

1. **Rectify.** Each photo becomes a north-up ground image at ``match_gsd`` (:func:`calibration.view.rectify`) from
   its GPS position, its height above ground and its attitude (or, without one, level at its GPS-track heading).
   Placed by GPS alone, neighbouring photos disagree by the GPS error (metres) plus what a wrong attitude or height
   moves them.
2. **Register.** Every pair of photos whose footprints overlap by at least ``min_overlap`` of the smaller is matched
   (SIFT on the ground images inside their masks, Lowe's ratio test, a RANSAC similarity): the inlier points are
   ground points both photos see. Pairs with fewer than ``min_inliers`` inliers (uniform fields, water) are dropped
   and counted.
3. **Adjust.** One small similarity correction per photo (east/north shift ``t``, rotation ``theta`` and scale
   ``s`` about its nadir point) is solved by least squares so that every pair's inlier points land on each other,
   with priors that keep each correction near what its sources promise: ``gps_sigma_m`` per axis for the shift,
   ``yaw_sigma_deg`` for the rotation, ``scale_sigma`` for the scale (height error / height). The solve is
   iteratively reweighted (Huber, ``huber_m``) so that a bad pair cannot pull the block; the residuals of every
   pair after it are the registration report. Besides the survey's calibration (one camera-to-GPS offset, one
   ground scale) the report gives the photos' **placement noise** (:func:`placement_sigma`): how far, photo by
   photo, the images put the nadir from where the GPS and that offset put it, and the attitude error that would
   cause it at the survey's height (``attitude_sigma_deg``): what a later flight's recorded attitude is worth.
4. **Blend.** Each photo's corrected ground image is warped into the mosaic grid at ``gsd``; overlapping photos are
   feathered by the distance from their footprint's edge squared (the centre of a photo, least tilted and
   vignetted, wins; seams fade over a few metres).

The mosaic is an :class:`maps.ortho.Orthophoto` in a local transverse Mercator frame at the photos' centroid, which
:func:`maps.geotiff.write_geotiff` writes as a GeoTIFF a user can open in QGIS and :func:`maps.build.build_map`
turns into a map package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude, Mount

from ..errors import OnboardError


class MosaicError(OnboardError):
    """Photos that cannot be made into a mosaic (too few, no overlap, bad settings)."""


@dataclass(frozen=True)
class MosaicPhoto:
    """One photo's input to the mosaic.

    Attributes:
        name: for reports (the file name).
        load_image: () -> RGB uint8[h, w, 3] at the camera's size (decoded only when needed).
        camera: intrinsics. attitude: body attitude at exposure (None: level, heading ``yaw_rad``).
        mount: camera -> body. height_m: above the ground, metres (> 0). lat, lon: WGS84 degrees of the camera.
        yaw_rad: ENU yaw used when ``attitude`` is None (e.g. from the GPS track).
        t_s: capture time, seconds (any origin): orders the photos into flight lines for the camera-to-GPS offset.
    """

    name: str
    load_image: Callable[[], np.ndarray]
    camera: CameraModel
    attitude: Attitude | None
    height_m: float
    lat: float
    lon: float
    mount: Mount = NADIR_MOUNT
    yaw_rad: float = 0.0
    t_s: float | None = None


@dataclass(frozen=True)
class MosaicConfig:
    """Settings (frozen; out-of-range values are rejected by :func:`build_mosaic`).

    Attributes:
        gsd: mosaic resolution, m/px. match_gsd: resolution of the ground images matched, m/px.
        min_overlap: least footprint overlap (fraction of the smaller) for a pair to be matched.
        min_inliers: least RANSAC inliers for a pair to count. ratio: Lowe's ratio test.
        ransac_m: RANSAC inlier threshold, metres.
        gps_sigma_m, yaw_sigma_deg, scale_sigma: priors of the per-photo correction (see the module docstring).
        huber_m: Huber threshold of the robust adjustment, metres. max_points: inlier points per pair used.
        offset_sigma_m: prior sigma of the survey's camera-to-GPS offset (forward, right; see :func:`_adjust`).
        survey_scale_sigma: prior sigma of the survey's scale (see :func:`_adjust`).
    """

    gsd: float = 0.25
    match_gsd: float = 0.15
    min_overlap: float = 0.2
    min_inliers: int = 12
    ratio: float = 0.8
    ransac_m: float = 1.0
    gps_sigma_m: float = 5.0
    yaw_sigma_deg: float = 20.0
    scale_sigma: float = 0.05
    huber_m: float = 0.5
    max_points: int = 40
    offset_sigma_m: float = 20.0
    survey_scale_sigma: float = 0.2

    def __post_init__(self) -> None:
        for key in ("gsd", "match_gsd", "ransac_m", "gps_sigma_m", "yaw_sigma_deg", "scale_sigma", "huber_m",
                    "offset_sigma_m", "survey_scale_sigma"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise MosaicError(f"mosaic {key} must be a number > 0, got {v!r}")
        if not (isinstance(self.min_overlap, (int, float)) and 0.0 < self.min_overlap < 1.0):
            raise MosaicError(f"mosaic min_overlap must be a fraction in (0, 1), got {self.min_overlap!r}")
        if not (isinstance(self.ratio, (int, float)) and 0.0 < self.ratio < 1.0):
            raise MosaicError(f"mosaic ratio must be in (0, 1), got {self.ratio!r}")
        for key in ("min_inliers", "max_points"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 3:
                raise MosaicError(f"mosaic {key} must be an integer >= 3, got {v!r}")


@dataclass(frozen=True)
class PairResult:
    """One matched pair: photo indices, inliers, and the residual (metres) of its points before and after the
    adjustment (median over the pair's points; ``weight`` the pair's final robust weight, 0..1)."""

    i: int
    j: int
    inliers: int
    before_m: float
    after_m: float
    weight: float


@dataclass(frozen=True)
class MosaicReport:
    """What the mosaic did: per-photo corrections (east, north metres; rotation degrees; scale), every matched pair,
    the pairs tried and dropped (few inliers), photos left unconnected, and residual statistics after adjustment
    (metres over every pair's points, robust weight > 0.5)."""

    names: tuple[str, ...]
    corrections: np.ndarray  # float64[n, 4]: dx m, dy m, rotation deg, scale - 1
    pairs: tuple[PairResult, ...]
    tried: int
    dropped: int
    unconnected: tuple[str, ...]
    residual_median_m: float
    residual_p95_m: float
    before_median_m: float
    before_p95_m: float
    offset_m: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    placement_sigma_m: float = math.nan
    height_m: float = math.nan

    @property
    def attitude_sigma_deg(self) -> float:
        """The photos' placement noise as the attitude error that would cause it at the survey's height (degrees;
        NaN when unmeasured): ``atan(placement_sigma_m / height_m)``. A later flight of the same aircraft carries
        it in every frame's recorded attitude (:class:`runtime.localizer.LocalizerConfig` ``attitude_sigma_deg``)."""
        if not (math.isfinite(self.placement_sigma_m) and math.isfinite(self.height_m) and self.height_m > 0.0):
            return math.nan
        return math.degrees(math.atan2(self.placement_sigma_m, self.height_m))

    def to_dict(self) -> dict:
        return {
            "photos": len(self.names), "pairs_tried": self.tried, "pairs_used": len(self.pairs),
            "pairs_dropped": self.dropped, "unconnected": list(self.unconnected),
            "residual_m": {"before_median": self.before_median_m, "before_p95": self.before_p95_m,
                           "after_median": self.residual_median_m, "after_p95": self.residual_p95_m},
            "camera_offset_m": {"forward": float(self.offset_m[0]), "right": float(self.offset_m[1])},
            "survey_scale": float(self.scale),
            "placement_sigma_m": _finite_or_none(self.placement_sigma_m),
            "survey_height_m": _finite_or_none(self.height_m),
            "attitude_sigma_deg": _finite_or_none(self.attitude_sigma_deg),
            "corrections": [{"photo": n, "dx_m": float(c[0]), "dy_m": float(c[1]), "rotation_deg": float(c[2]),
                             "scale": float(1.0 + c[3])} for n, c in zip(self.names, self.corrections)],
            "pairs": [{"a": self.names[p.i], "b": self.names[p.j], "inliers": p.inliers, "before_m": p.before_m,
                       "after_m": p.after_m, "weight": p.weight} for p in self.pairs],
            "notes": list(self.notes),
        }


def _finite_or_none(v: float):
    return float(v) if math.isfinite(v) else None


def placement_sigma(x: np.ndarray, forward: np.ndarray | None, offset: np.ndarray, connected: np.ndarray) -> float:
    """Robust per-axis sigma (metres) of where the images put each connected photo's nadir point against where its
    GPS fix and the survey's common camera offset put it: the corrections ``x[:, :2]`` (float64[n, 2]) minus
    ``B_i @ offset`` (see :func:`_adjust`), pooled over east and north, ``1.4826 * median |d|``; NaN with fewer
    than 3 connected photos. What it measures is the photos' own metadata noise (a recorded attitude or trigger
    time that is not the exposure's), white from one photo to the next on a real survey: the limit of how well
    the images of a later flight can agree with its GPS."""
    d = x[:, :2].copy()
    if forward is not None:
        f = np.nan_to_num(forward)
        right = np.stack([f[:, 1], -f[:, 0]], axis=1)
        d -= f * offset[0] + right * offset[1]
    d = d[np.asarray(connected, bool)]
    if len(d) < 3:
        return math.nan
    return float(1.4826 * np.median(np.abs(d)))


@dataclass
class _Ground:
    """A photo rectified at the match resolution: ground image, mask, the local (x, y) of pixel (0, 0)'s top-left
    corner, and its footprint."""

    image: np.ndarray
    mask: np.ndarray
    x_min: float
    y_max: float
    footprint: np.ndarray  # float64[k, 2] local metres


def _attitude(p: MosaicPhoto) -> Attitude:
    return p.attitude if p.attitude is not None else Attitude(0.0, 0.0, float(p.yaw_rad))


def _rectify(p: MosaicPhoto, nadir: np.ndarray, gsd: float) -> _Ground:
    from calibration.view import ground_footprint, rectify

    att = _attitude(p)
    poly = ground_footprint(p.camera, att, p.height_m, p.mount)
    image = p.load_image()
    if image.shape[:2] != (p.camera.height, p.camera.width):
        raise MosaicError(f"{p.name}: the image is {image.shape[1]}x{image.shape[0]} px but its camera model is "
                          f"{p.camera.width}x{p.camera.height}")
    view = rectify(image, p.camera, att, p.height_m, gsd, mount=p.mount)
    return _Ground(view.image, view.mask, float(nadir[0] + view.x_min), float(nadir[1] + view.y_max),
                   poly + nadir)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two convex footprints as a fraction of the smaller (cv2.intersectConvexConvex)."""
    import cv2

    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(area) / max(1e-9, min(_polygon_area(a), _polygon_area(b)))


def sift_features(gray: np.ndarray, mask: np.ndarray | None = None, features: int = 4000):
    """SIFT keypoints of a grey uint8[h, w] image after CLAHE (exposure differences between photos), inside ``mask``
    (uint8, 255 = use; None: everywhere): (points float64[n, 2] pixels, descriptors float32[n, 128] or None)."""
    import cv2

    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    kps, desc = cv2.SIFT_create(nfeatures=features).detectAndCompute(gray, mask)
    return np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2), desc


def ratio_matches(da, db, ratio: float) -> list:
    """Lowe's ratio test over 2-nearest-neighbour L2 matches of descriptors ``da`` to ``db`` (cv2.DMatch list)."""
    import cv2

    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    return [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]


def _features(g: _Ground):
    import cv2

    mask = cv2.erode(g.mask.astype(np.uint8) * 255, np.ones((9, 9), np.uint8))  # no corners on the mask's edge
    return sift_features(cv2.cvtColor(g.image, cv2.COLOR_RGB2GRAY), mask)


def _to_local(g: _Ground, uv: np.ndarray, gsd: float) -> np.ndarray:
    """Ground-image pixel coordinates (cv2 keypoints: pixel centres at integers) -> local metres."""
    return np.stack([g.x_min + (uv[:, 0] + 0.5) * gsd, g.y_max - (uv[:, 1] + 0.5) * gsd], axis=1)


def _match(fa, fb, ga: _Ground, gb: _Ground, cfg: MosaicConfig):
    """Inlier ground points (local metres) of a pair: (pa, pb) float64[k, 2], or None."""
    import cv2

    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(pa) < cfg.min_inliers or len(pb) < cfg.min_inliers:
        return None
    good = ratio_matches(da, db, cfg.ratio)
    if len(good) < cfg.min_inliers:
        return None
    a = _to_local(ga, pa[[m.queryIdx for m in good]], cfg.match_gsd)
    b = _to_local(gb, pb[[m.trainIdx for m in good]], cfg.match_gsd)
    M, inl = cv2.estimateAffinePartial2D(b, a, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_m,
                                         maxIters=4000, confidence=0.999)
    if M is None or inl is None:
        return None
    inl = inl.ravel().astype(bool)
    if inl.sum() < cfg.min_inliers:
        return None
    return a[inl], b[inl]


def _design(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Jacobian of the corrected point wrt (tx, ty, theta, s) of its photo: float64[k, 2, 4]."""
    d = p - c
    J = np.zeros((len(p), 2, 4))
    J[:, 0, 0] = 1.0
    J[:, 1, 1] = 1.0
    J[:, 0, 2], J[:, 1, 2] = -d[:, 1], d[:, 0]  # small rotation about the nadir point
    J[:, 0, 3], J[:, 1, 3] = d[:, 0], d[:, 1]  # scale about the nadir point
    return J


def _adjust(n: int, nadirs: np.ndarray, matches: list, cfg: MosaicConfig, forward: np.ndarray | None = None):
    """Robust least squares of the per-photo corrections (normal equations, 4 unknowns per photo). A pair's points
    share its registration, so a pair counts as 4 independent points of sigma ``huber_m`` however many inliers it
    has; pairs whose median residual exceeds ``huber_m`` are down-weighted by ``huber_m / residual`` (Huber), over
    up to 10 reweightings.

    With ``forward`` (float64[n, 2] unit flight directions, NaN where unknown) two more unknowns are solved: the
    offset ``g`` (forward, right metres) of every camera's nadir from its GPS fix in the flight's own frame, the
    same for every photo (a GPS fix stamped ``g_fwd / speed`` seconds from the exposure, a camera tilted in its
    mount); the GPS prior then holds ``t_i - B_i g`` (``B_i`` = [forward, right]) instead of ``t_i``, so lines flown
    in opposite directions tell ``g`` apart from the GPS noise. Prior sigma of ``g``: ``offset_sigma_m``.
    The scale works alike: each photo's scale correction is the survey's ``S`` (one height or focal-length error
    for the whole survey: a barometric height above the take-off point, a nominal focal length) plus its own
    (prior ``scale_sigma`` on ``s_i - S``, ``survey_scale_sigma`` on ``S``).
    Returns (x float64[n, 4], g float64[2] (zeros without ``forward``), S, per-pair median residuals after,
    weights).
    """
    prior = np.array([cfg.gps_sigma_m, cfg.gps_sigma_m, math.radians(cfg.yaw_sigma_deg), cfg.scale_sigma])
    jac = [(_design(a, nadirs[i]), _design(b, nadirs[j])) for i, j, a, b in matches]
    use_g = forward is not None and np.isfinite(forward).all(axis=1).any()
    m = 4 * n + 3  # + offset (forward, right) + the survey's scale
    B = np.zeros((n, 2, 2))
    if use_g:
        f = np.nan_to_num(forward)
        B[:, :, 0] = f
        B[:, :, 1] = np.stack([f[:, 1], -f[:, 0]], axis=1)  # right of the flight direction
    x = np.zeros((n, 4))
    g = np.zeros(2)
    w_pair = np.ones(len(matches))
    for _ in range(10):
        N = np.zeros((m, m))
        N[:4 * n, :4 * n] = np.diag(np.tile(1.0 / prior**2, n))
        N[4 * n:4 * n + 2, 4 * n:4 * n + 2] = np.eye(2) / cfg.offset_sigma_m**2
        # the scale: every photo's s_i is the survey's S plus its own (prior scale_sigma on s_i - S)
        N[4 * n + 2, 4 * n + 2] = 1.0 / cfg.survey_scale_sigma**2
        for i in range(n):
            k = 4 * i + 3
            N[k, 4 * n + 2] -= 1.0 / cfg.scale_sigma**2
            N[4 * n + 2, k] -= 1.0 / cfg.scale_sigma**2
            N[4 * n + 2, 4 * n + 2] += 1.0 / cfg.scale_sigma**2
        if use_g:
            for i in range(n):
                si = slice(4 * i, 4 * i + 2)
                sg = slice(4 * n, 4 * n + 2)
                N[si, sg] -= B[i] / cfg.gps_sigma_m**2
                N[sg, si] -= B[i].T / cfg.gps_sigma_m**2
                N[sg, sg] += B[i].T @ B[i] / cfg.gps_sigma_m**2
        rhs = np.zeros(m)
        for (i, j, a, b), (Ja, Jb), wk in zip(matches, jac, w_pair):
            omega = wk * 4.0 / (len(a) * cfg.huber_m**2)
            r = (a - b).reshape(-1)  # corrected a - corrected b = r + Ja xa - Jb xb, wanted 0
            Ja2, Jb2 = Ja.reshape(-1, 4), Jb.reshape(-1, 4)
            si, sj = slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4)
            N[si, si] += omega * Ja2.T @ Ja2
            N[sj, sj] += omega * Jb2.T @ Jb2
            N[si, sj] -= omega * Ja2.T @ Jb2
            N[sj, si] -= omega * Jb2.T @ Ja2
            rhs[si] -= omega * Ja2.T @ r
            rhs[sj] += omega * Jb2.T @ r
        sol = np.linalg.solve(N, rhs)
        x_new, g, S = sol[:4 * n].reshape(n, 4), sol[4 * n:4 * n + 2], float(sol[4 * n + 2])
        res = _pair_residuals(x_new, nadirs, matches)
        w_new = np.minimum(1.0, cfg.huber_m / np.maximum(res, 1e-9))
        done = np.abs(x_new - x).max() < 1e-4 and np.abs(w_new - w_pair).max() < 1e-3
        x, w_pair = x_new, w_new
        if done:
            break
    return x, g, S, _pair_residuals(x, nadirs, matches), w_pair


def _flight_directions(nadirs: np.ndarray, t_s: list) -> np.ndarray | None:
    """Unit flight direction of each photo from its neighbours in time (central difference; one-sided at a line's
    end: a neighbour more than 3 median steps away or 20 s apart is another line); NaN where unknown. None when the
    photos carry no times."""
    if any(t is None for t in t_s):
        return None
    t = np.asarray(t_s, dtype=float)
    order = np.argsort(t)
    n = len(t)
    out = np.full((n, 2), np.nan)
    steps = np.linalg.norm(np.diff(nadirs[order], axis=0), axis=1)
    med = float(np.median(steps)) if len(steps) else 0.0
    for pos, k in enumerate(order):
        near = []
        for q in (pos - 1, pos + 1):
            if 0 <= q < n:
                j = order[q]
                d = np.linalg.norm(nadirs[j] - nadirs[k])
                if 0.5 < d <= 3.0 * med and abs(t[j] - t[k]) <= 20.0:
                    near.append(j)
        if not near:
            continue
        a = min(near, key=lambda j: t[j])
        b = max(near, key=lambda j: t[j])
        v = nadirs[b] - nadirs[a] if a != b else (nadirs[b] - nadirs[k] if t[b] > t[k] else nadirs[k] - nadirs[b])
        if np.linalg.norm(v) > 0:
            out[k] = v / np.linalg.norm(v)
    return out


def _apply(x: np.ndarray, p: np.ndarray, c: np.ndarray) -> np.ndarray:
    return p + np.einsum("kij,j->ki", _design(p, c), x)


def _pair_residuals(x: np.ndarray, nadirs: np.ndarray, matches: list) -> np.ndarray:
    return np.array([float(np.median(np.linalg.norm(_apply(x[i], a, nadirs[i]) - _apply(x[j], b, nadirs[j]), axis=1)))
                     for i, j, a, b in matches])


def build_mosaic(photos: Sequence[MosaicPhoto], config: MosaicConfig | None = None, *, progress=None):
    """Rectify, register and blend ``photos`` (see the module docstring).

    Returns:
        (:class:`maps.ortho.Orthophoto`, :class:`MosaicReport`).
    Raises:
        MosaicError: fewer than two photos, bad settings, or no pair of photos that overlaps and matches.
    """
    import cv2

    from maps.geodesy import LocalFrame
    from maps.ortho import Orthophoto

    cfg = config or MosaicConfig()
    photos = list(photos)
    if len(photos) < 2:
        raise MosaicError(f"a mosaic needs at least 2 overlapping photos, got {len(photos)}")
    lat0 = float(np.mean([p.lat for p in photos]))
    lon0 = float(np.mean([p.lon for p in photos]))
    frame = LocalFrame(lat0, lon0)
    ex, ny = frame.to_local(np.array([p.lat for p in photos]), np.array([p.lon for p in photos]))
    nadirs = np.stack([np.asarray(ex, float), np.asarray(ny, float)], axis=1)
    notes: list[str] = []
    grounds = []
    for k, p in enumerate(photos):
        grounds.append(_rectify(p, nadirs[k], cfg.match_gsd))
        if progress:
            progress("rectify", k + 1, len(photos))
    feats = [_features(g) for g in grounds]
    matches, tried, dropped = [], 0, 0
    n = len(photos)
    for i in range(n):
        for j in range(i + 1, n):
            if np.linalg.norm(nadirs[i] - nadirs[j]) > 2.0 * max(np.ptp(grounds[i].footprint, axis=0).max(), 1.0):
                continue
            if _overlap(grounds[i].footprint, grounds[j].footprint) < cfg.min_overlap:
                continue
            tried += 1
            m = _match(feats[i], feats[j], grounds[i], grounds[j], cfg)
            if m is None:
                dropped += 1
                continue
            a, b = m
            if len(a) > cfg.max_points:
                sel = np.random.default_rng(i * n + j).choice(len(a), cfg.max_points, replace=False)
                a, b = a[sel], b[sel]
            matches.append((i, j, a, b))
        if progress:
            progress("register", i + 1, n)
    if not matches:
        raise MosaicError(f"no pair of the {n} photos overlaps and matches ({tried} overlapping pairs tried, all "
                          f"with fewer than {cfg.min_inliers} consistent features): a mosaic needs overlapping "
                          "photos of textured ground")
    before = _pair_residuals(np.zeros((n, 4)), nadirs, matches)
    forward = _flight_directions(nadirs, [p.t_s for p in photos])
    x, g, S, after, w = _adjust(n, nadirs, matches, cfg, forward)
    seen = {i for i, j, *_ in matches} | {j for i, j, *_ in matches}
    unconnected = tuple(photos[k].name for k in range(n) if k not in seen)
    if unconnected:
        notes.append(f"{len(unconnected)} photo(s) matched no neighbour and stay where their GPS put them")
    good = after[w > 0.5] if np.any(w > 0.5) else after
    pairs = tuple(PairResult(i, j, len(a), float(b0), float(a0), float(wk))
                  for (i, j, a, _b), b0, a0, wk in zip(matches, before, after, w))
    corrections = x.copy()
    corrections[:, 2] = np.degrees(x[:, 2])
    connected = np.array([k in seen for k in range(n)])
    heights = [p.height_m * (1.0 + S) for p in photos]
    report = MosaicReport(tuple(p.name for p in photos), corrections, pairs, tried, dropped, unconnected,
                          float(np.median(good)), float(np.percentile(good, 95)), float(np.median(before)),
                          float(np.percentile(before, 95)), (float(g[0]), float(g[1])), 1.0 + S, tuple(notes),
                          placement_sigma(x, forward, g, connected), float(np.median(heights)))

    # blend: each corrected ground image warped into the mosaic grid, feathered by distance to its edge squared
    corners = []
    for k, g in enumerate(grounds):
        corners.append(_apply(x[k], g.footprint, nadirs[k]))
    allc = np.concatenate(corners)
    gsd = cfg.gsd
    x_min = math.floor(allc[:, 0].min() / gsd) * gsd
    y_max = math.ceil(allc[:, 1].max() / gsd) * gsd
    W = int(math.ceil((allc[:, 0].max() - x_min) / gsd))
    H = int(math.ceil((y_max - allc[:, 1].min()) / gsd))
    if W * H > 400_000_000:
        raise MosaicError(f"the mosaic would be {W}x{H} px at {gsd} m/px: choose a coarser --mosaic-gsd")
    acc = np.zeros((H, W, 3), np.float32)
    wsum = np.zeros((H, W), np.float32)
    for k, g in enumerate(grounds):
        # mosaic pixel (u, v) centre -> local (X, Y) -> uncorrected local (inverse of the similarity) -> ground px
        th, s = x[k, 2], x[k, 3]
        c = nadirs[k]
        # corrected = c + (1 + s) R(th) (p - c) + t   (the linearised correction, applied exactly as a similarity)
        R = (1.0 + s) * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        Rinv = np.linalg.inv(R)
        # local X = x_min + (u + 0.5) gsd, Y = y_max - (v + 0.5) gsd; ground col = (p_x - g.x_min)/mg - 0.5, ...
        # p = c + Rinv (X - c - t)
        mg = cfg.match_gsd
        t = x[k, :2]
        # affine from (u, v) to (X, Y)
        A_uv = np.array([[gsd, 0.0, x_min + 0.5 * gsd], [0.0, -gsd, y_max - 0.5 * gsd]])
        # (X, Y) -> p
        off = c - Rinv @ (c + t)
        A_p = np.hstack([Rinv @ A_uv[:, :2], (Rinv @ A_uv[:, 2] + off)[:, None]])
        # p -> ground pixel (col, row)
        A_g = np.array([[1.0 / mg, 0.0, -g.x_min / mg - 0.5], [0.0, -1.0 / mg, g.y_max / mg - 0.5]])
        M = A_g[:, :2] @ A_p
        M = np.hstack([M[:, :2], (A_g[:, :2] @ A_p[:, 2] + A_g[:, 2])[:, None]])
        bb = corners[k]
        u0 = max(0, int((bb[:, 0].min() - x_min) / gsd) - 1)
        u1 = min(W, int(math.ceil((bb[:, 0].max() - x_min) / gsd)) + 1)
        v0 = max(0, int((y_max - bb[:, 1].max()) / gsd) - 1)
        v1 = min(H, int(math.ceil((y_max - bb[:, 1].min()) / gsd)) + 1)
        if u1 <= u0 or v1 <= v0:
            continue
        Mk = M.copy()
        Mk[:, 2] += Mk[:, 0] * u0 + Mk[:, 1] * v0  # sub-window origin
        dist = cv2.distanceTransform(g.mask.astype(np.uint8), cv2.DIST_L2, 5) * mg  # metres to the edge
        size = (u1 - u0, v1 - v0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        img = cv2.warpAffine(g.image, Mk, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        wt = cv2.warpAffine(dist.astype(np.float32), Mk, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0.0) ** 2
        acc[v0:v1, u0:u1] += img.astype(np.float32) * wt[:, :, None]
        wsum[v0:v1, u0:u1] += wt
        if progress:
            progress("blend", k + 1, n)
    mask = wsum > 0
    out = np.zeros((H, W, 3), np.uint8)
    out[mask] = np.clip(acc[mask] / wsum[mask][:, None] + 0.5, 0, 255).astype(np.uint8)
    ortho = Orthophoto(out, mask, gsd, float(x_min), float(y_max), frame, tuple(p.name for p in photos))
    return ortho, report
