"""Map packages: a directory holding everything the onboard side needs to localize against one region.

Layout (format version 2)::

    MAP/
      manifest.json         what the map is (see below) + SHA-256 and size of every other file
      manifest.sha256       SHA-256 of manifest.json (``sha256sum -c`` format)
      embeddings.f16.npy    float16[n, d] unit rows, memory-mapped on load
      positions.f64.npy     float64[n, 2] tile centres (x east, y north), local metres
      cells.i64.npy         int64[nx * ny + 1] CSR offsets of the spatial grid: tiles are stored cell-major, so the
                            tiles of cell c are rows offsets[c]:offsets[c + 1] (loading does no sorting)
      duplicates.i64.npy    int64[m, 2] (representative id, duplicate id) of tiles whose float16 embedding equals an
                            earlier tile's (textureless water, roofs); sorted. Only representatives are in the index.
      index.hnsw            hnswlib index, space 'ip', labels = tile ids (representatives only), over the
                            embeddings projected to ``hnsw.dim`` (p) dimensions (the embeddings themselves if p = d)
      hnsw_projection.f32.npy  float32[p, d] orthonormal rows (only when p < d): the uncentred PCA projection the
                            index is built on; HNSW candidates are re-ranked exactly with the full embeddings
      imagery.png           optional RGBA map imagery at the tiles' gsd (alpha = valid mask)

``manifest.json`` keys: ``format``, ``format_version``, ``created_utc``, ``frame`` (LocalFrame dict), ``crs``
(proj4 of the frame), ``bounds_local`` (x_min, y_min, x_max, y_max of the tile footprints, metres),
``bounds_wgs84`` (lat/lon min/max, degrees), ``tile_grid`` (TileGrid dict), ``encoder`` (EncoderContract dict),
``n_tiles``, ``embedding_dim``, ``embedding_dtype``, ``metric``, ``spatial_grid`` (SpatialGrid dict), ``hnsw``
(space, M, ef_construction, seed, elements, dim), ``build`` (build parameters), ``ground_elevation_m``, ``imagery`` (file, gsd,
x_min, y_max, width, height; or null), ``sources`` (input files), ``files`` (name -> {sha256, size}).

No file is a pickle; arrays are ``.npy`` read with ``allow_pickle=False``. Packages are written into a temporary
directory next to the destination and renamed into place, so a crash never leaves a half-written map.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .contract import EncoderContract
from .errors import EncoderMismatchError, MapError, MapFormatError, MapIntegrityError
from .geodesy import LocalFrame
from .search import HnswHandle, Searcher, SpatialGrid, check_prior, f16_to_f32
from .tiling import TileGrid

FORMAT = "skyfix-map"
#: 2: the HNSW index is built over a p-dimensional projection (``hnsw.dim``, ``hnsw_projection.f32.npy``).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
EMBEDDINGS = "embeddings.f16.npy"
POSITIONS = "positions.f64.npy"
CELLS = "cells.i64.npy"
DUPLICATES = "duplicates.i64.npy"
INDEX = "index.hnsw"
PROJECTION = "hnsw_projection.f32.npy"
IMAGERY = "imagery.png"
REQUIRED_FILES = (EMBEDDINGS, POSITIONS, CELLS, DUPLICATES, INDEX)
#: Default side of a spatial-grid cell, in tile strides (~1000 tiles per cell of a fully covered map).
CELL_STRIDES = 32
#: Default dimension of the HNSW graph's vectors (min(d, this)): a 64-d uncentred PCA projection of the embeddings.
HNSW_DIM = 64
#: Rows of the embedding matrix sampled to compute the projection.
PROJECTION_SAMPLE = 100_000
#: Allowed deviation of the stored projection's P @ P.T from the identity.
PROJECTION_TOLERANCE = 1e-3

REBUILD_HINT = "rebuild the map with `skyfix maps build` (or copy it again from a good source)"


# ----------------------------------------------------------------------------------------------------------------
# manifest


def _check_keys(d, required: set, what: str, optional: set = frozenset()) -> None:
    if not isinstance(d, dict):
        raise MapFormatError(f"{what} must be a JSON object, got {type(d).__name__}; {REBUILD_HINT}")
    unknown = sorted(set(d) - required - optional)
    missing = sorted(required - set(d))
    if unknown:
        raise MapFormatError(f"{what} has unknown keys {unknown} (expected {sorted(required | optional)}); {REBUILD_HINT}")
    if missing:
        raise MapFormatError(f"{what} lacks keys {missing}; {REBUILD_HINT}")


def _num(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MapFormatError(f"manifest {what} must be a finite number, got {value!r}; {REBUILD_HINT}")
    return float(value)


def _int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MapFormatError(f"manifest {what} must be an integer >= {minimum}, got {value!r}; {REBUILD_HINT}")
    return int(value)


@dataclass(frozen=True)
class FileEntry:
    """SHA-256 (hex) and size (bytes) of one package file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class ImageryInfo:
    """Where the optional map imagery lies: ``file`` (RGBA PNG) at ``gsd`` m/px, top-left edge (x_min, y_max)."""

    file: str
    gsd: float
    x_min: float
    y_max: float
    width: int
    height: int


