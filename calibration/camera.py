"""Camera intrinsics with OpenCV's distortion models, implemented in numpy.

Conventions
-----------
* Camera frame (OpenCV): x right, y down, z along the optical axis, metres.
* Pixel coordinates (u, v): u to the right, v down; (0, 0) is the *centre* of the top-left pixel (OpenCV).
* ``pinhole``: radial-tangential model of ``cv2.calibrateCamera`` with 4, 5, 8 or 12 coefficients
  ``(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4]]])``.
* ``fisheye``: equidistant model of ``cv2.fisheye`` with 4 coefficients ``(k1, k2, k3, k4)``.

Projection and back-projection are vectorised numpy and match OpenCV's ``projectPoints`` (tested for parity),
so callers never depend on where OpenCV keeps its constants between 4.x and 5.x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .errors import CameraModelError

PINHOLE = "pinhole"
FISHEYE = "fisheye"
MODELS = (PINHOLE, FISHEYE)
_PINHOLE_COUNTS = (0, 4, 5, 8, 12)
_FISHEYE_COUNTS = (0, 4)


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera at one image size.

    ``distortion`` holds OpenCV's coefficients in OpenCV's order for ``model``; an empty tuple means none.
    ``skew`` is the K[0, 1] entry in pixels (0 for almost every real camera). It is honoured as the camera matrix
    defines it; note that ``cv2.projectPoints`` ignores K[0, 1] for the pinhole model (OpenCV never estimates skew),
    so parity with OpenCV holds for skew = 0, and for fisheye with OpenCV's ``alpha = skew / fx``.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    model: str = PINHOLE
    skew: float = 0.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            try:
                ok = not isinstance(value, bool) and int(value) == value and value > 0
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise CameraModelError(f"camera {name} must be a positive integer (pixels), got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("fx", "fy", "cx", "cy", "skew"):
            raw = getattr(self, name)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise CameraModelError(f"camera {name} must be finite (a number of pixels), got {raw!r}")
            object.__setattr__(self, name, value)
        if self.fx <= 0 or self.fy <= 0:
            raise CameraModelError(
                f"focal lengths must be positive pixels, got fx={self.fx}, fy={self.fy}; "
                "check that the camera matrix is K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]"
            )
        if self.model not in MODELS:
            raise CameraModelError(f"camera model must be one of {MODELS}, got {self.model!r}")
        try:
            dist = tuple(float(c) for c in np.asarray(self.distortion, dtype=float).ravel())
        except (TypeError, ValueError):
            dist = (math.nan,)
        if not all(math.isfinite(c) for c in dist):
            raise CameraModelError(f"distortion coefficients must be finite, got {dist}")
        counts = _PINHOLE_COUNTS if self.model == PINHOLE else _FISHEYE_COUNTS
        if len(dist) not in counts:
            raise CameraModelError(
                f"a {self.model} camera takes {' or '.join(map(str, counts[1:]))} distortion coefficients, "
                f"got {len(dist)}: {dist}"
                + ("; tilted-sensor models (14 coefficients) are not supported" if len(dist) == 14 else "")
            )
        object.__setattr__(self, "distortion", dist)

    # ------------------------------------------------------------------ constructors and derived cameras
    @classmethod
    def from_matrix(cls, width: int, height: int, K, distortion=(), model: str = PINHOLE) -> "CameraModel":
        """Build from a 3x3 camera matrix ``K`` and OpenCV distortion coefficients."""
        K = np.asarray(K, dtype=float)
        if K.shape != (3, 3):
            raise CameraModelError(f"camera matrix must be 3x3, got shape {K.shape}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or abs(K[1, 0]) > 1e-12:
            raise CameraModelError(f"camera matrix must look like [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        return cls(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], tuple(np.ravel(distortion)), model, K[0, 1])

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float, distortion=(), model: str = PINHOLE) -> "CameraModel":
        """A camera with square pixels, principal point at the image centre and horizontal FOV ``hfov_deg``."""
        if not 0.0 < hfov_deg < 180.0:
            raise CameraModelError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
        if model == FISHEYE:
            f = (width / 2.0) / math.radians(hfov_deg / 2.0)
        else:
            f = (width / 2.0) / math.tan(math.radians(hfov_deg / 2.0))
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, tuple(distortion), model)

    def scaled(self, sx: float, sy: float | None = None) -> "CameraModel":
        """The same lens for an image resized by ``sx`` (and ``sy``) — e.g. 0.5 for half resolution."""
        sy = sx if sy is None else sy
        width, height = int(round(self.width * sx)), int(round(self.height * sy))
        return replace(
            self,
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            skew=self.skew * sx,
        )

    def without_distortion(self) -> "CameraModel":
        """The same intrinsics with no distortion (the pinhole camera of an undistorted image)."""
        return replace(self, distortion=(), model=PINHOLE)

    # ------------------------------------------------------------------ matrices
    @property
    def K(self) -> np.ndarray:
        """3x3 camera matrix (float64)."""
        return np.array([[self.fx, self.skew, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def D(self) -> np.ndarray:
        """Distortion coefficients as OpenCV wants them: 5 (or more) for pinhole, 4 for fisheye (float64)."""
        if self.model == FISHEYE:
            return np.array(self.distortion or (0.0,) * 4, dtype=float)
        return np.array(self.distortion or (0.0,) * 5, dtype=float)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as OpenCV takes image sizes."""
        return (self.width, self.height)

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view through the principal point, degrees (distortion included)."""
        rays, ok = self.unproject(np.array([[-0.5, self.cy], [self.width - 0.5, self.cy]]))
        if not ok.all():
            return float("nan")
        return math.degrees(math.acos(np.clip(rays[0] @ rays[1], -1.0, 1.0)))

    @cached_property
    def _coeffs(self) -> np.ndarray:
        out = np.zeros(12 if self.model == PINHOLE else 4)
        out[: len(self.distortion)] = self.distortion
        return out

    @cached_property
    def max_valid_radius(self) -> float:
        """Largest undistorted radius (normalised tan(theta) for pinhole, theta in radians for fisheye) up to which
        the distortion is monotonic. Beyond it the polynomial folds back and a far-off point would land inside the
        image, so such points are reported invalid."""
        if self.model == FISHEYE:
            theta = np.linspace(0.0, math.pi / 2, 20001)
        else:
            theta = np.linspace(0.0, 20.0, 40001)  # tan(87 deg) ~ 20
        rho = self._radial_profile(theta)
        bad = np.nonzero(np.diff(rho) <= 0.0)[0]
        if bad.size:
            return float(theta[bad[0]])
        return float(theta[-1]) if self.model == FISHEYE else math.inf

    def _radial_profile(self, r: np.ndarray) -> np.ndarray:
        c = self._coeffs
        if self.model == FISHEYE:
            t2 = r * r
            return r * (1 + t2 * (c[0] + t2 * (c[1] + t2 * (c[2] + t2 * c[3]))))
        r2 = r * r
        num = 1 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]))
        den = 1 + r2 * (c[5] + r2 * (c[6] + r2 * c[7]))
        return r * num / den

    # ------------------------------------------------------------------ normalised-plane distortion
    def distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """Pinhole only: undistorted normalised coordinates [n, 2] -> distorted normalised coordinates [n, 2]."""
        if self.model != PINHOLE:
            raise CameraModelError("distort_normalized applies to the pinhole model; use project() for fisheye")
        c = self._coeffs
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        r4 = r2 * r2
        radial = (1 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]))) / (1 + r2 * (c[5] + r2 * (c[6] + r2 * c[7])))
        xd = x * radial + 2 * c[2] * x * y + c[3] * (r2 + 2 * x * x) + c[8] * r2 + c[9] * r4
        yd = y * radial + c[2] * (r2 + 2 * y * y) + 2 * c[3] * x * y + c[10] * r2 + c[11] * r4
        return np.stack([xd, yd], axis=1)

    def _undistort_normalized(self, xyd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Invert :meth:`distort_normalized` by damped Newton iteration. Returns (xy [n, 2], converged [n])."""
        if not any(self.distortion):
            return xyd.copy(), np.ones(len(xyd), dtype=bool)
        xy = xyd.copy()
        rmax = self.max_valid_radius
        h = 1e-7
        for _ in range(40):
            f = self.distort_normalized(xy) - xyd
            fx = (self.distort_normalized(xy + [h, 0.0]) - xyd - f) / h
            fy = (self.distort_normalized(xy + [0.0, h]) - xyd - f) / h
            det = fx[:, 0] * fy[:, 1] - fy[:, 0] * fx[:, 1]
            det = np.where(np.abs(det) < 1e-12, 1e-12, det)
            dx = (fy[:, 1] * f[:, 0] - fy[:, 0] * f[:, 1]) / det
            dy = (-fx[:, 1] * f[:, 0] + fx[:, 0] * f[:, 1]) / det
            step = np.stack([dx, dy], axis=1)
            norm = np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.minimum(1.0, 0.5 / np.maximum(norm, 1e-300))  # damp huge steps
            xy -= step
            r = np.linalg.norm(xy, axis=1, keepdims=True)
            if np.isfinite(rmax):
                xy *= np.minimum(1.0, 0.9999 * rmax / np.maximum(r, 1e-300))
            if float(np.max(norm, initial=0.0)) < 1e-12:
                break
        resid = np.linalg.norm(self.distort_normalized(xy) - xyd, axis=1)
        ok = (resid < 1e-8) & (np.linalg.norm(xy, axis=1) < rmax)
        return xy, ok

    # ------------------------------------------------------------------ projection
    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points.

        Args:
            points_cam: float[n, 3], metres in the camera frame (any positive scale works).
        Returns:
            uv: float64[n, 2] pixel coordinates (meaningless where not valid);
            valid: bool[n], True where the point is in front of the camera and inside the distortion's
            monotonic range. Whether uv falls inside the image is the caller's test.
        """
        p = np.asarray(points_cam, dtype=float).reshape(-1, 3)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        front = z > 1e-12
        zs = np.where(front, z, 1.0)
        a, b = x / zs, y / zs
        if self.model == FISHEYE:
            r = np.hypot(x, y)
            theta = np.arctan2(r, z)
            theta_d = self._radial_profile(theta)
            scale = np.where(r > 1e-15, theta_d / np.maximum(r, 1e-300), 1.0 / zs)
            xd, yd = x * scale, y * scale
            valid = front & (theta < self.max_valid_radius)
        else:
            xyd = self.distort_normalized(np.stack([a, b], axis=1))
            xd, yd = xyd[:, 0], xyd[:, 1]
            valid = front & (np.hypot(a, b) < self.max_valid_radius)
        u = self.fx * xd + self.skew * yd + self.cx
        v = self.fy * yd + self.cy
        return np.stack([u, v], axis=1), valid

    def unproject(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Back-project pixels to unit rays in the camera frame.

        Args:
            uv: float[n, 2] pixel coordinates.
        Returns:
            rays: float64[n, 3] unit vectors (z > 0 where valid); valid: bool[n] where the inversion converged
            inside the distortion's monotonic range.
        """
        uv = np.asarray(uv, dtype=float).reshape(-1, 2)
        yd = (uv[:, 1] - self.cy) / self.fy
        xd = (uv[:, 0] - self.cx - self.skew * yd) / self.fx
        if self.model == FISHEYE:
            theta_d = np.hypot(xd, yd)
            theta = theta_d.copy()
            for _ in range(30):
                f = self._radial_profile(theta) - theta_d
                df = (self._radial_profile(theta + 1e-7) - self._radial_profile(theta)) / 1e-7
                theta = np.clip(theta - f / np.where(np.abs(df) < 1e-12, 1e-12, df), 0.0, self.max_valid_radius)
            ok = (np.abs(self._radial_profile(theta) - theta_d) < 1e-8) & (theta < self.max_valid_radius)
            s = np.where(theta_d > 1e-15, np.sin(theta) / np.maximum(theta_d, 1e-300), 1.0)
            rays = np.stack([xd * s, yd * s, np.cos(theta)], axis=1)
        else:
            xy, ok = self._undistort_normalized(np.stack([xd, yd], axis=1))
            rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        return rays, ok

    def pixel_grid(self) -> np.ndarray:
        """float64[height * width, 2] of every pixel centre (u, v), row-major."""
        u, v = np.meshgrid(np.arange(self.width, dtype=float), np.arange(self.height, dtype=float))
        return np.stack([u.ravel(), v.ravel()], axis=1)
