"""Search: exact prior-scoped search equals brute force, HNSW paths, padding, typed errors, recall on real imagery."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

import maps.search as search_mod
from maps.contract import EncoderContract
from maps.errors import MapError, PriorOutsideMapError, QueryError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from maps.package import MapPackage, write_package
from maps.search import CellCache, HnswHandle, Searcher, SpatialGrid, f16_to_f32, f16_to_f32_into, topk_rows
from maps.tiling import TileGrid, cut_tiles, plan_tiles

FRAME = LocalFrame(46.5, 7.5)
STRIDE = 4.0


def _random_map(tmp_path, n_side=40, dim=24, seed=0, cell_strides=5, holes=False):
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(n_side) * STRIDE, np.arange(n_side) * STRIDE)
    pos = np.stack([gx.ravel(), gy.ravel()], axis=1) - 60.0
    if holes:  # a gap with no tiles in the middle of the map
        keep = ~((np.abs(pos[:, 0] - 18) < 15) & (np.abs(pos[:, 1] - 18) < 15))
        pos = pos[keep]
    emb = rng.standard_normal((len(pos), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    contract = EncoderContract("rand-v1", "random", 16, 16, 1.0, dim)
    path = write_package(
        tmp_path / "map", embeddings=emb, positions=pos, frame=FRAME, contract=contract,
        tile_grid=TileGrid(16.0, STRIDE, 1.0), cell_size_m=cell_strides * STRIDE,
    )
    return path


@pytest.fixture(scope="module")
def rmap(tmp_path_factory):
    return MapPackage.load(_random_map(tmp_path_factory.mktemp("rand")))


def _brute(pkg, q, k, prior=None):
    """Reference: full sort by (score desc, id asc) over the tiles in the circle."""
    emb = pkg.embeddings.astype(np.float32)
    q = np.atleast_2d(q).astype(np.float32)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    ids = np.arange(pkg.n_tiles)
    if prior is not None:
        x, y, r = prior
        d2 = (pkg.positions[:, 0] - x) ** 2 + (pkg.positions[:, 1] - y) ** 2
        ids = ids[d2 <= r * r]
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    for row in range(len(q)):
        s = emb[ids] @ q[row]
        order = np.lexsort((ids, -s))[:k]
        out_s[row, :len(order)], out_i[row, :len(order)] = s[order], ids[order]
    return out_s, out_i


@pytest.mark.parametrize("prior", [(0.0, 0.0, 10.0), (13.0, -7.0, 35.0), (-60.0, -60.0, 25.0), (90.0, 0.0, 30.0),
                                   (20.0, 20.0, 61.0)])
def test_exact_prior_search_equals_brute_force(rmap, prior):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((5, rmap.embedding_dim)).astype(np.float32)
    scores, ids = rmap.search(q, 7, prior=prior)
    assert rmap.searcher.last_path == "exact"
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and scores.shape == ids.shape == (5, 7)
    want_s, want_i = _brute(rmap, q, 7, prior)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_allclose(scores, want_s, atol=2e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_scope_ids_equal_the_circle(rmap):
    for prior in [(0.0, 0.0, 10.0), (13.0, -7.0, 35.0), (100.0, 100.0, 80.0)]:
        x, y, r = prior
        d2 = (rmap.positions[:, 0] - x) ** 2 + (rmap.positions[:, 1] - y) ** 2
        np.testing.assert_array_equal(rmap.scope_ids(prior), np.flatnonzero(d2 <= r * r))


def test_tiles_are_stored_cell_major(rmap):
    g, off = rmap.manifest.spatial_grid, rmap.cell_offsets
    cells = g.cell_ids(rmap.positions)
    assert np.all(np.diff(cells) >= 0)
    for c in range(g.n_cells):
        assert np.all(cells[off[c]:off[c + 1]] == c)


def test_whole_map_search_uses_hnsw_and_finds_each_tile(rmap):
    q = rmap.embedding(np.arange(rmap.n_tiles))
    scores, ids = rmap.search(q, 3)
    assert rmap.searcher.last_path == "hnsw"
    np.testing.assert_array_equal(ids[:, 0], np.arange(rmap.n_tiles))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=2e-3)
    ex_s, ex_i = rmap.search(q[:50], 3, exact=True)
    assert rmap.searcher.last_path == "exact"
    np.testing.assert_array_equal(ex_i, _brute(rmap, q[:50], 3)[1])


def test_large_prior_uses_hnsw_and_filters_to_the_circle(rmap):
    x0, y0, x1, y1 = rmap.bounds
    prior = ((x0 + x1) / 2, (y0 + y1) / 2, 0.45 * (x1 - x0))  # ~64% of the map
    assert rmap.scope_ids(prior).size > 0.5 * rmap.n_tiles
    rng = np.random.default_rng(2)
    inside = rmap.scope_ids(prior)
    q = rmap.embedding(rng.choice(inside, 20, replace=False)) + 0.05 * rng.standard_normal((20, rmap.embedding_dim))
    scores, ids = rmap.search(q, 10, prior=prior)
    assert rmap.searcher.last_path.startswith("hnsw+filter")
    assert np.isin(ids, inside).all()
    _, want = _brute(rmap, q, 10, prior)
    np.testing.assert_array_equal(ids[:, 0], want[:, 0])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), want.tolist())])
    assert recall >= 0.95


def test_padding_when_fewer_tiles_than_k(rmap):
    t = rmap.nearest_tile(0.0, 0.0)  # an interior tile
    x, y = rmap.positions[t]
    scores, ids = rmap.search(rmap.embedding([t]), 10, prior=(x, y, STRIDE * 1.01))  # the tile + 4 neighbours
    assert (ids[0] >= 0).sum() == 5 and np.all(ids[0, 5:] == -1) and np.all(np.isneginf(scores[0, 5:]))
    assert ids[0, 0] == t
    s2, i2 = rmap.search(rmap.embedding([t]), 2000)  # k > n without a prior
    assert (i2 >= 0).sum() == rmap.n_tiles and np.all(np.isneginf(s2[0, rmap.n_tiles:]))


def test_prior_in_a_gap_returns_only_padding(tmp_path):
    pkg = MapPackage.load(_random_map(tmp_path, holes=True))
    scores, ids = pkg.search(np.ones(pkg.embedding_dim), 4, prior=(18.0, 18.0, 5.0))
    assert np.all(ids == -1) and np.all(np.isneginf(scores))


def test_prior_outside_the_map(rmap):
    with pytest.raises(PriorOutsideMapError) as err:
        rmap.search(np.ones(rmap.embedding_dim), 5, prior=(5000.0, -3000.0, 100.0))
    msg = str(err.value)
    assert "x=5000.0 m, y=-3000.0 m" in msg and "lat " in msg and "radius 100.0 m" in msg
    x0, y0, x1, y1 = rmap.bounds
    assert f"x [{x0:.1f}, {x1:.1f}] m" in msg and f"y [{y0:.1f}, {y1:.1f}] m" in msg
    assert isinstance(err.value, QueryError)
    # a circle reaching into the map is fine
    rmap.search(np.ones(rmap.embedding_dim), 5, prior=(x1 + 10.0, 0.0, 12.0))


def test_query_errors(rmap):
    d = rmap.embedding_dim
    with pytest.raises(QueryError, match=f"query dimension {d + 1} does not match the map's embedding dimension {d}"):
        rmap.search(np.ones((2, d + 1)), 5)
    for k in (0, -1, True, 2.5):
        with pytest.raises(QueryError, match="k must be a positive integer"):
            rmap.search(np.ones(d), k)
    q = np.ones((3, d))
    q[1, 4] = np.nan
    with pytest.raises(QueryError, match=r"NaN or infinite values \(rows \[1\]\)"):
        rmap.search(q, 5)
    with pytest.raises(QueryError, match="all zeros"):
        rmap.search(np.zeros(d), 5)
    with pytest.raises(QueryError, match=r"shape \[2, 2, 24\]"):
        rmap.search(np.ones((2, 2, d)), 5)
    with pytest.raises(QueryError, match="no queries"):
        rmap.search(np.ones((0, d)), 5)
    with pytest.raises(QueryError, match="radius_m must be > 0"):
        rmap.search(np.ones(d), 5, prior=(0.0, 0.0, 0.0))
    with pytest.raises(QueryError, match="finite"):
        rmap.search(np.ones(d), 5, prior=(np.nan, 0.0, 10.0))
    with pytest.raises(QueryError, match=r"\(x, y, radius_m\)"):
        rmap.search(np.ones(d), 5, prior=(1.0, 2.0))
    with pytest.raises(QueryError, match="ef must be"):
        rmap.search(np.ones(d), 5, ef=0)


def test_search_latlon_equals_local_prior(rmap):
    x, y = rmap.positions[333]
    lat, lon = rmap.frame.to_wgs84(x, y)
    q = rmap.embedding([333, 12])
    a = rmap.search_latlon(q, 5, lat, lon, 20.0)
    b = rmap.search(q, 5, prior=(x, y, 20.0))
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1][0, 0] == 333


def test_topk_rows_total_order_and_padding():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]], np.float32)
    ids = np.array([40, 3, 7, 1, 2], np.int64)
    s, i = topk_rows(scores, ids, 3)
    np.testing.assert_array_equal(i, [[3, 1, 7], [1, 2, 3]])
    np.testing.assert_allclose(s, [[0.9, 0.5, 0.5], [0.2, 0.2, 0.2]])
    s, i = topk_rows(scores, ids, 7)
    assert i[0, 5] == -1 and np.isneginf(s[1, 6]) and list(i[0, :5]) == [3, 1, 7, 40, 2]


def test_chunked_exact_merge_equals_one_pass(rmap, monkeypatch):
    rng = np.random.default_rng(5)
    q = rng.standard_normal((4, rmap.embedding_dim)).astype(np.float32)
    want = rmap.search(q, 9, exact=True)
    monkeypatch.setattr(search_mod, "_CHUNK_COLUMNS", 37)
    got = rmap.search(q, 9, exact=True)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(want[1], _brute(rmap, q, 9)[1])


def test_f16_conversion_is_exact():
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((300, 64)) * 0.3).astype(np.float16)
    a[0, :4] = [0.0, -0.0, 6e-8, -65504.0]
    out = f16_to_f32(a[3:250])
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a[3:250].astype(np.float32))
    np.testing.assert_array_equal(f16_to_f32(a[:0]), np.zeros((0, 64), np.float32))
    buf = np.full((10, 300, 64), np.nan, np.float32)
    f16_to_f32_into(a[5:290], buf[3, :285])
    np.testing.assert_array_equal(buf[3, :285], a[5:290].astype(np.float32))
    assert np.isnan(buf[3, 285:]).all() and np.isnan(buf[2]).all()


def test_cell_cache_is_a_bounded_lru():
    emb = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float16)
    offsets = np.arange(0, 101, 10)  # 10 cells of 10 rows = 320 bytes each in float32
    cache = CellCache(emb, offsets, max_bytes=3 * 320 + 100)
    assert cache.slots == 3 and cache.max_bytes == 960
    for c in (0, 1, 2, 0, 3):  # 3 evicts 1 (least recently used)
        np.testing.assert_array_equal(cache.get(c), emb[c * 10:(c + 1) * 10].astype(np.float32))
    assert cache.nbytes == 3 * 320 and cache.hits == 1 and cache.misses == 4
    cache.get(0)
    assert cache.hits == 2
    np.testing.assert_array_equal(cache.get(1), emb[10:20].astype(np.float32))  # back, evicting 2
    assert cache.misses == 5
    for c in (2, 3, 0, 1):  # every value stays right through slot reuse
        np.testing.assert_array_equal(cache.get(c), emb[c * 10:(c + 1) * 10].astype(np.float32))
    cache.clear()
    assert cache.nbytes == 0
    np.testing.assert_array_equal(cache.get(7), emb[70:80].astype(np.float32))
    assert CellCache(emb, offsets, 0).get(4).shape == (10, 8)
    ragged = CellCache(emb, np.array([0, 3, 40, 100]), 10 ** 6)  # cells of 3, 37 and 60 rows
    for c, (a, b) in enumerate([(0, 3), (3, 40), (40, 100)]):
        np.testing.assert_array_equal(ragged.get(c), emb[a:b].astype(np.float32))


def test_f16_conversion_is_bit_exact_on_special_values():
    a = np.array([[0.0, -0.0, 6e-8, -6e-8, 3e-5, -65504.0, 65504.0, np.inf, -np.inf, np.nan, 1.0, -1.0]],
                 dtype=np.float16)
    want = a.astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(f16_to_f32(a).view(np.uint32), want)
    out = np.full(a.shape, 7.0, np.float32)
    f16_to_f32_into(a, out)
    np.testing.assert_array_equal(out.view(np.uint32), want)
    assert search_mod.converter_name() in ("cv2.add(-0.0)", "cv2.multiply(1.0)", "numpy")


def test_cell_cache_converts_only_the_rows_asked_for():
    emb = np.random.default_rng(1).standard_normal((100, 8)).astype(np.float16)
    offsets = np.arange(0, 101, 20)  # 5 cells of 20 rows
    cache = CellCache(emb, offsets, max_bytes=2 * 20 * 8 * 4)
    inside = np.zeros(20, bool)
    inside[[1, 4, 5, 17]] = True  # scattered: gathered, not converted whole
    block, rows = cache.get_rows(1, inside)
    assert rows is not None and sorted(rows.tolist()) == [1, 4, 5, 17]
    np.testing.assert_array_equal(block, emb[20 + rows].astype(np.float32))
    assert cache.rows_converted == 4 and cache.misses == 1 and cache.nbytes == 4 * 8 * 4
    block, rows = cache.get_rows(1, inside)  # nothing new
    assert cache.rows_converted == 4 and cache.hits == 1 and block.shape[0] == 4
    inside[[0, 4, 18]] = True  # two new rows: only those are converted and appended
    block, rows = cache.get_rows(1, inside)
    assert cache.rows_converted == 6 and cache.misses == 2
    assert sorted(rows.tolist()) == [0, 1, 4, 5, 17, 18] and len(set(rows.tolist())) == 6
    np.testing.assert_array_equal(block, emb[20 + rows].astype(np.float32))
    assert cache.nbytes == 6 * 8 * 4
    block, rows = cache.get_rows(1, None)  # every row of the cell: the 14 missing ones are added
    assert cache.rows_converted == 20 and sorted(rows.tolist()) == list(range(20))
    np.testing.assert_array_equal(block, emb[20 + rows].astype(np.float32))
    np.testing.assert_array_equal(cache.get(1), emb[20:40].astype(np.float32))  # get(): whole cell in row order
    assert cache.rows_converted == 40 and cache.nbytes == 20 * 8 * 4
    block, rows = cache.get_rows(1, inside)
    assert rows is None and cache.rows_converted == 40  # held whole and in order: a hit
    np.testing.assert_array_equal(block, emb[20:40].astype(np.float32))
    span = np.zeros(20, bool)
    span[6:12] = True  # one contiguous run: converted without a gather
    block, rows = cache.get_rows(3, span)
    np.testing.assert_array_equal(rows, np.arange(6, 12))
    np.testing.assert_array_equal(block, emb[66:72].astype(np.float32))
    cache.get_rows(4, span)  # evicts cell 1 (least recently used): the slot is reused, packed state reset
    block, rows = cache.get_rows(1, inside)
    assert sorted(rows.tolist()) == [0, 1, 4, 5, 17, 18]
    np.testing.assert_array_equal(block, emb[20 + rows].astype(np.float32))
    assert cache.nbytes == (6 + 6) * 8 * 4
    cache.clear()
    assert cache.nbytes == 0
    off = CellCache(emb, offsets, 0)  # no cache: the asked rows are converted every time
    block, rows = off.get_rows(2, inside)
    np.testing.assert_array_equal(block, emb[40 + rows].astype(np.float32))
    assert sorted(rows.tolist()) == [0, 1, 4, 5, 17, 18] and off.rows_converted == 6


@pytest.mark.parametrize("ratio", [1.0, search_mod.GATHER_SPAN_RATIO, 100.0])
@pytest.mark.parametrize("cache_bytes", [0, 3 * 25 * 24 * 4, 256 << 20])  # none, 3 cells (evictions), plenty
def test_exact_search_with_partial_boundary_cells_equals_brute_force(tmp_path, monkeypatch, ratio, cache_bytes):
    """Moving priors (the next frames), first queries in new areas, eviction: ids exact, scores within rounding."""
    monkeypatch.setattr(search_mod, "GATHER_SPAN_RATIO", ratio)
    pkg = MapPackage.load(_random_map(tmp_path), hnsw="off", cache_mb=cache_bytes / (1 << 20))
    rng = np.random.default_rng(3)
    x, y = -10.0, 5.0
    rows_in_cells = 0
    for step in range(25):
        if step % 8 == 0:
            x, y = rng.uniform(-50, 80, size=2)  # a new area
        x, y = x + rng.uniform(-3, 3), y + rng.uniform(-3, 3)
        prior = (float(x), float(y), float(rng.uniform(6, 45)))
        q = rng.standard_normal((2, pkg.embedding_dim)).astype(np.float32)
        scores, ids = pkg.search(q, 6, prior=prior, exact=True)
        want_s, want_i = _brute(pkg, q, 6, prior)
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_allclose(scores, want_s, atol=2e-6)
        cells, _ = pkg.searcher.cells_in(prior)
        rows_in_cells += int(pkg.searcher._counts[cells].sum())
    assert pkg.searcher.cache.nbytes <= cache_bytes
    if ratio == 1.0:  # boundary cells were converted in part
        assert pkg.searcher.cache.rows_converted < rows_in_cells


def test_first_query_converts_only_rows_inside_boundary_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(search_mod, "GATHER_SPAN_RATIO", 1.0)
    pkg = MapPackage.load(_random_map(tmp_path, n_side=60), hnsw="off")
    prior = (30.0, 40.0, 70.0)
    cells, full = pkg.searcher.cells_in(prior)
    assert (~full).sum() > 0
    pkg.search(np.ones(pkg.embedding_dim), 3, prior=prior)
    assert pkg.searcher.cache.rows_converted == pkg.scope_ids(prior).size
    conv = pkg.searcher.cache.rows_converted
    pkg.search(np.ones(pkg.embedding_dim), 3, prior=prior)  # the same prior again: all from the cache
    assert pkg.searcher.cache.rows_converted == conv


def test_background_hnsw_ready_semantics(tmp_path):
    """While the index loads, prior-scoped search works (exact, even for large scopes); whole-map search waits."""
    path = _random_map(tmp_path)
    pkg = MapPackage.load(path, hnsw="off")
    gate, started = threading.Event(), threading.Event()
    import hnswlib

    def slow_loader():
        started.set()
        gate.wait(10)
        idx = hnswlib.Index(space="ip", dim=pkg.embedding_dim)
        idx.load_index(str(path / "index.hnsw"))
        return idx

    handle = HnswHandle(slow_loader, "background")
    s = Searcher(pkg.embeddings, pkg.positions, pkg.manifest.spatial_grid, pkg.cell_offsets, pkg.bounds, handle)
    started.wait(5)
    assert not handle.ready
    q = pkg.embedding([10])
    x, y = pkg.positions[10]
    _, ids = s.search(q, 3, prior=(x, y, 20.0))
    assert ids[0, 0] == 10 and s.last_path == "exact" and not handle.ready
    x0, y0, x1, y1 = pkg.bounds
    s.search(q, 3, prior=((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0))  # whole-map circle: exact while loading
    assert s.last_path == "exact"
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", s.search(q, 3)))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # a whole-map query waits for the index
    gate.set()
    t.join(10)
    assert handle.ready and result["r"][1][0, 0] == 10 and s.last_path == "hnsw"
    assert handle.wait(0) is True


def test_package_background_lazy_and_off_modes(tmp_path):
    path = _random_map(tmp_path)
    bg = MapPackage.load(path, hnsw="background")
    assert bg.wait_hnsw(30) and bg.hnsw_ready
    lazy = MapPackage.load(path, hnsw="lazy")
    assert not lazy.hnsw_ready
    x, y = lazy.positions[5]
    lazy.search(lazy.embedding([5]), 2, prior=(x, y, 10.0))
    assert not lazy.hnsw_ready  # small priors never need the index
    lazy.search(lazy.embedding([5]), 2)
    assert lazy.hnsw_ready and lazy.searcher.last_path == "hnsw"
    lazy2 = MapPackage.load(path, hnsw="lazy")
    x0, y0, x1, y1 = lazy2.bounds
    lazy2.search(lazy2.embedding([5]), 2, prior=((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0))  # most of the map
    assert lazy2.hnsw_ready and lazy2.searcher.last_path.startswith("hnsw+filter")
    off = MapPackage.load(path, hnsw="off")
    _, ids = off.search(off.embedding([5]), 2)
    assert ids[0, 0] == 5 and off.searcher.last_path == "exact" and not off.hnsw_ready
    with pytest.raises(MapError, match="hnsw load mode"):
        MapPackage.load(path, hnsw="sometimes")


def test_hnsw_filter_callable_is_never_used():
    src = inspect.getsource(search_mod)
    assert "filter=" not in src and "knn_query(queries, k=k)" in src


def test_spatial_grid_rejects_unknown_keys():
    g = SpatialGrid(0.0, 0.0, 10.0, 3, 2)
    assert SpatialGrid.from_dict(g.to_dict()) == g
    with pytest.raises(MapError, match="unknown spatial grid keys"):
        SpatialGrid.from_dict({**g.to_dict(), "bogus": 1})


# ---------------------------------------------------------------------------------------------- real imagery


def _descriptor():
    """(embed, contract): the classical baseline when present, else a normalised tiny-image descriptor."""
    try:
        from maps.descriptors import ClassicalDescriptor, classical_contract

        return ClassicalDescriptor(), classical_contract(), "classical"
    except ImportError:
        pass
    import cv2

    def embed(images):
        n, s = images.shape[0], images.shape[1]
        small = cv2.resize(images.reshape(n * s, s, 3), (8, n * 8), interpolation=cv2.INTER_AREA)
        e = small.reshape(n, -1).astype(np.float32)
        e -= e.mean(axis=1, keepdims=True)
        e = np.concatenate([e, np.full((n, 1), 4.0, np.float32)], axis=1)  # never a zero vector
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)

    return embed, EncoderContract("tiny-8x8-v1", "tiny image", 32, 32, 0.5, 193), "tiny"


def _read_rgb(path):
    import rasterio

    with rasterio.open(path) as ds:
        return np.ascontiguousarray(np.moveaxis(ds.read([1, 2, 3]), 0, -1)), float(ds.res[0])


def plan_ok(ortho, centres, grid):
    """bool[n]: the tile footprints at ``centres`` are fully valid imagery."""
    u0, v0 = ortho.to_pixel(centres[:, 0] - grid.tile_size_m / 2, centres[:, 1] + grid.tile_size_m / 2)
    n = int(round(grid.tile_size_m / ortho.gsd))
    ok = []
    for a, b in zip(np.round(u0 + 0.5).astype(int), np.round(v0 + 0.5).astype(int)):
        win = ortho.mask[max(b, 0):b + n, max(a, 0):a + n]
        ok.append(a >= 0 and b >= 0 and win.shape == (n, n) and bool(win.all()))
    return np.array(ok, bool)


@pytest.fixture(scope="module")
def real_embeddings(shared_data):
    """(emb float32[n, d], pos float64[n, 2], queries float32[m, d], contract, stride, kind) of real aerial imagery:
    map tiles of four orthophotos and queries cut between the tiles."""
    pytest.importorskip("rasterio")
    embed, contract, kind = _descriptor()
    tile = contract.input_width * contract.ground_resolution_m
    stride = tile / 8 if kind == "tiny" else tile / 6
    rng = np.random.default_rng(0)
    all_emb, all_pos, queries = [], [], []
    for k, name in enumerate(["openaerialmap_brazil_0.1m.tif", "openaerialmap_manila_0.1m.tif",
                              "swissimage_zurich_b_0.5m.tif", "netherlands_0.25m.tif"]):
        img, res = _read_rgb(shared_data(f"ortho/{name}"))
        mask = img.max(axis=2) > 0  # pure black = nodata (the Manila scene has black corners)
        ortho = Orthophoto(img, mask, res, 2000.0 * k, 0.0, FRAME)
        grid = TileGrid.from_contract(contract, stride_m=stride)
        pos = plan_tiles(ortho, grid)
        from maps.tiling import resample_to_gsd

        r = resample_to_gsd(ortho, grid.gsd)
        all_emb.append(embed(cut_tiles(r, pos, grid)))
        all_pos.append(pos)
        off = pos[rng.choice(len(pos), 30, replace=False)] + rng.uniform(-stride / 2, stride / 2, (30, 2))
        off = off[plan_ok(ortho, off, grid)]
        queries.append(embed(cut_tiles(r, off, grid)))
    emb, pos, q = np.concatenate(all_emb), np.concatenate(all_pos), np.concatenate(queries)
    return emb, pos, q, contract, stride, kind


@pytest.mark.parametrize("hnsw_dim", [None, "d"])
def test_hnsw_recall_on_real_orthophoto_embeddings(real_embeddings, tmp_path, hnsw_dim):
    """HNSW recall@10 vs exact >= 0.95 for queries cut between the map's tiles of real aerial imagery, with the
    default graph (a 64-d PCA projection, candidates re-ranked exactly) and with the full-dimension graph."""
    emb, pos, q, contract, stride, kind = real_embeddings
    assert len(emb) >= 2000
    d = emb.shape[1]
    p = d if hnsw_dim == "d" else min(d, 64)
    path = write_package(tmp_path / "real", embeddings=emb, positions=pos, frame=FRAME, contract=contract,
                         tile_grid=TileGrid.from_contract(contract, stride_m=stride),
                         hnsw_dim=d if hnsw_dim == "d" else None)
    pkg = MapPackage.load(path)
    assert pkg.manifest.hnsw["dim"] == p and (pkg.projection is None) == (p == d)
    if kind == "classical":
        assert p < d or hnsw_dim == "d"  # the default exercises the projected path (d = 384)
    exact_s, exact = pkg.search(q, 10, exact=True)
    approx_s, approx = pkg.search(q, 10)
    assert pkg.searcher.last_path == "hnsw"
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.tolist(), exact.tolist())])
    assert recall >= 0.95, f"recall@10 {recall:.3f} with the {kind} descriptor over {len(emb)} tiles, HNSW over {p} dims"
    if p < d:  # re-ranked scores are the exact cosine similarities of the returned tiles
        want = np.einsum("qkd,qd->qk", pkg.embedding(approx.ravel()).reshape(*approx.shape, d),
                         q / np.linalg.norm(q, axis=1, keepdims=True))
        np.testing.assert_allclose(approx_s, want, atol=1e-5)
        assert np.all(np.diff(approx_s, axis=1) <= 0)


def test_prefetch_fills_the_cache_for_a_prior(tmp_path):
    pkg = MapPackage.load(_random_map(tmp_path), hnsw="off")
    prior = (0.0, 0.0, 20.0)
    n = pkg.prefetch(prior)
    assert n >= pkg.scope_ids(prior).size and pkg.searcher.cache.nbytes > 0
    misses = pkg.searcher.cache.misses
    pkg.search(np.ones(pkg.embedding_dim), 3, prior=prior)
    assert pkg.searcher.cache.misses == misses  # every cell came from the cache


@pytest.mark.parametrize("hnsw_dim", [None, 8])
def test_textureless_duplicate_groups_are_found_by_whole_map_search(tmp_path, monkeypatch, hnsw_dim):
    """A group of identical vectors orthogonal to everything (the constant descriptor of textureless tiles) gives
    the HNSW graph no gradient to follow (on real imagery it was missed in about 1 build out of 4); whole-map
    search scores the groups exactly, so it returns the whole group, like exact search, even when the graph misses it."""
    rng = np.random.default_rng(0)
    n, dim = 3000, 32
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb[:, 0] = 0.0
    flat = rng.choice(n, 25, replace=False)
    emb[flat] = 0.0
    emb[flat, 0] = 1.0
    gx, gy = np.meshgrid(np.arange(60) * STRIDE, np.arange(50) * STRIDE)
    pos = np.stack([gx.ravel(), gy.ravel()], axis=1)
    contract = EncoderContract("rand-v1", "random", 16, 16, 1.0, dim)
    pkg = MapPackage.load(write_package(tmp_path / "m", embeddings=emb, positions=pos, frame=FRAME, contract=contract,
                                        tile_grid=TileGrid(16.0, STRIDE, 1.0), hnsw_dim=hnsw_dim))
    assert len(pkg.duplicates) == 24 and pkg.searcher.hnsw_dim == (hnsw_dim or dim)
    group = np.flatnonzero(np.isclose(pkg.embedding(np.arange(n))[:, 0], 1.0))
    assert group.size == 25
    q = np.zeros((3, dim), np.float32)
    q[:, 0] = 1.0
    q[1:, 1:] = 0.01 * rng.standard_normal((2, dim - 1))
    s_e, i_e = pkg.search(q, 30, exact=True)
    np.testing.assert_array_equal(np.sort(i_e[:, :25], axis=1), np.tile(group, (3, 1)))
    handle = pkg.searcher.hnsw
    real_knn = handle.knn

    def missing_graph(queries, k, ef):  # a graph whose search never reaches the group
        s, i = real_knn(queries, k, ef)
        others = np.setdiff1d(np.arange(n), group)[:k]
        return np.full_like(s, 0.01), np.broadcast_to(others, i.shape).copy()

    monkeypatch.setattr(handle, "knn", missing_graph)
    s_h, i_h = pkg.search(q, 30)
    assert pkg.searcher.last_path == "hnsw"
    np.testing.assert_array_equal(i_h[:, :25], i_e[:, :25])
    np.testing.assert_allclose(s_h[:, :25], s_e[:, :25], atol=1e-6)


# ---------------------------------------------------------------------------------------------- projected graph


def _structured(rng, n, dim, strong=6):
    """float32[n, dim] unit rows whose energy lies mostly in ``strong`` random directions (like real descriptors)."""
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    scale = np.concatenate([np.linspace(3.0, 1.5, strong), np.full(dim - strong, 0.15)])
    e = (rng.standard_normal((n, dim)) * scale) @ basis.T
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pmap(tmp_path_factory):
    """A 40 x 40 map of 48-d embeddings whose HNSW graph is over an 8-d projection."""
    rng = np.random.default_rng(7)
    gx, gy = np.meshgrid(np.arange(40) * STRIDE, np.arange(40) * STRIDE)
    pos = np.stack([gx.ravel(), gy.ravel()], axis=1) - 60.0
    contract = EncoderContract("rand-v1", "random", 16, 16, 1.0, 48)
    path = write_package(tmp_path_factory.mktemp("proj") / "map", embeddings=_structured(rng, len(pos), 48),
                         positions=pos, frame=FRAME, contract=contract, tile_grid=TileGrid(16.0, STRIDE, 1.0),
                         cell_size_m=5 * STRIDE, hnsw_dim=8)
    return MapPackage.load(path)


def test_projected_whole_map_search_reranks_exactly(pmap):
    assert pmap.projection.shape == (8, 48) and pmap.searcher.hnsw_dim == 8
    q = pmap.embedding(np.arange(pmap.n_tiles))
    scores, ids = pmap.search(q, 3)
    assert pmap.searcher.last_path == "hnsw"
    np.testing.assert_array_equal(ids[:, 0], np.arange(pmap.n_tiles))
    # the scores are exact float32 cosines of the returned tiles (not the projected ones), best first
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)  # search normalises queries
    want = np.einsum("qkd,qd->qk", pmap.embedding(ids.ravel()).reshape(*ids.shape, 48), qn)
    np.testing.assert_allclose(scores, want, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    rng = np.random.default_rng(3)
    qn = q[rng.choice(pmap.n_tiles, 40, replace=False)] + 0.1 * rng.standard_normal((40, 48)).astype(np.float32)
    _, approx = pmap.search(qn, 10)
    _, exact = pmap.search(qn, 10, exact=True)
    np.testing.assert_array_equal(exact, _brute(pmap, qn, 10)[1])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_projected_candidates_follow_k_and_ef(pmap, monkeypatch):
    handle = pmap.searcher.hnsw
    real_knn, asked = handle.knn, []

    def spy(queries, k, ef):
        asked.append((queries.shape[1], k, ef))
        return real_knn(queries, k, ef)

    monkeypatch.setattr(handle, "knn", spy)
    q = pmap.embedding([5])
    for k, ef in [(10, None), (30, None), (10, 200)]:
        pmap.search(q, k, ef=ef)
    assert asked == [(8, 64, 64), (8, 120, 120), (8, 200, 200)]  # k' = max(4 k, ef or 64, 64), ef >= k'


def test_projected_large_prior_filters_to_the_circle(pmap):
    x0, y0, x1, y1 = pmap.bounds
    prior = ((x0 + x1) / 2, (y0 + y1) / 2, 0.45 * (x1 - x0))
    inside = pmap.scope_ids(prior)
    assert inside.size > 0.5 * pmap.n_tiles
    rng = np.random.default_rng(2)
    q = pmap.embedding(rng.choice(inside, 20, replace=False)) + 0.05 * rng.standard_normal((20, 48))
    scores, ids = pmap.search(q, 10, prior=prior)
    assert pmap.searcher.last_path.startswith("hnsw+filter")
    assert np.isin(ids, inside).all()
    want_s, want = _brute(pmap, q, 10, prior)
    np.testing.assert_array_equal(ids[:, 0], want[:, 0])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), want.tolist())])
    assert recall >= 0.95


def test_searcher_rejects_a_wrong_projection(pmap):
    args = (pmap.embeddings, pmap.positions, pmap.manifest.spatial_grid, pmap.cell_offsets, pmap.bounds,
            pmap.searcher.hnsw)
    with pytest.raises(MapError, match=r"projection must be float32\[p, 48\].*got shape \[8, 40\]"):
        Searcher(*args, projection=np.zeros((8, 40), np.float32))
