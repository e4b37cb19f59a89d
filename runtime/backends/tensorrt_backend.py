"""TensorRT backend: a serialized engine (``.engine``/``.plan``) plus its sidecar JSON, run through cuda-python or
pycuda (whichever the machine has: x86 wheels bring cuda-python, JetPack images often have pycuda).

An engine only runs on the TensorRT version and GPU model that built it, so ``skyfix export engine`` writes a sidecar
(``model.engine.json``, :class:`EngineSidecar`) with the TensorRT version, GPU name, compute capability, precision and
the ONNX's SHA-256; :func:`check_engine_compatible` compares it with this machine before deserializing and says how
to rebuild. ``tensorrt``, ``cuda`` and ``pycuda`` are imported only inside functions that need them; the sidecar and
compatibility code is plain Python and is unit-tested without a GPU.

Written against TensorRT 10.x (JetPack 6 ships 10.3) and 11.x Python APIs (named tensors, ``execute_async_v3``).

:meth:`TensorRTBackend.infer_images` feeds an engine with a float NCHW input from uint8 NHWC images: with the
skyfix_native library (:mod:`runtime.native`, built with CUDA) the uint8 batch is uploaded and normalised into the
engine's input buffer on the GPU; without it the host normalises (the library's host function, else numpy; the same
float32 steps, so every path gives the same input).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import BackendError, MissingExtraError

from .base import Backend, TensorSpec, contract_from_metadata

SIDECAR_FORMAT = 1
ENGINE_SUFFIXES = (".engine", ".plan")

TRT_INSTALL_HINT = (
    "install it with `pip install 'skyfix[trt]'` (TensorRT ships from NVIDIA's package index: add "
    "`--extra-index-url https://pypi.nvidia.com` if pip cannot find it); on Jetson it comes with JetPack "
    "(`sudo apt install python3-libnvinfer`, and use a venv made with --system-site-packages)"
)


def import_tensorrt():
    """``import tensorrt`` (10.x or newer), or :class:`MissingExtraError` naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError(f"TensorRT is not installed ({exc}); {TRT_INSTALL_HINT}") from exc
    if version_key(trt.__version__)[0] < 10:
        raise BackendError(
            f"SkyFix needs TensorRT >= 10 (named-tensor API), found {trt.__version__}; upgrade TensorRT "
            "(JetPack 6 or `pip install -U 'skyfix[trt]'`)"
        )
    return trt


