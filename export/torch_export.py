"""``skyfix export torch``: a checkpoint's encoder branch(es) -> ``torch.export`` programs (``.pt2``) for GPUs
without TensorRT (run by :class:`runtime.backends.torch_backend.TorchBackend`, with CUDA graphs on CUDA).

Program: the same I/O as the ONNX export (:mod:`export.onnx_export`, whose torch wrapper is reused): input
``images: uint8[N, H, W, 3]`` RGB, ``N`` dynamic (1 to :data:`MAX_BATCH`; exported with an example batch of 2 so
torch.export does not specialise a batch of 1), ``H = W =`` the contract's input size, normalised inside the graph;
output ``embedding: float32[N, d]`` with unit rows.

Contract: the archive carries the extra file ``skyfix.json`` (``torch.export.save(..., extra_files=...)``)::

    {"metadata": export_metadata(...),   # contract skyfix.* keys + skyfix_export.* (layout, branch, precision, ...)
     "inputs": [{"name": "images", "shape": [null, H, W, 3], "dtype": "uint8"}],
     "outputs": [{"name": "embedding", "shape": [null, d], "dtype": "float32"}]}

Precision (``precision=``, CLI ``--fp16`` / ``--bf16``): "fp32"; "fp16" / "bf16" hold the weights and run the
backbone, the 1x1 convolutions and the projection in float16 / bfloat16, while these stay in float32: the input
normalisation (uint8 -> float32 -> scale and shift, then one cast), the pooling heads GeM (``x^p`` of small
activations underflows in float16, of large ones overflows) and NetVLAD (softmax, norms), and the final L2
normalisation; the output is float32. I/O are the same in every precision.

Parity, checked on every export against the float32 PyTorch encoder (the file reloaded from disk, at batch 1 and 3,
so the dynamic batch is exercised; :data:`TOLERANCES`): max |pt2 - torch| per embedding element (rows are unit
vectors) and the lowest cosine between the two embeddings of an image. fp32 <= 1e-4; fp16 <= 1e-2 and cosine
>= 0.999; bf16 <= 5e-2 and cosine >= 0.995. Measured on CPU, 64 synthetic images, against the FP32 ONNX export of
the trained default model (EfficientNet-Lite0, GeM + spatial, d=256, 128 px): fp32 5e-7; fp16 1.7e-3 / cosine
0.99997; bf16 1.2e-2 / 0.9980.

torch is imported inside the functions: importing this module needs it not.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError
from .onnx_export import BRANCHES, INPUT_NAME, OUTPUT_NAME, export_metadata, sample_images, torch_embed

#: the archive's extra file holding the contract and I/O specs (read by runtime.backends.torch_backend)
EXTRA_FILE = "skyfix.json"
SUFFIX = ".pt2"
MAX_BATCH = 4096
PRECISIONS = ("fp32", "fp16", "bf16")
#: batch sizes of the parity check (1 and a batch unlike the export example's 2)
PARITY_BATCHES = (1, 3)


@dataclass(frozen=True)
class Tolerance:
    """Parity bounds of one precision against the float32 PyTorch encoder.

    Attributes:
        max_abs: largest allowed |pt2 - torch| of one embedding element (embedding units; rows are unit vectors).
        min_cosine: smallest allowed cosine between the two embeddings of one image.
    """

    max_abs: float
    min_cosine: float


TOLERANCES = {
    "fp32": Tolerance(1e-4, 0.99999),
    "fp16": Tolerance(1e-2, 0.999),
    "bf16": Tolerance(5e-2, 0.995),
}


class TorchExportError(ExportError):
    """The torch.export export failed, or an invalid request (branch, precision, output path)."""


class TorchParityError(TorchExportError):
    """The exported program's embeddings differ from the float32 PyTorch encoder's by more than the tolerance."""


@dataclass(frozen=True)
class ExportedProgramFile:
    """One written ``.pt2`` file.

    Attributes:
        path: the ``.pt2`` file.
        branch: "camera", "aerial" or "shared".
        precision: "fp32", "fp16" or "bf16".
        max_abs_diff: max |pt2 - torch fp32| over the parity images (embedding units).
        min_cosine: lowest cosine between the program's and PyTorch's embedding of a parity image.
        metadata: the ``metadata`` object of ``skyfix.json`` (contract ``skyfix.*`` + ``skyfix_export.*``).
    """

    path: Path
    branch: str
    precision: str
    max_abs_diff: float
    min_cosine: float
    metadata: dict


def _torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def reduced_precision(encoder, precision: str):
    """A copy of ``encoder`` (an :class:`export.models.encoder.Encoder`) computing in ``precision`` ("fp16"/"bf16").

    ``forward(x: float32[n, 3, h, w] normalised) -> float32[n, d]`` unit rows: ``x`` is cast once, the backbone,
    the aggregation's convolutions and the projection run in the reduced type, GeM and NetVLAD modules in float32
    (their own float32 weights, copied from ``encoder`` before any rounding), the L2 normalisation in float32.
    ``encoder`` itself is left unchanged.
    """
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from .models.aggregation import GeM, NetVLAD

    dtype = _torch_dtype(precision)

    class InFloat32(nn.Module):
        """Runs ``module`` (kept float32) on a reduced-precision input; returns the input's dtype."""

        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x.to(torch.float32)).to(x.dtype)

    class ReducedPrecisionEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = copy.deepcopy(encoder).eval()
            keep = {name: copy.deepcopy(module).float() for name, module in encoder.named_modules()
                    if isinstance(module, (GeM, NetVLAD))}
            self.encoder.to(dtype)
            for name, module in keep.items():
                parent_name, _, child = name.rpartition(".")
                parent = self.encoder.get_submodule(parent_name) if parent_name else self.encoder
                setattr(parent, child, InFloat32(module))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e = self.encoder
            emb = e.projection(e.aggregation(e.backbone(x.to(dtype)))).to(torch.float32)
            return F.normalize(emb, dim=1) if e.normalize else emb

    return ReducedPrecisionEncoder().eval()


