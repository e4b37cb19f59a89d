"""``runtime eval TRACK.jsonl --truth BAG``: a track's error against the bag's ground truth, by GPS phase."""

from __future__ import annotations

import argparse

from ..tools.evaluation import EvaluationError
from ..outputs import OutputError

#: Typed errors of this group (both are OnboardErrors; declared for the CLI plumbing).
ERRORS = (OutputError, EvaluationError)


def register(subparsers) -> None:
    """Add ``eval`` to a ``runtime`` subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="error statistics of a track against a bag's ground truth (by GPS phase, next to GPS alone)",
        description=(
            "Compare a track.jsonl written by the onboard loop with the ground truth of the bag it ran on "
            "(/ground_truth/fix): horizontal error per GPS phase (gps_ok, outage, spoof, all) as n, median, p95, "
            "max and share within 1/3/10 m, the same for GPS alone, convergence, heading, status counts and "
            "latency. Optionally a PNG with the tracks over the map imagery and the error over time."
        ),
    )
    p.add_argument("track", metavar="TRACK.jsonl", help="the track written by the onboard loop")
    p.add_argument("--truth", required=True, metavar="BAG",
                   help="the bag the track was computed from (with ground truth), or the photo folder (its EXIF GPS "
                        "is the reference: itself a few metres off)")
    p.add_argument("--map", metavar="MAP", help="map package folder (its imagery) or a GeoTIFF, drawn under --plot")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG: tracks over the map, error over time")
    p.add_argument("--json", metavar="OUT.json", help="write the statistics as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing --plot / --json files")
    p.add_argument("--gps-topic", metavar="TOPIC", help="GPS topic (default: found by message type)")
    p.add_argument("--truth-fix-topic", metavar="TOPIC", help="ground-truth NavSatFix topic (default: found by name)")
    p.add_argument("--spoof-m", type=float, default=50.0, metavar="M",
                   help="a GPS fix farther than this from the truth is spoofed (default 50)")
    p.add_argument("--outage-s", type=float, default=1.0, metavar="S",
                   help="a GPS gap longer than this (and 2.5 fix intervals) is an outage (default 1)")
    p.add_argument("--converge-m", type=float, default=6.0, metavar="M",
                   help="convergence threshold: the error stays within it (default 6)")
    p.set_defaults(handler=run)


def load_imagery(path):
    """An :class:`maps.ortho.Orthophoto` from a map package folder or a GeoTIFF file.

    Raises:
        OutputError: the path does not exist or the map has no stored imagery. MapError: the map cannot be read.
    """
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        from maps.package import MapPackage

        ortho = MapPackage.load(path, hnsw="off").imagery()
        if ortho is None:
            raise OutputError(
                f"map {path} stores no imagery to draw under the plot; rebuild it with imagery or pass the GeoTIFF"
            )
        return ortho
    if path.is_file():
        from maps.geotiff import load_orthophoto

        return load_orthophoto(path)
    raise OutputError(f"--map {path} does not exist (expected a map package folder or a GeoTIFF)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..tools.evaluation import evaluate_events, plot_track, read_truth_and_gps
    from ..outputs import read_track

    kw = dict(outage_s=args.outage_s, spoof_m=args.spoof_m, converge_m=args.converge_m)
    for name in kw:
        v = kw[name]
        if not v > 0:
            raise EvaluationError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    records = read_track(args.track)
    topics = {}
    if args.gps_topic:
        topics["gps"] = args.gps_topic
    if args.truth_fix_topic:
        topics["truth_fix"] = args.truth_fix_topic
    imagery = load_imagery(args.map) if args.map else None
    for flag, out in (("--plot", args.plot), ("--json", args.json)):
        if not out:
            continue
        if not Path(out).resolve().parent.is_dir():
            raise OutputError(f"cannot write {out}: folder {Path(out).parent} does not exist; create it first")
        if Path(out).is_dir():
            raise OutputError(f"cannot write {flag} {out}: it is a folder; choose a file path")
        if Path(out).exists() and not getattr(args, "overwrite", False):
            raise OutputError(f"{flag} {out} exists already; remove it, choose another path or pass --overwrite")
    truth, gps = read_truth_and_gps(args.truth, topics=topics)
    frame = imagery.frame if imagery is not None else None
    result = evaluate_events(records, truth, gps, track=args.track, bag=args.truth, frame=frame, **kw)
    print(result.format_table())
    if args.json:
        try:
            Path(args.json).write_text(result.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {args.json}: {exc}") from exc
        print(f"wrote {args.json}")
    if args.plot:
        plot_track(records, truth, gps, args.plot, imagery, frame=frame, **kw)
        print(f"wrote {args.plot}")
    return 0
