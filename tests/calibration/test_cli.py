"""``skyfix calibrate`` end to end through runtime.cli.skyfix.main."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
import yaml

from calibration import cli


@pytest.fixture
def skyfix_main():
    """``runtime.cli.skyfix.main``: the calibrate command is tested through the real entry point."""
    from runtime.cli import skyfix

    return skyfix.main


@pytest.fixture(scope="module")
def left_images(shared_data):
    first = shared_data("calib/left01.jpg")
    return [str(p) for p in sorted(first.parent.glob("left*.jpg"))]


def _printed_rms(out: str) -> float:
    match = re.search(r"RMS reprojection error: ([0-9.]+) px", out)
    assert match, out
    return float(match.group(1))


def test_calibrate_real_images_opencv_format(skyfix_main, left_images, tmp_path, capsys):
    from calibration.camera_io import load_camera

    out_file = tmp_path / "cams" / "camera.yaml"
    code = skyfix_main(
        ["calibrate", *left_images, "--board", "9x6", "--square", "0.025", "-o", str(out_file), "--name", "left"]
    )
    out = capsys.readouterr().out
    assert code == 0
    rms = _printed_rms(out)
    assert 0 < rms <= 0.5
    cam = load_camera(out_file)
    assert cam.size == (640, 480) and cam.model == "pinhole"
    assert f"fx={cam.fx:.3f}" in out
    # per-image table: every image, its error, used / dropped and why
    assert re.search(r"^image\s+found\s+error_px\s+status\s+reason$", out, re.M)
    assert re.search(r"^left\.jpg\s+no\s+-\s+dropped\s+no 9x6 chessboard found", out, re.M)
    assert len(re.findall(r"^left\d\d\.jpg\s+yes\s+0\.\d{4}\s+used$", out, re.M)) == len(left_images) - 1
    assert f"wrote {out_file} (opencv format)" in out
    assert out_file.read_text().startswith("%YAML")


def test_calibrate_real_images_ros_format_and_glob(skyfix_main, left_images, tmp_path, capsys):
    from calibration.camera_io import load_camera

    pattern = str(left_images[1]).replace("left01.jpg", "left0*.jpg")  # a quoted glob, expanded by the command
    out_file = tmp_path / "ost.yaml"
    code = skyfix_main(["calibrate", pattern, "-o", str(out_file), "--format", "ros", "--name", "narrow_stereo"])
    out = capsys.readouterr().out
    assert code == 0
    assert _printed_rms(out) <= 0.5
    assert "left.jpg" not in out and "left11.jpg" not in out  # only left01..left09 matched
    doc = yaml.safe_load(out_file.read_text())
    assert doc["camera_name"] == "narrow_stereo" and doc["distortion_model"] == "plumb_bob"
    assert load_camera(out_file).fx == pytest.approx(doc["camera_matrix"]["data"][0])


def test_help_works(skyfix_main, capsys):
    with pytest.raises(SystemExit) as info:
        skyfix_main(["calibrate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--board", "--square", "--model", "--charuco", "--marker", "--dict", "-o", "--format"):
        assert flag in out


def test_errors_print_one_line_and_exit_2(skyfix_main, tmp_path, capsys):
    image = tmp_path / "gray.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((48, 64), 128, np.uint8))
    assert skyfix_main(["calibrate", str(image), "-o", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: only 0 of 1 images") and "gray.png: no 9x6 chessboard found" in err
    assert not (tmp_path / "c.yaml").exists()

    assert skyfix_main(["calibrate", str(image), "--charuco", "7x5", "-o", str(tmp_path / "c.yaml")]) == 2
    assert "error: --charuco needs --marker" in capsys.readouterr().err

    assert skyfix_main(["calibrate", str(tmp_path / "none*.png"), "-o", str(tmp_path / "c.yaml")]) == 2
    assert "error: no files match" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert skyfix_main(["calibrate", str(empty), "-o", str(tmp_path / "c.yaml")]) == 2
    assert "holds no images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrate", "a.png", "--board", "9by6", "-o", "c.yaml"],
        ["calibrate", "a.png", "--board", "1x6", "-o", "c.yaml"],
        ["calibrate", "a.png", "--square", "-1", "-o", "c.yaml"],
        ["calibrate", "a.png", "--model", "omni", "-o", "c.yaml"],
        ["calibrate", "a.png"],  # -o is required
    ],
)
def test_bad_arguments_are_usage_errors(skyfix_main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        skyfix_main(argv)
    assert info.value.code == 2
    assert "usage: skyfix calibrate" in capsys.readouterr().err


def test_register_sets_the_handler():
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate", "x.png", "--charuco", "7X5", "--marker", "0.03", "-o", "c.yaml"])
    assert args.handler is cli.run_calibrate
    assert args.charuco == (7, 5) and args.marker == 0.03 and args.board == (9, 6) and args.fmt == "opencv"
    assert args.dictionary == "DICT_5X5_100" and args.model == "pinhole"


def test_cli_choices_mirror_the_library():
    from calibration.camera import MODELS
    from calibration.camera_io import FORMATS
    from calibration.chessboard import DETECTORS

    assert cli.MODELS == MODELS and cli.FORMATS == FORMATS and cli.DETECTORS == DETECTORS


def test_building_the_parser_imports_no_opencv():
    code = (
        "import argparse, sys\n"
        "from calibration import cli\n"
        "p = argparse.ArgumentParser(); cli.register(p.add_subparsers())\n"
        "print('cv2' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_existing_output_is_refused_before_calibrating_unless_overwrite(skyfix_main, left_images, tmp_path, capsys):
    import time

    from calibration.camera_io import load_camera

    out_file = tmp_path / "camera.yaml"
    out_file.write_text("keep me\n")
    t0 = time.perf_counter()
    assert skyfix_main(["calibrate", *left_images, "-o", str(out_file)]) == 2
    assert time.perf_counter() - t0 < 2.0  # refused before any board detection
    err = capsys.readouterr().err
    assert err.startswith("error: -o ") and "exists; pass --overwrite" in err
    assert out_file.read_text() == "keep me\n"
    assert skyfix_main(["calibrate", *left_images, "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert skyfix_main(["calibrate", *left_images, "-o", str(out_file), "--overwrite"]) == 0
    assert load_camera(out_file).size == (640, 480)
