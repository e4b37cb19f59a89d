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
``kalibr`` (read only)
    Kalibr camchain YAML (``kalibr_calibrate_cameras`` / ``kalibr_calibrate_imu_camera``): ``cam0:`` with
    ``camera_model: pinhole``, ``intrinsics: [fu, fv, pu, pv]``, ``distortion_model: radtan|equidistant|none``,
    ``distortion_coeffs``, ``resolution: [width, height]`` and, from the IMU calibration, ``T_cam_imu`` (4x4), which
    :func:`mount_from_kalibr` (and ``calibration.geometry.load_mount``) turn into the camera mount. ``cam0`` unless
    another camera is named. Read with ``yaml.safe_load``.
key variants (read only)
    Other tools' names for the same things are accepted, in FileStorage files and in plain YAML: ``K`` /
    ``cameraMatrix`` for ``camera_matrix`` (an ``!!opencv-matrix``, 9 numbers or 3 rows), ``D`` / ``distCoeffs`` /
    ``dist_coeffs`` for ``distortion_coefficients``, ``width``/``height`` or ``image_size: [w, h]`` for the size;
    ROS 2 ``camera_info`` echoed as YAML (``width``, ``height``, ``distortion_model``, ``d``, ``k``) too. Two names
    for one thing with different values are refused.

All errors are :class:`~calibration.errors.CameraFileError` and say what was expected, what came and how to fix it.
OpenCV and PyYAML are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .camera import FISHEYE, PINHOLE, CameraModel
from .errors import CalibrationError, CameraFileError, CameraModelError

if TYPE_CHECKING:  # pragma: no cover
    from .geometry import Mount

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
# the key names other tools write for the same things (first = SkyFix's own); one of each group must be present
_K_KEYS = ("camera_matrix", "K", "cameraMatrix", "camera_matrix_K", "intrinsic_matrix", "k")
_D_KEYS = ("distortion_coefficients", "D", "distCoeffs", "dist_coeffs", "distortion_coeffs", "d")
_SIZE_KEYS = (("image_width", "image_height"), ("width", "height"), ("imageWidth", "imageHeight"))
_SIZE_PAIR_KEYS = ("image_size", "imageSize", "resolution")  # [width, height]
_SIZE_HINT = "image_width and image_height (or width/height, or image_size: [width, height])"
_ROS_REQUIRED = ("image_width", "image_height", "camera_matrix", "distortion_model", "distortion_coefficients")

DEFAULT_CAMERA_FILE = "default_640x480.yaml"


