"""Large synthetic orthophotos for region scale tests, cut from a few small real ones.

:func:`write_synthetic_mosaic` fills a ``width_m`` x ``height_m`` area with square blocks cut from the sources
(a random source, a random crop, one of the 8 flips / 90-degree rotations per block, from a seeded
``numpy.random.Generator``), so that the imagery is real aerial texture that does not repeat on a regular lattice,
and writes it as a tiled, DEFLATE-compressed RGB GeoTIFF window by window: memory stays at the sources plus one
512 x 512 px window whatever the size (8000 x 8000 px for 4 x 4 km at 0.5 m, or 40000 x 2000 px for 20 x 1 km).

The mosaic takes the first source's CRS, pixel size and top-left corner; every source must have that pixel size
(the blocks are copied pixel for pixel, never resampled). The imagery is geographically meaningless: it is for
timing and sizing region builds (``python -m runtime.tools.region_bench``), not for localization accuracy.

CLI::

    python -m runtime.tools.synthetic_region SRC.tif [SRC.tif ...] -o OUT.tif --width-m 4000 --height-m 4000 [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maps.errors import GeoTiffError

DEFAULT_BLOCK_PX = 256
"""Side of the blocks cut from the sources when ``block_m`` is None, pixels (capped by the smallest source side)."""
WRITE_BLOCK_PX = 512
"""GeoTIFF tile side, pixels; every write is one such tile (the last row/column of tiles may be narrower)."""
MIN_BLOCK_PX = 8
MAX_PIXELS = 100_000_000_000
"""Refuse mosaics of more pixels than this (100 x 100 km at 0.5 m is 4e10): a typo in a size, not a scale test."""
TAG = "SKYFIX_SYNTHETIC"
"""GeoTIFF tag holding JSON: the source file names, seed and block size the mosaic was made with."""


@dataclass(frozen=True)
class _Source:
    path: str
    rgb: np.ndarray  # uint8[h, w, 3]
    crs: object  # rasterio CRS or None
    res: float  # pixel size in CRS units (square pixels)
    x0: float  # top-left corner, CRS units
    y0: float
    mask: np.ndarray | None  # bool[h, w] valid pixels; None: all valid


def _read_source(path) -> _Source:
    """Read one source whole (RGB, or grey replicated) and check it is usable."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import RasterioError

    p = str(path)
    if not Path(p).is_file():
        raise GeoTiffError(f"source orthophoto {p} not found; pass existing GeoTIFF files")
    try:
        with rasterio.open(p) as ds:
            if ds.count < 1 or any(dt != "uint8" for dt in ds.dtypes):
                raise GeoTiffError(f"source {p} has bands of type {', '.join(ds.dtypes)}; synthetic mosaics copy "
                                   "uint8 RGB (or grey) pixels: convert it first (gdal_translate -ot Byte -scale)")
            if ds.count in (1, 2) and ds.colorinterp[0] == ColorInterp.palette:
                raise GeoTiffError(f"source {p} is a palette image; expand it to RGB first "
                                   "(gdal_translate -expand rgb)")
            t = ds.transform
            if t.b != 0.0 or t.d != 0.0 or not t.a > 0.0 or not t.e < 0.0:
                raise GeoTiffError(f"source {p} is not north-up (transform {tuple(t[:6])}); warp it first (gdalwarp)")
            if abs(t.a + t.e) > 1e-6 * t.a:
                raise GeoTiffError(f"source {p} has non-square pixels ({t.a} x {-t.e}); warp it to square pixels "
                                   "first (gdalwarp -tr RES RES)")
            if ds.count >= 3:
                ci = list(ds.colorinterp)
                want = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
                bands = [ci.index(c) + 1 for c in want] if all(c in ci for c in want) else [1, 2, 3]
            else:
                bands = [1, 1, 1]
            data = ds.read(bands)
            mask = ds.dataset_mask() > 0
            src = (p, np.ascontiguousarray(np.moveaxis(data, 0, -1)), ds.crs, float(t.a), float(t.c), float(t.f))
    except GeoTiffError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        raise GeoTiffError(f"cannot read source orthophoto {p}: {exc}; expected a GeoTIFF (uint8 RGB)") from exc
    return _Source(*src, mask=None if mask.all() else mask)


def _valid_starts(mask: np.ndarray, b: int) -> np.ndarray:
    """Flat indexes r * (w - b + 1) + c of the b x b crops of ``mask`` (bool[h, w]) that are valid throughout."""
    h, w = mask.shape
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(~mask, axis=0), axis=1)
    bad = ii[b:, b:] - ii[:-b, b:] - ii[b:, :-b] + ii[:-b, :-b]
    return np.flatnonzero(bad == 0)


