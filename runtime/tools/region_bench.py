"""How a region build (:func:`maps.region_build.build_region`) grows with the area, on this machine.

For each area A (km^2) a square synthetic orthophoto of sqrt(A) km a side is cut from real ones
(:func:`runtime.tools.synthetic_region.write_synthetic_mosaic`, 0.5 m swissimage by default) and a region is built
from it on a local Ray instance that the build starts (``workers`` CPUs, one shard task per CPU, ``shard_km`` km
shards). Measured per build: the build's own wall seconds (its report's ``seconds``: encoder load in the driver,
Ray start, planning, every shard, the region manifest), the summed seconds of the shard tasks, tiles, bytes and
shards. A linear fit ``seconds = a + b * km^2`` gives the marginal cost b and the fixed cost a (mostly Ray's start);
the projection extrapolates b to a 100 x 100 km region on N machines like this one (perfect scaling across
machines assumed: shared storage, scheduling and stragglers not modelled).

    python -m runtime.tools.region_bench --out runs/region_bench/classical --areas 1,4,16 --workers 2 \\
        --model classical --json runs/region_bench/classical.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from maps.errors import MapError

DEFAULT_SOURCES = ("ortho/swissimage_zurich_a_0.5m.tif", "ortho/swissimage_zurich_b_0.5m.tif")
PROJECTION_KM2 = 100.0 * 100.0
PROJECTION_MACHINES = (1, 10, 50)


def default_sources() -> list[Path]:
    """The swissimage orthophotos of $SKYFIX_DATA or ../shared/data (next to the repository)."""
    roots = [Path(os.environ["SKYFIX_DATA"])] if os.environ.get("SKYFIX_DATA") else []
    roots.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    for root in roots:
        paths = [root / s for s in DEFAULT_SOURCES]
        if all(p.is_file() for p in paths):
            return paths
    raise MapError(f"the default sources {', '.join(DEFAULT_SOURCES)} are not under $SKYFIX_DATA or ../shared/data; "
                   "pass --sources SRC.tif ...")


def encoder_spec(model: str):
    """The :class:`~maps.region_build.EncoderSpec` of ``model``: the classical descriptor, or a model file / shipped
    model name loaded by :func:`runtime.encoder.load_encoder` with one ONNX Runtime thread per worker."""
    from maps.region_build import EncoderSpec

    if model == "classical":
        return EncoderSpec("classical")
    from runtime.encoder import load_encoder

    return EncoderSpec(model, load_encoder, (("threads", 1),))


class OtherLoad:
    """Samples (every ``period`` s, in a thread) the CPU time of the processes that are not this one or its
    descendants (the local Ray instance), so that a build slowed by other work on the machine shows in the report.
    Linux only (/proc); processes that start and end between two samples are missed."""

    def __init__(self, period: float = 1.0):
        import threading

        self.period, self._stop = period, threading.Event()
        self._first: dict = {}
        self._last: dict = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self) -> None:
        me = os.getpid()
        parents, cpu = {}, {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                st = (d / "stat").read_text()
            except OSError:
                continue
            f = st[st.rindex(")") + 2:].split()
            pid = int(d.name)
            parents[pid] = int(f[1])
            cpu[pid] = (int(f[11]) + int(f[12])) / self._tick
        for pid, t in cpu.items():
            p, mine = pid, False
            for _ in range(64):
                if p == me:
                    mine = True
                    break
                p = parents.get(p, 0)
                if p <= 1:
                    break
            if not mine:
                self._first.setdefault(pid, t)
                self._last[pid] = t

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> "OtherLoad":
        self.t0 = time.perf_counter()
        if Path("/proc/self/stat").is_file():
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self._sample()
        self.seconds = time.perf_counter() - self.t0

    @property
    def cpu_seconds(self) -> float:
        return float(sum(self._last[p] - self._first[p] for p in self._last))


def _byte_kinds(region: Path) -> dict:
    """Bytes of the region's shard files by kind: imagery (PNG), embeddings, index (HNSW + projection), other."""
    out = {"imagery": 0, "embeddings": 0, "index": 0, "other": 0}
    for p in (region / "shards").rglob("*"):
        if not p.is_file():
            continue
        n = p.stat().st_size
        if p.suffix == ".png":
            out["imagery"] += n
        elif p.name.startswith("embeddings"):
            out["embeddings"] += n
        elif p.name.startswith(("index", "hnsw")):
            out["index"] += n
        else:
            out["other"] += n
    return out


