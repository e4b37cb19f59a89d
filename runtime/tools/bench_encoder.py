"""Encoder latency benchmark: p50/p90/p99 latency and throughput of one or more models, compared in one run.

``skyfix bench encoder fp32.onnx int8.onnx --batch 1,16`` loads each model on its backend (by file type, or the one
named), builds random inputs from the backend's input specs, warms every model up and then times them **interleaved**
(round robin across models, the starting model rotating each round), so load from other processes on a shared machine
hits every model alike. Comparisons are ratios of medians measured in the same run.

Inputs (per model and batch size ``n``):

* shape: the spec's shape with dimension 0 (the batch) set to ``n`` when it is dynamic; a model with a fixed batch
  dimension runs only at that size (the ``--batch`` list does not apply to it). Other dynamic dimensions come from
  ``input_size`` when given, else from the model's :class:`~maps.contract.EncoderContract` (``input_height``,
  ``input_width``; channels 3, or 1 for GRAY), else the benchmark fails and says to pass ``--input-size``.
  A rank-4 input is channels-last (``[n, h, w, c]``) when its last dimension is 1 or 3, or when it is uint8 and its
  dimension 1 is not; otherwise channels-first (``[n, c, h, w]``). An input of unknown rank (TorchScript without a
  ``skyfix.json``) is ``uint8[n, h, w, c]`` if declared uint8, else ``float32[n, c, h, w]``; it needs a size too.
* values: uint8 uniform in [0, 255]; float inputs standard normal; integer inputs uniform in [0, 9]; an input whose
  dtype is not declared gets float32.

Latency, milliseconds per call of ``n`` images, comes from each model's timer (``timer`` in the JSON and the table,
:func:`timer_for`): ``wall_clock`` is the backend's :attr:`~runtime.backends.base.Backend.last_latency_ms`
(host-to-host wall time of one ``infer`` call, input/output copies included, feed validation excluded);
``cuda_event``, for a torch-backend model on a CUDA device, is the time between a pair of ``torch.cuda.Event``
recorded on the model's stream before and after the ``infer`` call, read once the second has completed (the GPU's
clock; the call includes the host-to-device copy, the graph replay or eager run and the device-to-host copy). ONNX
Runtime and TensorRT models keep the wall clock (torch is never imported for them). A torch model on CUDA runs under
CUDA graphs: its first call at a batch size captures one, so keep ``warmup`` >= 1.
Throughput is ``n * 1000 / p50_ms`` images per second (median-based, like every comparison here; the mean-based
figure is in the JSON as ``throughput_mean_ips``). ``speedup_vs_first`` is ``p50 of the first model / p50 of this
model`` at the same batch size (> 1: faster than the first model), None when the first model did not run that size.

Threads: ONNX Runtime's intra-op pool threads spin after each call, so with several sessions interleaved and as many
threads as cores, one model's spinning threads slow the next one down (on a shared 2-core machine, p50 at batch 1
moved by up to 5x between runs at 2 threads). For FP32-vs-INT8 ratios on small shared machines use ``threads=1``
(no pool: p90 within ~5% of p50, ratios repeatable to ~0.05).

Nothing here imports onnxruntime, torch or tensorrt at module level; the backend for each model imports its engine
when the model is loaded (torch only when the torch backend is chosen).
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import OnboardError

__all__ = [
    "TIMERS",
    "BenchConfig",
    "EncoderBenchError",
    "ModelRun",
    "available_cpus",
    "format_table",
    "make_feeds",
    "parse_batches",
    "parse_input_size",
    "run_bench",
    "summarize",
    "timer_for",
]

BACKEND_CHOICES = ("auto", "onnxruntime", "torch", "tensorrt")
#: latency timers: host wall clock around ``infer``, or a synchronised torch.cuda.Event pair (torch on CUDA)
TIMERS = ("wall_clock", "cuda_event")


class EncoderBenchError(OnboardError):
    """A benchmark request that cannot be met: bad settings, or inputs that cannot be built from the model's specs."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BenchConfig:
    """What to run and how.

    Attributes:
        batches: batch sizes (images per call) for dynamic-batch models, e.g. ``(1, 8, 16)``.
        warmup: untimed calls per model and batch size before timing (>= 0).
        iterations: timed calls per model and batch size (>= 1).
        backend: "auto" (by file type) or "onnxruntime", "torch", "tensorrt" for every model.
        device: "auto", "cpu", "cuda" or "cuda:N".
        threads: intra-op CPU threads per model (onnxruntime, torch); 0 = every CPU this process may use
            (:func:`available_cpus`), passed explicitly so the number reported is the number used.
        input_size: (height, width) pixels for dynamic spatial dimensions; None = the model's encoder contract.
        seed: seed of the random inputs.
    """

    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int = 100
    backend: str = "auto"
    device: str = "auto"
    threads: int = 0
    input_size: tuple[int, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        batches = tuple(self.batches)
        if not batches or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in batches):
            raise EncoderBenchError(f"batch sizes must be integers >= 1, got {self.batches!r} (e.g. --batch 1,8,16)")
        object.__setattr__(self, "batches", tuple(dict.fromkeys(int(b) for b in batches)))
        for name, low in (("warmup", 0), ("iterations", 1), ("threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise EncoderBenchError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.backend not in BACKEND_CHOICES:
            raise EncoderBenchError(f"unknown backend {self.backend!r}; expected one of {list(BACKEND_CHOICES)}")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in size):
                raise EncoderBenchError(f"input_size must be (height, width) positive integers, got {self.input_size!r}")
            object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))

    @property
    def threads_used(self) -> int:
        """The intra-op thread count passed to the backends (``threads`` or, for 0, :func:`available_cpus`)."""
        return self.threads or available_cpus()


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,16"`` -> ``(1, 8, 16)``. Raises :class:`EncoderBenchError` on anything but positive integers."""
    try:
        values = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise EncoderBenchError(f"--batch expects comma-separated integers >= 1 such as 1,8,16, got {text!r}")
    return values


