"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider where ``onnxruntime-gpu`` has it.

``onnxruntime`` is imported when a model is loaded, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import BackendError, MissingExtraError

from .base import Backend, TensorSpec, contract_from_metadata

# ONNX Runtime's type strings -> numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError(
            f"onnxruntime is not installed ({exc}); `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` "
            "(CUDA), or reinstall SkyFix: `pip install skyfix`"
        ) from exc
    return onnxruntime


def choose_providers(device: str, available: list[str]) -> tuple[list, str]:
    """Execution providers for ``device`` given ORT's ``available`` providers.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
        available: ``onnxruntime.get_available_providers()``.

    Returns:
        (providers list for ``InferenceSession``, device string actually used: "cpu" or "cuda:N").

    Raises:
        BackendError: "cuda" asked for but this onnxruntime has no CUDA execution provider, or an unknown device.
    """
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], "cuda:0"
        return ["CPUExecutionProvider"], "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise BackendError(f"device {device!r}: expected 'cuda' or 'cuda:N' with N a GPU index")
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"device {device!r} asked for, but this onnxruntime has only {available}; install the GPU build "
                "(`pip uninstall onnxruntime && pip install onnxruntime-gpu`; on Jetson use the wheel from "
                "NVIDIA's Jetson Zoo) or use --device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"], f"cuda:{index}"
    raise BackendError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


class OnnxRuntimeBackend(Backend):
    """An ONNX model run by ONNX Runtime. Load with :meth:`load`."""

    name = "onnxruntime"

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", threads: int = 0, **options) -> "OnnxRuntimeBackend":
        """Open an ``.onnx`` file.

        Args:
            path: the ONNX model.
            device: "auto", "cpu", "cuda" or "cuda:N".
            threads: intra-op threads (0 = ONNX Runtime's default, one per physical core).

        Raises:
            BackendError: unreadable model, unknown option, CUDA unavailable, or malformed ``skyfix.*`` metadata.
            MissingExtraError: onnxruntime is not installed.
        """
        if options:
            raise BackendError(f"unknown onnxruntime backend options {sorted(options)}; expected only 'threads'")
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"ONNX model not found: {path}")
        if isinstance(threads, bool) or int(threads) != threads or threads < 0:
            raise BackendError(f"threads must be an integer >= 0 (0 = default), got {threads!r}")
        ort = _import_ort()
        providers, used = choose_providers(device, list(ort.get_available_providers()))
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own untyped errors (InvalidGraph, NoSuchFile, Fail ...)
            raise BackendError(f"onnxruntime could not load {path}: {exc}") from exc
        self = cls(path, used)
        self._session = session
        self.providers = list(session.get_providers())
        self._inputs = [TensorSpec(a.name, tuple(a.shape), _ORT_TYPES.get(a.type)) for a in session.get_inputs()]
        self._outputs = [TensorSpec(a.name, tuple(a.shape), _ORT_TYPES.get(a.type)) for a in session.get_outputs()]
        self._output_names = [s.name for s in self._outputs]
        self._contract = contract_from_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
        return self

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(self._output_names, feeds)
        except Exception as exc:
            raise BackendError(f"onnxruntime failed on {self.path.name}: {exc}") from exc
        return dict(zip(self._output_names, values))

    def _release(self) -> None:
        self._session = None
