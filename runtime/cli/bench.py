"""``skyfix bench``: inference benchmarks. ``skyfix bench encoder MODEL...``: latency and throughput of encoders;
``skyfix bench nmea-fuzz``: the NMEA parser against a million random and mutated inputs (escaped exceptions).

The handler imports numpy and the backends only when it runs, so ``--help`` works without onnxruntime, torch or
tensorrt installed.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add the ``bench`` command group (subcommand ``encoder``) to ``subparsers`` (from ``add_subparsers``)."""
    bench = subparsers.add_parser(
        "bench", help="inference benchmarks (encoder latency and throughput)",
        description="Benchmarks of the onboard inference path.",
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser(
        "encoder", help="latency p50/p90/p99 and throughput of encoder models, compared in one run (table + JSON)",
        description="Load each model on its backend, feed random inputs built from its input specs (uint8 or "
                    "float32 as declared; image size from its encoder contract or --input-size), warm up, then time "
                    "all models interleaved (round robin) so machine noise hits them alike. Reports latency "
                    "p50/p90/p99 (ms per call), throughput (images/s = batch * 1000 / p50) and the speed ratio vs "
                    "the first model, e.g. `skyfix bench encoder fp32.onnx int8.onnx --batch 1,16`.",
    )
    e.add_argument("models", nargs="+", metavar="MODEL",
                   help="model file(s): .onnx, .engine/.plan, .pt/.pth/.ts/.pt2; the first is the reference")
    e.add_argument("--compare", nargs="+", default=[], metavar="OTHER", help="more models to compare with MODEL")
    e.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "torch", "tensorrt"],
                   help="backend for every model (default auto: by file type)")
    e.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (default auto); torch models on CUDA run under CUDA graphs and are "
                        "timed with synchronised torch.cuda.Event pairs, the others by the wall clock")
    e.add_argument("--batch", default="1", metavar="N[,N...]",
                   help="batch sizes for dynamic-batch models, e.g. 1,8,16 (default 1); fixed-batch models use theirs")
    e.add_argument("--warmup", type=int, default=10, metavar="N", help="warm-up calls per model and batch (default 10)")
    e.add_argument("--iterations", type=int, default=100, metavar="N",
                   help="timed calls per model and batch (default 100)")
    e.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU intra-op threads per model (default 0: every CPU this process may use)")
    e.add_argument("--input-size", metavar="HxW", help="image size for dynamic spatial dimensions, e.g. 224 or 240x320 "
                   "(default: the model's encoder contract)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    e.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-' for stdout)")
    e.set_defaults(handler=_encoder)
    f = sub.add_parser(
        "nmea-fuzz", help="fuzz the NMEA parser (random and mutated sentences); reports escaped exceptions",
        description="Feed the NMEA parser N random and mutated inputs (valid sentences, hostile field values such as "
                    "HDOP 1e308 with a valid checksum, flipped bytes, 10k-character lines, binary, unicode) and "
                    "report escaped exceptions (must be 0), counted skips by reason and throughput (table + JSON). "
                    "Exit status 1 when anything escaped, e.g. `skyfix bench nmea-fuzz --inputs 1000000`.",
    )
    f.add_argument("--inputs", type=int, default=1_000_000, metavar="N", help="number of inputs (default 1000000)")
    f.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    f.add_argument("--json", metavar="PATH", help="also write the report as JSON here ('-' for stdout)")
    f.set_defaults(handler=_nmea_fuzz)


def _err(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _write_json(result: dict, dest: str | None) -> None:
    """``--json DEST``: the results as JSON to a file, or to stdout for ``-``; nothing without it."""
    import json

    if not dest:
        return
    text = json.dumps(result, indent=2)
    if dest == "-":
        print(text)
        return
    with open(dest, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    _err(f"results written to {dest}")


def _nmea_fuzz(args: argparse.Namespace) -> int:
    from ..errors import OnboardError
    from ..tools.nmea_fuzz import format_report, run_fuzz

    if args.inputs < 1 or args.inputs > 100_000_000:
        raise OnboardError(f"--inputs must be 1 to 100000000, got {args.inputs}")
    result = run_fuzz(args.inputs, seed=args.seed, parser_every=5_000, log=_err if args.inputs >= 200_000 else None)
    print(format_report(result))
    _write_json(result, args.json)
    return 1 if result["escaped_exceptions"] or result["internal_errors"] or result["bad_fixes"] else 0


def _encoder(args: argparse.Namespace) -> int:
    from ..tools.bench_encoder import BenchConfig, format_table, parse_batches, parse_input_size, run_bench

    config = BenchConfig(
        batches=parse_batches(args.batch),
        warmup=args.warmup,
        iterations=args.iterations,
        backend=args.backend,
        device=args.device,
        threads=args.threads,
        input_size=parse_input_size(args.input_size) if args.input_size else None,
        seed=args.seed,
    )
    result = run_bench(list(args.models) + list(args.compare), config, log=_err)
    print(format_table(result))
    _write_json(result, args.json)
    return 0
