"""Build a TensorRT engine from an ONNX encoder (``skyfix export engine``).

One optimization profile over the batch dimension (``--batch MIN:OPT:MAX``), a workspace limit, a timing cache file
reused across builds, and a precision policy that works on TensorRT 10.x (JetPack 6: 10.3) and 11.x:

* an ONNX with Q/DQ nodes or fp16 tensors carries its own precision: build it strongly typed (the network flag on
  10.x; always on in 11.x);
* an fp32 ONNX asked to run in FP16 uses ``BuilderFlag.FP16`` where it exists (10.x); 11.x removed it (and INT8 /
  calibrators), so there the ONNX must be converted first (ModelOpt AutoCast) and the build says so.

Next to the engine goes a sidecar JSON (:class:`runtime.backends.tensorrt_backend.EngineSidecar`). ``tensorrt``,
``onnx`` and CUDA bindings are imported inside functions only; the parsing/policy helpers are pure Python.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BackendError

PRECISIONS = ("fp32", "fp16", "qdq")


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes of the optimization profile: ``min <= opt <= max``, all >= 1."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not (1 <= self.min <= self.opt <= self.max):
            raise BackendError(
                f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {self.min}:{self.opt}:{self.max} "
                "(e.g. --batch 1:4:16)"
            )


def parse_batch(text: str) -> BatchRange:
    """``"1:4:16"`` -> BatchRange(1, 4, 16); ``"8"`` -> BatchRange(8, 8, 8).

    Raises:
        BackendError: not one or three positive integers separated by ':' in non-decreasing order.
    """
    parts = str(text).strip().split(":")
    if len(parts) not in (1, 3) or not all(p.strip().isdigit() for p in parts):
        raise BackendError(f"--batch expects MIN:OPT:MAX (e.g. 1:4:16) or one size N, got {text!r}")
    values = [int(p) for p in parts]
    return BatchRange(*(values * 3 if len(values) == 1 else values))


def profile_shapes(name: str, shape, batch: BatchRange) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """min/opt/max shapes of an input whose shape (from the ONNX) may have a dynamic batch dimension 0.

    Args:
        name: input name (for messages).
        shape: dims as parsed by TensorRT, -1 (or None/str) for dynamic, e.g. (-1, 3, 224, 224).
        batch: the profile's batch range.

    Raises:
        BackendError: a dynamic dimension other than the batch, a scalar input, or a fixed batch outside the range.
    """
    dims = [-1 if d is None or isinstance(d, str) or int(d) < 0 else int(d) for d in shape]
    if not dims:
        raise BackendError(f"input {name!r} is a scalar; an encoder input needs a batch dimension [n, ...]")
    dynamic = [i for i, d in enumerate(dims) if d < 0 and i > 0]
    if dynamic:
        raise BackendError(
            f"input {name!r} has shape {tuple(dims)} with dynamic dimensions {dynamic} besides the batch; re-export "
            "the ONNX with a fixed input size (`skyfix export onnx` fixes height/width from the encoder contract)"
        )
    rest = tuple(dims[1:])
    if dims[0] >= 0:
        if not (batch.min <= dims[0] <= batch.max):
            raise BackendError(
                f"input {name!r} has a fixed batch of {dims[0]}, outside --batch {batch.min}:{batch.opt}:{batch.max}; "
                f"use --batch {dims[0]} or export the ONNX with a dynamic batch"
            )
        fixed = (dims[0],) + rest
        return fixed, fixed, fixed
    return (batch.min,) + rest, (batch.opt,) + rest, (batch.max,) + rest


@dataclass(frozen=True)
class PrecisionPlan:
    """How to ask TensorRT for the precision.

    Attributes:
        precision: "fp32", "fp16" or "qdq" (recorded in the sidecar).
        strongly_typed: build a strongly typed network (types come from the ONNX).
        network_flags: names of ``trt.NetworkDefinitionCreationFlag`` members to set.
        builder_flags: names of ``trt.BuilderFlag`` members to set.
        note: one line explaining the decision (printed by the CLI).
    """

    precision: str
    strongly_typed: bool
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    note: str


def plan_precision(onnx_precision: str, want_fp16: bool, builder_flags, network_flags,
                   tensorrt_version: str = "?") -> PrecisionPlan:
    """Decide the precision flags from the ONNX's own precision and what this TensorRT offers (feature detection).

    Args:
        onnx_precision: "fp32", "fp16" (fp16 tensors in the graph) or "qdq" (Quantize/DequantizeLinear nodes).
        want_fp16: ``--fp16``: run an fp32 graph in FP16.
        builder_flags: names in ``trt.BuilderFlag`` (``FP16`` present on 10.x, absent on 11.x).
        network_flags: names in ``trt.NetworkDefinitionCreationFlag`` (``STRONGLY_TYPED`` on 10.x).
        tensorrt_version: for messages.

    Raises:
        BackendError: an fp32 ONNX with ``--fp16`` on a TensorRT without ``BuilderFlag.FP16`` (11.x), or an unknown
            ``onnx_precision``.
    """
    if onnx_precision not in PRECISIONS:
        raise BackendError(f"ONNX precision must be one of {PRECISIONS}, got {onnx_precision!r}")
    builder_flags, network_flags = set(builder_flags), set(network_flags)
    weak_typing = "FP16" in builder_flags  # 11.x removed the precision flags: strong typing is always on there
    strong_flag = ("STRONGLY_TYPED",) if "STRONGLY_TYPED" in network_flags else ()
    if onnx_precision in ("fp16", "qdq"):
        note = f"the ONNX carries its precision ({onnx_precision}); building strongly typed"
        if want_fp16 and onnx_precision == "qdq":
            note += " (--fp16 ignored: a Q/DQ graph's types come from the ONNX)"
        if strong_flag or not weak_typing:
            return PrecisionPlan(onnx_precision, True, strong_flag, (), note)
        # a TensorRT with precision flags but no strong typing (not expected for >= 10): enable the graph's types
        flags = ("FP16",) if onnx_precision == "fp16" or want_fp16 else ()
        flags += ("INT8",) if onnx_precision == "qdq" and "INT8" in builder_flags else ()
        return PrecisionPlan(onnx_precision, False, (), flags, f"the ONNX is {onnx_precision}; weakly typed build")
    if not want_fp16:
        return PrecisionPlan("fp32", not weak_typing, (), (), "fp32 ONNX, fp32 engine")
    if weak_typing:
        return PrecisionPlan("fp16", False, (), ("FP16",), "fp32 ONNX built with BuilderFlag.FP16 (TensorRT may "
                             "keep some layers in fp32)")
    raise BackendError(
        f"--fp16 on an fp32 ONNX needs BuilderFlag.FP16, which TensorRT {tensorrt_version} no longer has (11.x takes "
        "the precision from the ONNX). Convert the ONNX to mixed precision first: `pip install nvidia-modelopt` and "
        "`python -m modelopt.onnx.autocast --onnx_path MODEL.onnx --output_path MODEL_fp16.onnx`, then build "
        "MODEL_fp16.onnx without --fp16; or drop --fp16 for an fp32 engine"
    )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_precision_of(model) -> str:
    """"qdq" if an ``onnx.ModelProto`` has Quantize/DequantizeLinear nodes, "fp16" if any float16 tensor, else "fp32"."""
    import onnx

    graph = model.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node):
        return "qdq"
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in graph.initializer):
        return "fp16"
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == fp16:
            return "fp16"
    for n in graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute):
            return "fp16"
    return "fp32"


def read_onnx_info(path: str | Path) -> tuple[str | None, dict[str, str]]:
    """(precision or None when the ``onnx`` package is absent, ``skyfix.*`` metadata) of an ONNX file."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        model = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props if p.key.startswith("skyfix.")}
        return onnx_precision_of(model), meta
    import onnxruntime as ort  # a core dependency: metadata without the onnx package

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    return None, {k: v for k, v in meta.items() if k.startswith("skyfix.")}


