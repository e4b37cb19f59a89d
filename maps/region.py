"""Region maps: a country-scale map as a directory of ordinary map packages (shards) on one metric grid.

Layout (format version 1)::

    REGION/
      region.json          what the region is (below), with every shard's manifest SHA-256 and size
      region.sha256        SHA-256 of region.json (``sha256sum -c`` format)
      shards/r007_c003/    an ordinary map package (``maps.package``): verifies, loads and searches like any map

Every shard shares the region's :class:`~maps.geodesy.LocalFrame` (one transverse Mercator projection centred on
the region: true ground metres, scale error below 3e-5 within 50 km of its centre), its encoder contract and one
tile grid (the tile centres of the whole region, planned once): a shard holds the tiles whose centre lies in its
square *core* widened by ``overlap_m`` (one tile footprint) on every side, so that a view anywhere in a core is whole
in that one shard, and its imagery reaches ``imagery_margin_m`` beyond the core (fine alignment near the border
stays inside it). Tiles in an overlap are stored in both shards with the same embedding; search merges them.

``region.json`` keys: ``format`` ("skyfix-region"), ``format_version``, ``created_utc``, ``frame``, ``crs``,
``shard_grid`` (:class:`ShardGrid`), ``tile_grid``, ``encoder``, ``bounds_local`` / ``bounds_wgs84`` (of all tile
footprints), ``ground_elevation_m``, ``n_tiles`` (sum over shards, overlaps counted in each), ``shards`` (list of
{``id``, ``row``, ``col``, ``n_tiles``, ``bounds_local`` (tile footprints of the shard), ``manifest_sha256``,
``bytes`` (all files of the shard)}; shards without imagery are not listed), ``empty_shards`` (ids planned but
holding no tile), ``build`` (parameters and provenance: sources, Ray cluster, per-shard time).

Onboard, :class:`RegionMap` keeps the shards around the belief in an LRU of bounded memory, loads the next ones in a
background thread and searches across shard borders; it offers what the loop uses of a
:class:`~maps.package.MapPackage` (``search``, ``tile_positions``, ``contract``, ``frame``, ``bounds``...).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .config import strict_from_dict
from .contract import EncoderContract
from .errors import MapError, MapFormatError, MapIntegrityError
from .geodesy import LocalFrame
from .package import MapFacts
from .search import check_k, check_prior, check_queries, topk_rows
from .tiling import TileGrid

REGION_FORMAT = "skyfix-region"
REGION_VERSION = 1
REGION_MANIFEST = "region.json"
REGION_SUM = "region.sha256"
SHARDS_DIR = "shards"
#: ids of a region's tiles: shard index * ID_STRIDE + the tile's id in its shard
ID_STRIDE = 1 << 32

REGION_HINT = "rebuild the region with `skyfix maps build-region` (finished shards are kept) or copy it again"


def is_region(path) -> bool:
    """True when ``path`` is a region map directory (holds ``region.json``)."""
    return (Path(path) / REGION_MANIFEST).is_file()


@dataclass(frozen=True)
class ShardGrid:
    """The square shards of a region, in its local frame.

    Attributes:
        x0, y1: west and north edges of shard (row 0, col 0), local metres (rows run north to south).
        shard_size_m: side of a shard's core, metres.
        overlap_m: tiles whose centre lies within this of a core also belong to that shard (one tile footprint).
        imagery_margin_m: a shard's imagery reaches this far beyond its core, metres.
        nx, ny: columns and rows of shards.
    """

    x0: float
    y1: float
    shard_size_m: float
    overlap_m: float
    imagery_margin_m: float
    nx: int
    ny: int

    def __post_init__(self) -> None:
        for name in ("x0", "y1", "shard_size_m", "overlap_m", "imagery_margin_m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise MapError(f"shard grid {name} must be a finite number of metres, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.shard_size_m <= 0 or self.overlap_m < 0 or self.imagery_margin_m < self.overlap_m:
            raise MapError(f"shard grid needs shard_size_m > 0 and 0 <= overlap_m <= imagery_margin_m, got "
                           f"{self.shard_size_m}, {self.overlap_m}, {self.imagery_margin_m}")
        for name in ("nx", "ny"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MapError(f"shard grid {name} must be an integer >= 1, got {v!r}")

    @staticmethod
    def shard_id(row: int, col: int) -> str:
        return f"r{int(row):03d}_c{int(col):03d}"

    def core(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of a shard's core, local metres."""
        s = self.shard_size_m
        x0 = self.x0 + col * s
        y1 = self.y1 - row * s
        return (x0, y1 - s, x0 + s, y1)

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the core holding (x, y) (may be outside the grid)."""
        return (int(math.floor((self.y1 - y) / self.shard_size_m)), int(math.floor((x - self.x0) / self.shard_size_m)))

    def touching(self, circle, margin_m: float | None = None) -> list[tuple[int, int]]:
        """(row, col) of the shards whose core widened by ``margin_m`` (default ``overlap_m``) meets the circle
        (x, y, radius_m), nearest core first."""
        x, y, r = circle
        m = self.overlap_m if margin_m is None else float(margin_m)
        s = self.shard_size_m
        c0 = max(int(math.floor((x - r - m - self.x0) / s)), 0)
        c1 = min(int(math.floor((x + r + m - self.x0) / s)), self.nx - 1)
        r0 = max(int(math.floor((self.y1 - (y + r + m)) / s)), 0)
        r1 = min(int(math.floor((self.y1 - (y - r - m)) / s)), self.ny - 1)
        out = []
        for row in range(r0, r1 + 1):
            for col in range(c0, c1 + 1):
                a0, b0, a1, b1 = self.core(row, col)
                dx = max(a0 - m - x, 0.0, x - (a1 + m))
                dy = max(b0 - m - y, 0.0, y - (b1 + m))
                d = math.hypot(dx, dy)
                if d <= r:
                    cx, cy = min(max(x, a0), a1), min(max(y, b0), b1)
                    out.append((math.hypot(cx - x, cy - y), row, col))
        return [(row, col) for _, row, col in sorted(out)]

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ShardGrid":
        return strict_from_dict(cls, d, "shard grid")


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a region (see the module docstring)."""

    id: str
    row: int
    col: int
    n_tiles: int
    bounds_local: tuple[float, float, float, float]
    manifest_sha256: str
    bytes: int


