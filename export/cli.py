"""``skyfix export ...``: model export commands (``engine``: ONNX -> TensorRT engine + sidecar JSON).

Handlers import tensorrt/onnx only when they run, so ``--help`` works without any extra installed.
"""

from __future__ import annotations

import argparse


def _batch(text: str):
    from runtime.errors import BackendError

    from .engine import parse_batch

    try:
        return parse_batch(text)
    except BackendError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _mib(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of MiB, got {text!r}")
    return int(text)


def register(subparsers) -> None:
    """Add the ``export`` group (``export engine``) to a ``skyfix`` subparsers object."""
    group = subparsers.add_parser("export", help="export models (TensorRT engines)",
                                  description="Export trained encoders for onboard inference.")
    sub = group.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    p = sub.add_parser(
        "engine",
        help="build a TensorRT engine (+ sidecar JSON) from an ONNX encoder",
        description=(
            "Build a TensorRT engine from an ONNX encoder on this GPU, with one optimization profile over the batch "
            "size and a reusable timing cache. Writes ENGINE and ENGINE.json (TensorRT version, GPU, compute "
            "capability, precision, ONNX SHA-256); the engine only runs on the same TensorRT version and GPU model. "
            "Precision: an fp16 or Q/DQ ONNX builds strongly typed; --fp16 on an fp32 ONNX uses BuilderFlag.FP16 "
            "(TensorRT 10.x; 11.x removed it: convert the ONNX with ModelOpt AutoCast first). "
            "Needs `pip install 'skyfix[trt]'` (or JetPack's TensorRT)."
        ),
    )
    p.add_argument("onnx", metavar="ONNX", help="encoder .onnx (dynamic batch on dimension 0)")
    p.add_argument("-o", "--output", metavar="ENGINE", help="output engine (default: ONNX with suffix .engine)")
    p.add_argument("--batch", type=_batch, default="1:1:1", metavar="MIN:OPT:MAX",
                   help="batch sizes of the optimization profile, e.g. 1:4:16, or one size N (default 1:1:1)")
    p.add_argument("--workspace", type=_mib, default=1024, metavar="MiB",
                   help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--fp16", action="store_true", help="run an fp32 ONNX in FP16 (TensorRT 10.x BuilderFlag.FP16)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache to reuse and update (speeds up rebuilds)")
    p.add_argument("--device", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    p.set_defaults(handler=run_engine)


def run_engine(args: argparse.Namespace) -> int:
    """Handler of ``skyfix export engine``."""
    from pathlib import Path

    from runtime.errors import BackendError

    from .engine import build_engine

    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    output = Path(args.output) if args.output else onnx_path.with_suffix(".engine")
    sidecar = build_engine(onnx_path, output, args.batch, workspace_mib=args.workspace, fp16=args.fp16,
                           timing_cache=args.timing_cache, device_index=args.device)
    print(f"wrote {output} and {output.name}.json ({sidecar.precision}, TensorRT {sidecar.tensorrt_version}, "
          f"{sidecar.gpu_name}, sm {sidecar.compute_capability})")
    return 0
