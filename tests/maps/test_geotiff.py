"""maps.geotiff on the real orthophotos in ../shared/data/ortho (5 CRSs) and on small files written here."""

from __future__ import annotations

import numpy as np
import pytest

from maps.errors import GeoTiffError
from maps.geodesy import LocalFrame
from maps.geotiff import load_orthophoto, write_geotiff
from maps.ortho import Orthophoto


def _source_geometry(path):
    """Geodesic width/height (metres) through the middle of a source raster, its centre (lat, lon), ground px."""
    import rasterio
    from pyproj import Geod, Transformer

    with rasterio.open(path) as ds:
        t, w, h, crs = ds.transform, ds.width, ds.height, ds.crs
    tr = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    cols = np.array([0.0, w, w / 2, w / 2, w / 2, w / 2 + 1])
    rows = np.array([h / 2, h / 2, 0.0, h, h / 2, h / 2])
    x, y = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
    lon, lat = tr.transform(x, y)
    geod = Geod(ellps="WGS84")
    width = geod.inv(lon[0], lat[0], lon[1], lat[1])[2]
    height = geod.inv(lon[2], lat[2], lon[3], lat[3])[2]
    px = geod.inv(lon[4], lat[4], lon[5], lat[5])[2]
    return width, height, (lat[4], lon[4]), px


