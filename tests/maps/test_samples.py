"""maps.samples: the default orthophoto fetched from the deepforest wheel on PyPI (a real registry download)."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from maps import samples
from maps.errors import DataFetchError


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory):
    """A cache folder holding the default orthophoto; skips only when the download itself fails (no network)."""
    cache = tmp_path_factory.mktemp("skyfix-cache")
    try:
        samples.default_orthophoto_path(cache)
    except DataFetchError as exc:
        if str(exc).startswith("could not download"):
            pytest.skip(f"default orthophoto not downloadable here (no network to PyPI?): {exc}")
        raise
    return cache


def test_fetch_writes_georeferenced_geotiff(sample_cache):
    import rasterio

    path = samples.default_orthophoto_path(sample_cache)
    assert path.parent == sample_cache and path.name == samples.OUTPUT_NAME
    assert not list(sample_cache.glob(".*"))  # no temporary leftovers, the wheel is not kept
    with rasterio.open(path) as ds:
        assert (ds.height, ds.width, ds.count) == samples.PNG_SHAPE == (2472, 2299, 3)
        assert ds.dtypes == ("uint8",) * 3
        assert ds.crs.to_epsg() == 32612
        t = ds.transform
        assert (t.a, t.b, t.c, t.d, t.e, t.f) == (0.1, 0.0, 528000.0, 0.0, -0.1, 4979000.0)
        # the crop lies inside its NEON 1 km tile (528000..529000 E, 4978000..4979000 N)
        assert ds.bounds.right <= 529000.0 and ds.bounds.bottom >= 4978000.0
        tags = ds.tags()
        assert "ASSUMED" in tags["GEOREFERENCE"] and samples.WHEEL_SHA256 in tags["SOURCE"]
        rgb = ds.read()
    # natural-colour vegetation: green above red and blue on average, not a constant image
    means = rgb.reshape(3, -1).mean(axis=1)
    assert means[1] > means[0] and means[1] > means[2] and rgb.std() > 20


def test_second_call_uses_cache_without_network(sample_cache, monkeypatch):
    path = samples.default_orthophoto_path(sample_cache)
    mtime = path.stat().st_mtime_ns

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run when the cache is complete")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert samples.default_orthophoto_path(sample_cache) == path
    assert path.stat().st_mtime_ns == mtime


def test_env_variable_selects_cache(sample_cache, monkeypatch):
    monkeypatch.setenv("SKYFIX_CACHE", str(sample_cache))
    assert samples.default_cache_dir() == sample_cache
    monkeypatch.delenv("SKYFIX_CACHE")
    assert samples.default_cache_dir().parts[-2:] == (".cache", "skyfix")


def test_default_orthophoto_loads_in_a_local_frame(sample_cache):
    o = samples.default_orthophoto(sample_cache)
    assert o.gsd == pytest.approx(0.1, rel=1e-3)
    # Yellowstone, near the assumed position (the absolute position itself is uncertain by ~1 km)
    assert 44.9 < o.frame.lat0 < 45.0 and -110.7 < o.frame.lon0 < -110.6
    w = o.mask[o.height // 2].sum() * o.gsd
    h = o.mask[:, o.width // 2].sum() * o.gsd
    assert w == pytest.approx(229.9, rel=0.005) and h == pytest.approx(247.2, rel=0.005)
    assert o.mask.mean() > 0.95
    assert samples.ABSOLUTE_POSITION_UNCERTAINTY_M >= 1000.0


def test_wrong_wheel_is_rejected(tmp_path):
    fake = tmp_path / samples.WHEEL_NAME
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(samples.WHEEL_MEMBER, b"not a png")
    with pytest.raises(DataFetchError, match="SHA-256") as err:
        samples.default_orthophoto_path(tmp_path / "cache", wheel=fake)
    assert samples.WHEEL_SHA256 in str(err.value)
    assert not (tmp_path / "cache" / samples.OUTPUT_NAME).exists()
    # a wheel whose image is wrong is caught by the shape check (bypassing the hash on purpose)
    with pytest.raises(DataFetchError, match="decodes to"):
        samples._read_png(fake)


def test_pip_failure_gives_helpful_error(tmp_path, monkeypatch):
    def failing(cmd, **kwargs):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and samples.WHEEL_REQUIREMENT in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(DataFetchError, match="could not download") as err:
        samples.default_orthophoto_path(tmp_path / "c1")
    msg = str(err.value)
    assert "network unreachable" in msg and "wheel=" in msg and "HTTPS_PROXY" in msg
    assert not list((tmp_path / "c1").iterdir())  # nothing half-written

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(DataFetchError, match="took more than"):
        samples.default_orthophoto_path(tmp_path / "c2", timeout_s=1)


def test_corrupt_cache_file_is_not_returned(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / samples.OUTPUT_NAME).write_bytes(b"truncated")

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "offline")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(DataFetchError, match="could not download"):
        samples.default_orthophoto_path(cache)


def test_import_has_no_side_effects():
    import sys

    code = (
        "import sys, maps.samples, maps.geotiff, maps.descriptors;"
        "print(sorted(m for m in ('rasterio', 'pyproj', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