def _local_side_m(mosaic: Path) -> float:
    """The larger side, metres, of the mosaic's grid in the region's local frame (:func:`maps.geotiff.plan_mosaic`)."""
    from maps.geotiff import plan_mosaic

    m = plan_mosaic([str(mosaic)])
    return max(m.width, m.height) * m.gsd


def bench_area(area_km2: float, out_dir: Path, sources, spec, *, workers: int, shard_km: float, seed: int = 0,
               fit_shard_grid: bool = False, progress=None) -> dict:
    """Write the mosaic of one area and build its region; returns the row of measurements.

    ``fit_shard_grid``: shrink the mosaic (by ~1.4 % for LV95 at Zurich) so that its grid in the region's local
    frame, which is larger than the source extent (the warp turns the square by the meridian convergence), is a
    whole number of shards where the side is one (else a 1 km^2 mosaic makes 2 x 2 shards, three of them slivers).
    """
    from maps.region_build import build_region
    from runtime.tools.synthetic_region import write_synthetic_mosaic

    say = progress or (lambda s: None)
    side_m = math.sqrt(area_km2) * 1000.0
    tag = f"{area_km2:g}km2"
    t0 = time.perf_counter()
    path = out_dir / f"mosaic_{tag}.tif"
    mosaic = write_synthetic_mosaic(sources, path, width_m=side_m, height_m=side_m, seed=seed)
    local_m = _local_side_m(mosaic)
    shard_m = shard_km * 1000.0
    n = max(1, round(side_m / shard_m))
    if fit_shard_grid and n * shard_m < local_m <= 1.05 * n * shard_m:
        side_m *= n * shard_m / local_m * (1.0 - 1e-3)
        mosaic = write_synthetic_mosaic(sources, path, width_m=side_m, height_m=side_m, seed=seed)
        local_m = _local_side_m(mosaic)
    t_mosaic = time.perf_counter() - t0
    say(f"[{tag}] mosaic {mosaic} ({mosaic.stat().st_size / 1e6:.1f} MB) in {t_mosaic:.1f} s")
    shard_s = []

    def on_event(event, info):
        if event == "plan":
            say(f"[{tag}] plan: {info['shards']} shards {info['grid']}, mosaic {info['mosaic_px']} px")
        elif event == "shard":
            if "error" in info:
                say(f"[{tag}] shard {info['id']} failed: {info['error']}")
                return
            shard_s.append(float(info["seconds"]))
            say(f"[{tag}] shard {info['id']}: {info['n_tiles']} tiles in {info['seconds']:.1f} s "
                f"({info['done']}/{info['total']})")

    region = out_dir / f"region_{Path(str(spec.model)).stem}_{tag}"
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with OtherLoad() as others:
        rep = build_region([str(mosaic)], region, spec, shard_km=shard_km, workers=workers, overwrite=True,
                           progress=on_event)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    if not rep.get("finished"):
        raise MapError(f"the region of {tag} did not finish: {rep}")
    enc = json.loads((region / "region.json").read_text(encoding="utf-8"))["encoder"]
    a = float(rep["area_km2"])
    sec = float(rep["seconds"])
    return {"area_km2_asked": float(area_km2), "area_km2": a, "side_m": side_m, "local_side_m": local_m,
            "mosaic_seconds": t_mosaic,
            "mosaic_bytes": mosaic.stat().st_size, "seconds": sec, "wall_seconds": wall,
            "shard_seconds_sum": float(sum(shard_s)), "shard_seconds_mean": float(np.mean(shard_s)) if shard_s else 0.0,
            "shard_seconds_max": float(max(shard_s)) if shard_s else 0.0, "shards": int(rep["shards"]),
            "empty_shards": int(rep["empty"]), "tiles": int(rep["tiles"]), "bytes": int(rep["bytes"]),
            "bytes_by_kind": _byte_kinds(region), "seconds_per_km2": sec / a, "tiles_per_second": rep["tiles"] / sec,
            "bytes_per_km2": rep["bytes"] / a, "tiles_per_km2": rep["tiles"] / a,
            "encoder_id": enc.get("encoder_id"), "region": str(region), "cluster": rep.get("cluster"),
            "loadavg_1min": [load_before, load_after], "other_cpu_seconds": others.cpu_seconds,
            "other_cores": others.cpu_seconds / max(wall, 1e-9)}