def _network_precision(trt, network) -> str:
    """Fallback precision detection on a parsed TensorRT network (when ``onnx`` is not installed)."""
    half = trt.DataType.HALF
    quant = {getattr(trt.LayerType, n) for n in ("QUANTIZE", "DEQUANTIZE") if hasattr(trt.LayerType, n)}
    fp16 = False
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in quant:
            return "qdq"
        fp16 = fp16 or any(layer.get_output(j).dtype == half for j in range(layer.num_outputs))
    fp16 = fp16 or any(network.get_input(i).dtype == half for i in range(network.num_inputs))
    return "fp16" if fp16 else "fp32"


def _read_timing_cache(config, path: Path | None):
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")  # cache from another GPU/TensorRT: start a fresh one
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(onnx_path: str | Path, engine_path: str | Path, batch: BatchRange, workspace_mib: int = 1024,
                 fp16: bool = False, timing_cache: str | Path | None = None, device_index: int = 0, log=print):
    """Build and write ``engine_path`` and its sidecar; return the :class:`EngineSidecar`.

    Args:
        onnx_path: the encoder ONNX (dynamic or fixed batch on dimension 0, every other dimension fixed).
        engine_path: output ``.engine``/``.plan``; the sidecar goes to ``<engine_path>.json``.
        batch: the optimization profile's batch range (applied to every input with a dynamic batch).
        workspace_mib: builder workspace limit (MiB; on Jetson it comes out of shared RAM).
        fp16: run an fp32 graph in FP16 (see :func:`plan_precision`).
        timing_cache: file to read tactic timings from (when present) and to write them back to.
        device_index: CUDA device to build for.
        log: progress lines go here.

    Raises:
        MissingExtraError: tensorrt / cuda-python (or pycuda) not installed.
        BackendError: unreadable ONNX, a shape or precision the policy refuses, or a failed build.
    """
    from runtime.backends.tensorrt_backend import EngineSidecar, ProfileShape, gpu_info, import_tensorrt, sidecar_path

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    if isinstance(workspace_mib, bool) or int(workspace_mib) != workspace_mib or workspace_mib <= 0:
        raise BackendError(f"--workspace must be a positive number of MiB, got {workspace_mib!r}")
    trt = import_tensorrt()
    gpu_name, cc = gpu_info(device_index)
    onnx_prec, metadata = read_onnx_info(onnx_path)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flag_names = set(trt.NetworkDefinitionCreationFlag.__members__)
    builder_flag_names = set(trt.BuilderFlag.__members__)

    def make_network(strong: bool):
        flags = 0  # explicit batch is the only mode since 10.x (EXPLICIT_BATCH is deprecated/removed)
        if strong and "STRONGLY_TYPED" in network_flag_names:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
        return network, parser

    if onnx_prec is None:  # no onnx package: look at the parsed network
        probe, _ = make_network(False)
        onnx_prec = _network_precision(trt, probe)
    plan = plan_precision(onnx_prec, fp16, builder_flag_names, network_flag_names, trt.__version__)
    log(f"precision: {plan.precision} ({plan.note})")
    network, parser = make_network(plan.strongly_typed)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    shapes = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        lo, opt, hi = profile_shapes(tensor.name, tuple(tensor.shape), batch)
        profile.set_shape(tensor.name, lo, opt, hi)
        shapes.append(ProfileShape(tensor.name, lo, opt, hi))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    _read_timing_cache(config, cache_path)

    log(f"building {engine_path.name} for {gpu_name} (sm {cc}) with TensorRT {trt.__version__} ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT failed to build {onnx_path} (see its log above); common causes: workspace too small "
            f"(--workspace {workspace_mib} MiB), an unsupported ONNX op, or running out of GPU memory"
        )
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(serialized))
    tmp.replace(engine_path)
    if cache_path is not None:
        cache_tmp = cache_path.with_name(cache_path.name + ".tmp")
        cache_tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
        cache_tmp.replace(cache_path)
    sidecar = EngineSidecar(
        tensorrt_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc, precision=plan.precision,
        strongly_typed=plan.strongly_typed, onnx_sha256=file_sha256(onnx_path), onnx_name=onnx_path.name,
        inputs=tuple(shapes), workspace_mib=int(workspace_mib), metadata=metadata,
    )
    sidecar.write(sidecar_path(engine_path))
    return sidecar