def _specs(contract) -> tuple[list[dict], list[dict]]:
    size_h, size_w = int(contract.input_height), int(contract.input_width)
    return ([{"name": INPUT_NAME, "shape": [None, size_h, size_w, 3], "dtype": "uint8"}],
            [{"name": OUTPUT_NAME, "shape": [None, int(contract.embedding_dim)], "dtype": "float32"}])


def export_program(encoder, contract, precision: str = "fp32"):
    """``torch.export`` program of ``encoder`` (float32 weights) in ``precision``: ``images uint8[N, H, W, 3]``
    (``N`` dynamic, 1 to :data:`MAX_BATCH`) -> ``float32[N, d]`` unit rows, normalisation in the graph.

    Raises:
        TorchExportError: unknown precision, or torch.export failed.
    """
    import torch

    from .onnx_export import _wrapped

    if precision not in PRECISIONS:
        raise TorchExportError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    core = encoder.eval() if precision == "fp32" else reduced_precision(encoder, precision)
    wrapped = _wrapped(core, contract.mean, contract.std)
    # an example batch of 2: with 1, torch.export would specialise the batch dimension to the constant 1
    example = torch.as_tensor(sample_images(2, int(contract.input_width)))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.export.export(wrapped, (example,), dynamic_shapes={INPUT_NAME: {0: batch}})
    except Exception as exc:  # noqa: BLE001 - torch.export raises many untyped errors
        raise TorchExportError(f"torch.export failed ({precision}): {type(exc).__name__}: {exc}") from exc


def program_embed(module, images: np.ndarray) -> np.ndarray:
    """Embeddings ``float32[n, d]`` of ``images uint8[n, h, w, 3]`` by a loaded program's module (CPU)."""
    import torch

    with torch.inference_mode():
        return module(torch.as_tensor(np.ascontiguousarray(images))).numpy().astype(np.float32)


