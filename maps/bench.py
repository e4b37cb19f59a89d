"""Map benchmark: load time of a large map and query latency of prior-scoped (exact) and HNSW search.

The benchmark map holds ``tiles`` random unit embeddings (default 1,000,000 x 256) on a square grid with the
classical baseline's stride (12.8 m). Building it (mostly the HNSW graph) takes minutes on a small machine, so it is
built once into a cache directory (``$SKYFIX_CACHE/bench`` or ``~/.cache/skyfix/bench``) and reused by later runs;
the build time is reported when it happens (and kept in the cache's ``bench-build.json``).

Measured (all medians over repeats, wall clock, this process):

* load: manifest + checksum of the manifest, memory-mapping the embeddings, positions, spatial grid, HNSW index
  (``hnsw="eager"``); and with ``hnsw="lazy"`` / ``"background"``: when ``load`` returns, when the first
  prior-scoped query is answered and how long the first whole-map query takes (it waits for the index).
* the load-time check (``MapPackage.load(verify="sha256")``, the default: every file's SHA-256 against the
  manifest) against sizes only, eager loads in fresh processes, with the map's pages cached (warm) and evicted
  (cold, ``posix_fadvise``): :func:`measure_verify_cost`.
* prior-scoped exact search vs radius (scopes of ~1k, 5k, 30k, 100k tiles): a new area (empty float32 cell cache,
  file pages wherever the OS has them), the same area again with an empty cache (pages resident) and the next frame
  with a nearby prior (warm cache).
* HNSW search latency for one query (k=10) and recall@10 of HNSW vs exact search over the whole map.

The HNSW graph is built over a p-dimensional uncentred PCA projection of the embeddings (default p = min(d, 64),
``hnsw_dim``; part of the cache key) and its candidates are re-ranked exactly. Random embeddings are the hardest case
for HNSW and the worst for a projection (isotropic: a 64-d projection of 256-d random vectors keeps ~1/4 of each
inner product's energy, so recall collapses); recall on real imagery embeddings is far higher (see
tests/maps/test_search.py).
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .contract import EncoderContract
from .errors import MapError
from .geodesy import LocalFrame
from .package import FORMAT_VERSION, MapPackage, check_hnsw_dim, write_package
from .tiling import TileGrid

STRIDE_M = 12.8
SCOPE_TARGETS = (1_000, 5_000, 30_000, 100_000)
BENCH_FRAME = LocalFrame(47.3769, 8.5417)


def default_cache_dir() -> Path:
    """``$SKYFIX_CACHE/bench`` or ``~/.cache/skyfix/bench``."""
    root = os.environ.get("SKYFIX_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "skyfix"
    return base / "bench"


def bench_contract(dim: int) -> EncoderContract:
    return EncoderContract(encoder_id=f"bench-random-{dim}", name="random unit vectors (benchmark)",
                           input_width=128, input_height=128, ground_resolution_m=0.4, embedding_dim=dim)


def grid_positions(n: int, stride: float = STRIDE_M) -> np.ndarray:
    """float64[n, 2]: the first ``n`` points (row-major) of a square grid of spacing ``stride`` centred on 0."""
    side = int(math.ceil(math.sqrt(n)))
    idx = np.arange(n)
    x = (idx % side - (side - 1) / 2.0) * stride
    y = ((side - 1) / 2.0 - idx // side) * stride
    return np.stack([x, y], axis=1)


def random_unit(n: int, dim: int, seed: int, chunk: int = 1 << 16) -> np.ndarray:
    """float16[n, dim] random unit rows (generated in chunks to bound memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, chunk):
        e = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        out[s:s + e.shape[0]] = e
    return out


