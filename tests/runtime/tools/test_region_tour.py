"""runtime.tools.region_tour: every shard of a region visited in a child process, peak RSS and loads reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ray", reason="the region extra (pip install 'skyfix[region]') is not installed")


def test_tour_visits_every_shard_within_the_bound(tmp_path, capsys):
    from maps.geodesy import LocalFrame
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto
    from maps.region_build import EncoderSpec, build_region
    from runtime.tools.region_tour import main

    gen = np.random.default_rng(1)
    img = gen.integers(0, 256, (140, 250, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    tif = write_geotiff(tmp_path / "o.tif", Orthophoto(img, np.ones(img.shape[:2], bool), 0.5, 0.0, 280.0,
                                                       LocalFrame(47.0, 8.0)))
    build_region([str(tif)], tmp_path / "r.region", EncoderSpec("classical"), shard_km=0.21, workers=2)
    out = tmp_path / "tour.json"
    assert main([str(tmp_path / "r.region"), "--cache-mb", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())[0]
    # 3 x 2 shards of 210 m; a 200 m scope needs neighbours too, so a 1 MiB bound loads some twice
    assert row["shards"] == 6 and row["loads"] >= 6 and row["cache_mb"] == 1.0
    assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0 and row["peak_loaded_mb"] < 20
    assert "r.region" in capsys.readouterr().out