def compare(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |got - ref| over all elements, lowest row cosine) of two ``float32[n, d]`` embedding batches."""
    diff = float(np.max(np.abs(got - ref)))
    dot = np.sum(got.astype(np.float64) * ref, axis=1)
    norms = np.linalg.norm(got.astype(np.float64), axis=1) * np.linalg.norm(ref.astype(np.float64), axis=1)
    return diff, float(np.min(dot / np.maximum(norms, 1e-30)))


def check_program_parity(path, encoder, contract, precision: str = "fp32",
                         tolerance: Tolerance | None = None) -> tuple[float, float]:
    """Load the ``.pt2`` at ``path`` and compare it with the float32 ``encoder`` at batch 1 and 3.

    Returns:
        (max abs diff, lowest cosine) over the :data:`PARITY_BATCHES` images.

    Raises:
        TorchParityError: a bound of ``tolerance`` (default ``TOLERANCES[precision]``) is not met, or a wrong shape.
    """
    import torch

    tol = tolerance or TOLERANCES[precision]
    module = torch.export.load(str(path)).module()
    worst_diff, worst_cos = 0.0, 1.0
    for seed, n in enumerate(PARITY_BATCHES):
        images = sample_images(n, int(contract.input_width), seed=100 + seed)
        ref = torch_embed(encoder, images, contract.mean, contract.std)
        got = program_embed(module, images)
        if got.shape != ref.shape:
            raise TorchParityError(f"{path}: program output shape {got.shape} at batch {n}, PyTorch {ref.shape}; "
                                   "re-export the model")
        diff, cos = compare(got, ref)
        worst_diff, worst_cos = max(worst_diff, diff), min(worst_cos, cos)
    if not (worst_diff <= tol.max_abs and worst_cos >= tol.min_cosine):
        raise TorchParityError(
            f"{path}: the {precision} program and the float32 PyTorch encoder differ by max {worst_diff:.3g} "
            f"(bound {tol.max_abs:g}), lowest cosine {worst_cos:.6f} (bound {tol.min_cosine:g}); the export is not "
            "faithful" + (" (try --fp16 or fp32: bfloat16 keeps 8 bits of mantissa)" if precision == "bf16" else
                          "; report the model and torch versions")
        )
    return worst_diff, worst_cos


def export_torch(checkpoint, output, branch: str = "both", precision: str = "fp32") -> list[ExportedProgramFile]:
    """Export a checkpoint's encoder branch(es) as ``torch.export`` programs and verify parity with PyTorch.

    Args:
        checkpoint: a path, or an already loaded :class:`~export.checkpoint.Checkpoint`.
        output: the ``.pt2`` path. With separate weights and ``branch="both"``: ``STEM.camera.pt2`` and
            ``STEM.aerial.pt2`` next to it (as :func:`export.onnx_export.export_onnx` names them).
        branch: "camera", "aerial" or "both". With shared weights every choice writes the one shared network.
        precision: "fp32", "fp16" or "bf16" (module docstring).

    Returns:
        One :class:`ExportedProgramFile` per file written.

    Raises:
        TorchExportError: bad branch/precision/output suffix, torch.export failure.
        TorchParityError: the reloaded program misses the precision's :data:`TOLERANCES` (the file is removed).
        CheckpointError: missing or unreadable checkpoint.
    """
    import torch

    from .checkpoint import load_checkpoint
    from .onnx_export import _output_paths

    if branch not in BRANCHES:
        raise TorchExportError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if precision not in PRECISIONS:
        raise TorchExportError(f"precision must be one of {PRECISIONS}, got {precision!r} (CLI: --fp16 or --bf16)")
    output = Path(output)
    if output.suffix.lower() != SUFFIX:
        raise TorchExportError(f"output must end in {SUFFIX} (a torch.export archive), got {output}")
    ckpt = checkpoint if hasattr(checkpoint, "model") else load_checkpoint(checkpoint)
    model, contract = ckpt.model.eval(), ckpt.contract
    output.parent.mkdir(parents=True, exist_ok=True)
    if model.shared:
        branches = {"shared": model.camera}
    else:
        wanted = ["camera", "aerial"] if branch == "both" else [branch]
        branches = {b: (model.camera if b == "camera" else model.aerial) for b in wanted}
    paths = _output_paths(output, list(branches))
    inputs, outputs = _specs(contract)
    results = []
    for name, encoder in branches.items():
        path = paths[name]
        program = export_program(encoder, contract, precision)
        meta = export_metadata(contract, name, precision, opset=None,
                               extra={"format": "torch.export", "torch_version": torch.__version__})
        info = json.dumps({"metadata": meta, "inputs": inputs, "outputs": outputs}, sort_keys=True)
        tmp = path.with_name(path.stem + ".partial" + SUFFIX)  # torch.export.save warns unless it ends in .pt2
        torch.export.save(program, str(tmp), extra_files={EXTRA_FILE: info})
        tmp.replace(path)
        try:
            diff, cos = check_program_parity(path, encoder, contract, precision)
        except TorchParityError:
            path.unlink(missing_ok=True)
            raise
        results.append(ExportedProgramFile(path=path, branch=name, precision=precision, max_abs_diff=diff,
                                           min_cosine=cos, metadata=meta))
    return results
