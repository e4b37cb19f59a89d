"""Camera files: OpenCV ``FileStorage`` YAML and ROS ``camera_info`` YAML, both ways; ROS CameraInfo fields.

Formats
-------
``opencv``
    What OpenCV's calibration samples write with ``cv::FileStorage``: ``image_width``, ``image_height``,
    ``camera_matrix`` (3x3 ``!!opencv-matrix``), ``distortion_coefficients`` (n x 1 ``!!opencv-matrix``) and, from
    SkyFix, ``distortion_model: pinhole|fisheye``. Read with ``cv2.FileStorage`` (the ``%YAML:1.0`` / ``%YAML 1.2``
    header and the ``!!opencv-matrix`` tags are not plain YAML). Without ``distortion_model`` the OpenCV tutorial's
    ``fisheye_model: 0|1`` is honoured; with neither the camera is ``pinhole``. Extra keys (``calibration_time``,
    ``avg_reprojection_error``, ``extrinsic_parameters``, ...) are ignored. XML/JSON FileStorage files are read too.
``ros``
    ``camera_calibration_parsers`` YAML: ``image_width``, ``image_height``, ``camera_name``, ``camera_matrix``,
    ``distortion_model``, ``distortion_coefficients``, ``rectification_matrix``, ``projection_matrix``, each matrix
    as ``{rows, cols, data}``. Read with ``yaml.safe_load``. ``plumb_bob`` = pinhole with 5 coefficients,
    ``rational_polynomial`` = pinhole with 8, ``equidistant`` = OpenCV fisheye with 4.

All errors are :class:`~calibration.errors.CameraFileError` and say what was expected, what came and how to fix it.
OpenCV and PyYAML are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .camera import FISHEYE, PINHOLE, CameraModel
from .errors import CalibrationError, CameraFileError, CameraModelError

OPENCV = "opencv"
ROS = "ros"
FORMATS = (OPENCV, ROS)

ROS_PLUMB_BOB = "plumb_bob"
ROS_RATIONAL_POLYNOMIAL = "rational_polynomial"
ROS_EQUIDISTANT = "equidistant"
# ROS distortion model -> (CameraModel.model, number of coefficients)
ROS_DISTORTION_MODELS: dict[str, tuple[str, int]] = {
    ROS_PLUMB_BOB: (PINHOLE, 5),
    ROS_RATIONAL_POLYNOMIAL: (PINHOLE, 8),
    ROS_EQUIDISTANT: (FISHEYE, 4),
}
# accepted values of ``distortion_model`` in an OpenCV FileStorage camera file
_OPENCV_MODEL_NAMES = {
    "pinhole": PINHOLE,
    ROS_PLUMB_BOB: PINHOLE,
    ROS_RATIONAL_POLYNOMIAL: PINHOLE,
    "fisheye": FISHEYE,
    ROS_EQUIDISTANT: FISHEYE,
}
_OPENCV_REQUIRED = ("image_width", "image_height", "camera_matrix", "distortion_coefficients")
_ROS_REQUIRED = ("image_width", "image_height", "camera_matrix", "distortion_model", "distortion_coefficients")

DEFAULT_CAMERA_FILE = "default_640x480.yaml"


# ============================================================================================== public API
def load_camera(path: str | os.PathLike[str]) -> CameraModel:
    """Read a camera file, detecting its format (OpenCV FileStorage or ROS camera_info YAML).

    Args:
        path: file path.
    Returns:
        The :class:`CameraModel` (pixel units; distortion in OpenCV's order).
    Raises:
        CameraFileError: unreadable file, unknown format, missing key, wrong matrix shape, unknown distortion
            model or impossible values.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CameraFileError(
            f"cannot read camera file {str(path)!r}: {exc.strerror or exc}; "
            "expected a readable OpenCV or ROS camera YAML file - check the path"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CameraFileError(
            f"{path}: not a text file (invalid UTF-8 at byte {exc.start}); expected an OpenCV FileStorage or "
            "ROS camera_info YAML file - is this an image or a binary file?"
        ) from exc
    return camera_from_text(text, source=str(path))


def save_camera(
    camera: CameraModel, path: str | os.PathLike[str], fmt: str = OPENCV, name: str = "camera"
) -> Path:
    """Write ``camera`` to ``path`` as ``fmt`` (``"opencv"`` FileStorage YAML or ``"ros"`` camera_info YAML).

    The file is written to a temporary name next to ``path`` and renamed into place, so readers never see half a
    file. ``name`` becomes ``camera_name``. Pinhole cameras with fewer than 5 coefficients are written to ROS as
    ``plumb_bob`` padded with zeros; 12-coefficient (thin-prism) cameras only fit the OpenCV format.

    Returns:
        The path written.
    """
    text = camera_to_text(camera, fmt=fmt, name=name)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise CameraFileError(
            f"cannot write camera file {str(path)!r}: {exc.strerror or exc}; check that the folder exists and "
            "is writable"
        ) from exc
    return path


def camera_to_text(camera: CameraModel, fmt: str = OPENCV, name: str = "camera") -> str:
    """The text :func:`save_camera` writes (``fmt`` = ``"opencv"`` or ``"ros"``)."""
    if not isinstance(camera, CameraModel):
        raise CameraFileError(f"expected a CameraModel to write, got {type(camera).__name__}")
    if fmt == OPENCV:
        return _opencv_text(camera, name)
    if fmt == ROS:
        return _ros_text(camera, name)
    raise CameraFileError(f"unknown camera file format {fmt!r}; expected one of {FORMATS}")


def camera_from_text(text: str, source: str = "<text>") -> CameraModel:
    """Parse the contents of a camera file (format detected as in :func:`load_camera`); ``source`` names it in
    error messages."""
    if "opencv-matrix" in text:  # YAML tag !!opencv-matrix, XML type_id="opencv-matrix", JSON "type_id"
        return _parse_opencv(text, source)
    head = text.lstrip()
    if head.startswith("%YAML:") or head.startswith("<?xml"):
        return _parse_opencv(text, source)
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CameraFileError(
            f"{source}: unknown camera file format - not YAML ({_one_line(exc)}); expected OpenCV FileStorage YAML "
            "(camera_matrix: !!opencv-matrix) or ROS camera_info YAML (camera_matrix: {rows, cols, data}); "
            "write one with save_camera() or `skyfix calibrate -o`"
        ) from exc
    if isinstance(doc, Mapping) and isinstance(doc.get("camera_matrix"), Mapping):
        return _parse_ros(doc, source)
    got = (
        f"a mapping with keys {sorted(map(str, doc))}"
        if isinstance(doc, Mapping)
        else f"a YAML {type(doc).__name__}"
    )
    raise CameraFileError(
        f"{source}: unknown camera file format: expected OpenCV FileStorage YAML (image_width, image_height, "
        "camera_matrix: !!opencv-matrix, distortion_coefficients) or ROS camera_info YAML (image_width, "
        f"image_height, camera_matrix: {{rows, cols, data}}, distortion_model, distortion_coefficients); got {got}. "
        "Write one with save_camera() or `skyfix calibrate -o camera.yaml`"
    )


def camera_info_fields(camera: CameraModel) -> dict[str, Any]:
    """The ``sensor_msgs/CameraInfo`` fields of ``camera``.

    Returns:
        ``{"height": int, "width": int, "distortion_model": str, "d": list[float], "k": list[float] (9, row-major),
        "r": list[float] (9, identity), "p": list[float] (12, row-major [K | 0])}``. ``distortion_model`` is
        ``plumb_bob`` (pinhole with 0, 4 or 5 coefficients, padded to 5), ``rational_polynomial`` (8) or
        ``equidistant`` (fisheye, 4). A monocular camera's P is ``[K | 0]``.
    Raises:
        CameraModelError: 12-coefficient (thin-prism) cameras, which CameraInfo cannot describe.
    """
    model, d = _ros_distortion(camera)
    K = camera.K
    P = np.concatenate([K, np.zeros((3, 1))], axis=1)
    return {
        "height": int(camera.height),
        "width": int(camera.width),
        "distortion_model": model,
        "d": [float(c) for c in d],
        "k": [float(v) for v in K.ravel()],
        "r": [float(v) for v in np.eye(3).ravel()],
        "p": [float(v) for v in P.ravel()],
    }


def camera_from_camera_info(
    width: int, height: int, distortion_model: str, d: Sequence[float], k: Sequence[float]
) -> CameraModel:
    """Build a :class:`CameraModel` from ``sensor_msgs/CameraInfo`` fields.

    Args:
        width, height: image size in pixels.
        distortion_model: ``plumb_bob`` (5 coefficients), ``rational_polynomial`` (8) or ``equidistant`` (4,
            OpenCV fisheye). An empty ``d`` means no distortion.
        d: distortion coefficients in OpenCV's order.
        k: the 3x3 camera matrix, 9 values row-major (pixels).
    Raises:
        CameraFileError: unknown distortion model, wrong number of values, an uncalibrated (all-zero) K, or
            impossible intrinsics.
    """
    return _from_ros_values(width, height, distortion_model, d, k, source="CameraInfo")


@functools.lru_cache(maxsize=1)
def default_camera() -> CameraModel:
    """SkyFix's default camera for demos and simulation (``calibration/cameras/default_640x480.yaml``): 640x480,
    about 70 degrees horizontal field of view, mild barrel distortion (k1 = -0.05), principal point at the centre."""
    from importlib import resources

    resource = resources.files("calibration").joinpath("cameras").joinpath(DEFAULT_CAMERA_FILE)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise CameraFileError(
            f"the packaged default camera calibration/cameras/{DEFAULT_CAMERA_FILE} is missing ({exc}); "
            "reinstall SkyFix (pip install -e .) so that its package data is present"
        ) from exc
    return camera_from_text(text, source=f"calibration/cameras/{DEFAULT_CAMERA_FILE}")


# ============================================================================================== OpenCV format
def _opencv_text(camera: CameraModel, name: str) -> str:
    from .cv_compat import import_cv2, storage_mode

    cv2 = import_cv2()
    fs = cv2.FileStorage("", storage_mode("WRITE") | storage_mode("MEMORY") | storage_mode("FORMAT_YAML"))
    fs.write("image_width", int(camera.width))
    fs.write("image_height", int(camera.height))
    if name:
        fs.write("camera_name", str(name))
    fs.write("distortion_model", camera.model)
    fs.write("camera_matrix", camera.K)
    fs.write("distortion_coefficients", camera.D.reshape(-1, 1))
    return fs.releaseAndGetString()


def _parse_opencv(text: str, source: str) -> CameraModel:
    from .cv_compat import import_cv2, storage_mode

    cv2 = import_cv2()
    hint = (
        "expected an OpenCV FileStorage camera file (as cv2.FileStorage / OpenCV's calibration sample write it) "
        f"with keys {', '.join(_OPENCV_REQUIRED)}"
    )
    try:
        fs = cv2.FileStorage(text, storage_mode("READ") | storage_mode("MEMORY"))
        opened = fs.isOpened()
    except Exception as exc:  # cv2.error, or SystemError wrapping it (seen with OpenCV 5.0 on a parse error)
        raise CameraFileError(
            f"{source}: cv2.FileStorage cannot parse it ({_one_line(exc)}); {hint}. "
            "If it was edited by hand, keep the '%YAML:1.0' header and the '!!opencv-matrix' blocks"
        ) from exc
    if not opened:
        raise CameraFileError(f"{source}: cv2.FileStorage cannot open it; {hint}")
    try:
        root = fs.root()
        if not root.isMap():
            raise CameraFileError(f"{source}: the top level is not a mapping; {hint}")
        present = [k for k in root.keys()]
        for key in _OPENCV_REQUIRED:
            if fs.getNode(key).isNone():
                raise CameraFileError(
                    f"{source}: missing key {key!r}; {hint}; found keys: {', '.join(present) or 'none'}. "
                    "Add the key or re-save the camera with save_camera()"
                )
        width = _fs_int(fs.getNode("image_width"), "image_width", source)
        height = _fs_int(fs.getNode("image_height"), "image_height", source)
        K = _fs_matrix(fs.getNode("camera_matrix"), "camera_matrix", source)
        D = _fs_matrix(fs.getNode("distortion_coefficients"), "distortion_coefficients", source)
        model = _fs_model(fs, source)
    finally:
        fs.release()
    if K.shape != (3, 3):
        raise CameraFileError(
            f"{source}: camera_matrix must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got shape "
            f"{K.shape[0]}x{K.shape[1]}; fix the rows/cols of camera_matrix"
        )
    if D.size and min(D.shape) != 1:
        raise CameraFileError(
            f"{source}: distortion_coefficients must be a row or column vector (1 x n or n x 1), got shape "
            f"{D.shape[0]}x{D.shape[1]}; fix its rows/cols"
        )
    return _make_camera(width, height, K, D.ravel(), model, source)


def _fs_int(node: Any, key: str, source: str) -> int:
    if node.isInt() or node.isReal():
        value = float(node.real())
        if math.isfinite(value) and value == int(value) and value > 0:
            return int(value)
        raise CameraFileError(f"{source}: {key} must be a positive integer (pixels), got {value!r}")
    raise CameraFileError(f"{source}: {key} must be a positive integer (pixels), got a {_fs_kind(node)}")


def _fs_matrix(node: Any, key: str, source: str) -> np.ndarray:
    mat = None
    if node.isMap():
        try:
            mat = node.mat()
        except Exception:  # cv2.error for a mapping that is not an opencv-matrix
            mat = None
    if mat is None:
        raise CameraFileError(
            f"{source}: {key} must be an !!opencv-matrix (rows, cols, dt, data), got a {_fs_kind(node)}; "
            "write matrices with cv2.FileStorage or save_camera()"
        )
    mat = np.asarray(mat, dtype=np.float64)
    if mat.ndim == 1:
        mat = mat.reshape(-1, 1)
    if mat.ndim != 2:
        raise CameraFileError(f"{source}: {key} must be a 2-D single-channel matrix, got shape {mat.shape}")
    return mat


def _fs_kind(node: Any) -> str:
    for test, label in (
        ("isNone", "null"),
        ("isInt", "integer"),
        ("isReal", "number"),
        ("isString", "string"),
        ("isSeq", "sequence"),
        ("isMap", "mapping without matrix data"),
    ):
        if getattr(node, test)():
            return label
    return "value of unknown type"


def _fs_model(fs: Any, source: str) -> str:
    node = fs.getNode("distortion_model")
    model = None
    if not node.isNone():
        if not node.isString():
            raise CameraFileError(
                f"{source}: distortion_model must be a string, one of {sorted(_OPENCV_MODEL_NAMES)}, "
                f"got a {_fs_kind(node)}"
            )
        name = node.string().strip().lower()
        if name not in _OPENCV_MODEL_NAMES:
            raise CameraFileError(
                f"{source}: unknown distortion_model {node.string()!r}; expected 'pinhole' (OpenCV "
                "radial-tangential, also plumb_bob / rational_polynomial) or 'fisheye' (cv2.fisheye, also "
                "equidistant). Other lens models (e.g. double sphere, omnidirectional) are not supported"
            )
        model = _OPENCV_MODEL_NAMES[name]
    flag = fs.getNode("fisheye_model")  # what OpenCV's camera_calibration tutorial writes
    if not flag.isNone():
        if not (flag.isInt() or flag.isReal()):
            raise CameraFileError(f"{source}: fisheye_model must be 0 or 1, got a {_fs_kind(flag)}")
        from_flag = FISHEYE if flag.real() else PINHOLE
        if model is not None and model != from_flag:
            raise CameraFileError(
                f"{source}: distortion_model says {model!r} but fisheye_model is {int(flag.real())}; "
                "remove one of the two keys"
            )
        model = from_flag
    return model or PINHOLE


# ============================================================================================== ROS format
def _ros_distortion(camera: CameraModel) -> tuple[str, list[float]]:
    d = list(camera.distortion)
    if camera.model == FISHEYE:
        return ROS_EQUIDISTANT, d + [0.0] * (4 - len(d))
    if len(d) <= 5:
        return ROS_PLUMB_BOB, d + [0.0] * (5 - len(d))
    if len(d) == 8:
        return ROS_RATIONAL_POLYNOMIAL, d
    raise CameraModelError(
        f"ROS CameraInfo has no distortion model for {len(d)} pinhole coefficients (thin-prism s1..s4); "
        "expected 4, 5 (plumb_bob) or 8 (rational_polynomial). Recalibrate without the thin-prism model, or "
        "use the OpenCV format (fmt='opencv')"
    )


def _ros_text(camera: CameraModel, name: str) -> str:
    import yaml

    fields = camera_info_fields(camera)
    doc = {
        "image_width": fields["width"],
        "image_height": fields["height"],
        "camera_name": str(name),
        "camera_matrix": {"rows": 3, "cols": 3, "data": fields["k"]},
        "distortion_model": fields["distortion_model"],
        "distortion_coefficients": {"rows": 1, "cols": len(fields["d"]), "data": fields["d"]},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": fields["r"]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": fields["p"]},
    }
    # default_flow_style=None: matrices' data as [a, b, ...] like camera_calibration_parsers; PyYAML writes floats
    # with repr() (exact round trip) and always with a '.', so 1e-05 reads back as a float, not a string.
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=4096)


