"""``skyfix demo``: the embedded default end to end, with no user data.

Fetches the default aerial imagery (a NEON 0.1 m crop that PyPI serves, see :mod:`maps.samples`), builds the default
map with the default encoder (the learned model shipped in ``runtime/models``), simulates a 60 m flight over it with
a noisy, biased GPS, an outage and a spoof (a ROS 1 bag), replays the bag through the onboard loop (``runtime
replay``: track as JSONL, GeoJSON and GPX) and evaluates the track against the ground truth (``runtime eval``: the
error table by GPS phase next to GPS alone, and a PNG of the tracks over the map with the error over time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole loop on embedded data: default map, simulated flight, replay, evaluation (no user data)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="skyfix-demo", help="output folder (default: ./skyfix-demo)")
    p.add_argument("--cache", default=None, help="cache folder for the fetched imagery (default $SKYFIX_CACHE or ~/.cache/skyfix)")
    p.add_argument("--duration", type=float, default=120.0, help="flight duration, seconds (default 120)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the flight (default 1)")
    p.add_argument("--model", default="default",
                   help="encoder: 'default' (the shipped learned model), 'classical' or a model file")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage
    from maps.samples import default_orthophoto_path
    from runtime.encoder import load_encoder
    from runtime.tools.evaluation import evaluate_track, plot_track, read_truth_and_gps
    from runtime.tools.scenarios import replay
    from runtime.sim.config import SimConfig, parse_outage, parse_spoof
    from runtime.sim.flight import simulate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    print("[1/5] default imagery (NEON 0.1 m aerial crop from the deepforest wheel on PyPI; georeference assumed, "
          "see README)")
    ortho_path = default_orthophoto_path(args.cache)
    ortho = load_orthophoto(ortho_path)
    x0, y0, x1, y1 = ortho.bounds
    print(f"      {ortho_path}\n      {x1 - x0:.1f} x {y1 - y0:.1f} m at {ortho.gsd:g} m/px")

    print("[2/5] building the default map")
    encoder = load_encoder(args.model)
    contract = encoder.contract
    map_dir = build_map(ortho, encoder, contract, out / "map", overwrite=True)
    package = MapPackage.load(map_dir, verify=True)
    print(f"      {map_dir}: {len(package.positions)} tiles of {contract.tile_size_m[0]:g} m, encoder "
          f"{contract.name} ({contract.encoder_id}, {encoder.name}), verified")

    print("[3/5] simulating a flight (GPS sigma 5 m, bias 3 m, outage 40-70 s, 200 m spoof 90-95 s)")
    outages = tuple(parse_outage(s) for s in ("40:70",) if parse_outage(s)[0] < args.duration)
    spoofs = tuple(parse_spoof(s) for s in ("90:95:200",) if parse_spoof(s)[0] < args.duration)
    config = SimConfig(
        ortho=str(ortho_path),
        out=str(out / "flight.bag"),
        duration_s=args.duration,
        altitude_m=60.0,
        speed_mps=8.0,
        gps_sigma_m=5.0,
        gps_bias_m=3.0,
        gps_outages=outages,
        gps_spoofs=spoofs,
        seed=args.seed,
    )
    summary = simulate(config)
    print("      " + summary.to_text().replace("\n", "\n      "))

    print("[4/5] replaying the flight through the onboard loop (runtime replay)")
    track = out / "track.jsonl"
    t1 = time.perf_counter()
    records, loop = replay(package, encoder, config.out, track)
    from runtime.outputs import write_geojson, write_gpx

    write_geojson(records, track.with_suffix(".geojson"))
    write_gpx(records, track.with_suffix(".gpx"))
    c = loop.counts
    print(f"      {len(records)} estimates in {time.perf_counter() - t1:.1f} s ({c['frames_used']}/{c['frames']} "
          f"frames with a visual fix, {c['gps_rejected']}/{c['gps']} GPS fixes rejected) -> {track}")

    print("[5/5] evaluating against the ground truth (runtime eval)")
    result = evaluate_track(records, config.out, track=str(track))
    print("      " + result.format_table().replace("\n", "\n      "))
    truth, gps = read_truth_and_gps(config.out)
    png = plot_track(records, truth, gps, out / "eval.png", imagery=package.imagery(),
                     title=f"skyfix demo: {contract.name} on {Path(ortho_path).name}")
    (out / "eval.json").write_text(result.to_json())
    print(f"done in {time.perf_counter() - t0:.1f} s: map {map_dir}, flight {config.out}, track {track}, "
          f"plot {png}")
    print(f"next: `runtime replay {config.out} --map {map_dir}`, `runtime eval {track} --truth {config.out}`, "
          f"`runtime bench --map {map_dir}`")
    return 0