def _pixels(value, what: str, res: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GeoTiffError(f"{what} must be a number of metres, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise GeoTiffError(f"{what} must be a positive, finite number of metres, got {value!r}")
    n = int(round(v / res))
    if n < 1:
        raise GeoTiffError(f"{what} = {v:g} m is less than one source pixel ({res:g} m); pass at least {res:g} m")
    return n


class _Layout:
    """Which crop of which source fills each block: src, start (flat crop index), orient (0-7) per block."""

    def __init__(self, sources: list[_Source], starts: list, b: int, nby: int, nbx: int, seed: int):
        rng = np.random.default_rng(seed)
        self.sources, self.b = sources, b
        self.src = rng.integers(0, len(sources), size=(nby, nbx), dtype=np.int64)
        self.orient = rng.integers(0, 8, size=(nby, nbx), dtype=np.int64)
        u = rng.random((nby, nbx))
        self.row0 = np.zeros((nby, nbx), np.int64)
        self.col0 = np.zeros((nby, nbx), np.int64)
        for k, (s, ok) in enumerate(zip(sources, starts)):
            sel = self.src == k
            h, w = s.rgb.shape[:2]
            n = (h - b + 1) * (w - b + 1) if ok is None else ok.size
            idx = np.minimum((u[sel] * n).astype(np.int64), n - 1)
            flat = idx if ok is None else ok[idx]
            self.row0[sel], self.col0[sel] = np.divmod(flat, w - b + 1)

    def block(self, i: int, j: int) -> np.ndarray:
        """uint8[b, b, 3] (a view) of block (i, j)."""
        b = self.b
        s = self.sources[int(self.src[i, j])]
        r0, c0, k = int(self.row0[i, j]), int(self.col0[i, j]), int(self.orient[i, j])
        crop = s.rgb[r0:r0 + b, c0:c0 + b]
        if k >= 4:
            crop = crop[:, ::-1]
        return np.rot90(crop, k % 4)

    def render(self, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """uint8[3, h, w] (band-first, for rasterio) pixels of the mosaic's window at (row0, col0)."""
        b = self.b
        out = np.empty((3, h, w), np.uint8)
        for i in range(row0 // b, (row0 + h - 1) // b + 1):
            r_lo, r_hi = max(i * b, row0), min((i + 1) * b, row0 + h)
            for j in range(col0 // b, (col0 + w - 1) // b + 1):
                c_lo, c_hi = max(j * b, col0), min((j + 1) * b, col0 + w)
                blk = self.block(i, j)[r_lo - i * b:r_hi - i * b, c_lo - j * b:c_hi - j * b]
                out[:, r_lo - row0:r_hi - row0, c_lo - col0:c_hi - col0] = np.moveaxis(blk, -1, 0)
        return out


def write_synthetic_mosaic(sources, out_tif, *, width_m: float, height_m: float, seed: int = 0,
                           block_m: float | None = None) -> Path:
    """Write a synthetic RGB orthophoto GeoTIFF of ``width_m`` x ``height_m`` metres cut from ``sources``.

    Args:
        sources: one or more GeoTIFF paths (uint8 RGB or grey, north-up, square pixels, all of the first one's
            pixel size), read whole: they should be small (a few thousand pixels a side).
        out_tif: output GeoTIFF path (its folder must exist); replaced atomically if it exists.
        width_m, height_m: size of the mosaic, metres (CRS units of the first source), rounded to whole pixels
            (``round(width_m / pixel size)``); the origin is the first source's top-left corner.
        seed: seed of the ``numpy.random.Generator`` choosing each block's source, crop and flip/rotation (same
            seed and sources: the same pixels).
        block_m: side of the square blocks cut from the sources, metres (rounded to whole pixels, at least
            8 px, at most the smallest source side); default 256 px (128 m at 0.5 m) or the smallest source side.
            A source with nodata / alpha gives only crops that are valid throughout.

    Returns:
        The path written: a tiled (512 x 512 px) DEFLATE GeoTIFF, 3 uint8 bands (RGB), no nodata (every pixel
        valid), the first source's CRS, pixel size ``p`` and transform ``(p, 0, x_left, 0, -p, y_top)``; the tag
        :data:`TAG` records the sources, seed and block size. Written one 512 x 512 window at a time (memory: the
        sources plus one window), block (i, j) covering rows ``i*B..(i+1)*B`` and columns ``j*B..(j+1)*B``.

    Raises:
        GeoTiffError: a source is missing, unreadable, not uint8, not north-up, has another pixel size or is smaller
            than a block; a size or the seed is not valid; the output folder does not exist.
    """
    import rasterio
    from affine import Affine
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    try:
        paths = [str(s) for s in sources]
    except TypeError:
        raise GeoTiffError(f"sources must be GeoTIFF paths, got {type(sources).__name__}") from None
    if not paths:
        raise GeoTiffError("no source orthophoto given: pass at least one GeoTIFF to cut the mosaic from")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GeoTiffError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_tif).expanduser()
    if not out.parent.is_dir():
        raise GeoTiffError(f"cannot write {out}: folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise GeoTiffError(f"cannot write {out}: it is a folder; choose a file path (OUT.tif)")
    first = _read_source(paths[0])
    if first.crs is None:
        raise GeoTiffError(f"the first source {paths[0]} has no CRS; the mosaic takes its CRS (set one with "
                           "gdal_edit.py -a_srs EPSG:xxxx)")
    res = first.res
    width, height = _pixels(width_m, "width_m", res), _pixels(height_m, "height_m", res)
    if width * height > MAX_PIXELS:
        raise GeoTiffError(f"a {width} x {height} px mosaic is more than {MAX_PIXELS:.0e} pixels; check width_m and "
                           "height_m (metres, not pixels)")
    srcs = [first] + [_read_source(p) for p in paths[1:]]
    for s in srcs[1:]:
        if abs(s.res - res) > 1e-6 * res:
            raise GeoTiffError(f"source {s.path} has {s.res:g} CRS units per pixel, the first source {first.path} "
                               f"{res:g}; blocks are copied pixel for pixel: resample it first (gdalwarp -tr {res:g} "
                               f"{res:g})")
    min_side = min(min(s.rgb.shape[:2]) for s in srcs)
    if block_m is None:
        b = min(DEFAULT_BLOCK_PX, min_side)
    else:
        b = _pixels(block_m, "block_m", res)
    if b < MIN_BLOCK_PX or b > min_side:
        raise GeoTiffError(f"blocks of {b} px ({b * res:g} m) do not fit: they must be {MIN_BLOCK_PX}..{min_side} px "
                           f"({MIN_BLOCK_PX * res:g}..{min_side * res:g} m, the smallest source side); pass another "
                           "block_m")
    starts = [None if s.mask is None else _valid_starts(s.mask, b) for s in srcs]
    for s, ok in zip(srcs, starts):
        if ok is not None and ok.size == 0:
            raise GeoTiffError(f"source {s.path} has no {b} x {b} px area without nodata; pass a smaller block_m or "
                               "leave this source out")
    layout = _Layout(srcs, starts, b, math.ceil(height / b), math.ceil(width / b), int(seed))
    tw = WRITE_BLOCK_PX
    profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=first.crs,
                   transform=Affine(res, 0.0, first.x0, 0.0, -res, first.y0), tiled=True, blockxsize=tw,
                   blockysize=tw, compress="deflate", predictor=2, photometric="RGB", interleave="pixel",
                   BIGTIFF="IF_SAFER")
    tag = json.dumps({"sources": [Path(p).name for p in paths], "seed": int(seed), "block_px": b})
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.update_tags(**{TAG: tag})
            for r in range(0, height, tw):
                for c in range(0, width, tw):
                    h, w = min(tw, height - r), min(tw, width - c)
                    dst.write(layout.render(r, c, h, w), window=Window(c, r, w, h))
        os.replace(tmp, out)
    except (RasterioError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise GeoTiffError(f"cannot write {out}: {exc}; check the folder is writable and has space") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# ============================================================================================== CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.tools.synthetic_region", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SRC", help="source orthophoto GeoTIFF(s) (uint8 RGB, same pixel size)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.tif", help="output GeoTIFF")
    p.add_argument("--width-m", type=float, required=True, metavar="W", help="mosaic width (east), metres")
    p.add_argument("--height-m", type=float, required=True, metavar="H", help="mosaic height (north), metres")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--block-m", type=float, default=None, metavar="M",
                   help="side of the blocks cut from the sources, metres (default 256 px)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.tif if it exists")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists already; remove it, choose another output path or pass --overwrite",
              file=sys.stderr)
        return 2
    try:
        path = write_synthetic_mosaic(args.sources, out, width_m=args.width_m, height_m=args.height_m,
                                      seed=args.seed, block_m=args.block_m)
    except GeoTiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import rasterio

    with rasterio.open(path) as ds:
        w, h, res = ds.width, ds.height, ds.transform.a
    print(f"wrote {path}: {w} x {h} px, {w * res:g} x {h * res:g} m ({w * h * res * res / 1e6:.3g} km^2), "
          f"{path.stat().st_size / 1e6:.1f} MB")
    return 0


__all__ = ["TAG", "write_synthetic_mosaic", "main"]

if __name__ == "__main__":
    sys.exit(main())
