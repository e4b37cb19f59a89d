"""GeoTIFF orthophotos in any projected (or geographic) CRS -> one :class:`~maps.ortho.Orthophoto` in a LocalFrame.

:func:`load_orthophoto` reads one or many georeferenced rasters (GeoTIFF, or anything GDAL reads), checks their
georeference against pyproj (bounds on Earth, plausible pixel size, inside the CRS's area of use), and warps and
mosaics them with ``rasterio.warp.reproject`` into a north-up raster of square ``gsd`` metre pixels in a
:class:`~maps.geodesy.LocalFrame` (transverse Mercator centred on the map, so local metres are true ground metres;
a World Mercator (EPSG:3395) source with 0.1 "metre" pixels comes out at ~0.097 m at latitude 14 deg).

Band layouts: RGB (by colour interpretation, else the first three bands), RGBA / alpha, palette, single-band grey
(replicated to RGB). Non-uint8 data (uint16 panchromatic, float) is stretched to uint8 with one robust percentile
stretch over the whole mosaic. Nodata, alpha and internal masks make ``mask`` False, as does everything outside
every source. :func:`write_geotiff` writes an Orthophoto back (RGB + alpha, in its frame's CRS) so that
``load_orthophoto(write_geotiff(path, ortho))`` returns the same pixels in the same frame.

rasterio and pyproj are imported inside the functions (they are slow to import).
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .errors import GeoTiffError
from .geodesy import LocalFrame
from .ortho import Orthophoto

PathLike = Union[str, "os.PathLike[str]"]

RESAMPLING_METHODS = ("auto", "nearest", "bilinear", "cubic", "lanczos", "average", "area")
"""Accepted ``resampling`` names; "auto" = "average" (area) where the output is >= 1.25x coarser than a source,
else "bilinear"; "area" is an alias of "average"."""

AUTO_AREA_RATIO = 1.25
STRETCH_PERCENTILES = (0.5, 99.5)
"""Percentiles (of the valid pixels of the whole mosaic, all channels together) mapped to 0 and 255 for non-uint8
data."""

MAX_OUTPUT_PIXELS = 500_000_000
"""Refuse mosaics larger than this many pixels (1.5 GB as RGB); pass a coarser ``gsd`` or split the area."""

PIXEL_SIZE_RANGE_M = (1e-3, 1e4)
"""Plausible ground pixel sizes of an orthophoto, metres; outside it the CRS or transform is almost surely wrong."""

AREA_OF_USE_MARGIN_DEG = 10.0
"""How far (degrees) a raster may lie outside its CRS's area of use before it is rejected as mis-tagged."""

TAG_LAT0 = "SKYFIX_FRAME_LAT0"
TAG_LON0 = "SKYFIX_FRAME_LON0"
GEOTIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class _Source:
    """What :func:`_inspect` learned about one raster (the file is reopened to read its pixels)."""

    path: str
    crs: object  # rasterio.crs.CRS
    transform: object  # affine.Affine
    width: int
    height: int
    kind: str  # "grey" or "rgb"
    bands: tuple[int, ...]  # 1-based band indexes holding the data (grey: 1, rgb: 3)
    palette: bool
    dtype: str
    ground_res: tuple[float, float]  # metres per pixel along columns, rows (true ground distance)
    lonlat_bounds: tuple[float, float, float, float]  # west, south, east, north degrees
    frame_tag: tuple[float, float] | None  # (lat0, lon0) written by write_geotiff


# ----------------------------------------------------------------------------------------------- helpers


#: Input strings that are not local paths: GDAL virtual file systems and URLs that rasterio/GDAL open as they are
#: (``https://host/cog.tif`` is read through ``/vsicurl/``, ``s3://`` through ``/vsis3/``). ``Path()`` would mangle
#: ``https://`` into ``https:/``, so they are passed on as given.
URL_PREFIXES = ("/vsi", "http://", "https://", "ftp://", "s3://", "gs://", "az://", "file://", "zip+", "tar+")


def is_remote(item) -> bool:
    """True for a URL or a GDAL virtual path (``/vsicurl/...``): read by GDAL as given, never as a local path."""
    return isinstance(item, str) and item.strip().lower().startswith(URL_PREFIXES)


