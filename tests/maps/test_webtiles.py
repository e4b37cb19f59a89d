"""Maps from web map tiles: XYZ/TMS folders and MBTiles made from a real orthophoto, built back for a bbox."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
cv2 = pytest.importorskip("cv2")

from maps.errors import MapError, WebTilesError  # noqa: E402
from maps.geotiff import load_orthophoto  # noqa: E402
from maps.webtiles import (  # noqa: E402
    WEB_MERCATOR_HALF,
    check_bbox,
    load_mbtiles,
    load_tile_folder,
    lonlat_to_tile,
    tile_range,
    tms_row,
)

ZOOM = 18
SOURCE = "ortho/swissimage_zurich_a_0.5m.tif"


def _make_tiles(src_path, zoom: int):
    """Reproject a real orthophoto to EPSG:3857 on the zoom's tile grid; returns {(x, y_xyz): BGRA uint8[256, 256, 4]}
    and the WGS84 bounds of the source."""
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds

    with rasterio.open(src_path) as ds:
        data = ds.read([1, 2, 3])
        alpha = ds.dataset_mask()
        src_crs, src_tf = ds.crs, ds.transform
        lonlat = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    x0, x1, y0, y1 = tile_range(lonlat, zoom)
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    tile_m = 2 * WEB_MERCATOR_HALF / 2 ** zoom
    dst_tf = Affine(tile_m / 256, 0, -WEB_MERCATOR_HALF + x0 * tile_m, 0, -tile_m / 256, WEB_MERCATOR_HALF - y0 * tile_m)
    dst = np.zeros((4, ny * 256, nx * 256), np.uint8)
    reproject(np.concatenate([data, alpha[None]]), dst, src_transform=src_tf, src_crs=src_crs, dst_transform=dst_tf,
              dst_crs="EPSG:3857", resampling=Resampling.bilinear, src_alpha=4, dst_alpha=4)
    tiles = {}
    for j in range(ny):
        for i in range(nx):
            t = dst[:, j * 256:(j + 1) * 256, i * 256:(i + 1) * 256]
            if t[3].any():
                rgba = np.moveaxis(t, 0, -1)
                tiles[(x0 + i, y0 + j)] = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])  # BGRA for cv2
    return tiles, lonlat


def _png(bgra) -> bytes:
    ok, buf = cv2.imencode(".png", bgra)
    assert ok
    return buf.tobytes()


def _write_folder(root, tiles, zoom, scheme):
    for (x, y), bgra in tiles.items():
        row = y if scheme == "xyz" else tms_row(y, zoom)
        d = root / str(zoom) / str(x)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{row}.png").write_bytes(_png(bgra))
    return root


def _write_mbtiles(path, tiles, zoom, bounds, fmt="png", rows="tms", metadata=True):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
    conn.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
    if metadata:
        conn.execute("CREATE TABLE metadata (name text, value text)")
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", [
            ("name", "zurich"), ("format", fmt), ("minzoom", str(zoom)), ("maxzoom", str(zoom)),
            ("bounds", ",".join(f"{v:.8f}" for v in bounds)), ("type", "baselayer"),
        ])
    conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", [
        (zoom, x, tms_row(y, zoom) if rows == "tms" else y, _png(bgra)) for (x, y), bgra in tiles.items()
    ])
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def made(shared_data, tmp_path_factory):
    src = shared_data(SOURCE)
    tiles, lonlat = _make_tiles(src, ZOOM)
    root = tmp_path_factory.mktemp("webtiles")
    west, south, east, north = lonlat
    dx, dy = (east - west) * 0.12, (north - south) * 0.15
    bbox = (west + dx, south + dy, east - dx, north - dy)  # well inside the source
    return {
        "src": src, "tiles": tiles, "lonlat": lonlat, "bbox": bbox,
        "xyz": _write_folder(root / "xyz", tiles, ZOOM, "xyz"),
        "tms": _write_folder(root / "tms", tiles, ZOOM, "tms"),
        "mbtiles": _write_mbtiles(root / "zurich.mbtiles", tiles, ZOOM, lonlat),
    }


def _compare(o, src):
    """NCC of o against the source orthophoto resampled to o's frame and grid, and the sub-pixel shift between them."""
    ref = load_orthophoto(src, frame=o.frame, gsd=o.gsd)
    du = (o.x_min - ref.x_min) / o.gsd
    dv = (ref.y_max - o.y_max) / o.gsd
    assert abs(du - round(du)) < 1e-6 and abs(dv - round(dv)) < 1e-6  # same pixel grid
    du, dv = int(round(du)), int(round(dv))
    assert du >= 0 and dv >= 0
    r_img = ref.image[dv:dv + o.height, du:du + o.width]
    r_mask = ref.mask[dv:dv + o.height, du:du + o.width]
    assert r_img.shape == o.image.shape
    both = o.mask & r_mask
    assert both.mean() > 0.95 * o.mask.mean()
    a = o.image[both].astype(float).ravel()
    b = r_img[both].astype(float).ravel()
    ncc = float(np.corrcoef(a, b)[0, 1])
    ys, xs = np.nonzero(both)
    # inside the valid area, at sizes OpenCV's DFT does not pad to an odd length (phaseCorrelate's centre is then
    # off by half a pixel)
    y0, x0 = ys.min() + 4, xs.min() + 4
    sl = (slice(y0, y0 + _dft_size(ys.max() - 4 - y0)), slice(x0, x0 + _dft_size(xs.max() - 4 - x0)))
    ga = cv2.cvtColor(o.image[sl], cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(np.ascontiguousarray(r_img[sl]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    (sx, sy), _ = cv2.phaseCorrelate(ga, gb)
    return ncc, math.hypot(sx, sy)


def _dft_size(n: int) -> int:
    m = n
    while m % 2 or cv2.getOptimalDFTSize(m) != m:
        m -= 1
    return m


# ----------------------------------------------------------------------------------------------- tile arithmetic
def test_tile_arithmetic():
    assert lonlat_to_tile(0.0, 0.0, 1) == (1.0, 1.0)
    # against pyproj's EPSG:3857: tile = (metres + half) / tile side, rows from the top
    from pyproj import Transformer

    mx, my = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(8.5417, 47.3769)
    side = 2 * WEB_MERCATOR_HALF / 2 ** 18
    x, y = lonlat_to_tile(8.5417, 47.3769, 18)
    assert x == pytest.approx((mx + WEB_MERCATOR_HALF) / side, abs=1e-6)
    assert y == pytest.approx((WEB_MERCATOR_HALF - my) / side, abs=1e-6)
    assert tms_row(0, 3) == 7 and tms_row(tms_row(5, 10), 10) == 5
    assert tile_range((-180, -85, 180, 85), 0) == (0, 0, 0, 0)
    with pytest.raises(WebTilesError, match="LON_MIN,LAT_MIN,LON_MAX,LAT_MAX"):
        check_bbox((8.5, 47.4, 8.4, 47.5))
    with pytest.raises(WebTilesError, match="Web Mercator"):
        check_bbox((8.0, 80.0, 9.0, 89.0))
    with pytest.raises(WebTilesError, match="4 numbers"):
        check_bbox((8.0, 47.0, 9.0))


# ----------------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("scheme", ["xyz", "tms"])
def test_tile_folder_rebuilds_the_source(made, scheme):
    notes = []
    for gsd in (0.3, 0.5, 0.8):  # finer and coarser than the tiles
        ncc, shift = _compare(load_tile_folder(made[scheme], made["bbox"], scheme=scheme, gsd=gsd), made["src"])
        assert ncc > 0.95 and shift < 0.1, (gsd, ncc, shift)
    o = load_tile_folder(made[scheme], made["bbox"], scheme=scheme, log=notes.append)
    assert o.gsd == pytest.approx(0.4046, abs=2e-3)  # z18 at 47.4 deg: 0.597 m * cos(lat)
    assert o.mask.mean() > 0.98 and "tiles read" in notes[0]
    ncc, shift = _compare(o, made["src"])
    assert ncc > 0.95, ncc
    assert shift < 0.1, shift  # georeferencing within a pixel (0.006 px measured)
    # the bbox asked for is what comes back (within a pixel)
    lat, lon = o.frame.to_wgs84(*o.to_local(np.array([0, o.width - 1]), np.array([o.height - 1, 0])))
    west, south, east, north = made["bbox"]
    px_deg_lon = o.gsd / (111320 * math.cos(math.radians(47.4)))
    assert abs(lon[0] - west) < 2 * px_deg_lon and abs(lon[1] - east) < 2 * px_deg_lon
    assert abs(lat[0] - south) < 2 * o.gsd / 111000 and abs(lat[1] - north) < 2 * o.gsd / 111000


def test_stated_scheme_matters(made):
    a = load_tile_folder(made["xyz"], made["bbox"], scheme="xyz", zoom=ZOOM)
    b = load_tile_folder(made["tms"], made["bbox"], scheme="tms", zoom=ZOOM)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    # mis-stated: the flipped rows are in the other hemisphere, so nothing is there; the error names the fix
    with pytest.raises(WebTilesError, match="outside the tiles.*pass --scheme xyz"):
        load_tile_folder(made["xyz"], made["bbox"], scheme="tms")
    with pytest.raises(WebTilesError, match="pass --scheme tms"):
        load_tile_folder(made["tms"], made["bbox"], scheme="xyz")


def test_misstated_scheme_is_visibly_wrong_where_flipped_rows_exist(made, tmp_path):
    # a folder holding both the area's rows and the rows that a mis-stated scheme reads (here: the same imagery
    # shifted, as a tile cache of a larger area would hold other imagery there): the wrong scheme reads other pixels
    tiles = made["tiles"]
    rolled = {(x, tms_row(y, ZOOM)): np.ascontiguousarray(np.roll(t, 97, axis=(0, 1))) for (x, y), t in tiles.items()}
    root = _write_folder(tmp_path / "both", {**tiles, **rolled}, ZOOM, "xyz")
    right = load_tile_folder(root, made["bbox"], scheme="xyz")
    wrong = load_tile_folder(root, made["bbox"], scheme="tms")
    assert _compare(right, made["src"])[0] > 0.95
    ncc_wrong, _ = _compare(wrong, made["src"])
    assert ncc_wrong < 0.5, ncc_wrong


def test_mbtiles_rebuilds_the_source_like_the_folder(made):
    o = load_mbtiles(made["mbtiles"], made["bbox"])
    f = load_tile_folder(made["xyz"], made["bbox"], scheme="xyz")
    assert np.array_equal(o.image, f.image) and np.array_equal(o.mask, f.mask)
    ncc, shift = _compare(o, made["src"])
    assert ncc > 0.95 and shift < 1.0
    assert o.sources[0].startswith(str(made["mbtiles"]))


def test_mbtiles_errors(made, tmp_path):
    west, south, east, north = made["lonlat"]
    far = (west + 1.0, south, east + 1.0, north)
    with pytest.raises(WebTilesError, match="outside the tiles, whose metadata bounds"):
        load_mbtiles(made["mbtiles"], far)
    with pytest.raises(WebTilesError, match="no tiles at zoom 17.*holds zoom 18"):
        load_mbtiles(made["mbtiles"], made["bbox"], zoom=17)
    # rows written as XYZ against the spec: refused with the fix named, and read right with --scheme xyz
    xyz_rows = _write_mbtiles(tmp_path / "xyzrows.mbtiles", made["tiles"], ZOOM, made["lonlat"], rows="xyz")
    with pytest.raises(WebTilesError, match="pass --scheme xyz"):
        load_mbtiles(xyz_rows, made["bbox"])
    assert load_mbtiles(xyz_rows, made["bbox"], scheme="xyz").mask.mean() > 0.98
    vector = _write_mbtiles(tmp_path / "vector.mbtiles", {}, ZOOM, made["lonlat"], fmt="pbf")
    with pytest.raises(WebTilesError, match="vector tiles"):
        load_mbtiles(vector, made["bbox"])
    nometa = _write_mbtiles(tmp_path / "nometa.mbtiles", made["tiles"], ZOOM, made["lonlat"], metadata=False)
    assert load_mbtiles(nometa, made["bbox"]).mask.mean() > 0.98
    notdb = tmp_path / "x.mbtiles"
    notdb.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(WebTilesError, match="not an SQLite database"):
        load_mbtiles(notdb, made["bbox"])
    cut = tmp_path / "cut.mbtiles"
    cut.write_bytes(made["mbtiles"].read_bytes()[:3000])
    with pytest.raises(MapError):
        load_mbtiles(cut, made["bbox"])
    with pytest.raises(WebTilesError, match="not found"):
        load_mbtiles(tmp_path / "none.mbtiles", made["bbox"])


def test_mbtiles_is_read_only_and_runs_nothing(made, tmp_path):
    path = _write_mbtiles(tmp_path / "trap.mbtiles", made["tiles"], ZOOM, made["lonlat"])
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE log (x)")
    # a view over the tiles that would write when read (not possible in SQLite) and a trigger: never fired
    conn.execute("CREATE TRIGGER t AFTER INSERT ON tiles BEGIN INSERT INTO log VALUES (1); END")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    o = load_mbtiles(path, made["bbox"])
    assert o.mask.any() and path.read_bytes() == before
    assert not list(tmp_path.glob("trap.mbtiles-*"))  # no journal or WAL written


def test_bad_and_missing_tiles_are_counted_and_left_empty(made, tmp_path):
    tiles = dict(made["tiles"])
    root = _write_folder(tmp_path / "holes", tiles, ZOOM, "xyz")
    x0, x1, y0, y1 = tile_range(made["bbox"], ZOOM)
    (root / str(ZOOM) / str(x0) / f"{y0}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt
    (root / str(ZOOM) / str(x1) / f"{y1}.png").unlink()  # missing
    notes = []
    o = load_tile_folder(root, made["bbox"], scheme="xyz", log=notes.append)
    assert "1 missing" in notes[0] and "1 not decodable" in notes[0]
    assert 0.5 < o.mask.mean() < 0.97
    assert not o.mask[0, 0] and not o.mask[-1, -1]  # the NW and SE corners came from the two bad tiles


def test_folder_errors(made, tmp_path):
    with pytest.raises(WebTilesError, match="not a folder"):
        load_tile_folder(tmp_path / "nope", made["bbox"], scheme="xyz")
    (tmp_path / "flat").mkdir()
    with pytest.raises(WebTilesError, match="no zoom folders"):
        load_tile_folder(tmp_path / "flat", made["bbox"], scheme="xyz")
    with pytest.raises(WebTilesError, match="no zoom level 12; the folder holds zoom 18"):
        load_tile_folder(made["xyz"], made["bbox"], scheme="xyz", zoom=12)
    with pytest.raises(WebTilesError, match="--scheme must be xyz"):
        load_tile_folder(made["xyz"], made["bbox"], scheme="google")
    west, south, east, north = made["lonlat"]
    with pytest.raises(WebTilesError, match="outside the tiles.*cover"):
        load_tile_folder(made["xyz"], (west - 0.1, south, west - 0.05, north), scheme="xyz")
    bw, bs, be, bn = made["bbox"]
    with pytest.raises(WebTilesError, match="swapped"):
        load_tile_folder(made["xyz"], (bs, bw, bn, be), scheme="xyz")
    with pytest.raises(WebTilesError, match="tiles, more than"):
        load_tile_folder(made["xyz"], (west - 1, south - 1, east + 1, north + 1), scheme="xyz")


# ----------------------------------------------------------------------------------------------- CLI
def _cli(argv) -> int:
    import argparse

    from maps.cli import register
    from runtime.cli.common import run_handler

    parser = argparse.ArgumentParser(prog="skyfix")
    register(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


def test_cli_builds_maps_from_a_tile_folder_and_an_mbtiles(made, tmp_path, capsys):
    from maps.package import MapPackage

    bbox = ",".join(repr(v) for v in made["bbox"])
    out = tmp_path / "from_tiles"
    assert _cli(["maps", "build", "--tiles", str(made["tms"]), "--scheme", "tms", "--zoom", str(ZOOM), "--bbox", bbox,
                 "-o", str(out), "--model", "classical"]) == 0
    err = capsys.readouterr().err
    assert "12 of 12 tiles read" in err or "tiles read" in err
    a = MapPackage.load(out, hnsw="off").summary()
    out2 = tmp_path / "from_mbtiles"
    assert _cli(["maps", "build", str(made["mbtiles"]), "--bbox", bbox, "-o", str(out2), "--model", "classical"]) == 0
    b = MapPackage.load(out2, hnsw="off").summary()
    assert a["tiles"] == b["tiles"] > 0 and a["bounds_local"] == b["bounds_local"]
    w = a["bounds_wgs84"]
    west, south, east, north = made["bbox"]
    assert west - 1e-4 < w["lon_min"] < w["lon_max"] < east + 1e-4
    assert south - 1e-4 < w["lat_min"] < w["lat_max"] < north + 1e-4
    capsys.readouterr()
    assert _cli(["maps", "build", "--tiles", str(made["xyz"]), "--scheme", "tms", "--bbox", bbox,
                 "-o", str(tmp_path / "wrong"), "--model", "classical"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --tiles") and "pass --scheme xyz" in err