# ============================================================================================== public API
def load_camera(path: str | os.PathLike[str], kalibr_camera: str | None = None) -> CameraModel:
    """Read a camera file, detecting its format (OpenCV FileStorage, ROS camera_info YAML, Kalibr camchain, or
    a plain YAML mapping with K / D lists).

    Args:
        path: file path.
        kalibr_camera: which camera of a Kalibr camchain (``cam0``, ``cam1``, ...); default ``cam0``.
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
    return camera_from_text(text, source=str(path), kalibr_camera=kalibr_camera)


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


def camera_from_text(text: str, source: str = "<text>", kalibr_camera: str | None = None) -> CameraModel:
    """Parse the contents of a camera file (format detected as in :func:`load_camera`); ``source`` names it in
    error messages; ``kalibr_camera`` picks the camera of a Kalibr camchain (default ``cam0``)."""
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
            "write one with `skyfix calibrate -o camera.yaml`"
        ) from exc
    if isinstance(doc, Mapping) and kalibr_cameras(doc):
        return _parse_kalibr(doc, source, kalibr_camera)
    if isinstance(doc, Mapping) and isinstance(doc.get("camera_matrix"), Mapping):
        return _parse_ros(doc, source)
    if isinstance(doc, Mapping) and any(k in doc for k in _K_KEYS):
        return _parse_plain(doc, source)
    got = (
        f"a mapping with keys {sorted(map(str, doc))}"
        if isinstance(doc, Mapping)
        else f"a YAML {type(doc).__name__}"
    )
    raise CameraFileError(
        f"{source}: unknown camera file format: expected OpenCV FileStorage YAML (image_width, image_height, "
        "camera_matrix: !!opencv-matrix, distortion_coefficients) or ROS camera_info YAML (image_width, "
        f"image_height, camera_matrix: {{rows, cols, data}}, distortion_model, distortion_coefficients); got {got}. "
        "Kalibr camchain YAML (cam0: {intrinsics, distortion_model, distortion_coeffs, resolution}). "
        "Write one with `skyfix calibrate -o camera.yaml`"
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
        f"with {_SIZE_HINT}, camera_matrix (or K / cameraMatrix) and distortion_coefficients (or D / distCoeffs)"
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

        def missing(what: str) -> CameraFileError:
            return CameraFileError(
                f"{source}: missing {what}; {hint}; found keys: {', '.join(present) or 'none'}. "
                "Add the key, or write the file again with `skyfix calibrate -o camera.yaml`"
            )

        width = height = None
        for wkey, hkey in _SIZE_KEYS:
            if not fs.getNode(wkey).isNone() or not fs.getNode(hkey).isNone():
                if fs.getNode(wkey).isNone() or fs.getNode(hkey).isNone():
                    raise missing(f"{hkey if fs.getNode(hkey).isNone() else wkey} (it gives only one of {wkey}/{hkey})")
                width = _fs_int(fs.getNode(wkey), wkey, source)
                height = _fs_int(fs.getNode(hkey), hkey, source)
                break
        if width is None:
            for key in _SIZE_PAIR_KEYS:
                node = fs.getNode(key)
                if not node.isNone():
                    width, height = _fs_size_pair(node, key, source)
                    break
        if width is None:
            raise missing(f"the image size ({_SIZE_HINT})")
        K = _fs_alias_matrix(fs, _K_KEYS, source)
        if K is None:
            raise missing("the camera matrix (camera_matrix, K or cameraMatrix)")
        D = _fs_alias_matrix(fs, _D_KEYS, source)
        if D is None:
            raise missing("the distortion coefficients (distortion_coefficients, D or distCoeffs; [] for none)")
        model = _fs_model(fs, source)
    finally:
        fs.release()
    if K.shape == (1, 9) or K.shape == (9, 1):
        K = K.reshape(3, 3)
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


def _fs_alias_matrix(fs: Any, keys: Sequence[str], source: str) -> np.ndarray | None:
    """The matrix under the first of ``keys`` present (``!!opencv-matrix`` or a plain sequence of numbers); a
    second alias holding different values is an error (which one would be meant?)."""
    found: list[tuple[str, np.ndarray]] = []
    for key in keys:
        node = fs.getNode(key)
        if not node.isNone():
            found.append((key, _fs_matrix(node, key, source)))
    if not found:
        return None
    key0, m0 = found[0]
    for key, m in found[1:]:
        if m.shape != m0.shape or not np.array_equal(m, m0):
            raise CameraFileError(
                f"{source}: both {key0!r} and {key!r} are given with different values; they name the same thing "
                f"- keep one of them"
            )
    return m0


def _fs_size_pair(node: Any, key: str, source: str) -> tuple[int, int]:
    vals: list[float] = []
    if node.isSeq():
        for i in range(node.size()):
            item = node.at(i)
            if not (item.isInt() or item.isReal()):
                vals = []
                break
            vals.append(float(item.real()))
    elif node.isMap():
        try:
            m = node.mat()
        except Exception:
            m = None
        if m is not None:
            vals = [float(v) for v in np.ravel(m)]
    if len(vals) != 2 or not all(math.isfinite(v) and v == int(v) and v > 0 for v in vals):
        raise CameraFileError(
            f"{source}: {key} must be [width, height] (two positive integers, pixels), got a {_fs_kind(node)}"
            + (f" {vals}" if vals else "")
        )
    return int(vals[0]), int(vals[1])


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
    elif node.isSeq():  # a plain list: [fx, 0, cx, 0, fy, cy, 0, 0, 1] or [[..], [..], [..]] or [] (no distortion)
        rows: list[list[float]] = []
        flat = True
        for i in range(node.size()):
            item = node.at(i)
            if item.isInt() or item.isReal():
                rows.append([float(item.real())])
            elif item.isSeq() and all(item.at(j).isInt() or item.at(j).isReal() for j in range(item.size())):
                flat = False
                rows.append([float(item.at(j).real()) for j in range(item.size())])
            else:
                rows = []
                break
        if rows and len({len(r) for r in rows}) == 1:
            mat = np.array(rows, dtype=np.float64) if not flat else np.array(rows, dtype=np.float64).reshape(1, -1)
        elif node.size() == 0:
            mat = np.zeros((1, 0))
    if mat is None:
        raise CameraFileError(
            f"{source}: {key} must be an !!opencv-matrix (rows, cols, dt, data) or a list of numbers, got a "
            f"{_fs_kind(node)}; write matrices with cv2.FileStorage, or the file with `skyfix calibrate -o`"
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
        "use the OpenCV format (`skyfix calibrate --format opencv`)"
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
                "Add the key (ROS: camera_calibration_parsers format) or write the file again with "
                "`skyfix calibrate --format ros`"
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


# ============================================================================================== plain YAML
def _parse_plain(doc: Mapping[str, Any], source: str) -> CameraModel:
    """A plain YAML mapping (no FileStorage tags): ``K``/``camera_matrix``/``cameraMatrix`` as 9 numbers or 3 rows,
    ``D``/``distCoeffs``/... as a list, the image size as width/height keys or ``image_size: [w, h]``, and
    optionally ``distortion_model`` (ROS names or pinhole/fisheye). ROS 2 ``camera_info`` echoed as YAML
    (``width``, ``height``, ``distortion_model``, ``d``, ``k``) reads the same way."""
    hint = (
        f"expected {_SIZE_HINT}, K (or camera_matrix / cameraMatrix: 9 numbers or 3 rows of 3) and D (or "
        "distortion_coefficients / distCoeffs: a list, [] for none)"
    )

    def pick(keys: Sequence[str], what: str) -> Any:
        found = [k for k in keys if k in doc]
        if not found:
            raise CameraFileError(
                f"{source}: missing {what}; {hint}; found keys: {', '.join(map(str, doc)) or 'none'}"
            )
        values = [doc[k] for k in found]
        if any(v != values[0] for v in values[1:]):
            raise CameraFileError(
                f"{source}: {found[0]!r} and {found[1]!r} are both given with different values; they name the "
                "same thing - keep one of them"
            )
        return values[0]

    def numbers(value: Any, key: str) -> np.ndarray:
        if value is None:
            value = []
        if isinstance(value, Mapping) and {"rows", "cols", "data"} <= set(value):
            value = value["data"] or []
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CameraFileError(f"{source}: {key} must hold only numbers, got {_describe(value)}") from exc
        if arr.dtype == object or not np.all(np.isfinite(arr)):
            raise CameraFileError(f"{source}: {key} must hold finite numbers, got {_describe(value)}")
        return arr

    width = height = None
    for wkey, hkey in _SIZE_KEYS:
        if wkey in doc or hkey in doc:
            width = _yaml_int(doc.get(wkey), wkey, source)
            height = _yaml_int(doc.get(hkey), hkey, source)
            break
    if width is None:
        for key in _SIZE_PAIR_KEYS:
            if key in doc:
                pair = doc[key]
                if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
                    raise CameraFileError(f"{source}: {key} must be [width, height] in pixels, got {_describe(pair)}")
                width = _yaml_int(pair[0], f"{key}[0] (width)", source)
                height = _yaml_int(pair[1], f"{key}[1] (height)", source)
                break
    if width is None:
        raise CameraFileError(f"{source}: missing the image size; {hint}; found keys: {', '.join(map(str, doc))}")
    K = numbers(pick(_K_KEYS, "the camera matrix (K, camera_matrix or cameraMatrix)"), "K")
    if K.size != 9:
        raise CameraFileError(
            f"{source}: K must hold 9 numbers (3x3 [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), got shape {list(K.shape)}"
        )
    D = numbers(pick(_D_KEYS, "the distortion coefficients (D, distortion_coefficients or distCoeffs)"), "D")
    if D.ndim > 1 and min(D.shape) != 1:
        raise CameraFileError(f"{source}: D must be a list of numbers, got shape {list(D.shape)}")
    name = doc.get("distortion_model", None)
    model = PINHOLE
    if name is not None:
        key = str(name).strip().lower()
        if key not in _OPENCV_MODEL_NAMES:
            raise CameraFileError(
                f"{source}: unknown distortion_model {name!r}; expected one of {sorted(_OPENCV_MODEL_NAMES)}"
            )
        model = _OPENCV_MODEL_NAMES[key]
        if key in ROS_DISTORTION_MODELS:
            return _from_ros_values(width, height, key, D.ravel(), K.ravel(), source)
    if not np.any(K):
        raise CameraFileError(
            f"{source}: K is all zeros, i.e. the camera is uncalibrated; calibrate it first (skyfix calibrate)"
        )
    return _make_camera(width, height, K.reshape(3, 3), D.ravel(), model, source)


# ============================================================================================== Kalibr camchain
#: Kalibr distortion models -> (CameraModel.model, coefficient count). Kalibr's radtan [k1, k2, r1, r2] is OpenCV's
#: pinhole (k1, k2, p1, p2); its equidistant [k1..k4] is cv2.fisheye's.
KALIBR_DISTORTION_MODELS: dict[str, tuple[str, int]] = {
    "radtan": (PINHOLE, 4),
    "equidistant": (FISHEYE, 4),
    "none": (PINHOLE, 0),
}
IMU_FRAMES = ("flu", "frd")


def kalibr_cameras(doc: Any) -> list[str]:
    """The camera names (``cam0``, ``cam1``, ...) of a parsed Kalibr camchain YAML, sorted; [] if it is none."""
    if not isinstance(doc, Mapping):
        return []
    names = [
        str(k) for k, v in doc.items()
        if isinstance(k, str) and k.startswith("cam") and k[3:].isdigit() and isinstance(v, Mapping)
        and "intrinsics" in v
    ]
    return sorted(names, key=lambda n: int(n[3:]))


def _kalibr_entry(doc: Mapping[str, Any], source: str, camera: str | None) -> tuple[str, Mapping[str, Any]]:
    names = kalibr_cameras(doc)
    camera = camera or "cam0"
    if camera not in names:
        raise CameraFileError(
            f"{source}: the Kalibr camchain has no camera {camera!r}; it holds {', '.join(names) or 'none'}"
        )
    return camera, doc[camera]


def _parse_kalibr(doc: Mapping[str, Any], source: str, camera: str | None = None) -> CameraModel:
    camera, cam = _kalibr_entry(doc, source, camera)
    where = f"{source} ({camera})"
    model = cam.get("camera_model", "pinhole")
    if model != "pinhole":
        raise CameraFileError(
            f"{where}: Kalibr camera_model {model!r} is not supported; expected 'pinhole' (with distortion_model "
            "radtan, equidistant or none). Recalibrate with `--models pinhole-radtan` or `pinhole-equi`"
        )
    for key in ("intrinsics", "resolution"):
        if key not in cam:
            raise CameraFileError(
                f"{where}: missing key {key!r}; a Kalibr camchain camera needs intrinsics [fu, fv, pu, pv], "
                f"resolution [width, height], distortion_model and distortion_coeffs; found keys: "
                f"{', '.join(map(str, cam))}"
            )
    intr = cam["intrinsics"]
    try:
        fu, fv, pu, pv = (float(v) for v in intr)
    except (TypeError, ValueError) as exc:
        raise CameraFileError(
            f"{where}: intrinsics must be [fu, fv, pu, pv] (4 numbers, pixels), got {_describe(intr)}"
        ) from exc
    res = cam["resolution"]
    if not isinstance(res, Sequence) or isinstance(res, (str, bytes)) or len(res) != 2:
        raise CameraFileError(f"{where}: resolution must be [width, height] in pixels, got {_describe(res)}")
    width = _yaml_int(res[0], "resolution[0] (width)", where)
    height = _yaml_int(res[1], "resolution[1] (height)", where)
    dist_model = cam.get("distortion_model", "none")
    if dist_model not in KALIBR_DISTORTION_MODELS:
        raise CameraFileError(
            f"{where}: Kalibr distortion_model {dist_model!r} is not supported; expected one of "
            f"{', '.join(KALIBR_DISTORTION_MODELS)} (the FOV model has no OpenCV equivalent: recalibrate with "
            "pinhole-radtan or pinhole-equi)"
        )
    kind, count = KALIBR_DISTORTION_MODELS[dist_model]
    coeffs = cam.get("distortion_coeffs") or []
    try:
        d = [float(c) for c in coeffs]
    except (TypeError, ValueError) as exc:
        raise CameraFileError(f"{where}: distortion_coeffs must be numbers, got {_describe(coeffs)}") from exc
    if len(d) not in (0, count) or (count == 0 and d):
        raise CameraFileError(
            f"{where}: distortion_model {dist_model} takes {count} coefficients, got {len(d)}: {d}"
        )
    if not all(math.isfinite(v) for v in (fu, fv, pu, pv, *d)):
        raise CameraFileError(f"{where}: intrinsics and distortion_coeffs must be finite, got {intr} and {d}")
    K = np.array([[fu, 0.0, pu], [0.0, fv, pv], [0.0, 0.0, 1.0]])
    return _make_camera(width, height, K, np.array(d), kind, where)


def mount_from_kalibr(
    doc: Mapping[str, Any], source: str = "<camchain>", camera: str | None = None, imu_frame: str = "flu"
) -> "Mount":
    """The camera mount of a Kalibr camera-IMU camchain (``kalibr_calibrate_imu_camera``'s camchain-imucam.yaml).

    ``T_cam_imu`` (4x4) maps points in the IMU frame into the camera frame: ``p_cam = R_cam_imu p_imu + t_cam_imu``.
    SkyFix's mount maps camera into body: with the IMU frame as the body, ``R_cam2body = R_cam_imu^T`` and
    ``t_cam2body = -R_cam_imu^T t_cam_imu`` (the camera centre in the IMU frame). Kalibr's camera frame is OpenCV's
    (x right, y down, z optical axis), as SkyFix's.

    Args:
        imu_frame: the axes of the IMU that Kalibr calibrated against: ``"flu"`` (x forward, y left, z up: ROS
            REP-103, the default) is SkyFix's body frame as is; ``"frd"`` (x forward, y right, z down: PX4 / NED
            autopilots) is turned into FLU with ``R_FRD2FLU`` (as ``runtime.imu_frame`` turns such IMU samples).
    Raises:
        CameraFileError: no such camera, no ``T_cam_imu`` (a camera-only camchain), not a 4x4 rigid transform.
    """
    from .errors import GeometryError
    from .geometry import Mount
    from .rotations import R_FRD2FLU

    if imu_frame not in IMU_FRAMES:
        raise CameraFileError(f"imu_frame must be one of {IMU_FRAMES}, got {imu_frame!r}")
    camera, cam = _kalibr_entry(doc, source, camera)
    where = f"{source} ({camera})"
    if "T_cam_imu" not in cam:
        raise CameraFileError(
            f"{where}: no T_cam_imu, so the file does not say how the camera sits on the vehicle (a camera-only "
            "calibration: kalibr_calibrate_cameras). Use the camchain-imucam.yaml of kalibr_calibrate_imu_camera, "
            "or give the mount as a SkyFix mount YAML (R_cam2body or rpy_cam2body_deg, t_cam2body)"
        )
    raw = cam["T_cam_imu"]
    try:
        T = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        T = np.zeros(0)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise CameraFileError(
            f"{where}: T_cam_imu must be a 4x4 matrix of finite numbers (4 rows of 4), got {_describe(raw)}"
        )
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise CameraFileError(f"{where}: the last row of T_cam_imu must be [0, 0, 0, 1], got {T[3].tolist()}")
    R_cam_imu, t_cam_imu = T[:3, :3], T[:3, 3]
    R_imu2cam_T = R_cam_imu.T
    R = R_imu2cam_T
    t = -R_imu2cam_T @ t_cam_imu
    if imu_frame == "frd":
        R, t = R_FRD2FLU @ R, R_FRD2FLU @ t
    try:
        return Mount(R, t)
    except GeometryError as exc:
        raise CameraFileError(f"{where}: T_cam_imu's rotation is not a rotation: {exc}") from exc


def load_kalibr(
    path: str | os.PathLike[str], camera: str | None = None, imu_frame: str = "flu"
) -> tuple[CameraModel, "Mount | None"]:
    """A Kalibr camchain YAML -> (the camera's intrinsics, its mount from ``T_cam_imu`` or None when the file has
    none). See :func:`mount_from_kalibr` for the frames."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CameraFileError(f"cannot read Kalibr camchain {str(path)!r}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CameraFileError(f"{path}: not a YAML file ({_one_line(exc)}); expected a Kalibr camchain") from exc
    if not kalibr_cameras(doc):
        raise CameraFileError(
            f"{path}: not a Kalibr camchain: expected cam0: {{intrinsics, distortion_model, distortion_coeffs, "
            f"resolution[, T_cam_imu]}}, got {_describe(doc)}"
        )
    cam = _parse_kalibr(doc, str(path), camera)
    has_T = "T_cam_imu" in _kalibr_entry(doc, str(path), camera)[1]
    return cam, (mount_from_kalibr(doc, str(path), camera, imu_frame) if has_T else None)


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
