"""CameraModel: parity with OpenCV's projectPoints, unproject/project round trips, validation, scaled(), from_fov()."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from calibration.camera import CameraModel  # noqa: E402
from calibration.cv_compat import undistort_points  # noqa: E402
from calibration.errors import CalibrationError, CameraModelError  # noqa: E402

PINHOLE_COEFFS = {
    4: (-0.21, 0.06, 0.0012, -0.0009),
    5: (-0.21, 0.06, 0.0012, -0.0009, -0.01),
    8: (-0.21, 0.06, 0.0012, -0.0009, -0.01, 0.05, 0.01, 0.002),
    12: (-0.21, 0.06, 0.0012, -0.0009, -0.01, 0.05, 0.01, 0.002, 0.0015, -0.0004, 0.0008, 0.0002),
}
FISHEYE_COEFFS = (0.031, -0.012, 0.0042, -0.0011)


def _points_in_cone(n: int, max_angle: float, seed: int = 0) -> np.ndarray:
    """float64[n, 3] camera-frame points at off-axis angles up to ``max_angle`` radians, depths 0.3-30 m."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, max_angle, n)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1)
    return dirs * rng.uniform(0.3, 30.0, (n, 1))


# ---------------------------------------------------------------------------------------------- parity with OpenCV
@pytest.mark.parametrize("count", [4, 5, 8, 12])
def test_pinhole_project_matches_cv2_projectPoints(count):
    cam = CameraModel(1280, 960, 1010.5, 1008.25, 645.3, 478.9, PINHOLE_COEFFS[count])
    pts = _points_in_cone(500, math.radians(38), seed=count)
    uv, valid = cam.project(pts)
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K, cam.D)
    assert valid.all()
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-8)


def test_pinhole_without_distortion_matches_cv2():
    cam = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    pts = _points_in_cone(200, math.radians(30))
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K, cam.D)
    np.testing.assert_allclose(cam.project(pts)[0], ref.reshape(-1, 2), atol=1e-9)


@pytest.mark.parametrize("skew", [0.0, 0.8])
def test_fisheye_project_matches_cv2_fisheye_projectPoints(skew):
    cam = CameraModel(640, 480, 230.0, 231.5, 322.1, 238.4, FISHEYE_COEFFS, "fisheye", skew=skew)
    pts = _points_in_cone(500, math.radians(85), seed=3)
    uv, valid = cam.project(pts)
    # cv2.fisheye takes the skew as alpha = K[0, 1] / fx
    ref, _ = cv2.fisheye.projectPoints(
        pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.D, alpha=skew / cam.fx
    )
    assert valid.all()
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-8)


def test_pinhole_skew_follows_the_camera_matrix():
    """cv2.projectPoints ignores K[0, 1]; CameraModel applies it as K does: u = fx * xd + skew * yd + cx."""
    plain = CameraModel(640, 480, 500.0, 502.0, 320.0, 240.0, PINHOLE_COEFFS[5])
    skewed = CameraModel(640, 480, 500.0, 502.0, 320.0, 240.0, PINHOLE_COEFFS[5], skew=1.5)
    pts = _points_in_cone(100, math.radians(30))
    uv0, _ = plain.project(pts)
    uv1, _ = skewed.project(pts)
    yd = (uv0[:, 1] - plain.cy) / plain.fy
    np.testing.assert_allclose(uv1[:, 0], uv0[:, 0] + 1.5 * yd, atol=1e-9)
    np.testing.assert_allclose(uv1[:, 1], uv0[:, 1], atol=1e-12)


