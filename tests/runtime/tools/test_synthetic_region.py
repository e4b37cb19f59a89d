"""runtime.tools.synthetic_region: large synthetic orthophotos cut from small real ones, written window by window."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from maps.errors import GeoTiffError
from runtime.tools.synthetic_region import TAG, WRITE_BLOCK_PX, main, write_synthetic_mosaic

SOURCES = ("ortho/swissimage_zurich_a_0.5m.tif", "ortho/swissimage_zurich_b_0.5m.tif")


@pytest.fixture(scope="module")
def sources(shared_data):
    return [shared_data(s) for s in SOURCES]


def _read(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags(), ds.block_shapes


def _orientations(img: np.ndarray):
    """The 8 flips / 90-degree rotations of img (h, w, 3)."""
    for k in range(8):
        v = img[:, ::-1] if k >= 4 else img
        yield np.ascontiguousarray(np.rot90(v, k % 4))


def _found_in(block: np.ndarray, images) -> bool:
    """Whether ``block`` (h, w, 3) equals some crop of some image up to flip / rotation (exactly)."""
    import cv2

    for img in images:
        for v in _orientations(img):
            if v.shape[0] < block.shape[0] or v.shape[1] < block.shape[1]:
                continue
            res = cv2.matchTemplate(v, block, cv2.TM_SQDIFF)
            _, _, (x, y), _ = cv2.minMaxLoc(res)
            if np.array_equal(v[y:y + block.shape[0], x:x + block.shape[1]], block):
                return True
    return False


def test_small_mosaic_is_cut_from_the_sources_in_their_crs_and_grid(sources, tmp_path):
    import rasterio

    out = write_synthetic_mosaic(sources, tmp_path / "m.tif", width_m=300, height_m=200, seed=3, block_m=32)
    data, prof, tags, blocks = _read(out)
    with rasterio.open(sources[0]) as ds:
        src_crs, src_t = ds.crs, ds.transform
    assert (prof["width"], prof["height"], prof["count"], prof["dtype"]) == (600, 400, 3, "uint8")
    assert prof["crs"] == src_crs and prof["transform"] == src_t  # first source's crs, 0.5 m and top-left corner
    assert prof["tiled"] and blocks[0] == (WRITE_BLOCK_PX, WRITE_BLOCK_PX) and prof["compress"] == "deflate"
    assert prof["nodata"] is None
    assert json.loads(tags[TAG]) == {"sources": [p.name for p in sources], "seed": 3, "block_px": 64}
    imgs = []
    for p in sources:
        with rasterio.open(p) as ds:
            imgs.append(np.moveaxis(ds.read([1, 2, 3]), 0, -1))
    rgb = np.ascontiguousarray(np.moveaxis(data, 0, -1))
    # blocks of 64 px from the top-left corner: inner ones, one straddling a 512 px write window, clipped edge ones
    for i, j in ((0, 0), (3, 5), (2, 7), (6, 9), (6, 0), (0, 9)):
        blk = np.ascontiguousarray(rgb[i * 64:(i + 1) * 64, j * 64:(j + 1) * 64])
        assert _found_in(blk, imgs), (i, j)
    # no exact repeats on the block lattice: no two textured blocks are equal (source b's lake is one flat colour,
    # so blocks of open water do repeat)
    b = rgb[:384, :576].reshape(6, 64, 9, 64, 3).swapaxes(1, 2).reshape(54, -1)
    textured = b[b.reshape(54, 4096, 3).std(axis=1).max(axis=1) > 2]
    assert len(textured) > 27 and len(np.unique(textured, axis=0)) == len(textured)


def test_the_mosaic_reads_back_as_an_orthophoto(sources, tmp_path):
    from maps.geotiff import load_orthophoto

    out = write_synthetic_mosaic(sources, tmp_path / "m.tif", width_m=300, height_m=200)
    o = load_orthophoto(out)
    x0, y0, x1, y1 = o.bounds
    assert x1 - x0 == pytest.approx(300, rel=0.03) and y1 - y0 == pytest.approx(200, rel=0.03)
    assert o.gsd == pytest.approx(0.5, rel=0.01) and o.mask.mean() > 0.95  # the rest: the warp into the local frame


def test_seed_decides_the_pixels(sources, tmp_path):
    a = write_synthetic_mosaic(sources, tmp_path / "a.tif", width_m=100, height_m=100, seed=1)
    b = write_synthetic_mosaic(sources, tmp_path / "b.tif", width_m=100, height_m=100, seed=1)
    c = write_synthetic_mosaic(sources, tmp_path / "c.tif", width_m=100, height_m=100, seed=2)
    assert np.array_equal(_read(a)[0], _read(b)[0]) and not np.array_equal(_read(a)[0], _read(c)[0])


def test_written_window_by_window_in_bounded_memory(sources, tmp_path):
    """A long strip, and a 2000 x 2000 px mosaic whose Python-side peak stays well below its 12 MB of pixels."""
    strip = write_synthetic_mosaic(sources, tmp_path / "strip.tif", width_m=1500.5, height_m=20)
    data, prof, _, _ = _read(strip)
    assert (prof["width"], prof["height"]) == (3001, 40) and data.any(axis=0).mean() > 0.9
    tracemalloc.start()
    try:
        write_synthetic_mosaic(sources, tmp_path / "big.tif", width_m=1000, height_m=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6e6, peak  # sources (2.6 MB) + one window, not 2000 * 2000 * 3 = 12 MB


def _write_tif(path, rgb, *, res=0.5, nodata=None, crs="EPSG:2056"):
    import rasterio
    from affine import Affine

    h, w = rgb.shape[:2]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=crs, nodata=nodata,
                       transform=Affine(res, 0, 2_600_000, 0, -res, 1_200_000)) as ds:
        ds.write(np.moveaxis(rgb, -1, 0))
    return path


def test_nodata_areas_of_a_source_are_never_used(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, size=(80, 120, 3), dtype=np.uint8)
    rgb[:, :50] = 0  # nodata
    src = _write_tif(tmp_path / "s.tif", rgb, nodata=0)
    out = write_synthetic_mosaic([src], tmp_path / "m.tif", width_m=60, height_m=40, block_m=16)
    data = _read(out)[0]
    assert data.shape == (3, 80, 120) and data.all()
    with pytest.raises(GeoTiffError, match="no 72 x 72 px area without nodata"):
        write_synthetic_mosaic([src], tmp_path / "m.tif", width_m=60, height_m=40, block_m=36)


@pytest.mark.parametrize("kw, message", [
    (dict(width_m=0, height_m=10), "width_m must be a positive"),
    (dict(width_m=10, height_m=-5), "height_m must be a positive"),
    (dict(width_m=float("nan"), height_m=10), "width_m must be a positive"),
    (dict(width_m="10", height_m=10), "width_m must be a number of metres"),
    (dict(width_m=True, height_m=10), "width_m must be a number of metres"),
    (dict(width_m=0.2, height_m=10), "less than one source pixel"),
    (dict(width_m=1e7, height_m=1e7), "check width_m and height_m"),
    (dict(width_m=10, height_m=10, block_m=2), "blocks of 4 px"),
    (dict(width_m=10, height_m=10, block_m=100), "blocks of 200 px"),
    (dict(width_m=10, height_m=10, seed=-1), "seed must be a non-negative integer"),
])
def test_bad_sizes_are_refused(tmp_path, kw, message):
    src = _write_tif(tmp_path / "s.tif", np.full((60, 90, 3), 7, np.uint8))
    with pytest.raises(GeoTiffError, match=message):
        write_synthetic_mosaic([src], tmp_path / "m.tif", **kw)
    assert list(tmp_path.iterdir()) == [src]  # nothing left behind


def test_unusable_sources_are_refused(tmp_path):
    ok = _write_tif(tmp_path / "ok.tif", np.full((60, 90, 3), 7, np.uint8))
    coarse = _write_tif(tmp_path / "coarse.tif", np.full((60, 90, 3), 7, np.uint8), res=1.0)
    text = tmp_path / "notes.tif"
    text.write_text("not a GeoTIFF")
    cases = [([tmp_path / "missing.tif"], "not found"), ([text], "cannot read source orthophoto"),
             ([ok, coarse], "resample it first"), ([], "no source orthophoto given")]
    for srcs, message in cases:
        with pytest.raises(GeoTiffError, match=message):
            write_synthetic_mosaic(srcs, tmp_path / "m.tif", width_m=10, height_m=10)
    with pytest.raises(GeoTiffError, match="does not exist; create it first"):
        write_synthetic_mosaic([ok], tmp_path / "nowhere" / "m.tif", width_m=10, height_m=10)


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    src = _write_tif(tmp_path / "s.tif", np.arange(60 * 90 * 3, dtype=np.uint8).reshape(60, 90, 3))
    out = tmp_path / "m.tif"
    argv = [str(src), "-o", str(out), "--width-m", "50", "--height-m", "20", "--seed", "4", "--block-m", "10"]
    assert main(argv) == 0
    assert f"wrote {out}: 100 x 40 px, 50 x 20 m" in capsys.readouterr().out
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: {out} exists already; remove it, choose another output path or pass "
                                       "--overwrite\n")
    assert main(argv + ["--overwrite"]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "x.tif"), "-o", str(tmp_path / "n.tif"), "--width-m", "5", "--height-m", "5"]) == 2
    assert "not found" in capsys.readouterr().err
