"""``runtime bench --map MAP``: per-stage latency of the onboard loop on this machine, as a table and JSON.

Frames come from a recording (``--bag``) or, without one, are rendered from the map's own imagery
(:func:`synthetic_events`: the default 640x480 camera at 60 m on a straight line across the map, JPEG-encoded as a
camera driver would deliver them, with a GPS fix per frame at the true position). Each frame goes through the whole
loop (:class:`runtime.localizer.Localizer`): decode, rectify, encode, search, align, filter. Reported: p50/p90/p99
per stage in milliseconds, frames per second (1000 / median total, and frames / wall time), and the peak resident
memory of the process. The first ``--warmup`` frames are not counted.

With ``--device cuda`` (or ``torch:cpu``) the rectify, search and align stages run in torch (:mod:`runtime.gpu`) and
a second table gives their device time per frame (p50/p90/p99: ``torch.cuda.Event`` pairs on CUDA, the wall clock
on the CPU); the first table's stage times are host wall time, which includes the device work (each stage reads
its result back).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..localizer import STAGES


def register(subparsers) -> None:
    from ..cli.replay import add_model_args

    p = subparsers.add_parser("bench", help="per-stage latency of the onboard loop (table + JSON)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--bag", default=None, metavar="BAG", help="recording to take frames and GPS from (default: frames "
                   "rendered from the map imagery)")
    p.add_argument("--frames", type=int, default=200, help="frames to time (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="frames run before timing (default 10)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.set_defaults(handler=run)


def synthetic_events(package, n: int, *, height_m: float = 60.0, speed_mps: float = 8.0, rate_hz: float = 5.0,
                     seed: int = 0):
    """Frames (JPEG) + GPS fixes rendered from the map imagery along a straight line through the map centre.

    Returns a list of events in time order. Raises :class:`runtime.localizer.LocalizerError` when the map stores no
    imagery.
    """
    from calibration.camera_io import default_camera
    from calibration.geometry import Attitude
    from calibration.view import render

    from ..bags.images import encode_jpeg
    from ..events import Frame, GpsFix
    from ..localizer import LocalizerError

    imagery = package.imagery()
    if imagery is None:
        raise LocalizerError(f"map {package.path} stores no imagery to render frames from; pass --bag RECORDING")
    cam = default_camera()
    x0, y0, x1, y1 = package.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(1.0, min(x1 - x0, y1 - y0) / 2 - 40.0)
    yaw = math.atan2(y1 - y0, x1 - x0)
    dt = 1.0 / rate_hz
    events = []
    t0 = 1_700_000_000_000_000_000
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = (i * speed_mps * dt) % (2 * half) - half
        x, y = cx + s * math.cos(yaw), cy + s * math.sin(yaw)
        t = t0 + int(round(i * dt * 1e9))
        img, _ = render(imagery, cam, (x, y), height_m, Attitude(0.0, 0.0, yaw))
        lat, lon = package.frame.to_wgs84(x + rng.normal(0, 3), y + rng.normal(0, 3))
        alt = package.ground_elevation_m + height_m
        cov = np.diag([25.0, 25.0, 100.0])
        events.append(GpsFix(t_ns=t - 1_000_000, lat=float(lat), lon=float(lon), alt=float(alt), cov_enu=cov))
        events.append(Frame(t_ns=t, image=encode_jpeg(img), camera=cam))
    return events


def bag_events(path, n: int):
    from ..bags import BagReader
    from ..events import Frame

    out, frames = [], 0
    with BagReader(path) as bag:
        for ev in bag.events(roles=("camera", "camera_info", "gps", "imu")):
            out.append(ev)
            frames += isinstance(ev, Frame)
            if frames >= n:
                break
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB (NaN where the platform cannot tell)."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
    except (ImportError, OSError):
        return math.nan


def bench(loop, events, warmup: int) -> dict:
    """Run ``events`` through ``loop``; per-stage percentiles over the frames after the first ``warmup``."""
    from ..events import Frame

    rows: list[dict] = []
    frames = 0
    t_wall = None
    for ev in events:
        out = loop.process(ev)
        if isinstance(ev, Frame):
            frames += 1
            if frames == warmup:
                t_wall = time.perf_counter()
            if frames > warmup and out is not None and out.source == "frame":
                rows.append(out.latency_ms)
    wall = time.perf_counter() - t_wall if t_wall is not None else math.nan
    if not rows:
        from ..localizer import LocalizerError

        raise LocalizerError(f"no frame produced an estimate after {warmup} warm-up frames ({frames} frames); "
                             f"notes: {loop.notes}")
    stages = {}
    for s in STAGES:
        v = np.array([r[s] for r in rows])
        stages[s] = {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
                     "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}
    return {"frames": len(rows), "stages_ms": stages, "fps_from_median": 1000.0 / stages["total"]["p50"],
            "fps_wall": len(rows) / wall if wall and wall > 0 else math.nan, "peak_rss_mb": peak_rss_mb(),
            "frames_with_visual_fix": loop.counts["frames_used"]}


def format_table(result: dict) -> str:
    lines = [f"{'stage':10s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}"]
    for s, v in result["stages_ms"].items():
        lines.append(f"{s:10s} {v['p50']:8.2f} {v['p90']:8.2f} {v['p99']:8.2f}")
    lines.append(f"frames {result['frames']}: {result['fps_from_median']:.1f} fps (1000 / median total), "
                 f"{result['fps_wall']:.1f} fps wall incl. GPS/IMU events; peak RSS {result['peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


def format_device_table(result: dict) -> str:
    """The torch stages' device time per stage (``result["device_stages_ms"]``, from :mod:`runtime.gpu.timing`)."""
    how = "torch.cuda.Event" if str(result.get("device", "")).startswith("cuda") else "wall clock"
    lines = [f"device {result.get('device')} ({how}, per frame)", f"{'stage':10s} {'p50 ms':>8s} {'p90 ms':>8s} "
             f"{'p99 ms':>8s}"]
    for s, v in result["device_stages_ms"].items():
        lines.append(f"{s:10s} {v['p50']:8.2f} {v['p90']:8.2f} {v['p99']:8.2f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import platform

    from ..cli.replay import load_loop

    loop, package, encoder = load_loop(args)
    n = args.frames + args.warmup
    events = bag_events(args.bag, n) if args.bag else synthetic_events(package, n)
    result = bench(loop, events, args.warmup)
    if loop.stages is not None:  # the torch stages: device time per stage (torch.cuda.Event pairs on CUDA)
        result["device"] = str(loop.stages.device)
        result["device_stages_ms"] = loop.stages.clock.summary(skip_frames=args.warmup)
    result.update({"map": str(args.map), "model": encoder.name, "encoder_id": encoder.contract.encoder_id,
                   "backend": getattr(encoder.backend, "name", "numpy"), "source": args.bag or "rendered from map",
                   "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}})
    print(format_table(result))
    if result.get("device_stages_ms"):
        print(format_device_table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0