@dataclass(frozen=True)
class Manifest:
    """Parsed ``manifest.json`` (see the module docstring for the keys)."""

    format: str
    format_version: int
    created_utc: str
    frame: LocalFrame
    crs: str
    bounds_local: tuple[float, float, float, float]
    bounds_wgs84: dict
    tile_grid: TileGrid
    encoder: EncoderContract
    n_tiles: int
    embedding_dim: int
    embedding_dtype: str
    metric: str
    spatial_grid: SpatialGrid
    hnsw: dict
    build: dict
    ground_elevation_m: float
    imagery: ImageryInfo | None
    sources: tuple[str, ...]
    files: dict

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "created_utc": self.created_utc,
            "frame": self.frame.to_dict(),
            "crs": self.crs,
            "bounds_local": dict(zip(("x_min", "y_min", "x_max", "y_max"), self.bounds_local)),
            "bounds_wgs84": dict(self.bounds_wgs84),
            "tile_grid": self.tile_grid.to_dict(),
            "encoder": self.encoder.to_dict(),
            "n_tiles": self.n_tiles,
            "embedding_dim": self.embedding_dim,
            "embedding_dtype": self.embedding_dtype,
            "metric": self.metric,
            "spatial_grid": self.spatial_grid.to_dict(),
            "hnsw": dict(self.hnsw),
            "build": dict(self.build),
            "ground_elevation_m": self.ground_elevation_m,
            "imagery": None if self.imagery is None else {f.name: getattr(self.imagery, f.name) for f in fields(ImageryInfo)},
            "sources": list(self.sources),
            "files": {name: {"sha256": e.sha256, "size": e.size} for name, e in self.files.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        """Validate and parse; unknown or missing keys, wrong types -> MapFormatError saying which."""
        _check_keys(d, {f.name for f in fields(cls)}, "manifest.json")
        if d["format"] != FORMAT:
            raise MapFormatError(f"manifest format is {d['format']!r}, expected {FORMAT!r}: this is not a SkyFix map")
        version = _int(d["format_version"], "format_version", 1)
        if version > FORMAT_VERSION:
            raise MapFormatError(
                f"map format version {version} is newer than this SkyFix reads ({FORMAT_VERSION}); "
                "upgrade SkyFix or rebuild the map with this version (`skyfix maps build`)"
            )
        if version != FORMAT_VERSION:
            raise MapFormatError(f"map format version {version} is not supported (expected {FORMAT_VERSION}); {REBUILD_HINT}")
        try:
            frame = LocalFrame.from_dict(d["frame"])
            tile_grid = TileGrid.from_dict(d["tile_grid"])
            encoder = EncoderContract.from_dict(d["encoder"])
            spatial = SpatialGrid.from_dict(d["spatial_grid"])
        except MapFormatError:
            raise
        except MapError as exc:
            raise MapFormatError(f"manifest.json is invalid: {exc}; {REBUILD_HINT}") from exc
        bl = d["bounds_local"]
        _check_keys(bl, {"x_min", "y_min", "x_max", "y_max"}, "manifest bounds_local")
        bounds = tuple(_num(bl[k], f"bounds_local.{k}") for k in ("x_min", "y_min", "x_max", "y_max"))
        bw = d["bounds_wgs84"]
        _check_keys(bw, {"lat_min", "lat_max", "lon_min", "lon_max"}, "manifest bounds_wgs84")
        bw = {k: _num(v, f"bounds_wgs84.{k}") for k, v in bw.items()}
        _check_keys(d["hnsw"], {"space", "M", "ef_construction", "seed", "elements", "dim"}, "manifest hnsw")
        for key in ("M", "ef_construction", "elements", "dim"):
            _int(d["hnsw"][key], f"hnsw.{key}", 1)
        if d["hnsw"]["space"] != "ip":
            raise MapFormatError(f"manifest hnsw.space is {d['hnsw']['space']!r}, expected 'ip'; {REBUILD_HINT}")
        if not isinstance(d["build"], dict):
            raise MapFormatError(f"manifest build must be an object, got {type(d['build']).__name__}; {REBUILD_HINT}")
        imagery = d["imagery"]
        if imagery is not None:
            _check_keys(imagery, {f.name for f in fields(ImageryInfo)}, "manifest imagery")
            imagery = ImageryInfo(
                file=str(imagery["file"]), gsd=_num(imagery["gsd"], "imagery.gsd"),
                x_min=_num(imagery["x_min"], "imagery.x_min"), y_max=_num(imagery["y_max"], "imagery.y_max"),
                width=_int(imagery["width"], "imagery.width", 1), height=_int(imagery["height"], "imagery.height", 1),
            )
        files = d["files"]
        if not isinstance(files, dict):
            raise MapFormatError(f"manifest files must be an object, got {type(files).__name__}; {REBUILD_HINT}")
        entries = {}
        for name, e in files.items():
            _check_keys(e, {"sha256", "size"}, f"manifest files[{name!r}]")
            if not isinstance(e["sha256"], str) or len(e["sha256"]) != 64:
                raise MapFormatError(f"manifest files[{name!r}].sha256 is not a SHA-256 hex digest; {REBUILD_HINT}")
            if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST, MANIFEST_SUM):
                raise MapFormatError(f"manifest lists an invalid file name {name!r}; {REBUILD_HINT}")
            entries[name] = FileEntry(e["sha256"], _int(e["size"], f"files[{name!r}].size"))
        needed = list(REQUIRED_FILES) + ([imagery.file] if imagery is not None else [])
        missing = [f for f in needed if f not in entries]
        if missing:
            raise MapFormatError(f"manifest files lacks entries for {missing}; {REBUILD_HINT}")
        if d["embedding_dtype"] != "float16":
            raise MapFormatError(f"manifest embedding_dtype is {d['embedding_dtype']!r}, expected 'float16'; {REBUILD_HINT}")
        if d["metric"] != "cosine":
            raise MapFormatError(f"manifest metric is {d['metric']!r}, expected 'cosine'; {REBUILD_HINT}")
        if not isinstance(d["sources"], list) or not all(isinstance(s, str) for s in d["sources"]):
            raise MapFormatError(f"manifest sources must be a list of strings; {REBUILD_HINT}")
        dim = _int(d["embedding_dim"], "embedding_dim", 1)
        if dim != encoder.embedding_dim:
            raise MapFormatError(
                f"manifest embedding_dim {dim} differs from its encoder's embedding_dim {encoder.embedding_dim}; {REBUILD_HINT}"
            )
        p = d["hnsw"]["dim"]
        if p > dim:
            raise MapFormatError(f"manifest hnsw.dim {p} exceeds embedding_dim {dim} (expected 1..{dim}); {REBUILD_HINT}")
        if p < dim and PROJECTION not in entries:
            raise MapFormatError(
                f"manifest files lacks an entry for {PROJECTION} (hnsw.dim {p} < embedding_dim {dim} needs the "
                f"projection); {REBUILD_HINT}"
            )
        if p == dim and PROJECTION in entries:
            raise MapFormatError(
                f"manifest lists {PROJECTION} but hnsw.dim equals embedding_dim ({dim}): no projection expected; {REBUILD_HINT}"
            )
        return cls(
            format=FORMAT, format_version=version, created_utc=str(d["created_utc"]), frame=frame, crs=str(d["crs"]),
            bounds_local=bounds, bounds_wgs84=bw, tile_grid=tile_grid, encoder=encoder,
            n_tiles=_int(d["n_tiles"], "n_tiles"), embedding_dim=dim, embedding_dtype="float16", metric="cosine",
            spatial_grid=spatial, hnsw=dict(d["hnsw"]), build=dict(d["build"]),
            ground_elevation_m=_num(d["ground_elevation_m"], "ground_elevation_m"), imagery=imagery,
            sources=tuple(d["sources"]), files=entries,
        )


