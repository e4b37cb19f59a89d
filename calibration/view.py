"""Ground-view geometry: camera frame <-> north-up ground raster over a flat ground plane.

Frames and conventions (see ``docs/DESIGN.md``)
------------------------------------------------
* World ENU, metres, relative to the vehicle's nadir point for :func:`rectify` / :func:`ground_footprint`, or in the
  raster's own frame for :func:`render`. The ground is the plane ``z = 0``.
* The vehicle (body origin) is at height ``height_m`` above the ground; the camera centre is
  ``[x, y, height_m] + R_body2world @ t_cam2body`` and its orientation ``R_cam2world = R_body2world @ R_cam2body``.
* Ground rasters (:class:`GroundView`, ``maps.ortho.Orthophoto``, anything matching :class:`GroundRaster`) are
  north-up with square pixels: pixel (u, v) centre at ``x = x_min + (u + 0.5) * gsd``, ``y = y_max - (v + 0.5) * gsd``.
* Camera pixels follow OpenCV: (0, 0) is the centre of the top-left pixel; the image covers ``[-0.5, w - 0.5]``.

Resampling is ``cv2.remap`` with a mip-map: the source is reduced with ``cv2.pyrDown`` and every output pixel blends
the two pyramid levels bracketing its own footprint (from the output->source Jacobian of the pixel map), so tilted
views are neither aliased in the far field nor blurred in the near field. Only ``cv2.remap``, ``cv2.pyrDown``,
``cv2.resize``/``cv2.dilate`` (the footprint field) and, in the tests, ``cv2.warpPerspective`` are used; they exist in
OpenCV 4.x and 5.x alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np

from .camera import CameraModel
from .errors import GeometryError
from .geometry import NADIR_MOUNT, Attitude, Mount, R_cam2world

__all__ = ["GroundRaster", "GroundView", "RectifyMap", "RenderMap", "ground_footprint", "mip_levels", "mip_plan",
           "rectify", "rectify_map", "render", "render_map"]

_INTERPOLATIONS = ("nearest", "linear", "cubic")
_MAX_LEVELS = 8  # pyramid levels at most (1/256 of the source resolution)
_AREA_BIAS = 0.75  # pyramid levels subtracted from log2 of the footprint's area scale (see _mip_level)
_LONG_AXIS_BIAS = 1.25  # pyramid levels subtracted from log2 of the footprint's long axis
_BBOX_POINTS_PER_EDGE = 64  # border samples per image edge for the automatic output size
_MIN_DZ = 1e-6  # a ray must descend at least this much (unit vector z) to count as hitting the ground


# ---------------------------------------------------------------------------------------------------- types
@runtime_checkable
class GroundRaster(Protocol):
    """Anything with the ground-raster fields: ``image`` (uint8[h, w, 3] or [h, w]), ``mask`` (bool[h, w], True =
    valid), ``gsd`` (m/px), ``x_min`` (x of the left edge of column 0, metres), ``y_max`` (y of the top edge of row 0,
    metres). ``maps.ortho.Orthophoto`` and :class:`GroundView` match it."""

    @property
    def image(self) -> np.ndarray: ...

    @property
    def mask(self) -> np.ndarray: ...

    @property
    def gsd(self) -> float: ...

    @property
    def x_min(self) -> float: ...

    @property
    def y_max(self) -> float: ...


@dataclass(frozen=True, eq=False)
class GroundView:
    """A camera frame resampled to a north-up ground raster.

    Attributes:
        image: [h, w, c] or [h, w], same dtype as the frame; 0 where ``mask`` is False.
        mask: bool[h, w], True where the camera sees the ground point of the pixel.
        gsd: metres per pixel.
        x_min: x (east, metres, relative to the vehicle's nadir point) of the left edge of column 0.
        y_max: y (north, metres, relative to the vehicle's nadir point) of the top edge of row 0.
    """

    image: np.ndarray
    mask: np.ndarray
    gsd: float
    x_min: float
    y_max: float

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in metres relative to the nadir point."""
        return (self.x_min, self.y_max - self.height * self.gsd, self.x_min + self.width * self.gsd, self.y_max)

    def to_pixel(self, x, y):
        """Metres (x, y) relative to the nadir point -> fractional pixel coordinates (u, v) of pixel centres."""
        return (np.asarray(x) - self.x_min) / self.gsd - 0.5, (self.y_max - np.asarray(y)) / self.gsd - 0.5

    def to_local(self, u, v):
        """Pixel coordinates (u, v) -> metres (x, y) relative to the nadir point."""
        return self.x_min + (np.asarray(u) + 0.5) * self.gsd, self.y_max - (np.asarray(v) + 0.5) * self.gsd


# ---------------------------------------------------------------------------------------------------- validation
def _positive(name: str, value, unit: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{name} must be a positive number ({unit}), got {value!r}") from exc
    if not (math.isfinite(f) and f > 0.0):
        raise GeometryError(f"{name} must be > 0 {unit}, got {value!r}")
    return f


def _finite_xy(name: str, value) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{name} must be (x, y) in metres, got {value!r}") from exc
    if not (math.isfinite(x) and math.isfinite(y)):
        raise GeometryError(f"{name} must be finite (x, y) in metres, got {value!r}")
    return x, y


def _check_image(image, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise GeometryError(f"{what} must be a numpy array [h, w, 3] or [h, w], got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4) or image.size == 0:
        raise GeometryError(f"{what} must be [h, w], [h, w, 3] (or up to 4 channels), got shape {list(image.shape)}")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise GeometryError(f"{what} must be uint8 (or uint16/float32), got {image.dtype}")
    return image


def _check_interpolation(interpolation: str) -> str:
    if interpolation not in _INTERPOLATIONS:
        raise GeometryError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def _check_pose_args(camera, attitude, mount) -> None:
    if not isinstance(camera, CameraModel):
        raise GeometryError(f"camera must be a calibration.camera.CameraModel, got {type(camera).__name__}")
    if not isinstance(attitude, Attitude):
        raise GeometryError(f"attitude must be a calibration.geometry.Attitude, got {type(attitude).__name__}")
    if not isinstance(mount, Mount):
        raise GeometryError(f"mount must be a calibration.geometry.Mount, got {type(mount).__name__}")


def _camera_pose(attitude: Attitude, mount: Mount, x: float, y: float, height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(R_cam2world float64[3, 3], camera centre in world float64[3]) for a vehicle at (x, y, height_m)."""
    R_b2w = attitude.R_body2world
    center = np.array([x, y, height_m]) + R_b2w @ mount.t_cam2body
    if center[2] <= 0.0:
        raise GeometryError(
            f"the camera centre is at or below the ground (z = {center[2]:.3f} m) with height {height_m} m and "
            f"t_cam2body {mount.t_xyz}; the height must exceed the mount's lever arm"
        )
    return R_cam2world(attitude, mount), center


# ---------------------------------------------------------------------------------------------------- ray caches
def _readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=8)
def _ray_grid(camera: CameraModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit rays of every pixel centre in the camera frame: (rx, ry, rz) float32[h, w] each, valid bool[h, w].
    Read-only, cached per camera (the pinhole inversion is iterative: ~0.2 s for 640x480)."""
    rays, ok = camera.unproject(camera.pixel_grid())
    shape = (camera.height, camera.width)
    rx, ry, rz = (np.ascontiguousarray(rays[:, k].reshape(shape), dtype=np.float32) for k in range(3))
    return _readonly(rx, ry, rz, ok.reshape(shape).copy())  # type: ignore[return-value]


def _border_pixels(camera: CameraModel, per_edge: int) -> np.ndarray:
    """float64[4 * per_edge, 2]: points along the outer pixel edges, clockwise on screen from the top-left corner."""
    w, h = camera.width - 0.5, camera.height - 0.5
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    top = np.stack([-0.5 + t * (w + 0.5), np.full_like(t, -0.5)], axis=1)
    right = np.stack([np.full_like(t, w), -0.5 + t * (h + 0.5)], axis=1)
    bottom = np.stack([w - t * (w + 0.5), np.full_like(t, h)], axis=1)
    left = np.stack([np.full_like(t, -0.5), h - t * (h + 0.5)], axis=1)
    return np.concatenate([top, right, bottom, left])


@lru_cache(maxsize=32)
def _border_rays(camera: CameraModel, per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays (float64[n, 3], camera frame) and validity (bool[n]) of :func:`_border_pixels`; cached, read-only."""
    rays, ok = camera.unproject(_border_pixels(camera, per_edge))
    return _readonly(rays, ok)  # type: ignore[return-value]


@lru_cache(maxsize=32)
def _coarse_rays(camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """Rays (float64[n, 3]) and validity (bool[n]) of a 25 x 19 grid spanning the image; cached, read-only."""
    u = np.linspace(-0.5, camera.width - 0.5, 25)
    v = np.linspace(-0.5, camera.height - 0.5, 19)
    uu, vv = np.meshgrid(u, v)
    rays, ok = camera.unproject(np.stack([uu.ravel(), vv.ravel()], axis=1))
    return _readonly(rays, ok)  # type: ignore[return-value]


def _check_sees_ground(camera: CameraModel, R_c2w: np.ndarray, max_angle_deg: float | None) -> None:
    """Raise GeometryError unless some ray of the image points at the ground (within ``max_angle_deg`` of nadir
    unless None)."""
    rays, ok = _coarse_rays(camera)
    dz = (rays @ R_c2w.T)[:, 2]
    dz = dz[ok]
    if dz.size == 0 or float(dz.min()) > -_MIN_DZ:
        axis = R_c2w[:, 2]
        raise GeometryError(
            "the camera looks at or above the horizon: no ray of the image reaches the ground "
            f"(optical axis {np.round(axis, 3).tolist()} in ENU, {math.degrees(math.acos(np.clip(-axis[2], -1, 1))):.1f}"
            " deg from nadir); check the attitude (radians, REP-103) and the mount"
        )
    if max_angle_deg is not None and float(dz.min()) > -math.cos(math.radians(max_angle_deg)):
        raise GeometryError(
            f"the camera sees no ground within {max_angle_deg} deg of nadir (the steepest ray is "
            f"{math.degrees(math.acos(min(1.0, -float(dz.min())))):.1f} deg from nadir); pass size_px and center_xy "
            "explicitly or raise max_angle_deg"
        )


def _footprint_polygon(
    camera: CameraModel, R_c2w: np.ndarray, center: np.ndarray, max_angle_deg: float, per_edge: int
) -> np.ndarray:
    """float64[k, 2] ground polygon (world x, y) of the image border, rays clipped to ``max_angle_deg`` from nadir,
    counter-clockwise in ENU. Assumes :func:`_check_sees_ground` passed."""
    rays, ok = _border_rays(camera, per_edge)
    d = rays[ok] @ R_c2w.T  # [n, 3] world directions
    if len(d) < 3:
        raise GeometryError(f"the image border of {camera} has fewer than 3 valid rays; check the distortion")
    cos_max, sin_max = math.cos(math.radians(max_angle_deg)), math.sin(math.radians(max_angle_deg))
    clip = -d[:, 2] < cos_max
    if np.any(clip):
        horiz = d[clip, :2]
        n = np.linalg.norm(horiz, axis=1, keepdims=True)
        axis_h = R_c2w[:2, 2]
        fallback = axis_h / max(float(np.linalg.norm(axis_h)), 1e-12)
        horiz = np.where(n > 1e-9, horiz / np.maximum(n, 1e-12), fallback)
        d[clip, :2] = horiz * sin_max
        d[clip, 2] = -cos_max
    t = -center[2] / d[:, 2]
    poly = center[:2] + t[:, None] * d[:, :2]
    x, y = poly[:, 0], poly[:, 1]
    area2 = float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return poly[::-1].copy() if area2 < 0 else poly


# ---------------------------------------------------------------------------------------------------- mip-mapped remap
def _axis_derivative(m: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """Finite difference of ``m`` along ``axis`` per pixel, averaging the forward and backward differences whose two
    samples are both valid (0 where neither is)."""
    if axis == 1:
        d = m[:, 1:] - m[:, :-1]
        ok = valid[:, 1:] & valid[:, :-1]
    else:
        d = m[1:] - m[:-1]
        ok = valid[1:] & valid[:-1]
    d = np.where(ok, d, np.float32(0.0))
    okf = ok.astype(np.float32)
    num = np.zeros(m.shape, np.float32)
    cnt = np.zeros(m.shape, np.float32)
    if axis == 1:
        num[:, :-1] += d
        num[:, 1:] += d
        cnt[:, :-1] += okf
        cnt[:, 1:] += okf
    else:
        num[:-1] += d
        num[1:] += d
        cnt[:-1] += okf
        cnt[1:] += okf
    return num / np.maximum(cnt, 1.0)


def _mip_level(map_x: np.ndarray, map_y: np.ndarray, valid: np.ndarray, step: int = 4) -> np.ndarray:
    """float32[H, W] pyramid level per output pixel from the Jacobian J = d(source px)/d(output px):
    ``max(log2 sqrt|det J| - 0.75, log2 sigma_max(J) - 1.25)``, clipped at 0 (magnification needs no pre-filter).

    The footprint varies smoothly, so it is evaluated every ``step`` pixels and interpolated (cv2.resize); samples
    without valid neighbours take the largest level around them, so mask borders are not under-filtered."""
    import cv2

    H, W = map_x.shape
    if min(H, W) < 8 * step:
        step = 1
    off = step // 2
    mx, my, ok = map_x[off::step, off::step], map_y[off::step, off::step], valid[off::step, off::step]
    a = _axis_derivative(mx, ok, 1)
    b = _axis_derivative(mx, ok, 0)
    c = _axis_derivative(my, ok, 1)
    d = _axis_derivative(my, ok, 0)
    frob = a * a + b * b + c * c + d * d
    det = a * d - b * c
    smax2 = 0.5 * (frob + np.sqrt(np.maximum(frob * frob - 4.0 * det * det, 0.0)))
    # level of the footprint's area (geometric mean of the singular values), biased sharper: the pyrDown Gaussian
    # plus bilinear sampling already low-pass more than a box filter; guarded by the longest axis so strongly
    # anisotropic (grazing) footprints are not aliased along their long axis. Tuned against 8x supersampling.
    l_area = 0.5 * np.log2(np.maximum(np.abs(det), 1e-12)) - _AREA_BIAS
    l_long = 0.5 * np.log2(np.maximum(smax2, 1e-12)) - _LONG_AXIS_BIAS
    level = np.maximum(np.maximum(l_area, l_long) - math.log2(step), 0.0).astype(np.float32)
    if step == 1:
        return level
    empty = frob <= 0.0  # no valid difference (isolated or invalid sample): borrow from the neighbours
    if empty.any():
        grown = cv2.dilate(level, np.ones((3, 3), np.uint8))
        level[empty] = grown[empty]
    hc, wc = level.shape
    full = cv2.resize(level, (wc * step, hc * step), interpolation=cv2.INTER_LINEAR)
    if full.shape[0] < H or full.shape[1] < W:
        full = np.pad(full, ((0, max(0, H - full.shape[0])), (0, max(0, W - full.shape[1]))), mode="edge")
    return np.ascontiguousarray(full[:H, :W])


def _as_float(img: np.ndarray) -> np.ndarray:
    """A float32 copy with a channel axis: [H, W] -> [H, W, 1]."""
    out = img.astype(np.float32)
    return out if out.ndim == 3 else out[:, :, None]


def mip_levels(map_x: np.ndarray, map_y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32[H, W] mip-map level (pyramid level, 0 = full resolution) per output pixel of a pixel map
    (``map_x``/``map_y`` float32[H, W] source pixel coordinates, ``valid`` bool[H, W]): what :func:`rectify` and
    :func:`render` blend at. Public for other resamplers of the same maps (``runtime.gpu``)."""
    return _mip_level(map_x, map_y, valid)


def mip_plan(src_shape: tuple, level: np.ndarray, valid: np.ndarray, interpolation: str = "linear"):
    """The pyramid levels a mip-mapped resampling of a source of ``src_shape`` ([h, w, ...]) needs.

    Args:
        src_shape: shape of the source image (the pyramid stops at 1/256 or below 4 px).
        level: float32[H, W] from :func:`mip_levels`.
        valid: bool[H, W] output pixels that are sampled.
        interpolation: "linear"/"cubic" (levels blended) or "nearest" (levels rounded).
    Returns:
        (level float32[H, W] clipped to the top of the pyramid, lo, hi): every valid pixel of level ``L + f`` is
        ``(1 - f) r_L + f r_(L+1)`` with the levels clipped into ``[lo, hi]``; levels ``lo..hi`` are sampled.
    """
    lv = level[valid]
    top = 0
    h, w = src_shape[:2]
    while top < _MAX_LEVELS and min(h, w) >= 4:
        top += 1
        h, w = (h + 1) // 2, (w + 1) // 2
    if lv.size == 0:
        lo = hi = 0
    else:
        lo = min(int(math.floor(float(lv.min()))), top)
        hi = min(int(math.ceil(float(lv.max()))), top)
    level = np.minimum(level, np.float32(top))
    if interpolation == "nearest":
        level = np.floor(level + np.float32(0.5))
    return level, lo, hi


def _mip_remap(
    src: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    valid: np.ndarray,
    interpolation: str,
    border_mode: int,
    level: np.ndarray | None = None,
) -> np.ndarray:
    """Resample ``src`` at (``map_x``, ``map_y``) (float32[H, W], level-0 source pixel coordinates) with a mip-map.

    Returns an array [H, W(, c)] of ``src``'s dtype. Pixels outside ``valid`` are unspecified (callers zero them).
    """
    import cv2

    flags = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[interpolation]
    if level is None:
        level = _mip_level(map_x, map_y, valid)
    level, lo, hi = mip_plan(src.shape, level, valid, interpolation)
    pyramid = [src]
    for _ in range(hi):
        pyramid.append(cv2.pyrDown(pyramid[-1]))

    def at_level(k: int) -> np.ndarray:
        if k == 0:
            mx, my = map_x, map_y
        else:
            # cv2.pyrDown centres pixel i of the next level on pixel 2 i of the previous one (5-tap kernel)
            s = np.float32(1.0 / (1 << k))
            mx = map_x * s
            my = map_y * s
        r = cv2.remap(pyramid[k], mx, my, flags, borderMode=border_mode)
        return r[:, :, None] if src.ndim == 3 and r.ndim == 2 else r

    if lo == hi:
        return at_level(lo)
    # trilinear: out = r_lo + sum_k c_k (r_k - r_{k-1}), c_k = clip(level - (k - 1), 0, 1): per pixel this is
    # (1 - f) r_L + f r_{L+1} for level L + f, with levels clipped into [lo, hi]
    prev = _as_float(at_level(lo))
    acc = prev.copy()
    for k in range(lo + 1, hi + 1):
        ck = np.clip(level - np.float32(k - 1), 0.0, 1.0)
        cur = _as_float(at_level(k))
        diff = np.subtract(cur, prev, out=prev)  # prev is not needed any more
        diff *= ck[:, :, None]
        acc += diff
        prev = cur
    if src.dtype != np.float32:
        acc += np.float32(0.5)
        np.clip(acc, 0, np.iinfo(src.dtype).max, out=acc)
        acc = acc.astype(src.dtype)
    return acc[:, :, 0] if src.ndim == 2 else acc


# ---------------------------------------------------------------------------------------------------- footprint
def ground_footprint(
    camera: CameraModel,
    attitude: Attitude,
    height_m: float,
    mount: Mount = NADIR_MOUNT,
    *,
    max_angle_deg: float = 75.0,
    points_per_edge: int = 16,
) -> np.ndarray:
    """Where the image border meets the ground.

    Args:
        camera: intrinsics (either distortion model).
        attitude: vehicle attitude (body -> world ENU).
        height_m: height of the body origin above the ground, metres (> 0).
        mount: camera extrinsics (camera -> body).
        max_angle_deg: border rays further than this from nadir (or above the horizon) are pulled in to this angle,
            so the polygon stays finite; in (0, 90).
        points_per_edge: samples per image edge (distortion bends the edges).
    Returns:
        float64[k, 2], k = 4 * points_per_edge (fewer where border rays are invalid): (x east, y north) metres
        relative to the vehicle's nadir point, counter-clockwise.
    Raises:
        GeometryError: height <= 0, or no ray of the image reaches the ground within ``max_angle_deg`` of nadir.
    """
    _check_pose_args(camera, attitude, mount)
    height_m = _positive("height_m", height_m, "metres")
    if not 0.0 < float(max_angle_deg) < 90.0:
        raise GeometryError(f"max_angle_deg must be in (0, 90) degrees, got {max_angle_deg!r}")
    if int(points_per_edge) < 1:
        raise GeometryError(f"points_per_edge must be >= 1, got {points_per_edge!r}")
    R_c2w, center = _camera_pose(attitude, mount, 0.0, 0.0, height_m)
    _check_sees_ground(camera, R_c2w, float(max_angle_deg))
    return _footprint_polygon(camera, R_c2w, center, float(max_angle_deg), int(points_per_edge))


# ---------------------------------------------------------------------------------------------------- rectify
def rectify(
    image: np.ndarray,
    camera: CameraModel,
    attitude: Attitude,
    height_m: float,
    gsd: float,
    *,
    mount: Mount = NADIR_MOUNT,
    size_px: tuple[int, int] | None = None,
    center_xy: tuple[float, float] | None = None,
    interpolation: str = "linear",
    max_angle_deg: float = 75.0,
    max_size_px: int = 4096,
) -> GroundView:
    """Resample a camera frame to a north-up ground image over flat ground (z = 0).

    Args:
        image: the frame, [camera.height, camera.width, c] or [camera.height, camera.width], uint8 (uint16/float32
            also work), as captured (distorted).
        camera: its intrinsics.
        attitude: vehicle attitude (body -> world ENU) at exposure.
        height_m: height of the body origin above the ground, metres (> 0). The vehicle's nadir point is (0, 0).
        gsd: output metres per pixel (> 0).
        mount: camera extrinsics (camera -> body).
        size_px: output (width, height) in pixels, centred on ``center_xy``; None: the bounding box of the camera's
            ground footprint (border rays clipped to ``max_angle_deg`` from nadir), aligned to multiples of ``gsd``
            and clipped to ``max_size_px`` per side around the nadir point.
        center_xy: output centre (x east, y north) metres relative to the nadir point. None: (0, 0) when
            ``size_px`` is given, the footprint's bounding box otherwise; given with ``size_px=None``, the output is
            the smallest box centred there that holds the footprint.
        interpolation: "linear" (default, trilinear over the mip-map), "cubic" or "nearest".
        max_angle_deg: see ``size_px``; ground further than this from nadir still renders inside an explicit
            ``size_px`` (then only a camera at or above the horizon is an error).
        max_size_px: cap on each side of an automatic size (pixels).
    Returns:
        :class:`GroundView` with ``x_min``/``y_max`` relative to the nadir point; ``mask`` is True where the ground
        point lies in front of the camera, inside the distortion's valid range and inside the image.
    Raises:
        GeometryError: height <= 0, gsd <= 0, wrong frame shape, bad size, or a camera that sees no ground (at or
        above the horizon).
    """
    _check_pose_args(camera, attitude, mount)
    image = _check_image(image, "image")
    if image.shape[:2] != (camera.height, camera.width):
        raise GeometryError(
            f"image is {image.shape[1]}x{image.shape[0]} px but the camera model is {camera.width}x{camera.height}; "
            "use camera.scaled(...) for a resized frame"
        )
    _positive("height_m", height_m, "metres")
    _positive("gsd", gsd, "m/px")
    interpolation = _check_interpolation(interpolation)
    m = rectify_map(camera, attitude, height_m, gsd, mount=mount, size_px=size_px, center_xy=center_xy,
                    max_angle_deg=max_angle_deg, max_size_px=max_size_px)
    import cv2

    out = _mip_remap(image, m.map_x, m.map_y, m.mask, interpolation, cv2.BORDER_REPLICATE)
    out[~m.mask] = 0
    return GroundView(image=out, mask=m.mask, gsd=m.gsd, x_min=m.x_min, y_max=m.y_max)


@dataclass(frozen=True, eq=False)
class RectifyMap:
    """Where each pixel of a rectified ground view samples the camera frame (:func:`rectify_map`).

    Attributes:
        map_x, map_y: float32[H, W] camera pixel coordinates (OpenCV: (0, 0) is the centre of the top-left pixel) of
            each output pixel's ground point; -1 where ``mask`` is False.
        mask: bool[H, W], True where the ground point lies in front of the camera, inside the distortion's valid
            range and inside the image.
        gsd, x_min, y_max: the output raster's metres per pixel and left / top edge (metres relative to the nadir
            point), as :class:`GroundView`.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    mask: np.ndarray
    gsd: float
    x_min: float
    y_max: float


def rectify_map(
    camera: CameraModel,
    attitude: Attitude,
    height_m: float,
    gsd: float,
    *,
    mount: Mount = NADIR_MOUNT,
    size_px: tuple[int, int] | None = None,
    center_xy: tuple[float, float] | None = None,
    max_angle_deg: float = 75.0,
    max_size_px: int = 4096,
) -> RectifyMap:
    """The geometry of :func:`rectify` without the resampling: the source pixel of every output pixel.

    Arguments as :func:`rectify` (no image). :func:`rectify` is this plus a mip-mapped ``cv2.remap``; another
    resampler (``runtime.gpu.rectify``: ``torch.nn.functional.grid_sample`` on a device) takes the same maps, so
    the geometry has one implementation.

    Raises:
        GeometryError: as :func:`rectify` (height <= 0, gsd <= 0, bad size, a camera that sees no ground).
    """
    _check_pose_args(camera, attitude, mount)
    height_m = _positive("height_m", height_m, "metres")
    gsd = _positive("gsd", gsd, "m/px")
    if not 0.0 < float(max_angle_deg) < 90.0:
        raise GeometryError(f"max_angle_deg must be in (0, 90) degrees, got {max_angle_deg!r}")
    if isinstance(max_size_px, bool) or int(max_size_px) != max_size_px or max_size_px < 1:
        raise GeometryError(f"max_size_px must be a positive integer (pixels), got {max_size_px!r}")
    R_c2w, center = _camera_pose(attitude, mount, 0.0, 0.0, height_m)
    _check_sees_ground(camera, R_c2w, float(max_angle_deg) if size_px is None else None)

    if size_px is None:
        poly = _footprint_polygon(camera, R_c2w, center, float(max_angle_deg), _BBOX_POINTS_PER_EDGE)
        lim = 0.5 * int(max_size_px) * gsd
        x0, y0 = np.maximum(poly.min(axis=0), -lim)
        x1, y1 = np.minimum(poly.max(axis=0), lim)
        if center_xy is not None:
            cx, cy = _finite_xy("center_xy", center_xy)
            hw = max(abs(x1 - cx), abs(x0 - cx))
            hh = max(abs(y1 - cy), abs(y0 - cy))
            width = min(int(max_size_px), max(1, int(math.ceil(2 * hw / gsd))))
            height = min(int(max_size_px), max(1, int(math.ceil(2 * hh / gsd))))
            x_min, y_max = cx - 0.5 * width * gsd, cy + 0.5 * height * gsd
        else:
            x_min = math.floor(x0 / gsd) * gsd
            y_max = math.ceil(y1 / gsd) * gsd
            width = max(1, int(round((math.ceil(x1 / gsd) * gsd - x_min) / gsd)))
            height = max(1, int(round((y_max - math.floor(y0 / gsd) * gsd) / gsd)))
    else:
        try:
            width, height = (int(s) for s in size_px)
        except (TypeError, ValueError) as exc:
            raise GeometryError(f"size_px must be (width, height) in pixels, got {size_px!r}") from exc
        if width <= 0 or height <= 0 or tuple(size_px) != (width, height):
            raise GeometryError(f"size_px must be two positive integers (width, height), got {size_px!r}")
        cx, cy = _finite_xy("center_xy", (0.0, 0.0) if center_xy is None else center_xy)
        x_min, y_max = cx - 0.5 * width * gsd, cy + 0.5 * height * gsd

    # ground point of every output pixel, relative to the camera centre, rotated into the camera frame
    R_w2c = R_c2w.T
    gx = x_min + (np.arange(width) + 0.5) * gsd - center[0]
    gy = y_max - (np.arange(height) + 0.5) * gsd - center[1]
    gz = -center[2]
    pts = np.empty((height, width, 3))
    for k in range(3):
        pts[:, :, k] = R_w2c[k, 0] * gx[None, :] + R_w2c[k, 1] * gy[:, None] + R_w2c[k, 2] * gz
    uv, ok = camera.project(pts.reshape(-1, 3))
    map_x = uv[:, 0].reshape(height, width).astype(np.float32)
    map_y = uv[:, 1].reshape(height, width).astype(np.float32)
    mask = (
        ok.reshape(height, width)
        & (map_x >= -0.5)
        & (map_x <= camera.width - 0.5)
        & (map_y >= -0.5)
        & (map_y <= camera.height - 0.5)
    )
    np.copyto(map_x, np.float32(-1.0), where=~mask)  # keep cv2 away from huge coordinates
    np.copyto(map_y, np.float32(-1.0), where=~mask)
    return RectifyMap(map_x=map_x, map_y=map_y, mask=mask, gsd=gsd, x_min=float(x_min), y_max=float(y_max))


# ---------------------------------------------------------------------------------------------------- render
def _check_raster(ground) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    missing = [n for n in ("image", "mask", "gsd", "x_min", "y_max") if not hasattr(ground, n)]
    if missing:
        raise GeometryError(
            f"ground raster {type(ground).__name__} lacks {missing}; it needs image, mask, gsd, x_min, y_max "
            "(e.g. maps.ortho.Orthophoto or calibration.view.GroundView)"
        )
    image = _check_image(ground.image, "ground image")
    mask = ground.mask
    if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
        raise GeometryError(
            f"ground mask must be bool{list(image.shape[:2])}, got "
            f"{getattr(mask, 'dtype', type(mask).__name__)}{list(getattr(mask, 'shape', []))}"
        )
    gsd = _positive("ground gsd", ground.gsd, "m/px")
    x_min, y_max = _finite_xy("ground (x_min, y_max)", (ground.x_min, ground.y_max))
    return image, mask.astype(bool, copy=False), gsd, x_min, y_max


@dataclass(frozen=True, eq=False)
class RenderMap:
    """Where each pixel of a rendered camera frame samples a ground raster (:func:`render_map`).

    Attributes:
        map_x, map_y: float32[camera.height, camera.width] raster pixel coordinates (pixel centres at integers) of
            each camera pixel's ground point, RELATIVE TO THE WINDOW: raster column ``window[2] + map_x``, row
            ``window[0] + map_y``; -1 where ``valid`` is False.
        valid: bool[camera.height, camera.width], True where the pixel's ray is valid, reaches the ground and lands
            inside the raster (the raster's own mask is not looked at: :func:`render` samples it too).
        level: float32[camera.height, camera.width] mip-map level per pixel (:func:`mip_levels` of the maps,
            before :func:`mip_plan` clips it to the pyramid's top); zeros when no pixel is valid.
        window: (r0, r1, c0, c1): the rows ``r0:r1`` and columns ``c0:c1`` of the raster the frame needs, the
            deepest mip level's footprint included (the mip pyramid is built over this crop, so its pixels are
            aligned on ``(r0, c0)``); (0, 0, 0, 0) when no pixel is valid.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    valid: np.ndarray
    level: np.ndarray
    window: tuple[int, int, int, int]


def _render_map(H: int, W: int, gsd: float, gx_min: float, gy_max: float, camera: CameraModel, px: float, py: float,
                height_m: float, attitude: Attitude, mount: Mount) -> RenderMap:
    """:func:`render_map` after its argument checks, for a raster of H x W pixels."""
    R, center = _camera_pose(attitude, mount, px, py, height_m)

    rx, ry, rz, rvalid = _ray_grid(camera)
    R = R.astype(np.float32)  # numpy scalars are not "weak": keep the per-pixel work in float32
    dx = R[0, 0] * rx + R[0, 1] * ry + R[0, 2] * rz
    dy = R[1, 0] * rx + R[1, 1] * ry + R[1, 2] * rz
    dz = R[2, 0] * rx + R[2, 1] * ry + R[2, 2] * rz
    hit = rvalid & (dz < -_MIN_DZ)
    # ray length to the ground, in raster pixels
    t = np.float32(center[2] / gsd) / np.where(hit, -dz, np.float32(1.0)).astype(np.float32)
    # raster pixel coordinates relative to the camera's nadir point (small numbers: float32 is exact enough)
    u0 = (center[0] - gx_min) / gsd - 0.5
    v0 = (gy_max - center[1]) / gsd - 0.5
    du = t * dx
    dv = -t * dy
    valid = hit & (du >= -0.5 - u0) & (du <= W - 0.5 - u0) & (dv >= -0.5 - v0) & (dv <= H - 0.5 - v0)
    if not valid.any():
        shape = (camera.height, camera.width)
        neg = np.full(shape, -1.0, np.float32)
        return RenderMap(neg, neg.copy(), np.zeros(shape, bool), np.zeros(shape, np.float32), (0, 0, 0, 0))

    level = _mip_level(du, dv, valid)  # translation-invariant: no need for absolute coordinates
    lmax = int(math.ceil(float(level[valid].max())))
    margin = (2 << min(lmax, _MAX_LEVELS)) + 4
    c0 = max(int(math.floor(u0 + float(du[valid].min()))) - margin, 0)
    c1 = min(int(math.ceil(u0 + float(du[valid].max()))) + margin + 1, W)
    r0 = max(int(math.floor(v0 + float(dv[valid].min()))) - margin, 0)
    r1 = min(int(math.ceil(v0 + float(dv[valid].max()))) + margin + 1, H)
    map_x = du + np.float32(u0 - c0)
    map_y = dv + np.float32(v0 - r0)
    np.copyto(map_x, np.float32(-1.0), where=~valid)
    np.copyto(map_y, np.float32(-1.0), where=~valid)
    return RenderMap(map_x, map_y, valid, level, (r0, r1, c0, c1))


def render_map(
    ground: GroundRaster,
    camera: CameraModel,
    position_xy: tuple[float, float],
    height_m: float,
    attitude: Attitude,
    *,
    mount: Mount = NADIR_MOUNT,
) -> RenderMap:
    """The geometry of :func:`render` without the resampling: the raster pixel every camera pixel sees.

    Arguments as :func:`render` (no interpolation). :func:`render` is this plus a mip-mapped ``cv2.remap`` of the
    window's crop (and of its mask); another resampler (``export.data.gpu_pairs``: ``grid_sample`` on a torch
    device, :mod:`calibration.torch_remap`) takes the same maps, so the ray geometry has one implementation.

    Raises:
        GeometryError: as :func:`render` (height <= 0, malformed raster, a camera centre at or below the ground).
    """
    _check_pose_args(camera, attitude, mount)
    src, _, gsd, gx_min, gy_max = _check_raster(ground)
    px, py = _finite_xy("position_xy", position_xy)
    height_m = _positive("height_m", height_m, "metres")
    return _render_map(src.shape[0], src.shape[1], gsd, gx_min, gy_max, camera, px, py, height_m, attitude, mount)


def render(
    ground: GroundRaster,
    camera: CameraModel,
    position_xy: tuple[float, float],
    height_m: float,
    attitude: Attitude,
    *,
    mount: Mount = NADIR_MOUNT,
    interpolation: str = "linear",
) -> tuple[np.ndarray, np.ndarray]:
    """The frame ``camera`` would capture over a flat ground raster (distortion applied).

    Args:
        ground: a ground raster (:class:`GroundRaster`: image [h, w, c] or [h, w], mask bool[h, w], gsd, x_min,
            y_max); e.g. ``maps.ortho.Orthophoto``.
        camera: intrinsics (either distortion model).
        position_xy: vehicle (body origin) position (x east, y north), metres in the raster's frame.
        height_m: height of the body origin above the ground, metres (> 0).
        attitude: vehicle attitude (body -> world ENU).
        mount: camera extrinsics (camera -> body).
        interpolation: "linear" (trilinear over the mip-map), "cubic" or "nearest".
    Returns:
        image: [camera.height, camera.width(, c)] of the raster's dtype, 0 where not valid;
        mask: bool[camera.height, camera.width], True where the pixel's ray is valid, hits the ground and lands on a
        valid raster pixel (all raster pixels contributing to it valid). A camera looking above the horizon gets an
        all-False mask (no error: a simulator may fly anywhere).
    Raises:
        GeometryError: height <= 0, malformed raster, bad interpolation name.
    """
    import cv2

    _check_pose_args(camera, attitude, mount)
    src, src_mask, gsd, gx_min, gy_max = _check_raster(ground)
    px, py = _finite_xy("position_xy", position_xy)
    height_m = _positive("height_m", height_m, "metres")
    interpolation = _check_interpolation(interpolation)
    m = _render_map(src.shape[0], src.shape[1], gsd, gx_min, gy_max, camera, px, py, height_m, attitude, mount)
    shape = (camera.height, camera.width)
    image_out = np.zeros(shape + src.shape[2:], dtype=src.dtype)
    if not m.valid.any():
        return image_out, np.zeros(shape, dtype=bool)

    r0, r1, c0, c1 = m.window
    crop = np.ascontiguousarray(src[r0:r1, c0:c1])
    crop_mask = src_mask[r0:r1, c0:c1]
    valid = m.valid.copy()
    out = _mip_remap(crop, m.map_x, m.map_y, valid, interpolation, cv2.BORDER_REPLICATE, m.level)
    if not crop_mask.all():
        mm = _mip_remap(crop_mask.astype(np.float32), m.map_x, m.map_y, valid, interpolation, cv2.BORDER_REPLICATE,
                        m.level)
        valid &= mm >= np.float32(0.999)
    out[~valid] = 0
    return out, valid
