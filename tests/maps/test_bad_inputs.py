"""Maps inputs that users get wrong or that arrive broken: a GeoTIFF cut short, URLs (unmangled, unreachable),
`maps build -o EXISTING` (refused before any work), flags that do not apply; each a typed error naming the fix."""

from __future__ import annotations

import argparse
import time

import pytest

rasterio = pytest.importorskip("rasterio")

from maps.cli import register  # noqa: E402
from maps.errors import GeoTiffError, MapError  # noqa: E402
from maps.geotiff import is_remote, load_orthophoto  # noqa: E402
from runtime.cli.common import run_handler  # noqa: E402

SOURCE = "ortho/swissimage_zurich_a_0.5m.tif"


def cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="skyfix")
    register(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


# ----------------------------------------------------------------------------------------------- cut short
@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.95])
def test_geotiff_cut_short_is_a_typed_error(shared_data, tmp_path, fraction):
    data = shared_data(SOURCE).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(GeoTiffError) as info:
        load_orthophoto(cut)
    msg = str(info.value)
    assert str(cut) in msg and "cut short" in msg and "gdalinfo -checksum" in msg
    assert "GDAL:" in msg and "See previous exception" not in msg  # GDAL's own words, not rasterio's pointer


def test_geotiff_header_cut_short_and_not_a_raster(shared_data, tmp_path):
    data = shared_data(SOURCE).read_bytes()
    for name, content in (("head.tif", data[:40]), ("empty.tif", b""), ("page.tif", b"<html>404</html>")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(GeoTiffError, match=f"cannot read {path} as a raster.*cut short"):
            load_orthophoto(path)


def test_cut_short_through_the_cli_is_one_line_exit_2(shared_data, tmp_path, capsys):
    cut = tmp_path / "cut.tif"
    cut.write_bytes(shared_data(SOURCE).read_bytes()[:60_000])
    assert cli(["maps", "build", str(cut), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "cut short" in err
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cogs/ortho.tif",
        "/vsicurl/https://example.com/cogs/ortho.tif",
        "http://example.com:8080/a//b/ortho.tif?sig=a%2Fb&x=1",
        "s3://bucket/key/ortho.tif",
    ],
)
def test_url_reaches_rasterio_unmangled(monkeypatch, url):
    from rasterio.errors import RasterioIOError

    seen = []

    def fake_open(path, *a, **kw):
        seen.append(path)
        raise RasterioIOError("HTTP response code: 404")

    monkeypatch.setattr(rasterio, "open", fake_open)
    assert is_remote(url)
    with pytest.raises(GeoTiffError) as info:
        load_orthophoto(url)
    assert seen == [url]  # exactly the string given: no https:/ from Path(), no expanduser, no resolve
    assert url in str(info.value) and "HTTP response code: 404" in str(info.value)


def test_url_through_the_cli_reaches_rasterio_unmangled(monkeypatch, tmp_path, capsys):
    from rasterio.errors import RasterioIOError

    seen = []

    def fake_open(path, *a, **kw):
        seen.append(path)
        raise RasterioIOError("CURL error: Could not resolve host")

    monkeypatch.setattr(rasterio, "open", fake_open)
    url = "https://example.com/cogs/ortho.tif"
    assert cli(["maps", "build", url, "-o", str(tmp_path / "m")]) == 2
    assert seen == [url]
    err = capsys.readouterr().err
    assert f"cannot open the remote raster {url}" in err and "Could not resolve host" in err


@pytest.mark.parametrize(
    "url, gdal_says",
    [
        ("/vsicurl/http://127.0.0.1:9/ortho.tif", "127.0.0.1"),  # nothing listens on port 9: refused at once
        ("file:///nonexistent/skyfix/ortho.tif", "No such file"),
    ],
)
def test_unreachable_url_is_a_typed_error_naming_url_and_gdal(url, gdal_says):
    t0 = time.perf_counter()
    with pytest.raises(MapError) as info:
        load_orthophoto(url)
    msg = str(info.value)
    assert url in msg and gdal_says in msg and "GDAL:" in msg and "check the URL" in msg
    assert time.perf_counter() - t0 < 20


def test_local_paths_are_not_urls():
    for p in ("ortho.tif", "./https/ortho.tif", "/data/vsicurl.tif", "C:/maps/x.tif"):
        assert not is_remote(p)


# ----------------------------------------------------------------------------------------------- -o EXISTING
def test_build_refuses_an_existing_map_before_any_work(shared_data, tmp_path, capsys):
    src = shared_data(SOURCE)
    out = tmp_path / "map"
    assert cli(["maps", "build", str(src), "-o", str(out), "--model", "classical"]) == 0
    capsys.readouterr()
    manifest = (out / "manifest.json").read_bytes()
    t0 = time.perf_counter()
    assert cli(["maps", "build", str(src), "-o", str(out), "--model", "classical"]) == 2
    took = time.perf_counter() - t0
    cap = capsys.readouterr()
    assert "already exists; pass --overwrite" in cap.err and "overwrite=True" not in cap.err
    assert "orthophoto:" not in cap.err and "embed" not in cap.err  # nothing loaded, nothing embedded
    assert took < 1.0, took
    assert (out / "manifest.json").read_bytes() == manifest
    # a folder that is not a map, and a file: never replaced
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    assert cli(["maps", "build", str(src), "-o", str(other), "--overwrite"]) == 2
    assert "not a map package" in capsys.readouterr().err and (other / "keep.txt").exists()
    assert cli(["maps", "build", str(src), "-o", str(other / "keep.txt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert cli(["maps", "build", str(src), "-o", str(out), "--model", "classical", "--overwrite"]) == 0


def test_build_flag_combinations_are_typed_errors(tmp_path, capsys):
    out = str(tmp_path / "m")
    cases = [
        (["maps", "build", "-o", out], "nothing to build from"),
        (["maps", "build", "a.tif", "--tiles", "t", "-o", out], "one kind of input"),
        (["maps", "build", "--tiles", str(tmp_path), "--bbox", "8,47,8.1,47.1", "-o", out], "--tiles needs --scheme"),
        (["maps", "build", "--tiles", str(tmp_path), "--scheme", "xyz", "-o", out], "need --bbox"),
        (["maps", "build", "x.mbtiles", "-o", out], "need --bbox"),
        (["maps", "build", "a.tif", "--bbox", "8,47,8.1,47.1", "-o", out], "--bbox applies to web map tiles"),
        (["maps", "build", "x.mbtiles", "--bbox", "8,47,8.1", "-o", out], "--bbox must be 4 numbers"),
        (["maps", "build", "x.mbtiles", "--bbox", "8,47,8.1,47.1", "--crs", "EPSG:2056", "-o", out],
         "--crs applies to GeoTIFFs only"),
        (["maps", "build", "a.tif", "--transform", "1,2,3", "-o", out], "--transform must be 6 numbers"),
        (["maps", "build", "a.mbtiles", "b.mbtiles", "--bbox", "8,47,8.1,47.1", "-o", out], "one kind of input"),
    ]
    for argv, message in cases:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_crs_flag_places_a_file_without_crs(shared_data, tmp_path, capsys):
    import numpy as np

    with rasterio.open(shared_data(SOURCE)) as ds:
        data, transform = ds.read(), ds.transform
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3,
                       dtype="uint8") as ds:
        ds.write(data)
    with pytest.raises(GeoTiffError, match="--crs EPSG:xxxx.*--transform"):
        load_orthophoto(bare)
    t = ",".join(repr(float(v)) for v in transform[:6])
    out = tmp_path / "m"
    assert cli(["maps", "build", str(bare), "--crs", "EPSG:2056", "--transform", t, "-o", str(out),
                "--model", "classical"]) == 0
    ref = load_orthophoto(shared_data(SOURCE))
    got = load_orthophoto(bare, crs="EPSG:2056", transform=[float(v) for v in transform[:6]])
    assert np.array_equal(ref.image, got.image) and ref.frame == got.frame
