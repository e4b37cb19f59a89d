"""Camera files: OpenCV FileStorage YAML and ROS camera_info YAML both ways, CameraInfo fields, the default camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

cv2 = pytest.importorskip("cv2")

from calibration.camera import CameraModel  # noqa: E402
from calibration.camera_io import (  # noqa: E402
    camera_from_camera_info,
    camera_from_text,
    camera_info_fields,
    camera_to_text,
    default_camera,
    load_camera,
    save_camera,
)
from calibration.errors import CalibrationError, CameraFileError, CameraModelError  # noqa: E402

PINHOLE5 = CameraModel(640, 480, 531.8781829628948, 531.8835040372498, 341.974575555916, 233.1288529874864,
                       (-0.31155792869428134, 0.16820466007072243, 0.0009203789245174804, 0.0004313738640225721,
                        -0.03275062048933978))
PINHOLE8 = CameraModel(1280, 960, 1010.123456789, 1008.987654321, 645.3, 478.9,
                       (-0.21, 0.06, 1.2e-05, -9e-06, -0.01, 0.05, 0.01, 2e-07))
FISHEYE = CameraModel(1920, 1080, 612.5, 611.75, 961.2, 539.8, (0.031, -0.012, 0.0042, -0.0011), "fisheye",
                      skew=0.25)
CAMERAS = {"pinhole5": PINHOLE5, "pinhole8": PINHOLE8, "fisheye": FISHEYE}
ROS_KEYS = [
    "image_width",
    "image_height",
    "camera_name",
    "camera_matrix",
    "distortion_model",
    "distortion_coefficients",
    "rectification_matrix",
    "projection_matrix",
]


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["opencv", "ros"])
@pytest.mark.parametrize("name", list(CAMERAS))
def test_round_trip_is_exact(tmp_path, fmt, name):
    cam = CAMERAS[name]
    path = save_camera(cam, tmp_path / f"{name}.yaml", fmt=fmt, name="front")
    assert path == tmp_path / f"{name}.yaml"
    assert load_camera(path) == cam
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left over


@pytest.mark.parametrize("fmt", ["opencv", "ros"])
def test_round_trip_of_4_and_0_coefficients(tmp_path, fmt):
    for cam in (
        CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0, (-0.1, 0.01, 0.001, -0.002)),
        CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0),
    ):
        back = load_camera(save_camera(cam, tmp_path / "c.yaml", fmt=fmt))
        # 4 coefficients stay 4 in OpenCV files; ROS plumb_bob pads k3 = 0; no distortion is written as zeros
        assert back.model == "pinhole" and back.K.tolist() == cam.K.tolist()
        assert back.D[: len(cam.distortion)].tolist() == list(cam.distortion)
        assert not any(back.D[len(cam.distortion) :])
        pts = np.array([[0.3, -0.2, 1.0], [-0.1, 0.25, 2.0]])
        np.testing.assert_array_equal(back.project(pts)[0], cam.project(pts)[0])


def test_thin_prism_round_trips_in_opencv_format_only(tmp_path):
    cam = CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0, (-0.1, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-3, 0, 0, 0))
    assert load_camera(save_camera(cam, tmp_path / "c.yaml")) == cam
    with pytest.raises(CameraModelError, match="thin-prism"):
        save_camera(cam, tmp_path / "c_ros.yaml", fmt="ros")


def test_opencv_file_reads_back_with_raw_filestorage(tmp_path):
    path = save_camera(PINHOLE8, tmp_path / "camera.yaml", fmt="opencv", name="front")
    assert path.read_text().startswith("%YAML")
    assert "!!opencv-matrix" in path.read_text()
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        assert fs.isOpened()
        assert fs.getNode("image_width").isInt() and int(fs.getNode("image_width").real()) == 1280
        assert int(fs.getNode("image_height").real()) == 960
        np.testing.assert_array_equal(fs.getNode("camera_matrix").mat(), PINHOLE8.K)
        D = fs.getNode("distortion_coefficients").mat()
        assert D.shape == (8, 1)
        np.testing.assert_array_equal(D.ravel(), PINHOLE8.distortion)
        assert fs.getNode("distortion_model").string() == "pinhole"
        assert fs.getNode("camera_name").string() == "front"
    finally:
        fs.release()


def test_fisheye_opencv_file_says_fisheye(tmp_path):
    path = save_camera(FISHEYE, tmp_path / "fisheye.yaml")
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    assert fs.getNode("distortion_model").string() == "fisheye"
    assert fs.getNode("distortion_coefficients").mat().ravel().tolist() == list(FISHEYE.distortion)
    assert fs.getNode("camera_matrix").mat()[0, 1] == 0.25
    fs.release()


@pytest.mark.parametrize("name", list(CAMERAS))
def test_ros_yaml_has_the_exact_ros_keys(tmp_path, name):
    cam = CAMERAS[name]
    path = save_camera(cam, tmp_path / "camera_info.yaml", fmt="ros", name="narrow_stereo")
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ROS_KEYS
    assert doc["image_width"] == cam.width and doc["image_height"] == cam.height
    assert doc["camera_name"] == "narrow_stereo"
    expected_model = {"pinhole5": "plumb_bob", "pinhole8": "rational_polynomial", "fisheye": "equidistant"}[name]
    assert doc["distortion_model"] == expected_model
    for key, (rows, cols) in {
        "camera_matrix": (3, 3),
        "distortion_coefficients": (1, len(cam.distortion)),
        "rectification_matrix": (3, 3),
        "projection_matrix": (3, 4),
    }.items():
        assert set(doc[key]) == {"rows", "cols", "data"}
        assert (doc[key]["rows"], doc[key]["cols"]) == (rows, cols)
        assert len(doc[key]["data"]) == rows * cols
        assert all(isinstance(v, float) for v in doc[key]["data"])  # 1e-05 must not come back as a string
    assert doc["camera_matrix"]["data"] == cam.K.ravel().tolist()
    assert doc["distortion_coefficients"]["data"] == list(cam.distortion)
    assert doc["rectification_matrix"]["data"] == np.eye(3).ravel().tolist()
    assert doc["projection_matrix"]["data"] == np.c_[cam.K, np.zeros(3)].ravel().tolist()


# ---------------------------------------------------------------------------------------------- third-party files
OPENCV_SAMPLE = """%YAML:1.0
---
calibration_time: "Thu 01 Jan 2015 12:00:00 PM CET"
nr_of_frames: 13
image_width: 640
image_height: 480
board_width: 9
board_height: 6
square_size: 2.5000000372529030e-02
# flags: +fix_principal_point
flags: 4
fisheye_model: 0
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 5.3591573396163199e+02, 0., 3.4228315473308373e+02, 0.,
       5.3591573396163199e+02, 2.3557082909788173e+02, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ -2.6637260909660682e-01, -3.8588898922304653e-02,
       1.7831947042852964e-03, -2.8122100441115472e-04,
       2.3839153080878486e-01 ]
