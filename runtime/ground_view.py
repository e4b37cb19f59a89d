"""Camera frame -> north-up ground view centred on the vehicle's nadir point: what the encoder and the fine aligner see.

Conventions (docs/DESIGN.md)
----------------------------
* Views are RGB ``uint8[s, s, 3]``, north-up, square pixels of ``gsd`` metres, with the vehicle's nadir point (the
  ground point straight below the body origin) at the pixel-edge coordinate ``(s / 2, s / 2)``: the centre of the
  image. Pixel (u, v) centre is ``x = (u + 0.5 - s / 2) * gsd`` east and ``y = (s / 2 - v - 0.5) * gsd`` north of
  the nadir point.
* Flat ground (the plane z = 0 of the local frame); height above ground = ``NavSatFix.altitude -
  ground_elevation_m`` (:class:`HeightKeeper`).
* Attitude: ``calibration.geometry.Attitude`` (REP-103, radians, yaw 0 = east, counter-clockwise). Without an
  attitude the camera is taken as level (roll = pitch = 0) and one view is made per heading hypothesis (yaw).

Undistortion and the ground projection happen in one resampling (``calibration.view.rectify``: the camera model's
distortion, a mip-mapped ``cv2.remap``), so the pixels are interpolated once. A 640x480 frame to a 256 px context
view costs about 3 ms on one core; the centre crop to the encoder input is a view (no copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from calibration.camera import CameraModel
from calibration.errors import CalibrationError
from calibration.geometry import NADIR_MOUNT, Attitude, Mount
from calibration.view import ground_footprint, rectify

from .errors import OnboardError
from .events import GpsFix

__all__ = ["GroundView", "GroundViewError", "GroundViewer", "HeightError", "HeightKeeper"]


class GroundViewError(OnboardError):
    """A ground view that cannot be made: bad frame, bad height, no attitude and no heading hypotheses, bad sizes."""


class HeightError(OnboardError):
    """No usable height above ground (no GPS altitude yet, or a bad ground elevation / scale)."""


# ---------------------------------------------------------------------------------------------------- the view
@dataclass(frozen=True, eq=False)
class GroundView:
    """A north-up ground view centred on the vehicle's nadir point.

    Attributes:
        image: uint8[s, s, 3] RGB; 0 where ``mask`` is False.
        mask: bool[s, s], True where the camera sees the ground point of the pixel.
        gsd: metres per pixel.
        yaw_rad: the vehicle yaw (REP-103, ENU, radians) ASSUMED when making this view. With a wrong assumption the
            view is the true ground rotated about the nadir point by ``yaw_rad - true_yaw`` (counter-clockwise).
        height_m: height above ground used, metres.
    """

    image: np.ndarray
    mask: np.ndarray
    gsd: float
    yaw_rad: float
    height_m: float

    @property
    def size_px(self) -> int:
        """Side s of the (square) view in pixels."""
        return int(self.image.shape[0])

    @property
    def valid_fraction(self) -> float:
        """Fraction of the pixels that the camera sees (0..1)."""
        return float(np.count_nonzero(self.mask)) / max(1, self.mask.size)

    def crop(self, size_px: int) -> "GroundView":
        """The centre ``size_px x size_px`` of this view (e.g. the encoder input), still centred on the nadir point.

        The arrays are views into this one's (no copy). ``size_px`` must not exceed :attr:`size_px` and must have
        its parity (``size_px - s`` even), so the nadir point stays exactly at the centre.

        Raises:
            GroundViewError: ``size_px`` not a positive integer, larger than the view, or of the other parity.
        """
        s = self.size_px
        if isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer)) or size_px <= 0:
            raise GroundViewError(f"crop size_px must be a positive integer (pixels), got {size_px!r}")
        size_px = int(size_px)
        if size_px > s:
            raise GroundViewError(
                f"cannot crop {size_px} px out of a {s} px view; make the GroundViewer's context_px >= {size_px}"
            )
        if (s - size_px) % 2:
            raise GroundViewError(
                f"crop size_px {size_px} and the view's {s} px differ by an odd number, so the nadir point could not "
                f"stay at the centre; crop {size_px - 1} or {size_px + 1} px, or make context_px - size_px even"
            )
        o = (s - size_px) // 2
        return GroundView(
            image=self.image[o:o + size_px, o:o + size_px], mask=self.mask[o:o + size_px, o:o + size_px],
            gsd=self.gsd, yaw_rad=self.yaw_rad, height_m=self.height_m,
        )


# ---------------------------------------------------------------------------------------------------- the viewer
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise GroundViewError(f"{name} must be a positive integer (pixels), got {value!r}")
    return int(value)


def _check_height(height_m) -> float:
    try:
        h = float(height_m)
    except (TypeError, ValueError) as exc:
        raise GroundViewError(f"height_m must be a number of metres above ground, got {height_m!r}") from exc
    if not (math.isfinite(h) and h > 0.0):
        raise GroundViewError(
            f"height_m must be > 0 metres above ground, got {height_m!r}; it is NavSatFix.altitude minus the map's "
            "ground_elevation_m (see HeightKeeper) - check the map's ground elevation and the GPS altitude datum"
        )
    return h


class GroundViewer:
    """Makes :class:`GroundView` s of one camera at one resolution.

    Args:
        camera: intrinsics of the frames (``calibration.camera.CameraModel``; distortion is removed here).
        gsd: metres per pixel of the views (the encoder contract's ``ground_resolution_m``).
        size_px: side of the encoder input (``EncoderContract.input_width``, square); ``GroundView.crop(size_px)``.
        mount: camera extrinsics (default nadir).
        context_px: side of the larger views that :meth:`views` returns (for fine alignment), >= ``size_px``;
            default ``2 * size_px``. Per call it is clipped to what the camera can see: the diameter of the circle
            around the nadir point that holds the camera's ground footprint (so no yaw gives a bigger view), and
            never below ``size_px``. ``context - size_px`` is kept even so :meth:`GroundView.crop` is exact.

    Raises:
        GroundViewError: wrong types, non-positive sizes/gsd, ``context_px < size_px``.
    """

    def __init__(self, camera: CameraModel, gsd: float, size_px: int, *, mount: Mount = NADIR_MOUNT,
                 context_px: int | None = None) -> None:
        if not isinstance(camera, CameraModel):
            raise GroundViewError(f"camera must be a calibration.camera.CameraModel, got {type(camera).__name__}")
        if not isinstance(mount, Mount):
            raise GroundViewError(f"mount must be a calibration.geometry.Mount, got {type(mount).__name__}")
        try:
            g = float(gsd)
        except (TypeError, ValueError) as exc:
            raise GroundViewError(f"gsd must be a number of metres per pixel, got {gsd!r}") from exc
        if not (math.isfinite(g) and g > 0.0):
            raise GroundViewError(f"gsd must be > 0 metres per pixel, got {gsd!r}")
        self.camera = camera
        self.mount = mount
        self.gsd = g
        self.size_px = _positive_int("size_px", size_px)
        if context_px is None:
            context_px = 2 * self.size_px
        self.context_px = _positive_int("context_px", context_px)
        if self.context_px < self.size_px:
            raise GroundViewError(
                f"context_px ({self.context_px}) must be >= size_px ({self.size_px}): the encoder input is cropped "
                "out of the context view"
            )

    def context_size(self, height_m: float, attitude: Attitude | None = None) -> int:
        """Side in pixels of the views :meth:`views` makes at this height (and attitude; level when None)."""
        h = _check_height(height_m)
        att = Attitude() if attitude is None else attitude
        try:
            poly = ground_footprint(self.camera, att, h, self.mount, max_angle_deg=75.0)
        except CalibrationError as exc:
            raise GroundViewError(f"cannot make a ground view at height {h} m and attitude {att}: {exc}") from exc
        radius_px = float(np.max(np.hypot(poly[:, 0], poly[:, 1]))) / self.gsd
        side = max(self.size_px, min(self.context_px, int(math.ceil(2.0 * radius_px))))
        if (side - self.size_px) % 2:
            side = side + 1 if side < self.context_px else side - 1
        return max(side, self.size_px)

    def views(self, image: np.ndarray, *, height_m: float, attitude: Attitude | None = None,
              yaws: Sequence[float] | None = None) -> list[GroundView]:
        """Context-size ground views of one frame.

        Args:
            image: the frame as captured (distorted), RGB uint8[camera.height, camera.width, 3].
            height_m: height of the body origin above ground, metres (> 0).
            attitude: the vehicle attitude at exposure (body -> world ENU). Given: one view (``yaws`` ignored).
            yaws: heading hypotheses (REP-103 yaw, radians) used when ``attitude`` is None: one view per yaw with a
                level camera (roll = pitch = 0), in the same order.
        Returns:
            list of :class:`GroundView` (side :meth:`context_size`, >= ``size_px``); ``view.crop(self.size_px)`` is
            the encoder input.
        Raises:
            GroundViewError: bad frame (type, dtype, shape other than the camera's), height <= 0, neither an
            attitude nor yaws, empty or non-finite yaws, or a camera that sees no ground.
        """
        self._check_frame(image)
        h = _check_height(height_m)
        attitudes = self._attitudes(attitude, yaws)
        side = self.context_size(h, attitudes[0])
        return self._make_views(image, attitudes, h, side)

    def _check_frame(self, image) -> None:
        """GroundViewError unless ``image`` is the camera's RGB uint8[height, width, 3] frame."""
        if not isinstance(image, np.ndarray):
            raise GroundViewError(f"image must be a numpy array uint8[h, w, 3] (RGB), got {type(image).__name__}")
        want = (self.camera.height, self.camera.width, 3)
        if image.dtype != np.uint8 or image.shape != want:
            raise GroundViewError(
                f"image must be RGB uint8{list(want)} (the camera model's {self.camera.width}x{self.camera.height}), "
                f"got {image.dtype}{list(image.shape)}; for a resized stream use camera.scaled(...)"
            )

    @staticmethod
    def _attitudes(attitude: Attitude | None, yaws) -> list[Attitude]:
        """The attitudes to view the frame at: ``[attitude]``, or a level camera at each of ``yaws``."""
        if attitude is not None:
            if not isinstance(attitude, Attitude):
                raise GroundViewError(
                    f"attitude must be a calibration.geometry.Attitude or None, got {type(attitude).__name__}"
                )
            return [attitude]
        if yaws is None:
            raise GroundViewError(
                "views() needs the attitude or heading hypotheses: pass attitude=Attitude(...) from the IMU, or "
                "yaws=[...] (radians, REP-103) to try a level camera at each yaw"
            )
        try:
            ys = [float(y) for y in np.asarray(yaws, dtype=float).ravel()]
        except (TypeError, ValueError) as exc:
            raise GroundViewError(f"yaws must be a sequence of numbers (radians), got {yaws!r}") from exc
        if not ys:
            raise GroundViewError("yaws is empty: give at least one heading hypothesis (radians) or an attitude")
        if not all(math.isfinite(y) for y in ys):
            raise GroundViewError(f"yaws must be finite numbers (radians), got {ys}")
        return [Attitude(0.0, 0.0, y) for y in ys]

    def _make_views(self, image: np.ndarray, attitudes: list[Attitude], h: float, side: int) -> list[GroundView]:
        """One ``side`` x ``side`` view per attitude (``calibration.view.rectify``: a mip-mapped ``cv2.remap``)."""
        out = []
        for att in attitudes:
            try:
                v = rectify(image, self.camera, att, h, self.gsd, mount=self.mount, size_px=(side, side))
            except CalibrationError as exc:
                raise GroundViewError(f"cannot make a ground view at height {h} m and attitude {att}: {exc}") from exc
            out.append(GroundView(image=v.image, mask=v.mask, gsd=self.gsd, yaw_rad=float(att.yaw), height_m=h))
        return out


# ---------------------------------------------------------------------------------------------------- height
class HeightKeeper:
    """Height above ground for the ground views: ``NavSatFix.altitude - ground_elevation_m`` (flat-ground map).

    GPS altitude is noisy (vertical sigma of several metres, and the views scale with the height: 10 % off is
    enough to lose the fine alignment), so fixes go through an alpha-beta (level + climb rate) filter with gains
    ``alpha`` and ``beta``: at 5 fixes/s the noise drops about 5x, and a steady climb is followed without lag. The
    last filtered height is held through a GPS outage (fixes without a fix, non-finite altitudes) and reported with
    its age. An optional image-based correction (:meth:`observe_scale`) learns an additive altitude bias from the
    scale at which the views match the map.

    Args:
        ground_elevation_m: the map's ground elevation in the GPS altitude datum (``MapPackage.ground_elevation_m``,
            the manifest value).
        min_height_m: fixes giving a height below this are rejected (wrong datum or ground elevation).
        alpha, beta: gains of the altitude filter (1, 0: no smoothing, the last fix as is).
        max_gap_s: after a gap longer than this (seconds) the filter restarts from the next fix.
    """

    def __init__(self, ground_elevation_m: float = 0.0, *, min_height_m: float = 1.0, alpha: float = 0.08,
                 beta: float = 0.004, max_gap_s: float = 5.0) -> None:
        try:
            elev = float(ground_elevation_m)
            hmin = float(min_height_m)
        except (TypeError, ValueError) as exc:
            raise HeightError(
                f"ground_elevation_m and min_height_m must be numbers of metres, got {ground_elevation_m!r}, "
                f"{min_height_m!r}"
            ) from exc
        if not math.isfinite(elev):
            raise HeightError(f"ground_elevation_m must be a finite number of metres, got {ground_elevation_m!r}")
        if not (math.isfinite(hmin) and hmin > 0.0):
            raise HeightError(f"min_height_m must be > 0 metres, got {min_height_m!r}")
        for name, v in (("alpha", alpha), ("beta", beta)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
                raise HeightError(f"{name} must be a gain in [0, 1], got {v!r}")
        if alpha <= 0.0:
            raise HeightError(f"alpha must be > 0 (1 = no smoothing), got {alpha!r}")
        self.ground_elevation_m = elev
        self.min_height_m = hmin
        self.alpha, self.beta, self.max_gap_s = float(alpha), float(beta), float(max_gap_s)
        self._rate = 0.0
        self.bias_m = 0.0  # learnt by observe_scale: added to the GPS height
        self._alt: float | None = None
        self._t_ns: int | None = None
        self.rejected = 0  # fixes that were not used (no fix, non-finite, below min_height_m)
        self.last_rejection = ""

    def update(self, fix: GpsFix) -> bool:
        """Take one GPS fix; returns True when it updated the height, False when it was rejected (the last height
        is held; :attr:`last_rejection` says why)."""
        if not isinstance(fix, GpsFix):
            raise HeightError(f"update() takes a runtime.events.GpsFix, got {type(fix).__name__}")
        if not fix.has_fix:
            self.rejected += 1
            self.last_rejection = f"no GPS fix at t_ns={fix.t_ns} (status {fix.status})"
            return False
        h = fix.alt - self.ground_elevation_m + self.bias_m
        if h < self.min_height_m:
            self.rejected += 1
            self.last_rejection = (
                f"GPS altitude {fix.alt:.1f} m at t_ns={fix.t_ns} is {h:.1f} m above the map ground "
                f"({self.ground_elevation_m:.1f} m), below min_height_m {self.min_height_m} m; check the map's "
                "ground_elevation_m and the altitude datum (NavSatFix.altitude is above the WGS84 ellipsoid)"
            )
            return False
        if self._alt is None or self._t_ns is None or not (0 < (fix.t_ns - self._t_ns) * 1e-9 <= self.max_gap_s):
            self._alt, self._rate = float(fix.alt), 0.0
        else:
            dt = (fix.t_ns - self._t_ns) * 1e-9
            pred = self._alt + self._rate * dt
            r = float(fix.alt) - pred
            self._alt = pred + self.alpha * r
            self._rate += self.beta * r / dt
        self._t_ns = fix.t_ns
        return True

    @property
    def ready(self) -> bool:
        """True once a fix has given a height."""
        return self._alt is not None

    @property
    def height_m(self) -> float:
        """Current height above ground, metres (the last good fix, held through outages, plus the learnt bias).

        Raises:
            HeightError: no fix has given a height yet.
        """
        if self._alt is None:
            why = f" (last rejection: {self.last_rejection})" if self.last_rejection else ""
            raise HeightError(f"no height above ground yet: no usable GPS fix has arrived{why}")
        return max(self.min_height_m, self._alt - self.ground_elevation_m + self.bias_m)

    def age_s(self, t_ns: int) -> float:
        """Seconds since the fix behind :attr:`height_m` (how long it has been held); inf before the first."""
        return math.inf if self._t_ns is None else (int(t_ns) - self._t_ns) * 1e-9

    def observe_scale(self, scale: float, *, gain: float = 0.2) -> float:
        """Image-based scale correction hook: the views matched the map best when magnified by ``scale`` (> 1: the
        ground looked smaller than assumed, i.e. the true height is ``scale`` times the assumed one). Moves the
        altitude bias by ``gain`` times the implied height error; returns the new :attr:`height_m`.

        Raises:
            HeightError: no height yet, ``scale`` not in (0.5, 2), ``gain`` not in (0, 1].
        """
        try:
            s, g = float(scale), float(gain)
        except (TypeError, ValueError) as exc:
            raise HeightError(f"scale and gain must be numbers, got {scale!r}, {gain!r}") from exc
        if not (math.isfinite(s) and 0.5 < s < 2.0):
            raise HeightError(f"scale must be in (0.5, 2) (a relative height correction), got {scale!r}")
        if not (math.isfinite(g) and 0.0 < g <= 1.0):
            raise HeightError(f"gain must be in (0, 1], got {gain!r}")
        h = self.height_m
        self.bias_m += g * (s - 1.0) * h
        return self.height_m
