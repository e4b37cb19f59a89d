"""The onboard loop's per-frame stages in torch, for a GPU (issue 14: "the loop on the GPU").

``Localizer(..., device="cuda")`` (``runtime replay/run/bench --device cuda``) runs these instead of the numpy/OpenCV
stages; ``device="cpu"`` (the default) keeps the CPU path exactly as it is. Each stage gives the CPU stage's results
within stated tolerances (tests/runtime/gpu/ checks them with torch on the CPU):

* :mod:`runtime.gpu.rectify` -- ground views: the frame is uploaded once, its mip pyramid (cv2.pyrDown's 5-tap
  kernel) is built on the device once per frame, and every view samples it with ``grid_sample`` at the source
  coordinates and mip levels computed by the one implementation of the geometry (``calibration.view.rectify_map``,
  ``mip_levels``, ``mip_plan``; numpy on the host).
* :mod:`runtime.gpu.search` -- exact prior-scoped search over the map's float16 embeddings uploaded once (scored in
  float32, top-k on the device; the scope's tile ids from ``MapPackage.scope_ids``).
* :mod:`runtime.gpu.align` -- the masked NCC of :class:`runtime.align.FineAligner` for every candidate and yaw
  hypothesis at once (FFT correlation), then FineAligner's own peak, yaw and sigma logic on the small NCC maps.
* :mod:`runtime.gpu.decode` -- JPEG frames decoded on the GPU (nvJPEG through torchvision, where installed)
  straight into the device frame; anything it does not take is decoded on the host as before.
* :mod:`runtime.gpu.timing` -- per-stage device time (``torch.cuda.Event`` pairs on CUDA).

Device names (:func:`loop_device`): ``"cpu"`` (numpy/OpenCV stages), ``"cuda"`` / ``"cuda:N"`` (torch stages on
that GPU), ``"torch:cpu"`` / ``"torch:cuda:N"`` (the torch stages on that torch device; ``torch:cpu`` runs the GPU
code path without a GPU, for parity checks).

torch is imported only when a torch device is chosen: importing this package (or ``runtime``) never loads it.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import MissingExtraError, OnboardError

__all__ = ["DeviceError", "TORCH_HINT", "import_torch", "ieee_fp32", "loop_device", "to_device", "torch_device"]

#: how to get torch (the training extra carries it)
TORCH_HINT = "pip install 'skyfix[train]'"


class DeviceError(OnboardError):
    """A loop device that cannot be used: an unknown name, or CUDA asked for where torch sees no GPU."""


def import_torch():
    """The ``torch`` module, or :class:`runtime.errors.MissingExtraError` naming the extra that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"the loop's torch stages (--device cuda) need PyTorch ({exc}); install it with `{TORCH_HINT}` (on "
            "Jetson, NVIDIA's PyTorch wheel for your JetPack), or run the loop with --device cpu"
        ) from exc
    return torch


def loop_device(device) -> str | None:
    """The torch device the loop's stages run on, or None for the numpy/OpenCV stages.

    ``"cpu"`` -> None; ``"cuda"`` -> ``"cuda:0"``; ``"cuda:N"`` -> ``"cuda:N"``; ``"torch:cpu"`` -> ``"cpu"``;
    ``"torch:cuda[:N]"`` -> ``"cuda:N"``. Checks the name only (no torch import).

    Raises:
        DeviceError: anything else.
    """
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string ('cpu', 'cuda', 'cuda:N' or 'torch:cpu'), got {device!r}")
    name = device.strip().lower()
    torch_prefixed = name.startswith("torch:")
    if torch_prefixed:
        name = name[len("torch:"):]
    if name == "cpu":
        return "cpu" if torch_prefixed else None
    if name == "cuda":
        return "cuda:0"
    if name.startswith("cuda:") and name[5:].isdigit():
        return f"cuda:{int(name[5:])}"
    raise DeviceError(
        f"unknown loop device {device!r}; expected 'cpu' (numpy/OpenCV stages), 'cuda' or 'cuda:N' (torch stages "
        "on that GPU), or 'torch:cpu' (the torch stages on the CPU, for parity checks)"
    )


def torch_device(name: str):
    """``torch.device`` for a :func:`loop_device` name, checking that torch sees the GPU.

    Raises:
        MissingExtraError: torch is not installed. DeviceError: CUDA asked for but not available, or index out of
        range.
    """
    torch = import_torch()
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA GPU (a CPU-only build, or no "
                "driver); install a CUDA build of PyTorch, or run the loop with --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {name!r} asked for, but torch sees {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return dev


def to_device(array, device):
    """A numpy array as a tensor on ``device`` (a read-only array, e.g. memory-mapped, is copied first: torch
    tensors are writable)."""
    import numpy as np

    torch = import_torch()
    a = np.ascontiguousarray(array)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).to(device)


@contextmanager
def ieee_fp32(torch, device):
    """Full float32 precision for matrix products and convolutions on a CUDA device while inside (no TF32, which
    keeps 10 mantissa bits: scores would move by ~1e-3); the process's settings are restored on exit. No-op on
    CPU."""
    if getattr(device, "type", str(device)) != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9: the precision API (mixing it with allow_tf32 is refused)
        conv = torch.backends.cudnn.conv
        saved = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
    else:
        saved = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