avg_reprojection_error: 3.9259098975581364e-01
per_view_reprojection_errors: !!opencv-matrix
   rows: 2
   cols: 1
   dt: f
   data: [ 1.92965463e-01, 1.18204820e+00 ]
extrinsic_parameters: !!opencv-matrix
   rows: 2
   cols: 6
   dt: d
   data: [ 1.6e-01, 2.7e-01, 1.3e-02, -3.4e+00, -4.3e+00, 1.5e+01, 4.1e-01, 6.5e-01, -1.3e+00, -3.6e+00,
       5.5e-01, 1.2e+01 ]
"""

ROS_SAMPLE = """image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [ 430.15433,    0.     ,  306.17861,
            0.     ,  430.5347 ,  227.22282,
            0.     ,    0.     ,    1.     ]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.337488, 0.096420, 0.000834, -0.000173, 1e-05]
rectification_matrix:
  rows: 3
  cols: 3
  data: [ 1.,  0.,  0.,
          0.,  1.,  0.,
          0.,  0.,  1.]
projection_matrix:
  rows: 3
  cols: 4
  data: [ 362.0827,    0.     ,  305.8871,    0.     ,
            0.     ,  397.66513,  225.89461,    0.     ,
            0.     ,    0.     ,    1.     ,    0.     ]
