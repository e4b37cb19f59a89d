"""``skyfix export ...``: model export commands (``onnx``: checkpoint -> ONNX [+ FP16 / INT8 Q/DQ]; ``quantize``:
an exported ONNX (FP32 or FP16) -> INT8 Q/DQ; ``torch``: checkpoint -> torch.export program (.pt2, FP32/FP16/BF16);
``engine``: ONNX -> TensorRT engine + sidecar JSON).

Handlers import tensorrt/onnx only when they run, so ``--help`` works without any extra installed.
"""

from __future__ import annotations

import argparse

from .errors import ExportError
from .extras import needs_extras

#: Typed errors the `skyfix` CLI turns into one-line messages.
ERRORS = (ExportError,)


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (0.02 = 2 points of R@1), got {text!r}")
    return value


def _opset(text: str) -> int:
    if not text.isdigit() or int(text) < 18:
        raise argparse.ArgumentTypeError(f"expected an ONNX opset >= 18, got {text!r}")
    return int(text)


def register(subparsers) -> None:
    """Add the ``export`` group (``onnx``, ``quantize``, ``torch``, ``engine``) to a ``skyfix`` subparsers object."""
    group = subparsers.add_parser("export", help="export models (ONNX, FP16/INT8, torch.export, TensorRT engines)",
                                  description="Export trained encoders for onboard inference.")
    sub = group.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    _register_onnx(sub)
    _register_quantize(sub)
    _register_torch(sub)
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


@needs_extras("skyfix export engine")
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


def _register_torch(sub) -> None:
    p = sub.add_parser(
        "torch",
        help="export a checkpoint's encoder as a torch.export program (.pt2) for GPUs without TensorRT",
        description=(
            "Export the encoder of a SkyFix checkpoint as a torch.export program (.pt2) with a dynamic batch "
            "dimension, run by the torch backend (CUDA graphs per batch size on CUDA). Same I/O as `skyfix export "
            "onnx`: images uint8[N, H, W, 3] RGB (NHWC), normalised inside the program; embedding float32[N, d] unit "
            "rows; the contract rides in the archive as skyfix.json. --fp16/--bf16: weights and compute in "
            "float16/bfloat16 (GeM, NetVLAD and the L2 norm stay float32; I/O unchanged). Parity with the float32 "
            "PyTorch encoder is checked at batch 1 and 3: max abs diff <= 1e-4 (fp32), <= 1e-2 and cosine >= 0.999 "
            "(fp16), <= 5e-2 and cosine >= 0.995 (bf16). Separate weights with --branch both give "
            "OUTPUT-STEM.camera.pt2 and OUTPUT-STEM.aerial.pt2. Load it with the same torch version as exported."
        ),
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="SkyFix encoder checkpoint (.pt from `skyfix train`)")
    p.add_argument("-o", "--output", required=True, metavar="PT2", help="output .pt2 path")
    p.add_argument("--branch", choices=("camera", "aerial", "both"), default="both",
                   help="branch(es) to export when weights are separate (default both; shared weights: one file)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="weights and compute in float16 (I/O unchanged)")
    precision.add_argument("--bf16", action="store_true", help="weights and compute in bfloat16 (I/O unchanged)")
    p.set_defaults(handler=run_torch)


@needs_extras("skyfix export torch")
def run_torch(args: argparse.Namespace) -> int:
    """Handler of ``skyfix export torch``."""
    from .torch_export import TorchExportError, export_torch

    if args.fp16 and args.bf16:  # argparse refuses both already; a Namespace built elsewhere may not
        raise TorchExportError("--fp16 and --bf16 exclude each other; pick one precision")
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    for r in export_torch(args.checkpoint, args.output, branch=args.branch, precision=precision):
        print(f"wrote {r.path} ({r.branch}, {r.precision}, parity vs torch fp32: max |diff| = {r.max_abs_diff:.2e}, "
              f"min cosine = {r.min_cosine:.6f})")
    return 0


def _register_onnx(sub) -> None:
    p = sub.add_parser(
        "onnx",
        help="export a checkpoint's encoder to ONNX (+ FP16 / INT8 Q/DQ variants)",
        description=(
            "Export the encoder of a SkyFix checkpoint to ONNX (opset >= 18, dynamic batch) with its preprocessing "
            "contract in metadata_props (skyfix.* keys; skyfix_export.* for the input layout, branch, precision). "
            "Input: images uint8[N, H, W, 3] RGB (NHWC), normalised inside the graph; output: embedding "
            "float32[N, d] unit rows. Parity with PyTorch (max abs diff <= 1e-4) is checked. Shared weights give one "
            "file; separate weights with --branch both give OUTPUT-STEM.camera.onnx and OUTPUT-STEM.aerial.onnx "
            "(maps are built with the aerial one, the runtime encodes camera views with the camera one). "
            "--fp16 adds *.fp16.onnx; --int8 adds *.int8-s8.onnx (symmetric, for TensorRT) or *.int8-u8s8.onnx "
            "(uint8 activations, fast with ONNX Runtime on CPUs), calibrated on --calib images, and refused when its "
            "R@1 on a retrieval check falls more than --max-r1-drop below FP32."
        ),
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="SkyFix encoder checkpoint (.pt from `skyfix train`)")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="output .onnx path")
    p.add_argument("--branch", choices=("camera", "aerial", "both"), default="both",
                   help="branch(es) to export when weights are separate (default both; shared weights: one file)")
    p.add_argument("--opset", type=_opset, default=18, metavar="N", help="ONNX opset, >= 18 (default 18)")
    p.add_argument("--fp16", action="store_true", help="also write a float16 model (I/O unchanged)")
    _add_int8_args(p, required=False)
    p.set_defaults(handler=run_onnx)