def _parse_ros(doc: Mapping[str, Any], source: str) -> CameraModel:
    hint = f"expected a ROS camera_info YAML file with keys {', '.join(_ROS_REQUIRED)}"
    for key in _ROS_REQUIRED:
        if key not in doc:
            raise CameraFileError(
                f"{source}: missing key {key!r}; {hint}; found keys: {', '.join(map(str, doc)) or 'none'}. "
                "Add the key (ROS: camera_calibration_parsers format) or re-save with save_camera(fmt='ros')"
            )
    K = _ros_matrix(doc, "camera_matrix", source, shape=(3, 3))
    D = _ros_matrix(doc, "distortion_coefficients", source, shape=None)
    for key, shape in (("rectification_matrix", (3, 3)), ("projection_matrix", (3, 4))):
        if doc.get(key) is not None:
            _ros_matrix(doc, key, source, shape=shape)
    width = _yaml_int(doc["image_width"], "image_width", source)
    height = _yaml_int(doc["image_height"], "image_height", source)
    return _from_ros_values(width, height, doc["distortion_model"], D.ravel(), K.ravel(), source)


def _ros_matrix(doc: Mapping[str, Any], key: str, source: str, shape: tuple[int, int] | None) -> np.ndarray:
    value = doc[key]
    want = f"{shape[0]}x{shape[1]}" if shape else "1 x n"
    if not isinstance(value, Mapping) or not {"rows", "cols", "data"} <= set(value):
        raise CameraFileError(
            f"{source}: {key} must be a mapping {{rows, cols, data}} ({want}), got "
            f"{_describe(value)}; write it as  {key}: {{rows: .., cols: .., data: [..]}}"
        )
    rows = _yaml_int(value["rows"], f"{key}.rows", source, allow_zero=True)
    cols = _yaml_int(value["cols"], f"{key}.cols", source, allow_zero=True)
    data = value["data"]
    if data is None:
        data = []
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise CameraFileError(f"{source}: {key}.data must be a list of numbers, got {_describe(data)}")
    try:
        values = np.array([float(v) for v in data], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CameraFileError(f"{source}: {key}.data must hold only numbers ({exc}); got {list(data)!r}") from exc
    if len(values) != rows * cols:
        raise CameraFileError(
            f"{source}: {key} says rows={rows}, cols={cols} but data holds {len(values)} values; "
            f"expected {rows * cols} - fix rows/cols or the data"
        )
    if shape is not None and (rows, cols) != shape:
        raise CameraFileError(
            f"{source}: {key} must be {want}, got {rows}x{cols}; fix its rows/cols and data"
        )
    if shape is None and rows * cols and min(rows, cols) != 1:
        raise CameraFileError(f"{source}: {key} must be a vector (1 x n), got {rows}x{cols}")
    if not np.all(np.isfinite(values)):
        raise CameraFileError(f"{source}: {key}.data must be finite numbers, got {values.tolist()}")
    return values.reshape(rows, cols)


def _from_ros_values(
    width: Any, height: Any, distortion_model: Any, d: Sequence[float], k: Sequence[float], source: str
) -> CameraModel:
    if not isinstance(distortion_model, str) or distortion_model not in ROS_DISTORTION_MODELS:
        raise CameraFileError(
            f"{source}: unknown distortion_model {distortion_model!r}; expected one of "
            f"{', '.join(ROS_DISTORTION_MODELS)} (plumb_bob: 5 coefficients k1 k2 p1 p2 k3; rational_polynomial: "
            "8, k1 k2 p1 p2 k3 k4 k5 k6; equidistant: 4, the OpenCV fisheye k1..k4)"
        )
    model, count = ROS_DISTORTION_MODELS[distortion_model]
    try:
        d = np.asarray(d, dtype=np.float64).ravel()
        k = np.asarray(k, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise CameraFileError(f"{source}: D and K must be numbers ({exc})") from exc
    if len(d) not in (0, count):
        other = [name for name, (m, n) in ROS_DISTORTION_MODELS.items() if n == len(d)]
        raise CameraFileError(
            f"{source}: distortion_model {distortion_model} takes {count} coefficients, got {len(d)}: "
            f"{d.tolist()}"
            + (f"; if these are {other[0]} coefficients, set distortion_model: {other[0]}" if other else "")
        )
    if len(k) != 9:
        raise CameraFileError(
            f"{source}: K must hold 9 values (3x3 row-major [fx, 0, cx, 0, fy, cy, 0, 0, 1]), got {len(k)}"
        )
    if not np.any(k):
        raise CameraFileError(
            f"{source}: K is all zeros, i.e. the camera is uncalibrated; calibrate it first (skyfix calibrate)"
        )
    return _make_camera(width, height, k.reshape(3, 3), d, model, source)


def _yaml_int(value: Any, key: str, source: str, allow_zero: bool = False) -> int:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value == int(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        what = "a non-negative integer" if allow_zero else "a positive integer (pixels)"
        raise CameraFileError(f"{source}: {key} must be {what}, got {value!r}")
    return int(value)


# ============================================================================================== shared helpers
def _make_camera(width: Any, height: Any, K: np.ndarray, d: np.ndarray, model: str, source: str) -> CameraModel:
    try:
        return CameraModel.from_matrix(width, height, K, tuple(float(c) for c in d), model)
    except CalibrationError as exc:
        raise CameraFileError(f"{source}: {exc}") from exc


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(map(str, value))}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    return f"{type(value).__name__} {value!r}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