"""


def test_reads_opencv_calibration_sample_output(tmp_path):
    path = tmp_path / "out_camera_data.yml"
    path.write_text(OPENCV_SAMPLE)
    cam = load_camera(path)
    assert cam.model == "pinhole" and cam.size == (640, 480)
    assert cam.fx == pytest.approx(535.91573396163199) and cam.cy == pytest.approx(235.57082909788173)
    assert len(cam.distortion) == 5 and cam.distortion[4] == pytest.approx(0.23839153080878486)


def test_reads_opencv_tutorial_fisheye_flag():
    text = OPENCV_SAMPLE.replace("fisheye_model: 0", "fisheye_model: 1").replace(
        """   rows: 5
   cols: 1
   dt: d
   data: [ -2.6637260909660682e-01, -3.8588898922304653e-02,
       1.7831947042852964e-03, -2.8122100441115472e-04,
       2.3839153080878486e-01 ]""",
        """   rows: 4
   cols: 1
   dt: d
   data: [ 0.03, -0.01, 0.004, -0.001 ]""",
    )
    assert camera_from_text(text).model == "fisheye"


def test_opencv_distortion_model_and_fisheye_flag_must_agree():
    text = OPENCV_SAMPLE.replace("fisheye_model: 0", "fisheye_model: 0\ndistortion_model: fisheye")
    with pytest.raises(CameraFileError, match="remove one of the two keys"):
        camera_from_text(text)


def test_reads_ros_camera_calibration_output(tmp_path):
    path = tmp_path / "ost.yaml"
    path.write_text(ROS_SAMPLE)
    cam = load_camera(path)
    assert cam.model == "pinhole" and cam.size == (640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (430.15433, 430.5347, 306.17861, 227.22282)
    assert cam.distortion == (-0.337488, 0.096420, 0.000834, -0.000173, 1e-05)  # '1e-05' is a string to PyYAML


def test_reads_opencv_xml_filestorage(tmp_path):
    fs = cv2.FileStorage(str(tmp_path / "c.xml"), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", PINHOLE5.K)
    fs.write("distortion_coefficients", PINHOLE5.D.reshape(1, -1))
    fs.release()
    assert load_camera(tmp_path / "c.xml") == PINHOLE5


def test_ros_equidistant_is_opencv_fisheye():
    text = camera_to_text(FISHEYE, fmt="ros")
    assert "distortion_model: equidistant" in text
    assert camera_from_text(text).model == "fisheye"


# ---------------------------------------------------------------------------------------------- errors
def _opencv_text(**replace: str) -> str:
    text = camera_to_text(PINHOLE5, fmt="opencv")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_error_missing_file(tmp_path):
    with pytest.raises(CameraFileError, match="cannot read camera file .*check the path"):
        load_camera(tmp_path / "nope.yaml")


def test_error_binary_file(tmp_path):
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(CameraFileError, match="not a text file"):
        load_camera(path)


@pytest.mark.parametrize(
    "text, got",
    [
        ("focal_length: 500\nsensor: [640, 480]\n", "mapping with keys"),
        ("- 1\n- 2\n", "a YAML list"),
        ("{{{ not yaml", "not YAML"),
        ("", "a YAML NoneType"),
    ],
)
def test_error_unknown_format(text, got):
    with pytest.raises(CameraFileError, match="unknown camera file format") as info:
        camera_from_text(text, source="x.yaml")
    assert got in str(info.value)
    assert "OpenCV FileStorage" in str(info.value) and "ROS camera_info" in str(info.value)


def test_error_broken_opencv_file():
    text = _opencv_text(**{"   rows: 3\n   cols: 3": "   rows: 3\n   cols: [3"})
    with pytest.raises(CameraFileError, match="cv2.FileStorage cannot parse it"):
        camera_from_text(text)


@pytest.mark.parametrize("key", ["image_width", "image_height", "camera_matrix", "distortion_coefficients"])
def test_error_opencv_missing_key(key):
    text = _opencv_text(**{f"{key}:": "something_else:"})
    with pytest.raises(CameraFileError, match=f"missing .*{key}.*found keys: .*something_else"):
        camera_from_text(text, source="cam.yaml")


def test_error_opencv_wrong_matrix_shape():
    cv_fs = cv2.FileStorage("", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY | cv2.FILE_STORAGE_FORMAT_YAML)
    cv_fs.write("image_width", 640)
    cv_fs.write("image_height", 480)
    cv_fs.write("camera_matrix", np.c_[PINHOLE5.K, np.zeros(3)])
    cv_fs.write("distortion_coefficients", PINHOLE5.D)
    text = cv_fs.releaseAndGetString()
    with pytest.raises(CameraFileError, match="camera_matrix must be a 3x3 matrix .* got shape 3x4"):
        camera_from_text(text)


def test_error_opencv_matrix_is_not_a_matrix():
    text = _opencv_text() + "\n"
    text = text.replace("distortion_coefficients: !!opencv-matrix", "unused: !!opencv-matrix")
    text += 'distortion_coefficients: "none"\n'
    with pytest.raises(CameraFileError, match="distortion_coefficients must be an !!opencv-matrix.*got a string"):
        camera_from_text(text)


def test_error_opencv_unknown_distortion_model():
    text = _opencv_text(**{"distortion_model: pinhole": "distortion_model: double_sphere"})
    with pytest.raises(CameraFileError, match="unknown distortion_model 'double_sphere'; expected 'pinhole'"):
        camera_from_text(text)


def test_error_opencv_bad_width():
    text = _opencv_text(**{"image_width: 640": "image_width: -640"})
    with pytest.raises(CameraFileError, match="image_width must be a positive integer"):
        camera_from_text(text)


def test_error_opencv_impossible_camera_names_the_file():
    fs = cv2.FileStorage("", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY | cv2.FILE_STORAGE_FORMAT_YAML)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", np.diag([-531.0, 531.0, 1.0]))
    fs.write("distortion_coefficients", np.zeros((5, 1)))
    text = fs.releaseAndGetString()
    with pytest.raises(CameraFileError, match="^cam.yaml: focal lengths must be positive"):
        camera_from_text(text, source="cam.yaml")


def _ros_doc() -> dict:
    return yaml.safe_load(camera_to_text(PINHOLE5, fmt="ros"))


@pytest.mark.parametrize("key", ["image_width", "image_height", "camera_matrix", "distortion_model",
                                 "distortion_coefficients"])
def test_error_ros_missing_key(key):
    doc = _ros_doc()
    del doc[key]
    if key == "camera_matrix":  # without it the file no longer looks like ROS at all
        with pytest.raises(CameraFileError, match="unknown camera file format"):
            camera_from_text(yaml.safe_dump(doc))
        return
    with pytest.raises(CameraFileError, match=f"missing key '{key}'; expected a ROS camera_info YAML"):
        camera_from_text(yaml.safe_dump(doc))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("camera_matrix", {"rows": 2, "cols": 3, "data": [1.0] * 6}, "camera_matrix must be 3x3, got 2x3"),
        ("camera_matrix", {"rows": 3, "cols": 3, "data": [1.0] * 8}, "says rows=3, cols=3 but data holds 8 values"),
        ("camera_matrix", {"data": [1.0] * 9}, r"must be a mapping \{rows, cols, data\}"),
        ("projection_matrix", {"rows": 3, "cols": 3, "data": [1.0] * 9}, "projection_matrix must be 3x4, got 3x3"),
        ("distortion_coefficients", {"rows": 1, "cols": 2, "data": ["a", "b"]}, "must hold only numbers"),
        ("distortion_coefficients", {"rows": 1, "cols": 8, "data": [0.0] * 8},
         "plumb_bob takes 5 coefficients, got 8.*set distortion_model: rational_polynomial"),
        ("distortion_model", "kannala_brandt", "unknown distortion_model 'kannala_brandt'; expected one of plumb_bob"),
        ("image_height", True, "image_height must be a positive integer"),
    ],
)
def test_error_ros_bad_values(key, value, message):
    doc = _ros_doc()
    doc[key] = value
    with pytest.raises(CameraFileError, match=message):
        camera_from_text(yaml.safe_dump(doc), source="ost.yaml")


# ---------------------------------------------------------------------------------------------- CameraInfo
def test_camera_info_fields():
    fields = camera_info_fields(PINHOLE5)
    assert set(fields) == {"height", "width", "distortion_model", "d", "k", "r", "p"}
    assert (fields["width"], fields["height"]) == (640, 480)
    assert fields["distortion_model"] == "plumb_bob"
    assert fields["d"] == list(PINHOLE5.distortion)
    assert fields["k"] == PINHOLE5.K.ravel().tolist() and len(fields["k"]) == 9
    assert fields["r"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert len(fields["p"]) == 12 and fields["p"][3] == fields["p"][7] == fields["p"][11] == 0.0
    assert fields["p"][:3] == fields["k"][:3]
    assert all(isinstance(v, float) for key in "dkrp" for v in fields[key])
    assert isinstance(fields["width"], int)


@pytest.mark.parametrize(
    "cam, model, n",
    [
        (PINHOLE5, "plumb_bob", 5),
        (PINHOLE8, "rational_polynomial", 8),
        (FISHEYE, "equidistant", 4),
        (CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0, (-0.1, 0.01, 0.0, 0.0)), "plumb_bob", 5),
        (CameraModel(640, 480, 500.0, 500.0, 320.0, 240.0), "plumb_bob", 5),
    ],
)
def test_camera_info_models_and_round_trip(cam, model, n):
    fields = camera_info_fields(cam)
    assert fields["distortion_model"] == model and len(fields["d"]) == n
    back = camera_from_camera_info(fields["width"], fields["height"], fields["distortion_model"], fields["d"],
                                   fields["k"])
    assert back.K.tolist() == cam.K.tolist() and back.model == cam.model
    assert back.D.tolist()[: len(cam.distortion)] == list(cam.distortion)


def test_camera_from_camera_info_accepts_empty_d_and_arrays():
    cam = camera_from_camera_info(640, 480, "plumb_bob", [], np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1]))
    assert cam.distortion == ()


@pytest.mark.parametrize(
    "args, message",
    [
        ((640, 480, "fisheye", [0.0] * 4, [500, 0, 320, 0, 500, 240, 0, 0, 1]), "unknown distortion_model 'fisheye'"),
        ((640, 480, "equidistant", [0.0] * 5, [500, 0, 320, 0, 500, 240, 0, 0, 1]), "takes 4 coefficients, got 5"),
        ((640, 480, "plumb_bob", [0.0] * 5, [500, 0, 320, 0, 500, 240]), "K must hold 9 values"),
        ((640, 480, "plumb_bob", [0.0] * 5, [0.0] * 9), "uncalibrated"),
        ((0, 480, "plumb_bob", [0.0] * 5, [500, 0, 320, 0, 500, 240, 0, 0, 1]), "width must be a positive integer"),
    ],
)
def test_camera_from_camera_info_errors(args, message):
    with pytest.raises(CameraFileError, match=message):
        camera_from_camera_info(*args)


# ---------------------------------------------------------------------------------------------- save errors
def test_save_errors(tmp_path):
    with pytest.raises(CameraFileError, match="unknown camera file format 'json'"):
        save_camera(PINHOLE5, tmp_path / "c.json", fmt="json")
    with pytest.raises(CameraFileError, match="cannot write camera file"):
        save_camera(PINHOLE5, tmp_path / "missing" / "folder" / "c.yaml")
    with pytest.raises(CameraFileError, match="expected a CameraModel"):
        save_camera({"fx": 1}, tmp_path / "c.yaml")
    assert list(tmp_path.iterdir()) == []


def test_errors_are_calibration_errors():
    with pytest.raises(CalibrationError):
        camera_from_text("nonsense: 1\n")


# ---------------------------------------------------------------------------------------------- default camera
def test_default_camera():
    cam = default_camera()
    assert cam is default_camera()  # parsed once
    assert cam.model == "pinhole" and cam.size == (640, 480)
    assert cam.fx == cam.fy
    assert (cam.cx, cam.cy) == (319.5, 239.5)
    assert cam.distortion[0] == pytest.approx(-0.05) and not any(cam.distortion[1:])
    assert cam.hfov_deg == pytest.approx(70.0, abs=0.1)
    assert math.isfinite(cam.max_valid_radius) and cam.max_valid_radius > 2.0  # monotonic well past the corners


def test_default_camera_file_is_opencv_filestorage():
    from importlib import resources

    text = resources.files("calibration").joinpath("cameras").joinpath("default_640x480.yaml").read_text()
    assert text.startswith("%YAML:1.0")
    fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    np.testing.assert_array_equal(fs.getNode("camera_matrix").mat(), default_camera().K)
    fs.release()
