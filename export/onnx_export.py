"""``skyfix export onnx``: a checkpoint's encoder branch(es) -> ONNX with the preprocessing contract in metadata.

Input decision (recorded in every model's metadata, see :data:`INPUT_LAYOUT`):
    The graph takes **RGB uint8 images NHWC** ``images: uint8[N, H, W, 3]`` (``N`` dynamic, ``H = W =`` the
    contract's input size) and normalises *inside the graph* (``(x/255 - mean) / std``, the contract's mean/std,
    folded into one Mul + Add). So the contract enforces itself (a caller cannot forget or double the
    normalisation), the host sends 4x fewer bytes than float32, and TensorRT fuses the Cast/Transpose/scale into
    the first convolution. The output is ``embedding: float32[N, d]`` with L2-normalised rows.

    The contract's ``skyfix.*`` keys are written unchanged (``EncoderContract.to_metadata``), and the facts the
    contract has no field for go under a different prefix, ``skyfix_export.*`` (``EncoderContract.from_metadata``
    rejects unknown ``skyfix.*`` keys): ``input_name``, ``input_layout`` ("NHWC"), ``input_dtype`` ("uint8"),
    ``input_normalization`` ("in_graph"), ``output_name``, ``branch``, ``precision``, ``opset``, ``torch_version``.

Branches: with shared weights (``EncoderConfig.shared``) the camera and aerial encoders are one network, exported
once (``branch = "shared"``). With separate weights ``--branch both`` writes ``STEM.camera.onnx`` (runtime: encodes
camera views) and ``STEM.aerial.onnx`` (maps are built with it). Both files carry the *same* contract (encoder id =
hash of all the checkpoint's weights), so a map built by the aerial file matches the camera file onboard.

torch and onnx are imported inside the functions: importing this module needs neither.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError

INPUT_NAME = "images"
OUTPUT_NAME = "embedding"
INPUT_LAYOUT = "NHWC"
INPUT_DTYPE = "uint8"
EXTRA_PREFIX = "skyfix_export."
DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4
BRANCHES = ("camera", "aerial", "both")


class OnnxExportError(ExportError):
    """The ONNX export failed, produced an invalid model, or an invalid request (branch, opset, path)."""


class ParityError(OnnxExportError):
    """The exported model's output differs from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ExportedModel:
    """One written ONNX file.

    Attributes:
        path: the ``.onnx`` file.
        branch: "camera", "aerial" or "shared".
        max_abs_diff: max |onnx - torch| over the parity batch (embedding units; rows are unit vectors).
        metadata: every ``metadata_props`` entry written (contract ``skyfix.*`` + ``skyfix_export.*``).
    """

    path: Path
    branch: str
    max_abs_diff: float
    metadata: dict


def export_metadata(contract, branch: str, precision: str = "fp32", opset: int | None = DEFAULT_OPSET,
                    extra: dict | None = None) -> dict[str, str]:
    """``metadata_props`` for a model: ``contract.to_metadata()`` plus ``skyfix_export.*`` keys (all strings).

    ``opset=None`` leaves the ``opset`` key out (a model that is not ONNX, e.g. a ``torch.export`` program).
    """
    meta = dict(contract.to_metadata())
    fields = {
        "input_name": INPUT_NAME,
        "input_layout": INPUT_LAYOUT,
        "input_dtype": INPUT_DTYPE,
        "input_normalization": "in_graph",
        "output_name": OUTPUT_NAME,
        "branch": branch,
        "precision": precision,
    }
    if opset is not None:
        fields["opset"] = str(int(opset))
    fields.update({k: str(v) for k, v in (extra or {}).items()})
    meta.update({EXTRA_PREFIX + k: v for k, v in fields.items()})
    return meta


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace ``model.metadata_props`` (an ``onnx.ModelProto``) entries with the keys of ``meta``."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    for key, value in keep + sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _wrapped(encoder, mean, std):
    """torch module ``uint8[N, H, W, 3] RGB -> float32[N, d]`` (normalisation in the graph)."""
    import torch
    from torch import nn

    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32).view(1, 3, 1, 1)
    bias = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, 3, 1, 1)

    class UInt8Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.register_buffer("scale", scale)
            self.register_buffer("bias", bias)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.permute(0, 3, 1, 2).to(torch.float32)
            return self.encoder(x * self.scale + self.bias)

    return UInt8Encoder().eval()


