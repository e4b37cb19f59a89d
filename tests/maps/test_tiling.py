"""Tile planning and cutting: regular metric grid, valid-fraction filter, area resampling then crop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from maps.contract import EncoderContract
from maps.errors import MapError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from maps.tiling import TileGrid, _window_counts, cut_tiles, plan_tiles, resample_to_gsd

FRAME = LocalFrame(47.0, 8.0)


def _contract(size=128, res=0.4, dim=8, **kw) -> EncoderContract:
    return EncoderContract("test-enc-v1", "test", size, kw.pop("height", size), res, dim, **kw)


def _ortho(h, w, gsd, x_min=0.0, y_max=0.0, image=None, mask=None) -> Orthophoto:
    img = np.zeros((h, w, 3), np.uint8) if image is None else image
    m = np.ones((h, w), bool) if mask is None else mask
    return Orthophoto(img, m, gsd, x_min, y_max, FRAME)


def test_grid_defaults_from_contract():
    g = TileGrid.from_contract(_contract(128, 0.4))
    assert g.tile_size_m == pytest.approx(51.2)
    assert g.stride_m == pytest.approx(12.8)
    assert g.gsd == pytest.approx(0.4)
    assert g.size_px == 128


def test_grid_overrides_keep_encoder_pixels():
    g = TileGrid.from_contract(_contract(128, 0.4), tile_size_m=64.0, stride_m=10.0)
    assert (g.tile_size_m, g.stride_m, g.gsd, g.size_px) == (64.0, 10.0, 0.5, 128)
    g = TileGrid.from_contract(_contract(128, 0.4), stride_m=5.0)
    assert (g.tile_size_m, g.stride_m) == (pytest.approx(51.2), 5.0)


@pytest.mark.parametrize("kw", [{"tile_size_m": 0}, {"tile_size_m": -3}, {"stride_m": 0}, {"stride_m": float("nan")},
                                {"tile_size_m": "abc"}])
def test_grid_rejects_bad_overrides(kw):
    with pytest.raises(MapError):
        TileGrid.from_contract(_contract(), **kw)


def test_grid_rejects_non_square_encoder_and_bad_values():
    with pytest.raises(MapError, match="square"):
        TileGrid.from_contract(_contract(128, 0.4, height=64))
    with pytest.raises(MapError, match="whole number of pixels"):
        TileGrid(10.0, 2.0, 0.3)
    with pytest.raises(MapError, match="> 0"):
        TileGrid(10.0, -2.0, 0.5)
    with pytest.raises(MapError, match="number"):
        TileGrid(True, 2.0, 0.5)


def test_grid_is_frozen_and_round_trips_rejecting_unknown_keys():
    g = TileGrid(51.2, 12.8, 0.4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.stride_m = 1.0
    assert TileGrid.from_dict(g.to_dict()) == g
    with pytest.raises(MapError, match=r"unknown tile grid keys \['extra'\]"):
        TileGrid.from_dict({**g.to_dict(), "extra": 1})
    with pytest.raises(MapError, match="lacks keys"):
        TileGrid.from_dict({"tile_size_m": 1.0})


def test_plan_tiles_regular_grid_inside_the_ortho():
    ortho = _ortho(500, 700, 0.2, x_min=-30.0, y_max=40.0)  # 140 x 100 m
    grid = TileGrid(20.0, 5.0, 0.5)
    pos = plan_tiles(ortho, grid)
    assert pos.dtype == np.float64 and pos.shape[1] == 2
    xs, ys = np.unique(pos[:, 0]), np.unique(pos[:, 1])
    assert len(xs) == int((140 - 20) // 5) + 1 and len(ys) == int((100 - 20) // 5) + 1
    assert len(pos) == len(xs) * len(ys)
    np.testing.assert_allclose(np.diff(xs), 5.0)
    np.testing.assert_allclose(np.diff(ys), 5.0)
    x0, y0, x1, y1 = ortho.bounds
    assert xs.min() - 10 >= x0 - 1e-9 and xs.max() + 10 <= x1 + 1e-9
    assert ys.min() - 10 >= y0 - 1e-9 and ys.max() + 10 <= y1 + 1e-9
    # equal margins on both sides
    assert (xs.min() - 10 - x0) == pytest.approx(x1 - (xs.max() + 10))
    # rows north to south, west to east within a row
    assert pos[0, 1] == ys.max() and pos[0, 0] == xs.min() and pos[1, 0] > pos[0, 0]


def test_plan_tiles_drops_mostly_invalid_tiles():
    mask = np.ones((400, 400), bool)
    mask[:, 200:] = False  # east half invalid
    ortho = _ortho(400, 400, 0.25, mask=mask)  # 100 x 100 m, valid x < 50
    grid = TileGrid(20.0, 5.0, 0.5)
    pos = plan_tiles(ortho, grid, min_valid_fraction=0.9)
    # valid fraction of a tile centred at x: clip((50 - (x - 10)) / 20, 0, 1)
    assert np.all((50 - (pos[:, 0] - 10)) / 20 >= 0.9 - 1e-9)
    all_pos = plan_tiles(_ortho(400, 400, 0.25), grid)
    frac = np.clip((50 - (all_pos[:, 0] - 10)) / 20, 0, 1)
    assert len(pos) == np.count_nonzero(frac >= 0.9 - 1e-9)
    half = plan_tiles(ortho, grid, min_valid_fraction=0.5)
    assert len(half) == np.count_nonzero(frac >= 0.5 - 1e-9) > len(pos)
    with pytest.raises(MapError, match="min_valid_fraction"):
        plan_tiles(ortho, grid, min_valid_fraction=0.0)


def test_plan_tiles_small_ortho_gives_no_tiles():
    assert plan_tiles(_ortho(10, 10, 0.5), TileGrid(20.0, 5.0, 0.5)).shape == (0, 2)


def test_window_counts_match_brute_force():
    rng = np.random.default_rng(3)
    mask = rng.random((57, 83)) > 0.3
    u0 = np.array([0, 5, 20, 60]); u1 = u0 + np.array([10, 30, 20, 23])
    v0 = np.array([0, 7, 30]); v1 = v0 + np.array([12, 20, 27])
    got = _window_counts(mask, u0, u1, v0, v1)
    want = np.array([[mask[a:b, c:d].sum() for c, d in zip(u0, u1)] for a, b in zip(v0, v1)])
    np.testing.assert_array_equal(got, want)


def _block_ortho(blocks: np.ndarray, factor: int, gsd: float) -> Orthophoto:
    """An ortho whose factor x factor pixel blocks are constant (area downsampling by factor is exact)."""
    img = np.repeat(np.repeat(blocks, factor, axis=0), factor, axis=1)
    return _ortho(img.shape[0], img.shape[1], gsd, x_min=100.0, y_max=200.0, image=img)


def test_cut_tiles_resamples_with_area_then_crops():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    ortho = _block_ortho(blocks, 4, 0.1)  # 0.1 m/px -> 0.4 m/px is exactly the blocks
    grid = TileGrid(6.4, 1.6, 0.4)  # 16 px tiles
    pos = plan_tiles(ortho, grid)
    tiles = cut_tiles(ortho, pos, grid)
    assert tiles.dtype == np.uint8 and tiles.shape == (len(pos), 16, 16, 3)
    for i in (0, len(pos) // 2, len(pos) - 1):
        x, y = pos[i]
        c0 = int(round((x - 3.2 - 100.0) / 0.4))
        r0 = int(round((200.0 - (y + 3.2)) / 0.4))
        np.testing.assert_array_equal(tiles[i], blocks[r0:r0 + 16, c0:c0 + 16])
    # resampling once first gives the same tiles
    res = resample_to_gsd(ortho, 0.4)
    assert res.gsd == 0.4 and res.image.shape == (60, 80, 3)
    np.testing.assert_array_equal(cut_tiles(res, pos, grid), tiles)
    assert resample_to_gsd(res, 0.4) is res


def test_cut_tiles_pads_outside_with_black_and_validates():
    ortho = _ortho(40, 40, 0.5, image=np.full((40, 40, 3), 200, np.uint8))  # x [0, 20], y [-20, 0]
    grid = TileGrid(8.0, 2.0, 0.5)
    t = cut_tiles(ortho, np.array([[0.0, 0.0], [10.0, -10.0]]), grid)
    assert t.shape == (2, 16, 16, 3)
    assert np.all(t[0, :8, :] == 0) and np.all(t[0, :, :8] == 0) and np.all(t[0, 8:, 8:] == 200)
    assert np.all(t[1] == 200)
    assert cut_tiles(ortho, np.array([[500.0, 500.0]]), grid).max() == 0
    assert cut_tiles(ortho, np.array([[10.0, -10.0]]), grid, size_px=4).shape == (1, 4, 4, 3)
    with pytest.raises(MapError, match=r"float\[n, 2\]"):
        cut_tiles(ortho, np.zeros((3, 3)), grid)
    with pytest.raises(MapError, match="finite"):
        cut_tiles(ortho, np.array([[np.nan, 0.0]]), grid)


def test_resample_mask_and_upsampling():
    mask = np.zeros((40, 40), bool)
    mask[:, :20] = True
    ortho = _ortho(40, 40, 0.5, image=np.full((40, 40, 3), 90, np.uint8), mask=mask)
    down = resample_to_gsd(ortho, 1.0)
    assert down.image.shape == (20, 20, 3) and down.mask[:, :10].all() and not down.mask[:, 10:].any()
    up = resample_to_gsd(ortho, 0.25)
    assert up.image.shape == (80, 80, 3) and np.all(up.image == 90)
    assert (up.x_min, up.y_max, up.frame) == (ortho.x_min, ortho.y_max, ortho.frame)


def test_cut_real_orthophoto_matches_direct_crop(shared_data):
    rasterio = pytest.importorskip("rasterio")
    path = shared_data("ortho/swissimage_zurich_a_0.5m.tif")
    with rasterio.open(path) as ds:
        img = np.ascontiguousarray(np.moveaxis(ds.read([1, 2, 3]), 0, -1))
    ortho = _ortho(img.shape[0], img.shape[1], 0.5, x_min=-50.0, y_max=75.0, image=img)
    grid = TileGrid(32.0, 8.0, 0.5)  # same gsd: cutting is a plain crop
    pos = plan_tiles(ortho, grid)
    assert len(pos) > 100
    tiles = cut_tiles(ortho, pos, grid)
    for i in (0, 37, len(pos) - 1):
        c0 = int(round((pos[i, 0] - 16 - ortho.x_min) / 0.5))
        r0 = int(round((ortho.y_max - (pos[i, 1] + 16)) / 0.5))
        np.testing.assert_array_equal(tiles[i], img[r0:r0 + 64, c0:c0 + 64])
    assert tiles.std() > 10  # real texture


def test_resample_keeps_geometry_at_non_integer_scales():
    """Resampled pixel centres sit where the metric grid says (area average of a ramp = its centre value)."""
    w = 230
    ramp = np.tile(np.arange(w, dtype=np.uint8)[None, :, None], (20, 1, 3))
    ortho = _ortho(20, w, 0.35, x_min=3.0, y_max=1.0, image=ramp)
    res = resample_to_gsd(ortho, 0.4)
    assert res.width == round(w * 0.35 / 0.4)
    u = np.arange(res.width - 1)
    x = res.x_min + (u + 0.5) * res.gsd  # pixel centre in metres
    src_u = (x - ortho.x_min) / ortho.gsd - 0.5  # fractional source column there
    np.testing.assert_allclose(res.image[10, u, 0], src_u, atol=0.6)
