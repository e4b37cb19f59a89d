"""A long simulated flight over a region map, against one map of the same area (the issue-15 measurement).

``python -m runtime.tools.region_flight --out DIR [--length-km 20] [--width-m 600] [--shard-km 4] [--model default]``

Steps (each kept in DIR, so a rerun only redoes what is missing):

1. a synthetic strip ``length x width`` from real orthophotos (:mod:`runtime.tools.synthetic_region`);
2. the strip as a region (``skyfix maps build-region``, a local Ray instance) and as one map (``skyfix maps build``);
3. a simulated flight along the strip (west to east, GPS noise, a GPS outage over the middle third);
4. the flight replayed over the one map, and over the region with two memory bounds (``--cache-mb``), each in its
   own process: peak RSS of the process, the region's shard loads (background) and frame waits (the stall bound),
   and the track's error against the truth (``runtime eval``).

Prints a table and writes JSON (``--json``). Peak RSS of a region replay follows its cache bound, not the region's
size; that of the one map follows the map's size (all its embeddings and imagery).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` in a child process (its output to ``log``); (wall seconds, peak RSS MiB of that child).

    The peak RSS is measured by a small wrapper process whose only child is ``cmd`` (``RUSAGE_CHILDREN``)."""
    wrapper = ("import resource, subprocess, sys\n"
               "rc = subprocess.run(sys.argv[1:]).returncode\n"
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
               "sys.exit(rc)\n")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed (exit {proc.returncode}); see {log}:\n{text[-3000:]}")
    kb = [int(line.split()[1]) for line in text.splitlines() if line.startswith("PEAK_RSS_KB")]
    return wall, (kb[-1] / 1024.0 if kb else math.nan)


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tools.region_flight", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, metavar="DIR")
    ap.add_argument("--sources", nargs="+", default=None, metavar="TIF",
                    help="real orthophotos the strip is made of (default: the shared Swiss ones)")
    ap.add_argument("--length-km", type=float, default=20.0)
    ap.add_argument("--width-m", type=float, default=600.0)
    ap.add_argument("--shard-km", type=float, default=4.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speed", type=float, default=15.0, help="m/s")
    ap.add_argument("--altitude", type=float, default=100.0, help="m above ground")
    ap.add_argument("--cache-mb", type=float, nargs="+", default=[300.0, 1024.0],
                    help="region cache bounds to replay with, MiB")
    ap.add_argument("--stall-ms", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", metavar="OUT.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from runtime.tools.region_bench import default_sources

    sources = args.sources or [str(p) for p in default_sources()]
    L, W = args.length_km * 1000.0, args.width_m
    strip = out / "strip.tif"
    res = {"length_km": args.length_km, "width_m": W, "shard_km": args.shard_km, "model": args.model,
           "speed_mps": args.speed, "altitude_m": args.altitude}
    if not strip.exists():
        from runtime.tools.synthetic_region import write_synthetic_mosaic

        write_synthetic_mosaic(sources, strip, width_m=L, height_m=W, seed=args.seed)
    region, one = out / "strip.region", out / "strip.map"
    if not (region / "region.json").exists():
        wall, rss = _run(_py("runtime.cli.skyfix", "maps", "build-region", str(strip), "-o", str(region),
                             "--shard-km", str(args.shard_km), "--model", args.model, "--workers", str(args.workers)),
                         out / "build_region.log")
        res["build_region"] = {"seconds": wall, "driver_peak_rss_mb": rss}
    if not (one / "manifest.json").exists():
        wall, rss = _run(_py("runtime.cli.skyfix", "maps", "build", str(strip), "-o", str(one), "--model",
                             args.model), out / "build_map.log")
        res["build_map"] = {"seconds": wall, "peak_rss_mb": rss}
    from maps.package import MapPackage
    from maps.region import read_region_manifest
    from runtime.sim.randomize import write_camera_file

    m = read_region_manifest(region)
    res["region"] = {"shards": len(m.shards), "tiles": m.n_tiles, "bytes": sum(s.bytes for s in m.shards),
                     "largest_shard_bytes": max(s.bytes for s in m.shards)}
    single = MapPackage.load(one, hnsw="off")
    res["map"] = {"tiles": single.n_tiles, "bytes": single.summary()["total_bytes"]}
    b = m.bounds_local
    cam = out / "camera.yaml"
    write_camera_file(cam, width=640, height=480, fx=480.0)
    bag = out / "flight.bag"
    # the route follows the band of valid imagery (a strip in another CRS is tilted in the local frame): at each
    # waypoint the valid tiles near it give the band's centre and half width
    pos = single.positions
    margin = 150.0
    x0, x1 = b[0] + margin, b[2] - margin
    n_legs = max(2, int((x1 - x0) // 1000.0))

    def band(x):
        near = pos[np.abs(pos[:, 0] - x) < 100.0, 1]
        lo, hi = np.percentile(near, [2, 98])
        return 0.5 * (lo + hi), max(0.0, 0.5 * (hi - lo) - 60.0)

    east, west = [], []
    for i in range(n_legs + 1):
        x = x0 + (x1 - x0) * i / n_legs
        yc, half = band(x)
        east.append((x, yc - 0.5 * half + (0.2 * half if i % 2 else 0.0)))
        west.append((x, yc + 0.6 * half))
    # eastbound along the south of the band (a gentle zigzag every km), back west along its north: the flight is
    # the eastbound pass (the simulator needs a closed path without hairpins)
    pts = east + west[::-1]
    length = sum(math.hypot(east[i + 1][0] - east[i][0], east[i + 1][1] - east[i][1]) for i in range(n_legs))
    duration = 0.98 * length / args.speed
    res["flight"] = {"length_km": length / 1000.0, "duration_s": duration}
    if not bag.exists():
        wp = out / "waypoints.csv"
        wp.write_text("x,y\n" + "".join(f"{x:.1f},{y:.1f}\n" for x, y in pts))
        t0, t1 = duration / 3.0, 2.0 * duration / 3.0
        wall, _ = _run(_py("runtime.cli.skyfix", "simulate", "--ortho", str(strip), "--camera", str(cam), "--out",
                           str(bag), "--trajectory", "waypoints", "--waypoints", str(wp), "--speed", str(args.speed),
                           "--altitude", str(args.altitude), "--duration", f"{duration:.1f}", "--seed",
                           str(args.seed), "--gps-outage", f"{t0:.0f}:{t1:.0f}", "--quiet"), out / "simulate.log")
        res["flight"]["simulate_s"] = wall
    runs = [("one map", one, None)] + [(f"region {c:g} MiB", region, c) for c in args.cache_mb]
    res["runs"] = []
    for name, mp, cache in runs:
        tag = "map" if cache is None else f"region{int(cache)}"
        track, stats, ev = out / f"{tag}.jsonl", out / f"{tag}.stats.json", out / f"{tag}.eval.json"
        cmd = _py("runtime.cli.onboard", "replay", str(bag), "--map", str(mp), "-o", str(track), "--overwrite",
                  "--model", args.model)
        if cache is not None:
            cmd += ["--region-cache-mb", str(cache), "--shard-stall-ms", str(args.stall_ms), "--region-stats",
                    str(stats)]
        wall, rss = _run(cmd, out / f"{tag}.replay.log")
        _run(_py("runtime.cli.onboard", "eval", str(track), "--truth", str(bag), "--json", str(ev), "--overwrite"),
             out / f"{tag}.eval.log")
        e = json.loads(ev.read_text())
        row = {"name": name, "replay_s": wall, "peak_rss_mb": rss, "eval": e}
        if cache is not None:
            row["region_stats"] = json.loads(stats.read_text())
        res["runs"].append(row)
    _print(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _phase(e: dict, phase: str) -> dict:
    """{median, p95, n} of the estimate's error in ``phase`` of a ``runtime eval --json`` result."""
    d = e["estimate"].get(phase) or {}
    return {"n": d.get("n"), "median": d.get("median_m"), "p95": d.get("p95_m"), "max": d.get("max_m")}


def _print(res: dict) -> None:
    f = res["flight"]
    print(f"flight: {f['length_km']:.1f} km, {f['duration_s']:.0f} s; region {res['region']['shards']} shards, "
          f"{res['region']['tiles']} tiles, {res['region']['bytes'] / 1e6:.0f} MB; one map {res['map']['tiles']} "
          f"tiles, {res['map']['bytes'] / 1e6:.0f} MB")
    print(f"{'run':<18} {'replay s':>9} {'peak RSS MiB':>13} {'all med':>8} {'p95':>6} {'outage med':>11} {'p95':>6} "
          f"{'loads':>6} {'load p99 ms':>12} {'wait p50/p99 ms':>16} {'late':>5}")
    for r in res["runs"]:
        a, o = _phase(r["eval"], "all"), _phase(r["eval"], "outage")
        s = r.get("region_stats")
        extra = ("" if s is None else
                 f"{s['counts']['loads']:>6} {s['load_ms'].get('p99', float('nan')):>12.0f} "
                 f"{s['wait_ms'].get('p50', 0.0):>7.1f}/{s['wait_ms'].get('p99', 0.0):<8.1f} "
                 f"{s['counts']['late_shards']:>5}")
        fmt = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) else "-"
        print(f"{r['name']:<18} {r['replay_s']:>9.0f} {r['peak_rss_mb']:>13.0f} {fmt(a['median']):>8} "
              f"{fmt(a['p95']):>6} {fmt(o['median']):>11} {fmt(o['p95']):>6} {extra}")


if __name__ == "__main__":
    sys.exit(main())
