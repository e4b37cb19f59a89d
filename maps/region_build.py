"""Build a region map (:mod:`maps.region`) from large georeferenced sources, shard by shard, on a Ray cluster.

:func:`plan_region` works out the region from the sources' headers only (:func:`maps.geotiff.plan_mosaic`): its
local frame, the whole mosaic's pixel grid, the tile centres of the whole region (one grid) and the shards.
:func:`build_shard` builds one shard anywhere (it reads only the windows of the sources under the shard, never a
whole file, cuts and embeds the shard's tiles and writes an ordinary map package atomically, then a small record
``.build/ID.json``). :func:`build_region` runs the shards as Ray tasks (an existing engine: scheduling, retries of
a task whose worker died, CPU/GPU resources) and writes ``region.json`` last.

Resuming: a shard is finished when its record exists and its package's manifest has the recorded SHA-256; a rerun
with the same settings skips finished shards (after a killed driver), Ray retries a task whose worker process died
(``max_retries``). Half-written shards are temporary folders removed on the next run.

Pixels equal a single map's: the shard windows start on pixels of the whole mosaic's grid that are also whole pixels
of the tiles' resolution (``align_px``), so resampling them gives the same pixels as resampling the whole mosaic
(bar GDAL's approximate reprojection, which may round one grey level differently at a window's edge).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import EncoderContract
from .errors import MapError
from .geotiff import MosaicGrid, is_remote, plan_mosaic
from .region import (REGION_FORMAT, REGION_MANIFEST, REGION_SUM, REGION_VERSION, SHARDS_DIR, ShardGrid, is_region,
                     shard_bytes, utc_now, write_region_manifest)
from .tiling import TileGrid, axis_centres

BUILD_DIR = ".build"
PLAN_FILE = "plan.json"
#: imagery beyond a shard's overlap for fine alignment near its border (search window + half a context view), m
ALIGN_MARGIN_M = 64.0
RAY_EXTRA = "pip install 'skyfix[region]'"


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker gets the encoder: ``loader(model, **kwargs) -> embed`` (with ``embed.contract``), or the
    classical descriptor when ``model`` is "classical". Pickled to Ray workers (the loader by reference)."""

    model: str
    loader: object = None
    kwargs: tuple = ()

    def load(self):
        if self.model == "classical":
            from .descriptors import ClassicalDescriptor, classical_contract

            d = ClassicalDescriptor()
            return d, classical_contract()
        if self.loader is None:
            raise MapError(f"model {self.model!r} needs an encoder loader (the CLI wiring passes "
                           "runtime.encoder.load_encoder); or use --model classical")
        enc = self.loader(self.model, **dict(self.kwargs))
        return enc, enc.contract


_WORKER_ENCODERS: dict = {}


def _worker_encoder(spec: EncoderSpec):
    """The encoder of ``spec``, loaded once per worker process (Ray reuses its workers across tasks)."""
    key = (spec.model, id(spec.loader), spec.kwargs)
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS[key] = spec.load()
    return _WORKER_ENCODERS[key]


@dataclass(frozen=True)
class RegionPlan:
    """Everything a worker needs to build any shard (pickled to Ray workers)."""

    sources: tuple[str, ...]
    mosaic: MosaicGrid
    tile_grid: TileGrid
    contract: EncoderContract
    shard_grid: ShardGrid
    shard_px: int
    margin_px: int
    align_px: int
    min_valid_fraction: float
    ground_elevation_m: float
    batch_size: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_dim: int | None
    crs: str | None

    def shards(self) -> list[tuple[int, int]]:
        g = self.shard_grid
        return [(r, c) for r in range(g.ny) for c in range(g.nx)]

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(col0, row0, width, height) of the shard's window in the whole mosaic's pixels."""
        m = self.mosaic
        c0 = max(col * self.shard_px - self.margin_px, 0)
        r0 = max(row * self.shard_px - self.margin_px, 0)
        c1 = min((col + 1) * self.shard_px + self.margin_px, m.width)
        r1 = min((row + 1) * self.shard_px + self.margin_px, m.height)
        return c0, r0, c1 - c0, r1 - r0

    def tile_centres(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """(xs ascending, ys descending) of the region's tile columns/rows that belong to the shard."""
        x0, y0, x1, y1 = self.mosaic.bounds
        xs = axis_centres(x0, x1, self.tile_grid)
        ys = axis_centres(y0, y1, self.tile_grid)[::-1]
        a0, b0, a1, b1 = self.shard_grid.core(row, col)
        ov = self.shard_grid.overlap_m
        return (xs[(xs >= a0 - ov) & (xs < a1 + ov)], ys[(ys >= b0 - ov) & (ys < b1 + ov)])

    def fingerprint(self) -> dict:
        """What makes two builds the same region (a resume must match it)."""
        srcs = []
        for s in self.sources:
            try:
                st = os.stat(s)
                srcs.append([s, st.st_size, int(st.st_mtime)])
            except OSError:
                srcs.append([s, None, None])
        return {"sources": srcs, "encoder": self.contract.encoder_id, "tile_grid": self.tile_grid.to_dict(),
                "shard_grid": self.shard_grid.to_dict(), "min_valid_fraction": self.min_valid_fraction,
                "ground_elevation_m": self.ground_elevation_m, "hnsw": [self.hnsw_m, self.hnsw_ef_construction,
                                                                        self.hnsw_dim], "gsd": self.mosaic.gsd}