def ensure_bench_map(tiles: int, dim: int = 256, *, cache_dir=None, rebuild: bool = False, hnsw_m: int = 16,
                     hnsw_ef_construction: int = 200, hnsw_dim: int | None = None, seed: int = 0,
                     log=print) -> tuple[Path, dict | None]:
    """The cached benchmark map (built when missing or ``rebuild``); returns (path, build info or None if reused).

    ``hnsw_dim``: dimension p of the HNSW graph (default min(dim, 64)); part of the cache key
    (``map-TILES-dDIM-pP-mM-efcEFC-sSEED-vFORMAT``).
    """
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 100:
        raise MapError(f"benchmark tiles must be an integer >= 100, got {tiles!r}")
    p = check_hnsw_dim(hnsw_dim, dim)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"map-{tiles}-d{dim}-p{p}-m{hnsw_m}-efc{hnsw_ef_construction}-s{seed}-v{FORMAT_VERSION}"
    info_path = cache / (path.name + ".build.json")
    if path.is_dir() and not rebuild:
        try:
            MapPackage.load(path, hnsw="off")
            info = json.loads(info_path.read_text()) if info_path.is_file() else None
            log(f"reusing cached benchmark map {path}")
            return path, dict(info or {}, reused=True)
        except (MapError, ValueError, OSError) as exc:
            log(f"cached benchmark map {path} is unusable ({exc}); rebuilding")
    cache.mkdir(parents=True, exist_ok=True)
    log(f"building the benchmark map ({tiles} tiles x {dim}, HNSW over {p} dimensions) into {path}; this is done once")
    t0 = time.perf_counter()
    emb = random_unit(tiles, dim, seed)
    pos = grid_positions(tiles)
    t1 = time.perf_counter()
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(stage, done, total):
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now
        if stage == "index" and (done == total or done % (1 << 17) < (1 << 15)):
            log(f"  hnsw: {done}/{total} tiles, {now - t1:.0f} s")

    contract = bench_contract(dim)
    write_package(path, embeddings=emb, positions=pos, frame=BENCH_FRAME, contract=contract,
                  tile_grid=TileGrid(tile_size_m=4 * STRIDE_M, stride_m=STRIDE_M, gsd=0.4),
                  build_params={"benchmark": True, "seed": seed}, sources=("random",), hnsw_m=hnsw_m,
                  hnsw_ef_construction=hnsw_ef_construction, hnsw_dim=p, overwrite=True, progress=progress)
    t2 = time.perf_counter()
    info = {"tiles": tiles, "dim": dim, "build_s": t2 - t0, "generate_s": t1 - t0, "write_and_index_s": t2 - t1,
            "index_s": stages.get("index", 0.0), "threads": os.cpu_count(), "hnsw_m": hnsw_m,
            "hnsw_ef_construction": hnsw_ef_construction, "hnsw_dim": p}
    info_path.write_text(json.dumps(info, indent=2))
    return path, dict(info, reused=False)


def _median_ms(values) -> float:
    return float(np.median(values) * 1e3) if len(values) else float("nan")


def _noisy(emb: np.ndarray, ids: np.ndarray, rng, sigma: float) -> np.ndarray:
    q = emb[ids].astype(np.float32)
    q += rng.standard_normal(q.shape, dtype=np.float32) * (sigma / math.sqrt(q.shape[1]))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def measure_load(path: Path, repeats: int) -> dict:
    """Load timings (seconds): eager (breakdown, first and median) and background (return / first query / ready)."""
    runs = []
    for _ in range(max(1, repeats)):
        gc.collect()
        pkg = MapPackage.load(path, hnsw="eager")
        runs.append(dict(pkg.timings))
        del pkg
    gc.collect()
    keys = runs[0].keys()
    rest = runs[1:] or runs
    eager = {"first": runs[0], "median": {k: float(np.median([r[k] for r in rest])) for k in keys}, "runs": len(runs)}
    out = {"eager": eager}
    for mode in ("lazy", "background"):
        t0 = time.perf_counter()
        pkg = MapPackage.load(path, hnsw=mode)
        t_ret = time.perf_counter() - t0
        q = pkg.embedding([0])
        x, y = pkg.positions[0]
        t1 = time.perf_counter()
        pkg.search(q, 10, prior=(float(x), float(y), 300.0))
        t_query = time.perf_counter() - t0
        t_scoped = time.perf_counter() - t1
        t1 = time.perf_counter()
        pkg.search(q, 10)  # whole map: waits for (lazy: triggers) the HNSW load
        t_whole = time.perf_counter() - t1
        out[mode] = {"return_s": t_ret, "first_scoped_query_s": t_query, "scoped_query_latency_s": t_scoped,
                     "first_whole_map_query_s": t_whole, "hnsw_ready_s": time.perf_counter() - t0}
        del pkg
        gc.collect()
    return out


#: glibc >= 2.35 tunable: malloc asks the kernel for transparent huge pages (THP "madvise" mode), so the ~1 GB an
#: HNSW index is read into costs ~500 page faults instead of ~300k.
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"

_FRESH_LOAD = (
    "import json, sys, time\n"
    "t0 = time.perf_counter()\n"
    "from maps.package import MapPackage\n"
    "t1 = time.perf_counter()\n"
    "pkg = MapPackage.load(sys.argv[1], hnsw='eager')\n"
    "t2 = time.perf_counter()\n"
    "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, **pkg.timings}))\n"
)


def _glibc_hugetlb_available() -> bool:
    import platform

    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        return False