def parse_input_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"240x320"`` (height x width) -> (240, 320)."""
    parts = str(text).lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise EncoderBenchError(f"--input-size expects HEIGHTxWIDTH or SIDE pixels (e.g. 224 or 240x320), got {text!r}")
    return values  # type: ignore[return-value]


def _spatial(spec_name: str, model: str, input_size, contract) -> tuple[int, int, int]:
    """(height, width, channels) for dynamic dimensions: ``input_size`` first, then the contract."""
    channels = 1 if contract is not None and contract.colour_order == "GRAY" else 3
    if input_size is not None:
        return input_size[0], input_size[1], channels
    if contract is not None:
        return contract.input_height, contract.input_width, channels
    raise EncoderBenchError(
        f"{model}: input {spec_name!r} has dynamic non-batch dimensions and the model carries no encoder contract "
        "(skyfix.* metadata); pass --input-size HEIGHTxWIDTH (e.g. --input-size 224)"
    )


def input_shape(spec, batch: int, *, model: str = "model", input_size=None, contract=None) -> tuple[int, ...]:
    """The concrete shape to feed ``spec`` (a :class:`~runtime.backends.base.TensorSpec`) at ``batch`` images.

    Dimension 0 becomes ``batch`` when dynamic (a fixed one is kept); other dynamic dimensions are filled from
    ``input_size`` (height, width) or ``contract`` as the module docstring describes.

    Raises:
        EncoderBenchError: a dynamic dimension with nothing to fill it, or a layout it cannot guess.
    """
    dtype = spec.dtype or "float32"
    if spec.shape is None:
        h, w, c = _spatial(spec.name, model, input_size, contract)
        return (batch, h, w, c) if dtype == "uint8" else (batch, c, h, w)
    shape = list(spec.shape)
    if not shape:
        return ()
    if shape[0] is None:
        shape[0] = batch
    if all(d is not None for d in shape):
        return tuple(shape)
    if len(shape) != 4:
        raise EncoderBenchError(
            f"{model}: input {spec.describe()} has dynamic dimensions besides the batch and is not rank 4, so its "
            "size cannot be taken from an image size; export it with fixed dimensions"
        )
    h, w, c = _spatial(spec.name, model, input_size, contract)
    last, second = spec.shape[3], spec.shape[1]
    channels_last = last in (1, 3) or (dtype == "uint8" and second not in (1, 3))
    fill = (h, w, c) if channels_last else (c, h, w)
    return tuple(d if d is not None else f for d, f in zip(shape, (shape[0],) + fill))


def make_feeds(backend, batch: int, *, rng: np.random.Generator, input_size=None) -> dict[str, np.ndarray]:
    """Random feeds for every input of ``backend`` at ``batch`` images (see the module docstring for the rules).

    Returns:
        ``{input name: array}``, e.g. ``{"images": float32[batch, 3, h, w]}`` or ``{"images": uint8[batch, h, w, 3]}``.
    """
    feeds = {}
    for spec in backend.inputs:
        shape = input_shape(spec, batch, model=backend.path.name, input_size=input_size, contract=backend.contract)
        dtype = np.dtype(spec.dtype or "float32")
        if dtype == np.uint8:
            value = rng.integers(0, 256, size=shape, dtype=np.uint8)
        elif dtype.kind == "f":
            value = rng.standard_normal(size=shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            value = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise EncoderBenchError(f"{backend.path.name}: cannot make random data for input {spec.describe()}")
        feeds[spec.name] = value
    return feeds


def _batch_dim(backend) -> int | None:
    """The model's fixed batch size (dimension 0 of its first input), None when dynamic or unknown."""
    for spec in backend.inputs:
        if spec.shape and spec.shape[0] is not None:
            return int(spec.shape[0])
    return None


