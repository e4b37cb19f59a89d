"""runtime.gpu.search against MapPackage's exact search: a classical map of a real orthophoto (random priors, k, noisy
queries) and a map whose textureless half gives identical embeddings (ties broken by the smallest id in both)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maps.errors import PriorOutsideMapError, QueryError


@pytest.fixture(scope="module")
def real_map(ortho, tmp_path_factory):
    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract
    from maps.package import MapPackage

    _, o4 = ortho
    root = tmp_path_factory.mktemp("gpu_search")
    path = build_map(o4, ClassicalDescriptor(), classical_contract(), root / "map", stride_m=10.0)
    return MapPackage.load(path)


@pytest.fixture(scope="module")
def tied_map(tmp_path_factory):
    """A 320 x 200 m synthetic map: textured west half, constant grey east half (identical embeddings there)."""
    import cv2

    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract
    from maps.geodesy import LocalFrame
    from maps.ortho import Orthophoto
    from maps.package import MapPackage

    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.standard_normal((200, 320, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    img[:, 160:] = 110
    ortho = Orthophoto(img, np.ones((200, 320), bool), 1.0, -160.0, 100.0, LocalFrame(47.0, 8.0))
    root = tmp_path_factory.mktemp("gpu_search_ties")
    pkg = MapPackage.load(build_map(ortho, ClassicalDescriptor(), classical_contract(), root / "map", stride_m=10.0))
    assert len(pkg.duplicates) > 20  # the constant half
    return pkg


def _queries(pkg, rng, n: int, noise: float) -> np.ndarray:
    q = pkg.embedding(rng.integers(0, pkg.n_tiles, n))
    return q + rng.normal(0.0, noise, q.shape).astype(np.float32)


def test_scoped_search_matches_the_cpu_exact_search(real_map, device):
    from runtime.gpu.search import TorchSearcher

    pkg = real_map
    ts = TorchSearcher(pkg, device)
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = pkg.bounds
    worst, searches, rows = 0.0, 0, 0
    for i in range(120):
        q = _queries(pkg, rng, int(rng.integers(1, 9)), 0.03 if i % 2 else 0.2)
        k = int(rng.integers(1, 25))
        prior = (rng.uniform(x0 - 50, x1 + 50), rng.uniform(y0 - 50, y1 + 50), rng.uniform(15.0, 300.0))
        try:
            ref = pkg.search(q, k, prior, exact=True)
        except PriorOutsideMapError:
            with pytest.raises(PriorOutsideMapError, match="lies entirely outside the map"):
                ts.search(q, k, prior)
            continue
        got = ts.search(q, k, prior)
        assert got[0].dtype == np.float32 and got[1].dtype == np.int64 and got[0].shape == (len(q), k)
        assert np.array_equal(got[1], ref[1]), (prior, k)
        fin = np.isfinite(ref[0])
        assert np.array_equal(fin, np.isfinite(got[0]))  # the same padding (-inf / -1) of small circles
        if fin.any():
            worst = max(worst, float(np.abs(got[0][fin] - ref[0][fin]).max()))
        searches += 1
        rows += len(q)
    assert searches > 80 and rows > 300
    assert worst < 1e-5  # measured ~3e-7 (float32 sums in another order)


def test_whole_map_search_is_exact(real_map, device):
    from runtime.gpu.search import TorchSearcher

    pkg = real_map
    ts = TorchSearcher(pkg, device)
    q = _queries(pkg, np.random.default_rng(2), 16, 0.1)
    ref = pkg.search(q, 10, None, exact=True)
    got = ts.search(q, 10)
    assert np.array_equal(got[1], ref[1])
    assert np.abs(got[0] - ref[0]).max() < 1e-5


def test_identical_embeddings_tie_to_the_smallest_ids(tied_map, device):
    from runtime.gpu.search import TorchSearcher

    pkg = tied_map
    ts = TorchSearcher(pkg, device)
    rep = int(pkg.duplicates[0, 0])  # a tile of the constant half
    q = np.stack([pkg.embedding([rep])[0], _queries(pkg, np.random.default_rng(3), 1, 0.05)[0]])
    for prior in (None, (60.0, 0.0, 70.0), (0.0, 0.0, 90.0), (100.0, 50.0, 25.0)):
        for k in (1, 5, 12, 40):
            ref = pkg.search(q, k, prior, exact=True)
            got = ts.search(q, k, prior)
            assert np.array_equal(got[1], ref[1]), (prior, k)
            fin = np.isfinite(ref[0])
            assert np.abs(got[0][fin] - ref[0][fin]).max() < 1e-5
    # the tie is real: more tiles share the best score than k
    s, _ = pkg.search(q[:1], 40, None, exact=True)
    assert np.count_nonzero(s[0] == s[0, 0]) > 12


def test_search_errors_are_the_maps_own(real_map):
    from runtime.gpu.search import TorchSearcher

    pkg = real_map
    ts = TorchSearcher(pkg, "cpu")
    q = pkg.embedding([0])
    with pytest.raises(QueryError, match="does not match the map's embedding dimension"):
        ts.search(np.ones((1, 5), np.float32), 3)
    with pytest.raises(QueryError, match="k must be a positive integer"):
        ts.search(q, 0)
    with pytest.raises(QueryError, match="radius_m must be > 0"):
        ts.search(q, 3, (0.0, 0.0, -1.0))
    with pytest.raises(QueryError, match="NaN or infinite"):
        ts.search(np.full((1, pkg.embedding_dim), math.nan, np.float32), 3)
    x1 = pkg.bounds[2]
    with pytest.raises(PriorOutsideMapError):
        ts.search(q, 3, (x1 + 500.0, 0.0, 100.0))