def _align_px(src_gsd: float, tile_gsd: float, limit: int = 1000) -> int:
    """Least n such that n source pixels are a whole number of tile pixels (1 when none up to ``limit``)."""
    for n in range(1, limit + 1):
        v = n * src_gsd / tile_gsd
        if abs(v - round(v)) < 1e-6 * max(1.0, v):
            return n
    return 1


def plan_region(sources, contract: EncoderContract, *, shard_km: float = 5.0, gsd: float | None = None,
                crs=None, tile_size_m: float | None = None, stride_m: float | None = None,
                min_valid_fraction: float = 0.9, ground_elevation_m: float = 0.0, batch_size: int = 64,
                hnsw_m: int = 16, hnsw_ef_construction: int = 200, hnsw_dim: int | None = None) -> RegionPlan:
    """Plan a region over ``sources`` (GeoTIFF/COG/VRT paths or URLs, any CRS) from their headers.

    Shards are ``shard_km`` km squares (rounded to whole ``align_px`` source pixels) of the mosaic's pixel grid;
    their overlap is one tile footprint.
    """
    if not isinstance(contract, EncoderContract):
        raise MapError(f"plan_region needs the encoder's EncoderContract, got {type(contract).__name__}")
    try:
        km = float(shard_km)
    except (TypeError, ValueError):
        raise MapError(f"--shard-km must be a number of kilometres, got {shard_km!r}") from None
    if not (math.isfinite(km) and 0.1 <= km <= 100.0):
        raise MapError(f"--shard-km must be within [0.1, 100] km, got {shard_km!r}")
    try:
        frac = float(min_valid_fraction)
        ground = float(ground_elevation_m)
    except (TypeError, ValueError):
        raise MapError(f"min_valid_fraction and ground_elevation_m must be numbers, got {min_valid_fraction!r}, "
                       f"{ground_elevation_m!r}") from None
    if not 0.0 < frac <= 1.0 or not math.isfinite(ground):
        raise MapError(f"min_valid_fraction must be in (0, 1] and ground_elevation_m finite, got {frac}, {ground}")
    for name, v in (("batch_size", batch_size), ("hnsw_m", hnsw_m), ("hnsw_ef_construction", hnsw_ef_construction)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MapError(f"{name} must be a positive integer, got {v!r}")
    mosaic = plan_mosaic(sources, gsd=gsd, crs=crs)
    grid = TileGrid.from_contract(contract, tile_size_m, stride_m)
    g = mosaic.gsd
    align = _align_px(g, grid.gsd)
    shard_px = max(align, int(round(km * 1000.0 / g / align)) * align)
    overlap = grid.tile_size_m
    margin_m = overlap + grid.tile_size_m / 2.0 + ALIGN_MARGIN_M
    margin_px = int(math.ceil(margin_m / g / align)) * align
    if shard_px * g < 4 * overlap:
        raise MapError(f"shards of {shard_px * g:.0f} m are too small for {grid.tile_size_m:g} m tiles (need at least "
                       f"4 tile footprints, {4 * overlap:.0f} m); pass a larger --shard-km")
    sg = ShardGrid(x0=mosaic.x_min, y1=mosaic.y_max, shard_size_m=shard_px * g, overlap_m=overlap,
                   imagery_margin_m=margin_px * g, nx=max(1, math.ceil(mosaic.width / shard_px)),
                   ny=max(1, math.ceil(mosaic.height / shard_px)))
    # absolute paths: workers of a cluster do not run in the driver's folder (URLs and /vsi paths stay as given)
    srcs = tuple(s if is_remote(s) else str(Path(s).resolve()) for s in mosaic.sources)
    return RegionPlan(srcs, mosaic, grid, contract, sg, shard_px, margin_px, align, frac, ground,
                      int(batch_size), int(hnsw_m), int(hnsw_ef_construction), hnsw_dim,
                      None if crs is None else str(crs))


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def build_shard(plan: RegionPlan, row: int, col: int, out_dir, encoder: EncoderSpec, *, threads: int = 1) -> dict:
    """Build shard (row, col) of ``plan`` into ``out_dir/shards/ID`` (atomically) and record it in
    ``out_dir/.build/ID.json``; returns the record (``n_tiles`` 0: no tile there, nothing written but the record).

    Reads only the source windows under the shard (plus its imagery margin).
    """
    import cv2

    from .build import build_map
    from .geotiff import load_orthophoto
    from .package import MANIFEST
    from .tiling import plan_tiles

    t0 = time.perf_counter()
    cv2.setNumThreads(max(1, int(threads)))
    out_dir = Path(out_dir)
    sid = ShardGrid.shard_id(row, col)
    embed, contract = _worker_encoder(encoder)
    if contract.encoder_id != plan.contract.encoder_id:
        raise MapError(f"worker encoder {contract.encoder_id} differs from the region's {plan.contract.encoder_id}: "
                       "every worker must load the same model file")
    win = plan.window(row, col)
    ortho = load_orthophoto(list(plan.sources), gsd=plan.mosaic.gsd, frame=plan.mosaic.frame, crs=plan.crs,
                            window=win, stretch=plan.mosaic.stretch, allow_empty=True)
    t_read = time.perf_counter() - t0
    xs, ys = plan.tile_centres(row, col)
    record = {"id": sid, "row": row, "col": col, "n_tiles": 0, "manifest_sha256": None, "bytes": 0,
              "bounds_local": None, "host": socket.gethostname(), "pid": os.getpid(), "window_px": list(win)}
    n = 0
    if ortho.mask.any() and xs.size and ys.size:
        n = int(plan_tiles(ortho, plan.tile_grid, plan.min_valid_fraction, centres=(xs, ys)).shape[0])
    if n:
        dest = out_dir / SHARDS_DIR / sid
        build_map(ortho, embed, contract, dest, tile_size_m=plan.tile_grid.tile_size_m,
                  stride_m=plan.tile_grid.stride_m, min_valid_fraction=plan.min_valid_fraction,
                  ground_elevation_m=plan.ground_elevation_m, batch_size=plan.batch_size, hnsw_m=plan.hnsw_m,
                  hnsw_ef_construction=plan.hnsw_ef_construction, hnsw_dim=plan.hnsw_dim, overwrite=True,
                  tile_centres=(xs, ys), provenance={"region_shard": sid, "window_px": list(win)})
        m = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
        b = m["bounds_local"]
        record.update(n_tiles=int(m["n_tiles"]), manifest_sha256=hashlib.sha256((dest / MANIFEST).read_bytes()).hexdigest(),
                      bytes=shard_bytes(dest), bounds_local=[b["x_min"], b["y_min"], b["x_max"], b["y_max"]])
    record.update(seconds=time.perf_counter() - t0, read_seconds=t_read)
    bdir = out_dir / BUILD_DIR
    bdir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(bdir / f"{sid}.json", record)
    return record


def _shard_task(plan, row, col, out_dir, encoder, threads):
    """The Ray task: one shard (module-level, so Ray ships it by reference)."""
    return build_shard(plan, row, col, out_dir, encoder, threads=threads)


def finished_shards(out_dir, plan: RegionPlan) -> dict:
    """{shard id: record} of the shards a previous run finished (record present, package matching it)."""
    from .package import MANIFEST

    out_dir = Path(out_dir)
    done = {}
    bdir = out_dir / BUILD_DIR
    if not bdir.is_dir():
        return done
    for row, col in plan.shards():
        sid = ShardGrid.shard_id(row, col)
        rp = bdir / f"{sid}.json"
        if not rp.is_file():
            continue
        try:
            rec = json.loads(rp.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("n_tiles") == 0:
            done[sid] = rec
            continue
        mp = out_dir / SHARDS_DIR / sid / MANIFEST
        if mp.is_file() and hashlib.sha256(mp.read_bytes()).hexdigest() == rec.get("manifest_sha256"):
            done[sid] = rec
    return done


def _check_output(out_dir: Path, plan: RegionPlan, overwrite: bool) -> None:
    """Refuse an output folder that cannot take this build (nothing is written): not a folder, a finished region
    without ``overwrite``, a folder of something else, or an unfinished build with other settings."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MapError(f"{out_dir} exists and is not a folder; choose another output path (-o)")
    if is_region(out_dir) and not overwrite:
        raise MapError(f"region {out_dir} is already built; pass --overwrite to build it again, or choose another -o")
    bdir = out_dir / BUILD_DIR
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (bdir / PLAN_FILE).is_file() and not is_region(out_dir):
        raise MapError(f"{out_dir} exists and is not a region being built; refusing to write into it: choose another "
                       "output path (-o)")
    if not overwrite and (bdir / PLAN_FILE).is_file():
        fp = json.loads(json.dumps(plan.fingerprint()))
        old = json.loads((bdir / PLAN_FILE).read_text(encoding="utf-8"))
        if old != fp:
            diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            raise MapError(f"{out_dir} holds an unfinished build with other settings ({', '.join(diff)} differ); "
                           "rerun with the same sources and options to resume it, or pass --overwrite to start over")


def _prepare(out_dir: Path, plan: RegionPlan, overwrite: bool) -> None:
    """Create the output folder (checked by :func:`_check_output`): a fresh one, one to resume (same plan) or, with
    ``overwrite``, one started over."""
    bdir = out_dir / BUILD_DIR
    if overwrite and out_dir.is_dir():
        for name in (REGION_MANIFEST, REGION_SUM):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)
        shutil.rmtree(bdir, ignore_errors=True)
    (out_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    bdir.mkdir(exist_ok=True)
    _write_json_atomic(bdir / PLAN_FILE, plan.fingerprint())
    for p in (out_dir / SHARDS_DIR).iterdir():  # half-written shards of a killed run (build_map's temp folders)
        if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MapError(f"building a region runs on Ray, which is not installed ({exc}); {RAY_EXTRA}") from exc
    return ray


def build_region(sources, out_dir, encoder: EncoderSpec, *, shard_km: float = 5.0, address: str | None = None,
                 workers: int | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0,
                 max_retries: int = 3, overwrite: bool = False, progress=None, gsd=None, crs=None,
                 tile_size_m=None, stride_m=None, min_valid_fraction: float = 0.9, ground_elevation_m: float = 0.0,
                 batch_size: int = 64, hnsw_m: int = 16, hnsw_ef_construction: int = 200, hnsw_dim=None,
                 max_shards: int | None = None) -> dict:
    """Build (or resume) a region map; returns a report (shards built / resumed / empty, seconds, tiles, bytes).

    Args:
        sources: GeoTIFF/COG/VRT paths, folders or URLs visible to every worker (a shared file system or URLs).
        out_dir: the region directory.
        encoder: how workers load the encoder (:class:`EncoderSpec`).
        shard_km: side of a shard's core, km.
        address: a Ray cluster (``ray://host:10001`` or ``auto``); None starts a local Ray instance with
            ``workers`` CPUs (default: all) for this build.
        cpus_per_task, gpus_per_task: Ray resources of a shard task (GPU workers: load the encoder on ``cuda``).
        max_retries: Ray retries of a task whose worker process died.
        progress: optional ``progress(event: str, info: dict)``; events "plan", "resume", "shard", "done".
        max_shards: stop after this many shards were built in this run (the region is left unfinished, to resume).
    """
    report = progress or (lambda event, info: None)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if address:
        check_ray_address(address)  # before anything is written: a wrong address fails in seconds, not minutes
    _, contract = encoder.load()  # the driver needs the contract for the tile grid (and checks the model loads)
    plan = plan_region(sources, contract, shard_km=shard_km, gsd=gsd, crs=crs, tile_size_m=tile_size_m,
                       stride_m=stride_m, min_valid_fraction=min_valid_fraction,
                       ground_elevation_m=ground_elevation_m, batch_size=batch_size, hnsw_m=hnsw_m,
                       hnsw_ef_construction=hnsw_ef_construction, hnsw_dim=hnsw_dim)
    _check_output(out_dir, plan, overwrite)  # refusals before Ray starts; nothing is written until it is there
    m = plan.mosaic
    report("plan", {"shards": len(plan.shards()), "grid": [plan.shard_grid.ny, plan.shard_grid.nx],
                    "shard_m": plan.shard_grid.shard_size_m, "mosaic_px": [m.width, m.height], "gsd": m.gsd})
    ray = _import_ray()
    started = False  # this call connected the driver (a local instance started, or a cluster joined): it lets go
    records, failed = {}, {}
    cluster = {}
    try:
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                try:
                    ray.init(address=address, **kw)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise MapError(f"cannot join the Ray cluster at --address {address!r}: {_cause(exc)}; "
                                   f"{ADDRESS_HINT}; {AUTH_HINT}") from exc
            else:
                # "local": a new instance of its own, even where RAY_ADDRESS is set or `ray start` runs a cluster
                ray.init(address="local", num_cpus=int(workers or os.cpu_count() or 1), **kw)
            started = True  # ray.shutdown() stops a local instance; from a cluster it only disconnects
        res = ray.cluster_resources()
        cluster = {"ray_version": ray.__version__, "address": address or "local",
                   "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": res.get("CPU", 0.0),
                   "gpus": res.get("GPU", 0.0)}
        # the output is touched only once the cluster is there
        _prepare(out_dir, plan, overwrite)
        done = finished_shards(out_dir, plan)
        todo = [(r, c) for r, c in plan.shards() if ShardGrid.shard_id(r, c) not in done]
        if done:
            report("resume", {"finished": len(done), "todo": len(todo)})
        if max_shards is not None:
            todo = todo[:max(0, int(max_shards))]
        threads = max(1, int(cpus_per_task))
        task = ray.remote(_shard_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                                               max_retries=int(max_retries), retry_exceptions=False)
        plan_ref = ray.put(plan)
        refs = {task.remote(plan_ref, r, c, str(out_dir.resolve()), encoder, threads): ShardGrid.shard_id(r, c)
                for r, c in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            sid = refs.pop(ready[0])
            try:
                rec = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a shard that failed for good: named at the end
                failed[sid] = _cause(exc)
                report("shard", {"id": sid, "error": failed[sid]})
                continue
            records[sid] = rec
            report("shard", {"id": sid, "n_tiles": rec["n_tiles"], "seconds": rec["seconds"],
                             "done": len(done) + len(records), "total": len(plan.shards())})
    finally:
        if started:
            ray.shutdown()
    if failed:
        names = "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())[:5])
        raise MapError(f"{len(failed)} shard(s) failed ({names}); the finished ones are kept: fix the cause and run "
                       "the same command again to resume")
    all_recs = {**done, **records}
    if len(all_recs) < len(plan.shards()):
        return {"finished": False, "built": len(records), "resumed": len(done), "left": len(plan.shards()) - len(all_recs),
                "seconds": time.perf_counter() - t_start, "cluster": cluster}
    return _finish(out_dir, plan, all_recs, records, done, cluster, time.perf_counter() - t_start, report)


ADDRESS_HINT = ("start the cluster with `ray start --head` and pass the address it prints (host:port, or "
                "ray://host:10001 for Ray Client), pass `auto` on a node of the cluster, or leave --address out for a "
                "local Ray instance on this machine")


AUTH_HINT = ("a cluster that asks for a token (Ray >= 2.59 starts clusters with token authentication) needs this "
             "driver run with RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file "
             "~/.ray/auth_token; `ray get-auth-token` on the head prints it)")


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (a typed :class:`MapError`) when ``address`` names no reachable Ray cluster.

    ``host:port`` (the GCS, as ``ray start --head`` prints it) and ``ray://host:port`` (Ray Client) are probed with
    one TCP connection of at most ``timeout_s``: Ray itself retries an unreachable address for minutes. ``auto`` is
    left to Ray, which says at once when no cluster runs on this node."""
    if not isinstance(address, str) or not address.strip():
        raise MapError(f"--address must be host:port, ray://host:port or auto, got {address!r}")
    a = address.strip()
    if a == "auto":
        return
    hostport = a.split("://", 1)[1] if "://" in a else a
    hostport = hostport.split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MapError(f"--address {address!r} is not host:port, ray://host:port or auto (e.g. 10.0.0.5:6379, "
                       f"ray://head:10001); {ADDRESS_HINT}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise MapError(f"no Ray cluster answers at --address {address!r} ({host}:{port}: "
                       f"{exc.strerror or type(exc).__name__}); {ADDRESS_HINT}") from exc


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]


def _finish(out_dir: Path, plan: RegionPlan, recs: dict, built: dict, resumed: dict, cluster: dict, seconds: float,
            report) -> dict:
    from .package import _bounds_wgs84

    shards = []
    empty = []
    for r, c in plan.shards():
        rec = recs[ShardGrid.shard_id(r, c)]
        if rec["n_tiles"] == 0:
            empty.append(rec["id"])
            continue
        b = rec["bounds_local"]
        shards.append({"id": rec["id"], "row": r, "col": c, "n_tiles": rec["n_tiles"],
                       "bounds_local": dict(zip(("x_min", "y_min", "x_max", "y_max"), b)),
                       "manifest_sha256": rec["manifest_sha256"], "bytes": rec["bytes"]})
    if not shards:
        raise MapError(f"no shard holds a tile: the sources have no area with --min-valid {plan.min_valid_fraction} "
                       "valid pixels under a whole tile; check the sources (nodata, alpha) or lower --min-valid")
    xs0 = min(s["bounds_local"]["x_min"] for s in shards)
    ys0 = min(s["bounds_local"]["y_min"] for s in shards)
    xs1 = max(s["bounds_local"]["x_max"] for s in shards)
    ys1 = max(s["bounds_local"]["y_max"] for s in shards)
    frame = plan.mosaic.frame
    tiles = sum(s["n_tiles"] for s in shards)
    area_km2 = plan.mosaic.width * plan.mosaic.height * plan.mosaic.gsd ** 2 / 1e6
    manifest = {
        "format": REGION_FORMAT, "format_version": REGION_VERSION, "created_utc": utc_now(),
        "frame": frame.to_dict(), "crs": frame.proj4, "shard_grid": plan.shard_grid.to_dict(),
        "tile_grid": plan.tile_grid.to_dict(), "encoder": plan.contract.to_dict(),
        "bounds_local": {"x_min": xs0, "y_min": ys0, "x_max": xs1, "y_max": ys1},
        "bounds_wgs84": _bounds_wgs84(frame, (xs0, ys0, xs1, ys1)),
        "ground_elevation_m": plan.ground_elevation_m, "n_tiles": tiles, "shards": shards, "empty_shards": empty,
        "build": {
            "sources": list(plan.sources), "gsd": plan.mosaic.gsd, "mosaic_px": [plan.mosaic.width, plan.mosaic.height],
            "area_km2": area_km2, "min_valid_fraction": plan.min_valid_fraction, "batch_size": plan.batch_size,
            "hnsw": {"M": plan.hnsw_m, "ef_construction": plan.hnsw_ef_construction, "dim": plan.hnsw_dim},
            "align_px": plan.align_px, "stretch": plan.mosaic.stretch, "cluster": cluster,
            "seconds_last_run": seconds, "shards_built_last_run": len(built), "shards_resumed": len(resumed),
            "shard_seconds": {k: round(float(v.get("seconds", 0.0)), 3) for k, v in sorted(recs.items())},
            "hosts": sorted({str(v.get("host")) for v in recs.values()}),
        },
    }
    write_region_manifest(out_dir, manifest)
    shutil.rmtree(out_dir / BUILD_DIR, ignore_errors=True)
    info = {"finished": True, "shards": len(shards), "empty": len(empty), "built": len(built),
            "resumed": len(resumed), "tiles": tiles, "bytes": int(sum(s["bytes"] for s in shards)),
            "area_km2": area_km2, "seconds": seconds, "cluster": cluster,
            "shard_seconds": sum(float(v.get("seconds", 0.0)) for v in built.values())}
    report("done", info)
    return info


__all__ = ["EncoderSpec", "RegionPlan", "plan_region", "build_shard", "build_region", "finished_shards",
           "check_ray_address"]
