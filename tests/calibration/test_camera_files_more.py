"""Camera files users have: Kalibr camchain YAML (intrinsics and T_cam_imu as the mount), OpenCV key variants
(K/D, cameraMatrix/distCoeffs, plain lists, ``%YAML:1.0`` headers), ROS 2 camera_info echoed as YAML."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

pytest.importorskip("cv2")

from calibration.camera import CameraModel  # noqa: E402
from calibration.camera_io import load_camera, load_kalibr, save_camera  # noqa: E402
from calibration.errors import CameraFileError  # noqa: E402
from calibration.geometry import NADIR_MOUNT, load_mount  # noqa: E402
from calibration.rotations import R_FRD2FLU, rotation_from_rpy  # noqa: E402

# the EuRoC MAV dataset's cam0 (Kalibr camchain-imucam, as published with the dataset)
EUROC_CAM0 = {
    "camera_model": "pinhole",
    "intrinsics": [458.654, 457.296, 367.215, 248.375],
    "distortion_model": "radtan",
    "distortion_coeffs": [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05],
    "resolution": [752, 480],
    "rostopic": "/cam0/image_raw",
    "cam_overlaps": [1],
    "timeshift_cam_imu": 0.0,
}


def _T_cam_imu(R_cam2body: np.ndarray, t_cam2body: np.ndarray) -> list[list[float]]:
    """What Kalibr writes for a camera at R_cam2body / t_cam2body on an IMU whose frame is the body frame."""
    T = np.eye(4)
    T[:3, :3] = R_cam2body.T
    T[:3, 3] = -R_cam2body.T @ t_cam2body
    return T.tolist()


def _camchain(tmp_path, **cam0) -> str:
    doc = {"cam0": {**EUROC_CAM0, **cam0}}
    path = tmp_path / "camchain-imucam.yaml"
    path.write_text(yaml.safe_dump(doc, default_flow_style=None, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- Kalibr
def test_kalibr_intrinsics_radtan(tmp_path):
    path = _camchain(tmp_path)
    cam = load_camera(path)
    assert cam == CameraModel(752, 480, 458.654, 457.296, 367.215, 248.375,
                              (-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05))
    assert cam.model == "pinhole"


def test_kalibr_equidistant_is_opencv_fisheye_and_none_has_no_distortion(tmp_path):
    cam = load_camera(_camchain(tmp_path, distortion_model="equidistant", distortion_coeffs=[0.01, -0.02, 0.003, 0.0]))
    assert cam.model == "fisheye" and cam.distortion == (0.01, -0.02, 0.003, 0.0)
    cam = load_camera(_camchain(tmp_path, distortion_model="none", distortion_coeffs=[]))
    assert cam.model == "pinhole" and cam.distortion == ()


def test_kalibr_nadir_T_cam_imu_is_the_nadir_mount(tmp_path):
    R = NADIR_MOUNT.R_cam2body
    path = _camchain(tmp_path, T_cam_imu=_T_cam_imu(R, np.zeros(3)))
    mount = load_mount(path)
    np.testing.assert_allclose(mount.R_cam2body, R, atol=1e-12)
    np.testing.assert_allclose(mount.t_cam2body, 0.0, atol=1e-12)
    cam, mount2 = load_kalibr(path)
    assert mount2 == mount and cam.size == (752, 480)


def test_kalibr_rotated_mount_with_offset(tmp_path):
    # camera tilted 30 deg forward from nadir (its optical axis leans towards the nose), 12 cm ahead, 5 cm below
    R = rotation_from_rpy(0.0, math.radians(-30.0), 0.0) @ NADIR_MOUNT.R_cam2body
    optical_axis = R[:, 2]
    assert optical_axis[0] > 0.45 and optical_axis[2] < -0.8  # forward and down in body FLU
    t = np.array([0.12, 0.0, -0.05])
    T = _T_cam_imu(R, t)
    mount = load_mount(_camchain(tmp_path, T_cam_imu=T))
    np.testing.assert_allclose(mount.R_cam2body, R, atol=1e-9)
    np.testing.assert_allclose(mount.t_cam2body, t, atol=1e-9)
    # a point at the camera centre maps to the camera origin with Kalibr's T_cam_imu
    p_cam = np.asarray(T) @ np.append(t, 1.0)
    np.testing.assert_allclose(p_cam[:3], 0.0, atol=1e-12)


def test_kalibr_frd_imu_is_turned_into_flu_body(tmp_path):
    R_flu = rotation_from_rpy(0.0, math.radians(-20.0), math.radians(10.0)) @ NADIR_MOUNT.R_cam2body
    t_flu = np.array([0.1, -0.03, -0.02])
    # the same physical mount, calibrated against an FRD IMU: R_cam2frd = R_FRD2FLU^T R_cam2flu
    R_frd, t_frd = R_FRD2FLU.T @ R_flu, R_FRD2FLU.T @ t_flu
    path = _camchain(tmp_path, T_cam_imu=_T_cam_imu(R_frd, t_frd))
    mount = load_mount(path, imu_frame="frd")
    np.testing.assert_allclose(mount.R_cam2body, R_flu, atol=1e-9)
    np.testing.assert_allclose(mount.t_cam2body, t_flu, atol=1e-9)
    with pytest.raises(CameraFileError, match="imu_frame"):
        load_mount(path, imu_frame="ned")


def test_kalibr_second_camera_and_errors(tmp_path):
    doc = {"cam0": EUROC_CAM0, "cam1": {**EUROC_CAM0, "intrinsics": [457.587, 456.134, 379.999, 255.238]}}
    path = tmp_path / "camchain.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_camera(path, kalibr_camera="cam1").fx == 457.587
    with pytest.raises(CameraFileError, match=r"no camera 'cam2'.*cam0, cam1"):
        load_camera(path, kalibr_camera="cam2")
    with pytest.raises(CameraFileError, match="no T_cam_imu.*kalibr_calibrate_imu_camera"):
        load_mount(path)
    cases = [
        ({"camera_model": "omni"}, "camera_model 'omni' is not supported"),
        ({"distortion_model": "fov", "distortion_coeffs": [0.9]}, "distortion_model 'fov' is not supported"),
        ({"distortion_coeffs": [0.1, 0.2]}, "takes 4 coefficients, got 2"),
        ({"intrinsics": [1.0, 2.0, 3.0]}, r"intrinsics must be \[fu, fv, pu, pv\]"),
        ({"resolution": [752]}, r"resolution must be \[width, height\]"),
        ({"intrinsics": [float("nan"), 1.0, 2.0, 3.0]}, "finite"),
    ]
    for change, message in cases:
        with pytest.raises(CameraFileError, match=message):
            load_camera(_camchain(tmp_path, **change))
    for T, message in [
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], "4x4"),
        ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], "last row"),
        ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "not a rotation"),
    ]:
        with pytest.raises(CameraFileError, match=message):
            load_mount(_camchain(tmp_path, T_cam_imu=T))


# ---------------------------------------------------------------------------------------------- OpenCV variants
K = "[ 531.5, 0., 320.25, 0., 530.75, 240.5, 0., 0., 1. ]"
D = "[ -0.25, 0.08, 0.001, -0.0005, -0.01 ]"
WANT = CameraModel(640, 480, 531.5, 530.75, 320.25, 240.5, (-0.25, 0.08, 0.001, -0.0005, -0.01))


def _matrix(rows: int, cols: int, data: str) -> str:
    return f"!!opencv-matrix\n   rows: {rows}\n   cols: {cols}\n   dt: d\n   data: {data}\n"


@pytest.mark.parametrize(
    "k_key,d_key,size",
    [
        ("K", "D", "image_width: 640\nimage_height: 480\n"),
        ("cameraMatrix", "distCoeffs", "image_width: 640\nimage_height: 480\n"),
        ("camera_matrix", "distortion_coefficients", "width: 640\nheight: 480\n"),
        ("K", "dist_coeffs", "imageSize: [ 640, 480 ]\n"),
        ("cameraMatrix", "distCoeffs", "image_size: !!opencv-matrix\n   rows: 1\n   cols: 2\n   dt: i\n   data: [ 640, 480 ]\n"),
    ],
)
def test_opencv_filestorage_key_variants(tmp_path, k_key, d_key, size):
    text = f"%YAML:1.0\n---\n{size}{k_key}: {_matrix(3, 3, K)}{d_key}: {_matrix(1, 5, D)}"
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    assert load_camera(path) == WANT


def test_opencv_filestorage_plain_lists_and_empty_distortion(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text(f"%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\nK: {K}\nD: {D}\n")
    assert load_camera(path) == WANT
    path.write_text(f"%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\nK: {_matrix(3, 3, K)}D: []\n")
    assert load_camera(path).distortion == ()


def test_plain_yaml_variants_and_ros2_camera_info(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text(f"width: 640\nheight: 480\nK: {K}\nD: {D}\n")
    assert load_camera(path) == WANT
    path.write_text(
        "image_width: 640\nimage_height: 480\ncameraMatrix: [[531.5, 0, 320.25], [0, 530.75, 240.5], [0, 0, 1]]\n"
        f"distCoeffs: {D}\n"
    )
    assert load_camera(path) == WANT
    # `ros2 topic echo --once /camera_info` saved as YAML (header dropped): lowercase d/k/r/p
    path.write_text(
        "height: 480\nwidth: 640\ndistortion_model: plumb_bob\n"
        f"d: {D}\nk: {K}\nr: [1., 0., 0., 0., 1., 0., 0., 0., 1.]\n"
        "p: [531.5, 0., 320.25, 0., 0., 530.75, 240.5, 0., 0., 0., 1., 0.]\nbinning_x: 0\n"
    )
    assert load_camera(path) == WANT
    path.write_text(f"width: 640\nheight: 480\nK: {K}\nD: [0.1, 0.01, 0.0, 0.0]\ndistortion_model: equidistant\n")
    assert load_camera(path).model == "fisheye"


def test_variant_errors_are_typed(tmp_path):
    path = tmp_path / "cam.yaml"
    cases = [
        (f"%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\nK: {_matrix(3, 3, K)}", "missing the distortion"),
        (f"%YAML:1.0\n---\nimage_width: 640\nK: {_matrix(3, 3, K)}D: []\n", "image_height"),
        (f"%YAML:1.0\n---\nK: {_matrix(3, 3, K)}D: []\n", "missing the image size"),
        (f"%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\nK: {_matrix(3, 3, K)}"
         f"camera_matrix: {_matrix(3, 3, K.replace('531.5', '600.0'))}D: []\n", "different values"),
        ("width: 640\nheight: 480\nK: [1, 2, 3]\nD: []\n", "9 numbers"),
        ("width: 640\nheight: 480\nK: [a, b]\nD: []\n", "numbers"),
        (f"width: 640\nheight: 480\nK: {K}\n", "missing the distortion"),
        (f"width: 640\nheight: 480\nK: {K}\nD: []\ndistortion_model: omni\n", "unknown distortion_model"),
        (f"imageSize: [640]\nK: {K}\nD: []\n", r"\[width, height\]"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(CameraFileError, match=message):
            load_camera(path)


def test_skyfix_files_still_round_trip(tmp_path):
    for fmt in ("opencv", "ros"):
        assert load_camera(save_camera(WANT, tmp_path / f"{fmt}.yaml", fmt=fmt)) == WANT


def test_no_yaml_code_execution(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text("cam0: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(CameraFileError):
        load_camera(path)
