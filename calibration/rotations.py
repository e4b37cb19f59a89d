"""The one home of rotation conversions: quaternion <-> matrix, roll/pitch/yaw <-> matrix, ENU/NED and FLU/FRD axes.

Conventions (see ``docs/DESIGN.md``)
------------------------------------
* Quaternions are ``(x, y, z, w)`` (ROS ``geometry_msgs/Quaternion`` order), Hamilton, active: the quaternion of
  ``R_a2b`` rotates a vector in frame ``a`` into frame ``b``.
* Roll/pitch/yaw are REP-103 fixed-axis x-y-z: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, radians.
* ``R_NED2ENU`` (swap x/y, flip z) and ``R_FRD2FLU`` (flip y and z) are signed permutations, symmetric and their own
  inverse, so they also serve as ``R_ENU2NED`` and ``R_FLU2FRD``.

Pure numpy and ``math``; nothing else inside SkyFix. Every other module (``calibration.geometry``, ``runtime.events``,
``runtime.imu_frame``, the simulator) uses these helpers instead of writing its own.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import GeometryError

__all__ = [
    "R_FRD2FLU",
    "R_NED2ENU",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "rotation_between",
    "rotation_from_rpy",
    "rpy_from_rotation",
]

R_NED2ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""float64[3, 3] world NED -> world ENU (equal to its inverse ENU -> NED). Do not modify in place."""
R_FRD2FLU = np.diag([1.0, -1.0, -1.0])
"""float64[3, 3] body FRD -> body FLU (equal to its inverse FLU -> FRD). Do not modify in place."""
R_NED2ENU.setflags(write=False)
R_FRD2FLU.setflags(write=False)


# ---------------------------------------------------------------------------------------------------- quaternions
def quaternion_to_matrix(q) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` (any non-zero norm; it is normalised) -> float64[3, 3] rotation matrix.

    Raises:
        GeometryError: ``q`` is not 4 finite numbers with a non-zero norm.
    """
    try:
        arr = np.asarray(q, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"quaternion (x, y, z, w) must be 4 numbers, got {q!r}") from exc
    n = float(np.linalg.norm(arr)) if arr.shape == (4,) else 0.0
    if arr.shape != (4,) or not np.all(np.isfinite(arr)) or n < 1e-12:
        raise GeometryError(f"quaternion (x, y, z, w) must be 4 finite numbers, non-zero, got {tuple(arr.tolist())}")
    x, y, z, w = arr / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R) -> tuple[float, float, float, float]:
    """float[3, 3] rotation matrix -> unit quaternion ``(x, y, z, w)`` with ``w >= 0`` (Shepperd's method).

    The matrix is assumed to be a rotation (orthonormal, det +1); it is not checked.
    """
    R = np.asarray(R, dtype=float)
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return (float(q[0]), float(q[1]), float(q[2]), float(q[3]))


# ---------------------------------------------------------------------------------------------------- roll/pitch/yaw
def rotation_from_rpy(roll, pitch, yaw) -> np.ndarray:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (REP-103 fixed-axis x-y-z, radians).

    Scalars give float64[3, 3]; arrays (broadcast together, shape ``s``) give float64[*s, 3, 3].
    """
    roll, pitch, yaw = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (roll, pitch, yaw)))
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    R = np.empty(roll.shape + (3, 3))
    R[..., 0, 0] = cy * cp
    R[..., 0, 1] = cy * sp * sr - sy * cr
    R[..., 0, 2] = cy * sp * cr + sy * sr
    R[..., 1, 0] = sy * cp
    R[..., 1, 1] = sy * sp * sr + cy * cr
    R[..., 1, 2] = sy * sp * cr - cy * sr
    R[..., 2, 0] = -sp
    R[..., 2, 1] = cp * sr
    R[..., 2, 2] = cp * cr
    return R


def rpy_from_rotation(R) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_rpy` for one float[3, 3] rotation: ``(roll, pitch, yaw)`` radians, pitch in
    ``[-pi/2, pi/2]``. At gimbal lock (|pitch| = pi/2) only yaw -/+ roll is defined: roll is set to 0."""
    R = np.asarray(R, dtype=float)
    sp = -float(R[2, 0])
    pitch = math.asin(max(-1.0, min(1.0, sp)))
    if math.hypot(R[2, 1], R[2, 2]) < 1e-9:
        roll = 0.0
        yaw = math.atan2(-R[0, 1], R[1, 1])
    else:
        roll = math.atan2(R[2, 1], R[2, 2])
        yaw = math.atan2(R[1, 0], R[0, 0])
    return roll, pitch, yaw


def rotation_between(u, v) -> np.ndarray:
    """float64[3, 3]: the smallest rotation taking direction ``u`` to direction ``v`` (3-vectors, any length > 0),
    about their cross product (Rodrigues); the identity when they are parallel. Antiparallel directions have no
    smallest rotation: GeometryError."""
    a = np.asarray(u, dtype=np.float64).reshape(3)
    b = np.asarray(v, dtype=np.float64).reshape(3)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if not (na > 0 and nb > 0 and math.isfinite(na) and math.isfinite(nb)):
        raise GeometryError(f"rotation_between needs two finite non-zero directions, got {u!r} and {v!r}")
    a, b = a / na, b / nb
    axis = np.cross(a, b)
    s, c = float(np.linalg.norm(axis)), float(a @ b)
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        raise GeometryError(f"rotation_between: {u!r} and {v!r} point in opposite directions (no smallest rotation)")
    k = axis / s
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    ang = math.atan2(s, c)
    return np.eye(3) + math.sin(ang) * K + (1.0 - math.cos(ang)) * (K @ K)