def _num(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MapFormatError(f"region.json {what} must be a finite number, got {v!r}; {REGION_HINT}")
    return float(v)


def _keys(d, required: set, what: str) -> None:
    if not isinstance(d, dict):
        raise MapFormatError(f"{what} must be a JSON object, got {type(d).__name__}; {REGION_HINT}")
    unknown, missing = sorted(set(d) - required), sorted(required - set(d))
    if unknown:
        raise MapFormatError(f"{what} has unknown keys {unknown} (expected {sorted(required)}); {REGION_HINT}")
    if missing:
        raise MapFormatError(f"{what} lacks keys {missing}; {REGION_HINT}")


@dataclass(frozen=True)
class RegionManifest:
    """Parsed ``region.json``."""

    format: str
    format_version: int
    created_utc: str
    frame: LocalFrame
    crs: str
    shard_grid: ShardGrid
    tile_grid: TileGrid
    encoder: EncoderContract
    bounds_local: tuple[float, float, float, float]
    bounds_wgs84: dict
    ground_elevation_m: float
    n_tiles: int
    shards: tuple[ShardEntry, ...]
    empty_shards: tuple[str, ...]
    build: dict

    def to_dict(self) -> dict:
        return {
            "format": self.format, "format_version": self.format_version, "created_utc": self.created_utc,
            "frame": self.frame.to_dict(), "crs": self.crs, "shard_grid": self.shard_grid.to_dict(),
            "tile_grid": self.tile_grid.to_dict(), "encoder": self.encoder.to_dict(),
            "bounds_local": dict(zip(("x_min", "y_min", "x_max", "y_max"), self.bounds_local)),
            "bounds_wgs84": dict(self.bounds_wgs84), "ground_elevation_m": self.ground_elevation_m,
            "n_tiles": self.n_tiles,
            "shards": [{"id": s.id, "row": s.row, "col": s.col, "n_tiles": s.n_tiles,
                        "bounds_local": dict(zip(("x_min", "y_min", "x_max", "y_max"), s.bounds_local)),
                        "manifest_sha256": s.manifest_sha256, "bytes": s.bytes} for s in self.shards],
            "empty_shards": list(self.empty_shards), "build": dict(self.build),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RegionManifest":
        _keys(d, {f.name for f in fields(cls)}, "region.json")
        if d["format"] != REGION_FORMAT:
            raise MapFormatError(f"region.json format is {d['format']!r}, expected {REGION_FORMAT!r}: not a SkyFix region")
        v = d["format_version"]
        if isinstance(v, bool) or not isinstance(v, int) or v != REGION_VERSION:
            newer = isinstance(v, int) and v > REGION_VERSION
            raise MapFormatError(
                f"region format version {v!r} is not supported (this SkyFix reads {REGION_VERSION}); "
                + ("upgrade SkyFix" if newer else REGION_HINT))
        try:
            frame = LocalFrame.from_dict(d["frame"])
            sg = ShardGrid.from_dict(d["shard_grid"])
            tg = TileGrid.from_dict(d["tile_grid"])
            enc = EncoderContract.from_dict(d["encoder"])
        except MapFormatError:
            raise
        except MapError as exc:
            raise MapFormatError(f"region.json is invalid: {exc}; {REGION_HINT}") from exc

        def box(b, what):
            _keys(b, {"x_min", "y_min", "x_max", "y_max"}, what)
            return tuple(_num(b[k], f"{what}.{k}") for k in ("x_min", "y_min", "x_max", "y_max"))

        shards, seen = [], set()
        if not isinstance(d["shards"], list):
            raise MapFormatError(f"region.json shards must be a list; {REGION_HINT}")
        for i, s in enumerate(d["shards"]):
            _keys(s, {f.name for f in fields(ShardEntry)}, f"region.json shards[{i}]")
            row, col = s["row"], s["col"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (row, col, s["n_tiles"], s["bytes"])) \
                    or not (0 <= row < sg.ny and 0 <= col < sg.nx) or s["n_tiles"] < 1 or s["bytes"] < 1:
                raise MapFormatError(f"region.json shards[{i}] has a bad row/col/n_tiles/bytes; {REGION_HINT}")
            if s["id"] != ShardGrid.shard_id(row, col) or s["id"] in seen:
                raise MapFormatError(f"region.json shards[{i}] id {s['id']!r} is not unique or does not match its "
                                     f"row/col ({ShardGrid.shard_id(row, col)}); {REGION_HINT}")
            if not isinstance(s["manifest_sha256"], str) or len(s["manifest_sha256"]) != 64:
                raise MapFormatError(f"region.json shards[{i}].manifest_sha256 is not a SHA-256; {REGION_HINT}")
            seen.add(s["id"])
            shards.append(ShardEntry(s["id"], row, col, s["n_tiles"], box(s["bounds_local"], f"shards[{i}].bounds_local"),
                                     s["manifest_sha256"], s["bytes"]))
        if not shards:
            raise MapFormatError(f"region.json lists no shard; {REGION_HINT}")
        total = sum(s.n_tiles for s in shards)
        if d["n_tiles"] != total:
            raise MapFormatError(f"region.json n_tiles {d['n_tiles']!r} is not the sum over its shards ({total}); {REGION_HINT}")
        _keys(d["bounds_wgs84"], {"lat_min", "lat_max", "lon_min", "lon_max"}, "region.json bounds_wgs84")
        if not isinstance(d["build"], dict) or not isinstance(d["empty_shards"], list):
            raise MapFormatError(f"region.json build must be an object and empty_shards a list; {REGION_HINT}")
        return cls(REGION_FORMAT, REGION_VERSION, str(d["created_utc"]), frame, str(d["crs"]), sg, tg, enc,
                   box(d["bounds_local"], "bounds_local"),
                   {k: _num(v, f"bounds_wgs84.{k}") for k, v in d["bounds_wgs84"].items()},
                   _num(d["ground_elevation_m"], "ground_elevation_m"), total, tuple(shards),
                   tuple(str(s) for s in d["empty_shards"]), dict(d["build"]))


def read_region_manifest(path) -> RegionManifest:
    """Read ``region.json`` of ``path``, check it against ``region.sha256`` and parse it (typed errors)."""
    path = Path(path)
    mpath, spath = path / REGION_MANIFEST, path / REGION_SUM
    if not mpath.is_file():
        raise MapFormatError(f"{path} has no {REGION_MANIFEST}: not a SkyFix region map; build one with "
                             f"`skyfix maps build-region SOURCES... -o {path}`")
    raw = mpath.read_bytes()
    if not spath.is_file():
        raise MapFormatError(f"{path} has no {REGION_SUM} (the region manifest's checksum); {REGION_HINT}")
    expected = spath.read_text(encoding="utf-8", errors="replace").split()
    actual = hashlib.sha256(raw).hexdigest()
    if not expected or expected[0] != actual:
        raise MapIntegrityError(f"{REGION_MANIFEST} of {path} is corrupted: SHA-256 {actual} but {REGION_SUM} says "
                                f"{expected[0] if expected else '(empty)'}; {REGION_HINT}")
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapFormatError(f"{mpath} is not valid JSON ({exc}); {REGION_HINT}") from exc
    return RegionManifest.from_dict(d)


def write_region_manifest(path, manifest: dict) -> Path:
    """Write ``region.json`` + ``region.sha256`` atomically (checked by parsing it back first)."""
    path = Path(path)
    RegionManifest.from_dict(json.loads(json.dumps(manifest)))  # never write a manifest we would not read back
    raw = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    for name, data in ((REGION_MANIFEST, raw),
                       (REGION_SUM, f"{hashlib.sha256(raw).hexdigest()}  {REGION_MANIFEST}\n".encode())):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path / name)
    return path


def shard_path(region, shard_id: str) -> Path:
    return Path(region) / SHARDS_DIR / shard_id


def check_shard(region, entry: ShardEntry, manifest: RegionManifest):
    """The shard's manifest against the region: its manifest SHA-256, frame, encoder and tile grid (typed errors)."""
    from .package import MANIFEST

    p = shard_path(region, entry.id)
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise MapFormatError(f"shard {entry.id} of region {region} is missing ({mpath}); {REGION_HINT}")
    digest = hashlib.sha256(mpath.read_bytes()).hexdigest()
    if digest != entry.manifest_sha256:
        raise MapIntegrityError(f"shard {entry.id} of region {region}: its {MANIFEST} has SHA-256 {digest}, the "
                                f"region says {entry.manifest_sha256}; {REGION_HINT}")
    return p


@dataclass(frozen=True)
class RegionVerifyReport:
    """:func:`verify_region`: per shard "ok" or what is wrong."""

    path: str
    shards: tuple[tuple[str, str], ...]  # (shard id, "ok" or the error message)
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(status == "ok" for _, status in self.shards)


def verify_region(path, *, raise_on_error: bool = True, progress=None) -> RegionVerifyReport:
    """Check a region: its manifest against ``region.sha256``, every shard's manifest against the region, and every
    file of every shard against its shard manifest (``maps.package.verify_map``)."""
    from .package import verify_map

    path = Path(path)
    manifest = read_region_manifest(path)
    out = []
    for i, e in enumerate(manifest.shards):
        try:
            check_shard(path, e, manifest)
            report = verify_map(shard_path(path, e.id), raise_on_error=True)
            size = sum(int(f.actual_size or 0) for f in report.files)
            status = "ok" if size + _manifest_bytes(shard_path(path, e.id)) == e.bytes else (
                f"shard files hold {size + _manifest_bytes(shard_path(path, e.id))} bytes, the region says {e.bytes}")
        except MapError as exc:
            status = str(exc)
        out.append((e.id, status))
        if progress is not None:
            progress(i + 1, len(manifest.shards))
    listed = {e.id for e in manifest.shards}
    sdir = path / SHARDS_DIR
    unexpected = tuple(sorted(p.name for p in sdir.iterdir() if p.name not in listed)) if sdir.is_dir() else ()
    report = RegionVerifyReport(str(path), tuple(out), unexpected)
    if raise_on_error and not report.ok:
        bad = [f"{sid}: {st}" for sid, st in report.shards if st != "ok"]
        exc = MapIntegrityError(f"region {path} failed verification ({len(bad)} of {len(out)} shards): "
                                + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        exc.report = report
        raise exc
    return report


def _manifest_bytes(p: Path) -> int:
    from .package import MANIFEST, MANIFEST_SUM

    return sum((p / n).stat().st_size for n in (MANIFEST, MANIFEST_SUM) if (p / n).is_file())


def shard_bytes(p: Path) -> int:
    """Bytes of every file of a shard package (its manifest included)."""
    return sum(f.stat().st_size for f in Path(p).iterdir() if f.is_file())


def region_summary(path) -> dict:
    """Human-facing facts of a region (``skyfix maps info REGION``)."""
    m = read_region_manifest(path)
    sizes = [s.bytes for s in m.shards]
    return {
        "path": str(path), "kind": "region", "format_version": m.format_version, "created_utc": m.created_utc,
        "tiles": m.n_tiles, "shards": len(m.shards), "empty_shards": len(m.empty_shards),
        "shard_grid": m.shard_grid.to_dict(), "tile_grid": m.tile_grid.to_dict(), "encoder": m.encoder.to_dict(),
        "frame": m.frame.to_dict(), "bounds_local": m.bounds_local, "bounds_wgs84": m.bounds_wgs84,
        "ground_elevation_m": m.ground_elevation_m, "total_bytes": int(sum(sizes)),
        "largest_shard_bytes": int(max(sizes)), "build": m.build,
    }


# ----------------------------------------------------------------------------------------------------------------
# onboard: shards around the belief


@dataclass(frozen=True)
class ShardImagery:
    """A shard's map imagery for fine alignment, grey only (one byte per pixel, and its mask)."""

    gray: np.ndarray  # uint8[h, w]
    mask: np.ndarray  # bool[h, w]
    gsd: float
    x_min: float
    y_max: float


class _Loaded:
    """One shard in memory: its MapPackage, its grey imagery (or None) and an estimate of its bytes."""

    def __init__(self, index: int, entry: ShardEntry, package, imagery: ShardImagery | None, seconds: float) -> None:
        self.index, self.entry, self.package, self.imagery, self.seconds = index, entry, package, imagery, seconds
        emb = package.manifest.files.get("embeddings.f16.npy")
        self.nbytes = int((emb.size if emb else 0) + package.positions.nbytes
                          + (0 if imagery is None else imagery.gray.nbytes + imagery.mask.nbytes))


class RegionMap(MapFacts):
    """A region map onboard: the shards around the belief in an LRU of bounded memory, loaded in the background.

    What the loop uses of a :class:`~maps.package.MapPackage` works here (``contract``, ``frame``, ``bounds``,
    ``tile_grid``, ``ground_elevation_m``, ``manifest.build``, ``search``, ``tile_positions``); ``imagery()`` is
    per shard (:meth:`shard_imagery`). The loop calls :meth:`focus` with its search scope (and velocity) every frame:

    * the shards meeting the scope circle are *needed*: those not in memory are loaded, and the call waits for them
      at most ``stall_ms`` (the bound of a frame's stall at a shard switch); a shard still loading after that is left
      out of this frame's search (counted in ``counts["late_shards"]``), never waited on longer;
    * the shards meeting the same circle moved ``lookahead_s`` ahead along the velocity are *prefetched* in the
      background thread (memory-mapped embeddings, shard SHA-256 check, grey imagery decoded: numpy, hashlib and
      OpenCV release the GIL there);
    * a shard that fails to load (a damaged file: its SHA-256 differs from its manifest, a missing shard) is not
      used and not retried: it is named in :attr:`failed` with the error, the search goes on with the others;
    * shards beyond ``cache_mb`` are evicted least-recently-needed first, never one the current scope or its
      look-ahead needs (a bound below what those hold is raised to it: evicting a shard about to be needed would
      only load it again).

    Args:
        path: the region directory.
        verify: "sha256" (each shard's files are checked against its manifest when loaded, in the background) or
            "sizes"; the region and shard manifests are always checked.
        expect_contract: the encoder of the queries (its id must be the region's).
        cache_mb: memory bound of the loaded shards (embeddings as mapped, positions, grey imagery), MiB.
        stall_ms: longest wait of :meth:`focus` for a needed shard, milliseconds.
        lookahead_s: prefetch horizon along the velocity, seconds.
        imagery: decode the shards' imagery for fine alignment.
        shard_cache_mb: float32 cell cache of each loaded shard's searcher, MiB.
        wide_radius_m: the widest search circle around the belief (when the loop is LOST), metres.
    """

    is_region = True

    def __init__(self, path, *, verify: str = "sha256", expect_contract: EncoderContract | None = None,
                 cache_mb: float = 1024.0, stall_ms: float = 50.0, lookahead_s: float = 20.0, imagery: bool = True,
                 shard_cache_mb: float = 32.0, wide_radius_m: float = 2000.0) -> None:
        if verify not in ("sha256", "sizes"):
            raise MapError(f"verify must be 'sha256' or 'sizes', got {verify!r}")
        for name, v in (("cache_mb", cache_mb), ("stall_ms", stall_ms), ("lookahead_s", lookahead_s),
                        ("shard_cache_mb", shard_cache_mb), ("wide_radius_m", wide_radius_m)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise MapError(f"{name} must be a number >= 0, got {v!r}")
        self.path = Path(path)
        self.manifest = read_region_manifest(self.path)
        if expect_contract is not None:
            expect_contract.check_same_encoder(self.manifest.encoder, what="region map")
        self.verify, self.cache_bytes = verify, int(cache_mb * (1 << 20))
        self.stall_s, self.lookahead_s = stall_ms / 1e3, float(lookahead_s)
        self.want_imagery, self.shard_cache_mb = bool(imagery), float(shard_cache_mb)
        #: the largest search circle the loop uses when its belief is LOST (the region is never searched whole)
        self.wide_radius_m = float(wide_radius_m)
        self._entries = {(e.row, e.col): (i, e) for i, e in enumerate(self.manifest.shards)}
        self._loaded: OrderedDict[int, _Loaded] = OrderedDict()  # LRU: last needed at the end
        self._pending: dict[int, threading.Event] = {}
        self._errors: dict[int, BaseException] = {}
        self._lock = threading.Lock()
        self._queue: list[int] = []
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="skyfix-shard-loader", daemon=True)
        self._thread.start()
        self._needed: tuple[int, ...] = ()
        #: counters: loads, evictions, late_shards (needed but not ready within stall_ms), waits
        self.counts = {"loads": 0, "evictions": 0, "late_shards": 0, "prefetched": 0, "failed_shards": 0}
        #: shards that could not be loaded (damaged, missing, another encoder): id -> the error; never retried, the
        #: search goes on without them
        self.failed: dict[str, str] = {}
        #: (t_monotonic_s, shard id, seconds) of every completed load
        self.load_log: list[tuple[float, str, float]] = []
        #: wall time each waiting focus() call (one per frame) spent waiting for needed shards, seconds
        self.stalls: list[float] = []
        #: (frame index, seconds) of the waiting focus() calls that found a shard of their scope not in memory
        self.waited: list[tuple[int, float]] = []
        #: the most bytes (:attr:`loaded_bytes`) ever held at once
        self.peak_loaded_bytes = 0
        self.notes: list[str] = []

    # -- what the loop reads of a map (contract, frame, tile_grid, n_tiles, bounds, ground_elevation_m: MapFacts)
    def imagery(self):
        """None: a region's imagery is per shard (:meth:`shard_imagery`, used by ``runtime.region_align``)."""
        return None

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return [ld.entry.id for ld in self._loaded.values()]

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(ld.nbytes for ld in self._loaded.values())

    # -- loading -----------------------------------------------------------------------------------------------
    def _load(self, index: int) -> _Loaded:
        from .package import MapPackage

        t0 = time.perf_counter()
        e = self.manifest.shards[index]
        p = check_shard(self.path, e, self.manifest)
        pkg = MapPackage.load(p, verify=self.verify, hnsw="lazy", cache_mb=self.shard_cache_mb)
        m = pkg.manifest
        if m.frame != self.frame or m.encoder.encoder_id != self.contract.encoder_id or m.tile_grid != self.tile_grid:
            raise MapFormatError(f"shard {e.id} of region {self.path} has another frame, encoder or tile grid than the "
                                 f"region (shard: {m.frame}, {m.encoder.encoder_id}, {m.tile_grid}; region: "
                                 f"{self.frame}, {self.contract.encoder_id}, {self.tile_grid}); {REGION_HINT}")
        if m.n_tiles != e.n_tiles:
            raise MapFormatError(f"shard {e.id} holds {m.n_tiles} tiles, the region says {e.n_tiles}; {REGION_HINT}")
        img = None
        if self.want_imagery and m.imagery is not None:
            import cv2

            info = m.imagery
            raw = np.fromfile(p / info.file, dtype=np.uint8)
            rgba = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
            if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.shape[:2] != (info.height, info.width):
                raise MapFormatError(f"{info.file} of shard {e.id} is not a {info.width}x{info.height} RGBA PNG; {REGION_HINT}")
            gray = cv2.cvtColor(rgba, cv2.COLOR_BGRA2GRAY)
            mask = rgba[..., 3] >= 128
            del rgba
            img = ShardImagery(gray, mask, info.gsd, info.x_min, info.y_max)
        return _Loaded(index, e, pkg, img, time.perf_counter() - t0)

    def _worker(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                index = self._queue.pop(0)
            try:
                loaded = self._load(index)
                err = None
            except BaseException as exc:  # noqa: BLE001 - handed to the frame thread that needs the shard
                loaded, err = None, exc
            with self._lock:
                if loaded is not None:
                    self._loaded[index] = loaded
                    self._loaded.move_to_end(index, last=False)  # not needed yet: first in line for eviction
                    self.counts["loads"] += 1
                    self.peak_loaded_bytes = max(self.peak_loaded_bytes, sum(ld.nbytes for ld in self._loaded.values()))
                    self.load_log.append((time.monotonic(), loaded.entry.id, loaded.seconds))
                else:
                    self._errors[index] = err
                ev = self._pending.pop(index, None)
            if ev is not None:
                ev.set()

    def _request(self, index: int, front: bool) -> threading.Event | None:
        """Queue a load (unless loaded or queued); the event set when it is done, None when already loaded."""
        with self._wake:
            if index in self._loaded:
                return None
            if index in self._errors or self.manifest.shards[index].id in self.failed:
                return None  # a shard that failed to load is not tried again (see failed)
            ev = self._pending.get(index)
            if ev is None:
                ev = self._pending[index] = threading.Event()
                self._queue.insert(0, index) if front else self._queue.append(index)
                self._wake.notify()
            elif front and index in self._queue:
                self._queue.remove(index)
                self._queue.insert(0, index)
            return ev

    def _indices(self, circle, margin_m=None) -> list[int]:
        return [self._entries[rc][0] for rc in self.manifest.shard_grid.touching(circle, margin_m)
                if rc in self._entries]

    def focus(self, scope, velocity=None, *, wait: bool = True) -> list[str]:
        """Make the shards of ``scope`` (x, y, radius_m) ready (waiting at most ``stall_ms``), prefetch those ahead
        along ``velocity`` (vx, vy m/s) and evict beyond ``cache_mb``. Returns the ids of the needed shards that
        are ready. ``scope`` None: nothing is needed (the loop has no position yet). ``wait=False`` (e.g. on a GPS
        fix between frames) only queues the loads."""
        if scope is None:
            self._needed = ()
            return []
        x, y, r = check_prior(scope)
        needed = self._indices((x, y, r))
        events = [ev for ev in (self._request(i, True) for i in needed) if ev is not None]
        ahead: list[int] = []  # the shards the scope sweeps over in the next lookahead_s (a few points on the way)
        if velocity is not None and self.lookahead_s > 0:
            vx, vy = (float(v) for v in velocity)
            if math.isfinite(vx) and math.isfinite(vy):
                dist = math.hypot(vx, vy) * self.lookahead_s
                n = min(8, max(1, math.ceil(dist / max(r, 50.0))))
                for k in range(1, n + 1):
                    f = self.lookahead_s * k / n
                    ahead += [i for i in self._indices((x + vx * f, y + vy * f, r)) if i not in needed and i not in ahead]
                for i in ahead:
                    with self._lock:
                        new = i not in self._loaded and i not in self._pending
                    self._request(i, False)
                    self.counts["prefetched"] += int(new)
        if wait:
            t0 = time.perf_counter()
            deadline = t0 + self.stall_s
            for ev in events:
                ev.wait(max(0.0, deadline - time.perf_counter()))
            self.stalls.append(time.perf_counter() - t0)  # 0 for most frames: their shards were there
            if events:  # this frame found a shard of its scope not in memory
                self.waited.append((len(self.stalls) - 1, self.stalls[-1]))
        with self._lock:
            for i, err in list(self._errors.items()):
                sid = self.manifest.shards[i].id
                self.failed[sid] = f"{type(err).__name__}: {err}"
                self.counts["failed_shards"] += 1
                del self._errors[i]
            ready = [i for i in needed if i in self._loaded]
            if wait:  # shards a search needs now and does not have
                self.counts["late_shards"] += len(needed) - len(ready)
            for i in ready:
                self._loaded.move_to_end(i)
            self._needed = tuple(ready)
            self._evict(set(needed) | set(ahead))
        return [self.manifest.shards[i].id for i in ready]

    def _evict(self, keep: set) -> None:
        """Drop least-recently-needed shards until the bound holds; never those of the scope or its look-ahead (the
        bound is then what they need: a scope over a corner of 4 shards, and the few shards ahead)."""
        total = sum(ld.nbytes for ld in self._loaded.values())
        for i in list(self._loaded):
            if total <= self.cache_bytes:
                break
            if i in keep:
                continue
            total -= self._loaded.pop(i).nbytes
            self.counts["evictions"] += 1

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no load is queued or running (tests, benchmarks)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            with self._lock:
                if not self._queue and not self._pending:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5.0)
        with self._lock:
            self._loaded.clear()

    # -- queries -----------------------------------------------------------------------------------------------
    def shard_of(self, x: float, y: float) -> str | None:
        """Id of the shard whose core holds (x, y), None when there is none."""
        rc = self.manifest.shard_grid.cell_of(x, y)
        return self._entries[rc][1].id if rc in self._entries else None

    def shard_imagery(self, x: float, y: float) -> tuple[str, ShardImagery] | None:
        """(shard id, grey imagery) of the loaded shard whose core holds (x, y) (else the loaded shard nearest it
        whose imagery covers it); None when no loaded shard has imagery there."""
        with self._lock:
            items = list(self._loaded.values())
        sg = self.manifest.shard_grid
        best = None
        for ld in items:
            if ld.imagery is None:
                continue
            a0, b0, a1, b1 = sg.core(ld.entry.row, ld.entry.col)
            d = math.hypot(max(a0 - x, 0.0, x - a1), max(b0 - y, 0.0, y - b1))
            if d <= sg.imagery_margin_m - sg.overlap_m and (best is None or d < best[0]):
                best = (d, ld)
        return None if best is None else (best[1].entry.id, best[1].imagery)

    def search(self, queries, k: int = 10, prior=None, *, exact: bool | None = None, ef: int | None = None):
        """Top-k tiles per query over the loaded shards meeting ``prior`` (x, y, radius_m); ``prior`` None: the
        shards needed by the last :meth:`focus`. Tiles of an overlap found in two shards count once.

        ``exact`` None (default): exact search in every shard whose HNSW index is not loaded. Shards are opened
        with a lazy index, and loading one holds the GIL (hnswlib), which would stall the frame loop; a scope
        is at most ``wide_radius_m`` across, which exact search answers in tens of milliseconds.

        Returns:
            (scores float32[n, k] cosine descending, ids int64[n, k] region tile ids, see :meth:`tile_positions`);
            padded with -inf / -1 (also when no shard of the scope is loaded yet).
        """
        k = check_k(k)
        q = check_queries(queries, self.manifest.encoder.embedding_dim)
        prior = check_prior(prior)
        with self._lock:
            if prior is None:
                shards = [self._loaded[i] for i in self._needed if i in self._loaded]
            else:
                shards = [self._loaded[i] for i in self._indices(prior) if i in self._loaded]
        from .errors import PriorOutsideMapError

        all_s, all_i, all_p = [], [], []
        for ld in shards:
            try:
                ex = (not ld.package.hnsw_ready) if exact is None else bool(exact)
                s, ids = ld.package.search(q, k, prior, exact=ex, ef=ef)
            except PriorOutsideMapError:
                continue
            ok = ids >= 0
            pos = np.full(ids.shape + (2,), np.nan)
            pos[ok] = ld.package.positions[ids[ok]]
            all_s.append(s)
            all_i.append(np.where(ok, ids + ld.index * ID_STRIDE, -1))
            all_p.append(pos)
        if not all_s:
            return topk_rows(np.zeros((q.shape[0], 0), np.float32), np.zeros(0, np.int64), k)
        if len(all_s) == 1:
            return all_s[0], all_i[0]
        S, I, P = np.concatenate(all_s, 1), np.concatenate(all_i, 1), np.concatenate(all_p, 1)
        out_s = np.full((q.shape[0], k), -np.inf, np.float32)
        out_i = np.full((q.shape[0], k), -1, np.int64)
        key_step = self.tile_grid.stride_m / 4.0
        for r in range(q.shape[0]):
            order = np.argsort(-S[r], kind="stable")
            seen, n = set(), 0
            for j in order:
                if I[r, j] < 0:
                    break
                key = (int(round(P[r, j, 0] / key_step)), int(round(P[r, j, 1] / key_step)))
                if key in seen:
                    continue
                seen.add(key)
                out_s[r, n], out_i[r, n] = S[r, j], I[r, j]
                n += 1
                if n == k:
                    break
        return out_s, out_i

    def tile_positions(self, ids) -> np.ndarray:
        """float64[..., 2] tile centres (local metres) of region tile ids from :meth:`search` (shards in memory)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(ids.shape + (2,), np.nan)
        if ids.size == 0:
            return out
        shard = ids // ID_STRIDE
        local = ids % ID_STRIDE
        if np.any(ids < 0):
            raise MapError(f"tile ids must be >= 0 (-1 pads search results), got {ids[ids < 0][:5].tolist()}")
        with self._lock:
            for si in np.unique(shard).tolist():
                ld = self._loaded.get(int(si))
                if ld is None:
                    raise MapError(f"tile ids of shard #{si} asked for, but that shard is not in memory (evicted "
                                   "since the search?); look positions up right after the search")
                sel = shard == si
                if np.any(local[sel] >= ld.package.n_tiles):
                    raise MapError(f"tile ids beyond shard {ld.entry.id}'s {ld.package.n_tiles} tiles")
                out[sel] = ld.package.positions[local[sel]]
        return out

    def summary(self) -> dict:
        return region_summary(self.path)

    def stats(self) -> dict:
        """How the shards were loaded so far: counts, load times and frame waits (ms percentiles), bytes."""
        loads = np.array([s for _, _, s in self.load_log]) * 1e3
        waits = np.array(self.stalls) * 1e3
        pct = lambda a: {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)} | {"max": float(a.max())} \
            if a.size else {}
        waited = np.array([w for _, w in self.waited]) * 1e3
        return {"counts": dict(self.counts), "load_ms": pct(loads), "wait_ms": pct(waits), "frames": int(waits.size),
                "frames_waited": int(waited.size), "wait_when_waiting_ms": pct(waited),
                "waited": [[i, round(w * 1e3, 3)] for i, w in self.waited[:100]],
                "stall_bound_ms": self.stall_s * 1e3, "cache_mb": self.cache_bytes / (1 << 20),
                "peak_loaded_mb": self.peak_loaded_bytes / (1 << 20), "loaded": self.loaded_ids(),
                "shards_loaded": [sid for _, sid, _ in self.load_log]}

    def __enter__(self) -> "RegionMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_map(path, *, verify="sha256", expect_contract: EncoderContract | None = None, **region_kwargs):
    """A :class:`RegionMap` for a region directory, else a :class:`~maps.package.MapPackage` (``verify`` as in
    ``MapPackage.load``; ``region_kwargs`` go to :class:`RegionMap` and are ignored for a map package)."""
    if is_region(path):
        mode = "sha256" if verify in (True, "sha256") else "sizes"
        return RegionMap(path, verify=mode, expect_contract=expect_contract, **region_kwargs)
    from .package import MapPackage

    return MapPackage.load(path, verify=verify, expect_contract=expect_contract)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
