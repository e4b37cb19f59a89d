"""Chessboard / ChArUco calibration: the real OpenCV sample images, and synthetic images rendered with known cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from calibration.camera import CameraModel  # noqa: E402
from calibration.chessboard import (  # noqa: E402
    CalibrationResult,
    CharucoBoardSpec,
    ImageRecord,
    calibrate,
)
from calibration.cv_compat import (  # noqa: E402
    aruco_dictionary,
    charuco_detector,
    charuco_object_corners,
    fisheye_flag,
    fisheye_point_layout,
    storage_mode,
)
from calibration.errors import BoardNotFoundError, CalibrationError  # noqa: E402


# ============================================================================================== synthetic renderers
def _rot(rx: float, ry: float, rz: float) -> np.ndarray:
    R, _ = cv2.Rodrigues(np.array([rx, ry, rz], dtype=np.float64))
    return R


def _board_pose(center, distance, tilt_x, tilt_y, roll, off_x=0.0, off_y=0.0):
    """(R_board2cam, t): the board point ``center`` (metres) at ``distance`` metres from the camera, in the direction
    turned ``off_x`` radians right and ``off_y`` down from the optical axis; the board faces the camera, then is
    tilted by ``tilt_x`` / ``tilt_y`` and rolled by ``roll`` (radians)."""
    R_dir = _rot(0, off_x, 0) @ _rot(-off_y, 0, 0)
    R = R_dir @ _rot(0, 0, roll) @ _rot(tilt_x, 0, 0) @ _rot(0, tilt_y, 0)
    return R, R_dir @ np.array([0.0, 0.0, distance]) - R @ np.array([center[0], center[1], 0.0])


# (board point looked at, as a fraction of the board size; distance factor; tilt x; tilt y; roll; off-axis x, y)
POSES = [
    ((0.5, 0.5), 1.00, 0.0, 0.0, 0.0, 0.0, 0.0),
    ((0.5, 0.5), 1.10, 0.5, 0.0, 0.2, 0.0, 0.0),
    ((0.5, 0.5), 1.10, -0.5, 0.1, -0.2, 0.0, 0.0),
    ((0.5, 0.5), 1.10, 0.0, 0.55, 0.1, 0.0, 0.0),
    ((0.5, 0.5), 1.10, 0.1, -0.55, -0.1, 0.0, 0.0),
    ((0.5, 0.5), 1.20, 0.3, 0.3, 0.5, 0.12, 0.08),
    ((0.5, 0.5), 1.20, -0.3, -0.3, -0.4, -0.12, -0.08),
    ((0.5, 0.5), 1.20, 0.4, -0.2, 1.2, -0.12, 0.08),
    ((0.5, 0.5), 1.20, -0.4, 0.3, -1.0, 0.12, -0.08),
]
# wide-angle views for the fisheye lens: the board 35-50 degrees off axis
WIDE_POSES = [
    ((0.5, 0.5), 1.5, 0.2, 0.0, 0.0, 0.85, 0.0),
    ((0.5, 0.5), 1.5, -0.2, 0.0, 0.3, -0.85, 0.0),
    ((0.5, 0.5), 1.5, 0.0, 0.2, -0.2, 0.0, 0.6),
    ((0.5, 0.5), 1.5, 0.0, -0.2, 0.1, 0.0, -0.6),
    ((0.5, 0.5), 1.5, 0.2, 0.2, 0.6, 0.55, 0.45),
    ((0.5, 0.5), 1.5, -0.2, 0.2, -0.6, -0.55, -0.45),
]


def render_chessboard(camera: CameraModel, R, t, board=(9, 6), square=0.04, noise=1.0, seed=0, rays=None):
    """uint8[h, w] view of a chessboard (``board`` inner corners, white margin of one square) seen by ``camera``.

    Every pixel's ray (CameraModel.unproject, so any lens model; pass ``rays`` = ``camera.unproject(pixel_grid())``
    to reuse them) is intersected with the board plane; the checker pattern is box-filtered analytically over the
    pixel's footprint (anti-aliased, exact edge positions).
    """
    nx, ny = board
    rays, ok = camera.unproject(camera.pixel_grid()) if rays is None else rays
    normal = R[:, 2]
    den = rays @ normal
    safe = np.where(np.abs(den) > 1e-9, den, 1.0)
    s = np.where(np.abs(den) > 1e-9, (normal @ t) / safe, -1.0)
    ok = ok & (s > 0)
    board_xy = (rays * s[:, None] - t) @ R  # board coordinates, metres
    shape = (camera.height, camera.width)
    u = np.where(ok, board_xy[:, 0] / square, -1e3).reshape(shape)  # in squares; inner corner i at u = i
    v = np.where(ok, board_xy[:, 1] / square, -1e3).reshape(shape)
    wu = np.clip(np.abs(np.gradient(u, axis=1)) + np.abs(np.gradient(u, axis=0)), 1e-3, 10.0)
    wv = np.clip(np.abs(np.gradient(v, axis=1)) + np.abs(np.gradient(v, axis=0)), 1e-3, 10.0)

    def tri(a):  # signed distance to the nearest integer, sign = sign(sin(pi a))
        return np.arcsin(np.sin(np.pi * a)) / np.pi

    uc, vc = np.clip(u, -0.5, nx - 0.5), np.clip(v, -0.5, ny - 0.5)  # outer squares keep their colour to the edge
    checker = 0.5 + 0.5 * np.clip(tri(uc) / (0.5 * wu), -1, 1) * np.clip(tri(vc) / (0.5 * wv), -1, 1)
    w = np.maximum(wu, wv)
    inside = np.clip(np.minimum.reduce([u + 1, nx - u, v + 1, ny - v]) / w + 0.5, 0, 1)
    margin = np.clip(np.minimum.reduce([u + 2, nx + 1 - u, v + 2, ny + 1 - v]) / w + 0.5, 0, 1)
    img = inside * checker + (1 - inside) * (margin + (1 - margin) * 0.45)
    img = 20.0 + 215.0 * np.where(ok.reshape(shape), img, 0.45)
    img += np.random.default_rng(seed).normal(0.0, noise, shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_views(camera, distance, board=(9, 6), square=0.04, poses=POSES):
    size = np.array([board[0] - 1, board[1] - 1]) * square
    rays = camera.unproject(camera.pixel_grid())
    views = []
    for i, (frac, dist, tx, ty, roll, ox, oy) in enumerate(poses):
        R, t = _board_pose(np.array(frac) * size, distance * dist, tx, ty, roll, ox, oy)
        views.append(render_chessboard(camera, R, t, board, square, seed=i, rays=rays))
    return views


def _angle_error_deg(truth: CameraModel, est: CameraModel, radius_px: float) -> float:
    """Largest angle between the two cameras' rays over pixels within ``radius_px`` of the image centre."""
    uv = truth.pixel_grid()[::37]
    uv = uv[np.hypot(uv[:, 0] - truth.width / 2, uv[:, 1] - truth.height / 2) < radius_px]
    a, ok_a = truth.unproject(uv)
    b, ok_b = est.unproject(uv)
    assert ok_a.all() and ok_b.all()
    return float(np.degrees(np.arccos(np.clip(np.sum(a * b, axis=1), -1, 1))).max())


