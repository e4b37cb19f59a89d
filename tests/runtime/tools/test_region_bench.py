"""runtime.tools.region_bench: the linear fit and projection, and one tiny build end to end (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from runtime.tools.region_bench import fit, format_report, main, projection


def _row(area, seconds):
    kinds = {"imagery": 6e6 * area, "embeddings": 3e6 * area, "index": 1e6 * area, "other": 0.0}
    return {"area_km2": area, "seconds": seconds, "seconds_per_km2": seconds / area, "bytes_per_km2": 1e7,
            "tiles_per_km2": 6000.0, "bytes_by_kind": kinds}


def test_fit_and_projection_of_a_linear_cost():
    rows = [_row(a, 5.0 + 2.0 * a) for a in (1.0, 4.0, 16.0)]
    f = fit(rows)
    assert f["a_seconds"] == pytest.approx(5.0) and f["b_seconds_per_km2"] == pytest.approx(2.0)
    assert f["r2"] == pytest.approx(1.0) and f["per_km2_ratio"] == pytest.approx((37.0 / 16) / 7.0)
    p = projection(rows, f, workers=2, shard_km=1.0)
    assert p["hours"] == pytest.approx({"1": 2e4 / 3600, "10": 2e3 / 3600, "50": 400 / 3600})
    assert p["storage_bytes"] == pytest.approx(1e11) and p["shards"] == 10_000 and p["tiles"] == pytest.approx(6e7)
    assert p["storage_by_kind_bytes"]["imagery"] == pytest.approx(6e10)


def test_a_tiny_classical_build(shared_data, tmp_path, capsys):
    pytest.importorskip("ray")
    srcs = [str(shared_data(f"ortho/swissimage_zurich_{k}_0.5m.tif")) for k in "ab"]
    out = tmp_path / "r.json"
    assert main(["--out", str(tmp_path / "bench"), "--areas", "0.09", "--model", "classical", "--sources", *srcs,
                 "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert row["shards"] == 1 and row["tiles"] > 100 and row["bytes"] > 0 and row["seconds"] > 0
    assert row["area_km2"] == pytest.approx(0.09, rel=0.05) and res["config"]["encoder_id"] == "classical-tinygrad-v1"
    assert res["fit"]["a_seconds"] is None and set(res["projection"]["hours"]) == {"1", "10", "50"}
    assert capsys.readouterr().out == format_report(res) + f"\nwrote {out}\n"
    assert main(["--out", str(tmp_path / "bench"), "--areas", "0.09", "--json", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
