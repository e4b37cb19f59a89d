"""``skyfix calibrate``: intrinsic calibration from chessboard or ChArUco images, written as a camera file.

    skyfix calibrate IMAGES... --board 9x6 --square 0.025 [--model pinhole|fisheye]
                     [--charuco 5x7 --marker 0.03 --dict DICT_5X5_100] -o camera.yaml [--format opencv|ros]
                     [--overwrite]

Only the standard library is imported here; OpenCV and numpy load when the command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

# Mirrors of calibration.camera.MODELS, calibration.chessboard.DETECTORS and calibration.camera_io.FORMATS (kept
# here so that building the parser imports nothing heavy; tests check that they agree).
MODELS = ("pinhole", "fisheye")
DETECTORS = ("auto", "sb", "classic")
FORMATS = ("opencv", "ros")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command to ``skyfix``'s sub-parsers."""
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera from chessboard or ChArUco images",
        description=(
            "Calibrate a camera's intrinsics from images of a chessboard (or a ChArUco board): detect the board,\n"
            "run OpenCV's calibration, drop outlier images, print the RMS reprojection error and a per-image\n"
            "table, and write the camera file (OpenCV FileStorage YAML or ROS camera_info YAML)."
        ),
        epilog=(
            "examples:\n"
            "  skyfix calibrate shots/left*.jpg --board 9x6 --square 0.025 -o camera.yaml\n"
            "  skyfix calibrate shots/ --model fisheye --board 9x6 --square 0.03 -o fisheye.yaml --format ros\n"
            "  skyfix calibrate shots/*.png --charuco 7x5 --square 0.04 --marker 0.03 --dict DICT_5X5_100 "
            "-o camera.yaml\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGES", help="image files, folders of images, or glob patterns (quoted)"
    )
    board = parser.add_argument_group("board")
    board.add_argument(
        "--board",
        type=_pair,
        default=(9, 6),
        metavar="NXxNY",
        help="chessboard INNER corners, e.g. 9x6 for a board of 10x7 squares (default: 9x6)",
    )
    board.add_argument(
        "--square", type=_positive_float, default=0.025, metavar="M", help="square side in metres (default: 0.025)"
    )
    board.add_argument(
        "--charuco",
        type=_pair,
        default=None,
        metavar="SXxSY",
        help="use a ChArUco board of SXxSY squares (not corners) instead of a chessboard; needs --marker",
    )
    board.add_argument("--marker", type=_positive_float, default=None, metavar="M", help="ChArUco marker side, metres")
    board.add_argument(
        "--dict",
        dest="dictionary",
        default="DICT_5X5_100",
        metavar="DICT",
        help="ChArUco ArUco dictionary, e.g. DICT_4X4_50, DICT_5X5_100 (default), DICT_6X6_250",
    )
    board.add_argument(
        "--legacy-pattern",
        action="store_true",
        help="ChArUco board printed by OpenCV < 4.6 with an even number of rows",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=MODELS, default="pinhole", help="lens model (default: pinhole)")
    model.add_argument(
        "--coefficients",
        type=int,
        choices=(4, 5, 8, 12),
        default=None,
        help="pinhole distortion coefficients: 4, 5 (default), 8 (rational) or 12 (thin prism); fisheye has 4",
    )
    model.add_argument(
        "--detector", choices=DETECTORS, default="auto", help="chessboard detector: sb, classic, or auto (sb first)"
    )
    model.add_argument("--min-images", type=int, default=3, metavar="N", help="fewest usable images (default: 3)")
    model.add_argument("--keep-outliers", action="store_true", help="do not drop images with outlier errors")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="FILE", help="camera file to write, e.g. camera.yaml")
    out.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="opencv",
        help="opencv: cv2.FileStorage YAML (default); ros: camera_info YAML (camera_calibration_parsers)",
    )
    out.add_argument("--name", default="camera", help="camera_name written into the file (default: camera)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """Handler of ``skyfix calibrate``: calibrate, print the report, write the camera file."""
    from .camera_io import save_camera
    from .chessboard import CharucoBoardSpec, calibrate
    from .errors import CalibrationError

    output = Path(args.output)
    check_output(output, args.overwrite)
    images = expand_images(args.images)
    charuco = None
    if args.charuco is not None:
        if args.marker is None:
            raise CalibrationError(
                "--charuco needs --marker (the ArUco marker side in metres, smaller than --square), e.g. "
                "--charuco 7x5 --square 0.04 --marker 0.03"
            )
        charuco = CharucoBoardSpec(
            args.charuco[0], args.charuco[1], args.square, args.marker, args.dictionary, args.legacy_pattern
        )
    result = calibrate(
        images,
        board=args.board,
        square=args.square,
        model=args.model,
        charuco=charuco,
        coefficients=args.coefficients,
        min_images=args.min_images,
        reject_outliers=not args.keep_outliers,
        detector=args.detector,
    )
    print(result.report())
    check_output(output, args.overwrite)  # again: it may have appeared while calibrating
    if output.parent != Path("."):
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CalibrationError(f"cannot create the output folder {str(output.parent)!r}: {exc}") from exc
    save_camera(result.camera, output, fmt=args.fmt, name=args.name)
    print(f"wrote {output} ({args.fmt} format)")
    return 0


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless ``--overwrite`` (and never a folder).

    Raises:
        CalibrationError: the output is a folder, or exists without ``--overwrite``.
    """
    from .errors import CalibrationError

    if output.is_dir():
        raise CalibrationError(f"-o {output}: is a folder; give the camera file to write, e.g. -o {output}/camera.yaml")
    if output.exists() and not overwrite:
        raise CalibrationError(
            f"-o {output}: the file exists; pass --overwrite to replace it, or choose another -o path"
        )


def expand_images(items: list[str]) -> list[str]:
    """Expand folders (their image files, sorted) and glob patterns (sorted matches); other items pass through.

    Raises:
        CalibrationError: a folder without images, or a pattern matching nothing.
    """
    from .errors import CalibrationError

    out: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise CalibrationError(
                    f"folder {item!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); pass image files or a folder "
                    "with images"
                )
            out.extend(found)
        elif not os.path.exists(item) and any(c in item for c in "*?["):
            found = sorted(glob.glob(item))
            if not found:
                raise CalibrationError(f"no files match {item!r}; check the pattern and the current folder")
            out.extend(found)
        else:
            out.append(item)
    return out


def _pair(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6) (also ``9X6``, ``9,6``)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers like 9x6, got {text!r}") from None
    if a < 2 or b < 2:
        raise argparse.ArgumentTypeError(f"both counts must be >= 2, got {text!r}")
    return (a, b)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive length in metres, got {text!r}")
    return value
