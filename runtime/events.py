"""Typed, immutable sensor events: what the bag reader yields and the onboard tracker consumes.

Conventions (docs/DESIGN.md)
----------------------------
* ``t_ns``: integer nanoseconds (the message header stamp; the bag's record time where the stamp is zero).
* Positions: WGS84 latitude/longitude in degrees, altitude in metres (the same datum as ``NavSatFix.altitude``;
  height above ground = ``alt - ground_elevation_m``).
* Covariances: metres squared in the local ENU frame (x east, y north, z up), 3x3, as in
  ``NavSatFix.position_covariance`` (row-major there).
* Velocities: metres per second in the local ENU frame (``GpsFix.velocity_enu``: east, north[, up]).
* Quaternions: ``(x, y, z, w)`` (ROS order). ``ImuSample.orientation`` and ``TruthPose.attitude`` are the body (FLU)
  attitude in world ENU, i.e. ``R_body2world`` (REP-103/105).
* Images: RGB ``uint8[h, w, 3]``. A :class:`Frame` built from JPEG/PNG bytes decodes them on first access of
  :attr:`Frame.image` and keeps the result.

Nothing here touches a file or a bag; :mod:`runtime.bags` converts messages into these events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from calibration.camera import CameraModel
from calibration.rotations import matrix_to_quaternion, quaternion_to_matrix

from .errors import BagError

# NavSatStatus.status values (sensor_msgs/NavSatStatus).
STATUS_NO_FIX = -1
STATUS_FIX = 0
STATUS_SBAS_FIX = 1
STATUS_GBAS_FIX = 2

# NavSatFix.position_covariance_type values.
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_APPROXIMATED = 1
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2
COVARIANCE_TYPE_KNOWN = 3

_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _int_ns(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise BagError(f"{what} must be an integer number of nanoseconds, got {value!r} ({type(value).__name__})")
    return int(value)


def _vec3(value, what: str) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise BagError(f"{what} must be 3 finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _quat(value, what: str) -> tuple[float, float, float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape != (4,) or not np.all(np.isfinite(arr)):
        raise BagError(f"{what} must be a quaternion (x, y, z, w) of 4 finite numbers, got {value!r}")
    norm = float(np.linalg.norm(arr))
    if not 0.9 < norm < 1.1:
        raise BagError(f"{what} must be a unit quaternion (x, y, z, w), got norm {norm:.4f}: {arr.tolist()}")
    arr = arr / norm
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


def decode_image_bytes(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes -> RGB ``uint8[h, w, 3]`` (grey images are replicated to three channels).

    Raises:
        BagError: the bytes are not an image OpenCV can decode.
    """
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise BagError("compressed image is empty (0 bytes)")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:  # some corrupt streams raise instead of returning None
        bgr = None
    if bgr is None:
        head = bytes(data[:8])
        raise BagError(
            f"cannot decode a {len(data)}-byte compressed image (starts with {head!r}); expected JPEG or PNG data"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_format(data: bytes) -> str:
    """``'jpeg'``, ``'png'`` or ``''`` from the magic bytes of ``data``."""
    if data[:2] == _JPEG_MAGIC:
        return "jpeg"
    if data[:8] == _PNG_MAGIC:
        return "png"
    return ""


class _LazyImage:
    """Data descriptor behind :attr:`Frame.image`: stores an array or encoded bytes, returns the decoded array.

    A descriptor-typed dataclass field (Python >= 3.10): the dataclass ``__init__`` assigns through ``__set__``, and
    the class access raises AttributeError so the field has no default.
    """

    def __set_name__(self, owner, name: str) -> None:
        self._src = "_" + name + "_src"
        self._cache = "_" + name + "_rgb"

    def __get__(self, obj, objtype=None):
        if obj is None:
            raise AttributeError("image")  # no default for the dataclass field
        cached = obj.__dict__.get(self._cache)
        if cached is None:
            src = obj.__dict__[self._src]
            cached = decode_image_bytes(src)
            cached.setflags(write=False)
            obj.__dict__[self._cache] = cached
        return cached

    def __set__(self, obj, value) -> None:
        if self._src in obj.__dict__:
            raise AttributeError("Frame is immutable")  # frozen dataclass semantics
        if isinstance(value, (bytes, bytearray, memoryview)):
            obj.__dict__[self._src] = bytes(value)
            return
        arr = np.asarray(value)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise BagError(
                f"a frame image must be RGB uint8[h, w, 3] or JPEG/PNG bytes, got {arr.dtype}{list(arr.shape)}"
            )
        if arr.flags.writeable:
            arr = arr.copy()
            arr.setflags(write=False)
        obj.__dict__[self._src] = None
        obj.__dict__[self._cache] = arr


#: an IMU quaternion whose norm is within this of 1 is normalised by the input checks (the bag reader, the
#: event sanitizer); one farther off is no rotation
QUATERNION_NORM_TOL = 0.1


@dataclass(frozen=True, eq=False, repr=False)
class Frame:
    """One camera frame.

    Attributes:
        t_ns: capture time, integer nanoseconds.
        image: RGB ``uint8[h, w, 3]`` (read-only). Pass either such an array or JPEG/PNG bytes; bytes are decoded
            on first access and the result is kept.
        camera: intrinsics of this image (from the matching ``CameraInfo``), or None when unknown.
        topic: the source topic ('' when not from a bag).
        frame_id: the message's ``header.frame_id``.
    """

    t_ns: int
    image: Union[np.ndarray, bytes] = _LazyImage()
    camera: CameraModel | None = None
    topic: str = ""
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "Frame.t_ns"))
        if self.camera is not None and not isinstance(self.camera, CameraModel):
            raise BagError(f"Frame.camera must be a CameraModel or None, got {type(self.camera).__name__}")

    @property
    def encoded(self) -> bytes | None:
        """The JPEG/PNG bytes the frame was built from, or None when it was built from an array."""
        return self.__dict__["_image_src"]

    @property
    def is_decoded(self) -> bool:
        """Whether :attr:`image` is available without decoding."""
        return self.__dict__.get("_image_rgb") is not None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels (decodes the image if needed)."""
        return tuple(self.image.shape[:2])  # type: ignore[return-value]

    def with_camera(self, camera: CameraModel | None) -> "Frame":
        """The same frame with other intrinsics (keeps encoded bytes undecoded)."""
        src = self.encoded if self.encoded is not None else self.image
        return Frame(self.t_ns, src, camera, self.topic, self.frame_id)

    def __repr__(self) -> str:
        what = f"{len(self.encoded)} encoded bytes" if self.encoded is not None else f"image{list(self.image.shape)}"
        cam = f"{self.camera.width}x{self.camera.height}" if self.camera is not None else "None"
        return f"Frame(t_ns={self.t_ns}, {what}, camera={cam}, topic={self.topic!r})"


def _cov3(value, what: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        sigma = float(arr)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise BagError(f"{what} as a sigma must be a finite number of metres >= 0, got {value!r}")
        arr = np.eye(3) * sigma**2
    elif arr.size == 9:
        arr = arr.reshape(3, 3).copy()
    else:
        raise BagError(f"{what} must be a 3x3 ENU covariance (m^2), 9 numbers row-major, or a sigma (m), got {value!r}")
    if not np.all(np.isfinite(arr)) or np.any(np.diag(arr) < 0):
        raise BagError(f"{what} must be finite with a non-negative diagonal (m^2), got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


def _velocity(value, what: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.array(value, dtype=float).ravel()
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape not in ((2,), (3,)) or not np.all(np.isfinite(arr)):
        raise BagError(
            f"{what} must be 2 (east, north) or 3 (east, north, up) finite numbers in m/s, or None when unknown; "
            f"got {value!r}"
        )
    arr.setflags(write=False)
    return arr


def _velocity_sigma(value, what: str) -> float | None:
    if value is None:
        return None
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not (math.isfinite(float(value)) and float(value) > 0):
        raise BagError(f"{what} must be a finite number of m/s > 0, or None when unknown; got {value!r}")
    return float(value)


@dataclass(frozen=True, eq=False)
class GpsFix:
    """One GNSS fix (``sensor_msgs/NavSatFix``).

    Attributes:
        t_ns: fix time, integer nanoseconds.
        lat, lon: WGS84 degrees. alt: metres (NavSatFix.altitude).
        cov_enu: float64[3, 3] covariance in metres squared, ENU (east, north, up), or None when the receiver gave
            none (``COVARIANCE_TYPE_UNKNOWN``). A number passed here is taken as an isotropic sigma in metres.
        status: NavSatStatus.status (-1 no fix, 0 fix, 1 SBAS, 2 GBAS).
        topic: the source topic. covariance_type: NavSatFix.position_covariance_type. frame_id: header.frame_id.
        velocity_enu: ground velocity of the same epoch, read-only float64[2] (east, north) or float64[3] (east,
            north, up) in m/s, or None when the receiver gave none (NMEA RMC speed/course, a bag's
            ``TwistWithCovarianceStamped``/``TwistStamped`` velocity topic).
        velocity_sigma_mps: 1-sigma of each horizontal velocity component, m/s (> 0), or None when unknown (the
            consumer then uses its own default).
    """

    t_ns: int
    lat: float
    lon: float
    alt: float
    cov_enu: np.ndarray | None = None
    status: int = STATUS_FIX
    topic: str = ""
    covariance_type: int = COVARIANCE_TYPE_DIAGONAL_KNOWN
    frame_id: str = ""
    velocity_enu: np.ndarray | None = None
    velocity_sigma_mps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "GpsFix.t_ns"))
        object.__setattr__(self, "velocity_enu", _velocity(self.velocity_enu, "GpsFix.velocity_enu"))
        object.__setattr__(self, "velocity_sigma_mps",
                           _velocity_sigma(self.velocity_sigma_mps, "GpsFix.velocity_sigma_mps"))
        for name in ("lat", "lon", "alt"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "cov_enu", _cov3(self.cov_enu, "GpsFix.cov_enu"))
        if self.cov_enu is None:
            object.__setattr__(self, "covariance_type", COVARIANCE_TYPE_UNKNOWN)
        object.__setattr__(self, "status", int(self.status))
        object.__setattr__(self, "covariance_type", int(self.covariance_type))

    @property
    def has_fix(self) -> bool:
        """True unless the receiver reported STATUS_NO_FIX or the position is not finite."""
        return self.status >= STATUS_FIX and all(map(math.isfinite, (self.lat, self.lon, self.alt)))

    @property
    def sigma_h(self) -> float | None:
        """Horizontal 1-sigma per axis in metres, sqrt of the mean of the east and north variances (None if unknown)."""
        if self.cov_enu is None:
            return None
        return math.sqrt(0.5 * (self.cov_enu[0, 0] + self.cov_enu[1, 1]))

    @property
    def sigma_v(self) -> float | None:
        """Vertical 1-sigma in metres (None if unknown)."""
        return None if self.cov_enu is None else math.sqrt(self.cov_enu[2, 2])

    @property
    def velocity_xy(self) -> tuple[float, float] | None:
        """(east, north) ground velocity in m/s, or None when the fix carries none."""
        v = self.velocity_enu
        return None if v is None else (float(v[0]), float(v[1]))

    def with_velocity(self, velocity_enu, velocity_sigma_mps: float | None = None) -> "GpsFix":
        """The same fix with another velocity (float[2] or float[3] m/s ENU, or None) and its sigma (m/s or None)."""
        return GpsFix(self.t_ns, self.lat, self.lon, self.alt, self.cov_enu, self.status, self.topic,
                      self.covariance_type, self.frame_id, velocity_enu, velocity_sigma_mps)


@dataclass(frozen=True, eq=False)
class ImuSample:
    """One IMU sample (``sensor_msgs/Imu``).

    Attributes:
        t_ns: sample time, integer nanoseconds.
        orientation: (x, y, z, w) of ``R_body2world`` (body FLU in world ENU), or None when the IMU gives none
            (``orientation_covariance[0] == -1``).
        angular_velocity: (x, y, z) rad/s in the body frame.
        linear_acceleration: (x, y, z) m/s^2 in the body frame, specific force (includes gravity: +9.81 on z at
            rest, level).
        topic, frame_id: source topic and header.frame_id.
        tilt_sigma_rad: 1-sigma of the orientation's roll and pitch, radians, when the source states it (a photo
            whose tilt came from its images); None: the loop's ``attitude_sigma_deg``.
    """

    t_ns: int
    orientation: tuple[float, float, float, float] | None
    angular_velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    linear_acceleration: tuple[float, float, float] = (0.0, 0.0, 0.0)
    topic: str = ""
    frame_id: str = ""
    tilt_sigma_rad: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "ImuSample.t_ns"))
        if self.orientation is not None:
            object.__setattr__(self, "orientation", _quat(self.orientation, "ImuSample.orientation"))
        object.__setattr__(self, "angular_velocity", _vec3(self.angular_velocity, "ImuSample.angular_velocity"))
        object.__setattr__(
            self, "linear_acceleration", _vec3(self.linear_acceleration, "ImuSample.linear_acceleration")
        )
        if self.tilt_sigma_rad is not None:
            v = self.tilt_sigma_rad
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v < math.pi / 2
            if not ok:
                raise BagError(f"ImuSample.tilt_sigma_rad must be a number in [0, pi/2) radians or None, got {v!r}")
            object.__setattr__(self, "tilt_sigma_rad", float(v))

    @property
    def R_body2world(self) -> np.ndarray | None:
        """float64[3, 3] rotation body FLU -> world ENU from :attr:`orientation`, or None."""
        return None if self.orientation is None else quaternion_to_matrix(self.orientation)


@dataclass(frozen=True, eq=False)
class CameraInfoEvent:
    """Camera intrinsics as published (``sensor_msgs/CameraInfo``).

    Attributes:
        t_ns: message time, integer nanoseconds. camera: the intrinsics. topic, frame_id: source.
    """

    t_ns: int
    camera: CameraModel
    topic: str = ""
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "CameraInfoEvent.t_ns"))
        if not isinstance(self.camera, CameraModel):
            raise BagError(f"CameraInfoEvent.camera must be a CameraModel, got {type(self.camera).__name__}")


@dataclass(frozen=True, eq=False)
class TruthPose:
    """Ground-truth pose (simulated flights: ``/ground_truth/fix`` + ``/ground_truth/pose``).

    Attributes:
        t_ns: integer nanoseconds.
        lat, lon: WGS84 degrees; alt: metres (same datum as NavSatFix.altitude). NaN when the bag has no truth fix
            and the pose frame's origin is unknown.
        x, y, z: metres in the local ENU frame named by ``frame_id`` (see :mod:`runtime.sim`, whose frame is a
            transverse Mercator centred on the first truth fix projected to the ground; z = height above ground).
        attitude: (x, y, z, w) of ``R_body2world`` (body FLU in world ENU), or None when only a fix is known.
        topic, frame_id: source topic(s) and the pose's header.frame_id.
    """

    t_ns: int
    lat: float
    lon: float
    alt: float
    x: float = math.nan
    y: float = math.nan
    z: float = math.nan
    attitude: tuple[float, float, float, float] | None = None
    topic: str = ""
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "TruthPose.t_ns"))
        for name in ("lat", "lon", "alt", "x", "y", "z"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.attitude is not None:
            object.__setattr__(self, "attitude", _quat(self.attitude, "TruthPose.attitude"))

    @property
    def position(self) -> np.ndarray:
        """float64[3] (x, y, z) metres in the pose's local ENU frame."""
        return np.array([self.x, self.y, self.z])

    @property
    def R_body2world(self) -> np.ndarray | None:
        """float64[3, 3] rotation body FLU -> world ENU, or None."""
        return None if self.attitude is None else quaternion_to_matrix(self.attitude)