def version_key(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a TensorRT version string ("10.3.0.30" -> (10, 3, 0)); a build number is ignored."""
    parts = []
    for p in str(version).split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------- sidecar
@dataclass(frozen=True)
class ProfileShape:
    """Optimization-profile shapes of one engine input: min/opt/max, each a full shape (ints)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        for key in ("min", "opt", "max"):
            object.__setattr__(self, key, tuple(int(d) for d in getattr(self, key)))
        if not (len(self.min) == len(self.opt) == len(self.max)) or any(
            not (a <= b <= c) for a, b, c in zip(self.min, self.opt, self.max)
        ):
            raise BackendError(
                f"profile of {self.name!r} needs min <= opt <= max per dimension with one rank, got "
                f"min {self.min}, opt {self.opt}, max {self.max}"
            )


@dataclass(frozen=True)
class EngineSidecar:
    """What an engine was built from and for; stored as JSON next to it (``<engine>.json``).

    Attributes:
        tensorrt_version: ``tensorrt.__version__`` at build time.
        gpu_name: CUDA device name, e.g. "NVIDIA Jetson AGX Orin" or "NVIDIA H100 80GB HBM3".
        compute_capability: "major.minor", e.g. "8.7".
        precision: "fp32", "fp16" (builder flag on an fp32 graph or an fp16 ONNX) or "qdq" (explicitly quantized).
        strongly_typed: True when types came from the ONNX (TensorRT 11.x always; 10.x STRONGLY_TYPED flag).
        onnx_sha256: hex SHA-256 of the ONNX file the engine was built from.
        onnx_name: file name of that ONNX (for the rebuild hint).
        inputs: optimization profile of each input.
        workspace_mib: builder workspace limit in MiB.
        metadata: the ONNX's ``skyfix.*`` metadata (the encoder contract), possibly empty.
        format: sidecar format version.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    strongly_typed: bool
    onnx_sha256: str
    onnx_name: str
    inputs: tuple[ProfileShape, ...]
    workspace_mib: int
    metadata: dict = field(default_factory=dict)
    format: int = SIDECAR_FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "inputs", tuple(p if isinstance(p, ProfileShape) else ProfileShape(**p) for p in self.inputs)
        )
        if self.precision not in ("fp32", "fp16", "qdq"):
            raise BackendError(f"sidecar precision must be 'fp32', 'fp16' or 'qdq', got {self.precision!r}")

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "strongly_typed": self.strongly_typed,
            "onnx_sha256": self.onnx_sha256,
            "onnx_name": self.onnx_name,
            "inputs": [{"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
                       for p in self.inputs],
            "workspace_mib": self.workspace_mib,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "sidecar") -> "EngineSidecar":
        """Inverse of :meth:`to_dict`; unknown or missing keys and a newer format are rejected."""
        from maps.config import strict_from_dict

        if isinstance(d, dict) and d.get("format", SIDECAR_FORMAT) > SIDECAR_FORMAT:
            raise BackendError(
                f"{source} has sidecar format {d['format']}, this SkyFix reads <= {SIDECAR_FORMAT}; upgrade SkyFix"
            )
        try:
            return strict_from_dict(cls, d, f"engine sidecar {source}", error=BackendError)
        except TypeError as exc:
            raise BackendError(f"engine sidecar {source} is malformed: {exc}") from exc

    def write(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename) and return its path."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def rebuild_command(self, engine_path: str | Path) -> str:
        """The ``skyfix export engine`` command that rebuilds this engine on the current machine."""
        batch = ""
        if self.inputs:
            p = self.inputs[0]
            batch = f" --batch {p.min[0]}:{p.opt[0]}:{p.max[0]}" if p.min else ""
        fp16 = " --fp16" if self.precision == "fp16" and not self.strongly_typed else ""
        return (f"skyfix export engine {self.onnx_name} -o {Path(engine_path).name}{batch} "
                f"--workspace {self.workspace_mib}{fp16}")


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """Read the sidecar of ``engine_path``.

    Raises:
        BackendError: missing, not JSON, or not a valid sidecar (the message says how to rebuild).
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise BackendError(
            f"TensorRT engine {engine_path} has no sidecar {path.name} (TensorRT version, GPU, precision, ONNX hash); "
            "rebuild it with `skyfix export engine MODEL.onnx -o ENGINE --batch MIN:OPT:MAX`, which writes both, "
            "or load it with check_sidecar=False at your own risk"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise BackendError(f"engine sidecar {path} is not readable JSON ({exc}); rebuild the engine") from exc
    return EngineSidecar.from_dict(data, str(path))


def check_engine_compatible(
    sidecar: EngineSidecar, tensorrt_version: str, gpu_name: str, compute_capability: str, engine_path: str | Path
) -> None:
    """Raise :class:`BackendError` unless the engine was built with this TensorRT version and GPU model.

    TensorRT engines are not portable: a different TensorRT (major.minor.patch) or GPU model may refuse to
    deserialize or silently run slow/incorrect tactics. The message lists every difference and the rebuild command.
    """
    diffs = []
    if version_key(sidecar.tensorrt_version) != version_key(tensorrt_version):
        diffs.append(f"TensorRT {sidecar.tensorrt_version} at build vs {tensorrt_version} here")
    if sidecar.gpu_name.strip() != gpu_name.strip():
        diffs.append(f"GPU {sidecar.gpu_name!r} at build vs {gpu_name!r} here")
    if str(sidecar.compute_capability) != str(compute_capability):
        diffs.append(f"compute capability {sidecar.compute_capability} at build vs {compute_capability} here")
    if diffs:
        raise BackendError(
            f"TensorRT engine {engine_path} was built for another machine ({'; '.join(diffs)}); engines only run "
            f"on the TensorRT version and GPU that built them. Rebuild it here from the ONNX (sha256 "
            f"{sidecar.onnx_sha256[:12]}...): `{sidecar.rebuild_command(engine_path)}`"
        )


# ------------------------------------------------------------------------------------------------------------ CUDA
class _CudaPython:
    """Device memory, copies and a stream through cuda-python's runtime bindings (``cudart``)."""

    def __init__(self, device_index: int) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.cudart = cudart
        self.device_index = device_index
        self._check(cudart.cudaSetDevice(device_index), "cudaSetDevice")
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA {what} failed: {err}; check the GPU with nvidia-smi / tegrastats")
        return rest[0] if len(rest) == 1 else None

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def device_info(self) -> tuple[str, str]:
        prop = self._check(self.cudart.cudaGetDeviceProperties(self.device_index), "cudaGetDeviceProperties")
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name, f"{prop.major}.{prop.minor}"

    def malloc(self, nbytes: int):
        return self._check(self.cudart.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc")

    def ptr(self, buf) -> int:
        return int(buf)

    def free(self, buf) -> None:
        self.cudart.cudaFree(buf)

    def h2d(self, buf, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(buf, array.ctypes.data, array.nbytes, kind, self.stream), "H2D copy")

    def d2h(self, array: np.ndarray, buf) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(array.ctypes.data, buf, array.nbytes, kind, self.stream), "D2H copy")

    def sync(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        self.cudart.cudaStreamDestroy(self.stream)


class _PyCuda:
    """The same through pycuda's driver API (primary context of the device, pushed while open)."""

    def __init__(self, device_index: int) -> None:
        import pycuda.driver as drv

        self.drv = drv
        drv.init()
        self.device = drv.Device(device_index)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.stream = drv.Stream()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def device_info(self) -> tuple[str, str]:
        major, minor = self.device.compute_capability()
        return str(self.device.name()), f"{major}.{minor}"

    def malloc(self, nbytes: int):
        return self.drv.mem_alloc(max(int(nbytes), 1))

    def ptr(self, buf) -> int:
        return int(buf)

    def free(self, buf) -> None:
        buf.free()

    def h2d(self, buf, array: np.ndarray) -> None:
        self.drv.memcpy_htod_async(buf, array, self.stream)

    def d2h(self, array: np.ndarray, buf) -> None:
        self.drv.memcpy_dtoh_async(array, buf, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context.pop()


def open_cuda(device_index: int = 0):
    """A CUDA helper for ``device_index``: cuda-python when installed, else pycuda.

    Raises:
        MissingExtraError: neither is installed.
    """
    try:
        return _CudaPython(device_index)
    except ImportError:
        pass
    try:
        return _PyCuda(device_index)
    except ImportError as exc:
        raise MissingExtraError(
            f"the TensorRT backend needs cuda-python or pycuda ({exc}); `pip install 'skyfix[trt]'` brings "
            "cuda-python (on Jetson: `pip install cuda-python==<your CUDA major.minor>` or `pip install pycuda`)"
        ) from exc


def gpu_info(device_index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of a CUDA device, via cuda-python or pycuda."""
    cuda = open_cuda(device_index)
    try:
        return cuda.device_info()
    finally:
        cuda.close()


def parse_device(device: str) -> int:
    """CUDA device index of "auto"/"cuda"/"cuda:N"; TensorRT has no CPU mode."""
    device = (device or "auto").lower()
    if device in ("auto", "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendError(
        f"the TensorRT backend runs on a CUDA GPU: expected device 'auto', 'cuda' or 'cuda:N', got {device!r} "
        "(for CPU use the ONNX model with the onnxruntime backend)"
    )


# --------------------------------------------------------------------------------------------------------- backend
class TensorRTBackend(Backend):
    """A TensorRT engine. Load with :meth:`load`; checks the sidecar against this machine first."""

    name = "tensorrt"

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", check_sidecar: bool = True,
             **options) -> "TensorRTBackend":
        """Deserialize ``path`` (``.engine``/``.plan``) on a CUDA device.

        Args:
            check_sidecar: compare ``<engine>.json`` with this TensorRT/GPU (and take the contract from it).

        Raises:
            BackendError: engine missing/incompatible/undeserializable, or a CUDA failure.
            MissingExtraError: tensorrt or cuda-python/pycuda are not installed (``pip install 'skyfix[trt]'``).
        """
        if options:
            raise BackendError(f"unknown tensorrt backend options {sorted(options)}; expected only 'check_sidecar'")
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"TensorRT engine not found: {path}")
        index = parse_device(device)
        trt = import_tensorrt()
        sidecar = read_sidecar(path) if check_sidecar else None
        cuda = open_cuda(index)
        self = cls(path, f"cuda:{index}")
        self._cuda, self._buffers, self._context, self._engine = cuda, {}, None, None
        try:
            if sidecar is not None:
                name, cc = cuda.device_info()
                check_engine_compatible(sidecar, trt.__version__, name, cc, path)
                self._contract = contract_from_metadata(dict(sidecar.metadata), path)
            self._trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = self._trt_runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise BackendError(
                    f"TensorRT {trt.__version__} could not deserialize {path} (built by another TensorRT version or "
                    "GPU, or corrupt); rebuild it here with `skyfix export engine MODEL.onnx -o "
                    f"{path.name} --batch MIN:OPT:MAX`"
                )
            self._engine = engine
            self._context = engine.create_execution_context()
            self._profiles = {}
            for i in range(engine.num_io_tensors):
                tname = engine.get_tensor_name(i)
                try:
                    dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tname))).name
                except TypeError:
                    dtype = None  # bf16/fp8 I/O: not checked
                spec = TensorSpec(tname, tuple(engine.get_tensor_shape(tname)), dtype)
                if engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT:
                    self._inputs.append(spec)
                    if any(d is None for d in spec.shape):
                        lo, _, hi = engine.get_tensor_profile_shape(tname, 0)
                        self._profiles[tname] = (tuple(lo), tuple(hi))
                else:
                    self._outputs.append(spec)
        except BaseException:
            self.close()
            raise
        return self

    def validate(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """As :meth:`Backend.validate`, plus: every dynamic dimension within the engine's optimization profile."""
        checked = super().validate(feeds)
        for name in self._profiles:
            self._check_profile(name, checked[name].shape)
        return checked

    def _check_profile(self, name: str, shape: tuple) -> None:
        if name not in self._profiles:
            return
        lo, hi = self._profiles[name]
        if any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
            raise BackendError(
                f"input {name!r}: shape {tuple(shape)} is outside the engine's optimization profile "
                f"(min {lo}, max {hi}); split the batch or rebuild with a wider `--batch MIN:OPT:MAX`"
            )

    def _buffer(self, name: str, nbytes: int) -> int:
        buf, size = self._buffers.get(name, (None, 0))
        if buf is None or size < nbytes:
            if buf is not None:
                self._cuda.free(buf)
            buf = self._cuda.malloc(nbytes)
            self._buffers[name] = (buf, nbytes)
        return buf

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx, cuda = self._context, self._cuda
        for spec in self._inputs:
            array = feeds[spec.name]
            ctx.set_input_shape(spec.name, array.shape)
            buf = self._buffer(spec.name, array.nbytes)
            cuda.h2d(buf, array)
            ctx.set_tensor_address(spec.name, cuda.ptr(buf))
        return self._execute()

    def _execute(self) -> dict[str, np.ndarray]:
        """Run on the bound inputs; copy every output to the host."""
        ctx, cuda = self._context, self._cuda
        results = {}
        for spec in self._outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise BackendError(f"output {spec.name!r} has a data-dependent shape {shape}; SkyFix engines need "
                                   "outputs whose shape follows from the inputs")
            host = np.empty(shape, dtype=spec.dtype or np.float32)
            buf = self._buffer(spec.name, host.nbytes)
            ctx.set_tensor_address(spec.name, cuda.ptr(buf))
            results[spec.name] = (host, buf)
        if not ctx.execute_async_v3(cuda.stream_handle):
            raise BackendError(f"TensorRT execute_async_v3 failed on {self.path.name}; see the TensorRT log above")
        for host, buf in results.values():
            cuda.d2h(host, buf)
        cuda.sync()
        return {name: host for name, (host, _) in results.items()}

    def infer_images(self, images: np.ndarray, mean, std, reverse_channels: bool = False) -> dict[str, np.ndarray]:
        """Run an engine whose one input is float32/float16[N, C, H, W] on uint8[N, H, W, C] images, normalised
        into it: ``(x / 255 - mean) / std`` (as :func:`runtime.native.normalize_numpy` computes it; ``mean`` and
        ``std`` in the output channel order; ``reverse_channels``: output channel k is input channel C - 1 - k).

        With skyfix_native built with CUDA (:func:`runtime.native.load`), the uint8 batch is uploaded (a quarter of
        the float32 bytes) and its CUDA kernel writes the engine input on the device, on the engine's stream. Else
        the host normalises (the library's host function, else numpy) and :meth:`infer` runs. A CUDA failure of the
        library (e.g. built for other GPU architectures) warns once and falls back to the host.

        Raises:
            BackendError: not one float NCHW input, images not uint8[N, H, W, C] of its size and channels, a batch
                outside the optimization profile, mean/std not C finite numbers (std > 0), a closed backend.
        """
        from runtime import native

        if self._closed:
            raise BackendError(f"{self.name} backend for {self.path} is closed; load the model again")
        spec, shape = self._image_input(images, mean, std)
        if not hasattr(self, "_native_lib"):
            self._native_lib, self._native_device = native.try_load()[0], True
        lib = self._native_lib
        if lib is not None and lib.has_cuda and self._native_device:
            t0 = time.perf_counter_ns()
            try:
                result = self._normalize_on_device(lib, spec, shape, images, mean, std, reverse_channels)
            except native.NativeCudaError as exc:
                self._native_device = False
                warnings.warn(f"skyfix_native could not normalise on the GPU ({exc}); the host normalises from now "
                              f"on; rebuild the library for this GPU (`{native.BUILD_COMMAND}`)", RuntimeWarning,
                              stacklevel=2)
            else:
                self._last_latency_ms = (time.perf_counter_ns() - t0) / 1e6
                return result
        if lib is not None:
            x = lib.normalize(images, mean, std, dtype=spec.dtype, reverse_channels=reverse_channels)
        else:
            x = native.normalize_numpy(images, mean, std, dtype=spec.dtype, reverse_channels=reverse_channels)
        return self.infer({spec.name: x})

    def _image_input(self, images, mean, std) -> tuple[TensorSpec, tuple[int, int, int, int]]:
        """The float NCHW input spec and its shape for ``images``, or a BackendError."""
        if len(self._inputs) != 1 or self._inputs[0].dtype not in ("float32", "float16") or \
                self._inputs[0].shape is None or len(self._inputs[0].shape) != 4:
            raise BackendError(f"infer_images needs an engine with one float32/float16 [N, C, H, W] input, "
                               f"{self.path.name} has {[s.describe() for s in self._inputs]}; use infer()")
        spec = self._inputs[0]
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise BackendError(f"images must be uint8[N, H, W, C], got "
                               f"{getattr(images, 'dtype', type(images).__name__)}{list(getattr(images, 'shape', []))}")
        n, h, w, c = images.shape
        shape = (n, c, h, w)
        if any(want is not None and want != got for want, got in zip(spec.shape, shape)):
            raise BackendError(f"images {list(images.shape)} (N, H, W, C) do not fit input {spec.describe()} "
                               f"(N, C, H, W; ? = any size)")
        self._check_profile(spec.name, shape)
        for name, v in (("mean", mean), ("std", std)):
            try:
                ok = np.asarray(v, np.float64).reshape(-1)
            except (TypeError, ValueError):
                ok = np.array([np.nan])
            if ok.size != c or not np.all(np.isfinite(ok)) or (name == "std" and not np.all(ok > 0)):
                raise BackendError(f"{name} must be {c} finite numbers{' > 0' if name == 'std' else ''} (one per "
                                   f"channel), got {v!r}")
        return spec, shape

    def _normalize_on_device(self, lib, spec: TensorSpec, shape, images, mean, std, reverse_channels):
        ctx, cuda = self._context, self._cuda
        images = np.ascontiguousarray(images)
        n, c, h, w = shape
        src = self._buffer(("skyfix_native", "images"), images.nbytes)
        dst = self._buffer(spec.name, images.size * np.dtype(spec.dtype).itemsize)
        lib.cuda_set_device(int(self.device.split(":")[1]))
        cuda.h2d(src, images)
        lib.cuda_normalize_ptr(cuda.ptr(src), (n, h, w, c), w * c, h * w * c, mean, std, spec.dtype, cuda.ptr(dst),
                               stream=cuda.stream_handle, reverse_channels=reverse_channels)
        ctx.set_input_shape(spec.name, shape)
        ctx.set_tensor_address(spec.name, cuda.ptr(dst))
        return self._execute()

    def _release(self) -> None:
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        for buf, _ in self._buffers.values():
            cuda.free(buf)
        self._buffers = {}
        self._context = self._engine = None
        cuda.close()
        self._cuda = None