def measure_fresh_load(path: Path, repeats: int) -> dict:
    """Eager load of the map in fresh processes (what an onboard process pays at start), seconds.

    Variants, interleaved so machine noise hits both alike: the default allocator, and (glibc >= 2.35 only) with
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``. Returns ``{variant: {"load_s": median, "runs": [...]}}``.
    """
    import subprocess
    import sys

    variants = {"default": {}}
    if _glibc_hugetlb_available():
        tun = os.environ.get("GLIBC_TUNABLES", "")
        variants["hugepages"] = {"GLIBC_TUNABLES": f"{tun}:{HUGEPAGE_TUNABLE}" if tun else HUGEPAGE_TUNABLE}
    runs: dict[str, list] = {v: [] for v in variants}
    repo = str(Path(__file__).resolve().parents[1])
    for _ in range(max(1, repeats)):
        for name, extra in variants.items():
            env = {**os.environ, **extra, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
            out = subprocess.run([sys.executable, "-c", _FRESH_LOAD, str(path)], env=env, capture_output=True,
                                 text=True, check=False)
            if out.returncode != 0:
                raise MapError(f"fresh-process load of {path} failed: {out.stderr.strip()[-500:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {name: {"load_s": float(np.median([r["load_s"] for r in rs])), "hnsw_s": float(np.median([r["hnsw"] for r in rs])),
                   "runs": rs} for name, rs in runs.items()}


_VERIFY_LOAD = (
    "import json, sys, time\n"
    "from maps.package import MapPackage\n"
    "t0 = time.perf_counter()\n"
    "pkg = MapPackage.load(sys.argv[1], hnsw='eager', verify=sys.argv[2])\n"
    "print(json.dumps({'load_s': time.perf_counter() - t0, **pkg.timings}))\n"
)


