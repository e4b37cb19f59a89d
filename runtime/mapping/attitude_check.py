"""How far a survey's recorded attitude is off, measured from its own overlapping photos (flat ground).

A survey's photos carry a recorded attitude (senseFly/eBee XMP, a DJI gimbal) and a GPS fix. When the images of
the survey disagree with where the GPS puts them, either could be at fault; this module measures the attitude from
the images alone and says which.

Method (flat ground is the stated assumption): two photos of flat ground taken from two places are related by a
homography ``H = K (R - t n^T / d) K^-1`` (``R``, ``t``: the second camera's pose in the first's axes; ``n``,
``d``: the ground plane's unit normal and distance in the first camera's axes). Consecutive photos of a flight line
are matched (SIFT, Lowe's ratio test, RANSAC homography on undistorted pixels); ``cv2.decomposeHomographyMat``
gives up to four (R, t/d, n); the one kept has its ground normal within ``max_tilt_error_deg`` of the recorded
vertical and, among those, the rotation nearest the recorded one. Per pair and per photo:

- **rotation error**: ``R_images @ R_recorded^T`` as a rotation vector, degrees, in the second camera's axes (x
  right, y down, z along the optical axis: for a nadir camera x/y are the tilt errors and z the heading error). If
  each photo's recorded attitude is off by independent errors of sigma ``s`` per axis, a pair's error has sigma
  ``s * sqrt(2)``: :attr:`AttitudeCheck.photo_sigma_deg`.
- **tilt error**: the angle between the ground normal the images give and the vertical the recorded attitude gives,
  per photo (the mean of its pairs' normals). It needs a baseline: pairs whose ``|t| / d`` is below
  ``min_baseline`` (video frames a fraction of a second apart) leave the normal undetermined and are skipped.
- **nadir shift**: where the recorded attitude puts the ground point below the camera against where the images put
  it, ``height * tan(tilt error)`` in its direction, east/north metres: what the recorded attitude costs a visual
  fix (and a mosaic placed by it). Its robust per-axis sigma is comparable to the mosaic's placement noise
  (:func:`runtime.mapping.mosaic.placement_sigma`).
- **GPS smoothness**: each photo's GPS fix against the straight line in time between its neighbours' in the same
  flight line, along and across the track (robust sigma, metres). White GPS noise of sigma ``g`` gives about
  ``g * sqrt(1.5)``; the vehicle's own manoeuvres add to it, so it is an upper bound of the GPS noise.

Measured on the Seneca survey (167 photos, senseFly Swinglet, no gimbal): see ``runtime photo-check`` in the README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from calibration.geometry import R_cam2world
from calibration.rotations import rotation_between

from ..errors import OnboardError
from .mosaic import ratio_matches, sift_features

__all__ = ["AttitudeCheckError", "CheckConfig", "PairCheck", "AttitudeCheck", "pair_check", "check_attitude"]


class AttitudeCheckError(OnboardError):
    """Settings or inputs the attitude check cannot use (bad config value, a flight line naming no photo)."""


@dataclass(frozen=True)
class CheckConfig:
    """Settings of the check.

    Attributes:
        features: SIFT features per photo. ratio: Lowe's ratio test. ransac_px: RANSAC reprojection threshold,
        pixels. min_inliers: least homography inliers for a pair to count. min_baseline: least ``|t| / d`` of a
        pair (camera displacement over height above the ground) for its ground normal to count.
        max_tilt_error_deg: a decomposition's ground normal must lie within this of the recorded vertical.
    """

    features: int = 4000
    ratio: float = 0.75
    ransac_px: float = 3.0
    min_inliers: int = 30
    min_baseline: float = 0.1
    max_tilt_error_deg: float = 35.0

    def __post_init__(self) -> None:
        for key in ("features", "min_inliers"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 8:
                raise AttitudeCheckError(f"attitude check {key} must be an integer >= 8, got {v!r}")
        for key, lo, hi in (("ratio", 0.0, 1.0), ("ransac_px", 0.0, math.inf), ("min_baseline", 0.0, math.inf),
                            ("max_tilt_error_deg", 0.0, 90.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v < hi):
                raise AttitudeCheckError(f"attitude check {key} must be a number in ({lo:g}, {hi:g}), got {v!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "CheckConfig":
        from maps.config import strict_from_dict

        return strict_from_dict(cls, d, "attitude check", error=AttitudeCheckError)


@dataclass(frozen=True)
class PairCheck:
    """One pair of consecutive photos.

    Attributes:
        a, b: file names. inliers: homography inliers. reprojection_px: their median reprojection error, pixels.
        baseline: ``|t| / d`` (displacement over height). rotation_error_deg: float64[3] ``R_images R_recorded^T``
        as a rotation vector in b's camera axes, degrees. down_a, down_b: float64[3] unit vectors towards the
        ground plane the images give, in a's and b's camera axes. centre_b: float64[3] b's camera centre in a's
        camera axes over ``d`` (a's distance to the ground plane: its height above flat ground), ``-R^T t / d``.
        rotation: float64[3, 3] a's camera axes -> b's, as the images give it.
    """

    a: str
    b: str
    inliers: int
    reprojection_px: float
    baseline: float
    rotation_error_deg: np.ndarray
    down_a: np.ndarray
    down_b: np.ndarray
    centre_b: np.ndarray | None = None
    rotation: np.ndarray | None = None


@dataclass(frozen=True)
class AttitudeCheck:
    """The check of one survey (module docstring).

    Attributes:
        pairs: the pairs that counted. skipped: ``(a, b, reason)`` of the pairs that did not.
        tilt_error_deg: name -> angle between the images' and the recorded vertical, degrees, per photo in a pair.
        nadir_shift_m: name -> float64[2] east/north shift of the nadir point the recorded attitude makes, metres.
        gps_along_m, gps_cross_m: float64[k] each inner photo's GPS fix against its neighbours' line, metres.
    """

    pairs: tuple[PairCheck, ...]
    skipped: tuple[tuple[str, str, str], ...]
    tilt_error_deg: dict = field(default_factory=dict)
    nadir_shift_m: dict = field(default_factory=dict)
    gps_along_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gps_cross_m: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def rotation_sigma_deg(self) -> np.ndarray:
        """float64[3]: robust sigma of the pairs' rotation error per camera axis (x, y tilt; z heading), degrees."""
        if not self.pairs:
            return np.full(3, math.nan)
        return robust_sigma(np.array([p.rotation_error_deg for p in self.pairs]))

    @property
    def photo_sigma_deg(self) -> np.ndarray:
        """float64[3]: the per-photo error (sigma per axis, degrees) that independent errors would need to give
        :attr:`rotation_sigma_deg` (its value / sqrt 2)."""
        return self.rotation_sigma_deg / math.sqrt(2.0)

    @property
    def nadir_sigma_m(self) -> np.ndarray:
        """float64[2]: robust east/north sigma of :attr:`nadir_shift_m`, metres (NaN with fewer than 3 photos)."""
        if len(self.nadir_shift_m) < 3:
            return np.full(2, math.nan)
        return robust_sigma(np.array(list(self.nadir_shift_m.values())))

    @property
    def gps_sigma_m(self) -> np.ndarray:
        """float64[2]: robust along/across-track sigma of the GPS smoothness residuals, metres."""
        if len(self.gps_along_m) < 3:
            return np.full(2, math.nan)
        return np.array([robust_sigma(self.gps_along_m), robust_sigma(self.gps_cross_m)])

    def to_dict(self) -> dict:
        tilt = np.array(list(self.tilt_error_deg.values())) if self.tilt_error_deg else np.zeros(0)

        def num(v):
            return None if not math.isfinite(float(v)) else round(float(v), 3)

        return {
            "pairs_used": len(self.pairs), "pairs_skipped": len(self.skipped),
            "skipped": [{"a": a, "b": b, "reason": r} for a, b, r in self.skipped],
            "rotation_sigma_deg": {k: num(v) for k, v in zip("xyz", self.rotation_sigma_deg)},
            "photo_sigma_deg": {k: num(v) for k, v in zip("xyz", self.photo_sigma_deg)},
            "tilt_error_deg": {"photos": len(tilt), "median": num(np.median(tilt)) if len(tilt) else None,
                               "p90": num(np.percentile(tilt, 90)) if len(tilt) else None},
            "nadir_sigma_m": {k: num(v) for k, v in zip(("east", "north"), self.nadir_sigma_m)},
            "gps_smoothness_sigma_m": {k: num(v) for k, v in zip(("along", "cross"), self.gps_sigma_m)},
            "pairs": [{"a": p.a, "b": p.b, "inliers": p.inliers, "reprojection_px": round(p.reprojection_px, 3),
                       "baseline": round(p.baseline, 3),
                       "rotation_error_deg": [round(float(v), 3) for v in p.rotation_error_deg]}
                      for p in self.pairs],
            "photos": [{"photo": n, "tilt_error_deg": round(float(self.tilt_error_deg[n]), 3),
                        "nadir_shift_m": ([round(float(v), 3) for v in self.nadir_shift_m[n]]
                                          if n in self.nadir_shift_m else None)}
                       for n in self.tilt_error_deg],
        }

    def format_text(self) -> str:
        """A few lines for a person: the figures of :meth:`to_dict` without the per-pair and per-photo lists."""
        def f(v) -> str:
            return "-" if not math.isfinite(float(v)) else f"{float(v):.1f}"

        r, p, n, g = self.rotation_sigma_deg, self.photo_sigma_deg, self.nadir_sigma_m, self.gps_sigma_m
        tilt = np.array(list(self.tilt_error_deg.values())) if self.tilt_error_deg else np.zeros(0)
        t50, t90 = (np.median(tilt), np.percentile(tilt, 90)) if len(tilt) else (math.nan, math.nan)
        return "\n".join([
            f"pairs of consecutive photos: {len(self.pairs)} used, {len(self.skipped)} skipped",
            f"recorded attitude vs images, rotation error per pair (robust sigma, camera x / y / z): {f(r[0])} / "
            f"{f(r[1])} / {f(r[2])} deg; as independent per-photo errors: {f(p[0])} / {f(p[1])} / {f(p[2])} deg",
            f"tilt error per photo (images' ground normal vs recorded vertical): median {f(t50)} deg, p90 {f(t90)} "
            f"deg over {len(tilt)} photos",
            f"nadir shift the recorded attitude makes (robust sigma east / north): {f(n[0])} / {f(n[1])} m",
            f"GPS smoothness (each fix against its neighbours' line, robust sigma along / across): {f(g[0])} / "
            f"{f(g[1])} m (white GPS noise of sigma s gives about 1.2 s; manoeuvres add to it)",
        ])


def robust_sigma(v: np.ndarray) -> np.ndarray:
    """1.4826 x the median absolute deviation from the median, per column (float64)."""
    v = np.asarray(v, dtype=np.float64)
    return 1.4826 * np.median(np.abs(v - np.median(v, axis=0)), axis=0)


def _undistorted_px(camera, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (float[n, 2]) -> the pixels an ideal pinhole with the same K would see (float64[n, 2]), valid mask."""
    rays, ok = camera.unproject(uv)
    rays = np.where(ok[:, None], rays, np.array([0.0, 0.0, 1.0]))
    p = (camera.K @ (rays / rays[:, 2:3]).T).T
    return p[:, :2], ok & (rays[:, 2] > 1e-6)


def pair_check(meta_a, meta_b, feats_a, feats_b, config: CheckConfig | None = None) -> PairCheck | str:
    """The check of one pair (module docstring), or the reason it does not count.

    Args:
        meta_a, meta_b: :class:`runtime.sources.photos.PhotoMeta` with a recorded attitude and the same camera.
        feats_a, feats_b: (keypoints float64[n, 2] pixels, SIFT descriptors) of their images.
    """
    import cv2

    cfg = config or CheckConfig()
    if meta_a.attitude is None or meta_b.attitude is None:
        return "no recorded attitude"
    if meta_a.camera != meta_b.camera:
        return "the two photos have different cameras"
    (pa, da), (pb, db) = feats_a, feats_b
    if da is None or db is None or len(pa) < cfg.min_inliers or len(pb) < cfg.min_inliers:
        return "too few features (uniform ground?)"
    good = ratio_matches(da, db, cfg.ratio)
    if len(good) < cfg.min_inliers:
        return f"{len(good)} matches < {cfg.min_inliers}"
    cam = meta_a.camera
    ua, oka = _undistorted_px(cam, pa[[m.queryIdx for m in good]])
    ub, okb = _undistorted_px(cam, pb[[m.trainIdx for m in good]])
    keep = oka & okb
    ua, ub = ua[keep], ub[keep]
    if len(ua) < cfg.min_inliers:
        return f"{len(ua)} matches inside the lens model < {cfg.min_inliers}"
    H, inl = cv2.findHomography(ua, ub, cv2.RANSAC, cfg.ransac_px, maxIters=4000, confidence=0.999)
    if H is None or inl is None or int(inl.sum()) < cfg.min_inliers:
        return f"{0 if inl is None else int(inl.sum())} homography inliers < {cfg.min_inliers}"
    inl = inl.ravel().astype(bool)
    proj = cv2.perspectiveTransform(ua[inl].reshape(-1, 1, 2), H).reshape(-1, 2)
    reproj = float(np.median(np.linalg.norm(proj - ub[inl], axis=1)))
    n_sol, Rs, ts, ns = cv2.decomposeHomographyMat(H, cam.K)
    Ra = R_cam2world(meta_a.attitude, meta_a.mount)
    Rb = R_cam2world(meta_b.attitude, meta_b.mount)
    R_rec = Rb.T @ Ra  # a's camera axes -> b's, as recorded
    down_a_rec = Ra.T @ np.array([0.0, 0.0, -1.0])
    cos_max = math.cos(math.radians(cfg.max_tilt_error_deg))
    cands = [i for i in range(n_sol) if float(ns[i].ravel() @ down_a_rec) / np.linalg.norm(ns[i]) >= cos_max]
    if not cands:
        return f"no decomposition with a ground normal within {cfg.max_tilt_error_deg:g} deg of the recorded vertical"
    i = min(cands, key=lambda k: float(np.linalg.norm(cv2.Rodrigues(Rs[k] @ R_rec.T)[0])))
    baseline = float(np.linalg.norm(ts[i]))
    if baseline < cfg.min_baseline:
        return f"baseline |t|/d {baseline:.3f} < {cfg.min_baseline:g} (the ground normal is undetermined)"
    n_a = ns[i].ravel() / np.linalg.norm(ns[i])
    n_b = Rs[i] @ n_a
    err = np.degrees(cv2.Rodrigues(Rs[i] @ R_rec.T)[0].ravel())
    centre_b = -(Rs[i].T @ ts[i].ravel())
    return PairCheck(meta_a.name, meta_b.name, int(inl.sum()), reproj, baseline, err, n_a, n_b / np.linalg.norm(n_b),
                     centre_b, np.asarray(Rs[i], dtype=np.float64))


def _read_gray(meta) -> np.ndarray:
    import cv2

    gray = cv2.imread(str(meta.path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise AttitudeCheckError(f"{meta.path}: the image cannot be decoded")
    return gray


def check_attitude(photos: Sequence, lines: Sequence[Sequence[int]], *, config: CheckConfig | None = None,
                   load: Callable | None = None, progress: Callable | None = None) -> AttitudeCheck:
    """Check a survey's recorded attitude against its images (module docstring).

    Args:
        photos: :class:`runtime.sources.photos.PhotoMeta` in time order.
        lines: flight lines, lists of indices into ``photos`` (e.g.
            :func:`runtime.tools.photo_protocol.flight_lines`); consecutive photos of a line are paired.
        load: photo -> grey image uint8[h, w] (default: decode the file).
        progress: called with (done, total) pairs.
    Raises:
        AttitudeCheckError: a line names an index outside ``photos``; a photo that cannot be decoded.
    """
    from maps.geodesy import LocalFrame

    cfg = config or CheckConfig()
    load = load or _read_gray
    n = len(photos)
    for line in lines:
        bad = [k for k in line if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n]
        if bad:
            raise AttitudeCheckError(f"flight line {list(line)} names photos {bad} outside the {n} photos given")
    feats: dict[int, tuple] = {}

    def features(k: int):
        if k not in feats:
            feats[k] = sift_features(load(photos[k]), features=cfg.features)
        return feats[k]

    pairs, skipped = [], []
    downs: dict[int, list] = {}
    total = sum(max(len(line) - 1, 0) for line in lines)
    done = 0
    for line in lines:
        for a, b in zip(line, line[1:]):
            res = pair_check(photos[a], photos[b], features(a), features(b), cfg)
            if isinstance(res, str):
                skipped.append((photos[a].name, photos[b].name, res))
            else:
                pairs.append(res)
                downs.setdefault(a, []).append(res.down_a)
                downs.setdefault(b, []).append(res.down_b)
            done += 1
            if progress:
                progress(done, total)
        for k in line[:-1]:
            feats.pop(k, None)  # a line's photos are not paired again
    tilt, shift = {}, {}
    for k, vs in downs.items():
        m = photos[k]
        d = np.mean(vs, axis=0)
        d /= np.linalg.norm(d)
        w = R_cam2world(m.attitude, m.mount) @ d  # where the recorded attitude puts the images' "down"
        tilt[m.name] = math.degrees(math.acos(float(np.clip(-w[2], -1.0, 1.0))))
        if m.height_m is not None and w[2] < -1e-6:
            shift[m.name] = float(m.height_m) * w[:2] / -w[2]
    along, cross = [], []
    if n >= 3:
        frame = LocalFrame(float(np.mean([m.lat for m in photos])), float(np.mean([m.lon for m in photos])))
        xy = np.array([frame.to_local(m.lat, m.lon) for m in photos], dtype=np.float64).reshape(-1, 2)
        t = np.array([m.t_ns for m in photos], dtype=np.float64) * 1e-9
        for line in lines:
            for a, b, c in zip(line, line[1:], line[2:]):
                if t[c] <= t[a]:
                    continue
                w = (t[b] - t[a]) / (t[c] - t[a])
                r = xy[b] - (xy[a] + (xy[c] - xy[a]) * w)
                f = xy[c] - xy[a]
                norm = float(np.linalg.norm(f))
                if norm < 1e-6:
                    continue
                f /= norm
                along.append(float(r @ f))
                cross.append(float(r[0] * f[1] - r[1] * f[0]))
    return AttitudeCheck(tuple(pairs), tuple(skipped), tilt, shift, np.array(along), np.array(cross))


def _downs(check: AttitudeCheck, causal: bool, min_photos: int = 5) -> dict:
    """name -> the images' ground normals (camera axes) of the photo's counted pairs: as the second photo of a
    pair (``down_b``) and, unless ``causal``, as the first (``down_a``); each with the lean of its pair's baseline
    removed (:func:`_pair_tilt_stats`; none with fewer than ``min_photos`` photos to measure it)."""
    stats = _pair_tilt_stats(check, min_photos)
    lean = np.zeros(3) if stats is None else np.append(stats[0], 0.0)
    downs: dict[str, list] = {}
    for p in check.pairs:
        downs.setdefault(p.b, []).append(_unit(p.down_b - lean))
        if not causal:
            downs.setdefault(p.a, []).append(_unit(p.down_a + lean))
    return downs


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _pair_tilt_stats(check: AttitudeCheck, min_photos: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(lean, noise), float64[2] radians per camera axis (x, y), of one pair's ground normal, from the photos in two
    counted pairs: their normal from the pair with the photo before (``d_b``) and from the pair with the photo after
    (``d_a``) differ by ``2 lean + noise * sqrt(2)`` (a pair's normal leans along its baseline, which points back
    in one pair and forward in the other: the same way in the camera's axes for every photo of a camera that keeps
    its orientation to the flight direction). lean = median(d_b - d_a) / 2, signed (``d_b - lean`` and
    ``d_a + lean`` are the normals without it), noise = robust sigma / sqrt(2). None with fewer than
    ``min_photos`` such photos."""
    before = {p.b: p.down_b for p in check.pairs}
    diffs = [before[p.a] - p.down_a for p in check.pairs if p.a in before]
    if len(diffs) < min_photos:
        return None
    d = np.array(diffs)[:, :2]  # small angles: the normals' x, y components are radians
    return np.median(d, axis=0) / 2.0, robust_sigma(d) / math.sqrt(2.0)


def pair_tilt_sigma_deg(check: AttitudeCheck, min_photos: int = 5, pairs: int = 1) -> float | None:
    """How precisely ``pairs`` pairs give a photo's tilt once their lean is removed (:func:`_downs`), degrees per
    axis (the larger axis), from :func:`_pair_tilt_stats`: one pair ``noise``, two (the pair before and the pair
    after) ``noise / sqrt(2)``. None with fewer than ``min_photos`` photos in two pairs."""
    stats = _pair_tilt_stats(check, min_photos)
    if stats is None:
        return None
    _, noise = stats
    sigma = noise if pairs == 1 else noise / math.sqrt(2.0)
    return float(np.degrees(sigma.max()))


@dataclass(frozen=True)
class Boresight:
    """The camera's constant tilt against the recorded attitude (a mount misalignment, a level sensor's offset): the
    median, over the photos in two counted pairs (the pair before and the pair after, whose baseline leans cancel),
    of the angle from the recorded vertical to the images' ground normal, per camera axis.

    Attributes:
        x_deg, y_deg: that angle about the camera's axes (x right, y down in the image), degrees: the images' normal
            leans by ``tan(x_deg)`` along camera x (and y) more than the recorded vertical does.
        photos: how many photos measured it.
        sigma_deg: the recorded tilt's scatter about it, robust sigma per camera axis (the larger), degrees.
    """

    x_deg: float
    y_deg: float
    photos: int
    sigma_deg: float

    @property
    def R_cam2cam(self) -> np.ndarray:
        """float64[3, 3]: the rotation (camera axes, OpenCV) that takes the images' normal to the recorded vertical;
        a corrected mount is ``R_cam2body @ R_cam2cam``."""
        v = np.array([math.tan(math.radians(self.x_deg)), math.tan(math.radians(self.y_deg)), 1.0])
        return rotation_between(v / np.linalg.norm(v), np.array([0.0, 0.0, 1.0]))

    def to_dict(self) -> dict:
        return {"x_deg": self.x_deg, "y_deg": self.y_deg, "photos": self.photos, "sigma_deg": self.sigma_deg}

    @classmethod
    def from_dict(cls, d: dict) -> "Boresight":
        """Read back :meth:`to_dict`. Raises :class:`AttitudeCheckError` naming what is wrong."""
        try:
            b = cls(float(d["x_deg"]), float(d["y_deg"]), int(d["photos"]), float(d["sigma_deg"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise AttitudeCheckError(f"boresight: expected x_deg, y_deg, photos, sigma_deg, got {d!r} ({exc})") from exc
        if not (abs(b.x_deg) < 30.0 and abs(b.y_deg) < 30.0 and b.photos >= 0 and 0.0 <= b.sigma_deg < 45.0):
            raise AttitudeCheckError(f"boresight: expected |x_deg|, |y_deg| < 30 and 0 <= sigma_deg < 45, got {d!r}")
        return b


def boresight(photos: Sequence, check: AttitudeCheck, min_photos: int = 5) -> Boresight | None:
    """The camera's constant tilt against the photos' recorded attitude (:class:`Boresight`), from the photos in
    two counted pairs of ``check``; None with fewer than ``min_photos`` of them."""
    twice = _downs(check, causal=False, min_photos=min_photos)
    ang = []
    for m in photos:
        vs = twice.get(m.name)
        if vs is None or len(vs) < 2 or m.attitude is None:
            continue
        d = np.mean(vs, axis=0)
        rec = R_cam2world(m.attitude, m.mount).T @ np.array([0.0, 0.0, -1.0])  # the recorded vertical, camera axes
        if d[2] <= 1e-6 or rec[2] <= 1e-6:
            continue
        ang.append(np.arctan2(d[:2], d[2]) - np.arctan2(rec[:2], rec[2]))
    if len(ang) < min_photos:
        return None
    a = np.degrees(np.array(ang))
    med = np.median(a, axis=0)
    return Boresight(float(med[0]), float(med[1]), len(a), float(robust_sigma(a - med).max()))


def apply_boresight(photos: Sequence, bore: Boresight | None) -> list:
    """``photos`` with each mount turned by ``bore`` (``R_cam2body @ bore.R_cam2cam``): their recorded attitude then
    puts the camera where the images do, on average. None: unchanged."""
    from dataclasses import replace

    from calibration.geometry import Mount

    if bore is None:
        return list(photos)
    R = bore.R_cam2cam
    return [replace(m, mount=Mount(m.mount.R_cam2body @ R, m.mount.t_cam2body)) for m in photos]


def recorded_tilt_sigma_deg(photos: Sequence, check: AttitudeCheck, min_photos: int = 5) -> float | None:
    """How far the photos' recorded roll and pitch are off, degrees per axis: the angle between the images' ground
    normal (both pairs) and the recorded vertical, per world axis (east, north), robust sigma, the larger axis.
    None with fewer than ``min_photos`` photos in a counted pair."""
    downs = _downs(check, causal=False, min_photos=min_photos)
    ang = []
    for m in photos:
        vs = downs.get(m.name)
        if not vs or m.attitude is None:
            continue
        d = np.mean(vs, axis=0)
        w = R_cam2world(m.attitude, m.mount) @ (d / np.linalg.norm(d))
        if w[2] < -1e-6:
            ang.append(np.arctan2(w[:2], -w[2]))
    if len(ang) < min_photos:
        return None
    return float(np.degrees(robust_sigma(np.array(ang)).max()))


def images_tilt(photos: Sequence, check: AttitudeCheck, *, causal: bool = False,
                min_photos: int = 5) -> tuple[list, dict]:
    """``photos`` with each recorded roll and pitch replaced by the tilt their images give (the heading kept).

    For each photo the images' ground normal (the ``down`` of its pairs in ``check``, averaged) is made the
    vertical: the recorded body attitude is turned by the smallest rotation that takes the recorded attitude's
    image of that normal to the world's down, i.e. about a horizontal axis, leaving the heading as recorded. A photo
    in no counted pair keeps its recorded attitude.

    Args:
        photos: :class:`runtime.sources.photos.PhotoMeta` (those the check ran on, or any subset: matched by name).
        check: :func:`check_attitude` of the survey.
        causal: use only the pair with the photo *before* each photo, as a loop flying the photos in order would
            have it (its first photo of a line keeps the recorded attitude); False: both neighbours (map
            building, offline).
        min_photos: passed to :func:`pair_tilt_sigma_deg`.
    Returns:
        (the photos, ``dataclasses.replace`` d; name -> the tilt change, degrees, of each photo changed). A photo
        changed states its tilt's precision, ``tilt_sigma_deg``: :func:`pair_tilt_sigma_deg` for its number of
        pairs (None when the survey has too few photos in two pairs to measure it).
    """
    from dataclasses import replace

    from calibration.geometry import Attitude

    downs = _downs(check, causal, min_photos)
    sigmas = {n: pair_tilt_sigma_deg(check, min_photos, pairs=n) for n in (1, 2)}
    out, changed = [], {}
    for m in photos:
        vs = downs.get(m.name)
        if not vs or m.attitude is None:
            out.append(m)
            continue
        d = np.mean(vs, axis=0)
        d /= np.linalg.norm(d)
        w = R_cam2world(m.attitude, m.mount) @ d
        R_fix = rotation_between(w, np.array([0.0, 0.0, -1.0]))
        att = Attitude.from_matrix(R_fix @ m.attitude.R_body2world)
        changed[m.name] = math.degrees(math.acos(float(np.clip(-w[2], -1.0, 1.0))))
        out.append(replace(m, attitude=att, tilt_sigma_deg=sigmas[min(len(vs), 2)]))
    return out, changed
