"""Web map tiles -> an :class:`~maps.ortho.Orthophoto` of a bounding box: XYZ/TMS tile folders and MBTiles files.

Web map tiles are 256 (or 512) px squares of the spherical Web Mercator projection (EPSG:3857). At zoom ``z`` the
world is ``2**z x 2**z`` tiles; column ``x`` counts from the west (longitude -180). Rows are numbered two ways,
and nothing in a folder says which, so the caller states it:

``xyz``
    row ``y = 0`` at the top (north, latitude +85.05): OpenStreetMap, Google/Bing-style servers, ``gdal2tiles.py
    --xyz``, most "slippy map" tile caches.
``tms``
    row 0 at the bottom (south): the OSGeo Tile Map Service spec, ``gdal2tiles.py``'s default. ``y_tms = 2**z - 1 -
    y_xyz``.

MBTiles (https://github.com/mapbox/mbtiles-spec) stores tiles in an SQLite file: ``tiles(zoom_level, tile_column,
tile_row, tile_data)`` with TMS rows by the spec, and a ``metadata(name, value)`` table (``format``: png/jpg/webp,
``bounds``: ``left,bottom,right,top`` degrees, ``minzoom``/``maxzoom``). It is opened read-only with the standard
library's ``sqlite3``, with an authorizer that allows only reading (no writes, no attached files, no extensions),
and ``trusted_schema`` off, so nothing stored in the file runs.

:func:`load_tile_folder` and :func:`load_mbtiles` read the tiles covering a WGS84 bounding box at one zoom, place
them on the Web Mercator grid and warp them (``rasterio.warp.reproject``) into a north-up raster of square metre
pixels in a :class:`~maps.geodesy.LocalFrame` centred on the box (true ground metres; Web Mercator's own "metres"
are ``1 / cos(latitude)`` too large). Missing or undecodable tiles are counted, reported and left invalid in the
mask; a box with no tile at all is refused with :class:`WebTilesError`.

rasterio, pyproj and OpenCV are imported inside the functions.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import WebTilesError
from .geodesy import LocalFrame
from .ortho import Orthophoto

SCHEMES = ("xyz", "tms")
TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
RASTER_FORMATS = ("png", "jpg", "jpeg", "webp")
WEB_MERCATOR_HALF = 20037508.342789244
"""Half the side of the Web Mercator square, metres of EPSG:3857."""
MAX_LAT = 85.0511287798066
"""Latitude of the top edge of the Web Mercator world (and minus it, the bottom)."""
MAX_ZOOM = 30
MAX_TILES = 2500
"""The most tiles one request reads (50 x 50 tiles of 256 px = 12800 px square); pass a lower --zoom or a smaller
--bbox beyond that."""
MAX_OUTPUT_PIXELS = 500_000_000

Log = Optional[Callable[[str], None]]


# ----------------------------------------------------------------------------------------------- tile arithmetic
def check_bbox(bbox) -> tuple[float, float, float, float]:
    """``(lon_min, lat_min, lon_max, lat_max)`` WGS84 degrees, validated (order, range, inside Web Mercator)."""
    try:
        vals = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise WebTilesError(f"--bbox must be 4 numbers LON_MIN,LAT_MIN,LON_MAX,LAT_MAX (degrees), got {bbox!r}")
    lon0, lat0, lon1, lat1 = vals
    if not (-180.0 <= lon0 < lon1 <= 180.0):
        raise WebTilesError(
            f"--bbox longitudes must satisfy -180 <= LON_MIN < LON_MAX <= 180, got {lon0}, {lon1}; the order is "
            "LON_MIN,LAT_MIN,LON_MAX,LAT_MAX"
        )
    if not (-MAX_LAT <= lat0 < lat1 <= MAX_LAT):
        raise WebTilesError(
            f"--bbox latitudes must satisfy -{MAX_LAT:.4f} <= LAT_MIN < LAT_MAX <= {MAX_LAT:.4f} (the Web Mercator "
            f"world), got {lat0}, {lat1}; the order is LON_MIN,LAT_MIN,LON_MAX,LAT_MAX"
        )
    return vals


def lonlat_to_tile(lon: float, lat: float, zoom: int) -> tuple[float, float]:
    """Fractional XYZ tile coordinates (x east, y down from the north edge) of a point at ``zoom``."""
    n = 2.0 ** zoom
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    x = (lon + 180.0) / 360.0 * n
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return x, y


def tile_range(bbox, zoom: int) -> tuple[int, int, int, int]:
    """XYZ tiles covering ``bbox`` at ``zoom``: ``(x_first, x_last, y_first, y_last)`` inclusive, y from the north."""
    lon0, lat0, lon1, lat1 = check_bbox(bbox)
    n = 2 ** zoom
    fx0, fy0 = lonlat_to_tile(lon0, lat1, zoom)  # north-west corner
    fx1, fy1 = lonlat_to_tile(lon1, lat0, zoom)  # south-east corner
    eps = 1e-9
    clamp = lambda v: max(0, min(n - 1, v))  # noqa: E731
    return clamp(int(math.floor(fx0))), clamp(int(math.ceil(fx1 - eps)) - 1), clamp(int(math.floor(fy0))), \
        clamp(int(math.ceil(fy1 - eps)) - 1)


def tms_row(y: int, zoom: int) -> int:
    """XYZ row <-> TMS row (the same flip both ways)."""
    return (2 ** zoom) - 1 - y


def _check_zoom(zoom) -> int:
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or not 0 <= zoom <= MAX_ZOOM:
        raise WebTilesError(f"--zoom must be an integer 0..{MAX_ZOOM}, got {zoom!r}")
    return int(zoom)


def _check_scheme(scheme) -> str:
    if scheme not in SCHEMES:
        raise WebTilesError(
            f"--scheme must be xyz (row 0 at the top/north) or tms (row 0 at the bottom/south), got {scheme!r}"
        )
    return scheme


# ----------------------------------------------------------------------------------------------- public API
def load_tile_folder(
    folder,
    bbox,
    *,
    scheme: str,
    zoom: int | None = None,
    gsd: float | None = None,
    frame: LocalFrame | None = None,
    log: Log = None,
) -> Orthophoto:
    """The orthophoto of ``bbox`` from a folder of tiles ``folder/Z/X/Y.png`` (or ``.jpg``, ``.jpeg``, ``.webp``).

    Args:
        folder: the tile folder (its sub-folders are zoom levels).
        bbox: ``(lon_min, lat_min, lon_max, lat_max)`` WGS84 degrees.
        scheme: ``"xyz"`` (row 0 at the top) or ``"tms"`` (row 0 at the bottom); required, see the module notes.
        zoom: zoom level to read; default the highest one in the folder.
        gsd: output metres per pixel; default the tiles' ground resolution at the box's centre.
        frame: local frame of the output; default centred on the box.
        log: optional ``log(message)`` for counts of missing/bad tiles.
    Raises:
        WebTilesError: no such folder, no zoom folders, a zoom not present, no tile inside the box (with a hint
            when the other scheme would find them), tiles of mixed sizes, a request too large.
    """
    scheme = _check_scheme(scheme)
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise WebTilesError(f"--tiles {root}: not a folder; expected a folder of web map tiles laid out as Z/X/Y.png")
    zooms = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not zooms:
        raise WebTilesError(
            f"--tiles {root}: no zoom folders (expected DIR/Z/X/Y.png, e.g. {root}/18/137263/91625.png); point "
            "--tiles at the folder that holds the zoom-level folders"
        )
    if zoom is None:
        zoom = zooms[-1]
    zoom = _check_zoom(zoom)
    if zoom not in zooms:
        raise WebTilesError(f"--tiles {root}: no zoom level {zoom}; the folder holds zoom {_ranges(zooms)}")
    zdir = root / str(zoom)

    def find(x: int, row: int) -> Path | None:
        for suffix in TILE_SUFFIXES:
            f = zdir / str(x) / f"{row}{suffix}"
            if f.is_file():
                return f
        return None

    def fetch(x: int, y_xyz: int) -> bytes | None:
        f = find(x, y_xyz if scheme == "xyz" else tms_row(y_xyz, zoom))
        if f is None:
            return None
        try:
            return f.read_bytes()
        except OSError:
            return b""  # counted as a tile that does not decode

    def other_scheme_has(x: int, y_xyz: int) -> bool:
        return find(x, tms_row(y_xyz, zoom) if scheme == "xyz" else y_xyz) is not None

    def extent():
        cols, rows = [], []
        for n, f in enumerate(zdir.glob("*/*")):
            if n > 200_000:
                break
            if f.parent.name.isdigit() and f.stem.isdigit() and f.suffix.lower() in TILE_SUFFIXES:
                cols.append(int(f.parent.name))
                rows.append(int(f.stem) if scheme == "xyz" else tms_row(int(f.stem), zoom))
        return _extent_lonlat(min(cols), max(cols), min(rows), max(rows), zoom) if cols else None

    return _build(fetch, other_scheme_has, bbox, zoom, scheme, gsd, frame, f"--tiles {root}", str(root), extent,
                  log)


def load_mbtiles(
    path,
    bbox,
    *,
    zoom: int | None = None,
    scheme: str = "tms",
    gsd: float | None = None,
    frame: LocalFrame | None = None,
    log: Log = None,
) -> Orthophoto:
    """The orthophoto of ``bbox`` from an MBTiles file (raster tiles, TMS rows as the spec says).

    Args:
        path: the ``.mbtiles`` file.
        bbox: ``(lon_min, lat_min, lon_max, lat_max)`` WGS84 degrees.
        zoom: zoom level to read; default the metadata's ``maxzoom`` (else the highest stored).
        scheme: ``"tms"`` (the spec); ``"xyz"`` only for files written against the spec.
        gsd, frame, log: as in :func:`load_tile_folder`.
    Raises:
        WebTilesError: not an SQLite/MBTiles file, vector tiles (pbf), a zoom outside minzoom..maxzoom or with no
            tiles, a bbox outside the metadata bounds or without any tile.
    """
    scheme = _check_scheme(scheme)
    p = Path(path).expanduser()
    name = f"MBTiles {p}"
    if not p.is_file():
        raise WebTilesError(f"{name}: not found; check the path (expected an .mbtiles SQLite file)")
    conn = _open_mbtiles(p)
    try:
        meta = _mbtiles_metadata(conn, name)
        fmt = str(meta.get("format", "")).strip().lower()
        if fmt and fmt not in RASTER_FORMATS:
            raise WebTilesError(
                f"{name}: its tiles are {fmt!r} (metadata format); expected raster imagery ({', '.join(RASTER_FORMATS)})"
                + ("; pbf/mvt files are vector tiles, which hold no imagery" if fmt in ("pbf", "mvt") else "")
            )
        stored = [int(r[0]) for r in _query(conn, name, "SELECT DISTINCT zoom_level FROM tiles")]
        if not stored:
            raise WebTilesError(f"{name}: the tiles table is empty")
        minzoom, maxzoom = _meta_int(meta, "minzoom", name), _meta_int(meta, "maxzoom", name)
        if zoom is None:
            zoom = maxzoom if maxzoom is not None and maxzoom in stored else max(stored)
        zoom = _check_zoom(zoom)
        lo = minzoom if minzoom is not None else min(stored)
        hi = maxzoom if maxzoom is not None else max(stored)
        if not lo <= zoom <= hi or zoom not in stored:
            raise WebTilesError(
                f"{name}: no tiles at zoom {zoom}; it holds zoom {_ranges(sorted(stored))} (metadata minzoom {minzoom}, "
                f"maxzoom {maxzoom}); pass --zoom within them"
            )
        bounds = _meta_bounds(meta, name)
        box = check_bbox(bbox)
        if bounds is not None:
            west, south, east, north = bounds
            if box[2] <= west or box[0] >= east or box[3] <= south or box[1] >= north:
                raise WebTilesError(
                    f"{name}: --bbox {_fmt_box(box)} lies outside the tiles, whose metadata bounds are "
                    f"{_fmt_box(bounds)}; pass a --bbox inside them"
                )
            if not (west <= box[0] and box[2] <= east and south <= box[1] and box[3] <= north) and log:
                log(f"--bbox {_fmt_box(box)} reaches beyond the tiles' bounds {_fmt_box(bounds)}; "
                    "the part outside is left empty")
        x0, x1, y0, y1 = tile_range(box, zoom)
        rows_needed = sorted({y if scheme == "xyz" else tms_row(y, zoom) for y in range(y0, y1 + 1)})
        tiles: dict[tuple[int, int], bytes] = {}
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= MAX_TILES:
            for col, row, data in _query(
                conn, name,
                "SELECT tile_column, tile_row, tile_data FROM tiles WHERE zoom_level = ? AND tile_column BETWEEN ? "
                "AND ? AND tile_row BETWEEN ? AND ?",
                (zoom, x0, x1, rows_needed[0], rows_needed[-1]),
            ):
                tiles[(int(col), int(row))] = bytes(data) if data is not None else b""
        flipped_rows = sorted({tms_row(r, zoom) for r in rows_needed})
        flipped = {
            (int(c), int(r)) for c, r in _query(
                conn, name,
                "SELECT tile_column, tile_row FROM tiles WHERE zoom_level = ? AND tile_column BETWEEN ? AND ? AND "
                "tile_row BETWEEN ? AND ? LIMIT 100000", (zoom, x0, x1, flipped_rows[0], flipped_rows[-1]))
        }
        stored_rows = _query(
            conn, name,
            "SELECT MIN(tile_column), MAX(tile_column), MIN(tile_row), MAX(tile_row) FROM tiles WHERE zoom_level = ?",
            (zoom,),
        )[0]
    finally:
        conn.close()

    def fetch(x: int, y_xyz: int) -> bytes | None:
        return tiles.get((x, y_xyz if scheme == "xyz" else tms_row(y_xyz, zoom)))

    def other_scheme_has(x: int, y_xyz: int) -> bool:
        return (x, tms_row(y_xyz, zoom) if scheme == "xyz" else y_xyz) in flipped

    def extent():
        if stored_rows[0] is None:
            return None
        c0, c1, r0, r1 = (int(v) for v in stored_rows)
        if scheme == "tms":
            r0, r1 = tms_row(r1, zoom), tms_row(r0, zoom)
        return _extent_lonlat(c0, c1, r0, r1, zoom)

    return _build(fetch, other_scheme_has, bbox, zoom, scheme, gsd, frame, name, str(p), extent, log)


# ----------------------------------------------------------------------------------------------- MBTiles (sqlite3)
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}


def _authorizer(action, arg1, arg2, db_name, trigger):
    """Reading only: SELECT, reading columns and plain functions; no writes, ATTACH, PRAGMA or schema changes."""
    if action in _ALLOWED_ACTIONS and (action != sqlite3.SQLITE_FUNCTION or arg2 not in ("load_extension",)):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _open_mbtiles(p: Path) -> sqlite3.Connection:
    name = f"MBTiles {p}"
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WebTilesError(f"{name}: cannot read it ({exc.strerror or exc})") from exc
    if head != b"SQLite format 3\x00":
        raise WebTilesError(
            f"{name}: not an SQLite database (it starts with {head[:16]!r}); an MBTiles file is SQLite 3 - is this "
            "the right file, or was the download cut short?"
        )
    try:
        conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA trusted_schema = OFF")  # functions in the file's views/triggers: only harmless ones
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorizer)
    except sqlite3.Error as exc:
        raise WebTilesError(f"{name}: cannot open it read-only ({exc})") from exc
    return conn


def _query(conn: sqlite3.Connection, name: str, sql: str, params=()) -> list:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise WebTilesError(
            f"{name}: cannot read it as MBTiles ({exc}); expected the tables tiles(zoom_level, tile_column, tile_row, "
            "tile_data) and metadata(name, value) of the MBTiles spec"
        ) from exc


def _mbtiles_metadata(conn: sqlite3.Connection, name: str) -> dict[str, str]:
    tables = {r[0] for r in _query(conn, name, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    if "tiles" not in tables:
        raise WebTilesError(
            f"{name}: no 'tiles' table (it has {sorted(tables) or 'no tables'}); expected an MBTiles file with "
            "tiles(zoom_level, tile_column, tile_row, tile_data)"
        )
    if "metadata" not in tables:
        return {}
    return {str(k): str(v) for k, v in _query(conn, name, "SELECT name, value FROM metadata") if k is not None}


def _meta_int(meta: dict[str, str], key: str, name: str) -> int | None:
    if key not in meta or meta[key].strip() == "":
        return None
    try:
        return int(float(meta[key]))
    except ValueError:
        raise WebTilesError(f"{name}: metadata {key} must be an integer zoom level, got {meta[key]!r}") from None


def _meta_bounds(meta: dict[str, str], name: str) -> tuple[float, float, float, float] | None:
    if "bounds" not in meta or not meta["bounds"].strip():
        return None
    try:
        vals = tuple(float(v) for v in meta["bounds"].split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or not (vals[0] < vals[2] and vals[1] < vals[3]):
        raise WebTilesError(
            f"{name}: metadata bounds must be 'left,bottom,right,top' in degrees, got {meta['bounds']!r}"
        )
    return vals


# ----------------------------------------------------------------------------------------------- assembly
def _extent_lonlat(c0: int, c1: int, r0: int, r1: int, zoom: int) -> tuple[float, float, float, float]:
    """WGS84 box of XYZ tiles c0..c1, r0..r1 (inclusive)."""
    n = 2.0 ** zoom

    def lat(y: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / n))))

    return (c0 / n * 360.0 - 180.0, lat(r1 + 1), (c1 + 1) / n * 360.0 - 180.0, lat(r0))


def _fmt_box(b) -> str:
    return ",".join(f"{v:.6f}" for v in b)


def _ranges(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:20]) + (" ..." if len(values) > 20 else "")


def _decode(data: bytes):
    """Tile bytes -> (RGB uint8[h, w, 3], alpha uint8[h, w]) or None when it does not decode."""
    import cv2

    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim not in (2, 3):
        return None
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        return None
    if img.ndim == 2:
        rgb, alpha = np.repeat(img[..., None], 3, axis=2), None
    elif img.shape[2] == 4:
        rgb, alpha = img[..., 2::-1], img[..., 3]
    elif img.shape[2] == 3:
        rgb, alpha = img[..., ::-1], None
    elif img.shape[2] == 2:  # grey + alpha
        rgb, alpha = np.repeat(img[..., :1], 3, axis=2), img[..., 1]
    else:
        return None
    if alpha is None:
        alpha = np.full(img.shape[:2], 255, np.uint8)
    return np.ascontiguousarray(rgb), alpha


def _build(fetch, other_scheme_has, bbox, zoom, scheme, gsd, frame, name, source, extent, log) -> Orthophoto:
    from affine import Affine
    from rasterio.crs import CRS as RioCRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds

    from .geotiff import _to_rio_crs

    box = check_bbox(bbox)
    x0, x1, y0, y1 = tile_range(box, zoom)
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    if nx * ny > MAX_TILES:
        raise WebTilesError(
            f"{name}: --bbox {_fmt_box(box)} at zoom {zoom} covers {nx} x {ny} = {nx * ny} tiles, more than "
            f"{MAX_TILES}; pass a smaller --bbox or a lower --zoom"
        )
    decoded: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    missing, bad, wrong_size = [], [], []
    size = None
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            data = fetch(x, y)
            if data is None:
                missing.append((x, y))
                continue
            tile = _decode(data)
            if tile is None:
                bad.append((x, y))
                continue
            h, w = tile[0].shape[:2]
            if h != w or h < 16:
                wrong_size.append((x, y, w, h))
                continue
            if size is None:
                size = h
            elif h != size:
                wrong_size.append((x, y, w, h))
                continue
            decoded[(x, y)] = tile
    row_name = "y" if scheme == "xyz" else "tms row"
    if not decoded:
        hint = ""
        other = "tms" if scheme == "xyz" else "xyz"
        if any(other_scheme_has(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)):
            hint = (f" The tiles are there when the rows are read as {other}: the tiles are {other}, pass --scheme "
                    f"{other}.")
        what = (f"{len(bad)} tile(s) that do not decode as images" if bad else
                f"{len(wrong_size)} tile(s) of an unusable size" if wrong_size else "no tile")
        ext = extent()
        stored = f"; the stored tiles at zoom {zoom} cover {_fmt_box(ext)}" if ext else ""
        swapped = (box[1], box[0], box[3], box[2])
        if ext and swapped[0] < ext[2] and swapped[2] > ext[0] and swapped[1] < ext[3] and swapped[3] > ext[1]:
            stored += " (latitude and longitude swapped? the order is LON_MIN,LAT_MIN,LON_MAX,LAT_MAX)"
        raise WebTilesError(
            f"{name}: --bbox {_fmt_box(box)} lies outside the tiles: zoom {zoom}, --scheme {scheme}, columns "
            f"{x0}..{x1}, {row_name}s {y0 if scheme == 'xyz' else tms_row(y1, zoom)}.."
            f"{y1 if scheme == 'xyz' else tms_row(y0, zoom)} hold {what}{stored}.{hint}"
            + ("" if hint else " Pass a --bbox inside the tiles, or another --zoom")
        )
    report = []
    if missing:
        report.append(f"{len(missing)} missing")
    if bad:
        report.append(f"{len(bad)} not decodable (first: x={bad[0][0]}, {row_name}="
                      f"{bad[0][1] if scheme == 'xyz' else tms_row(bad[0][1], zoom)})")
    if wrong_size:
        report.append(f"{len(wrong_size)} of another size than {size} px")
    if log is not None:
        log(f"{name}: zoom {zoom}, {len(decoded)} of {nx * ny} tiles read"
            + (f"; skipped {', '.join(report)} (left empty)" if report else ""))

    # the tiles on the Web Mercator grid (RGB + alpha), then warped into the local frame
    s = size
    merc = np.zeros((4, ny * s, nx * s), dtype=np.uint8)
    for (x, y), (rgb, alpha) in decoded.items():
        r, c = (y - y0) * s, (x - x0) * s
        merc[:3, r:r + s, c:c + s] = np.moveaxis(rgb, -1, 0)
        merc[3, r:r + s, c:c + s] = alpha
    tile_m = 2.0 * WEB_MERCATOR_HALF / (2 ** zoom)
    px_m = tile_m / s
    src_transform = Affine(px_m, 0.0, -WEB_MERCATOR_HALF + x0 * tile_m, 0.0, -px_m, WEB_MERCATOR_HALF - y0 * tile_m)
    src_crs = RioCRS.from_epsg(3857)

    lat_c = (box[1] + box[3]) / 2.0
    if frame is None:
        frame = LocalFrame(lat_c, (box[0] + box[2]) / 2.0)
    elif not isinstance(frame, LocalFrame):
        raise WebTilesError(f"frame must be a maps.geodesy.LocalFrame, got {type(frame).__name__}")
    ground_px = px_m * math.cos(math.radians(lat_c))
    if gsd is None:
        gsd = float(f"{ground_px:.4g}")
    try:
        gsd = float(gsd)
    except (TypeError, ValueError):
        raise WebTilesError(f"--gsd must be a number of metres per pixel, got {gsd!r}") from None
    if not (math.isfinite(gsd) and gsd > 0):
        raise WebTilesError(f"--gsd must be > 0 metres per pixel, got {gsd}")
    dst_crs = _to_rio_crs(frame.proj4, "local frame")
    X0, Y0, X1, Y1 = transform_bounds(RioCRS.from_epsg(4326), dst_crs, *box, densify_pts=21)
    eps = 1e-6
    x_min = math.floor(X0 / gsd + eps) * gsd
    y_max = math.ceil(Y1 / gsd - eps) * gsd
    width = int(math.ceil((X1 - x_min) / gsd - eps))
    height = int(math.ceil((y_max - Y0) / gsd - eps))
    if width * height > MAX_OUTPUT_PIXELS:
        raise WebTilesError(
            f"{name}: the orthophoto would be {width} x {height} px at {gsd:g} m/px; pass a coarser --gsd or a "
            "smaller --bbox"
        )
    dst = np.zeros((4, height, width), dtype=np.uint8)
    method = Resampling.average if gsd >= 1.25 * ground_px else Resampling.bilinear
    reproject(
        source=merc, destination=dst, src_transform=src_transform, src_crs=src_crs,
        dst_transform=Affine(gsd, 0.0, x_min, 0.0, -gsd, y_max), dst_crs=dst_crs, resampling=method,
        src_alpha=4, dst_alpha=4, num_threads=1,
    )
    del merc
    mask = dst[3] >= 128
    # outside the bbox itself (its edges are curves in the local frame): invalid, so the map is the box asked for
    u = x_min + (np.arange(width) + 0.5) * gsd
    v = y_max - (np.arange(height) + 0.5) * gsd
    lat, lon = frame.to_wgs84(*np.meshgrid(u, v))
    mask &= (lon >= box[0]) & (lon <= box[2]) & (lat >= box[1]) & (lat <= box[3])
    if not mask.any():
        raise WebTilesError(f"{name}: the tiles read for --bbox {_fmt_box(box)} hold no opaque pixel")
    image = np.ascontiguousarray(np.moveaxis(dst[:3], 0, -1))
    image[~mask] = 0
    return Orthophoto(image=image, mask=mask, gsd=gsd, x_min=float(x_min), y_max=float(y_max), frame=frame,
                      sources=(f"{source}#z{zoom}:{scheme}:{_fmt_box(box)}",))


__all__ = [
    "SCHEMES",
    "WebTilesError",
    "check_bbox",
    "load_mbtiles",
    "load_tile_folder",
    "lonlat_to_tile",
    "tile_range",
    "tms_row",
]