def evict_page_cache(path: Path) -> bool:
    """Ask the OS to drop the map's file pages from its cache (``posix_fadvise(DONTNEED)``, these files only).
    False where that is not available."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in Path(path).iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def measure_verify_cost(path: Path, repeats: int) -> dict:
    """What the load-time check costs: eager loads in fresh processes with ``verify="sizes"`` and ``"sha256"``
    (interleaved), with the map's pages in the OS cache (warm) and evicted first (cold: read from the disk, where
    ``posix_fadvise`` can evict). Returns ``{cache: {mode: {"load_s": median, "verify_s": median}}}``, seconds."""
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    caches = ("warm", "cold") if hasattr(os, "posix_fadvise") else ("warm",)
    runs: dict = {c: {m: [] for m in ("sizes", "sha256")} for c in caches}
    for _ in range(max(1, repeats)):
        for cache in caches:
            for mode in ("sizes", "sha256"):
                if cache == "cold":
                    evict_page_cache(path)
                else:
                    MapPackage.load(path, hnsw="off", verify="sha256")  # reads every byte: all pages cached
                out = subprocess.run([sys.executable, "-c", _VERIFY_LOAD, str(path), mode], env=env,
                                     capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise MapError(f"fresh-process load of {path} failed: {out.stderr.strip()[-500:]}")
                runs[cache][mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {c: {m: {"load_s": float(np.median([r["load_s"] for r in rs])),
                    "verify_s": float(np.median([r["verify"] for r in rs])), "runs": len(rs)}
                for m, rs in by_mode.items()} for c, by_mode in runs.items()}


def measure_scoped(pkg: MapPackage, targets, repeats: int, rng, k: int = 10) -> list[dict]:
    """Prior-scoped exact search latency for circles holding about ``targets`` tiles (cold and warm cache)."""
    stride = pkg.tile_grid.stride_m
    x0, y0, x1, y1 = pkg.bounds
    rows = []
    for target in targets:
        radius = math.sqrt(target * stride * stride / math.pi)
        cold, paged, warm, scope, paths = [], [], [], [], set()
        for _ in range(repeats):
            cx = rng.uniform(min(x0 + radius, (x0 + x1) / 2), max(x1 - radius, (x0 + x1) / 2))
            cy = rng.uniform(min(y0 + radius, (y0 + y1) / 2), max(y1 - radius, (y0 + y1) / 2))
            tid = pkg.nearest_tile(cx, cy)
            q = _noisy(pkg.embeddings, np.array([tid]), rng, 0.5)
            prior = (cx, cy, radius)
            pkg.searcher.cache.clear()
            t0 = time.perf_counter()
            pkg.search(q, k, prior=prior)  # a new area: file pages as the OS has them, float32 cache empty
            cold.append(time.perf_counter() - t0)
            paths.add(pkg.searcher.last_path)
            pkg.searcher.cache.clear()
            t0 = time.perf_counter()
            pkg.search(q, k, prior=prior)  # pages now resident, float32 cache empty again
            paged.append(time.perf_counter() - t0)
            q2 = _noisy(pkg.embeddings, np.array([tid]), rng, 0.5)
            prior2 = (cx + rng.uniform(-5, 5), cy + rng.uniform(-5, 5), radius)  # the next frame, nearby
            t0 = time.perf_counter()
            pkg.search(q2, k, prior=prior2)
            warm.append(time.perf_counter() - t0)
            scope.append(pkg.scope_ids(prior).size)
        rows.append({"target_tiles": int(target), "radius_m": radius, "tiles_in_scope": int(np.median(scope)),
                     "cold_ms": _median_ms(cold), "cold_paged_ms": _median_ms(paged), "warm_ms": _median_ms(warm),
                     "path": sorted(paths)})
    pkg.searcher.cache.clear()
    return rows


def measure_hnsw(pkg: MapPackage, n_queries: int, rng, k: int = 10, efs=(64, 128, 256)) -> dict:
    """HNSW single-query latency (k=10, default ef) and recall@k vs exact whole-map search."""
    ids = rng.choice(pkg.n_tiles, size=min(n_queries, pkg.n_tiles), replace=False)
    q = _noisy(pkg.embeddings, ids, rng, 0.5)
    lat = []
    for i in range(q.shape[0]):
        t0 = time.perf_counter()
        pkg.search(q[i:i + 1], k)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    _, exact_ids = pkg.search(q, k, exact=True)
    exact_s = time.perf_counter() - t0
    recall = {}
    for ef in efs:
        _, h_ids = pkg.search(q, k, ef=ef)
        hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(h_ids, exact_ids)]
        recall[str(ef)] = {"recall_at_k": float(np.mean(hits) / k),
                           "recall_at_1": float(np.mean(h_ids[:, 0] == exact_ids[:, 0]))}
    # A prior circle holding ~60% of the map: HNSW with extra k, filtered to the circle.
    x0, y0, x1, y1 = pkg.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = math.sqrt(0.6 * (x1 - x0) * (y1 - y0) / math.pi)
    big = []
    path = None
    for i in range(min(q.shape[0], 50)):
        t0 = time.perf_counter()
        pkg.search(q[i:i + 1], k, prior=(cx, cy, r))
        big.append(time.perf_counter() - t0)
        path = pkg.searcher.last_path
    return {"k": k, "queries": int(q.shape[0]), "latency_ms": _median_ms(lat), "p90_ms": float(np.percentile(lat, 90) * 1e3),
            "recall": recall, "exact_whole_map_batch_s": exact_s,
            "large_prior": {"fraction_of_map": 0.6, "latency_ms": _median_ms(big), "path": path}}


def run_bench(tiles: int = 1_000_000, dim: int = 256, *, cache_dir=None, rebuild: bool = False, repeats: int = 20,
              load_repeats: int = 3, queries: int = 200, seed: int = 0, hnsw_dim: int | None = None, log=print) -> dict:
    """Run the whole benchmark; returns a JSON-ready dict (see :func:`format_table`).

    ``hnsw_dim``: dimension p of the HNSW graph (default min(dim, 64); p = dim: no projection).
    """
    path, build = ensure_bench_map(tiles, dim, cache_dir=cache_dir, rebuild=rebuild, hnsw_dim=hnsw_dim, seed=seed,
                                   log=log)
    log("measuring load time")
    load = measure_load(path, load_repeats)
    load["fresh_process"] = measure_fresh_load(path, load_repeats)
    log("measuring the load-time SHA-256 check")
    load["verify"] = measure_verify_cost(path, load_repeats)
    pkg = MapPackage.load(path, hnsw="eager")
    rng = np.random.default_rng(seed + 1)
    targets = [t for t in SCOPE_TARGETS if t <= 0.5 * tiles] or [max(10, tiles // 50), max(20, tiles // 5)]
    log("measuring prior-scoped search")
    scoped = measure_scoped(pkg, targets, repeats, rng)
    log("measuring HNSW search")
    hnsw = measure_hnsw(pkg, queries, rng)
    sizes = {name: e.size for name, e in pkg.manifest.files.items()}
    return {
        "map": {"path": str(path), "tiles": tiles, "dim": dim, "hnsw_dim": int(pkg.manifest.hnsw["dim"]), "bytes": sizes,
                "cell_size_m": pkg.manifest.spatial_grid.cell_size_m},
        "build": build,
        "load": load,
        "scoped": scoped,
        "hnsw": hnsw,
        "machine": {"cpus": os.cpu_count()},
    }


def format_table(result: dict) -> str:
    """Human-readable summary of :func:`run_bench`'s result."""
    lines = []
    m, b = result["map"], result["build"] or {}
    lines.append(f"map: {m['tiles']} tiles x {m['dim']}  ({sum(m['bytes'].values()) / 1e6:.0f} MB)  {m['path']}")
    if "hnsw_dim" in m:
        how = "no projection" if m["hnsw_dim"] == m["dim"] else "PCA projection, candidates re-ranked exactly"
        lines.append(f"HNSW graph over {m['hnsw_dim']} dimensions ({how}); index.hnsw {m['bytes'].get('index.hnsw', 0) / 1e6:.0f} MB")
    if b:
        how = "reused cache" if b.get("reused") else "built now"
        if "build_s" in b:
            lines.append(f"build ({how}): {b['build_s']:.1f} s total, HNSW insertion {b.get('index_s', float('nan')):.1f} s "
                         f"on {b.get('threads')} threads")
        else:
            lines.append(f"build: {how}")
    e = result["load"]["eager"]
    med, first = e["median"], e["first"]
    lines.append("")
    lines.append("load (s)          first    median")
    for key in ("manifest", "verify", "embeddings", "positions", "grid", "hnsw", "total"):
        if key in first:
            lines.append(f"  {key:<14} {first[key]:8.4f}  {med[key]:8.4f}")
    fresh = result["load"].get("fresh_process", {})
    if fresh:
        base = fresh.get("default", {}).get("load_s")
        lines.append("  fresh process, eager (what an onboard process pays at start), median:")
        for name, r in fresh.items():
            ratio = f"  ({r['load_s'] / base:.2f}x default)" if base and name != "default" else ""
            how = f"GLIBC_TUNABLES={HUGEPAGE_TUNABLE}" if name == "hugepages" else "default allocator"
            lines.append(f"    {how:<36} {r['load_s']:.3f} s (HNSW {r['hnsw_s']:.3f} s){ratio}")
    ver = result["load"].get("verify", {})
    if ver:
        lines.append("  load-time check (fresh process, eager, median): sizes only vs SHA-256 of every file")
        for cache, r in ver.items():
            a, b = r["sizes"]["load_s"], r["sha256"]["load_s"]
            lines.append(f"    {cache + ' cache:':<12} sizes {a:.3f} s, sha256 {b:.3f} s (hashing {r['sha256']['verify_s']:.3f} s; "
                         f"+{b - a:.3f} s, {b / a:.2f}x)")
    for mode in ("lazy", "background"):
        r = result["load"][mode]
        lines.append(f"  hnsw={mode + ':':<11} load returns {r['return_s']:.4f} s, first scoped query done at "
                     f"{r['first_scoped_query_s']:.4f} s ({r['scoped_query_latency_s'] * 1e3:.2f} ms), "
                     f"first whole-map query {r['first_whole_map_query_s']:.4f} s")
    lines.append("")
    lines.append("prior-scoped exact search (k=10, one query)")
    lines.append("  cold: new area, empty float32 cache, file pages wherever the OS has them (maybe on disk);")
    lines.append("  paged: same area, empty float32 cache, file pages resident; warm: the next frame nearby")
    lines.append("  target   in scope   radius m   cold ms   paged ms   warm ms")
    for r in result["scoped"]:
        lines.append(f"  {r['target_tiles']:>6}   {r['tiles_in_scope']:>8}   {r['radius_m']:>8.0f}   {r['cold_ms']:>7.2f}"
                     f"   {r['cold_paged_ms']:>8.2f}   {r['warm_ms']:>7.2f}")
    h = result["hnsw"]
    lines.append("")
    lines.append("HNSW latency and recall: queries = stored tiles + noise (sigma 0.5), whole map")
    lines.append(f"HNSW (k={h['k']}, {h['queries']} queries): median {h['latency_ms']:.3f} ms, p90 {h['p90_ms']:.3f} ms")
    for ef, r in h["recall"].items():
        lines.append(f"  ef={ef:>4}: recall@{h['k']} {r['recall_at_k']:.3f}, recall@1 {r['recall_at_1']:.3f}")
    lp = h["large_prior"]
    lines.append(f"  prior holding {lp['fraction_of_map']:.0%} of the map ({lp['path']}): median {lp['latency_ms']:.3f} ms")
    return "\n".join(lines)