@pytest.mark.parametrize("count", [5, 8])
def test_pinhole_unproject_matches_cv2_undistortPointsIter(count):
    cam = CameraModel(1280, 960, 1010.5, 1008.25, 645.3, 478.9, PINHOLE_COEFFS[count])
    rng = np.random.default_rng(1)
    uv = np.stack([rng.uniform(0, 1279, 300), rng.uniform(0, 959, 300)], axis=1)
    rays, ok = cam.unproject(uv)
    assert ok.all()
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-15)
    ref = undistort_points(uv, cam.K, cam.D, criteria)  # cv2.undistortPointsIter (4.x) / undistortPoints (5.x)
    np.testing.assert_allclose(rays[:, :2] / rays[:, 2:], ref, atol=1e-7)


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "cam",
    [
        CameraModel(640, 480, 468.49, 468.49, 319.5, 239.5, (-0.05, 0.0, 0.0, 0.0, 0.0)),
        CameraModel(1280, 960, 1010.5, 1008.25, 645.3, 478.9, PINHOLE_COEFFS[8], skew=0.7),
        CameraModel(1280, 960, 1010.5, 1008.25, 645.3, 478.9, PINHOLE_COEFFS[12]),
        # f = 300: the image corners are 1.3 rad off axis, inside cv2.fisheye's 90-degree limit
        CameraModel(640, 480, 300.0, 301.5, 322.1, 238.4, FISHEYE_COEFFS, "fisheye", skew=0.4),
        CameraModel(320, 240, 300.0, 300.0, 159.5, 119.5),
    ],
    ids=["pinhole5", "rational8-skew", "thinprism12", "fisheye", "no-distortion"],
)
def test_unproject_then_project_is_identity(cam):
    step = 7
    u, v = np.meshgrid(np.arange(0, cam.width, step, dtype=float), np.arange(0, cam.height, step, dtype=float))
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    rays, ok = cam.unproject(uv)
    assert ok.all()
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    assert (rays[:, 2] > 0).all()
    back, valid = cam.project(rays * 7.3)
    assert valid.all()
    np.testing.assert_allclose(back, uv, atol=1e-6)


def test_project_then_unproject_returns_the_ray():
    cam = CameraModel(640, 480, 230.0, 231.5, 322.1, 238.4, FISHEYE_COEFFS, "fisheye")
    pts = _points_in_cone(300, math.radians(80), seed=5)
    uv, valid = cam.project(pts)
    rays, ok = cam.unproject(uv)
    assert valid.all() and ok.all()
    np.testing.assert_allclose(rays, pts / np.linalg.norm(pts, axis=1, keepdims=True), atol=1e-9)


def test_fisheye_pixels_beyond_90_degrees_are_invalid():
    cam = CameraModel(640, 480, 200.0, 200.0, 319.5, 239.5, (), "fisheye")  # 90 degrees at r = 314 px
    rays, ok = cam.unproject(np.array([[319.5 + 300.0, 239.5], [319.5 + 330.0, 239.5], [0.0, 0.0]]))
    assert ok.tolist() == [True, False, False]
    assert rays[0, 2] == pytest.approx(math.cos(1.5))


def test_points_behind_the_camera_are_invalid():
    cam = CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0, PINHOLE_COEFFS[5])
    _, valid = cam.project(np.array([[0.1, 0.1, -1.0], [0.0, 0.0, 0.0], [0.1, 0.1, 1.0]]))
    assert valid.tolist() == [False, False, True]