def _expand_paths(paths) -> list[Path | str]:
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    else:
        try:
            items = list(paths)
        except TypeError:
            raise GeoTiffError(
                f"paths must be a path, a folder or a list of paths to GeoTIFFs, got {type(paths).__name__}"
            ) from None
    out: list[Path | str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise GeoTiffError(f"expected a file path (str or Path), got {type(item).__name__}: {item!r}")
        if is_remote(item):
            out.append(item.strip())
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in GEOTIFF_SUFFIXES and q.is_file())
            if not found:
                raise GeoTiffError(f"folder {p} holds no GeoTIFF ({'/'.join(GEOTIFF_SUFFIXES)} files)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise GeoTiffError(f"orthophoto {p} not found; check the path (expected a GeoTIFF file or a folder of them)")
    if not out:
        raise GeoTiffError("no orthophoto given: pass one GeoTIFF path, a folder of GeoTIFFs or a list of paths")
    return out


def _to_rio_crs(crs, what: str):
    from rasterio.crs import CRS as RioCRS
    from pyproj import CRS

    try:
        return RioCRS.from_wkt(CRS.from_user_input(crs).to_wkt())
    except Exception as exc:  # pyproj.exceptions.CRSError, rasterio CRSError, TypeError
        raise GeoTiffError(
            f"{what}: cannot understand CRS {crs!r} ({exc}); pass e.g. 'EPSG:2056', 32616, a WKT or a PROJ string"
        ) from exc


def _to_affine(transform):
    from affine import Affine

    if isinstance(transform, Affine):
        t = transform
    else:
        try:
            vals = [float(v) for v in transform]
        except (TypeError, ValueError):
            vals = []
        if len(vals) not in (6, 9):
            raise GeoTiffError(
                "transform must be an affine.Affine or 6 numbers (a, b, c, d, e, f) in rasterio order "
                f"(x = a*col + b*row + c, y = d*col + e*row + f; north-up: (gsd, 0, x_left, 0, -gsd, y_top)), "
                f"got {transform!r}"
            )
        t = Affine(*vals[:6])
    if not all(math.isfinite(v) for v in t[:6]) or abs(t.determinant) < 1e-30:
        raise GeoTiffError(f"transform {tuple(t[:6])} is not invertible/finite; expected (gsd, 0, x_left, 0, -gsd, y_top)")
    return t


def _pyproj_crs(rio_crs):
    """pyproj CRS of a rasterio CRS; the EPSG definition where it is one (so its area of use is known)."""
    from pyproj import CRS

    crs = CRS.from_wkt(rio_crs.to_wkt())
    if crs.area_of_use is None:
        try:
            epsg = crs.to_epsg(min_confidence=90)
        except Exception:  # pyproj.exceptions.CRSError on odd definitions
            epsg = None
        if epsg is not None:
            crs = CRS.from_epsg(epsg)
    return crs


def _corners(transform, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Source-CRS coordinates of the 4 corners and the edge midpoints (pixel-edge convention)."""
    cols = np.array([0, width / 2, width, width, width, width / 2, 0, 0], dtype=float)
    rows = np.array([0, 0, 0, height / 2, height, height, height, height / 2], dtype=float)
    a, b, c, d, e, f = transform[:6]
    return a * cols + b * rows + c, d * cols + e * rows + f


def _check_georeference(path: str, crs, transform, width: int, height: int):
    """Bounds on Earth, plausible ground pixel size, inside the CRS's area of use. Returns (lonlat bounds, res)."""
    from pyproj import Geod, Transformer

    pcrs = _pyproj_crs(crs)
    fix = "if the CRS tag is wrong, give the right one with --crs EPSG:xxxx"
    xs, ys = _corners(transform, width, height)
    if pcrs.is_geographic:
        if np.any(np.abs(ys) > 90.0 + 1e-6) or np.any(xs < -180.0 - 1e-6) or np.any(xs > 360.0 + 1e-6):
            raise GeoTiffError(
                f"{path}: its CRS ({pcrs.name}) is geographic (degrees) but its bounds x {xs.min():.6g}..{xs.max():.6g}, "
                f"y {ys.min():.6g}..{ys.max():.6g} are not latitude/longitude (they look like projected metres); {fix}"
            )
    tr = Transformer.from_crs(pcrs, "EPSG:4326", always_xy=True)
    left, bottom, right, top = xs.min(), ys.min(), xs.max(), ys.max()
    try:
        west, south, east, north = tr.transform_bounds(left, bottom, right, top, densify_pts=21)
    except Exception as exc:  # pyproj.exceptions.ProjError
        west = south = east = north = float("nan")
        detail = f" ({exc})"
    else:
        detail = ""
    vals = np.array([west, south, east, north])
    if not np.all(np.isfinite(vals)) or abs(south) > 90 or abs(north) > 90 or abs(west) > 180 or abs(east) > 180:
        raise GeoTiffError(
            f"{path}: its bounds x {left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g} in {pcrs.name} are not on Earth"
            f"{detail}; {fix}, or fix its transform"
        )
    # true ground size of the centre pixel (geodesic distances to its right and lower neighbours)
    a, b, c, d, e, f = transform[:6]
    cu, cv = width / 2.0, height / 2.0
    cols = np.array([cu, cu + 1.0, cu])
    rows = np.array([cv, cv, cv + 1.0])
    lon, lat = tr.transform(a * cols + b * rows + c, d * cols + e * rows + f)
    geod = Geod(ellps="WGS84")
    _, _, rx = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, ry = geod.inv(lon[0], lat[0], lon[2], lat[2])
    lo, hi = PIXEL_SIZE_RANGE_M
    if not (lo <= rx <= hi and lo <= ry <= hi):
        raise GeoTiffError(
            f"{path}: a pixel would be {rx:.3g} x {ry:.3g} m on the ground, expected {lo:g}..{hi:g} m; the CRS "
            f"({pcrs.name}) and the coordinates do not match (degrees tagged as metres or the reverse?); {fix}"
        )
    aou = pcrs.area_of_use
    if aou is not None:
        m = AREA_OF_USE_MARGIN_DEG
        clat, clon = (south + north) / 2.0, (west + east) / 2.0
        inside_lat = aou.south - m <= clat <= aou.north + m
        if aou.west <= aou.east:
            inside_lon = aou.west - m <= clon <= aou.east + m
        else:  # area crossing the antimeridian
            inside_lon = clon >= aou.west - m or clon <= aou.east + m
        if not (inside_lat and inside_lon):
            raise GeoTiffError(
                f"{path}: its centre (lat {clat:.4f}, lon {clon:.4f}) lies far outside the area of use of its CRS "
                f"{pcrs.name} ({aou.name}: lat {aou.south}..{aou.north}, lon {aou.west}..{aou.east}); {fix}"
            )
    return (float(west), float(south), float(east), float(north)), (float(rx), float(ry))


def _band_layout(path: str, ds) -> tuple[str, tuple[int, ...], bool]:
    from rasterio.enums import ColorInterp

    ci = list(ds.colorinterp)
    if ds.count == 1 and ci[0] == ColorInterp.palette:
        if ds.dtypes[0] != "uint8":
            raise GeoTiffError(f"{path}: palette raster of {ds.dtypes[0]} is not supported; expected uint8 indexes")
        return "rgb", (1,), True
    if all(x in ci for x in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return "rgb", (ci.index(ColorInterp.red) + 1, ci.index(ColorInterp.green) + 1, ci.index(ColorInterp.blue) + 1), False
    data = [i + 1 for i, x in enumerate(ci) if x != ColorInterp.alpha]
    if len(data) == 1:
        return "grey", (data[0],), False
    if len(data) >= 3:
        return "rgb", tuple(data[:3]), False
    raise GeoTiffError(
        f"{path}: {ds.count} bands ({', '.join(x.name for x in ci)}) with {len(data)} data bands; expected 1 (grey), "
        "3 (RGB) or 4 (RGBA) bands; convert it, e.g. `gdal_translate -b 1 -b 2 -b 3 in.tif out.tif`"
    )


def _gdal_message(exc: BaseException) -> str:
    """GDAL's own words: rasterio's message plus the chained GDAL errors it refers to ("See previous exception")."""
    parts: list[str] = []
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 6:
        text = " ".join(str(e).split())
        if text and "See previous exception" not in text and text not in parts:
            parts.append(text)
        elif text and not parts:
            parts.append(text.replace(" See previous exception for details.", ""))
        e = e.__cause__ or e.__context__
        seen += 1
    return "; ".join(parts) or type(exc).__name__


def _open(path: str):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except (RasterioError, OSError) as exc:
        if is_remote(path):
            raise GeoTiffError(
                f"cannot open the remote raster {path} (GDAL: {_gdal_message(exc)}); expected a GeoTIFF/COG that GDAL "
                "can reach: check the URL and the network (a browser or `gdalinfo /vsicurl/URL` shows the same), "
                "or download it and pass the local file"
            ) from exc
        raise GeoTiffError(
            f"cannot read {path} as a raster (GDAL: {_gdal_message(exc)}); expected a GeoTIFF (or another raster "
            "GDAL reads). If it is one, it is damaged or cut short (an interrupted download or copy?): copy it "
            "again, and check it with `gdalinfo -checksum FILE`"
        ) from exc


def _read_pixels(path: str, ds, read):
    """``read(ds)`` with GDAL's read errors (a file cut short, a broken block, a remote read that failed) turned
    into a :class:`GeoTiffError` that names the file and what to do."""
    from rasterio.errors import RasterioError

    try:
        return read(ds)
    except (RasterioError, OSError) as exc:
        if is_remote(path):
            fix = "check the URL and the network and try again, or download the file and pass the local copy"
        else:
            fix = ("the file is damaged or cut short (an interrupted download or copy?): copy or download it again "
                   "and check it with `gdalinfo -checksum FILE`")
        raise GeoTiffError(
            f"{path}: its header reads but its pixels do not (GDAL: {_gdal_message(exc)}); {fix}"
        ) from exc


def _inspect(path: Path, crs_override, transform_override) -> _Source:
    spath = str(path)
    with _open(spath) as ds:
        crs = crs_override if crs_override is not None else ds.crs
        transform = transform_override if transform_override is not None else ds.transform
        has_gcps = bool(ds.gcps[0])
        no_transform = transform_override is None and ds.transform.is_identity
        if crs is None or not crs:
            raise GeoTiffError(
                f"{spath} has no CRS (coordinate reference system), so it cannot be placed on Earth. Give the CRS it "
                "is in with --crs EPSG:xxxx"
                + (", and its georeference with --transform GSD,0,X_LEFT,0,-GSD,Y_TOP or a world file (.tfw) next to "
                   "it" if no_transform else "")
                + "; or fix the file: `gdal_edit.py -a_srs EPSG:xxxx file.tif`"
            )
        if no_transform:
            what = "only ground control points (GCPs)" if has_gcps else "no georeference (no geotransform)"
            raise GeoTiffError(
                f"{spath} has {what}. Give --transform GSD,0,X_LEFT,0,-GSD,Y_TOP in the units of its CRS, put a "
                "world file (.tfw) next to it, or georeference it first "
                "(`gdal_translate -a_ullr x_left y_top x_right y_bottom` or `gdalwarp -t_srs EPSG:xxxx` for GCPs)"
            )
        kind, bands, palette = _band_layout(spath, ds)
        dtype = "uint8" if palette else ds.dtypes[bands[0] - 1]
        if not palette and len({ds.dtypes[b - 1] for b in bands}) != 1:
            raise GeoTiffError(f"{spath}: bands of different data types {ds.dtypes}; expected one type for all bands")
        width, height = ds.width, ds.height
        tags = ds.tags()
    lonlat, res = _check_georeference(spath, crs, transform, width, height)
    frame_tag = None
    if TAG_LAT0 in tags and TAG_LON0 in tags:
        try:
            frame_tag = (float(tags[TAG_LAT0]), float(tags[TAG_LON0]))
        except ValueError:
            frame_tag = None
    return _Source(spath, crs, transform, width, height, kind, bands, palette, dtype, res, lonlat, frame_tag)


def _in_frame(src: _Source, frame: LocalFrame) -> bool:
    """True if ``src`` is already in ``frame`` (written by write_geotiff in that frame): no reprojection needed."""
    if src.frame_tag is None or src.frame_tag != (frame.lat0, frame.lon0):
        return False
    try:
        to_local = frame.from_crs(_pyproj_crs(src.crs))
        xs, ys = _corners(src.transform, src.width, src.height)
        lx, ly = to_local(xs, ys)
    except Exception:
        return False
    return bool(np.max(np.abs(np.asarray(lx) - xs)) < 1e-4 and np.max(np.abs(np.asarray(ly) - ys)) < 1e-4)


def _round_sig(x: float, digits: int = 4) -> float:
    if x <= 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(x))))