@dataclass(frozen=True, eq=False)
class GroundMotion:
    """How far the vehicle moved over the ground between two camera times, measured from the images (e.g. the
    homography of two overlapping photos of flat ground: :func:`runtime.mapping.photo_motion.pair_motions`).

    The displacement is measured in the earlier camera's axes and turned into the world with that camera's heading,
    so its error has two parts: ``sigma_m`` per axis (height, registration, tilt), and a rotation of the whole
    vector by the heading's error, ``heading_sigma_rad`` (``|displacement| * heading_sigma_rad`` across it).

    Attributes:
        t_ns: time of the later image, integer nanoseconds. t_ref_ns: time of the earlier one (< ``t_ns``).
        displacement_en: (east, north) metres the vehicle moved from ``t_ref_ns`` to ``t_ns``.
        sigma_m: std per axis of the displacement besides the heading's part, metres (> 0).
        heading_sigma_rad: std of the heading it was turned into the world with, radians, in [0, pi/2).
        topic, frame_id: source (e.g. ``"photos"`` and the later photo's file name).
    """

    t_ns: int
    t_ref_ns: int
    displacement_en: tuple[float, float]
    sigma_m: float
    heading_sigma_rad: float = 0.0
    topic: str = ""
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", _int_ns(self.t_ns, "GroundMotion.t_ns"))
        object.__setattr__(self, "t_ref_ns", _int_ns(self.t_ref_ns, "GroundMotion.t_ref_ns"))
        if self.t_ref_ns >= self.t_ns:
            raise BagError(f"GroundMotion.t_ref_ns ({self.t_ref_ns}) must be before t_ns ({self.t_ns})")
        d = np.asarray(self.displacement_en, dtype=np.float64).reshape(-1) if not isinstance(
            self.displacement_en, str) else np.zeros(0)
        if d.shape != (2,) or not np.all(np.isfinite(d)):
            raise BagError(f"GroundMotion.displacement_en must be 2 finite numbers (east, north) in metres, got "
                           f"{self.displacement_en!r}")
        object.__setattr__(self, "displacement_en", (float(d[0]), float(d[1])))
        for name, hi in (("sigma_m", math.inf), ("heading_sigma_rad", math.pi / 2)):
            v = getattr(self, name)
            ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                  and (v > 0 if name == "sigma_m" else v >= 0) and v < hi)
            if not ok:
                want = "> 0 metres" if name == "sigma_m" else "in [0, pi/2) radians"
                raise BagError(f"GroundMotion.{name} must be a number {want}, got {v!r}")
            object.__setattr__(self, name, float(v))

    @property
    def dt_s(self) -> float:
        """Seconds between the two images."""
        return (self.t_ns - self.t_ref_ns) * 1e-9


Event = Union[Frame, GpsFix, ImuSample, CameraInfoEvent, TruthPose, GroundMotion]


# ---------------------------------------------------------------------------------------------- quaternion helpers
# quaternion_to_matrix and matrix_to_quaternion are calibration.rotations' (imported above and re-exported here, so
# ``from runtime.events import quaternion_to_matrix`` keeps working): one implementation for the whole code base.


__all__ = [
    "COVARIANCE_TYPE_APPROXIMATED",
    "COVARIANCE_TYPE_DIAGONAL_KNOWN",
    "COVARIANCE_TYPE_KNOWN",
    "COVARIANCE_TYPE_UNKNOWN",
    "CameraInfoEvent",
    "Event",
    "Frame",
    "GpsFix",
    "GroundMotion",
    "ImuSample",
    "STATUS_FIX",
    "STATUS_NO_FIX",
    "TruthPose",
    "decode_image_bytes",
    "image_format",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
]