def test_fold_back_of_strong_barrel_distortion_is_invalid():
    cam = CameraModel(640, 480, 300.0, 300.0, 320.0, 240.0, (-0.4, 0.0, 0.0, 0.0, 0.0))
    # r * (1 - 0.4 r^2) peaks at r = sqrt(1 / 1.2)
    assert cam.max_valid_radius == pytest.approx(math.sqrt(1 / 1.2), abs=1e-3)
    _, valid = cam.project(np.array([[0.5, 0.0, 1.0], [1.5, 0.0, 1.0]]))
    assert valid.tolist() == [True, False]


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), "camera width must be a positive integer"),
        (dict(width=640.5), "camera width must be a positive integer"),
        (dict(width=True), "camera width must be a positive integer"),
        (dict(height=-480), "camera height must be a positive integer"),
        (dict(fx=-500.0), "focal lengths must be positive pixels"),
        (dict(fy=0.0), "focal lengths must be positive pixels"),
        (dict(cx=float("nan")), "camera cx must be finite"),
        (dict(distortion=(0.1, 0.2, 0.0, 0.0, 0.0, 0.1)), "a pinhole camera takes 4 or 5 or 8 or 12 distortion"),
        (dict(distortion=(0.1,) * 14), "tilted-sensor models (14 coefficients) are not supported"),
        (dict(distortion=(0.1, 0.2, 0.0, 0.0, 0.0), model="fisheye"), "a fisheye camera takes 4 distortion"),
        (dict(distortion=(0.1, float("inf"), 0.0, 0.0)), "distortion coefficients must be finite"),
        (dict(model="kannala_brandt"), "camera model must be one of"),
    ],
)
def test_validation_errors(kwargs, message):
    base = dict(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0)
    base.update(kwargs)
    with pytest.raises(CameraModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CameraModel(**base)


def test_validation_errors_are_calibration_errors():
    with pytest.raises(CalibrationError):
        CameraModel(640, 480, -1.0, 500.0, 320.0, 240.0)


def test_integral_floats_become_ints_and_coefficients_a_tuple():
    cam = CameraModel(np.int64(640), 480.0, 500, 500, 320, 240, np.array([[-0.1], [0.01], [0.0], [0.0]]))
    assert cam.width == 640 and isinstance(cam.width, int) and isinstance(cam.height, int)
    assert cam.distortion == (-0.1, 0.01, 0.0, 0.0)
    assert isinstance(cam.fx, float)


def test_from_matrix_checks_the_matrix():
    K = np.array([[500.0, 0.3, 320.0], [0.0, 501.0, 240.0], [0.0, 0.0, 1.0]])
    cam = CameraModel.from_matrix(640, 480, K, [0.1, -0.01, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(cam.K, K)
    assert cam.skew == 0.3
    with pytest.raises(CameraModelError, match="camera matrix must be 3x3"):
        CameraModel.from_matrix(640, 480, np.eye(4))
    with pytest.raises(CameraModelError, match=r"must look like \[\[fx, s, cx\]"):
        CameraModel.from_matrix(640, 480, [[500, 0, 320], [0, 500, 240], [0, 0, 2]])


def test_K_D_and_without_distortion():
    pin = CameraModel(640, 480, 500.0, 501.0, 320.0, 240.0)
    assert pin.D.tolist() == [0.0] * 5
    fish = CameraModel(640, 480, 300.0, 300.0, 320.0, 240.0, (), "fisheye")
    assert fish.D.tolist() == [0.0] * 4
    plain = CameraModel(640, 480, 300.0, 300.0, 320.0, 240.0, FISHEYE_COEFFS, "fisheye").without_distortion()
    assert plain.model == "pinhole" and plain.distortion == ()
    assert pin.size == (640, 480)


# ---------------------------------------------------------------------------------------------- scaled / from_fov
def test_scaled_half_resolution_matches_resized_pixels():
    cam = CameraModel(1280, 960, 1010.5, 1008.25, 645.3, 478.9, PINHOLE_COEFFS[5], skew=0.6)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (640, 480)
    assert half.fx == pytest.approx(505.25) and half.fy == pytest.approx(504.125)
    assert half.cx == pytest.approx((645.3 + 0.5) * 0.5 - 0.5) and half.cy == pytest.approx((478.9 + 0.5) * 0.5 - 0.5)
    assert half.skew == pytest.approx(0.3)
    assert half.distortion == cam.distortion
    pts = _points_in_cone(200, math.radians(30))
    # pixel centres: a pixel edge at 0 maps to 0, so u' + 0.5 = (u + 0.5) * s
    np.testing.assert_allclose(half.project(pts)[0], (cam.project(pts)[0] + 0.5) * 0.5 - 0.5, atol=1e-9)


def test_scaled_anisotropic():
    cam = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    s = cam.scaled(2.0, 0.5)
    assert (s.width, s.height) == (1280, 240)
    assert (s.fx, s.fy) == (1000.0, 250.0)
    assert (s.cx, s.cy) == (639.5, 119.5)  # still the image centre


def test_scaled_to_nothing_is_an_error():
    with pytest.raises(CameraModelError):
        CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0).scaled(0.0001)


@pytest.mark.parametrize("fov", [30.0, 70.0, 120.0])
def test_from_fov_pinhole(fov):
    cam = CameraModel.from_fov(640, 480, fov)
    assert cam.fx == cam.fy == pytest.approx(320.0 / math.tan(math.radians(fov / 2)))
    assert (cam.cx, cam.cy) == (319.5, 239.5)
    assert cam.hfov_deg == pytest.approx(fov, abs=1e-9)


def test_from_fov_fisheye():
    cam = CameraModel.from_fov(640, 480, 190.0 - 20.0, model="fisheye")
    assert cam.model == "fisheye"
    assert cam.fx == pytest.approx(320.0 / math.radians(85.0))
    assert cam.hfov_deg == pytest.approx(170.0, abs=1e-6)


def test_from_fov_with_distortion_and_bad_fov():
    cam = CameraModel.from_fov(640, 480, 70.0, distortion=(-0.05, 0.0, 0.0, 0.0, 0.0))
    assert cam.distortion[0] == -0.05
    assert cam.hfov_deg > 70.0  # barrel distortion widens the view
    for bad in (0.0, 180.0, -10.0):
        with pytest.raises(CameraModelError, match=r"field of view must be in \(0, 180\)"):
            CameraModel.from_fov(640, 480, bad)


def test_pixel_grid_is_row_major_pixel_centres():
    grid = CameraModel(4, 3, 10.0, 10.0, 1.5, 1.0).pixel_grid()
    assert grid.shape == (12, 2)
    assert grid[:5].tolist() == [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1]]
