"""Attitude, heading and mount conventions (REP-103 / DESIGN.md) and mount files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.errors import CalibrationError, CameraFileError, GeometryError
from calibration.geometry import (
    NADIR_MOUNT,
    Attitude,
    Mount,
    R_cam2world,
    heading_from_yaw,
    load_mount,
    rotation_from_rpy,
    save_mount,
    yaw_from_heading,
)

EAST, NORTH, UP = np.eye(3)


def _wrap(a):
    return (a + math.pi) % (2 * math.pi) - math.pi


def _quat_mul(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def _quat_axis(axis, angle):
    s = math.sin(angle / 2)
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2))


def _quat_to_matrix(q):
    x, y, z, w = np.asarray(q) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


# ---------------------------------------------------------------------------------------------------- attitude
def test_yaw_zero_points_east_and_yaw_half_pi_points_north():
    np.testing.assert_allclose(Attitude(0, 0, 0).R_body2world @ EAST, EAST, atol=1e-15)
    np.testing.assert_allclose(Attitude(0, 0, math.pi / 2).R_body2world @ EAST, NORTH, atol=1e-15)
    # body y (left) at yaw 0 is north
    np.testing.assert_allclose(Attitude(0, 0, 0).R_body2world @ NORTH, NORTH, atol=1e-15)


def test_positive_pitch_is_nose_down_and_positive_roll_is_right_side_down():
    forward = Attitude(0, math.radians(10), 0).R_body2world @ np.array([1.0, 0, 0])
    assert forward[2] < -0.17  # nose below the horizon
    left = Attitude(math.radians(10), 0, 0).R_body2world @ np.array([0, 1.0, 0])
    assert left[2] > 0.17  # left wing up = right wing down


def test_matrix_is_rz_ry_rx():
    r, p, y = 0.3, -0.4, 2.1
    Rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    Ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    np.testing.assert_allclose(Attitude(r, p, y).R_body2world, Rz @ Ry @ Rx, atol=1e-15)
    np.testing.assert_allclose(rotation_from_rpy(r, p, y), Rz @ Ry @ Rx, atol=1e-15)


def test_quaternion_matches_independent_composition_and_known_values():
    r, p, y = 0.3, -0.4, 2.1
    q_ref = _quat_mul(_quat_mul(_quat_axis((0, 0, 1), y), _quat_axis((0, 1, 0), p)), _quat_axis((1, 0, 0), r))
    q = Attitude(r, p, y).to_quaternion()
    sign = 1.0 if q_ref[3] >= 0 else -1.0
    np.testing.assert_allclose(q, np.array(q_ref) * sign, atol=1e-15)
    np.testing.assert_allclose(_quat_to_matrix(q), Attitude(r, p, y).R_body2world, atol=1e-14)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(Attitude(0, 0, math.pi / 2).to_quaternion(), (0, 0, s, s), atol=1e-15)
    np.testing.assert_allclose(Attitude(0, 0, 0).to_quaternion(), (0, 0, 0, 1), atol=0)


def test_quaternion_round_trips():
    rng = np.random.default_rng(1)
    for _ in range(500):
        r, y = rng.uniform(-math.pi, math.pi, 2)
        p = rng.uniform(-math.pi / 2 + 1e-3, math.pi / 2 - 1e-3)
        a = Attitude(r, p, y)
        q = a.to_quaternion()
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        b = Attitude.from_quaternion(*q)
        assert abs(_wrap(b.roll - r)) < 1e-9 and abs(b.pitch - p) < 1e-9 and abs(_wrap(b.yaw - y)) < 1e-9
        # -q is the same rotation; any scale is accepted
        c = Attitude.from_quaternion(*(-3.0 * np.array(q)))
        np.testing.assert_allclose(c.R_body2world, a.R_body2world, atol=1e-12)
        np.testing.assert_allclose(Attitude.from_matrix(a.R_body2world).R_body2world, a.R_body2world, atol=1e-12)


def test_quaternion_at_gimbal_lock_keeps_the_rotation():
    for p in (math.pi / 2, -math.pi / 2):
        a = Attitude(0.4, p, 1.1)
        b = Attitude.from_quaternion(*a.to_quaternion())
        np.testing.assert_allclose(b.R_body2world, a.R_body2world, atol=1e-7)


def test_from_degrees():
    a = Attitude.from_degrees(10, -20, 90)
    assert a == Attitude(math.radians(10), math.radians(-20), math.pi / 2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "x", None])
def test_attitude_rejects_non_finite(bad):
    with pytest.raises(GeometryError, match="roll"):
        Attitude(bad, 0.0, 0.0)


def test_zero_quaternion_is_rejected():
    with pytest.raises(GeometryError, match="non-zero"):
        Attitude.from_quaternion(0, 0, 0, 0)


def test_heading_helpers():
    assert heading_from_yaw(math.pi / 2) == pytest.approx(0.0)  # facing north
    assert heading_from_yaw(0.0) == pytest.approx(math.pi / 2)  # east
    assert heading_from_yaw(math.pi) == pytest.approx(3 * math.pi / 2)  # west
    assert heading_from_yaw(-math.pi / 2) == pytest.approx(math.pi)  # south
    assert yaw_from_heading(0.0) == pytest.approx(math.pi / 2)
    assert yaw_from_heading(math.pi / 2) == pytest.approx(0.0)
    assert yaw_from_heading(math.radians(270)) == pytest.approx(math.pi)  # west, wrapped into (-pi, pi]
    assert yaw_from_heading(math.pi) == pytest.approx(-math.pi / 2)
    assert Attitude(0, 0, math.pi / 2).heading == pytest.approx(0.0)
    rng = np.random.default_rng(2)
    for yaw in rng.uniform(-10, 10, 200):
        h = heading_from_yaw(yaw)
        assert 0.0 <= h < 2 * math.pi
        y2 = yaw_from_heading(h)
        assert -math.pi < y2 <= math.pi
        assert abs(_wrap(y2 - yaw)) < 1e-12


# ---------------------------------------------------------------------------------------------------- mount
def test_nadir_mount_axes():
    R = NADIR_MOUNT.R_cam2body
    np.testing.assert_array_equal(R, [[0, -1, 0], [-1, 0, 0], [0, 0, -1]])
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_array_equal(R @ [0, 0, 1], [0, 0, -1])  # optical axis = body down
    np.testing.assert_array_equal(R @ [0, -1, 0], [1, 0, 0])  # image up (-y) = body forward
    np.testing.assert_array_equal(R @ [1, 0, 0], [0, -1, 0])  # image right = body right
    np.testing.assert_array_equal(NADIR_MOUNT.t_cam2body, [0, 0, 0])
    T = NADIR_MOUNT.T_cam2body
    assert T.shape == (4, 4)
    np.testing.assert_array_equal(T[:3, :3], R)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_mount_is_immutable_hashable_and_returns_copies():
    m = Mount(NADIR_MOUNT.R_cam2body, [0.1, 0.0, -0.05])
    assert m == Mount(np.array(NADIR_MOUNT.R_rows), (0.1, 0.0, -0.05))
    assert hash(m) == hash(Mount(NADIR_MOUNT.R_rows, (0.1, 0.0, -0.05)))
    assert isinstance(m.R_rows, tuple) and isinstance(m.t_xyz, tuple)
    arr = m.R_cam2body
    arr[:] = 0
    np.testing.assert_array_equal(m.R_cam2body, NADIR_MOUNT.R_cam2body)
    np.testing.assert_array_equal(m.T_cam2body[:3, 3], [0.1, 0.0, -0.05])
    np.testing.assert_array_equal(m.R_body2cam, m.R_cam2body.T)
    with pytest.raises(AttributeError):
        m.t_xyz = (0, 0, 0)  # type: ignore[misc]


def test_mount_rejects_bad_rotations():
    with pytest.raises(GeometryError, match="orthonormal"):
        Mount([[1, 0, 0], [0, 2, 0], [0, 0, 1]])
    with pytest.raises(GeometryError, match="determinant"):
        Mount([[-1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(GeometryError, match="3x3"):
        Mount([[1, 0], [0, 1]])
    with pytest.raises(GeometryError, match="t_cam2body"):
        Mount(t_cam2body=[0, 0])
    # rounded entries are projected to the nearest rotation
    s = 0.7071
    m = Mount([[s, -s, 0], [s, s, 0], [0, 0, 1]])
    np.testing.assert_allclose(m.R_cam2body.T @ m.R_cam2body, np.eye(3), atol=1e-12)


def test_nadir_camera_sign_conventions_by_projection():
    """With the nadir mount and yaw = 0 (nose east): a point north of the vehicle is on the image's LEFT and a point
    east of it towards the image TOP. With yaw = pi/2 (nose north): north is up and east is right."""
    cam = CameraModel.from_fov(640, 480, 70)
    h = 50.0

    def pixel(point, attitude):
        R = R_cam2world(attitude, NADIR_MOUNT)
        p_cam = R.T @ (np.asarray(point, float) - [0, 0, h])
        uv, ok = cam.project(p_cam[None])
        assert ok[0]
        return uv[0] - [cam.cx, cam.cy]

    du, dv = pixel([0, 10, 0], Attitude(0, 0, 0))  # north
    assert du < -50 and abs(dv) < 1e-9
    du, dv = pixel([10, 0, 0], Attitude(0, 0, 0))  # east
    assert dv < -50 and abs(du) < 1e-9
    du, dv = pixel([0, 10, 0], Attitude(0, 0, math.pi / 2))  # north, facing north
    assert dv < -50 and abs(du) < 1e-9
    du, dv = pixel([10, 0, 0], Attitude(0, 0, math.pi / 2))  # east, facing north
    assert du > 50 and abs(dv) < 1e-9
    # the optical axis with zero attitude is straight down
    np.testing.assert_allclose(R_cam2world(Attitude(), NADIR_MOUNT) @ [0, 0, 1], -UP, atol=1e-15)
    # nose down (pitch > 0) turns a nadir camera backwards (west at yaw 0); right side down (roll > 0) to the left
    assert (R_cam2world(Attitude(0, 0.2, 0)) @ [0, 0, 1])[0] < -0.19
    assert (R_cam2world(Attitude(0.2, 0, 0)) @ [0, 0, 1])[1] > 0.19


# ---------------------------------------------------------------------------------------------------- mount files
def test_mount_file_round_trip(tmp_path):
    m = Mount(rotation_from_rpy(0.1, -0.2, 0.3) @ NADIR_MOUNT.R_cam2body, [0.12, -0.034, -0.0567])
    path = tmp_path / "mount.yaml"
    save_mount(m, path)
    back = load_mount(path)
    assert back == m
    np.testing.assert_array_equal(back.T_cam2body, m.T_cam2body)


def test_mount_file_rpy_alternative(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("rpy_cam2body_deg: [180, 0, -90]\nt_cam2body: [0.0, 0.0, -0.1]\n")
    m = load_mount(path)
    np.testing.assert_allclose(m.R_cam2body, NADIR_MOUNT.R_cam2body, atol=1e-15)
    np.testing.assert_array_equal(m.t_cam2body, [0, 0, -0.1])
    path.write_text("t_cam2body: [0.5, 0, 0]\n")  # rotation defaults to nadir
    assert load_mount(path) == Mount(t_cam2body=(0.5, 0, 0))


@pytest.mark.parametrize(
    "text, match",
    [
        ("R_cam2body: [[0,-1,0],[-1,0,0],[0,0,-1]]\nt_cam2bdy: [0,0,0]\nfoo: 1\n", r"unknown keys \['foo', 't_cam2bdy'\]"),
        ("R_cam2body: [[1,0,0],[0,1,0],[0,0,2]]\n", "orthonormal"),
        ("R_cam2body: [[-1,0,0],[0,1,0],[0,0,1]]\n", "determinant"),
        ("R_cam2body: [[1,0,0],[0,1,0]]\n", "3x3"),
        ("R_cam2body: [[0,-1,0],[-1,0,0],[0,0,-1]]\nrpy_cam2body_deg: [0,0,0]\n", "both"),
        ("rpy_cam2body_deg: [1, 2]\n", r"\[roll, pitch, yaw\]"),
        ("t_cam2body: [0, 0]\n", r"\[x, y, z\]"),
        ("- 1\n- 2\n", "mapping"),
        ("R_cam2body: [[0,-1,0]\n", "not valid YAML"),
        ("", "mapping"),
    ],
)
def test_bad_mount_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CameraFileError, match=match) as info:
        load_mount(path)
    assert isinstance(info.value, CalibrationError)
    assert str(path) in str(info.value)


def test_missing_mount_file(tmp_path):
    with pytest.raises(CameraFileError, match="cannot read"):
        load_mount(tmp_path / "nope.yaml")
