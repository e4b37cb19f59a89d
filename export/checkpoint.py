"""Encoder checkpoints: one torch file holding only tensors and plain values, read with ``weights_only=True``.

Layout (a dict): ``format`` (:data:`FORMAT`), ``config`` (:class:`~export.models.encoder.EncoderConfig` as a dict),
``ground_resolution_m`` (metres per pixel the encoder is trained at), ``name``, ``state_dict`` (the
:class:`~export.models.encoder.TwoBranchEncoder`'s), ``optimizer`` (its state dict or None), ``epoch``, ``step``,
``metrics`` (str -> float) and ``rng`` (torch RNG state, for exact resumption; may be None).

Reading never unpickles arbitrary objects (``torch.load(..., weights_only=True)``), so a checkpoint from elsewhere
cannot run code. torch is imported inside the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from maps.contract import EncoderContract

from .errors import CheckpointError

FORMAT = "skyfix-encoder-checkpoint-v1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint. ``model`` is a TwoBranchEncoder in eval mode on the CPU."""

    model: object
    config: object
    ground_resolution_m: float
    name: str
    epoch: int = 0
    step: int = 0
    metrics: dict = field(default_factory=dict)
    optimizer_state: dict | None = None
    rng_state: object = None
    scaler_state: dict | None = None

    @property
    def contract(self) -> EncoderContract:
        return contract_for(self.model, self.config, self.ground_resolution_m, self.name)


def contract_for(model, config, ground_resolution_m: float, name: str) -> EncoderContract:
    """The preprocessing contract of ``model`` (encoder id = hash of its weights; ImageNet mean/std, RGB)."""
    from .models.encoder import encoder_id

    return EncoderContract(
        encoder_id=encoder_id(model),
        name=name,
        input_width=config.input_size,
        input_height=config.input_size,
        ground_resolution_m=float(ground_resolution_m),
        embedding_dim=config.dim,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        colour_order="RGB",
    )


def _on_cpu(value):
    """``value`` (a state dict: tensors in dicts and lists) with every tensor on the CPU (CPU tensors as they are)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        out = type(value)((k, _on_cpu(v)) for k, v in value.items())  # an OrderedDict stays one
        if hasattr(value, "_metadata"):  # a module state dict's version information
            out._metadata = value._metadata
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def save_checkpoint(path, model, config, *, ground_resolution_m: float, name: str, optimizer=None, epoch: int = 0,
                    step: int = 0, metrics: dict | None = None, rng_state=None, scaler_state: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename). Returns the path. Tensors are saved on the CPU whatever
    the model's device (a GPU run's checkpoint loads anywhere); ``scaler_state``: a ``torch.amp.GradScaler``'s
    state (fp16 training), stored only when given."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "ground_resolution_m": float(ground_resolution_m),
        "name": str(name),
        "state_dict": _on_cpu(model.state_dict()),
        "optimizer": _on_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "rng": rng_state,
    }
    if scaler_state is not None:
        payload["scaler"] = {str(k): (float(v) if isinstance(v, float) else int(v)) for k, v in scaler_state.items()}
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model (eval mode, CPU).

    Raises:
        CheckpointError: missing or unreadable file, another format, or weights that do not fit the config.
    """
    import torch

    from .models.encoder import EncoderConfig, build_encoder

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `skyfix train` or pass the right path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reading failure is a bad checkpoint for the user
        raise CheckpointError(
            f"cannot read checkpoint {path} as a weights-only torch file ({type(exc).__name__}: {exc}); "
            "SkyFix checkpoints hold only tensors and plain values"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a SkyFix encoder checkpoint: format {got!r}, expected {FORMAT!r}")
    try:
        config = EncoderConfig.from_dict(dict(payload["config"], pretrained=False))
        model = build_encoder(config)
        model.load_state_dict(payload["state_dict"], strict=True)
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {path} lacks {exc}") from exc
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit its config ({exc})") from exc
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        ground_resolution_m=float(payload["ground_resolution_m"]),
        name=str(payload.get("name", "skyfix-encoder")),
        epoch=int(payload.get("epoch", 0)),
        step=int(payload.get("step", 0)),
        metrics=dict(payload.get("metrics") or {}),
        optimizer_state=payload.get("optimizer"),
        rng_state=payload.get("rng"),
        scaler_state=payload.get("scaler"),
    )