# ============================================================================================== real images
@pytest.fixture(scope="module")
def left_images(shared_data):
    first = shared_data("calib/left01.jpg")
    paths = sorted(first.parent.glob("left*.jpg"))
    assert len(paths) >= 10
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def left_result(left_images):
    return calibrate(left_images, board=(9, 6), square=0.025)


def test_real_opencv_samples_rms_below_half_pixel(left_result, left_images):
    res = left_result
    assert isinstance(res, CalibrationResult)
    assert res.rms <= 0.5
    cam = res.camera
    assert cam.size == (640, 480) and cam.model == "pinhole" and len(cam.distortion) == 5
    assert 500 < cam.fx < 570 and abs(cam.fx - cam.fy) < 0.01 * cam.fx
    assert 320 < cam.cx < 360 and 220 < cam.cy < 250
    assert cam.distortion[0] < -0.2  # clear barrel distortion
    # one record per input image, in input order
    assert [r.path for r in res.images] == left_images
    # the RMS is the corner-weighted mean of the per-image errors (54 corners each)
    used = res.used
    assert math.isclose(res.rms, math.sqrt(np.mean([r.error_px**2 for r in used])), rel_tol=1e-9)
    assert all(r.corners == 54 and r.found and r.error_px < 0.5 for r in used)


def test_real_opencv_samples_records(left_result):
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in left_result.images}
    # left.jpg (612x459, a stereo scene) has no board; every leftNN.jpg is used
    assert not by_name["left.jpg"].found and not by_name["left.jpg"].used
    assert "no 9x6 chessboard found" in by_name["left.jpg"].reason
    assert by_name["left.jpg"].error_px is None
    assert all(r.used for name, r in by_name.items() if name != "left.jpg")
    report = left_result.report()
    assert f"RMS reprojection error: {left_result.rms:.4f} px" in report
    assert "left.jpg" in report and "dropped" in report