def fit(rows: list[dict]) -> dict:
    """Least-squares ``seconds = a + b * km^2`` over the rows, and the per-km^2 cost of the largest area over the
    smallest's."""
    x = np.array([r["area_km2"] for r in rows])
    y = np.array([r["seconds"] for r in rows])
    lo, hi = rows[int(np.argmin(x))], rows[int(np.argmax(x))]
    out = {"ratio_areas_km2": [lo["area_km2"], hi["area_km2"]],
           "per_km2_ratio": hi["seconds_per_km2"] / lo["seconds_per_km2"]}
    if len(set(x.tolist())) >= 2:
        b, a = np.polyfit(x, y, 1)
        pred = a + b * x
        ss = float(np.sum((y - y.mean()) ** 2))
        out.update(a_seconds=float(a), b_seconds_per_km2=float(b),
                   r2=float(1.0 - np.sum((y - pred) ** 2) / ss) if ss > 0 else 1.0)
    else:
        out.update(a_seconds=None, b_seconds_per_km2=float(y[0] / x[0]), r2=None)
    return out


def projection(rows: list[dict], f: dict, *, workers: int, shard_km: float) -> dict:
    """A 100 x 100 km region on N machines like this one, from the marginal cost b (and, for comparison, from
    the largest area's seconds per km^2, which include the fixed costs)."""
    hi = max(rows, key=lambda r: r["area_km2"])
    b = f["b_seconds_per_km2"]
    basis = ("fit slope b (marginal build seconds per km^2 with this machine's workers); perfect scaling over "
             "machines assumed")
    if not b > 0:  # areas too small to see the marginal cost under the fixed one
        b = hi["seconds_per_km2"]
        basis = "the largest area's seconds per km^2 (the fit's slope was not positive); perfect scaling assumed"
    return {
        "area_km2": PROJECTION_KM2, "workers_per_machine": workers, "machine_cpus": os.cpu_count(),
        "seconds_per_km2": b, "basis": basis,
        "hours": {str(n): PROJECTION_KM2 * b / n / 3600.0 for n in PROJECTION_MACHINES},
        "hours_at_largest_area_rate": {str(n): PROJECTION_KM2 * hi["seconds_per_km2"] / n / 3600.0
                                       for n in PROJECTION_MACHINES},
        "bytes_per_km2": hi["bytes_per_km2"], "storage_bytes": hi["bytes_per_km2"] * PROJECTION_KM2,
        "storage_by_kind_bytes": {k: v / hi["area_km2"] * PROJECTION_KM2 for k, v in hi["bytes_by_kind"].items()},
        "tiles": hi["tiles_per_km2"] * PROJECTION_KM2,
        "shards": math.ceil(100.0 / shard_km) ** 2, "storage_basis": f"bytes per km^2 of the {hi['area_km2']:.3g} km^2 build",
    }


