"""OpenCV 4.x / 5.x differences, resolved by feature detection (never by parsing ``cv2.__version__``).

What moved between the versions SkyFix supports (opencv-python >= 4.8, including 5.x):

* ``cv2.fisheye`` calibration flags: OpenCV 4.x has its own values in ``cv2.fisheye.CALIB_*`` (e.g. ``FIX_SKEW`` = 8,
  which is ``CALIB_ZERO_TANGENT_DIST`` for the pinhole model); OpenCV 5.x dropped them from ``cv2.fisheye`` and
  uses the unified ``cv2.CALIB_*`` values. :func:`fisheye_flag` picks the namespace once, as a whole, so values of
  the two schemes are never mixed.
* ChArUco: OpenCV >= 4.7 (and 5.x) has ``cv2.aruco.CharucoBoard((sx, sy), ...)``, ``board.generateImage`` and
  ``cv2.aruco.CharucoDetector``; older builds (opencv-contrib < 4.7) have ``cv2.aruco.CharucoBoard_create``,
  ``board.draw``, ``cv2.aruco.detectMarkers`` + ``cv2.aruco.interpolateCornersCharuco``. Boards with an even number
  of rows changed pattern in 4.6; ``setLegacyPattern`` (where present) selects the old one.
* ``cv2.fisheye.calibrate`` point layout: 4.x wants each view as [n, 1, 3] / [n, 1, 2]; OpenCV 5.0 fails on that
  ("Sizes of input arguments do not match") and wants [1, n, 3] / [1, n, 2]. :func:`fisheye_point_layout` finds the
  working one by calibrating a tiny synthetic problem once.
* Iterative undistortion: 4.x ``cv2.undistortPointsIter``; 5.x ``cv2.undistortPoints(..., criteria=...)``.
* ``FileStorage`` mode constants: ``cv2.FILE_STORAGE_READ`` (4.x and 5.x) or ``cv2.FileStorage_READ`` (older 4.x);
  5.x writes YAML files with a ``%YAML 1.2`` header, 4.x with ``%YAML:1.0`` (both read both).
* Bilinear ``cv2.remap`` / ``warpAffine`` / ``warpPerspective``: 4.x rounds every source coordinate to 1/32 px
  (``INTER_BITS`` = 5) and blends integer weights, rounding the uint8 result half up; 5.x interpolates at float
  precision and rounds half to even (but for 2-channel images, still fixed point). :func:`remap_fraction_bits`
  finds which by sampling a step once per channel count and type; the torch sampler
  (:mod:`calibration.torch_remap`) follows it so that CPU and device views agree with either.

Verified against opencv-python-headless 4.8.1 and 5.0.0; the remap probe against 4.13, 4.14 and 5.1.

Every function imports OpenCV when called; importing this module has no side effects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import CalibrationError

# Fisheye flags understood by :func:`fisheye_flag` (suffixes after ``CALIB_``).
FISHEYE_FLAGS = (
    "USE_INTRINSIC_GUESS",
    "RECOMPUTE_EXTRINSIC",
    "CHECK_COND",
    "FIX_SKEW",
    "FIX_K1",
    "FIX_K2",
    "FIX_K3",
    "FIX_K4",
    "FIX_INTRINSIC",
    "FIX_PRINCIPAL_POINT",
    "FIX_FOCAL_LENGTH",
)


def import_cv2() -> Any:
    """Import and return ``cv2``; a missing OpenCV becomes a :class:`CalibrationError` saying how to install it."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - OpenCV is a declared dependency
        raise CalibrationError(
            f"OpenCV is required for this operation but could not be imported ({exc}); "
            "install it with: pip install 'opencv-python-headless>=4.8'"
        ) from exc
    return cv2