def test_real_opencv_samples_classic_detector(left_images):
    res = calibrate(left_images, detector="classic")
    assert res.rms <= 0.5
    assert all(r.used for r in res.images if r.found)


def test_real_outlier_image_is_dropped(left_images):
    """A copy of left01.jpg bent by a wave no lens produces is found, fits badly, and is dropped as an outlier."""
    img = cv2.imread(left_images[1], cv2.IMREAD_GRAYSCALE)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bent = cv2.remap(img, xx + 3.0 * np.sin(yy / 25.0), yy + 3.0 * np.cos(xx / 30.0), cv2.INTER_LINEAR)
    images = [p for p in left_images if not p.endswith("left.jpg")] + [bent]
    res = calibrate(images)
    bad = res.images[-1]
    assert bad.path == f"<array {len(images) - 1}>"
    assert bad.found and not bad.used
    assert bad.reason.startswith("outlier: reprojection error")
    assert bad.error_px > res.outlier_threshold_px >= 0.5
    assert res.rms <= 0.5
    assert len(res.used) == len(images) - 1


def test_real_images_not_enough_boards(left_images):
    with pytest.raises(BoardNotFoundError, match=r"only 2 of 3 images .* need at least 3") as info:
        calibrate([left_images[0], left_images[1], left_images[2]])
    assert "left.jpg: no 9x6 chessboard found" in str(info.value)
    assert "left01.jpg: ok" in str(info.value)
    assert "inner corners" in str(info.value)  # how to fix


# ============================================================================================== synthetic: pinhole
PINHOLE_TRUTH = CameraModel(640, 480, 520.0, 521.0, 318.0, 243.0, (-0.2, 0.08, 0.001, -0.0005, 0.0))


@pytest.fixture(scope="module")
def pinhole_views():
    return render_views(PINHOLE_TRUTH, 0.52)


def test_synthetic_pinhole_recovers_intrinsics(pinhole_views):
    res = calibrate(pinhole_views, board=(9, 6), square=0.04)
    cam = res.camera
    assert res.rms < 0.2
    assert cam.fx == pytest.approx(PINHOLE_TRUTH.fx, rel=0.01) and cam.fy == pytest.approx(PINHOLE_TRUTH.fy, rel=0.01)
    assert abs(cam.cx - PINHOLE_TRUTH.cx) < 3 and abs(cam.cy - PINHOLE_TRUTH.cy) < 3
    assert _angle_error_deg(PINHOLE_TRUTH, cam, 200) < 0.1
    assert all(r.used for r in res.images)


def test_synthetic_size_mismatch_and_unreadable_images_are_dropped(pinhole_views, tmp_path):
    small = render_views(PINHOLE_TRUTH.scaled(0.75), 0.52, poses=POSES[:1])[0]
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    images = list(pinhole_views[:5]) + [small, str(junk), str(tmp_path / "missing.png")]
    res = calibrate(images, board=(9, 6), square=0.04)
    assert len(res.used) == 5
    size_rec, junk_rec, missing_rec = res.images[5:]
    assert size_rec.found and not size_rec.used
    assert size_rec.reason == "image size 480x360 differs from 640x480 of the other images"
    assert not junk_rec.found and "not a readable image" in junk_rec.reason
    assert not missing_rec.found and "cannot read file" in missing_rec.reason
    report = res.report()
    assert "image size 480x360 differs" in report and "junk.jpg" in report


def test_synthetic_rational_model(pinhole_views):
    res = calibrate(pinhole_views, board=(9, 6), square=0.04, coefficients=8)
    assert len(res.camera.distortion) == 8
    assert res.rms < 0.2
    assert _angle_error_deg(PINHOLE_TRUTH, res.camera, 200) < 0.1


def test_rgb_arrays_are_accepted(pinhole_views):
    rgb = [np.repeat(v[:, :, None], 3, axis=2) for v in pinhole_views[:4]]
    res = calibrate(rgb, board=(9, 6), square=0.04, reject_outliers=False)
    assert len(res.used) == 4 and res.outlier_threshold_px is None


# ============================================================================================== synthetic: fisheye
FISHEYE_TRUTH = CameraModel(640, 480, 230.0, 231.0, 322.0, 238.0, (0.03, -0.01, 0.004, -0.001), "fisheye")


