"""runtime.tools.photo_pairs and `skyfix eval-encoder --photos`: real camera-vs-map pairs from four flight lines of
the Seneca survey (two make the mosaic, the two between them are the queries)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def survey(shared_data, tmp_path_factory):
    """A folder of links to four consecutive flight lines (22 photos) of the real survey."""
    from runtime.sources.photos import read_photo_folder
    from runtime.tools.photo_protocol import flight_lines

    metas = list(read_photo_folder(shared_data("real/seneca/images")).photos)
    lines = flight_lines(metas)[6:10]
    folder = tmp_path_factory.mktemp("survey")
    for line in lines:
        for k in line:
            os.symlink(metas[k].path, folder / Path(metas[k].path).name)
    return folder, lines


def test_held_out_photos_become_ground_views_at_their_calibrated_positions(survey, tmp_path):
    from runtime.tools.photo_pairs import survey_pairs
    from runtime.tools.photo_protocol import ProtocolConfig

    folder, lines = survey
    pairs = survey_pairs(folder, tmp_path, 0.4, 128, config=ProtocolConfig(split="lines",
                                                                               tilt_from_images=False))
    held_out = len(lines[1]) + len(lines[3])
    assert len(pairs) == held_out == pairs.info["queries"] and pairs.info["map_photos"] == len(lines[0]) + len(lines[2])
    assert pairs.query.shape == (held_out, 128, 128, 3) and pairs.query.dtype == np.uint8
    assert (pairs.query_mask.mean(axis=(1, 2)) > 0.85).all()  # a nadir-ish photo at ~60 m covers the 51 m view
    assert not pairs.query[~pairs.query_mask].any()
    m = pairs.mosaic
    col = ((pairs.position[:, 0] - m.x_min) / m.gsd).astype(int)
    row = ((m.y_max - pairs.position[:, 1]) / m.gsd).astype(int)
    # the held-out lines lie between (the 2nd) and beside (the 4th) the mapped ones: every held-out photo but at most
    # one, a line's end just beyond the mapped lines' (the 2nd line's last, once the boresight turns the recorded
    # tilt), is over the mosaic
    assert m.mask[row, col].sum() >= held_out - 1
    assert (tmp_path / "mosaic.tif").is_file() and (tmp_path / "mosaic.json").is_file()
    some = pairs.structure >= 0.03
    sub = pairs.subset(some)
    assert len(sub) == int(some.sum()) == sub.info["queries"] and np.array_equal(sub.position, pairs.position[some])
    assert sub.names == tuple(n for n, s in zip(pairs.names, some) if s)


def test_eval_encoder_on_photos(survey, tmp_path, capsys):
    import argparse

    from export import train_cli
    from export.train import TrainError

    folder, lines = survey
    parser = argparse.ArgumentParser(prog="skyfix")
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "r.json"
    # the recorded tilt (turned by the survey's boresight): every held-out photo but one line's end then lies inside
    # the mosaic of the 1st and 3rd lines, so all but at most one query have a positive tile
    args = parser.parse_args(["eval-encoder", "classical", "--photos", str(folder), "--photo-split", "lines",
                              "--json", str(out), "--photo-recorded-tilt"])
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "tilt from the images" not in text
    assert f"{folder.name}/lines " in text and f"{folder.name}/lines/structure" in text
    rep = json.loads(out.read_text())
    assert rep["config"]["split"] == "lines" and "placement noise" in rep["config"]["truth"]
    rows = {r["area"]: r for r in rep["results"]}
    assert rows[f"{folder.name}/lines"]["queries"] == len(lines[1]) + len(lines[3])
    assert 0 < rows[f"{folder.name}/lines/structure"]["queries"] <= rows[f"{folder.name}/lines"]["queries"]
    n = len(lines[1]) + len(lines[3])
    assert rows[f"{folder.name}/lines"]["metrics"]["has_positive"] >= (n - 1) / n
    for argv, message in ((["--ortho", str(folder)], "without --ortho/--gallery"),
                          ([], "not a folder of geotagged photos")):
        photos = str(tmp_path / "nowhere") if not argv else str(folder)
        args = parser.parse_args(["eval-encoder", "classical", "--photos", photos, *argv])
        with pytest.raises(TrainError, match=message):
            args.handler(args)