def timer_for(backend_name: str, device: str) -> str:
    """The latency timer of a model loaded by ``backend_name`` on ``device`` (e.g. "torch", "cuda:0"):
    "cuda_event" for the torch backend on a CUDA device, else "wall_clock"."""
    return "cuda_event" if backend_name == "torch" and str(device).startswith("cuda") else "wall_clock"


def _make_timer(kind: str, backend):
    """``measure(feeds) -> ms``: runs ``backend.infer(feeds)`` once and times it with the ``kind`` timer."""
    if kind == "wall_clock":
        def wall(feeds: dict) -> float:
            backend.infer(feeds)
            return float(backend.last_latency_ms)

        return wall
    import torch  # the torch backend is loaded: torch is imported already

    device = torch.device(backend.device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def cuda_event(feeds: dict) -> float:
        stream = torch.cuda.current_stream(device)
        start.record(stream)
        backend.infer(feeds)
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    return cuda_event


@dataclass
class ModelRun:
    """One loaded model, its timer ("wall_clock" or "cuda_event") and latency samples (ms per call) by batch size."""

    label: str
    path: Path
    backend: object
    threads: int | None
    fixed_batch: int | None
    samples: dict[int, list[float]] = field(default_factory=dict)
    timer: str = "wall_clock"

    def __post_init__(self) -> None:
        if self.timer not in TIMERS:
            raise EncoderBenchError(f"unknown timer {self.timer!r}; expected one of {list(TIMERS)}")
        self._measure = _make_timer(self.timer, self.backend)

    def measure(self, feeds: dict) -> float:
        """One timed ``infer`` call on ``feeds``; milliseconds by this model's timer."""
        return self._measure(feeds)

    def batches(self, wanted: tuple[int, ...]) -> tuple[int, ...]:
        """Batch sizes this model runs: ``wanted`` when dynamic, its fixed size otherwise."""
        return wanted if self.fixed_batch is None else (self.fixed_batch,)


def _labels(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]


def _load(path: Path, config: BenchConfig, label: str) -> ModelRun:
    from runtime.backends import backend_for_path, load_backend

    name = backend_for_path(path) if config.backend == "auto" else config.backend
    threads: int | None = config.threads_used
    if name == "onnxruntime":
        backend = load_backend(path, backend=name, device=config.device, threads=threads)
    else:
        backend = load_backend(path, backend=name, device=config.device)
        if name == "torch" and backend.device == "cpu":
            backend._torch.set_num_threads(threads)  # the torch backend is loaded: torch is imported already
        elif name != "torch":
            threads = None  # TensorRT: GPU, no CPU thread setting
    return ModelRun(label, path, backend, threads, _batch_dim(backend), timer=timer_for(backend.name, backend.device))


def summarize(samples_ms, batch: int) -> dict:
    """Statistics of latency samples (ms per call of ``batch`` images).

    Returns:
        ``{"iterations", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "throughput_ips",
        "throughput_mean_ips"}``; percentiles by linear interpolation (``numpy.percentile``), so
        p50 <= p90 <= p99; ``throughput_ips = batch * 1000 / p50_ms`` images/s.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise EncoderBenchError("no latency samples to summarise")
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    mean = float(a.mean())
    return {
        "iterations": int(a.size),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "std_ms": float(a.std()),
        "throughput_ips": batch * 1000.0 / p50 if p50 > 0 else math.inf,
        "throughput_mean_ips": batch * 1000.0 / mean if mean > 0 else math.inf,
    }


def _interleaved(runs: list[ModelRun], feeds: dict[int, dict], config: BenchConfig, batch: int) -> None:
    """Warm up then time every model in ``runs`` at ``batch``, round robin (start rotating), into ``run.samples``."""
    for _ in range(config.warmup):
        for run in runs:
            run.backend.infer(feeds[id(run)])
    samples = {id(run): [] for run in runs}
    n = len(runs)
    for i in range(config.iterations):
        for k in range(n):
            run = runs[(i + k) % n]
            samples[id(run)].append(run.measure(feeds[id(run)]))
    for run in runs:
        run.samples[batch] = samples[id(run)]


def _versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("onnxruntime", "torch", "tensorrt"):
        if module in sys.modules:  # report only what the chosen backends imported; never import one here
            out[module] = getattr(sys.modules[module], "__version__", "?")
    return out


def run_bench(models, config: BenchConfig | None = None, log=None) -> dict:
    """Benchmark ``models`` (paths; the first is the reference of ``speedup_vs_first``) and return a JSON-ready dict.

    Args:
        models: model files (``.onnx``, ``.engine``/``.plan``, ``.pt``/``.ts``/``.pt2``), at least one.
        config: settings (:class:`BenchConfig`); defaults when None.
        log: progress callback taking one string (e.g. ``print`` to stderr); None = silent.

    Returns:
        ``{"config": {...}, "machine": {...}, "models": [...], "results": [...]}``; ``results`` has one row per
        (batch size, model) in batch-then-model order with the fields of :func:`summarize` plus ``model``,
        ``model_index``, ``batch``, ``warmup`` and ``speedup_vs_first``.

    Raises:
        EncoderBenchError: no models, a missing file, or inputs that cannot be built.
        BackendError / MissingExtraError: from loading or running a model.
    """
    config = config or BenchConfig()
    log = log or (lambda _msg: None)
    paths = [Path(m) for m in models]
    if not paths:
        raise EncoderBenchError("no model given; expected one or more model files (e.g. fp32.onnx int8.onnx)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EncoderBenchError(f"model file(s) not found: {missing}")
    runs: list[ModelRun] = []
    try:
        for path, label in zip(paths, _labels(paths)):
            log(f"loading {path}")
            runs.append(_load(path, config, label))
        order: list[int] = []
        for run in runs:
            order.extend(b for b in run.batches(config.batches) if b not in order)
        rng = np.random.default_rng(config.seed)
        for batch in order:
            group = [run for run in runs if batch in run.batches(config.batches)]
            feeds = {id(run): make_feeds(run.backend, batch, rng=rng, input_size=config.input_size) for run in group}
            log(f"batch {batch}: {len(group)} model(s), {config.warmup} warm-up + {config.iterations} timed calls each")
            _interleaved(group, feeds, config, batch)
        results = []
        for batch in order:
            ref = runs[0].samples.get(batch)
            ref_p50 = float(np.median(ref)) if ref else None
            for index, run in enumerate(runs):
                if batch not in run.samples:
                    continue
                row = {"model": run.label, "model_index": index, "batch": batch, "warmup": config.warmup,
                       "timer": run.timer}
                row.update(summarize(run.samples[batch], batch))
                row["speedup_vs_first"] = ref_p50 / row["p50_ms"] if ref_p50 is not None and row["p50_ms"] > 0 else None
                results.append(row)
        model_info = []
        for run in runs:
            b = run.backend
            model_info.append({
                "label": run.label,
                "path": str(run.path),
                "bytes": run.path.stat().st_size,
                "backend": b.name,
                "device": b.device,
                "providers": list(getattr(b, "providers", [])) or None,
                "threads": run.threads,
                "timer": run.timer,
                "fixed_batch": run.fixed_batch,
                "batches": list(run.batches(config.batches)),
                "inputs": [s.describe() for s in b.inputs],
                "outputs": [s.describe() for s in b.outputs],
                "encoder_id": b.contract.encoder_id if b.contract is not None else None,
            })
    finally:
        for run in runs:
            run.backend.close()
    cfg = asdict(config)
    cfg["batches"] = list(config.batches)
    cfg["input_size"] = list(config.input_size) if config.input_size else None
    cfg["threads_used"] = config.threads_used
    return {
        "config": cfg,
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
                    "available_cpus": available_cpus(), **_versions()},
        "models": model_info,
        "results": results,
    }


def format_table(result: dict) -> str:
    """Human-readable table of :func:`run_bench`'s result (one line per batch size and model)."""
    cfg = result["config"]
    lines = [f"encoder benchmark: {cfg['warmup']} warm-up + {cfg['iterations']} timed calls per model and batch, "
             f"interleaved across models; {result['machine']['available_cpus']} CPUs available"]
    for i, m in enumerate(result["models"]):
        threads = "" if m["threads"] is None else f", {m['threads']} threads"
        batch = f", fixed batch {m['fixed_batch']}" if m["fixed_batch"] is not None else ""
        lines.append(f"  [{i}] {m['label']}: {m['backend']} on {m['device']}{threads}{batch}, timer {m['timer']}; "
                     f"inputs {', '.join(m['inputs'])}")
    width = max([5] + [len(r["model"]) for r in result["results"]])
    lines.append("")
    lines.append(f"{'model':<{width}}  batch    p50 ms    p90 ms    p99 ms     img/s  vs first")
    for r in result["results"]:
        ratio = "-" if r["speedup_vs_first"] is None else f"{r['speedup_vs_first']:.2f}x"
        ms = "  ".join(f"{r[k]:>8.{3 if r[k] >= 1 else 4}f}" for k in ("p50_ms", "p90_ms", "p99_ms"))
        lines.append(f"{r['model']:<{width}}  {r['batch']:>5}  {ms}  {r['throughput_ips']:>8.1f}  {ratio:>8}")
    lines.append("latency: ms per call by each model's timer (wall_clock: host to host; cuda_event: a synchronised "
                 "torch.cuda.Event pair around the call); img/s = batch * 1000 / p50; "
                 "vs first = p50 of model [0] / p50")
    return "\n".join(lines)