def run_bench(out_dir, areas, *, model: str = "classical", workers: int = 2, shard_km: float = 1.0, sources=None,
              seed: int = 0, fit_shard_grid: bool = False, progress=None) -> dict:
    """Run :func:`bench_area` for every area (km^2) into ``out_dir``; returns config, rows, fit and projection."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = [Path(s) for s in sources] if sources else default_sources()
    spec = encoder_spec(model)
    rows = [bench_area(a, out_dir, srcs, spec, workers=workers, shard_km=shard_km, seed=seed,
                       fit_shard_grid=fit_shard_grid, progress=progress) for a in areas]
    f = fit(rows)
    return {"config": {"model": model, "encoder_id": rows[0]["encoder_id"], "workers": workers, "shard_km": shard_km,
                       "seed": seed, "fit_shard_grid": fit_shard_grid, "sources": [str(s) for s in srcs],
                       "areas_km2": list(areas),
                       "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                   "processor": _cpu_name(), "python": platform.python_version()},
                       "nice": os.nice(0)},
            "rows": rows, "fit": f, "projection": projection(rows, f, workers=workers, shard_km=shard_km)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_report(res: dict) -> str:
    c = res["config"]
    fitted = ", mosaics fitted to the shard grid" if c.get("fit_shard_grid") else ""
    lines = [f"region build: model {c['model']} ({c['encoder_id']}), {c['workers']} workers, {c['shard_km']:g} km "
             f"shards{fitted}, {c['machine']['cpus']} CPUs ({c['machine']['processor']}), nice {c['nice']}",
             f"{'km^2':>6} {'shards':>6} {'tiles':>8} {'seconds':>8} {'s/km^2':>8} {'tiles/s':>8} {'MB':>8} "
             f"{'MB/km^2':>8} {'task s':>8} {'mosaic s':>8} {'others':>6}"]
    for r in res["rows"]:
        lines.append(f"{r['area_km2']:6.3g} {r['shards']:6d} {r['tiles']:8d} {r['seconds']:8.1f} "
                     f"{r['seconds_per_km2']:8.1f} {r['tiles_per_second']:8.1f} {r['bytes'] / 1e6:8.1f} "
                     f"{r['bytes_per_km2'] / 1e6:8.1f} {r['shard_seconds_sum']:8.1f} {r['mosaic_seconds']:8.1f} "
                     f"{r.get('other_cores', float('nan')):6.2f}")
    f = res["fit"]
    a = "n/a" if f["a_seconds"] is None else f"{f['a_seconds']:.1f} s"
    r2 = "" if f["r2"] is None else f", r^2 {f['r2']:.4f}"
    lo, hi = f["ratio_areas_km2"]
    lines.append(f"fit: seconds = a + b * km^2, a {a}, b {f['b_seconds_per_km2']:.2f} s/km^2{r2}; per-km^2 cost at "
                 f"{hi:.3g} vs {lo:.3g} km^2: x{f['per_km2_ratio']:.3f}")
    lines.append("(seconds: the build's wall time, Ray start included; task s: summed shard tasks; others: "
                 "cores used by other processes on the machine meanwhile, on average)")
    p = res["projection"]
    hrs = ", ".join(f"{n} machine{'s' if n != '1' else ''} {h:.1f} h" for n, h in p["hours"].items())
    hrs2 = ", ".join(f"{n}: {h:.1f} h" for n, h in p["hours_at_largest_area_rate"].items())
    kinds = ", ".join(f"{k} {v / 1e9:.0f} GB" for k, v in p["storage_by_kind_bytes"].items())
    lines.append(f"projection, 100 x 100 km ({p['shards']} shards, {p['tiles'] / 1e6:.0f} M tiles) on machines like "
                 f"this ({p['workers_per_machine']} workers each): {hrs} (at the largest area's s/km^2: {hrs2}); "
                 f"storage {p['storage_bytes'] / 1e9:.0f} GB ({kinds})")
    return "\n".join(lines)


def _areas(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--areas takes comma-separated km^2, e.g. 1,4,16; got {text!r}") from None
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--areas must be positive km^2, e.g. 1,4,16; got {text!r}")
    return vals


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.tools.region_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the mosaics and regions (rebuilt each run)")
    p.add_argument("--areas", type=_areas, default=[1.0, 4.0, 16.0], metavar="A,B,...",
                   help="areas to build, km^2 (square mosaics; default 1,4,16)")
    p.add_argument("--workers", type=int, default=2, help="Ray CPUs = shard tasks at once (default 2)")
    p.add_argument("--model", default="classical",
                   help="classical, default, default-int8 or a model file (default classical)")
    p.add_argument("--shard-km", type=float, default=1.0, metavar="KM", help="shard side, km (default 1)")
    p.add_argument("--sources", nargs="+", default=None, metavar="SRC",
                   help="orthophotos to cut the mosaics from (default: the swissimage Zurich ones of the shared data)")
    p.add_argument("--seed", type=int, default=0, help="mosaic seed (default 0)")
    p.add_argument("--fit-shard-grid", action="store_true",
                   help="shrink each mosaic (~1.4 %% at Zurich) so that its grid in the region's local frame is a "
                   "whole number of shards (A km^2 -> A shards of 1 km instead of slivers at two edges)")
    p.add_argument("--json", default=None, metavar="F", help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.json and Path(args.json).exists() and not args.overwrite:
        print(f"error: --json {args.json} exists already; remove it, choose another path or pass --overwrite",
              file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    progress = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        res = run_bench(args.out, args.areas, model=args.model, workers=args.workers, shard_km=args.shard_km,
                        sources=args.sources, seed=args.seed, fit_shard_grid=args.fit_shard_grid, progress=progress)
    except MapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, allow_nan=False), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


__all__ = ["bench_area", "default_sources", "encoder_spec", "fit", "format_report", "main", "projection", "run_bench"]

if __name__ == "__main__":
    sys.exit(main())