def sample_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic test images ``uint8[n, size, size, 3]``: smooth gradients + blobs + noise (not flat)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3), np.float32)
        for c in range(3):
            a, b, f = rng.uniform(-1, 1, 3)
            img[..., c] = 128 + 60 * np.sin(2 * np.pi * (a * xx + b * yy) * (1 + 3 * abs(f)))
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 1, 3)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.05 * r))
            img += blob[..., None] * rng.uniform(-80, 80, 3)
        img += rng.normal(0, 8, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def torch_embed(encoder, images: np.ndarray, mean, std) -> np.ndarray:
    """Reference embeddings: ``export.models.encoder.preprocess`` + ``encoder`` in PyTorch, ``float32[n, d]``."""
    import torch

    from .models.encoder import preprocess

    with torch.no_grad():
        return encoder(preprocess(images, mean, std)).numpy().astype(np.float32)


def ort_embed(path, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Embeddings of ``images uint8[n, h, w, 3]`` from an exported model run by ONNX Runtime (CPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0].astype(np.float32)


def check_parity(path, encoder, contract, n: int = 4, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max abs difference between ONNX Runtime and PyTorch embeddings on ``n`` deterministic images.

    Raises:
        ParityError: the difference exceeds ``tolerance`` (float32 embedding units).
    """
    images = sample_images(n, contract.input_width)
    ref = torch_embed(encoder, images, contract.mean, contract.std)
    got = ort_embed(path, images)
    if got.shape != ref.shape:
        raise ParityError(f"{path}: ONNX output shape {got.shape}, PyTorch {ref.shape}; re-export the model")
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= tolerance:
        raise ParityError(
            f"{path}: ONNX Runtime and PyTorch embeddings differ by max {diff:.3g} > {tolerance:g}; the export is "
            "not faithful (try another --opset, or report the model/torch/onnx versions)"
        )
    return diff


def _output_paths(output: Path, branches: list[str]) -> dict[str, Path]:
    if len(branches) == 1:
        return {branches[0]: output}
    return {b: output.with_name(f"{output.stem}.{b}{output.suffix or '.onnx'}") for b in branches}


def export_onnx(checkpoint, output, branch: str = "both", opset: int = DEFAULT_OPSET,
                tolerance: float = PARITY_TOLERANCE) -> list[ExportedModel]:
    """Export a checkpoint's encoder branch(es) to ONNX, check it, and verify parity with PyTorch.

    Args:
        checkpoint: a path, or an already loaded :class:`~export.checkpoint.Checkpoint`.
        output: the ``.onnx`` path. With separate weights and ``branch="both"``: ``STEM.camera.onnx`` and
            ``STEM.aerial.onnx`` next to it.
        branch: "camera", "aerial" or "both". With shared weights every choice writes the one shared network.
        opset: ONNX opset (>= 18).
        tolerance: max allowed |onnx - torch| on the embeddings.

    Returns:
        One :class:`ExportedModel` per file written.

    Raises:
        OnnxExportError: bad branch/opset, exporter failure, invalid model (onnx.checker).
        ParityError: ONNX Runtime output differs from PyTorch by more than ``tolerance``.
        CheckpointError: unreadable checkpoint.
    """
    import onnx
    import torch

    from .checkpoint import load_checkpoint

    if branch not in BRANCHES:
        raise OnnxExportError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if isinstance(opset, bool) or int(opset) != opset or opset < 18:
        raise OnnxExportError(f"opset must be an integer >= 18 (dynamic batch + modern Reduce ops), got {opset!r}")
    ckpt = checkpoint if hasattr(checkpoint, "model") else load_checkpoint(checkpoint)
    model, contract = ckpt.model.eval(), ckpt.contract
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise OnnxExportError(f"output must end in .onnx, got {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    if model.shared:
        branches = {"shared": model.camera}
    else:
        wanted = ["camera", "aerial"] if branch == "both" else [branch]
        branches = {b: (model.camera if b == "camera" else model.aerial) for b in wanted}
    paths = _output_paths(output, list(branches))
    size = contract.input_width
    results = []
    for name, encoder in branches.items():
        path = paths[name]
        wrapped = _wrapped(encoder, contract.mean, contract.std)
        example = torch.as_tensor(sample_images(2, size))
        batch = torch.export.Dim("batch", min=1, max=4096)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecation noise
                program = torch.onnx.export(
                    wrapped, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=int(opset),
                    dynamic_shapes={"images": {0: batch}}, dynamo=True, external_data=False, verbose=False,
                )
        except ImportError as exc:
            raise OnnxExportError(f"the ONNX exporter needs onnxscript ({exc}); install it with `pip install 'skyfix[train]'`") from exc
        except Exception as exc:  # noqa: BLE001 - torch.onnx raises many untyped errors
            raise OnnxExportError(f"torch.onnx.export failed for the {name} branch: {type(exc).__name__}: {exc}") from exc
        proto = program.model_proto
        meta = export_metadata(contract, name, "fp32", opset, {"torch_version": torch.__version__})
        set_metadata(proto, meta)
        proto.doc_string = (f"SkyFix {contract.name} {name} encoder: {INPUT_NAME} uint8[N,{size},{size},3] RGB -> "
                            f"{OUTPUT_NAME} float32[N,{contract.embedding_dim}] unit rows")
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise OnnxExportError(f"exported {name} model fails onnx.checker: {exc}") from exc
        tmp = path.with_name(path.name + ".partial")
        onnx.save(proto, str(tmp))
        tmp.replace(path)
        try:
            diff = check_parity(path, encoder, contract, tolerance=tolerance)
        except ParityError:
            path.unlink(missing_ok=True)
            raise
        results.append(ExportedModel(path=path, branch=name, max_abs_diff=diff, metadata=meta))
    return results


def describe(meta: dict[str, str]) -> str:
    """One line about a model's metadata (for CLI output)."""
    keys = ("branch", "precision", "input_layout", "input_dtype")
    return ", ".join(f"{k}={meta.get(EXTRA_PREFIX + k)}" for k in keys) + \
        f", encoder_id={meta.get('skyfix.encoder_id')}, dim={json.loads(meta.get('skyfix.embedding_dim', 'null'))}"