def _valid_extent(o: Orthophoto):
    """Metres of valid pixels along the middle row and the middle column (a chord through the centre)."""
    return o.mask[o.height // 2].sum() * o.gsd, o.mask[:, o.width // 2].sum() * o.gsd


CASES = [
    # file, nominal ground width x height (m) or None (= geodesic only)
    ("ortho/swissimage_zurich_a_0.5m.tif", (437.5, 300.0)),  # EPSG:2056
    ("ortho/swissimage_zurich_b_0.5m.tif", (437.5, 200.0)),  # EPSG:2056
    ("ortho/netherlands_0.25m.tif", (250.0, 250.0)),  # EPSG:28992
    ("ortho/spacenet_atlanta_pan_0.5m.tif", (450.0, 450.0)),  # EPSG:32616, uint16 pan
    ("ortho/openaerialmap_manila_0.1m.tif", None),  # EPSG:3395 World Mercator
    ("ortho/openaerialmap_brazil_0.1m.tif", None),  # EPSG:3395 World Mercator, southern hemisphere
]


@pytest.mark.parametrize("rel, nominal", CASES, ids=[c[0].split("/")[-1] for c in CASES])
def test_real_orthophotos_have_true_ground_size(shared_data, rel, nominal):
    path = shared_data(rel)
    o = load_orthophoto(path)
    assert o.image.dtype == np.uint8 and o.image.shape == (o.height, o.width, 3) and o.mask.dtype == bool
    gw, gh, (clat, clon), px = _source_geometry(path)
    if nominal is not None:
        assert gw == pytest.approx(nominal[0], rel=0.01) and gh == pytest.approx(nominal[1], rel=0.01)
    # default gsd = finest source pixel in true ground metres
    assert o.gsd == pytest.approx(px, rel=2e-3)
    w, h = _valid_extent(o)
    assert w == pytest.approx(gw, rel=0.01) and h == pytest.approx(gh, rel=0.01)
    # the default frame is centred on the source, and the valid region is centred on the frame origin
    x, y = o.frame.to_local(clat, clon)
    assert abs(x) < 1.0 and abs(y) < 1.0
    v, u = np.nonzero(o.mask)
    cx, cy = o.to_local(u.mean(), v.mean())
    assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0
    assert o.mask.mean() > 0.9 and o.sources == (str(path),)


def test_world_mercator_pixels_are_shrunk_to_ground_metres(shared_data):
    path = shared_data("ortho/openaerialmap_manila_0.1m.tif")
    o = load_orthophoto(path)
    lat = o.frame.lat0
    assert 14.0 < lat < 15.0
    # 0.1 World Mercator units are 0.1 * cos(lat) ground metres on the sphere-ish scale: ~0.097 m here
    assert o.gsd == pytest.approx(0.0968, abs=0.0005)
    assert o.gsd < 0.0975
    w, h = _valid_extent(o)
    gw, gh, _, _ = _source_geometry(path)
    assert gw == pytest.approx(2048 * 0.10009765625 * np.cos(np.radians(lat)), rel=0.005)
    assert w == pytest.approx(gw, rel=0.005) and h == pytest.approx(gh, rel=0.005)
    assert w < 200.0  # not the 205 "metres" the Mercator coordinates claim


def test_rgba_alpha_becomes_mask(shared_data):
    import rasterio

    path = shared_data("ortho/pix4d_bali_0.35m.tif")
    o = load_orthophoto(path)
    with rasterio.open(path) as ds:
        alpha = ds.read(4)
    transparent = float((alpha == 0).mean())
    assert 0.02 < transparent < 0.5
    assert 0.5 < o.mask.mean() < 0.98
    # the fraction of transparent area is preserved (the raster grows by the rotation into the local frame)
    assert o.mask.sum() == pytest.approx((alpha > 0).sum() * (0.35272 / o.gsd) ** 2, rel=0.02)
    assert np.all(o.image[~o.mask] == 0)
    assert o.image[o.mask].mean() > 20


def test_uint16_panchromatic_becomes_stretched_rgb(shared_data):
    import rasterio

    path = shared_data("ortho/spacenet_atlanta_pan_0.5m.tif")
    with rasterio.open(path) as ds:
        assert ds.count == 1 and ds.dtypes[0] == "uint16"
    o = load_orthophoto(path)
    assert o.image.dtype == np.uint8
    assert np.array_equal(o.image[..., 0], o.image[..., 1]) and np.array_equal(o.image[..., 0], o.image[..., 2])
    grey = o.image[..., 0][o.mask]
    lo, hi = np.percentile(grey, [1, 99])
    assert lo < 30 and hi > 220  # uses the 8-bit range
    assert 0.0 < (grey == 255).mean() < 0.02  # the robust stretch saturates only the tails


def test_strip_of_25_tiles_mosaics_into_one_raster(shared_data):
    folder = shared_data("ortho/swissimage_strip_0.5m")
    files = sorted(folder.glob("*.tif"))
    assert len(files) == 25
    o = load_orthophoto(folder)
    assert len(o.sources) == 25 and o.gsd == 0.5
    w, h = _valid_extent(o)
    assert w == pytest.approx(87.5, rel=0.01) and h == pytest.approx(1500.0, rel=0.01)
    assert o.mask.sum() * o.gsd**2 == pytest.approx(87.5 * 1500.0, rel=0.01)
    # no seam: the middle column is valid from top to bottom without a gap
    col = o.mask[:, o.width // 2]
    rows = np.nonzero(col)[0]
    assert rows.size == rows.max() - rows.min() + 1
    # the list form gives the same raster
    o2 = load_orthophoto(files, frame=o.frame)
    assert np.array_equal(o2.image, o.image) and np.array_equal(o2.mask, o.mask)


def test_strip_mosaic_matches_the_overlapping_orthophoto(shared_data):
    """The strip's first tiles cover the west part of zurich_a: same pixels at the same local coordinates."""
    a = load_orthophoto(shared_data("ortho/swissimage_zurich_a_0.5m.tif"))
    s = load_orthophoto(shared_data("ortho/swissimage_strip_0.5m"), frame=a.frame, gsd=a.gsd)
    x0, y0 = max(a.bounds[0], s.bounds[0]), max(a.bounds[1], s.bounds[1])
    x1, y1 = min(a.bounds[2], s.bounds[2]), min(a.bounds[3], s.bounds[3])
    assert x1 - x0 > 80 and y1 - y0 > 250
    ua, va = (int(round(float(t))) for t in a.to_pixel(x0 + a.gsd / 2, y1 - a.gsd / 2))
    us, vs = (int(round(float(t))) for t in s.to_pixel(x0 + a.gsd / 2, y1 - a.gsd / 2))
    w, h = int((x1 - x0) / a.gsd), int((y1 - y0) / a.gsd)
    pa, ps = a.image[va:va + h, ua:ua + w].astype(int), s.image[vs:vs + h, us:us + w].astype(int)
    m = a.mask[va:va + h, ua:ua + w] & s.mask[vs:vs + h, us:us + w]
    assert m.sum() > 80_000
    assert np.abs(pa - ps)[m].mean() < 3.0
    assert np.abs(pa - np.roll(ps, 2, axis=0))[m].mean() > 10.0  # a 1 m misregistration would show


def test_write_read_round_trip_is_exact(shared_data, tmp_path):
    o = load_orthophoto(shared_data("ortho/pix4d_bali_0.35m.tif"))
    path = write_geotiff(tmp_path / "bali_local.tif", o)
    assert path.exists() and not list(tmp_path.glob("*.tmp*"))
    back = load_orthophoto(path)
    assert back.frame == o.frame and back.gsd == o.gsd
    assert back.x_min == pytest.approx(o.x_min, abs=1e-9) and back.y_max == pytest.approx(o.y_max, abs=1e-9)
    assert back.image.shape == o.image.shape
    assert np.array_equal(back.mask, o.mask) and np.array_equal(back.image, o.image)
    # read into another frame it is reprojected and still lands in the same place
    other = LocalFrame(o.frame.lat0 + 0.001, o.frame.lon0 - 0.001)
    moved = load_orthophoto(path, frame=other)
    x, y = other.to_local(o.frame.lat0, o.frame.lon0)
    v, u = np.nonzero(moved.mask)
    cx, cy = moved.to_local(u.mean(), v.mean())
    v0, u0 = np.nonzero(o.mask)
    ox, oy = o.to_local(u0.mean(), v0.mean())
    assert abs(cx - (x + ox)) < 0.5 and abs(cy - (y + oy)) < 0.5


def test_explicit_frame_and_gsd(shared_data):
    b = load_orthophoto(shared_data("ortho/swissimage_zurich_b_0.5m.tif"))
    a = load_orthophoto(shared_data("ortho/swissimage_zurich_a_0.5m.tif"), frame=b.frame, gsd=2.0)
    assert a.gsd == 2.0 and a.frame == b.frame
    # zurich_a lies ~10.7 km west and ~14 km north of zurich_b
    cx, cy = (a.bounds[0] + a.bounds[2]) / 2, (a.bounds[1] + a.bounds[3]) / 2
    assert -12_000 < cx < -9_000 and 12_000 < cy < 16_000
    w, h = _valid_extent(a)
    assert w == pytest.approx(437.5, abs=4.0) and h == pytest.approx(300.0, abs=4.0)


# ------------------------------------------------------------------------------ small synthetic files


def _write(path, data, crs=None, transform=None, nodata=None, **kw):
    import rasterio

    count = data.shape[0]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=count, dtype=data.dtype.name)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(kw)
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
    return path


def _pattern(h=80, w=100, bands=3):
    rng = np.random.default_rng(0)
    base = rng.integers(20, 236, (bands, h // 4, w // 4), dtype=np.uint8)
    return np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)


def test_file_without_crs_says_how_to_fix(tmp_path):
    from affine import Affine

    path = _write(tmp_path / "nocrs.tif", _pattern())
    with pytest.raises(GeoTiffError, match="no CRS") as err:
        load_orthophoto(path)
    msg = str(err.value)
    assert "--crs" in msg and "transform" in msg and "world file" in msg
    # with a CRS but no georeference the message asks for the transform
    with pytest.raises(GeoTiffError, match="no georeference"):
        load_orthophoto(path, crs="EPSG:32632")
    # given both explicitly it loads: 100 x 80 px at 1 m in UTM 32N near the central meridian
    o = load_orthophoto(path, crs="EPSG:32632", transform=Affine(1.0, 0, 500_000.0, 0, -1.0, 5_250_000.0))
    w, h = _valid_extent(o)
    assert w == pytest.approx(100 / 0.9996, rel=0.003) and h == pytest.approx(80 / 0.9996, rel=0.003)
    # a world file next to it is read (GDAL) and the CRS passed
    (tmp_path / "nocrs.tfw").write_text("1.0\n0.0\n0.0\n-1.0\n500000.5\n5249999.5\n")
    o2 = load_orthophoto(path, crs="EPSG:32632")
    assert np.array_equal(o2.image, o.image)


def test_implausible_georeference_is_rejected(tmp_path):
    from affine import Affine

    # CRS claims degrees, coordinates are Swiss metres
    p = _write(tmp_path / "geo.tif", _pattern(), crs="EPSG:4326", transform=Affine(0.5, 0, 2679062.5, 0, -0.5, 1248000.0))
    with pytest.raises(GeoTiffError, match="geographic") as err:
        load_orthophoto(p)
    assert "--crs" in str(err.value)
    # the right CRS passed explicitly fixes it
    o = load_orthophoto(p, crs="EPSG:2056")
    assert _valid_extent(o)[0] == pytest.approx(50.0, rel=0.01)
    # degrees tagged as UTM metres: a 1e-5 m pixel
    p2 = _write(tmp_path / "deg.tif", _pattern(), crs="EPSG:32632", transform=Affine(1e-5, 0, 8.5, 0, -1e-5, 47.3))
    with pytest.raises(GeoTiffError, match="pixel would be"):
        load_orthophoto(p2)
    # coordinates far outside the CRS's area of use (UTM coordinates tagged as Swiss LV95)
    p3 = _write(tmp_path / "aou.tif", _pattern(), crs="EPSG:2056", transform=Affine(1, 0, 9_000_000.0, 0, -1, 9_000_000.0))
    with pytest.raises(GeoTiffError, match="not on Earth|area of use"):
        load_orthophoto(p3)


def test_nodata_becomes_mask(tmp_path):
    from affine import Affine

    data = _pattern()
    data[:, 20:40, 30:70] = 0
    p = _write(tmp_path / "nd.tif", data, crs="EPSG:32632", transform=Affine(1, 0, 500_000, 0, -1, 5_250_000), nodata=0)
    o = load_orthophoto(p, gsd=1.0)
    hole = (20 * 40) / (80 * 100)
    assert (~o.mask).sum() == pytest.approx(hole * 80 * 100 + (o.mask.size - 80 * 100), rel=0.1)
    # the hole sits where it was: ~30..70 m from the west edge, 20..40 m below the top
    x_w, y_t = o.frame.from_crs("EPSG:32632")(500_000.0, 5_250_000.0)
    u, v = o.to_pixel(x_w + 50.0, y_t - 30.0)
    assert not o.mask[int(round(float(v))), int(round(float(u)))]
    u, v = o.to_pixel(x_w + 10.0, y_t - 10.0)
    assert o.mask[int(round(float(v))), int(round(float(u)))]


def test_float_with_nan_and_grey_uint8(tmp_path):
    from affine import Affine

    t = Affine(0.5, 0, 500_000, 0, -0.5, 5_250_000)
    f = _pattern(bands=1).astype(np.float32) * 10.0
    f[0, :10, :] = np.nan
    o = load_orthophoto(_write(tmp_path / "f.tif", f, crs="EPSG:32632", transform=t))
    assert o.image.dtype == np.uint8 and not o.mask[: 8 + 2].all()
    g = _pattern(bands=1)
    og = load_orthophoto(_write(tmp_path / "g.tif", g, crs="EPSG:32632", transform=t))
    assert np.array_equal(og.image[..., 0], og.image[..., 2])
    assert og.image[og.mask].max() <= g.max()  # uint8 grey is not stretched


def test_typed_errors(tmp_path, shared_data):
    from affine import Affine

    with pytest.raises(GeoTiffError, match="not found"):
        load_orthophoto(tmp_path / "missing.tif")
    bad = tmp_path / "text.tif"
    bad.write_text("not a tiff")
    with pytest.raises(GeoTiffError, match="cannot read"):
        load_orthophoto(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeoTiffError, match="no GeoTIFF"):
        load_orthophoto(tmp_path / "empty")
    with pytest.raises(GeoTiffError, match="no orthophoto"):
        load_orthophoto([])
    t = Affine(1, 0, 500_000, 0, -1, 5_250_000)
    rgb = _write(tmp_path / "rgb.tif", _pattern(), crs="EPSG:32632", transform=t)
    grey = _write(tmp_path / "grey.tif", _pattern(bands=1).astype(np.uint16), crs="EPSG:32632", transform=t)
    two = _write(tmp_path / "two.tif", _pattern(bands=2), crs="EPSG:32632", transform=t)
    with pytest.raises(GeoTiffError, match="different band layouts"):
        load_orthophoto([rgb, grey])
    with pytest.raises(GeoTiffError, match="expected 1 \\(grey\\), 3 \\(RGB\\)"):
        load_orthophoto(two)
    with pytest.raises(GeoTiffError, match="gsd must be > 0"):
        load_orthophoto(rgb, gsd=-1)
    with pytest.raises(GeoTiffError, match="resampling must be one of"):
        load_orthophoto(rgb, resampling="fancy")
    with pytest.raises(GeoTiffError, match="transform describes one raster"):
        load_orthophoto([rgb, rgb], transform=t)
    with pytest.raises(GeoTiffError, match="cannot understand CRS"):
        load_orthophoto(rgb, crs="EPSG:999999")
    with pytest.raises(GeoTiffError, match="more than"):
        load_orthophoto(rgb, gsd=0.001)
    nd = _write(tmp_path / "allnd.tif", np.zeros((3, 8, 8), np.uint8), crs="EPSG:32632", transform=t, nodata=0)
    with pytest.raises(GeoTiffError, match="no valid pixel"):
        load_orthophoto(nd)
    with pytest.raises(GeoTiffError, match="Orthophoto"):
        write_geotiff(tmp_path / "x.tif", np.zeros((4, 4, 3), np.uint8))
    o = load_orthophoto(rgb)
    with pytest.raises(GeoTiffError, match="does not exist"):
        write_geotiff(tmp_path / "nope" / "x.tif", o)