def test_synthetic_fisheye_recovers_intrinsics():
    views = render_views(FISHEYE_TRUTH, 0.27, poses=POSES + WIDE_POSES)
    res = calibrate(views, board=(9, 6), square=0.04, model="fisheye")
    cam = res.camera
    assert cam.model == "fisheye" and len(cam.distortion) == 4 and cam.skew == 0.0
    assert res.rms < 0.5
    assert cam.fx == pytest.approx(FISHEYE_TRUTH.fx, rel=0.015) and cam.fy == pytest.approx(FISHEYE_TRUTH.fy, rel=0.015)
    assert abs(cam.cx - FISHEYE_TRUTH.cx) < 3 and abs(cam.cy - FISHEYE_TRUTH.cy) < 3
    # the recovered lens bends rays like the true one out to ~250 px (about 65 degrees) off centre
    assert _angle_error_deg(FISHEYE_TRUTH, cam, 250) < 0.4
    assert all(r.used for r in res.images)


# ============================================================================================== synthetic: ChArUco
CHARUCO = CharucoBoardSpec(7, 5, 0.04, 0.03, "DICT_5X5_100")
CHARUCO_TRUTH = CameraModel(640, 480, 600.0, 602.0, 322.0, 236.0)


def _charuco_views(spec: CharucoBoardSpec, camera: CameraModel, occlude: bool = False) -> list[np.ndarray]:
    """Warp the generated board image into the views of POSES (homography K [r1 r2 t] A^-1, where A maps board metres
    to pixels of the generated image, measured by detecting the board in that image)."""
    flat = spec.image(pixels_per_square=80)
    corners, ids = charuco_detector(spec.cv_board())(flat)
    obj = charuco_object_corners(spec.cv_board())[ids]
    design = np.c_[obj[:, :2], np.ones(len(obj))]
    A, *_ = np.linalg.lstsq(design, corners, rcond=None)
    assert np.abs(design @ A - corners).max() < 0.05  # the generated image is an exact scaled board
    A3 = np.vstack([A.T, [0.0, 0.0, 1.0]])
    blurred = cv2.GaussianBlur(flat, (0, 0), 0.8)  # anti-alias the down-scaling warp
    size = np.array([spec.squares_x, spec.squares_y]) * spec.square_length
    views = []
    for frac, dist, tx, ty, roll, ox, oy in POSES:
        R, t = _board_pose(np.array(frac) * size, 0.6 * dist, tx, ty, roll, ox, oy)
        H = camera.K @ np.c_[R[:, 0], R[:, 1], t] @ np.linalg.inv(A3)
        view = cv2.warpPerspective(blurred, H, camera.size, flags=cv2.INTER_LINEAR, borderValue=128)
        if occlude:
            view[:, : camera.width // 2] = 128
        views.append(view)
    return views


def test_synthetic_charuco_recovers_intrinsics():
    res = calibrate(_charuco_views(CHARUCO, CHARUCO_TRUTH), charuco=CHARUCO)
    cam = res.camera
    assert res.rms < 0.2
    assert cam.fx == pytest.approx(CHARUCO_TRUTH.fx, rel=0.01) and cam.fy == pytest.approx(CHARUCO_TRUTH.fy, rel=0.01)
    assert abs(cam.cx - CHARUCO_TRUTH.cx) < 3 and abs(cam.cy - CHARUCO_TRUTH.cy) < 3
    assert all(r.used and r.corners == 24 for r in res.images)  # 6x4 inner corners, all visible
    assert "ChArUco board 7x5 squares" in res.board


def test_charuco_partial_views_and_wrong_dictionary():
    views = _charuco_views(CHARUCO, CHARUCO_TRUTH, occlude=True)
    res = calibrate(views, charuco=CHARUCO, reject_outliers=False)
    assert all(r.found for r in res.images if r.used) and len(res.used) >= 3
    assert any(0 < r.corners < 24 for r in res.used)  # partly hidden boards still count
    wrong = CharucoBoardSpec(7, 5, 0.04, 0.03, "DICT_4X4_50")
    with pytest.raises(BoardNotFoundError, match="ChArUco"):
        calibrate(views[:4], charuco=wrong)


def test_charuco_spec_validation():
    with pytest.raises(CalibrationError, match="marker_length .* must be smaller than square_length"):
        CharucoBoardSpec(7, 5, 0.03, 0.04)
    with pytest.raises(CalibrationError, match="squares_x must be an integer >= 2"):
        CharucoBoardSpec(1, 5, 0.04, 0.03)
    with pytest.raises(CalibrationError, match="square_length must be a positive length"):
        CharucoBoardSpec(7, 5, -0.04, 0.03)
    with pytest.raises(CalibrationError, match="unknown ArUco dictionary 'DICT_9X9_1'; expected one of .*DICT_5X5_100"):
        CharucoBoardSpec(7, 5, 0.04, 0.03, "DICT_9X9_1").cv_board()
    assert CHARUCO.inner_corners == (6, 4)
    img = CHARUCO.image(pixels_per_square=20, margin=10)
    assert img.shape == (5 * 20 + 20, 7 * 20 + 20) and img.dtype == np.uint8


# ============================================================================================== errors and arguments
def test_blank_images_raise_board_not_found():
    blank = [np.full((480, 640), 128, np.uint8)] * 3
    with pytest.raises(BoardNotFoundError, match=r"only 0 of 3 images") as info:
        calibrate(blank)
    assert "<array 0>: no 9x6 chessboard found (tried findChessboardCornersSB and findChessboardCorners)" in str(
        info.value
    )
    with pytest.raises(BoardNotFoundError, match="no images given"):
        calibrate([])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(board=(1, 6)), "board must be \\(nx, ny\\) inner corners"),
        (dict(board="9x6"), "board must be \\(nx, ny\\) inner corners"),
        (dict(square=-0.025), "square must be a positive length"),
        (dict(model="omni"), "model must be one of"),
        (dict(coefficients=6), "pinhole coefficients must be one of"),
        (dict(model="fisheye", coefficients=5), "fisheye model has exactly 4"),
        (dict(detector="fast"), "detector must be one of"),
        (dict(min_images=0), "min_images must be a positive integer"),
        (dict(charuco=(7, 5)), "charuco must be a CharucoBoardSpec"),
        (dict(outlier_k=0), "outlier_k must be a positive number"),
        (dict(outlier_floor_px=float("nan")), "outlier_floor_px must be a non-negative number"),
        (dict(max_rejection_rounds=-1), "max_rejection_rounds must be an integer >= 0"),
        (dict(min_charuco_corners=2), "min_charuco_corners must be an integer >= 4"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(CalibrationError, match=message):
        calibrate([np.zeros((48, 64), np.uint8)], **kwargs)


def test_a_single_path_is_not_a_list():
    with pytest.raises(CalibrationError, match="wrap a single path in a list"):
        calibrate("left01.jpg")


def test_unsupported_arrays_are_recorded():
    with pytest.raises(BoardNotFoundError) as info:
        calibrate([np.zeros((48, 64), np.float32), np.zeros((4, 48, 64, 3), np.uint8), 42])
    text = str(info.value)
    assert "unsupported image dtype float32" in text and "unsupported image shape" in text
    assert "expected an image path or uint8 array, got int" in text


def test_records_are_frozen():
    rec = ImageRecord("a.jpg", True, True, 0.2)
    with pytest.raises(AttributeError):
        rec.used = False  # type: ignore[misc]


# ============================================================================================== cv_compat
def test_fisheye_flags_are_distinct_bits():
    names = ["RECOMPUTE_EXTRINSIC", "CHECK_COND", "FIX_SKEW", "FIX_K1", "FIX_K2", "FIX_K3", "FIX_K4",
             "FIX_PRINCIPAL_POINT", "USE_INTRINSIC_GUESS"]
    values = [fisheye_flag(n) for n in names]
    assert all(v > 0 and v & (v - 1) == 0 for v in values)
    assert len(set(values)) == len(values)
    with pytest.raises(CalibrationError, match="unknown fisheye calibration flag"):
        fisheye_flag("RATIONAL_MODEL")


def test_fisheye_point_layout_is_detected():
    assert fisheye_point_layout() in ("n1c", "1nc")


def test_aruco_dictionary_names_are_case_insensitive():
    assert aruco_dictionary("dict_5x5_100").bytesList.shape == aruco_dictionary("5X5_100").bytesList.shape
    assert aruco_dictionary("DICT_APRILTAG_36H11") is not None


def test_storage_modes():
    assert storage_mode("READ") == cv2.FILE_STORAGE_READ
    assert storage_mode("WRITE") == cv2.FILE_STORAGE_WRITE
    with pytest.raises(CalibrationError):
        storage_mode("NOPE")