def _resampling(name: str):
    from rasterio.enums import Resampling

    table = {
        "nearest": Resampling.nearest,
        "bilinear": Resampling.bilinear,
        "cubic": Resampling.cubic,
        "lanczos": Resampling.lanczos,
        "average": Resampling.average,
        "area": Resampling.average,
    }
    return table[name]


def _default_frame(sources: Sequence[_Source]) -> LocalFrame:
    tags = {s.frame_tag for s in sources}
    if len(tags) == 1 and None not in tags:
        frame = LocalFrame(*next(iter(tags)))
        if all(_in_frame(s, frame) for s in sources):
            return frame
    south = min(s.lonlat_bounds[1] for s in sources)
    north = max(s.lonlat_bounds[3] for s in sources)
    # longitudes: unwrap around the first source so that a map across the antimeridian stays contiguous
    ref = (sources[0].lonlat_bounds[0] + sources[0].lonlat_bounds[2]) / 2.0
    wests, easts = [], []
    for s in sources:
        w, _, e, _ = s.lonlat_bounds
        if e < w:  # crosses the antimeridian
            e += 360.0
        shift = 360.0 * round(((w + e) / 2.0 - ref) / 360.0)
        wests.append(w - shift)
        easts.append(e - shift)
    lon0 = (min(wests) + max(easts)) / 2.0
    lon0 = (lon0 + 180.0) % 360.0 - 180.0
    return LocalFrame((south + north) / 2.0, lon0)


