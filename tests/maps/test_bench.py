"""The map benchmark at a tiny size: structure of the results, cache reuse, table. No timing assertions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from maps.bench import ensure_bench_map, format_table, grid_positions, random_unit, run_bench
from maps.errors import MapError
from maps.package import MapPackage


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench")
    logs = []
    r = run_bench(3000, 24, cache_dir=cache, repeats=3, load_repeats=2, queries=15, log=logs.append)
    return r, cache, logs


def test_result_structure(result):
    r, cache, logs = result
    assert set(r) == {"map", "build", "load", "scoped", "hnsw", "machine"}
    assert r["map"]["tiles"] == 3000 and r["map"]["dim"] == 24
    assert set(r["map"]["bytes"]) >= {"embeddings.f16.npy", "positions.f64.npy", "index.hnsw"}
    assert r["build"]["reused"] is False and r["build"]["build_s"] > 0 and r["build"]["tiles"] == 3000
    eager = r["load"]["eager"]
    for key in ("manifest", "embeddings", "positions", "grid", "hnsw", "total"):
        assert eager["first"][key] >= 0 and eager["median"][key] >= 0
    assert eager["runs"] == 2
    assert eager["first"]["verify"] > 0  # the load-time SHA-256 check, on by default
    ver = r["load"]["verify"]
    assert set(ver) <= {"warm", "cold"} and "warm" in ver
    for by_mode in ver.values():
        assert by_mode["sizes"]["runs"] == by_mode["sha256"]["runs"] == 2
        assert by_mode["sha256"]["verify_s"] > 0 and by_mode["sizes"]["verify_s"] < 1e-3
        assert by_mode["sha256"]["load_s"] > 0 and by_mode["sizes"]["load_s"] > 0
    for mode in ("lazy", "background"):
        m = r["load"][mode]
        assert 0 < m["return_s"] <= m["first_scoped_query_s"] <= m["hnsw_ready_s"]
        assert m["scoped_query_latency_s"] > 0 and m["first_whole_map_query_s"] > 0
    assert [s["target_tiles"] for s in r["scoped"]] == [1000]  # scopes up to half the map
    s = r["scoped"][0]
    assert s["path"] == ["exact"] and s["cold_ms"] > 0 and s["cold_paged_ms"] > 0 and s["warm_ms"] > 0
    assert s["radius_m"] == pytest.approx(math.sqrt(1000 * 12.8 ** 2 / math.pi))
    assert 800 <= s["tiles_in_scope"] <= 1200
    h = r["hnsw"]
    assert h["k"] == 10 and h["queries"] == 15 and h["latency_ms"] > 0
    assert set(h["recall"]) == {"64", "128", "256"}
    assert all(0.0 <= v["recall_at_k"] <= 1.0 for v in h["recall"].values())
    assert h["recall"]["256"]["recall_at_1"] >= 0.9  # the noisy copy's source tile, tiny map
    assert h["large_prior"]["path"].startswith("hnsw")
    json.dumps(r)  # JSON-ready
    assert any("building the benchmark map" in line for line in logs)


def test_table_mentions_every_section(result):
    text = format_table(result[0])
    for needle in ("map: 3000 tiles x 24", "load (s)", "hnsw", "hnsw=lazy:", "hnsw=background:", "prior-scoped exact search",
                   "cold ms", "paged ms", "recall@10", "prior holding 60% of the map",
                   "load-time check (fresh process, eager, median): sizes only vs SHA-256 of every file", "warm cache:"):
        assert needle in text


def test_cached_map_is_reused(result):
    _, cache, _ = result
    logs = []
    path, info = ensure_bench_map(3000, 24, cache_dir=cache, log=logs.append)
    assert info["reused"] is True and "build_s" in info and "reusing" in logs[0]
    pkg = MapPackage.load(path, hnsw="off")
    assert pkg.n_tiles == 3000 and pkg.embedding_dim == 24
    assert path.name.startswith("map-3000-d24-p24-") and pkg.manifest.hnsw["dim"] == 24  # p = min(d, 64) = d


def test_cache_key_includes_the_hnsw_dim(result, tmp_path):
    r, _, _ = result
    assert r["map"]["hnsw_dim"] == 24 and "HNSW graph over 24 dimensions (no projection)" in format_table(r)
    logs = []
    path, info = ensure_bench_map(400, 24, cache_dir=tmp_path, hnsw_dim=8, log=logs.append)
    assert info["reused"] is False and info["hnsw_dim"] == 8 and path.name.startswith("map-400-d24-p8-")
    pkg = MapPackage.load(path)
    assert pkg.manifest.hnsw["dim"] == 8 and pkg.projection.shape == (8, 24)
    other, info = ensure_bench_map(400, 24, cache_dir=tmp_path, log=logs.append)  # another p: another map
    assert other != path and info["reused"] is False and other.name.startswith("map-400-d24-p24-")
    assert ensure_bench_map(400, 24, cache_dir=tmp_path, hnsw_dim=8, log=logs.append)[1]["reused"] is True
    with pytest.raises(MapError, match="hnsw_dim must be a positive integer <= the embedding dimension 24"):
        ensure_bench_map(400, 24, cache_dir=tmp_path, hnsw_dim=25)


def test_helpers():
    p = grid_positions(10, 2.0)
    assert p.shape == (10, 2) and np.allclose(np.diff(np.unique(p[:, 0])), 2.0)
    e = random_unit(100, 8, seed=1)
    assert e.dtype == np.float16 and np.allclose(np.linalg.norm(e.astype(np.float32), axis=1), 1.0, atol=2e-3)
    with pytest.raises(MapError, match="integer >= 100"):
        ensure_bench_map(5, 8)