def _add_int8_args(p, required: bool) -> None:
    p.add_argument("--int8", choices=("s8", "u8s8"), action="append", metavar="{s8,u8s8}", required=required,
                   help=("write" if required else "also write") + " an INT8 Q/DQ model: s8 (TensorRT) or u8s8 "
                        "(ONNX Runtime CPU); repeatable")
    p.add_argument("--calib", metavar="DIR", required=required,
                   help="calibration images or orthophotos (tiled) for --int8; a few hundred images recommended")
    p.add_argument("--eval", metavar="DIR", help="images for the INT8 retrieval check (default: the --calib images)")
    p.add_argument("--calib-method", choices=("percentile", "minmax", "entropy"), default="percentile",
                   help="INT8 activation-range calibration (default percentile = 99.99th percentile of the "
                        "calibration activations; minmax = their full range; entropy = KL threshold)")
    p.add_argument("--keep-float", action="append", default=None, metavar="NODE",
                   help="leave these nodes unquantized in --int8 models: 'stem' (the Conv reading the normalised "
                        "image), an ONNX node name, or an op type such as Gemm (all of them); repeatable or "
                        "comma-separated; default: stem; 'none' quantizes every Conv/Gemm/MatMul")
    p.add_argument("--max-r1-drop", type=_fraction, default=0.02, metavar="F",
                   help="refuse an INT8 model whose R@1 drops more than this fraction below FP32 (default 0.02)")


