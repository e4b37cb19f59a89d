"""CLI hygiene: outputs are not overwritten silently, help texts name the real flags and formats, and what a CLI user
reads names flags, not Python calls."""

from __future__ import annotations

import argparse
import json
import re

import cv2
import pytest

from runtime.bags.writer import BagWriter
from runtime.cli import onboard, skyfix
from runtime.outputs import EstimateRecord, TrackWriter

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    """A bag with ground truth and GPS (20 fixes, 5 Hz) and a track 2 m east of the truth."""
    root = tmp_path_factory.mktemp("hyg")
    bag, track = root / "flight.bag", root / "track.jsonl"
    with BagWriter(bag) as w, TrackWriter(track) as tw:
        for k in range(20):
            t = T0 + k * 200_000_000
            lat, lon = 47.0 + k * 2e-5, 8.0
            w.write_navsatfix("/ground_truth/fix", t, lat, lon, 500.0, cov_enu=0.0, frame_id="ground_truth")
            w.write_navsatfix("/gps/fix", t, lat, lon, 500.0, cov_enu=3.0)
            tw.write(EstimateRecord(t, lat, lon + 2.0 / 75_800.0, 0.0, 2.0, None, "OK", {"total": 5.0}, gps="ok"))
    return bag, track


def test_eval_refuses_to_overwrite_plot_and_json_without_overwrite(eval_inputs, tmp_path, capsys):
    bag, track = eval_inputs
    png, js = tmp_path / "eval.png", tmp_path / "eval.json"
    png.write_bytes(b"an earlier plot")
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --plot {png} exists already; remove it, choose another path or pass --overwrite\n"
    assert png.read_bytes() == b"an earlier plot"

    js.write_text("{}")
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--json", str(js)]) == 2
    assert capsys.readouterr().err == (f"error: --json {js} exists already; remove it, choose another path or pass "
                                       "--overwrite\n")
    assert js.read_text() == "{}"

    assert onboard.main(["eval", str(track), "--truth", str(bag), "--plot", str(png), "--json", str(js),
                         "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and f"wrote {js}" in out
    assert cv2.imread(str(png)) is not None  # a real PNG replaced the old bytes
    assert json.loads(js.read_text())["estimate"]["all"]["median_m"] == pytest.approx(2.0, abs=0.1)


def test_eval_refuses_a_folder_as_plot(eval_inputs, tmp_path, capsys):
    bag, track = eval_inputs
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--plot", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: cannot write --plot {tmp_path}: it is a folder; choose a file path\n"


def test_replay_refuses_an_existing_track_naming_the_flag(tmp_path, capsys):
    bag = tmp_path / "g.bag"
    with BagWriter(bag) as w:
        w.write_navsatfix("/gps/fix", T0, 47.0, 8.0, 500.0, cov_enu=2.0)
    out = tmp_path / "t.jsonl"
    out.write_text("")
    assert onboard.main(["replay", str(bag), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {out} exists already; remove it, choose another output path or pass --overwrite"


# ============================================================================================== help texts
def _helps(parser: argparse.ArgumentParser, name: str):
    yield name, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _helps(p, f"{name} {sub}")


ALL_HELPS = dict(list(_helps(onboard.build_parser(), "runtime")) + list(_helps(skyfix.build_parser(), "skyfix")))


def test_every_help_text_names_flags_not_python_calls():
    assert len(ALL_HELPS) > 20
    bad = {}
    for name, text in ALL_HELPS.items():
        found = re.findall(r"\b\w+=(?:True|False|None)\b|\b[a-z_]+\(\)|ROS1|ROS2|--camera SRC", text)
        if found:
            bad[name] = found
    assert bad == {}


def test_help_texts_say_the_real_flags_and_both_ros_versions():
    run = " ".join(ALL_HELPS["runtime run"].split())
    assert "runtime run --source SRC --gps PORT --map MAP" in run
    replay = " ".join(ALL_HELPS["runtime replay"].split())
    assert "ROS 1 .bag file(s) (several: a split recording), a ROS 2 bag folder (sqlite3 or mcap)" in replay
    assert "runtime replay BAG [--map MAP]" in replay and "it needs no --map" in replay.replace("``", "")
    inspect = " ".join(ALL_HELPS["runtime inspect"].split())
    assert "ROS 2 bag folder" in inspect
    assert "--overwrite" in ALL_HELPS["runtime eval"]


# ============================================================================================== messages
def test_user_messages_name_flags(tmp_path):
    from runtime.outputs import OutputError
    from runtime.sources import SourceError
    from runtime.sources.camera import LatestFrameCamera

    with pytest.raises(SourceError) as e:
        LatestFrameCamera(0, every_frame=True)
    assert str(e.value).startswith("--every-frame (every_frame=True) needs a video file; 0 is a device source")
    assert "leave --every-frame out" in str(e.value)
    with pytest.raises(OutputError) as e2:
        TrackWriter(tmp_path / "nope" / "t.jsonl").open()
    assert str(e2.value) == f"cannot write {tmp_path / 'nope' / 't.jsonl'}: folder {tmp_path / 'nope'} does not exist; create it first"