# ---------------------------------------------------------------------------------------------- remap
@functools.lru_cache(maxsize=None)
def remap_fraction_bits(channels: int = 1, integer: bool = True) -> int | None:
    """How the installed OpenCV's bilinear ``cv2.remap`` places its samples for images of ``channels`` channels,
    uint8 (``integer``) or float32: ``b`` when it rounds every source coordinate to ``2**-b`` px (and a uint8 result
    half up): OpenCV 4.x (5, ``INTER_BITS``), and 5.x for 2 channels; None when it interpolates at float precision
    (and rounds uint8 half to even): OpenCV 5.x for 1, 3 and 4 channels.

    Found once per (channels, integer) by remapping a 0 -> 255 step at 2048 sub-pixel positions (float32 maps,
    BORDER_REPLICATE) and keeping the model that reproduces every value; a build that matches none (another
    interpolation) gets the closest, which the parity tests then show.
    """
    cv2 = import_cv2()
    if not 1 <= int(channels) <= 4:
        raise ValueError(f"channels must be 1 to 4 (cv2.remap's images), got {channels!r}")
    step = np.array([[0, 255], [0, 255]], dtype=np.uint8 if integer else np.float32)
    src = np.repeat(step[:, :, None], int(channels), axis=2) if channels > 1 else step
    x = ((np.arange(2048, dtype=np.float64) + 0.37) / 2048).astype(np.float32)[None, :]
    got = cv2.remap(src, x, np.zeros_like(x), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got = got.reshape(2048, -1)[:, 0].astype(np.float64)
    xd = x[0].astype(np.float64)
    models: dict[int | None, np.ndarray] = {None: np.rint(255.0 * xd) if integer else 255.0 * xd}
    for bits in range(1, 11):
        n = 1 << bits
        v = 255.0 * np.rint(xd * n) / n
        models[bits] = np.floor(v + 0.5) if integer else v
    errors = {bits: int(np.count_nonzero(np.abs(pred - got) > 1e-3)) for bits, pred in models.items()}
    return min(errors, key=lambda b: (errors[b], b is not None))


# ---------------------------------------------------------------------------------------------- FileStorage
def storage_mode(name: str) -> int:
    """A ``cv::FileStorage`` mode flag by name: ``READ``, ``WRITE``, ``MEMORY``, ``FORMAT_YAML``, ``FORMAT_XML``,
    ``FORMAT_JSON``."""
    cv2 = import_cv2()
    for attr in (f"FILE_STORAGE_{name}", f"FileStorage_{name}"):
        value = getattr(cv2, attr, None)
        if value is not None:
            return int(value)
    raise CalibrationError(
        f"this OpenCV build ({cv2.__version__}) has no FileStorage flag {name!r} "
        "(looked for cv2.FILE_STORAGE_* and cv2.FileStorage_*); install opencv-python-headless>=4.8"
    )


# ---------------------------------------------------------------------------------------------- calibration flags
def calib_flag(name: str) -> int:
    """A ``cv2.calibrateCamera`` flag by its name without ``CALIB_`` (e.g. ``"RATIONAL_MODEL"``)."""
    cv2 = import_cv2()
    value = getattr(cv2, f"CALIB_{name}", None)
    if value is None:
        raise CalibrationError(
            f"this OpenCV build ({cv2.__version__}) has no cv2.CALIB_{name}; install opencv-python-headless>=4.8"
        )
    return int(value)


def chessboard_flag(name: str) -> int:
    """A chessboard-detection flag by its name without ``CALIB_CB_`` (e.g. ``"NORMALIZE_IMAGE"``)."""
    cv2 = import_cv2()
    value = getattr(cv2, f"CALIB_CB_{name}", None)
    if value is None:
        raise CalibrationError(f"this OpenCV build ({cv2.__version__}) has no cv2.CALIB_CB_{name}")
    return int(value)


def fisheye_module() -> Any:
    """``cv2.fisheye``, or a :class:`CalibrationError` when this build lacks it."""
    cv2 = import_cv2()
    fisheye = getattr(cv2, "fisheye", None)
    if fisheye is None or not hasattr(fisheye, "calibrate"):
        raise CalibrationError(
            f"this OpenCV build ({cv2.__version__}) has no cv2.fisheye module; install opencv-python-headless>=4.8"
        )
    return fisheye


def fisheye_flag(name: str) -> int:
    """A ``cv2.fisheye.calibrate`` flag by its name without ``CALIB_`` (e.g. ``"RECOMPUTE_EXTRINSIC"``).

    OpenCV 4.x: the fisheye module's own constants (``cv2.fisheye.CALIB_*``). OpenCV 5.x: the unified
    ``cv2.CALIB_*`` constants. The namespace is chosen as a whole (by whether ``cv2.fisheye`` defines any
    ``CALIB_`` constant), because the same name has different values in the two schemes.
    """
    if name not in FISHEYE_FLAGS:
        raise CalibrationError(f"unknown fisheye calibration flag {name!r}; expected one of {FISHEYE_FLAGS}")
    cv2 = import_cv2()
    fisheye = fisheye_module()
    own = any(attr.startswith("CALIB_") for attr in dir(fisheye))
    namespace, label = (fisheye, "cv2.fisheye") if own else (cv2, "cv2")
    value = getattr(namespace, f"CALIB_{name}", None)
    if value is None:
        raise CalibrationError(
            f"this OpenCV build ({cv2.__version__}) has no {label}.CALIB_{name} for fisheye calibration; "
            "install opencv-python-headless>=4.8"
        )
    return int(value)


def fisheye_calibrate(
    object_points: list[np.ndarray],
    image_points: list[np.ndarray],
    image_size: tuple[int, int],
    flags: int,
    criteria: tuple[int, int, float],
    K: np.ndarray | None = None,
    D: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``cv2.fisheye.calibrate`` with the point layout this build accepts.

    Args:
        object_points: per view, float64[n_i, 3] board points (metres).
        image_points: per view, float64[n_i, 2] pixels.
        image_size: (width, height) pixels.
        flags: from :func:`fisheye_flag`.
        K, D: initial intrinsics (3x3, 4 coefficients), used with the ``USE_INTRINSIC_GUESS`` flag.
    Returns:
        (rms px, K float64[3, 3], D float64[4], rvecs, tvecs).

    OpenCV 4.x documents (and needs) views shaped [n, 1, 3] / [n, 1, 2]; OpenCV 5.0's ``fisheye::calibrate`` fails on
    those with "Sizes of input arguments do not match" and accepts [1, n, 3] / [1, n, 2]. The working layout is found
    once by calibrating a tiny synthetic problem (:func:`fisheye_point_layout`).
    """
    fisheye = fisheye_module()
    layout = fisheye_point_layout()
    obj = [_fisheye_shape(np.asarray(o, dtype=np.float64), 3, layout) for o in object_points]
    img = [_fisheye_shape(np.asarray(i, dtype=np.float64), 2, layout) for i in image_points]
    K0 = np.zeros((3, 3)) if K is None else np.array(K, dtype=np.float64).reshape(3, 3)
    D0 = np.zeros((4, 1)) if D is None else np.array(D, dtype=np.float64).reshape(4, 1)
    rms, K, D, rvecs, tvecs = fisheye.calibrate(obj, img, tuple(image_size), K0, D0, flags=flags, criteria=criteria)
    K = np.asarray(K, dtype=np.float64)
    return float(rms), K, np.asarray(D, dtype=np.float64).ravel(), list(rvecs), list(tvecs)


def _fisheye_shape(points: np.ndarray, channels: int, layout: str) -> np.ndarray:
    points = points.reshape(-1, channels)
    return np.ascontiguousarray(points.reshape(-1, 1, channels) if layout == "n1c" else points.reshape(1, -1, channels))


@functools.lru_cache(maxsize=1)
def fisheye_point_layout() -> str:
    """``"n1c"`` (views shaped [n, 1, c], OpenCV 4.x) or ``"1nc"`` ([1, n, c], which OpenCV 5.0 needs): the first that
    ``cv2.fisheye.calibrate`` accepts on a small synthetic, noise-free problem (f = 300 px, no distortion)."""
    cv2 = import_cv2()
    fisheye = fisheye_module()
    grid = np.zeros((20, 3))
    grid[:, 0] = np.tile(np.arange(5), 4) * 0.05
    grid[:, 1] = np.repeat(np.arange(4), 5) * 0.05
    obj, img = [], []
    for rvec in ((0.3, 0.1, 0.0), (-0.3, 0.2, 0.1), (0.1, -0.35, -0.1), (-0.2, -0.2, 0.2)):
        R, _ = cv2.Rodrigues(np.array(rvec, dtype=np.float64))
        p = grid @ R.T + np.array([-0.1, -0.075, 0.5])
        a, b = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        r = np.hypot(a, b)
        scale = np.arctan(r) / r
        obj.append(grid)
        img.append(np.stack([300.0 * a * scale + 320.0, 300.0 * b * scale + 240.0], axis=1))
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    for layout in ("n1c", "1nc"):
        try:
            rms, K, _D, _r, _t = fisheye.calibrate(
                [_fisheye_shape(o, 3, layout) for o in obj],
                [_fisheye_shape(i, 2, layout) for i in img],
                (640, 480),
                np.zeros((3, 3)),
                np.zeros((4, 1)),
                flags=fisheye_flag("RECOMPUTE_EXTRINSIC") | fisheye_flag("FIX_SKEW"),
                criteria=criteria,
            )
        except cv2.error:
            continue
        if np.isfinite(rms) and abs(float(K[0, 0]) - 300.0) < 1.0:
            return layout
    raise CalibrationError(
        f"cv2.fisheye.calibrate of this OpenCV build ({cv2.__version__}) fails on a synthetic test problem with "
        "both point layouts ([n, 1, c] and [1, n, c]); fisheye calibration is unavailable - try another "
        "opencv-python-headless version"
    )


def undistort_points(
    uv: np.ndarray, K: np.ndarray, D: np.ndarray, criteria: tuple[int, int, float] | None = None
) -> np.ndarray:
    """Pinhole ``cv2.undistortPoints`` with iteration ``criteria``: float[n, 2] pixels -> float64[n, 2] normalised
    undistorted coordinates.

    OpenCV 4.x has the criteria only in ``cv2.undistortPointsIter``; OpenCV 5.x removed that function and gave
    ``cv2.undistortPoints`` a ``criteria`` argument.
    """
    cv2 = import_cv2()
    src = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    K = np.asarray(K, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    if criteria is None:
        out = cv2.undistortPoints(src, K, D)
    elif hasattr(cv2, "undistortPointsIter"):
        out = cv2.undistortPointsIter(src, K, D, None, None, criteria)
    else:
        out = cv2.undistortPoints(src, K, D, criteria=criteria)
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def has_chessboard_sb() -> bool:
    """Whether ``cv2.findChessboardCornersSB`` (the sector-based, sub-pixel detector) is available."""
    return hasattr(import_cv2(), "findChessboardCornersSB")


# ---------------------------------------------------------------------------------------------- ArUco / ChArUco
def aruco_module() -> Any:
    """``cv2.aruco``, or a :class:`CalibrationError` saying how to get it."""
    cv2 = import_cv2()
    aruco = getattr(cv2, "aruco", None)
    if aruco is None:
        raise CalibrationError(
            f"this OpenCV build ({cv2.__version__}) has no cv2.aruco module, needed for ChArUco boards; "
            "install opencv-python-headless>=4.8 (ArUco is in the main package since 4.7)"
        )
    return aruco


def _new_aruco_api(aruco: Any) -> bool:
    """OpenCV >= 4.7 (and 5.x): ``CharucoBoard((sx, sy), ...)`` + ``CharucoDetector``; older: ``CharucoBoard_create``
    and free functions."""
    return hasattr(aruco, "CharucoDetector")


def aruco_dictionary_names() -> list[str]:
    """Names of the predefined ArUco dictionaries (``DICT_4X4_50`` ... ``DICT_APRILTAG_36h11``)."""
    return sorted(n for n in dir(aruco_module()) if n.startswith("DICT_"))


def aruco_dictionary(name: str) -> Any:
    """A predefined ArUco dictionary by name (e.g. ``"DICT_5X5_100"``)."""
    aruco = aruco_module()
    key = str(name).strip().upper()
    if not key.startswith("DICT_"):
        key = "DICT_" + key
    # case-insensitive: OpenCV spells some with lower case (DICT_APRILTAG_36h11)
    by_upper = {n.upper(): n for n in dir(aruco) if n.startswith("DICT_")}
    if key not in by_upper:
        raise CalibrationError(
            f"unknown ArUco dictionary {name!r}; expected one of {', '.join(aruco_dictionary_names())}"
        )
    value = getattr(aruco, by_upper[key])
    if hasattr(aruco, "getPredefinedDictionary"):
        return aruco.getPredefinedDictionary(value)
    return aruco.Dictionary_get(value)  # pragma: no cover - opencv-contrib < 4.7


def charuco_board(
    squares_x: int,
    squares_y: int,
    square_length: float,
    marker_length: float,
    dictionary: str,
    legacy_pattern: bool = False,
) -> Any:
    """A ``cv2.aruco.CharucoBoard`` (``squares_x`` by ``squares_y`` squares; lengths in metres)."""
    aruco = aruco_module()
    dic = aruco_dictionary(dictionary)
    try:
        if _new_aruco_api(aruco):
            board = aruco.CharucoBoard((squares_x, squares_y), square_length, marker_length, dic)
        else:  # pragma: no cover - opencv-contrib < 4.7
            board = aruco.CharucoBoard_create(squares_x, squares_y, square_length, marker_length, dic)
    except Exception as exc:  # cv2.error: e.g. a dictionary with too few markers for the board
        raise CalibrationError(
            f"cannot build a {squares_x}x{squares_y} ChArUco board with {dictionary}: {exc}; "
            "check the square counts and that the dictionary holds at least squares_x*squares_y/2 markers"
        ) from exc
    if legacy_pattern:
        if not hasattr(board, "setLegacyPattern"):
            raise CalibrationError(
                "legacy_pattern=True needs CharucoBoard.setLegacyPattern (OpenCV >= 4.8); "
                "boards from OpenCV < 4.6 with an even number of rows need it"
            )
        board.setLegacyPattern(True)
    return board


def charuco_board_image(board: Any, size: tuple[int, int], margin: int = 0, border_bits: int = 1) -> np.ndarray:
    """Render ``board`` as a grayscale uint8 image [h, w] for ``size`` = (w, h) pixels (for printing, or tests)."""
    if hasattr(board, "generateImage"):
        return np.asarray(board.generateImage(tuple(size), marginSize=margin, borderBits=border_bits))
    return np.asarray(board.draw(tuple(size), marginSize=margin, borderBits=border_bits))  # pragma: no cover


def charuco_object_corners(board: Any) -> np.ndarray:
    """float64[n, 3]: the board's inner chessboard corners in board coordinates (metres, z = 0), by corner id."""
    if hasattr(board, "getChessboardCorners"):
        corners = board.getChessboardCorners()
    else:  # pragma: no cover - opencv-contrib < 4.7
        corners = board.chessboardCorners
    return np.asarray(corners, dtype=np.float64).reshape(-1, 3)


def charuco_detector(board: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function ``detect(gray uint8[h, w]) -> (corners float64[n, 2] px, ids int[n])`` for ``board``.

    Uses ``cv2.aruco.CharucoDetector`` where present (OpenCV >= 4.7, 5.x), otherwise ``detectMarkers`` +
    ``interpolateCornersCharuco``. No corner found gives two empty arrays.
    """
    aruco = aruco_module()
    empty = (np.zeros((0, 2)), np.zeros(0, dtype=int))

    def pack(corners: Any, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        if corners is None or ids is None or len(ids) == 0:
            return empty
        return np.asarray(corners, dtype=np.float64).reshape(-1, 2), np.asarray(ids, dtype=int).ravel()

    if _new_aruco_api(aruco):
        detector = aruco.CharucoDetector(board)

        def detect(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            corners, ids, _marker_corners, _marker_ids = detector.detectBoard(gray)
            return pack(corners, ids)

        return detect

    # opencv-contrib < 4.7
    dictionary = board.dictionary if hasattr(board, "dictionary") else board.getDictionary()
    params = aruco.DetectorParameters_create() if hasattr(aruco, "DetectorParameters_create") else None

    def detect_legacy(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        marker_corners, marker_ids, _rejected = aruco.detectMarkers(gray, dictionary, parameters=params)
        if marker_ids is None or len(marker_ids) == 0:
            return empty
        _n, corners, ids = aruco.interpolateCornersCharuco(marker_corners, marker_ids, gray, board)
        return pack(corners, ids)

    return detect_legacy