def _window_transform(transform, col0: int, row0: int):
    """The geotransform of a window whose top-left is pixel (col0, row0) of a raster with ``transform``."""
    from affine import Affine

    a, b, c, d, e, f = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    return Affine(a, b, c + a * col0 + b * row0, d, e, f + d * col0 + e * row0)


def _stretch_to_uint8(image: np.ndarray, mask: np.ndarray, stretch=None) -> np.ndarray:
    """float32[h, w, c] -> uint8 with one robust percentile stretch over the valid pixels of all channels (or the
    given ``stretch`` (lo, hi))."""
    if stretch is not None:
        lo, hi = (float(v) for v in stretch)
    else:
        valid = image[mask]
        if valid.size > 2_000_000:
            valid = valid.reshape(-1)[:: max(1, valid.size // 2_000_000)]
        lo, hi = np.percentile(valid, STRETCH_PERCENTILES) if valid.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    out = (image - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class MosaicGrid:
    """Where :func:`load_orthophoto` would put its sources, worked out without reading a pixel (:func:`plan_mosaic`).

    Attributes:
        frame: the local frame of the output.
        gsd: output metres per pixel.
        x_min, y_max: the top-left pixel edge of the whole mosaic, local metres.
        width, height: size of the whole mosaic, pixels (it may be far too large to hold: read windows of it).
        sources: the source paths, in mosaic order (first wins where they overlap).
        uint8: True when the sources hold uint8 data (else a stretch maps them to uint8, see ``stretch``).
        stretch: (lo, hi) values mapped to 0 and 255 for non-uint8 sources (one stretch for every window, from
            decimated reads of every source), None for uint8 sources.
        source_gsd: the finest source resolution in ground metres.
    """

    frame: LocalFrame
    gsd: float
    x_min: float
    y_max: float
    width: int
    height: int
    sources: tuple[str, ...]
    uint8: bool
    stretch: tuple[float, float] | None
    source_gsd: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the whole mosaic, local metres."""
        return (self.x_min, self.y_max - self.height * self.gsd, self.x_min + self.width * self.gsd, self.y_max)


@dataclass(frozen=True)
class _Plan:
    sources: tuple  # _Source
    in_frame: tuple  # bool
    src_res: tuple  # float
    local_bounds: tuple  # (x0, y0, x1, y1) per source in the frame
    kind: str
    is_uint8: bool
    frame: LocalFrame
    gsd: float
    dst_crs: object
    x_min: float
    y_max: float
    width: int
    height: int
    resampling: str


def _plan(paths, gsd, frame, crs, transform, resampling) -> _Plan:
    from rasterio.warp import transform_bounds

    files = _expand_paths(paths)
    if resampling not in RESAMPLING_METHODS:
        raise GeoTiffError(f"resampling must be one of {RESAMPLING_METHODS}, got {resampling!r}")
    crs_override = _to_rio_crs(crs, "crs argument") if crs is not None else None
    transform_override = _to_affine(transform) if transform is not None else None
    if transform_override is not None and len(files) != 1:
        raise GeoTiffError(
            f"a transform describes one raster but {len(files)} files were given; georeference them one by one "
            "(world files or gdal_translate) or pass a single file"
        )
    if gsd is not None:
        try:
            gsd = float(gsd)
        except (TypeError, ValueError):
            raise GeoTiffError(f"gsd must be a number of metres per pixel, got {gsd!r}") from None
        if not (math.isfinite(gsd) and gsd > 0):
            raise GeoTiffError(f"gsd must be > 0 metres per pixel (--gsd), got {gsd}")
    if frame is not None and not isinstance(frame, LocalFrame):
        raise GeoTiffError(f"frame must be a maps.geodesy.LocalFrame, got {type(frame).__name__}")

    sources = [_inspect(p, crs_override, transform_override) for p in files]
    layouts = {(s.kind, s.dtype == "uint8") for s in sources}
    if len(layouts) != 1:
        detail = ", ".join(f"{Path(s.path).name}: {s.kind} {s.dtype}" for s in sources[:8])
        raise GeoTiffError(
            f"cannot mosaic sources with different band layouts/data types ({detail}); expected all grey or all RGB "
            "of one data type; convert them first (e.g. gdal_translate -ot Byte -scale)"
        )
    kind = sources[0].kind
    is_uint8 = sources[0].dtype == "uint8"

    if frame is None:
        frame = _default_frame(sources)
    in_frame = [_in_frame(s, frame) for s in sources]
    src_res = []
    for s, inf in zip(sources, in_frame):
        if inf and abs(s.transform.b) < 1e-12 and abs(s.transform.d) < 1e-12 and abs(abs(s.transform.e) - s.transform.a) < 1e-12 * s.transform.a:
            src_res.append(float(s.transform.a))
        else:
            src_res.append(_round_sig(min(s.ground_res)))
    if gsd is None:
        gsd = min(src_res)

    dst_crs = _to_rio_crs(frame.proj4, "local frame")
    local_bounds = []
    for s in sources:
        xs, ys = _corners(s.transform, s.width, s.height)
        try:
            b = transform_bounds(s.crs, dst_crs, xs.min(), ys.min(), xs.max(), ys.max(), densify_pts=21)
        except Exception as exc:  # rasterio CRSError / GDAL transformation failures
            raise GeoTiffError(f"{s.path}: cannot transform its bounds into the local frame ({exc})") from exc
        if not all(math.isfinite(v) for v in b):
            raise GeoTiffError(f"{s.path}: its bounds do not map into the local frame {frame}; is the frame far away?")
        local_bounds.append(b)

    # output grid: multiples of gsd (or the pixel grid of a first source already in this frame at this gsd)
    px = py = 0.0
    t0 = sources[0].transform
    if in_frame[0] and abs(t0.a - gsd) < 1e-9 * gsd and abs(t0.e + gsd) < 1e-9 * gsd and t0.b == 0 and t0.d == 0:
        px, py = math.fmod(t0.c, gsd), math.fmod(t0.f, gsd)
    eps = 1e-6
    X0 = min(b[0] for b in local_bounds)
    Y0 = min(b[1] for b in local_bounds)
    X1 = max(b[2] for b in local_bounds)
    Y1 = max(b[3] for b in local_bounds)
    x_min = px + math.floor((X0 - px) / gsd + eps) * gsd
    y_max = py + math.ceil((Y1 - py) / gsd - eps) * gsd
    width = int(math.ceil((X1 - x_min) / gsd - eps))
    height = int(math.ceil((y_max - Y0) / gsd - eps))
    return _Plan(tuple(sources), tuple(in_frame), tuple(src_res), tuple(local_bounds), kind, is_uint8, frame,
                 float(gsd), dst_crs, float(x_min), float(y_max), width, height, resampling)


def plan_mosaic(paths, *, gsd: float | None = None, frame: LocalFrame | None = None, crs=None,
                sample_px: int = 1024) -> MosaicGrid:
    """The grid :func:`load_orthophoto` would give ``paths`` (same arguments), without reading their pixels.

    For sources of any size (a region's GeoTIFFs, COGs, VRTs): only headers are read, plus, for non-uint8 data, one
    decimated read of each source (at most ``sample_px`` pixels a side, GDAL overviews where the file has them)
    for the stretch every window then shares (so windows of one mosaic join without seams).
    """
    plan = _plan(paths, gsd, frame, crs, None, "auto")
    stretch = None
    if not plan.is_uint8:
        values = []
        for s in plan.sources:
            f = max(1, int(math.ceil(max(s.width, s.height) / max(int(sample_px), 1))))
            shape = (len(s.bands), max(1, s.height // f), max(1, s.width // f))
            with _open(s.path) as ds:
                data = _read_pixels(s.path, ds, lambda d: d.read(list(s.bands), out_shape=shape)).astype(np.float32)
                alpha = _read_pixels(s.path, ds, lambda d: d.dataset_mask(out_shape=shape[1:]))
            ok = (alpha > 0) & np.all(np.isfinite(data), axis=0)
            values.append(np.moveaxis(data, 0, -1)[ok].ravel())
        v = np.concatenate(values) if values else np.zeros(0, np.float32)
        lo, hi = (np.percentile(v, STRETCH_PERCENTILES) if v.size else (0.0, 1.0))
        stretch = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return MosaicGrid(plan.frame, plan.gsd, plan.x_min, plan.y_max, plan.width, plan.height,
                      tuple(s.path for s in plan.sources), plan.is_uint8, stretch, float(min(plan.src_res)))


def load_orthophoto(
    paths,
    *,
    gsd: float | None = None,
    frame: LocalFrame | None = None,
    crs=None,
    transform=None,
    resampling: str = "auto",
    window: tuple[int, int, int, int] | None = None,
    stretch: tuple[float, float] | None = None,
    allow_empty: bool = False,
) -> Orthophoto:
    """Read, reproject and mosaic GeoTIFF(s) into one north-up :class:`Orthophoto` in a local metric frame.

    Args:
        paths: a GeoTIFF path, a folder (all ``*.tif``/``*.tiff`` in it, sorted) or a list of paths. Where sources
            overlap the first one (in this order) wins.
        gsd: output metres (true ground) per pixel; default the finest source resolution in ground metres
            (rounded to 4 significant digits; exactly the source pixel size for a file already in ``frame``).
        frame: the local frame of the output; default centred on the union of the sources (or, for files written
            by :func:`write_geotiff` all in one frame, that frame).
        crs: CRS to use for the source(s) instead of / in the absence of the file's (anything pyproj accepts:
            "EPSG:2056", 32616, WKT, PROJ). Needed for a file without a CRS.
        transform: affine geotransform in the units of the CRS (``affine.Affine`` or 6 numbers in rasterio order
            ``(a, b, c, d, e, f)``, north-up: ``(px, 0, x_left, 0, -px, y_top)``) for a single file without one
            (or to replace it). A world file (``.tfw``) next to the file is read by GDAL as well.
        resampling: one of :data:`RESAMPLING_METHODS`.
        window: (col0, row0, width, height) pixels of the whole mosaic's grid (:func:`plan_mosaic`) to return
            instead of all of it; it may reach beyond the mosaic (those pixels are invalid). Only the part of each
            source under the window is read (windowed reads: sources of any size); its pixels are those of the
            whole mosaic there (to one grey level where GDAL's approximate transformer rounds differently).
        stretch: (lo, hi) for non-uint8 sources (default: percentiles of what is read); pass
            :attr:`MosaicGrid.stretch` so that every window of a mosaic shares it.
        allow_empty: return an all-invalid raster instead of raising when no pixel is valid (a window over a gap).

    Returns:
        Orthophoto with ``image`` uint8[h, w, 3] RGB, ``mask`` bool[h, w] (False at nodata/alpha/outside every
        source), ``gsd`` m/px and ``x_min``/``y_max`` metres in ``frame``.

    Raises:
        GeoTiffError: missing/unreadable file, no CRS or georeference, implausible bounds, unsupported or mixed
            band layouts, no valid pixel, a mosaic too large for memory, bad arguments.
    """
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window, from_bounds
    from affine import Affine

    plan = _plan(paths, gsd, frame, crs, transform, resampling)
    gsd, frame = plan.gsd, plan.frame
    if window is None:
        x_min, y_max, width, height = plan.x_min, plan.y_max, plan.width, plan.height
    else:
        try:
            c0w, r0w, width, height = (int(v) for v in window)
        except (TypeError, ValueError):
            raise GeoTiffError(f"window must be 4 integers (col0, row0, width, height) in pixels, got {window!r}") from None
        if width <= 0 or height <= 0:
            raise GeoTiffError(f"window width and height must be > 0 pixels, got {window!r}")
        x_min, y_max = plan.x_min + c0w * gsd, plan.y_max - r0w * gsd
    X1, Y0 = x_min + width * gsd, y_max - height * gsd
    if width * height > MAX_OUTPUT_PIXELS:
        raise GeoTiffError(
            f"the mosaic would be {width} x {height} px ({width * gsd:.0f} x {height * gsd:.0f} m at {gsd:g} m/px), "
            f"more than {MAX_OUTPUT_PIXELS} px; pass a coarser --gsd or fewer/smaller files, or build a region map "
            "(`skyfix maps build-region`: shards read windows of the sources)"
        )

    nch = 1 if plan.kind == "grey" else 3
    is_uint8 = plan.is_uint8
    work_dtype = np.uint8 if is_uint8 else np.float32
    mosaic = np.zeros((nch, height, width), dtype=work_dtype)
    mask = np.zeros((height, width), dtype=bool)
    for s, b, res in zip(plan.sources, plan.local_bounds, plan.src_res):
        c0 = max(0, int(math.floor((b[0] - x_min) / gsd)) - 1)
        c1 = min(width, int(math.ceil((b[2] - x_min) / gsd)) + 1)
        r0 = max(0, int(math.floor((y_max - b[3]) / gsd)) - 1)
        r1 = min(height, int(math.ceil((y_max - b[1]) / gsd)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        method = plan.resampling
        if method == "auto":
            method = "average" if gsd >= AUTO_AREA_RATIO * res else "bilinear"
        with _open(s.path) as ds:
            src_win, src_transform = None, s.transform
            if window is not None:
                # only the part of the source under this window (with a margin for the resampling kernel)
                dx0, dy1 = x_min + c0 * gsd, y_max - r0 * gsd
                dx1, dy0 = x_min + c1 * gsd, y_max - r1 * gsd
                try:
                    sb = transform_bounds(plan.dst_crs, s.crs, dx0, dy0, dx1, dy1, densify_pts=21)
                except Exception as exc:  # rasterio CRSError / GDAL transformation failures
                    raise GeoTiffError(f"{s.path}: cannot transform a window into its CRS ({exc})") from exc
                w = from_bounds(*sb, transform=s.transform)
                pad = 4
                col0 = max(0, int(math.floor(w.col_off)) - pad)
                row0 = max(0, int(math.floor(w.row_off)) - pad)
                col1 = min(s.width, int(math.ceil(w.col_off + w.width)) + pad)
                row1 = min(s.height, int(math.ceil(w.row_off + w.height)) + pad)
                if col1 <= col0 or row1 <= row0:
                    continue
                src_win = Window(col0, row0, col1 - col0, row1 - row0)
                src_transform = _window_transform(s.transform, col0, row0)
            alpha = _read_pixels(s.path, ds, lambda d: d.dataset_mask(window=src_win))
            if s.palette:
                cmap = ds.colormap(1)
                lut = np.zeros((256, 3), dtype=np.uint8)
                for idx, rgba in cmap.items():
                    if 0 <= idx < 256:
                        lut[idx] = rgba[:3]
                data = np.moveaxis(lut[_read_pixels(s.path, ds, lambda d: d.read(1, window=src_win))], -1, 0)
            else:
                data = _read_pixels(s.path, ds, lambda d: d.read(list(s.bands), window=src_win))
        if is_uint8:
            src = np.concatenate([data.astype(np.uint8, copy=False), alpha[None]], axis=0)
        else:
            data = data.astype(np.float32, copy=False)
            finite = np.all(np.isfinite(data), axis=0)
            if not finite.all():
                alpha = np.where(finite, alpha, 0).astype(alpha.dtype)
                data = np.where(finite[None], data, 0.0).astype(np.float32)
            src = np.concatenate([data, alpha[None].astype(np.float32)], axis=0)
        dst = np.zeros((src.shape[0], r1 - r0, c1 - c0), dtype=src.dtype)
        dst_transform = Affine(gsd, 0.0, x_min + c0 * gsd, 0.0, -gsd, y_max - r0 * gsd)
        reproject(
            source=src,
            destination=dst,
            src_transform=src_transform,
            src_crs=s.crs,
            dst_transform=dst_transform,
            dst_crs=plan.dst_crs,
            resampling=_resampling(method),
            src_alpha=src.shape[0],
            dst_alpha=dst.shape[0],
            num_threads=1,
        )
        del src, data, alpha
        valid = dst[-1] >= 127.5
        take = valid & ~mask[r0:r1, c0:c1]
        win = mosaic[:, r0:r1, c0:c1]
        win[:, take] = dst[:-1][:, take]
        mask[r0:r1, c0:c1] |= valid

    if not mask.any() and not allow_empty:
        where = "" if window is None else f" inside the window x [{x_min:.1f}, {X1:.1f}] m, y [{Y0:.1f}, {y_max:.1f}] m"
        raise GeoTiffError(
            f"no valid pixel in {', '.join(s.path for s in plan.sources[:4])}{' ...' if len(plan.sources) > 4 else ''}"
            f"{where}: every pixel is nodata/transparent (or outside the output); check the nodata value and alpha band"
        )
    image = np.moveaxis(mosaic, 0, -1)
    if not is_uint8:
        image = _stretch_to_uint8(image, mask, stretch)
    if plan.kind == "grey":
        image = np.repeat(image, 3, axis=2)
    image = np.ascontiguousarray(image)
    image[~mask] = 0
    return Orthophoto(
        image=image,
        mask=mask,
        gsd=float(gsd),
        x_min=float(x_min),
        y_max=float(y_max),
        frame=frame,
        sources=tuple(s.path for s in plan.sources),
    )


def write_geotiff(path: PathLike, ortho: Orthophoto) -> Path:
    """Write ``ortho`` as an RGB + alpha (mask) GeoTIFF in its local frame's CRS; returns the path.

    The frame's origin is stored in the tags ``SKYFIX_FRAME_LAT0/LON0`` so that :func:`load_orthophoto` reads the
    file back in the same frame, at the same gsd and on the same pixel grid (pixel-exact round trip). The file is
    written to a temporary name and renamed (atomic). DEFLATE-compressed, tiled when larger than 512 px.
    """
    import rasterio
    from affine import Affine

    if not isinstance(ortho, Orthophoto):
        raise GeoTiffError(f"write_geotiff needs a maps.ortho.Orthophoto, got {type(ortho).__name__}")
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise GeoTiffError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    crs = _to_rio_crs(ortho.frame.proj4, "local frame")
    h, w = ortho.height, ortho.width
    profile = dict(
        driver="GTiff",
        width=w,
        height=h,
        count=4,
        dtype="uint8",
        crs=crs,
        transform=Affine(ortho.gsd, 0.0, ortho.x_min, 0.0, -ortho.gsd, ortho.y_max),
        photometric="RGB",
        alpha="YES",
        compress="deflate",
        predictor=2,
    )
    if w > 512 or h > 512:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    # a unique name next to the target (same file system: the rename is atomic); rasterio creates it (umask modes)
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp.tif"))
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(np.moveaxis(ortho.image, -1, 0), indexes=[1, 2, 3])
            ds.write(np.where(ortho.mask, 255, 0).astype(np.uint8), 4)
            ds.update_tags(
                **{TAG_LAT0: repr(ortho.frame.lat0), TAG_LON0: repr(ortho.frame.lon0)},
                SKYFIX_SOURCES=";".join(ortho.sources)[:4000],
            )
        os.replace(tmp, path)
    except Exception as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, GeoTiffError):
            raise
        raise GeoTiffError(f"cannot write GeoTIFF {path}: {exc}") from exc
    return path
