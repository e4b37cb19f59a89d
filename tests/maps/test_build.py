"""build_map with any encoder: round trip build -> load -> search, encoder output validation, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from maps.build import build_map
from maps.contract import EncoderContract
from maps.errors import EncoderMismatchError, MapError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from maps.package import MapPackage, verify_map

FRAME = LocalFrame(-8.65, 115.2)
CONTRACT = EncoderContract("tiny-v1", "tiny test encoder", 16, 16, 1.0, 48)


def tiny_embed(images: np.ndarray) -> np.ndarray:
    """uint8[n, 16, 16, 3] -> float32[n, 48]: 4x4 colour thumbnail, centred, plus a constant (never zero)."""
    n = images.shape[0]
    small = images.reshape(n, 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(n, 48).astype(np.float32)
    small -= small.mean(axis=1, keepdims=True)
    small[:, 0] += 1.0
    return (small / np.linalg.norm(small, axis=1, keepdims=True)).astype(np.float32)


def textured_ortho(seed=0, h=200, w=260, gsd=0.5) -> Orthophoto:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(img, 4, axis=0), 4, axis=1)
    return Orthophoto(img, np.ones((h, w), bool), gsd, 10.0, -20.0, FRAME, ("a.tif", "b.tif"))


def test_round_trip_each_tile_is_its_own_top1(tmp_path):
    calls = []

    def embed(images):
        calls.append(images.shape)
        assert images.dtype == np.uint8
        return tiny_embed(images)

    path = build_map(textured_ortho(), embed, CONTRACT, tmp_path / "m", batch_size=50)
    assert all(s[1:] == (16, 16, 3) and s[0] <= 50 for s in calls)
    pkg = MapPackage.load(path)
    n = pkg.n_tiles
    assert sum(s[0] for s in calls) == n > 500
    q = pkg.embedding(np.arange(n))
    _, ids = pkg.search(q, 1)  # no prior: HNSW
    assert pkg.searcher.last_path == "hnsw"
    np.testing.assert_array_equal(ids[:, 0], np.arange(n))
    for t in range(0, n, 7):  # with a prior around each tile: exact
        x, y = pkg.positions[t]
        _, ids = pkg.search(q[t], 1, prior=(x + 3.0, y - 2.0, 20.0))
        assert ids[0, 0] == t
    assert pkg.searcher.last_path == "exact"


def test_round_trip_re_embedding_the_tiles_finds_them(tmp_path):
    """Cutting a tile again from the source at a stored position and embedding it finds that tile first."""
    from maps.tiling import TileGrid, cut_tiles

    ortho = textured_ortho(3)
    pkg = MapPackage.load(build_map(ortho, tiny_embed, CONTRACT, tmp_path / "m"))
    grid = TileGrid.from_contract(CONTRACT)
    ids = np.arange(0, pkg.n_tiles, 11)
    q = tiny_embed(cut_tiles(ortho, pkg.positions[ids], grid))
    _, got = pkg.search(q, 1)
    np.testing.assert_array_equal(got[:, 0], ids)
    lat, lon = pkg.tile_latlon(ids[:3])
    _, got = pkg.search_latlon(q[:3], 1, lat[0], lon[0], 30.0)
    assert got[0, 0] == ids[0]


def test_round_trip_on_a_real_orthophoto(shared_data, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(shared_data("ortho/netherlands_0.25m.tif")) as ds:
        img = np.ascontiguousarray(np.moveaxis(ds.read([1, 2, 3]), 0, -1))
    ortho = Orthophoto(img, np.ones(img.shape[:2], bool), 0.25, 0.0, 0.0, FRAME, ("netherlands_0.25m.tif",))
    try:
        from maps.descriptors import ClassicalDescriptor, classical_contract

        embed, contract, stride = ClassicalDescriptor(), classical_contract(), 12.8
    except ImportError:
        embed, contract, stride = tiny_embed, CONTRACT, 4.0
    pkg = MapPackage.load(build_map(ortho, embed, contract, tmp_path / "nl", stride_m=stride))
    assert pkg.n_tiles >= 100
    q = pkg.embedding(np.arange(pkg.n_tiles))
    _, ids = pkg.search(q, 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(pkg.n_tiles))
    for t in range(pkg.n_tiles):
        x, y = pkg.positions[t]
        _, ids = pkg.search(q[t], 1, prior=(x, y, 2 * stride))
        assert ids[0, 0] == t
    verify_map(pkg.path)


def test_build_parameters_are_recorded(tmp_path):
    stages = set()
    path = build_map(textured_ortho(), tiny_embed, CONTRACT, tmp_path / "m", tile_size_m=24.0, stride_m=6.0,
                     ground_elevation_m=-3.5, hnsw_m=8, hnsw_ef_construction=50, store_imagery=False,
                     progress=lambda stage, done, total: stages.add(stage))
    pkg = MapPackage.load(path)
    g = pkg.tile_grid
    assert (g.tile_size_m, g.stride_m, g.gsd, g.size_px) == (24.0, 6.0, 1.5, 16)
    assert pkg.ground_elevation_m == -3.5 and pkg.manifest.hnsw["M"] == 8
    assert pkg.manifest.hnsw["dim"] == pkg.manifest.build["hnsw_dim"] == min(pkg.embedding_dim, 64)
    assert pkg.manifest.imagery is None and pkg.imagery() is None and not (path / "imagery.png").exists()
    assert pkg.manifest.sources == ("a.tif", "b.tif")
    assert pkg.manifest.build["ortho_gsd"] == 0.5 and pkg.manifest.build["stride_m"] == 6.0
    assert {"embed", "index", "done"} <= stages
    xs = np.unique(pkg.positions[:, 0])
    np.testing.assert_allclose(np.diff(xs), 6.0)


@pytest.mark.parametrize(
    "bad, exc, pattern",
    [
        (lambda im: tiny_embed(im).astype(np.float64), MapError, "float32 embeddings, got float64"),
        (lambda im: tiny_embed(im)[:, :40], EncoderMismatchError, "40-dimensional embeddings .* embedding_dim=48"),
        (lambda im: tiny_embed(im) * 3.0, MapError, "L2-normalised rows"),
        (lambda im: np.full((len(im), 48), np.nan, np.float32), MapError, "NaN or infinite"),
        (lambda im: tiny_embed(im)[:-1], MapError, r"shape \[\d+, 48\] for \d+ images"),
        (lambda im: tiny_embed(im).tolist(), MapError, "numpy float32 array"),
    ],
)
def test_encoder_output_is_validated(tmp_path, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        build_map(textured_ortho(), bad, CONTRACT, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bad_arguments(tmp_path):
    ortho = textured_ortho()
    with pytest.raises(MapError, match="callable"):
        build_map(ortho, "not callable", CONTRACT, tmp_path / "m")
    with pytest.raises(MapError, match="EncoderContract"):
        build_map(ortho, tiny_embed, CONTRACT.to_dict(), tmp_path / "m")
    with pytest.raises(MapError, match="Orthophoto"):
        build_map(ortho.image, tiny_embed, CONTRACT, tmp_path / "m")
    with pytest.raises(MapError, match="batch_size must be a positive integer"):
        build_map(ortho, tiny_embed, CONTRACT, tmp_path / "m", batch_size=0)
    with pytest.raises(MapError, match="ground_elevation_m must be finite"):
        build_map(ortho, tiny_embed, CONTRACT, tmp_path / "m", ground_elevation_m=float("inf"))
    with pytest.raises(MapError, match=r"no tile fits: .* use a larger orthophoto, smaller tiles"):
        build_map(ortho, tiny_embed, CONTRACT, tmp_path / "m", tile_size_m=500.0)
    mask = np.zeros(ortho.mask.shape, bool)
    empty = Orthophoto(ortho.image, mask, ortho.gsd, ortho.x_min, ortho.y_max, FRAME)
    with pytest.raises(MapError, match="0% valid"):
        build_map(empty, tiny_embed, CONTRACT, tmp_path / "m")


def test_hnsw_dim_is_recorded_and_validated(tmp_path):
    path = build_map(textured_ortho(), tiny_embed, CONTRACT, tmp_path / "m", hnsw_dim=6, store_imagery=False)
    pkg = MapPackage.load(path)
    assert pkg.manifest.hnsw["dim"] == pkg.manifest.build["hnsw_dim"] == 6 and pkg.projection.shape == (6, 48)
    verify_map(path)
    with pytest.raises(MapError, match=r"hnsw_dim must be a positive integer <= the embedding dimension 48 .*got 49"):
        build_map(textured_ortho(), tiny_embed, CONTRACT, tmp_path / "x", hnsw_dim=49)
    assert not (tmp_path / "x").exists()