def _sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _read_manifest(path: Path) -> tuple[Manifest, bytes]:
    """Read, check against manifest.sha256 and parse; typed errors for every failure."""
    path = Path(path)
    if not path.exists():
        raise MapFormatError(f"map package {path} does not exist; build one with `skyfix maps build ORTHO... -o {path}`")
    if not path.is_dir():
        raise MapFormatError(f"{path} is not a map package directory (a map is a folder with {MANIFEST}); {REBUILD_HINT}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        if (path / "region.json").is_file():
            raise MapFormatError(
                f"{path} is a region map (shards built by `skyfix maps build-region`), not one map package: the loop "
                "takes it as it is (`runtime replay BAG --map REGION`), `skyfix maps info/verify` read it, and "
                "maps.region.RegionMap opens it in code; one shard is a map package: REGION/shards/rNNN_cNNN")
        raise MapFormatError(f"{path} has no {MANIFEST}: not a SkyFix map or an incomplete copy; {REBUILD_HINT}")
    raw = mpath.read_bytes()
    spath = path / MANIFEST_SUM
    if not spath.is_file():
        raise MapFormatError(f"{path} has no {MANIFEST_SUM} (the manifest's checksum); {REBUILD_HINT}")
    expected = spath.read_text(encoding="utf-8", errors="replace").split()
    actual = hashlib.sha256(raw).hexdigest()
    if not expected or expected[0] != actual:
        raise MapIntegrityError(
            f"{MANIFEST} of {path} is corrupted: SHA-256 {actual} but {MANIFEST_SUM} says "
            f"{expected[0] if expected else '(empty)'}; {REBUILD_HINT}"
        )
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapFormatError(f"{mpath} is not valid JSON ({exc}); {REBUILD_HINT}") from exc
    return Manifest.from_dict(d), raw


# ----------------------------------------------------------------------------------------------------------------
# verification


@dataclass(frozen=True)
class FileCheck:
    """One file's verification: ``status`` is "ok", "missing", "size" (wrong size) or "hash" (wrong SHA-256)."""

    name: str
    status: str
    expected_sha256: str
    actual_sha256: str | None
    expected_size: int
    actual_size: int | None


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify_map`: every file's check, and files present but not in the manifest."""

    path: str
    files: tuple[FileCheck, ...]
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(f.status == "ok" for f in self.files)

    @property
    def bad(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.status != "ok")


def verify_map(path, *, raise_on_error: bool = True) -> VerifyReport:
    """Check every file of a map package against the SHA-256 and size in its manifest.

    The manifest itself is checked against ``manifest.sha256``. With ``raise_on_error`` (default) any difference
    raises :class:`MapIntegrityError` naming each bad file with its expected and actual hash (the report is the
    exception's ``report`` attribute); otherwise the report is returned either way.
    """
    path = Path(path)
    manifest, _ = _read_manifest(path)
    checks = []
    for name, entry in manifest.files.items():
        fpath = path / name
        if not fpath.is_file():
            checks.append(FileCheck(name, "missing", entry.sha256, None, entry.size, None))
            continue
        size = fpath.stat().st_size
        digest = _sha256_file(fpath)
        status = "ok" if digest == entry.sha256 and size == entry.size else ("size" if size != entry.size else "hash")
        checks.append(FileCheck(name, status, entry.sha256, digest, entry.size, size))
    known = set(manifest.files) | {MANIFEST, MANIFEST_SUM}
    unexpected = tuple(sorted(p.name for p in path.iterdir() if p.name not in known))
    report = VerifyReport(str(path), tuple(checks), unexpected)
    if raise_on_error and not report.ok:
        raise integrity_error(report)
    return report


def integrity_error(report: VerifyReport) -> MapIntegrityError:
    """The :class:`MapIntegrityError` describing a failed :class:`VerifyReport` (``report`` attached)."""
    lines = []
    for f in report.bad:
        if f.status == "missing":
            lines.append(f"{f.name}: missing (expected sha256 {f.expected_sha256}, {f.expected_size} bytes)")
        else:
            lines.append(
                f"{f.name}: expected sha256 {f.expected_sha256} ({f.expected_size} bytes), "
                f"actual {f.actual_sha256} ({f.actual_size} bytes)"
            )
    exc = MapIntegrityError(f"map {report.path} failed verification: " + "; ".join(lines) + f"; {REBUILD_HINT}")
    exc.report = report
    return exc


#: How :meth:`MapPackage.load` checks a map's files against its manifest: "sha256" (the default: every byte of
#: every file, its SHA-256 and size) or "sizes" (sizes, array shapes and headers only).
LOAD_VERIFY = ("sha256", "sizes")


def _load_verify_mode(verify) -> str:
    if verify is True:
        return "sha256"
    if verify is False:
        return "sizes"
    if isinstance(verify, str) and verify in LOAD_VERIFY:
        return verify
    raise MapError(f"verify must be one of {LOAD_VERIFY} (True = 'sha256', False = 'sizes'), got {verify!r}")


def _verify_hint(path: Path) -> str:
    return f"`skyfix maps verify {path}` lists every damaged file; {REBUILD_HINT}"


def check_file_hashes(path, manifest: Manifest, names=None, *, threads: int | None = None) -> dict:
    """SHA-256 of the files ``names`` (default: all the manifest lists) of the map at ``path`` against its manifest.

    The files are hashed in parallel threads (hashlib releases the GIL: ~1.8 GB/s per core with SHA extensions),
    largest first. Returns ``{name: sha256}``.

    Raises:
        MapIntegrityError: the first file (in manifest order) whose hash differs, named with the expected and found
            SHA-256 and size.
    """
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    names = list(manifest.files if names is None else names)
    if not names:
        return {}
    order = sorted(names, key=lambda n: -manifest.files[n].size)
    workers = max(1, min(len(order), threads or os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(workers) as ex:
        digests = dict(zip(order, ex.map(lambda n: _sha256_file(path / n), order)))
    for name in names:
        entry = manifest.files[name]
        if digests[name] != entry.sha256:
            size = (path / name).stat().st_size
            raise MapIntegrityError(
                f"{name} of map {path} does not match its manifest: SHA-256 {digests[name]} ({size} bytes), expected "
                f"{entry.sha256} ({entry.size} bytes): the file was altered or damaged after the map was built; "
                + _verify_hint(path)
            )
    return digests


# ----------------------------------------------------------------------------------------------------------------
# writing


def _bounds_wgs84(frame: LocalFrame, bounds) -> dict:
    x0, y0, x1, y1 = bounds
    t = np.linspace(0.0, 1.0, 9)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(9, x1), x1 - (x1 - x0) * t, np.full(9, x0)])
    ys = np.concatenate([np.full(9, y0), y0 + (y1 - y0) * t, np.full(9, y1), y1 - (y1 - y0) * t])
    lat, lon = frame.to_wgs84(xs, ys)
    lat, lon = np.asarray(lat), np.asarray(lon)
    return {"lat_min": float(lat.min()), "lat_max": float(lat.max()), "lon_min": float(lon.min()), "lon_max": float(lon.max())}


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def _unit_rows_f16(emb: np.ndarray, perm: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Rows ``emb[perm]`` (float[n, d]) -> float16[n, d], renormalised in float32 before rounding (chunked)."""
    out = np.empty((perm.size, emb.shape[1]), dtype=np.float16)
    identity = bool(np.array_equal(perm, np.arange(perm.size)))
    for s in range(0, perm.size, chunk):
        rows = emb[s:s + chunk] if identity else emb[perm[s:s + chunk]]
        e = np.asarray(rows, dtype=np.float32)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        out[s:s + chunk] = e
    return out


def check_hnsw_dim(hnsw_dim, d: int) -> int:
    """The HNSW graph dimension p for d-dimensional embeddings: ``None`` -> min(d, :data:`HNSW_DIM`).

    Raises :class:`MapError` unless ``hnsw_dim`` is None or an integer in [1, d].
    """
    if hnsw_dim is None:
        return min(int(d), HNSW_DIM)
    if isinstance(hnsw_dim, bool) or not isinstance(hnsw_dim, (int, np.integer)) or not 1 <= hnsw_dim <= d:
        raise MapError(
            f"hnsw_dim must be a positive integer <= the embedding dimension {d} (the HNSW graph's dimension; "
            f"{d} = no projection), got {hnsw_dim!r}; e.g. --hnsw-dim {min(int(d), HNSW_DIM)}"
        )
    return int(hnsw_dim)


def pca_projection(emb16: np.ndarray, p: int, *, sample: int = PROJECTION_SAMPLE, seed: int = 0,
                   chunk: int = 1 << 15) -> np.ndarray:
    """Uncentred PCA: float32[p, d] orthonormal rows = top-p right-singular vectors of the embedding matrix.

    Uncentred because the similarity is an inner product: the rows span the directions holding most of the
    embeddings' inner-product energy. Computed from up to ``sample`` rows (evenly spread random choice, ``seed``)
    of ``emb16`` (float16[n, d]) via the eigenvectors of the float64 Gram matrix; each row's sign is fixed (largest
    component positive) so builds are reproducible.
    """
    n, d = emb16.shape
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    gram = np.zeros((d, d), dtype=np.float64)
    for s in range(0, rows.size, chunk):
        x = f16_to_f32(emb16[rows[s:s + chunk]]).astype(np.float64)
        gram += x.T @ x
    w, v = np.linalg.eigh(gram)  # ascending eigenvalues
    top = v[:, np.argsort(w)[::-1][:p]].T  # [p, d]
    signs = np.sign(top[np.arange(p), np.argmax(np.abs(top), axis=1)])
    top *= np.where(signs == 0, 1.0, signs)[:, None]
    return np.ascontiguousarray(top, dtype=np.float32)


def _duplicates(emb16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(representatives int64[u] ascending, duplicates int64[n - u, 2] (representative, id) sorted) of identical rows."""
    n, d = emb16.shape
    rows = np.ascontiguousarray(emb16).view(np.dtype((np.void, 2 * d))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    if first.size == n:
        return np.arange(n, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    rep = first[np.ravel(inverse)].astype(np.int64)  # first occurrence = smallest id of each group
    members = np.flatnonzero(rep != np.arange(n))
    dups = np.stack([rep[members], members], axis=1)
    dups = dups[np.lexsort((dups[:, 1], dups[:, 0]))]
    return np.sort(first).astype(np.int64), np.ascontiguousarray(dups)


def write_package(
    out_dir,
    *,
    embeddings: np.ndarray,
    positions: np.ndarray,
    frame: LocalFrame,
    contract: EncoderContract,
    tile_grid: TileGrid,
    build_params: dict | None = None,
    sources=(),
    ground_elevation_m: float = 0.0,
    imagery=None,
    cell_size_m: float | None = None,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 200,
    hnsw_seed: int = 100,
    hnsw_dim: int | None = None,
    num_threads: int | None = None,
    overwrite: bool = False,
    progress=None,
) -> Path:
    """Write a map package atomically (temporary directory next to ``out_dir``, then rename).

    Args:
        embeddings: float[n, d] unit rows (stored float16; the HNSW index gets the float16-rounded values).
        positions: float[n, 2] tile centres, local metres, same order (tiles are reordered cell-major here).
        frame, contract, tile_grid: the map's local frame, encoder contract and tile geometry.
        imagery: optional :class:`~maps.ortho.Orthophoto` stored as ``imagery.png`` (RGBA, alpha = mask).
        cell_size_m: spatial grid cell side (default ``32 * stride``).
        hnsw_dim: dimension p of the HNSW graph's vectors (default min(d, 64)). p < d: the index holds the float16
            embeddings projected by an uncentred PCA (stored as ``hnsw_projection.f32.npy``, float32[p, d]) and
            search re-ranks its candidates exactly; p = d: the index holds the embeddings themselves.
        overwrite: replace an existing map package at ``out_dir`` (never a directory that is not a map).
        progress: optional callable ``(stage: str, done: int, total: int)``.

    Returns:
        the package path.
    """
    import hnswlib

    out_dir = Path(out_dir)
    emb = embeddings
    pos = np.asarray(positions, dtype=np.float64)
    n = int(pos.shape[0])
    if emb.ndim != 2 or emb.shape[0] != n or pos.ndim != 2 or pos.shape[1] != 2:
        raise MapError(f"embeddings must be [n, d] and positions [n, 2] with the same n, got {list(emb.shape)} and {list(pos.shape)}")
    if n == 0:
        raise MapError("no tiles to write: the orthophoto has no tile whose footprint is valid enough "
                       "(a lower --min-valid, smaller tiles (--tile-size-m) or a larger orthophoto)")
    d = int(emb.shape[1])
    if d != contract.embedding_dim:
        raise EncoderMismatchError(f"embeddings have {d} values per row but the encoder contract says {contract.embedding_dim}")
    if tile_grid.size_px != contract.input_width:
        raise MapError(
            f"tile grid tiles are {tile_grid.size_px} px ({tile_grid.tile_size_m:g} m at {tile_grid.gsd:g} m/px) but "
            f"encoder {contract.encoder_id!r} takes {contract.input_width} px; derive the grid with TileGrid.from_contract"
        )
    p = check_hnsw_dim(hnsw_dim, d)
    _prepare_destination(out_dir, overwrite)
    report = progress or (lambda stage, done, total: None)
    cell = float(cell_size_m) if cell_size_m is not None else CELL_STRIDES * tile_grid.stride_m
    grid = SpatialGrid.for_positions(pos, cell)
    perm, offsets = grid.order(pos)
    pos = pos[perm]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        report("write", 0, n)
        emb16 = _unit_rows_f16(emb, perm)
        _save_npy(tmp / EMBEDDINGS, emb16)
        _save_npy(tmp / POSITIONS, pos)
        _save_npy(tmp / CELLS, offsets)
        reps, dups = _duplicates(emb16)
        _save_npy(tmp / DUPLICATES, dups)
        # HNSW over the stored (float16-rounded) vectors, so both search paths score the same numbers; with p < d
        # over their projection (float32, not re-normalised), and search re-ranks with the stored vectors.
        proj = pca_projection(emb16, p, seed=int(hnsw_seed)) if p < d else None
        if proj is not None:
            _save_npy(tmp / PROJECTION, proj)
        index = hnswlib.Index(space="ip", dim=p)
        index.init_index(max_elements=reps.size, M=int(hnsw_m), ef_construction=int(hnsw_ef_construction),
                         random_seed=int(hnsw_seed))
        threads = int(num_threads or os.cpu_count() or 1)
        step = 1 << 15
        for s in range(0, reps.size, step):
            ids = reps[s:s + step]
            block = f16_to_f32(emb16[s:s + ids.size] if reps.size == n else emb16[ids])
            if proj is not None:
                block = np.ascontiguousarray(block @ proj.T)
            index.add_items(block, ids, num_threads=threads)
            report("index", s + ids.size, reps.size)
        index.save_index(str(tmp / INDEX))
        del index
        imagery_info = None
        if imagery is not None:
            _write_imagery(tmp / IMAGERY, imagery)
            imagery_info = {"file": IMAGERY, "gsd": float(imagery.gsd), "x_min": float(imagery.x_min),
                            "y_max": float(imagery.y_max), "width": imagery.width, "height": imagery.height}
        half = tile_grid.tile_size_m / 2.0
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        bounds = (float(lo[0] - half), float(lo[1] - half), float(hi[0] + half), float(hi[1] + half))
        files = {}
        for name in REQUIRED_FILES + ((PROJECTION,) if proj is not None else ()) + ((IMAGERY,) if imagery is not None else ()):
            files[name] = {"sha256": _sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "frame": frame.to_dict(),
            "crs": frame.proj4,
            "bounds_local": dict(zip(("x_min", "y_min", "x_max", "y_max"), bounds)),
            "bounds_wgs84": _bounds_wgs84(frame, bounds),
            "tile_grid": tile_grid.to_dict(),
            "encoder": contract.to_dict(),
            "n_tiles": n,
            "embedding_dim": d,
            "embedding_dtype": "float16",
            "metric": "cosine",
            "spatial_grid": grid.to_dict(),
            "hnsw": {"space": "ip", "M": int(hnsw_m), "ef_construction": int(hnsw_ef_construction), "seed": int(hnsw_seed),
                     "elements": int(reps.size), "dim": p},
            "build": dict(build_params or {}),
            "ground_elevation_m": float(ground_elevation_m),
            "imagery": imagery_info,
            "sources": [str(s) for s in sources],
            "files": files,
        }
        Manifest.from_dict(json.loads(json.dumps(manifest)))  # never write a manifest we would not read back
        raw = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8")
        (tmp / MANIFEST).write_bytes(raw)
        (tmp / MANIFEST_SUM).write_text(f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n", encoding="utf-8")
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report("done", n, n)
    return out_dir


def check_destination(out_dir, overwrite: bool) -> Path:
    """Refuse an output folder that cannot be written as a map package (cheap: call it before any work).

    A missing or empty folder is fine; an existing map package only with ``overwrite``; anything else never.

    Raises:
        MapError: the path is a file, a folder that is not a map package, or a map without ``overwrite``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise MapError(f"{out_dir} exists and is not a folder; choose another output path (-o)")
        is_map = (out_dir / MANIFEST).exists()
        empty = not any(out_dir.iterdir())
        if not empty and not is_map:
            raise MapError(
                f"{out_dir} exists and is not a map package; refusing to replace it: choose another output path (-o)"
            )
        if is_map and not overwrite:
            raise MapError(
                f"map {out_dir} already exists; pass --overwrite to replace it, or choose another output path (-o)"
            )
    return out_dir


def _prepare_destination(out_dir: Path, overwrite: bool) -> None:
    check_destination(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)


def _write_imagery(path: Path, ortho) -> None:
    import cv2

    rgba = np.empty((ortho.height, ortho.width, 4), dtype=np.uint8)
    rgba[..., 0] = ortho.image[..., 2]  # OpenCV writes BGRA
    rgba[..., 1] = ortho.image[..., 1]
    rgba[..., 2] = ortho.image[..., 0]
    rgba[..., 3] = np.where(ortho.mask, 255, 0)
    ok, buf = cv2.imencode(".png", rgba)
    if not ok:
        raise MapError(f"could not encode the map imagery ({ortho.width}x{ortho.height}) as PNG")
    path.write_bytes(buf.tobytes())


# ----------------------------------------------------------------------------------------------------------------
# the loaded package


def _hnsw_header(path: Path) -> dict:
    """The fixed-size header of an hnswlib index file (read without loading the index)."""
    fmt = "<QQQQQQiIQQQdQ"
    size = struct.calcsize(fmt)
    with open(path, "rb") as fh:
        raw = fh.read(size)
    if len(raw) != size:
        raise MapFormatError(f"{path.name} is truncated ({len(raw)} bytes, header needs {size}); {REBUILD_HINT}")
    names = ("offset_level0", "max_elements", "count", "size_per_element", "label_offset", "offset_data",
             "max_level", "enterpoint", "maxM", "maxM0", "M", "mult", "ef_construction")
    return dict(zip(names, struct.unpack(fmt, raw)))


class MapFacts:
    """What the onboard loop reads of any map, a :class:`MapPackage` or a region (``maps.region.RegionMap``), from
    its ``manifest``: both manifests name these facts alike."""

    @property
    def contract(self) -> EncoderContract:
        return self.manifest.encoder

    @property
    def frame(self) -> LocalFrame:
        return self.manifest.frame

    @property
    def tile_grid(self) -> TileGrid:
        return self.manifest.tile_grid

    @property
    def n_tiles(self) -> int:
        return self.manifest.n_tiles

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the tile footprints, local metres."""
        return self.manifest.bounds_local

    @property
    def ground_elevation_m(self) -> float:
        return self.manifest.ground_elevation_m


class MapPackage(MapFacts):
    """A loaded map package (read-only).

    Attributes:
        path: the package directory.
        manifest: the parsed :class:`Manifest`.
        embeddings: float16[n, d] memory-mapped unit rows.
        positions: float64[n, 2] tile centres, local metres.
        cell_offsets: int64[n_cells + 1] CSR offsets of the spatial grid (tiles are stored cell-major).
        duplicates: int64[m, 2] (representative, duplicate) tile ids with identical embeddings.
        projection: float32[p, d] orthonormal rows the HNSW index is built on (p = ``manifest.hnsw["dim"]``), or
            None when the index holds the embeddings themselves (p = d).
        timings: seconds spent in each loading step (manifest, verify (the SHA-256 check), embeddings, positions, grid, hnsw, total).
    """

    def __init__(self, path: Path, manifest: Manifest, embeddings, positions, offsets, duplicates,
                 hnsw: HnswHandle, cache_bytes: int, timings: dict, projection=None) -> None:
        self.path = path
        self.manifest = manifest
        self.embeddings = embeddings
        self.positions = positions
        self.cell_offsets = offsets
        self.duplicates = duplicates
        self.timings = timings
        self.projection = projection
        self._hnsw = hnsw
        self._searcher = Searcher(
            embeddings, positions, manifest.spatial_grid, offsets, manifest.bounds_local, hnsw,
            duplicates=duplicates, projection=projection, cache_bytes=cache_bytes, describe_point=self._describe_point,
        )

    # -- loading ---------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path, *, verify: bool | str = "sha256", expect_contract: EncoderContract | None = None,
             hnsw: str = "eager", cache_mb: float = 256) -> "MapPackage":
        """Open a map package.

        Args:
            path: the package directory.
            verify: "sha256" (default, or True): before anything is used, every file's size and SHA-256 are
                checked against the manifest (whose own SHA-256 is in ``manifest.sha256``), as ``skyfix maps
                verify`` does; a difference raises :class:`MapIntegrityError` naming the file, the expected and the
                found hash and size. It reads every byte once (the embeddings' pages then sit in the page cache for
                the first searches): about 0.5 s per million tiles (d = 256) on top of the load, see
                ``skyfix maps bench``. "sizes" (or False): sizes, array shapes and headers only (the fastest start;
                a flipped byte inside a file goes unnoticed).
            expect_contract: the encoder that will produce queries; a different contract raises
                :class:`EncoderMismatchError` naming both values.
            hnsw: "eager" (load the HNSW index now: its size is n x (4 p + 132 + 8) bytes for a graph over p
                dimensions, ~0.4 GB per million tiles at the default p = 64; everything else takes a few ms),
                "lazy" (load it on the first whole-map or large-prior search: the map is ready for prior-scoped
                search at once), "background" (load it in a thread; see :attr:`hnsw_ready`, :meth:`wait_hnsw`.
                hnswlib 0.8 holds the GIL while loading, so every Python thread, the caller's included, stalls for
                the load: it saves no wall-clock time today) or "off" (exact search only).
            cache_mb: bound of the float32 cache of converted embedding cells, MiB.
        """
        import time

        t0 = time.perf_counter()
        path = Path(path)
        mode = _load_verify_mode(verify)
        manifest, _ = _read_manifest(path)
        if expect_contract is not None:
            if not isinstance(expect_contract, EncoderContract):
                raise MapError(f"expect_contract must be an EncoderContract, got {type(expect_contract).__name__}")
            expect_contract.check_same_encoder(manifest.encoder, what="map")
        for name, entry in manifest.files.items():
            fpath = path / name
            if not fpath.is_file():
                raise MapFormatError(f"map {path} is missing {name} (listed in its manifest); {REBUILD_HINT}")
            size = fpath.stat().st_size
            if size != entry.size:
                raise MapIntegrityError(
                    f"{name} of map {path} is {size} bytes but the manifest says {entry.size} "
                    f"(truncated or partial copy; expected sha256 {entry.sha256}); " + _verify_hint(path)
                )
        t_verify = time.perf_counter()
        if mode == "sha256":
            check_file_hashes(path, manifest)
        t_verify = time.perf_counter() - t_verify
        t1 = time.perf_counter()
        n, d = manifest.n_tiles, manifest.embedding_dim
        emb = _load_npy(path / EMBEDDINGS, np.float16, (n, d), mmap=True)
        t2 = time.perf_counter()
        pos = _load_npy(path / POSITIONS, np.float64, (n, 2), mmap=False)
        t3 = time.perf_counter()
        g = manifest.spatial_grid
        offsets = _load_npy(path / CELLS, np.int64, (g.n_cells + 1,), mmap=False)
        if offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
            raise MapFormatError(f"{CELLS} of map {path} is not a valid offset table for {n} tiles; {REBUILD_HINT}")
        elements = int(manifest.hnsw["elements"])
        dups = _load_npy(path / DUPLICATES, np.int64, (n - elements, 2), mmap=False) if elements <= n else None
        if dups is None or (dups.size and (dups.min() < 0 or dups.max() >= n or np.any(dups[:, 0] >= dups[:, 1])
                                           or np.any(np.diff(dups[:, 0]) < 0))):
            raise MapFormatError(f"{DUPLICATES} of map {path} does not match {n} tiles / {elements} indexed; {REBUILD_HINT}")
        t4 = time.perf_counter()
        p = int(manifest.hnsw["dim"])
        proj = _load_projection(path, p, d) if p < d else None
        index_path = path / INDEX
        _check_hnsw_header(index_path, elements, p, manifest.hnsw)

        def loader():
            import hnswlib

            idx = hnswlib.Index(space="ip", dim=p)
            try:
                idx.load_index(str(index_path), max_elements=elements)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise MapFormatError(f"{INDEX} of map {path} cannot be loaded by hnswlib ({exc}); {REBUILD_HINT}") from exc
            if idx.element_count != elements:
                raise MapFormatError(f"{INDEX} holds {idx.element_count} tiles, the manifest says {elements}; {REBUILD_HINT}")
            return idx

        handle = HnswHandle(loader, hnsw)
        t5 = time.perf_counter()
        timings = {"manifest": t1 - t0 - t_verify, "verify": t_verify, "embeddings": t2 - t1, "positions": t3 - t2, "grid": t4 - t3,
                   "hnsw": t5 - t4, "total": t5 - t0}
        return cls(path, manifest, emb, pos, offsets, dups, handle, int(cache_mb * (1 << 20)), timings, proj)

    # -- properties ------------------------------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        return self.manifest.embedding_dim

    @property
    def hnsw_ready(self) -> bool:
        """True once the HNSW index is loaded (always True after an eager load)."""
        return self._hnsw.ready

    def wait_hnsw(self, timeout: float | None = None) -> bool:
        """Wait for a background/lazy HNSW load; True when ready. Re-raises a failed load's error."""
        return self._hnsw.wait(timeout)

    @property
    def searcher(self) -> Searcher:
        return self._searcher

    def _describe_point(self, x: float, y: float) -> str:
        try:
            lat, lon = self.frame.to_wgs84(x, y)
            return f"x={x:.1f} m, y={y:.1f} m (lat {float(lat):.6f}, lon {float(lon):.6f})"
        except Exception:  # noqa: BLE001 - only for messages
            return f"x={x:.1f} m, y={y:.1f} m"

    # -- queries ---------------------------------------------------------------------------------------------------

    def search(self, queries, k: int = 10, prior=None, *, exact: bool = False, ef: int | None = None):
        """Top-k tiles per query; see :meth:`maps.search.Searcher.search`.

        Args:
            queries: float32[n, d] (or [d]) embeddings from the map's encoder.
            k: results per query.
            prior: None or (x, y, radius_m) in the map's local metres.

        Returns:
            (scores float32[n, k] cosine similarity descending, ids int64[n, k]); padded with -inf / -1.
        """
        return self._searcher.search(queries, k, prior, exact=exact, ef=ef)

    def search_latlon(self, queries, k: int, lat: float, lon: float, radius_m: float, **kwargs):
        """:meth:`search` with the prior centre in WGS84 degrees (converted with the map's LocalFrame)."""
        x, y = self.to_local(lat, lon)
        return self.search(queries, k, (x, y, radius_m), **kwargs)

    def to_local(self, lat: float, lon: float) -> tuple[float, float]:
        x, y = self.frame.to_local(lat, lon)
        return float(x), float(y)

    def tile_latlon(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees of tiles ``ids`` (int[...]); NaN where an id is -1 (padding)."""
        ids = np.asarray(ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < self.n_tiles)
        p = self.positions[np.where(ok, ids, 0)]
        lat, lon = self.frame.to_wgs84(p[..., 0], p[..., 1])
        lat, lon = np.where(ok, lat, np.nan), np.where(ok, lon, np.nan)
        return lat, lon

    def tile_positions(self, ids) -> np.ndarray:
        """float64[..., 2] tile centres (x, y local metres) of tile ``ids`` (int[...], from :meth:`search`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_tiles):
            bad = ids[(ids < 0) | (ids >= self.n_tiles)]
            raise MapError(f"tile ids must be in [0, {self.n_tiles}) (-1 pads search results), got {bad[:5].tolist()}")
        return self.positions[ids]

    def nearest_tile(self, x: float, y: float) -> int:
        """Id of the tile whose centre is nearest (x, y) local metres."""
        if self.n_tiles == 0:
            raise MapFormatError(f"map {self.path} has no tiles")
        d2 = (self.positions[:, 0] - x) ** 2 + (self.positions[:, 1] - y) ** 2
        return int(np.argmin(d2))

    def embedding(self, ids) -> np.ndarray:
        """float32[len(ids), d] stored embeddings of tiles ``ids``."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if np.any(ids < 0) or np.any(ids >= self.n_tiles):
            raise MapError(f"tile ids must be in [0, {self.n_tiles}), got {ids[(ids < 0) | (ids >= self.n_tiles)][:5].tolist()}")
        return f16_to_f32(self.embeddings[ids])

    def prefetch(self, prior=None) -> int:
        """Convert the embedding cells touching ``prior`` (x, y, radius_m) into the float32 cache ahead of queries.

        E.g. at start-up around the GPS position, or for the area ahead of the vehicle (OpenCV and numpy release the
        GIL while converting, so a helper thread can do it). Returns the number of tiles now cached for that area
        (bounded by the cache size).
        """
        cells, _ = self._searcher.cells_in(check_prior(prior))
        for c in cells.tolist():
            self._searcher.cache.get(c)
        return int(self._searcher._counts[cells].sum())

    def scope_ids(self, prior) -> np.ndarray:
        """int64[m] ids of the tiles whose centre lies inside the prior circle (x, y, radius_m)."""
        return self._searcher.scope_ids(check_prior(prior))

    def imagery(self):
        """The stored map imagery as an :class:`~maps.ortho.Orthophoto`, or None when the map has none."""
        info = self.manifest.imagery
        if info is None:
            return None
        import cv2

        from .ortho import Orthophoto

        raw = np.fromfile(self.path / info.file, dtype=np.uint8)
        img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 4 or img.shape[:2] != (info.height, info.width):
            raise MapFormatError(f"{info.file} of map {self.path} is not a {info.width}x{info.height} RGBA PNG; {REBUILD_HINT}")
        return Orthophoto(
            image=np.ascontiguousarray(img[..., 2::-1]), mask=img[..., 3] >= 128, gsd=info.gsd, x_min=info.x_min,
            y_max=info.y_max, frame=self.frame, sources=self.manifest.sources,
        )

    def summary(self) -> dict:
        """Human-facing facts: tiles, bounds, encoder, sizes (for ``skyfix maps info``)."""
        m = self.manifest
        sizes = {name: e.size for name, e in m.files.items()}
        return {
            "path": str(self.path),
            "format_version": m.format_version,
            "created_utc": m.created_utc,
            "tiles": m.n_tiles,
            "embedding_dim": m.embedding_dim,
            "encoder": m.encoder.to_dict(),
            "tile_grid": m.tile_grid.to_dict(),
            "frame": m.frame.to_dict(),
            "bounds_local": m.bounds_local,
            "bounds_wgs84": m.bounds_wgs84,
            "ground_elevation_m": m.ground_elevation_m,
            "spatial_grid": m.spatial_grid.to_dict(),
            "hnsw": m.hnsw,
            "imagery": m.imagery is not None,
            "sources": list(m.sources),
            "file_sizes": sizes,
            "total_bytes": int(sum(sizes.values())),
        }


def _load_npy(path: Path, dtype, shape: tuple, mmap: bool) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MapFormatError(f"{path.name} of map {path.parent} is not a readable .npy array ({exc}); {REBUILD_HINT}") from exc
    if arr.dtype != np.dtype(dtype) or tuple(arr.shape) != tuple(shape) or not arr.flags.c_contiguous:
        raise MapFormatError(
            f"{path.name} of map {path.parent} holds {arr.dtype}{list(arr.shape)}, expected "
            f"{np.dtype(dtype)}{list(shape)} (C order); {REBUILD_HINT}"
        )
    return arr


def _load_projection(path: Path, p: int, d: int) -> np.ndarray:
    """float32[p, d] HNSW projection of a map, checked: finite, orthonormal rows."""
    proj = _load_npy(path / PROJECTION, np.float32, (p, d), mmap=False)
    if not np.all(np.isfinite(proj)):
        raise MapFormatError(f"{PROJECTION} of map {path} holds NaN or infinite values; {REBUILD_HINT}")
    err = float(np.abs(proj.astype(np.float64) @ proj.T.astype(np.float64) - np.eye(p)).max())
    if err > PROJECTION_TOLERANCE:
        raise MapFormatError(
            f"{PROJECTION} of map {path} does not have orthonormal rows (max |P P^T - I| = {err:.3g}, expected <= "
            f"{PROJECTION_TOLERANCE:g}); {REBUILD_HINT}"
        )
    return proj


def _check_hnsw_header(path: Path, n: int, d: int, hnsw: dict) -> None:
    h = _hnsw_header(path)
    links0 = h["maxM0"] * 4 + 4
    expected = {
        "count": n, "max_elements": n, "size_per_element": links0 + d * 4 + 8, "offset_level0": 0,
        "offset_data": links0, "label_offset": links0 + d * 4, "M": int(hnsw["M"]), "maxM": int(hnsw["M"]),
        "maxM0": 2 * int(hnsw["M"]),
    }
    wrong = {k: (h[k], v) for k, v in expected.items() if h[k] != v}
    if wrong or not (0 <= h["enterpoint"] < max(n, 1)) or not (0 <= h["max_level"] < 64):
        detail = ", ".join(f"{k}={a} (expected {b})" for k, (a, b) in wrong.items()) or (
            f"entry point {h['enterpoint']}, max level {h['max_level']}"
        )
        raise MapFormatError(f"{INDEX} of map {path.parent} has an inconsistent header ({detail}); {REBUILD_HINT}")
