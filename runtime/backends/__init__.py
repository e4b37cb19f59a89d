"""Inference backends behind one interface (:class:`~runtime.backends.base.Backend`).

``load_backend(path)`` picks the engine from the file type: ``.onnx`` -> ONNX Runtime, ``.engine``/``.plan`` ->
TensorRT, ``.pt``/``.pth``/``.ts``/``.pt2`` -> PyTorch. Each backend module imports its heavy dependency (torch,
tensorrt, cuda) only when a model is loaded, so importing this package needs none of them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from runtime.errors import BackendError

from .base import Backend, TensorSpec

__all__ = ["Backend", "TensorSpec", "BACKENDS", "backend_for_path", "load_backend"]

#: backend name -> (module, class)
BACKENDS = {
    "onnxruntime": ("runtime.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("runtime.backends.torch_backend", "TorchBackend"),
    "tensorrt": ("runtime.backends.tensorrt_backend", "TensorRTBackend"),
}

SUFFIXES = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
    ".ts": "torch",
    ".pt2": "torch",
}


def backend_for_path(model_path: str | Path) -> str:
    """Backend name for a model file by its suffix (``.onnx`` -> "onnxruntime", ...)."""
    suffix = Path(model_path).suffix.lower()
    if suffix not in SUFFIXES:
        raise BackendError(
            f"cannot tell the backend of {model_path} from its suffix {suffix!r}; expected one of "
            f"{sorted(SUFFIXES)} or pass backend= one of {sorted(BACKENDS)}"
        )
    return SUFFIXES[suffix]


def load_backend(model_path: str | Path, backend: str = "auto", device: str = "auto", **options) -> Backend:
    """Load a model with the backend its file type calls for (or the one named).

    Args:
        model_path: ``.onnx``, ``.engine``/``.plan`` (with its ``.json`` sidecar) or ``.pt``/``.pth``/``.ts``/``.pt2``.
        backend: "auto" (by suffix), "onnxruntime", "torch" or "tensorrt".
        device: "auto", "cpu", "cuda" or "cuda:N" (TensorRT: CUDA only).
        options: backend-specific (onnxruntime: ``threads``; torch: ``cuda_graphs``, ``max_graphs``; tensorrt:
            ``check_sidecar``).

    Raises:
        BackendError: unknown backend/suffix, or the backend's own load errors.
        MissingExtraError: the backend's optional dependency is not installed (names the pip extra).
    """
    name = backend_for_path(model_path) if backend in (None, "auto") else backend
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected 'auto' or one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls).load(model_path, device=device, **options)
