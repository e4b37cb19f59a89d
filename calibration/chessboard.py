"""Intrinsic calibration from images of a chessboard or a ChArUco board (OpenCV), with outlier rejection.

``calibrate(images, board=(9, 6), square=0.025)`` finds the board in every image (sub-pixel corners), runs
``cv2.calibrateCamera`` (or ``cv2.fisheye.calibrate``), then drops images whose reprojection error is an outlier
(robust threshold: ``max(median + k * 1.4826 * MAD, floor)``) and calibrates again. Every image gets a record saying
whether the board was found, its reprojection error, and whether it was used or dropped and why.

Board coordinates: metres, z = 0 on the board; chessboard corner ``i`` (OpenCV order, along the board's width
first) is at ``((i % nx) * square, (i // nx) * square, 0)``. Board sizes count *inner* corners (a board of 10 x 7
squares has 9 x 6 inner corners). OpenCV is imported inside the functions.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .camera import FISHEYE, MODELS, PINHOLE, CameraModel
from .errors import BoardNotFoundError, CalibrationError

DETECTORS = ("auto", "sb", "classic")
_PINHOLE_COEFFICIENTS = (4, 5, 8, 12)
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this = its standard deviation


# ============================================================================================== configuration
@dataclass(frozen=True)
class CharucoBoardSpec:
    """A ChArUco board: ``squares_x`` x ``squares_y`` chessboard squares with ArUco markers in the white ones.

    Lengths in metres (any unit works; the camera's translation comes out in it). ``dictionary`` is an OpenCV
    predefined dictionary name (``DICT_5X5_100``, ``DICT_4X4_50``, ...). ``legacy_pattern`` selects the pattern
    OpenCV < 4.6 generated for boards with an even number of rows.
    """

    squares_x: int
    squares_y: int
    square_length: float
    marker_length: float
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        for name in ("squares_x", "squares_y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise CalibrationError(f"ChArUco {name} must be an integer >= 2 (squares, not corners), got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("square_length", "marker_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
                math.isfinite(value) and value > 0
            ):
                raise CalibrationError(f"ChArUco {name} must be a positive length (metres), got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.marker_length >= self.square_length:
            raise CalibrationError(
                f"ChArUco marker_length ({self.marker_length}) must be smaller than square_length "
                f"({self.square_length}); the marker sits inside a white square (typically 0.7-0.8 of it)"
            )
        if not isinstance(self.dictionary, str) or not self.dictionary:
            raise CalibrationError(f"ChArUco dictionary must be a name like 'DICT_5X5_100', got {self.dictionary!r}")

    @property
    def inner_corners(self) -> tuple[int, int]:
        """(nx, ny) inner chessboard corners, which the ChArUco detector reports."""
        return (self.squares_x - 1, self.squares_y - 1)

    def describe(self) -> str:
        return (
            f"ChArUco board {self.squares_x}x{self.squares_y} squares ({self.square_length:g} m squares, "
            f"{self.marker_length:g} m markers, {self.dictionary}{', legacy pattern' if self.legacy_pattern else ''})"
        )

    def cv_board(self) -> Any:
        """The ``cv2.aruco.CharucoBoard``."""
        from .cv_compat import charuco_board

        return charuco_board(
            self.squares_x, self.squares_y, self.square_length, self.marker_length, self.dictionary, self.legacy_pattern
        )

    def image(self, pixels_per_square: int = 100, margin: int = 0) -> np.ndarray:
        """The board rendered for printing: uint8[h, w] grayscale, ``pixels_per_square`` per square plus ``margin``
        pixels on every side."""
        from .cv_compat import charuco_board_image

        size = (self.squares_x * pixels_per_square + 2 * margin, self.squares_y * pixels_per_square + 2 * margin)
        return charuco_board_image(self.cv_board(), size, margin=margin)


# ============================================================================================== results
@dataclass(frozen=True)
class ImageRecord:
    """What happened to one input image.

    ``path``: file path, or ``<array i>`` for an in-memory image. ``found``: the board was detected.
    ``corners``: number of detected corners. ``error_px``: RMS reprojection error of its corners in pixels (None when
    it was not part of a calibration). ``used``: it contributed to the final calibration; otherwise ``reason`` says why
    it was dropped.
    """

    path: str
    found: bool
    used: bool
    error_px: float | None = None
    reason: str = ""
    corners: int = 0


@dataclass(frozen=True)
class CalibrationResult:
    """Calibrated camera, RMS reprojection error (pixels, over all corners of the used images) and per-image records
    (in input order)."""

    camera: CameraModel
    rms: float
    images: tuple[ImageRecord, ...]
    board: str
    outlier_threshold_px: float | None = None
    rounds: int = 1
    notes: tuple[str, ...] = field(default=())

    @property
    def used(self) -> tuple[ImageRecord, ...]:
        return tuple(r for r in self.images if r.used)

    @property
    def dropped(self) -> tuple[ImageRecord, ...]:
        return tuple(r for r in self.images if not r.used)

    def report(self) -> str:
        """Human-readable summary: RMS, intrinsics and a per-image table (error, used/dropped and why)."""
        cam = self.camera
        lines = [
            f"calibrated {cam.model} camera {cam.width}x{cam.height} from {len(self.used)} of {len(self.images)} "
            f"images ({self.board})",
            f"RMS reprojection error: {self.rms:.4f} px",
            f"fx={cam.fx:.3f} fy={cam.fy:.3f} cx={cam.cx:.3f} cy={cam.cy:.3f} "
            f"distortion=[{', '.join(f'{c:.6g}' for c in cam.distortion)}]",
        ]
        hfov = cam.hfov_deg
        lines.append(
            f"horizontal FOV: {hfov:.2f} deg"
            if math.isfinite(hfov)
            else "horizontal FOV: n/a (the fitted distortion is not monotonic out to the image edge; add views with "
            "the board near the edges)"
        )
        if self.outlier_threshold_px is not None:
            lines.append(f"outlier threshold: {self.outlier_threshold_px:.3f} px")
        lines.extend(self.notes)
        width = max([len("image")] + [len(_short(r.path)) for r in self.images])
        lines.append(f"{'image':<{width}}  {'found':<5}  {'error_px':>8}  {'status':<7}  reason")
        for r in self.images:
            err = f"{r.error_px:8.4f}" if r.error_px is not None else f"{'-':>8}"
            status = "used" if r.used else "dropped"
            lines.append(
                f"{_short(r.path):<{width}}  {'yes' if r.found else 'no':<5}  {err}  {status:<7}  {r.reason}".rstrip()
            )
        return "\n".join(lines)


def _short(path: str) -> str:
    return os.path.basename(path) or path


# ============================================================================================== calibration
@dataclass
class _View:
    index: int
    path: str
    size: tuple[int, int] | None = None  # (w, h)
    object_points: np.ndarray | None = None  # float64[n, 3]
    image_points: np.ndarray | None = None  # float64[n, 2]
    reason: str = ""
    method: str = ""

    @property
    def found(self) -> bool:
        return self.image_points is not None


def calibrate(
    images: Sequence[str | os.PathLike[str] | np.ndarray],
    board: tuple[int, int] = (9, 6),
    square: float = 0.025,
    model: str = PINHOLE,
    charuco: CharucoBoardSpec | None = None,
    *,
    coefficients: int | None = None,
    min_images: int = 3,
    reject_outliers: bool = True,
    outlier_k: float = 3.0,
    outlier_floor_px: float = 0.5,
    max_rejection_rounds: int = 3,
    detector: str = "auto",
    min_charuco_corners: int = 6,
) -> CalibrationResult:
    """Calibrate a camera from images of a chessboard (or a ChArUco board).

    Args:
        images: image file paths, or uint8 images ([h, w] gray or [h, w, 3] RGB). All used images must share one
            size; images of another size are dropped.
        board: inner corners (nx, ny) of the chessboard, e.g. (9, 6) for a board of 10 x 7 squares. Ignored when
            ``charuco`` is given.
        square: chessboard square side in metres. Ignored when ``charuco`` is given (it carries its own lengths).
        model: ``"pinhole"`` (``cv2.calibrateCamera``) or ``"fisheye"`` (``cv2.fisheye.calibrate``).
        charuco: a ChArUco board to detect instead of a chessboard (partial views are fine).
        coefficients: distortion coefficients to estimate; pinhole 4, 5 (default), 8 (rational) or 12 (thin prism);
            fisheye 4 (the only choice).
        min_images: fewest usable images to calibrate from.
        reject_outliers: drop images whose RMS reprojection error exceeds
            ``max(median + outlier_k * 1.4826 * MAD, outlier_floor_px)`` and recalibrate, up to
            ``max_rejection_rounds`` times, never going below ``min_images``.
        detector: chessboard detector: ``"sb"`` (``findChessboardCornersSB``), ``"classic"``
            (``findChessboardCorners`` + ``cornerSubPix``) or ``"auto"`` (SB, then classic).
        min_charuco_corners: fewest ChArUco corners for a view to count.
    Returns:
        :class:`CalibrationResult` (camera in pixels, RMS in pixels, one record per input image, in input order).
    Raises:
        BoardNotFoundError: fewer than ``min_images`` images with a usable board (the message lists each image and
            why it was not usable).
        CalibrationError: invalid arguments, or OpenCV failing to calibrate.
    """
    board, square = _check_args(images, board, square, model, charuco, min_images, detector)
    _check_rejection(outlier_k, outlier_floor_px, max_rejection_rounds, min_charuco_corners)
    coefficients = _check_coefficients(model, coefficients)
    if charuco is not None:
        board_desc = charuco.describe()
        detect = _charuco_detect_fn(charuco, min_charuco_corners)
    else:
        board_desc = f"chessboard {board[0]}x{board[1]} inner corners, {square:g} m squares"
        detect = _chessboard_detect_fn(board, square, detector)

    views = [_detect_view(i, image, detect) for i, image in enumerate(images)]
    ref_size = _reference_size(views)
    for v in views:
        if v.found and v.size != ref_size:
            v.reason = (
                f"image size {v.size[0]}x{v.size[1]} differs from {ref_size[0]}x{ref_size[1]} of the other images"
            )
    candidates = [v for v in views if v.found and v.size == ref_size]
    if len(candidates) < min_images:
        raise BoardNotFoundError(_not_enough_message(views, candidates, min_images, board_desc, charuco, detector))

    dropped: dict[int, tuple[float, str]] = {}
    active = list(candidates)
    threshold = None
    rounds = 0
    while True:
        rounds += 1
        camera, errors, rms = _calibrate_views(active, ref_size, model, coefficients)
        if not reject_outliers or rounds > max_rejection_rounds:
            break
        values = np.array([errors[v.index] for v in active])
        med = float(np.median(values))
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(values - med)))
        threshold = max(med + outlier_k * sigma, outlier_floor_px)
        bad = sorted((v for v in active if errors[v.index] > threshold), key=lambda v: -errors[v.index])
        bad = bad[: max(0, len(active) - min_images)]
        if not bad:
            break
        for v in bad:
            dropped[v.index] = (
                errors[v.index],
                f"outlier: reprojection error {errors[v.index]:.3f} px > {threshold:.3f} px "
                f"(max(median {med:.3f} + {outlier_k:g}*1.4826*MAD {sigma / _MAD_TO_SIGMA:.3f}, floor "
                f"{outlier_floor_px:g}), round {rounds})",
            )
        bad_ids = {v.index for v in bad}
        active = [v for v in active if v.index not in bad_ids]

    records = []
    for v in views:
        corners = 0 if v.image_points is None else len(v.image_points)
        if v.index in errors and v.index not in dropped:
            records.append(ImageRecord(v.path, True, True, float(errors[v.index]), "", corners))
        elif v.index in dropped:
            err, why = dropped[v.index]
            records.append(ImageRecord(v.path, True, False, float(err), why, corners))
        else:
            records.append(ImageRecord(v.path, v.found, False, None, v.reason, corners))
    notes = []
    methods = Counter(v.method for v in views if v.found)
    if len(methods) > 1:
        notes.append("detectors: " + ", ".join(f"{m} ({n} images)" for m, n in sorted(methods.items())))
    return CalibrationResult(camera, float(rms), tuple(records), board_desc, threshold, rounds, tuple(notes))


# ---------------------------------------------------------------------------------------------- argument checks
def _check_args(
    images: Any,
    board: Any,
    square: Any,
    model: Any,
    charuco: Any,
    min_images: Any,
    detector: Any,
) -> tuple[tuple[int, int], float]:
    if isinstance(images, (str, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
        raise CalibrationError(
            f"images must be a list of image paths or arrays, got {type(images).__name__}; wrap a single path in a "
            "list"
        )
    if model not in MODELS:
        raise CalibrationError(f"model must be one of {MODELS}, got {model!r}")
    if detector not in DETECTORS:
        raise CalibrationError(f"detector must be one of {DETECTORS}, got {detector!r}")
    if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 1:
        raise CalibrationError(f"min_images must be a positive integer, got {min_images!r}")
    if charuco is not None and not isinstance(charuco, CharucoBoardSpec):
        raise CalibrationError(f"charuco must be a CharucoBoardSpec, got {type(charuco).__name__}")
    try:
        nx, ny = (int(n) for n in board)
        ok = all(int(n) == n and not isinstance(n, bool) for n in board) and nx >= 2 and ny >= 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CalibrationError(
            f"board must be (nx, ny) inner corners, both integers >= 2 (e.g. (9, 6) for 10x7 squares), got {board!r}"
        )
    if isinstance(square, bool) or not isinstance(square, (int, float, np.floating, np.integer)) or not (
        math.isfinite(square) and square > 0
    ):
        raise CalibrationError(f"square must be a positive length in metres (e.g. 0.025), got {square!r}")
    return (nx, ny), float(square)


def _check_rejection(outlier_k: Any, floor_px: Any, rounds: Any, min_charuco_corners: Any) -> None:
    def number(value: Any) -> bool:
        numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        return numeric and math.isfinite(value)

    if not (number(outlier_k) and outlier_k > 0):
        raise CalibrationError(f"outlier_k must be a positive number (typically 3), got {outlier_k!r}")
    if not (number(floor_px) and floor_px >= 0):
        raise CalibrationError(f"outlier_floor_px must be a non-negative number of pixels, got {floor_px!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise CalibrationError(f"max_rejection_rounds must be an integer >= 0, got {rounds!r}")
    if isinstance(min_charuco_corners, bool) or not isinstance(min_charuco_corners, int) or min_charuco_corners < 4:
        raise CalibrationError(f"min_charuco_corners must be an integer >= 4, got {min_charuco_corners!r}")


def _check_coefficients(model: str, coefficients: int | None) -> int:
    if model == FISHEYE:
        if coefficients not in (None, 4):
            raise CalibrationError(f"the fisheye model has exactly 4 distortion coefficients, got {coefficients!r}")
        return 4
    if coefficients is None:
        return 5
    if coefficients not in _PINHOLE_COEFFICIENTS:
        raise CalibrationError(
            f"pinhole coefficients must be one of {_PINHOLE_COEFFICIENTS} (4: k1 k2 p1 p2, 5: + k3, 8: rational, "
            f"12: + thin prism), got {coefficients!r}"
        )
    return int(coefficients)


# ---------------------------------------------------------------------------------------------- detection
_Detect = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray | None, str, str]]


def _load_gray(image: Any, index: int) -> tuple[str, np.ndarray | None, str]:
    """(label, gray uint8[h, w] or None, reason when None)."""
    from .cv_compat import import_cv2

    cv2 = import_cv2()
    if isinstance(image, np.ndarray):
        label = f"<array {index}>"
        if image.dtype != np.uint8:
            return label, None, f"unsupported image dtype {image.dtype}; expected uint8"
        if image.ndim == 2:
            return label, np.ascontiguousarray(image), ""
        if image.ndim == 3 and image.shape[2] == 1:
            return label, np.ascontiguousarray(image[:, :, 0]), ""
        if image.ndim == 3 and image.shape[2] in (3, 4):
            code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
            return label, cv2.cvtColor(np.ascontiguousarray(image), code), ""
        return label, None, f"unsupported image shape {image.shape}; expected [h, w] or [h, w, 3]"
    if not isinstance(image, (str, os.PathLike)):
        return f"<item {index}>", None, f"expected an image path or uint8 array, got {type(image).__name__}"
    path = Path(image)
    label = str(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread on Windows
    except OSError as exc:
        return label, None, f"cannot read file: {exc.strerror or exc}"
    gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if gray is None:
        return label, None, "not a readable image (unsupported or corrupt file)"
    return label, gray, ""


def _detect_view(index: int, image: Any, detect: _Detect) -> _View:
    label, gray, reason = _load_gray(image, index)
    view = _View(index, label)
    if gray is None:
        view.reason = reason
        return view
    view.size = (int(gray.shape[1]), int(gray.shape[0]))
    obj, img, method, why = detect(gray)
    if img is None:
        view.reason = why
        return view
    view.object_points, view.image_points, view.method = obj, img, method
    return view


def _chessboard_object_points(board: tuple[int, int], square: float) -> np.ndarray:
    nx, ny = board
    grid = np.zeros((nx * ny, 3))
    grid[:, 0] = np.tile(np.arange(nx), ny) * square
    grid[:, 1] = np.repeat(np.arange(ny), nx) * square
    return grid


def _chessboard_detect_fn(board: tuple[int, int], square: float, detector: str) -> _Detect:
    from .cv_compat import chessboard_flag, has_chessboard_sb, import_cv2

    cv2 = import_cv2()
    obj = _chessboard_object_points(board, square)
    use_sb = detector in ("auto", "sb") and has_chessboard_sb()
    if detector == "sb" and not use_sb:
        raise CalibrationError("detector='sb' needs cv2.findChessboardCornersSB (OpenCV >= 4.3); use 'classic'")
    use_classic = detector in ("auto", "classic")
    tried = " and ".join(
        name for name, on in (("findChessboardCornersSB", use_sb), ("findChessboardCorners", use_classic)) if on
    )
    sb_flags = chessboard_flag("NORMALIZE_IMAGE") | chessboard_flag("EXHAUSTIVE") | chessboard_flag("ACCURACY")
    classic_flags = chessboard_flag("ADAPTIVE_THRESH") | chessboard_flag("NORMALIZE_IMAGE") | chessboard_flag(
        "FAST_CHECK"
    )
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)

    def detect(gray: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, str, str]:
        if use_sb:
            ok, corners = cv2.findChessboardCornersSB(gray, board, flags=sb_flags)
            if ok and corners is not None and len(corners) == len(obj):
                return obj, np.asarray(corners, dtype=np.float64).reshape(-1, 2), "findChessboardCornersSB", ""
        if use_classic:
            ok, corners = cv2.findChessboardCorners(gray, board, flags=classic_flags)
            if ok and corners is not None and len(corners) == len(obj):
                pts = np.asarray(corners, dtype=np.float32).reshape(-1, 1, 2)
                # half-window: 11 px as in OpenCV's samples, but under half the corner spacing so that it never
                # reaches a neighbouring corner on a small or distant board
                grid = pts.reshape(board[1], board[0], 2)
                spacing = min(
                    float(np.min(np.linalg.norm(np.diff(grid, axis=1), axis=2))),
                    float(np.min(np.linalg.norm(np.diff(grid, axis=0), axis=2))),
                )
                half = int(max(2, min(11, math.floor(spacing * 0.45))))
                pts = cv2.cornerSubPix(gray, pts, (half, half), (-1, -1), criteria)
                return obj, np.asarray(pts, dtype=np.float64).reshape(-1, 2), "findChessboardCorners+cornerSubPix", ""
        return None, None, "", f"no {board[0]}x{board[1]} chessboard found (tried {tried})"

    return detect


def _charuco_detect_fn(spec: CharucoBoardSpec, min_corners: int) -> _Detect:
    from .cv_compat import charuco_detector, charuco_object_corners

    cv_board = spec.cv_board()
    detect_board = charuco_detector(cv_board)
    all_obj = charuco_object_corners(cv_board)
    collinear = getattr(cv_board, "checkCharucoCornersCollinear", None)

    def detect(gray: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, str, str]:
        corners, ids = detect_board(gray)
        if len(ids) == 0:
            return None, None, "", f"no ChArUco corners found ({spec.describe()}; check the dictionary and sizes)"
        if len(ids) < min_corners:
            return None, None, "", f"only {len(ids)} ChArUco corners found (need at least {min_corners})"
        if collinear is not None and collinear(ids.reshape(-1, 1).astype(np.int32)):
            return None, None, "", f"the {len(ids)} ChArUco corners found lie on one line"
        return all_obj[ids], corners, "CharucoDetector", ""

    return detect


def _reference_size(views: list[_View]) -> tuple[int, int] | None:
    sizes = [v.size for v in views if v.found]
    if not sizes:
        return None
    counts = Counter(sizes)
    best = max(counts.values())
    return next(s for s in sizes if counts[s] == best)  # most common; ties -> first seen


def _not_enough_message(
    views: list[_View],
    candidates: list[_View],
    min_images: int,
    board_desc: str,
    charuco: CharucoBoardSpec | None,
    detector: str,
) -> str:
    if not views:
        return f"no images given; expected at least {min_images} images of the {board_desc}"
    listing = "; ".join(f"{_short(v.path)}: {'ok' if v in candidates else v.reason}" for v in views)
    if charuco is not None:
        hint = (
            "check the square counts (squares, not corners), the dictionary and legacy_pattern, and that the board "
            "is in focus"
        )
    else:
        hint = (
            f"check that the board size counts inner corners (a 10x7-square board has 9x6), that the whole board is "
            f"visible, sharp and well lit in each image (detector={detector!r})"
        )
    return (
        f"only {len(candidates)} of {len(views)} images are usable for calibration with the {board_desc}; need at "
        f"least {min_images}. "
        f"Images: {listing}. Fix: {hint}, or add more images"
    )


# ---------------------------------------------------------------------------------------------- OpenCV calibration
def _calibrate_views(
    views: list[_View], size: tuple[int, int], model: str, coefficients: int
) -> tuple[CameraModel, dict[int, float], float]:
    """Calibrate from ``views``; returns (camera, per-view RMS error px by view index, overall RMS px)."""
    from .cv_compat import calib_flag, import_cv2

    cv2 = import_cv2()
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    try:
        if model == FISHEYE:
            K, D, rvecs, tvecs = _fisheye(views, size, criteria)
        else:
            obj = [np.ascontiguousarray(v.object_points, dtype=np.float32) for v in views]
            img = [np.ascontiguousarray(v.image_points.reshape(-1, 1, 2), dtype=np.float32) for v in views]
            flags = {
                4: calib_flag("FIX_K3"),
                5: 0,
                8: calib_flag("RATIONAL_MODEL"),
                12: calib_flag("RATIONAL_MODEL") | calib_flag("THIN_PRISM_MODEL"),
            }[coefficients]
            _, K, D, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None, flags=flags, criteria=criteria)
    except cv2.error as exc:
        raise CalibrationError(
            f"OpenCV {model} calibration failed on {len(views)} images: {' '.join(str(exc).split())}; "
            "use more images with the board at varied angles and positions (fill the corners of the frame)"
        ) from exc
    K = np.asarray(K, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64).ravel()[:coefficients]
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(D))) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(
            f"OpenCV {model} calibration diverged (K={K.tolist()}, D={D.tolist()}); use more images with the board "
            "at varied angles, or check the board size and model"
        )
    camera = CameraModel.from_matrix(size[0], size[1], K, tuple(D), model)
    errors: dict[int, float] = {}
    total_sq, total_n = 0.0, 0
    for v, rvec, tvec in zip(views, rvecs, tvecs):
        R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3))
        points_cam = v.object_points @ R.T + np.asarray(tvec, dtype=np.float64).reshape(1, 3)
        uv, _valid = camera.project(points_cam)
        sq = np.sum((uv - v.image_points) ** 2, axis=1)
        errors[v.index] = float(math.sqrt(float(np.mean(sq))))
        total_sq += float(np.sum(sq))
        total_n += len(sq)
    return camera, errors, math.sqrt(total_sq / max(total_n, 1))


def _fisheye(
    views: list[_View], size: tuple[int, int], criteria: tuple[int, int, float]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``cv2.fisheye.calibrate`` with a fallback initialisation.

    OpenCV starts from f = max(w, h) / pi at the image centre; corners further than f * pi / 2 from the centre are then
    beyond 90 degrees, and its per-view initialisation fails ("norm_u1 > 0" in InitExtrinsics) on boards near the
    image corners of wide lenses. The fallback starts from f = hypot(w, h) / pi, which keeps every pixel inside
    90 degrees.
    """
    from .cv_compat import fisheye_calibrate, fisheye_flag, import_cv2

    cv2 = import_cv2()
    obj = [v.object_points for v in views]
    img = [v.image_points for v in views]
    flags = fisheye_flag("RECOMPUTE_EXTRINSIC") | fisheye_flag("FIX_SKEW")
    w, h = size
    f0 = math.hypot(w, h) / math.pi
    K0 = np.array([[f0, 0.0, (w - 1) / 2.0], [0.0, f0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    attempts = (
        ("OpenCV's default start", flags, None),
        (f"start f = {f0:.1f} px (diagonal / pi)", flags | fisheye_flag("USE_INTRINSIC_GUESS"), K0),
    )
    failures = []
    for label, attempt_flags, K_start in attempts:
        try:
            _, K, D, rvecs, tvecs = fisheye_calibrate(obj, img, size, attempt_flags, criteria, K=K_start)
        except cv2.error as exc:
            failures.append(f"{label}: {' '.join(str(exc).split())}")
            continue
        if np.all(np.isfinite(K)) and np.all(np.isfinite(D)) and K[0, 0] > 0 and K[1, 1] > 0:
            return K, D, rvecs, tvecs
        failures.append(f"{label}: diverged (K={K.tolist()})")
    raise CalibrationError(
        f"OpenCV fisheye calibration failed on {len(views)} images ({'; '.join(failures)}); use more images with the "
        "board at varied angles and positions, and check that the lens is a fisheye (else use model='pinhole')"
    )
