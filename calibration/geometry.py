"""Vehicle attitude and camera mount extrinsics.

Conventions (see ``docs/DESIGN.md``)
------------------------------------
* World ENU (x east, y north, z up); body FLU (x forward, y left, z up); camera OpenCV (x right, y down, z optical axis).
* ``R_a2b`` maps a vector in frame ``a`` into frame ``b``: ``p_b = R_a2b @ p_a + t_a2b``.
* :class:`Attitude` holds REP-103 roll/pitch/yaw in radians with ``R_body2world = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
  yaw = 0: body x points east; yaw = +pi/2: north. Positive pitch puts the nose down, positive roll the right side down.
  Quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion`` (``sensor_msgs/Imu.orientation``).
* Heading is the compass angle, clockwise from north: ``heading = pi/2 - yaw`` (wrapped to ``[0, 2 pi)``).
* :class:`Mount` holds ``R_cam2body`` (columns are the camera axes in body coordinates) and ``t_cam2body`` (the camera
  centre in the body frame, metres). :data:`NADIR_MOUNT` looks straight down with the image top towards body forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CameraFileError, GeometryError
from .rotations import matrix_to_quaternion, quaternion_to_matrix, rotation_from_rpy, rpy_from_rotation

__all__ = [
    "Attitude",
    "Mount",
    "NADIR_MOUNT",
    "R_cam2world",
    "heading_from_yaw",
    "load_mount",
    "rotation_from_rpy",
    "save_mount",
    "yaw_from_heading",
]

_TWO_PI = 2.0 * math.pi
_ROTATION_TOL = 1e-3  # how far from orthonormal a given rotation may be before it is rejected (max abs entry error)


# ---------------------------------------------------------------------------------------------------- rotations
# rotation_from_rpy (re-exported here), rpy_from_rotation and the quaternion <-> matrix conversions live in
# calibration.rotations: one helper per concept.


def _wrap_pi(angle: float) -> float:
    """Wrap to (-pi, pi]."""
    a = math.fmod(angle + math.pi, _TWO_PI)
    if a <= 0.0:
        a += _TWO_PI
    return a - math.pi


def yaw_from_heading(heading_rad: float) -> float:
    """Compass heading (radians, clockwise from north) -> REP-103 yaw (radians, counter-clockwise from east),
    wrapped to (-pi, pi]."""
    return _wrap_pi(math.pi / 2.0 - float(heading_rad))


def heading_from_yaw(yaw: float) -> float:
    """REP-103 yaw (radians, counter-clockwise from east) -> compass heading (radians, clockwise from north),
    wrapped to [0, 2 pi)."""
    h = math.fmod(math.pi / 2.0 - float(yaw), _TWO_PI)
    if h < 0.0:
        h += _TWO_PI
    return 0.0 if h >= _TWO_PI else h


def _as_rotation(value, what: str, error: type[Exception]) -> np.ndarray:
    """Validate a 3x3 rotation: finite, orthonormal within tolerance, det +1. Returns the nearest exact rotation."""
    try:
        R = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise error(f"{what} must be a 3x3 matrix of numbers, got {value!r}") from exc
    if R.shape != (3, 3):
        raise error(f"{what} must be a 3x3 matrix (3 rows of 3 numbers), got shape {list(R.shape)}: {value!r}")
    if not np.all(np.isfinite(R)):
        raise error(f"{what} must hold finite numbers, got {R.tolist()}")
    err = float(np.max(np.abs(R.T @ R - np.eye(3))))
    if err > _ROTATION_TOL:
        raise error(
            f"{what} must be orthonormal (R.T @ R = I within {_ROTATION_TOL}), got {R.tolist()} with error {err:.3g}; "
            "its columns are the camera axes (x right, y down, z optical axis) as unit vectors in body coordinates"
        )
    det = float(np.linalg.det(R))
    if det < 0.0:
        raise error(
            f"{what} must be a rotation (determinant +1), got determinant {det:.3f} for {R.tolist()}: "
            "it mirrors the image; flip the sign of one column (e.g. the camera x axis)"
        )
    if err <= 1e-12:  # already a rotation to float precision: keep the given values (exact file round trips)
        return R
    u, _, vt = np.linalg.svd(R)
    return u @ vt


# ---------------------------------------------------------------------------------------------------- attitude
@dataclass(frozen=True)
class Attitude:
    """Vehicle attitude, REP-103: radians, ``R_body2world = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (body FLU -> world ENU).

    yaw = 0: nose east; yaw = +pi/2: nose north. Positive pitch: nose down. Positive roll: right side down.
    """

    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def __post_init__(self) -> None:
        for name in ("roll", "pitch", "yaw"):
            value = getattr(self, name)
            try:
                f = float(value)
            except (TypeError, ValueError) as exc:
                raise GeometryError(f"attitude {name} must be a number (radians), got {value!r}") from exc
            if not math.isfinite(f):
                raise GeometryError(f"attitude {name} must be finite (radians), got {value!r}")
            object.__setattr__(self, name, f)

    @classmethod
    def from_degrees(cls, roll_deg: float = 0.0, pitch_deg: float = 0.0, yaw_deg: float = 0.0) -> "Attitude":
        """Attitude from roll, pitch, yaw in degrees (same convention)."""
        return cls(math.radians(roll_deg), math.radians(pitch_deg), math.radians(yaw_deg))

    @classmethod
    def from_quaternion(cls, x: float, y: float, z: float, w: float) -> "Attitude":
        """Attitude from the body->world rotation as a quaternion ``(x, y, z, w)`` (any non-zero norm).

        Raises:
            GeometryError: the quaternion is not finite or has norm zero.
        """
        return cls(*rpy_from_rotation(quaternion_to_matrix((x, y, z, w))))

    @classmethod
    def from_matrix(cls, R_body2world) -> "Attitude":
        """Attitude from a body->world rotation matrix (float[3, 3], orthonormal, det +1)."""
        return cls(*rpy_from_rotation(_as_rotation(R_body2world, "R_body2world", GeometryError)))

    @property
    def R_body2world(self) -> np.ndarray:
        """float64[3, 3] rotation body FLU -> world ENU."""
        return rotation_from_rpy(self.roll, self.pitch, self.yaw)

    def to_quaternion(self) -> tuple[float, float, float, float]:
        """The body->world rotation as a unit quaternion ``(x, y, z, w)`` with ``w >= 0``."""
        return matrix_to_quaternion(self.R_body2world)

    @property
    def heading(self) -> float:
        """Compass heading of the body x axis, radians clockwise from north, in [0, 2 pi)."""
        return heading_from_yaw(self.yaw)


# ---------------------------------------------------------------------------------------------------- mount
_NADIR_ROWS = ((0.0, -1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0))


@dataclass(frozen=True, init=False)
class Mount:
    """Camera extrinsics on the vehicle: ``p_body = R_cam2body @ p_cam + t_cam2body``.

    Construct with ``Mount(R_cam2body, t_cam2body)`` (array-likes: float[3, 3] rotation whose columns are the camera
    axes in body FLU coordinates, float[3] camera centre in the body frame, metres). The values are stored as tuples
    (``R_rows``, ``t_xyz``) so a mount is immutable and hashable; the properties return fresh numpy arrays.
    A rotation that is off orthonormal by more than 1e-3 or mirrors (det -1) raises :class:`GeometryError`; small
    rounding (e.g. 0.7071) is projected to the nearest rotation.
    """

    R_rows: tuple[tuple[float, float, float], ...] = field(default=_NADIR_ROWS)
    t_xyz: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def __init__(self, R_cam2body=_NADIR_ROWS, t_cam2body=(0.0, 0.0, 0.0)) -> None:
        R = _as_rotation(R_cam2body, "R_cam2body", GeometryError)
        try:
            t = np.asarray(t_cam2body, dtype=float)
        except (TypeError, ValueError) as exc:
            raise GeometryError(f"t_cam2body must be 3 numbers [x, y, z] in metres, got {t_cam2body!r}") from exc
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise GeometryError(f"t_cam2body must be 3 finite numbers [x, y, z] in metres, got {t_cam2body!r}")
        R = np.where(np.abs(R) < 1e-15, 0.0, R) + 0.0  # no -0.0 in files and reprs
        object.__setattr__(self, "R_rows", tuple(tuple(float(c) for c in row) for row in R))
        object.__setattr__(self, "t_xyz", tuple(float(c) for c in t))

    @property
    def R_cam2body(self) -> np.ndarray:
        """float64[3, 3] rotation camera (OpenCV) -> body (FLU)."""
        return np.array(self.R_rows, dtype=float)

    @property
    def t_cam2body(self) -> np.ndarray:
        """float64[3], camera centre in the body frame, metres."""
        return np.array(self.t_xyz, dtype=float)

    @property
    def T_cam2body(self) -> np.ndarray:
        """float64[4, 4] homogeneous transform camera -> body."""
        T = np.eye(4)
        T[:3, :3] = self.R_cam2body
        T[:3, 3] = self.t_cam2body
        return T

    @property
    def R_body2cam(self) -> np.ndarray:
        """float64[3, 3] rotation body -> camera (the transpose of ``R_cam2body``)."""
        return self.R_cam2body.T


NADIR_MOUNT = Mount()
"""Default mount: nadir-looking camera at the body origin, image top = body forward (image right = body right)."""


def R_cam2world(attitude: Attitude, mount: Mount = NADIR_MOUNT) -> np.ndarray:
    """float64[3, 3] rotation camera (OpenCV) -> world (ENU): ``attitude.R_body2world @ mount.R_cam2body``."""
    return attitude.R_body2world @ mount.R_cam2body


# ---------------------------------------------------------------------------------------------------- mount files
_MOUNT_KEYS = ("R_cam2body", "rpy_cam2body_deg", "t_cam2body")


def load_mount(path, imu_frame: str = "flu") -> Mount:
    """Read a mount YAML file, or the ``T_cam_imu`` of a Kalibr camera-IMU camchain (``cam0``; the IMU frame taken
    as the body, ``imu_frame`` ``"flu"`` or ``"frd"``: see :func:`calibration.camera_io.mount_from_kalibr`).

    Keys (all optional; absent ones keep the :data:`NADIR_MOUNT` values):

    * ``R_cam2body``: 3 rows of 3 numbers, rotation camera -> body (columns = camera axes in body FLU coordinates);
    * ``rpy_cam2body_deg``: ``[roll, pitch, yaw]`` degrees, ``R_cam2body = Rz(yaw) @ Ry(pitch) @ Rx(roll)``
      (an alternative to ``R_cam2body``; give one of them);
    * ``t_cam2body``: ``[x, y, z]`` metres, the camera centre in the body frame.

    Raises:
        CameraFileError: unreadable file, invalid YAML, unknown keys (named in the message), wrong shapes,
        or a rotation that is not orthonormal with determinant +1.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CameraFileError(f"cannot read mount file {p}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CameraFileError(f"mount file {p} is not valid YAML: {exc}") from exc
    from .camera_io import kalibr_cameras, mount_from_kalibr

    if kalibr_cameras(data):
        return mount_from_kalibr(data, str(p), imu_frame=imu_frame)
    if not isinstance(data, dict):
        raise CameraFileError(
            f"mount file {p} must be a YAML mapping with keys {list(_MOUNT_KEYS)}, got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in _MOUNT_KEYS)
    if unknown:
        raise CameraFileError(
            f"mount file {p} has unknown keys {unknown}; expected only {list(_MOUNT_KEYS)} "
            "(R_cam2body or rpy_cam2body_deg, and t_cam2body)"
        )
    if "R_cam2body" in data and "rpy_cam2body_deg" in data:
        raise CameraFileError(f"mount file {p} gives both R_cam2body and rpy_cam2body_deg; keep only one")
    R = np.array(_NADIR_ROWS)
    if "R_cam2body" in data:
        R = _as_rotation(data["R_cam2body"], f"R_cam2body in mount file {p}", CameraFileError)
    elif "rpy_cam2body_deg" in data:
        rpy = data["rpy_cam2body_deg"]
        try:
            r, pi_, y = (float(v) for v in rpy)
        except (TypeError, ValueError) as exc:
            raise CameraFileError(
                f"rpy_cam2body_deg in mount file {p} must be [roll, pitch, yaw] in degrees, got {rpy!r}"
            ) from exc
        if not all(math.isfinite(v) for v in (r, pi_, y)):
            raise CameraFileError(f"rpy_cam2body_deg in mount file {p} must be finite, got {rpy!r}")
        R = rotation_from_rpy(math.radians(r), math.radians(pi_), math.radians(y))
    t = data.get("t_cam2body", (0.0, 0.0, 0.0))
    try:
        t_arr = np.asarray(t, dtype=float)
    except (TypeError, ValueError):
        t_arr = np.zeros(0)
    if t_arr.shape != (3,) or not np.all(np.isfinite(t_arr)):
        raise CameraFileError(f"t_cam2body in mount file {p} must be [x, y, z] (3 finite numbers, metres), got {t!r}")
    try:
        return Mount(R, t_arr)
    except GeometryError as exc:  # pragma: no cover - validated above
        raise CameraFileError(f"mount file {p}: {exc}") from exc


def save_mount(mount: Mount, path) -> None:
    """Write ``mount`` as YAML (``R_cam2body`` rows and ``t_cam2body``) that :func:`load_mount` reads back exactly."""
    import yaml

    data = {
        "R_cam2body": [list(row) for row in mount.R_rows],
        "t_cam2body": list(mount.t_xyz),
    }
    text = (
        "# SkyFix camera mount: p_body = R_cam2body @ p_cam + t_cam2body\n"
        "# body FLU (x forward, y left, z up), camera OpenCV (x right, y down, z optical axis), metres\n"
        + yaml.safe_dump(data, default_flow_style=None, sort_keys=False)
    )
    p = Path(path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CameraFileError(f"cannot write mount file {p}: {exc}") from exc