def _register_quantize(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8 Q/DQ variants of an exported ONNX encoder (FP32, or FP16 such as the shipped model)",
        description=(
            "Quantize an encoder already exported to ONNX (skyfix export onnx) to INT8 Q/DQ: s8 (symmetric, for "
            "TensorRT) or u8s8 (uint8 activations, fast with ONNX Runtime on CPUs), calibrated on --calib images, "
            "and refused when its R@1 on a retrieval check falls more than --max-r1-drop below FP32. A float16 "
            "model (e.g. runtime/models/skyfix-default.onnx) is first upcast to float32 with the same weights; "
            "that upcast is the FP32 reference. Writes OUTPUT, or MODEL-STEM.int8-MODE.onnx beside the model."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="encoder .onnx from `skyfix export onnx` (fp32 or fp16)")
    p.add_argument("-o", "--output", metavar="ONNX",
                   help="output .onnx (one --int8 mode only; default MODEL-STEM.int8-MODE.onnx)")
    p.add_argument("--fp32", metavar="ONNX", help="also keep the float32 upcast of a float16 MODEL here")
    _add_int8_args(p, required=True)
    p.set_defaults(handler=run_quantize)


def _keep_float(args) -> list:
    from .quantize import DEFAULT_KEEP_FLOAT

    return DEFAULT_KEEP_FLOAT if args.keep_float is None else [
        name.strip() for entry in args.keep_float for name in entry.split(",") if name.strip() not in ("", "none")]


def _quantize_all(src, base: str, args, calib, evals, outputs=None) -> None:
    import sys
    import warnings
    from pathlib import Path

    from .quantize import quantize_int8

    for mode in args.int8 or []:
        out = Path(outputs[mode]) if outputs else Path(f"{base}.int8-{mode}.onnx")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = quantize_int8(src, out, mode, calib, max_r1_drop=args.max_r1_drop, eval_images=evals,
                                   calib_method=args.calib_method, keep_float=_keep_float(args))
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(f"wrote {out} ({report.summary()})")


@needs_extras("skyfix export quantize")
def run_quantize(args: argparse.Namespace) -> int:
    """Handler of ``skyfix export quantize``."""
    import tempfile
    from pathlib import Path

    from maps.contract import EncoderContract

    from .onnx_export import EXTRA_PREFIX, read_metadata
    from .quantize import QuantizationError, load_images, upcast_fp16

    model = Path(args.model)
    if not model.is_file():
        raise QuantizationError(f"model {model} does not exist; give an encoder .onnx from `skyfix export onnx`")
    modes = list(dict.fromkeys(args.int8))
    if args.output and len(modes) > 1:
        raise QuantizationError(f"-o names one file but --int8 asks for {len(modes)} modes ({', '.join(modes)}); "
                                "drop -o (files are named MODEL-STEM.int8-MODE.onnx) or ask for one mode")
    args.int8 = modes
    try:
        meta = read_metadata(model)
        contract = EncoderContract.from_metadata(meta)
    except Exception as exc:  # noqa: BLE001 - not an ONNX file, or no contract
        raise QuantizationError(f"{model} is not a SkyFix encoder ONNX (skyfix.* metadata): {exc}") from exc
    size = contract.input_width
    calib = load_images(args.calib, size)
    evals = load_images(args.eval, size) if args.eval else calib
    outputs = {modes[0]: args.output} if args.output else None
    base = str(model.with_suffix(""))
    if meta.get(EXTRA_PREFIX + "precision") == "fp16":
        with tempfile.TemporaryDirectory(prefix="skyfix-upcast-") as tmp:
            src = Path(args.fp32) if args.fp32 else Path(tmp) / "fp32.onnx"
            upcast_fp16(model, src)
            print(f"upcast {model} (fp16) to fp32{f' in {src}' if args.fp32 else ''}: the FP32 reference")
            _quantize_all(src, base, args, calib, evals, outputs)
    else:
        if args.fp32:
            raise QuantizationError(f"--fp32 keeps the upcast of a float16 model, but {model} is "
                                    f"{meta.get(EXTRA_PREFIX + 'precision', 'fp32')}")
        _quantize_all(model, base, args, calib, evals, outputs)
    return 0


@needs_extras("skyfix export onnx")
def run_onnx(args: argparse.Namespace) -> int:
    """Handler of ``skyfix export onnx``."""
    import sys
    import warnings
    from pathlib import Path

    from .onnx_export import export_onnx
    from .quantize import QuantizationError

    if args.int8 and not args.calib:
        raise QuantizationError("--int8 needs --calib DIR (a folder of calibration images or orthophotos)")
    results = export_onnx(args.checkpoint, args.output, branch=args.branch, opset=args.opset)
    for r in results:
        print(f"wrote {r.path} ({r.branch}, fp32, parity max |onnx - torch| = {r.max_abs_diff:.2e})")
    if not (args.fp16 or args.int8):
        return 0
    from maps.contract import EncoderContract

    from .quantize import convert_fp16, fp16_report, load_images

    size = EncoderContract.from_metadata(results[0].metadata).input_width
    calib = load_images(args.calib, size) if args.calib else None
    evals = load_images(args.eval, size) if args.eval else calib
    for r in results:
        base = r.path.with_suffix("")
        if args.fp16:
            out = convert_fp16(r.path, Path(f"{base}.fp16.onnx"))
            line = f"wrote {out}"
            if evals is not None:
                line += " (" + fp16_report(r.path, out, evals).summary() + ")"
            print(line)
        _quantize_all(r.path, str(base), args, calib, evals)
    return 0
