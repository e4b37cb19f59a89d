"""Imagery as satellite maps are: an orthophoto resampled to a coarser ground resolution, in another CRS.

:func:`resample_ortho` reads the source with :func:`maps.geotiff.load_orthophoto` (a GeoTIFF in any CRS, or a folder
of tiles, mosaicked), then warps it with ``rasterio.warp.reproject`` into the target CRS at ``gsd_m`` ground metres
per pixel: area averaging when coarsening (bilinear when refining), valid pixels weighted by the mask so that nodata
does not darken the edges, and an alpha band (255 valid, 0 nodata) written with it.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

import numpy as np

from ..errors import SimulationError


def _crs(crs):
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise SimulationError(f"crs must be a CRS rasterio accepts (e.g. 'EPSG:3857', 'EPSG:4326', 'EPSG:32632'), "
                              f"got {crs!r}: {exc}") from None


def _resolution(ortho, dst_crs, gsd_m: float) -> tuple[float, float]:
    """(x, y) pixel size in ``dst_crs`` units giving ``gsd_m`` ground metres at the centre of ``ortho``."""
    from pyproj import Transformer

    to_dst = Transformer.from_crs(ortho.frame.proj4, dst_crs.to_wkt(), always_xy=True)
    cx, cy = (ortho.bounds[0] + ortho.bounds[2]) / 2.0, (ortho.bounds[1] + ortho.bounds[3]) / 2.0
    d = 10.0  # metres east / north of the centre
    x0, y0 = to_dst.transform(cx, cy)
    xe, ye = to_dst.transform(cx + d, cy)
    xn, yn = to_dst.transform(cx, cy + d)
    return gsd_m * math.hypot(xe - x0, ye - y0) / d, gsd_m * math.hypot(xn - x0, yn - y0) / d


def resample_ortho(src, dst, *, gsd_m: float, crs="EPSG:3857") -> str:
    """Write ``src`` resampled to ``gsd_m`` metres per pixel and reprojected into ``crs`` as an RGB + alpha GeoTIFF.

    Args:
        src: a GeoTIFF (any CRS) or a folder of tiles (mosaicked by :func:`maps.geotiff.load_orthophoto`).
        dst: the GeoTIFF to write (replaced; written to a temporary name and renamed).
        gsd_m: ground metres per pixel at the centre of the image (e.g. 0.5-1.0 like satellite maps). For a
            geographic CRS (EPSG:4326) the degree resolution (separate for longitude and latitude) that gives it;
            for Web Mercator the CRS-unit pixel size that gives it (larger than ``gsd_m`` away from the equator).
        crs: target CRS (anything rasterio accepts: "EPSG:3857", "EPSG:4326", a UTM code like "EPSG:32632").
    Returns:
        The path written, as a string.
    Raises:
        SimulationError: bad ``gsd_m`` or ``crs``, the folder of ``dst`` missing; maps.errors.GeoTiffError from
        reading ``src``.
    """
    import rasterio
    from affine import Affine
    from maps.geotiff import load_orthophoto
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    if isinstance(gsd_m, bool) or not isinstance(gsd_m, (int, float)) or not math.isfinite(gsd_m) or gsd_m <= 0:
        raise SimulationError(f"gsd_m must be a finite number of metres per pixel > 0 (e.g. 0.5), got {gsd_m!r}")
    dst = Path(dst).expanduser()
    if not dst.parent.is_dir():
        raise SimulationError(f"cannot write {dst}: folder {dst.parent} does not exist; create it first")
    dst_crs = _crs(crs)
    ortho = load_orthophoto(os.fspath(src))
    src_crs = _crs(ortho.frame.proj4)
    src_tf = Affine(ortho.gsd, 0.0, ortho.x_min, 0.0, -ortho.gsd, ortho.y_max)
    res = _resolution(ortho, dst_crs, float(gsd_m))
    tf, w, h = calculate_default_transform(src_crs, dst_crs, ortho.width, ortho.height, *ortho.bounds,
                                           resolution=res)
    method = Resampling.average if gsd_m > ortho.gsd else Resampling.bilinear
    mask = ortho.mask.astype(np.float32)
    src_bands = np.concatenate([np.moveaxis(ortho.image.astype(np.float32), -1, 0) * mask, mask[None]])
    out = np.zeros((4, h, w), np.float32)
    reproject(src_bands, out, src_transform=src_tf, src_crs=src_crs, dst_transform=tf, dst_crs=dst_crs,
              resampling=method, src_nodata=None, dst_nodata=0.0)
    weight = out[3]
    valid = weight >= 0.5
    rgb = np.where(valid, out[:3] / np.maximum(weight, 1e-6), 0.0)
    bands = np.concatenate([np.clip(np.round(rgb), 0, 255), np.where(valid, 255.0, 0.0)[None]]).astype(np.uint8)
    profile = dict(driver="GTiff", width=w, height=h, count=4, dtype="uint8", crs=dst_crs, transform=tf,
                   photometric="RGB", alpha="YES", compress="deflate", predictor=2)
    if w > 512 or h > 512:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(bands)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return str(dst)


__all__ = ["resample_ortho"]
