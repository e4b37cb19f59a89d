"""Peak memory of a region map onboard against its size: visit every shard, in its own process per region.

``python -m runtime.tools.region_tour REGION... [--cache-mb 256] [--json OUT.json]``

For each region a child process opens it as the loop does (:class:`maps.region.RegionMap`), flies a serpentine over
the centres of all its shards (at each: ``focus`` on a 200 m scope, the load awaited, one scoped search of 8 queries
taken from the stored embeddings) and reports its peak RSS, the most shard bytes held at once and the load times.
The peak RSS of a region follows ``--cache-mb``, not the number of shards; for comparison the child also reports
the RSS right after importing what the loop imports (the baseline of every run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
import cv2, onnxruntime  # what the loop imports anyway: the baseline
from maps.region import RegionMap
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
path, cache = sys.argv[1], float(sys.argv[2])
t0 = time.perf_counter()
with RegionMap(path, cache_mb=cache, stall_ms=60000.0) as reg:
    g = reg.manifest.shard_grid
    rows = sorted({e.row for e in reg.manifest.shards})
    order = []
    for i, r in enumerate(rows):
        cols = sorted(e.col for e in reg.manifest.shards if e.row == r)
        order += [(r, c) for c in (cols if i % 2 == 0 else cols[::-1])]
    for r, c in order:
        x0, y0, x1, y1 = g.core(r, c)
        scope = (0.5 * (x0 + x1), 0.5 * (y0 + y1), 200.0)
        reg.focus(scope)
        reg.wait_idle()
        reg.focus(scope)
        ld = [l for l in reg._loaded.values() if l.entry.id == g.shard_id(r, c)][0]
        ids = ld.package.scope_ids(scope)
        q = ld.package.embedding(ids[:: max(1, len(ids) // 8)][:8]) if len(ids) else np.zeros((1, reg.contract.embedding_dim), np.float32)
        reg.search(q, 10, scope)
    st = reg.stats()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"region": path, "shards": len(reg.manifest.shards), "tiles": reg.n_tiles,
                  "bytes": sum(s.bytes for s in reg.manifest.shards), "cache_mb": cache, "baseline_rss_mb": base,
                  "peak_rss_mb": peak, "peak_loaded_mb": st["peak_loaded_mb"], "loads": st["counts"]["loads"],
                  "evictions": st["counts"]["evictions"], "load_ms": st["load_ms"],
                  "seconds": time.perf_counter() - t0}))
"""


def tour(region: str, cache_mb: float) -> dict:
    """Run the tour of ``region`` in a child process; its JSON result."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(region), str(cache_mb)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"tour of {region} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tools.region_tour", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("regions", nargs="+", metavar="REGION")
    ap.add_argument("--cache-mb", type=float, nargs="+", default=[256.0])
    ap.add_argument("--json", metavar="OUT.json")
    args = ap.parse_args(argv)
    rows = [tour(r, c) for c in args.cache_mb for r in args.regions]
    print(f"{'region':<40} {'shards':>6} {'tiles':>8} {'size MB':>8} {'cache MiB':>9} {'held MiB':>9} "
          f"{'peak RSS MiB':>12} {'baseline':>9} {'loads':>6} {'load p50/p99 ms':>16}")
    for r in rows:
        lm = r["load_ms"]
        print(f"{Path(r['region']).name:<40} {r['shards']:>6} {r['tiles']:>8} {r['bytes'] / 1e6:>8.0f} "
              f"{r['cache_mb']:>9.0f} {r['peak_loaded_mb']:>9.0f} {r['peak_rss_mb']:>12.0f} {r['baseline_rss_mb']:>9.0f} "
              f"{r['loads']:>6} {lm.get('p50', 0):>7.0f}/{lm.get('p99', 0):<8.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
