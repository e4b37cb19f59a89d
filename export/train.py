"""Training of the cross-view encoder on rendered pairs: presets, geographic data split, loop, checkpoints, ONNX.

``train(preset, out_dir)`` draws (rectified camera view, north-up map tile) pairs with
:class:`export.data.pairs.RenderedPairs` over the TRAINING areas of a :class:`DataSplit`, optimises a
:class:`export.models.encoder.TwoBranchEncoder` with AdamW and a cosine learning-rate schedule on an in-batch metric
loss (InfoNCE by default; soft-margin triplet or eDBL), prints a progress bar on stderr, and writes checkpoints
(:func:`export.checkpoint.save_checkpoint`, with the optimizer and torch RNG state) every ``checkpoint_every`` steps
and at the end. ``resume=True`` continues from ``OUT/last.pt`` exactly: the data of step ``s`` is a pure function of
``(seed, s)`` and the learning rate a pure function of ``s``, so a resumed run gives the same weights as an
uninterrupted one.

Data (:func:`default_split`): the NEON 0.1 m crop of :mod:`maps.samples` (fetchable from PyPI on a fresh clone) is
always a training area. When the real orthophotos of ``../shared/data`` (or ``$SKYFIX_DATA``) are present, the
training areas are NEON + netherlands_0.25m + openaerialmap_brazil_0.1m + openaerialmap_manila_0.1m +
pix4d_bali_0.35m + spacenet_atlanta_pan_0.5m and the held-out areas are ALL the Swiss orthophotos
(swissimage_zurich_a_0.5m, swissimage_zurich_b_0.5m, swissimage_strip_0.5m; the strip overlaps zurich_a, so both are
held out together; the footprints are checked disjoint with :func:`export.data.splits.split_by_orthophoto`).
Without the shared data the NEON crop is cut into 124 m blocks (:func:`export.data.splits.block_split`, seed 0, one
block held out, 52 m buffer) and the held-out block is the evaluation area.

Devices (``train(device=...)``, ``skyfix train --device cpu|cuda|cuda:N``): on the CPU (the default) nothing
changes. On a GPU the model and the loss run there, the pairs are rendered there (``pair_renderer``:
:mod:`export.data.gpu_pairs`, the same samples as :class:`RenderedPairs`, the geometry on the host) and the forward
pass runs under ``torch.autocast`` (``amp``: bf16 where the GPU supports it, else fp16 with a
``torch.amp.GradScaler``; the losses in float32). Checkpoints hold CPU tensors (and the scaler's state), so they load
and resume anywhere; a resumed run must render and cast as it did (``run.json``'s ``placement``). On CUDA the
weights are not bit-reproducible (cuDNN's backward kernels); the data still are a pure function of ``(seed, step)``.

torch is imported inside the functions (docs/DESIGN.md).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CheckpointError, ExportError, ModelConfigError

__all__ = ["TrainError", "PresetError", "DataSplitError", "DeviceError", "TrainPreset", "PRESETS", "get_preset", "Area",
           "DataSplit", "default_split", "shared_data_root", "train", "train_device", "TrainResult", "learning_rate"]

LOSSES = ("infonce", "triplet", "edbl")
ROTATIONS = ("noise", "random")
AMP_MODES = ("auto", "off", "bf16", "fp16")
PAIR_RENDERERS = ("auto", "cpu", "device")
DEVICE_JPEG = ("host", "skip")
LAST = "last.pt"
FINAL = "final.pt"
RUN_JSON = "run.json"

SHARED_TRAIN = ("netherlands_0.25m", "openaerialmap_brazil_0.1m", "openaerialmap_manila_0.1m", "pix4d_bali_0.35m",
                "spacenet_atlanta_pan_0.5m")
SHARED_HELD_OUT = ("swissimage_zurich_a_0.5m", "swissimage_zurich_b_0.5m", "swissimage_strip_0.5m")
NEON_NAME = "neon_yell_0.1m"


class TrainError(ExportError):
    """Training cannot start or continue (bad output folder, resume mismatch, no data)."""


class PresetError(TrainError, ModelConfigError):
    """An unknown preset name, unknown preset keys or invalid preset values."""


class DataSplitError(TrainError):
    """A data split that cannot be built (missing orthophoto, no training area, an overlapping held-out area)."""


class DeviceError(TrainError):
    """A training device that cannot be used: an unknown name, CUDA where torch sees no GPU, an AMP mode the device
    lacks."""


# ---------------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class TrainPreset:
    """A complete training recipe.

    Attributes:
        name: preset name (also the checkpoint/contract name ``skyfix-<name>``).
        backbone, pretrained, aggregation, dim, shared, orientation_head, input_size: the
            :class:`~export.models.encoder.EncoderConfig`.
        ground_resolution_m: metres per pixel of the encoder's input (tile = input_size x this).
        batch_size: pairs per step (in-batch negatives: batch_size - 1 per query).
        steps: optimisation steps (the CLI's ``--steps``; ``--epochs N`` = N x ``steps_per_epoch``).
        steps_per_epoch: steps per nominal epoch (data are drawn fresh every step; epochs only count).
        lr, weight_decay: AdamW. warmup_steps: linear warm-up, then cosine decay to ``min_lr_ratio * lr``.
        loss: "infonce" (temperature ``temperature``), "triplet" (soft margin, ``alpha``) or "edbl".
        orientation_weight: weight of the orientation-regression loss (needs ``orientation_head``).
        rotation: "noise": queries rectified with the true heading + N(0, ``heading_noise_deg``) (a compass);
            "random": uniformly random heading (rotation-invariance training; the label is the rotation).
        heading_noise_deg: see ``rotation``, degrees.
        altitude_m: (low, high) flight height for the rendered views, metres.
        max_tilt_deg: roll/pitch range, degrees.
        group_size: the batch is drawn as groups of this many places: the first anywhere in the area, the others
            within ``group_radius_m`` of it and at least ``group_min_separation_m`` from each other (hard, nearby
            in-batch negatives: the map's neighbouring tiles are what retrieval must tell apart); 1: every place
            independent. Must divide ``batch_size``.
        positive_jitter_m: the positive tile is off the true position by up to this per axis, metres (the map
            grid's offset from the vehicle: half the stride makes training look like retrieval on a map).
        freeze_blocks: keep the backbone's stem and first N blocks at their (ImageNet) weights, BatchNorm statistics
            included: generic low-level features, ~40 % less compute per step for N = 3 (more steps in the budget).
        group_radius_m, group_min_separation_m: see ``group_size``, metres (the separation should exceed the
            evaluation's correct-tile radius, the tile stride, so that no negative is a positive).
        checkpoint_every: steps between checkpoints (``last.pt``).
        field_augment: draw the map tiles as satellite and web-tile imagery gives them and the camera frames as
            another day and camera do (:meth:`FieldAugment.satellite_map`, :meth:`FieldAugment.field_camera`:
            coarser source, scale, season, haze, shadows, NIR false colour, JPEG); off: the orthophoto as it is.
        threads: torch CPU threads.
        time_budget_s: stop (and checkpoint) when the wall time of this invocation exceeds this, seconds; None: no
            limit. ``--resume`` continues such a run.
        seed: base seed (data, initialisation).
        amp: mixed precision of the forward pass: "auto" (on CUDA bf16 where the GPU supports it, else fp16 with a
            gradient scaler; on the CPU off), "off" (float32), "bf16", "fp16" (with ``torch.amp.GradScaler``).
            The losses are computed in float32 either way.
        pair_renderer: where the pairs are rendered: "auto" (on the training device when it is a GPU, else on the
            CPU), "cpu" (:class:`export.data.pairs.RenderedPairs`, numpy/OpenCV on the host) or "device"
            (:mod:`export.data.gpu_pairs`: the same samples, the pixel work with torch on the training device).
        device_jpeg: the photometric JPEG of the device renderer: "host" (cv2 on the host, as on the CPU) or "skip".
    """

    name: str = "default"
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    aggregation: str = "gem"
    dim: int = 256
    shared: bool = True
    orientation_head: bool = False
    input_size: int = 128
    ground_resolution_m: float = 0.4
    batch_size: int = 32
    steps: int = 600
    steps_per_epoch: int = 100
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    min_lr_ratio: float = 0.02
    loss: str = "infonce"
    temperature: float = 0.07
    alpha: float = 10.0
    orientation_weight: float = 0.1
    rotation: str = "noise"
    heading_noise_deg: float = 10.0
    altitude_m: tuple = (50.0, 150.0)
    max_tilt_deg: float = 15.0
    group_size: int = 1
    group_radius_m: float = 40.0
    group_min_separation_m: float = 16.0
    positive_jitter_m: float = 0.0
    freeze_blocks: int = 0
    checkpoint_every: int = 50
    field_augment: bool = False
    threads: int = 1
    time_budget_s: float | None = 1740.0
    seed: int = 0
    amp: str = "auto"
    pair_renderer: str = "auto"
    device_jpeg: str = "host"

    def __post_init__(self) -> None:
        def positive_int(key):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise PresetError(f"preset {key} must be a positive integer, got {v!r}")

        for key in ("dim", "input_size", "batch_size", "steps", "steps_per_epoch", "checkpoint_every", "threads",
                    "group_size"):
            positive_int(key)
        for key in ("warmup_steps", "seed", "freeze_blocks"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise PresetError(f"preset {key} must be an integer >= 0, got {v!r}")
        for key in ("ground_resolution_m", "lr", "temperature", "alpha", "group_radius_m"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise PresetError(f"preset {key} must be a number > 0, got {v!r}")
        for key in ("weight_decay", "orientation_weight", "heading_noise_deg", "max_tilt_deg", "min_lr_ratio",
                    "group_min_separation_m", "positive_jitter_m"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise PresetError(f"preset {key} must be a number >= 0, got {v!r}")
        if self.batch_size < 2:
            raise PresetError(f"batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if self.batch_size % self.group_size:
            raise PresetError(f"group_size ({self.group_size}) must divide batch_size ({self.batch_size})")
        if self.loss not in LOSSES:
            raise PresetError(f"preset loss must be one of {LOSSES}, got {self.loss!r}")
        if self.rotation not in ROTATIONS:
            raise PresetError(f"preset rotation must be one of {ROTATIONS}, got {self.rotation!r}")
        for key, choices in (("amp", AMP_MODES), ("pair_renderer", PAIR_RENDERERS), ("device_jpeg", DEVICE_JPEG)):
            if getattr(self, key) not in choices:
                raise PresetError(f"preset {key} must be one of {choices}, got {getattr(self, key)!r}")
        if self.time_budget_s is not None and not (isinstance(self.time_budget_s, (int, float)) and self.time_budget_s > 0):
            raise PresetError(f"time_budget_s must be > 0 seconds or None, got {self.time_budget_s!r}")
        try:
            lo, hi = (float(v) for v in self.altitude_m)
        except (TypeError, ValueError):
            raise PresetError(f"altitude_m must be a (low, high) pair of metres, got {self.altitude_m!r}") from None
        object.__setattr__(self, "altitude_m", (lo, hi))
        # the model fields, checked without importing torch (EncoderConfig checks them again when built)
        if self.backbone not in ("efficientnet_lite0", "small_cnn"):
            raise PresetError(f"preset backbone must be efficientnet_lite0 or small_cnn, got {self.backbone!r}")
        if self.aggregation not in ("gem", "netvlad", "gem_spatial"):
            raise PresetError(f"preset aggregation must be gem, netvlad or gem_spatial, got {self.aggregation!r}")
        if self.pretrained and self.backbone != "efficientnet_lite0":
            raise PresetError(f"pretrained weights exist only for efficientnet_lite0, not {self.backbone!r}")
        for key in ("pretrained", "shared", "orientation_head", "field_augment"):
            if not isinstance(getattr(self, key), bool):
                raise PresetError(f"preset {key} must be true/false, got {getattr(self, key)!r}")
        if self.freeze_blocks and self.backbone != "efficientnet_lite0":
            raise PresetError(f"freeze_blocks needs the pretrained efficientnet_lite0 backbone, not {self.backbone!r}")
        if self.freeze_blocks and not self.pretrained:
            raise PresetError("freeze_blocks > 0 keeps ImageNet weights: it needs pretrained = true")
        if self.input_size % 32:
            raise PresetError(f"input_size must be a multiple of 32 pixels, got {self.input_size}")

    def encoder_config(self):
        """The :class:`~export.models.encoder.EncoderConfig` of this preset."""
        from .models.encoder import EncoderConfig  # torch: only when a model is wanted

        return EncoderConfig(backbone=self.backbone, pretrained=self.pretrained, aggregation=self.aggregation,
                             dim=self.dim, shared=self.shared, orientation_head=self.orientation_head,
                             input_size=self.input_size)

    def pair_config(self):
        """The :class:`~export.data.pairs.PairConfig` of the training pairs."""
        from .data.augment import FieldAugment
        from .data.pairs import PairConfig

        aug = {"map_field": FieldAugment.satellite_map(), "query_field": FieldAugment.field_camera()} \
            if self.field_augment else {}
        return PairConfig(altitude_m=self.altitude_m, max_tilt_deg=self.max_tilt_deg,
                          heading_noise_deg=0.0 if self.rotation == "random" else self.heading_noise_deg,
                          heading_dropped=self.rotation == "random", positive_jitter_m=self.positive_jitter_m, **aug)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["altitude_m"] = list(self.altitude_m)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainPreset":
        """Strict construction from a mapping: unknown keys are rejected with the list of known ones."""
        from maps.config import strict_from_dict

        return strict_from_dict(cls, d, "preset", error=PresetError)


PRESETS: dict[str, TrainPreset] = {
    # 2-core CPU, <= 30 min wall: EfficientNet-Lite0 from ImageNet (stem + 4 first blocks frozen), GeM + 4x4 layout,
    # 1100 steps of 32 pairs in groups of 8 nearby places, positives jittered by half a stride, on ONE torch thread
    # (the other core renders pairs). The time budget stops it with a checkpoint at 29 min on a busy machine
    # (`--resume` continues). This trains the shipped runtime/models model.
    "default": TrainPreset(aggregation="gem_spatial", steps=1100, group_size=8, positive_jitter_m=6.4,
                           freeze_blocks=4),
    # the default recipe on maps as they come in the field (satellite resampling 0.3-1 m/px, scale, season, haze,
    # shadows, NIR false colour, JPEG; FieldAugment): an experiment of issue 13, see runtime/models/README.md
    "field": TrainPreset(name="field", aggregation="gem_spatial", steps=1100, group_size=8, positive_jitter_m=6.4,
                         freeze_blocks=4, field_augment=True),
    # one data-centre GPU (H100/H200 class), <= 10 min wall: `skyfix train --preset gpu --device cuda`. SIZED FROM CPU
    # MEASUREMENTS AND ASSUMPTIONS, NOT MEASURED ON A GPU (none was lent). The whole EfficientNet-Lite0 trains (no
    # frozen blocks), 1800 steps of 128 pairs in groups of 8 (230k pairs, 6.5x the default's 35k), bf16 autocast
    # (amp auto), pairs rendered on the GPU (export.data.gpu_pairs). Measured on one busy CPU core: the unfrozen
    # model's step is ~2.7 s per 32 pairs (~11 s per 128); the renderer's host geometry ~3 ms and the host JPEG
    # (cv2) ~0.4 ms per pair. Assumed: the GPU runs the model step >= 100x faster than that core (~0.1 s per 128 pairs in bf16);
    # the host geometry and JPEG spread over up to 8 threads (~0.15-0.25 s per batch, overlapped with the step by
    # the prefetch thread); the device's per-pair pixel work (window pyramid, grid_sample, photometric) < 0.5 ms.
    # Hence ~0.25 s per step, ~2400 steps in 600 s; 1800 leaves a margin and the time budget (600 s) stops the run
    # with a checkpoint if the GPU is slower (`--resume` continues). 128 pairs rather than 256 because the training
    # orthophotos are small (sampleable squares of 125-390 m): 256 places per batch would put up to ~13 other places
    # within 16 m of each (false in-batch negatives), 128 up to ~6.6 (the default's 32: up to 1.6).
    "gpu": TrainPreset(name="gpu", aggregation="gem_spatial", batch_size=128, group_size=8, steps=1800,
                       steps_per_epoch=100, lr=5e-4, warmup_steps=60, positive_jitter_m=6.4, freeze_blocks=0,
                       checkpoint_every=200, threads=4, time_budget_s=600.0),
    # seconds, for tests: tiny small_cnn at 64 px
    "tiny": TrainPreset(name="tiny", backbone="small_cnn", pretrained=False, dim=32, input_size=64, batch_size=8,
                        steps=6, steps_per_epoch=3, lr=1e-3, warmup_steps=1, checkpoint_every=3, threads=1,
                        time_budget_s=None),
}


def get_preset(name: str, **overrides) -> TrainPreset:
    """The preset ``name`` with ``overrides`` (preset keys) applied; unknown names or keys raise :class:`PresetError`."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    base = PRESETS[name]
    known = {f.name for f in fields(TrainPreset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PresetError(f"unknown preset keys {unknown}; expected only {sorted(known)}")
    return replace(base, **overrides)


# ---------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class Area:
    """One orthophoto (or part of it) of a split.

    Attributes:
        name: a label (reported in ``run.json`` and evaluation tables).
        path: GeoTIFF file or folder (``maps.geotiff.load_orthophoto``); or None with ``ortho`` given.
        ortho: an already loaded :class:`maps.ortho.Orthophoto` (tests, synthetic data).
        boxes: (x_min, y_min, x_max, y_max) boxes in the orthophoto's local metres to sample in; None: all of it.
    """

    name: str
    path: str | None = None
    ortho: object = None
    boxes: tuple | None = None

    def load(self):
        """The :class:`maps.ortho.Orthophoto` (loaded from ``path`` on each call unless given)."""
        if self.ortho is not None:
            return self.ortho
        if self.path is None:
            raise DataSplitError(f"area {self.name!r} has neither a path nor an orthophoto")
        from maps.errors import MapError
        from maps.geotiff import load_orthophoto

        try:
            return load_orthophoto(self.path)
        except MapError as exc:
            raise DataSplitError(f"cannot load area {self.name!r} from {self.path}: {exc}") from exc

    def describe(self) -> dict:
        return {"name": self.name, "path": self.path,
                "boxes": [list(map(float, b)) for b in self.boxes] if self.boxes is not None else None}


@dataclass(frozen=True, eq=False)
class DataSplit:
    """Training and held-out areas (geographically disjoint)."""

    train: tuple[Area, ...]
    held_out: tuple[Area, ...]
    note: str = ""

    def __post_init__(self) -> None:
        if not self.train:
            raise DataSplitError("a data split needs at least one training area")

    def describe(self) -> dict:
        return {"train": [a.describe() for a in self.train], "held_out": [a.describe() for a in self.held_out],
                "note": self.note}


def shared_data_root() -> Path | None:
    """``$SKYFIX_DATA`` or ``../shared/data`` next to the repository, when it exists; else None."""
    env = os.environ.get("SKYFIX_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if (c / "ortho").is_dir():
            return c
    return None


def default_split(data_root: str | os.PathLike | None = None, *, use_shared: bool = True,
                  neon_path: str | os.PathLike | None = None) -> DataSplit:
    """The split of the presets (see the module docstring for the exact areas).

    Args:
        data_root: folder holding ``ortho/`` (default :func:`shared_data_root`); ignored when ``use_shared`` is False.
        use_shared: use the shared orthophotos when present.
        neon_path: the NEON GeoTIFF (default :func:`maps.samples.default_orthophoto_path`, fetched on first use).
    Raises:
        DataSplitError: the NEON crop cannot be fetched, or the footprints of the held-out areas overlap training ones.
    """
    from maps.errors import MapError

    if neon_path is None:
        from maps.samples import default_orthophoto_path

        try:
            neon_path = default_orthophoto_path()
        except MapError as exc:
            raise DataSplitError(f"cannot fetch the default NEON orthophoto: {exc}") from exc
    neon = Area(NEON_NAME, str(neon_path))
    root = (Path(data_root) if data_root is not None else shared_data_root()) if use_shared else None
    if root is not None and all((root / "ortho" / _file(n)).exists() for n in SHARED_TRAIN + SHARED_HELD_OUT):
        train = (neon,) + tuple(Area(n, str(root / "ortho" / _file(n))) for n in SHARED_TRAIN)
        held = tuple(Area(n, str(root / "ortho" / _file(n))) for n in SHARED_HELD_OUT)
        split = DataSplit(train, held, note=f"whole orthophotos held out (Swiss, {root}); footprints checked disjoint")
        check_split(split)
        return split
    from export.data.splits import block_split

    ortho = neon.load()
    blocks = block_split(ortho, block_m=124.0, held_out_fraction=0.25, buffer_m=52.0, seed=0)
    return DataSplit((Area(NEON_NAME, str(neon_path), boxes=blocks.train),),
                     (Area(NEON_NAME + "_heldout_block", str(neon_path), boxes=blocks.held_out),),
                     note="no shared data: NEON crop split into 124 m blocks (seed 0), one held out, 52 m buffer")


def _file(name: str) -> str:
    return name if name.endswith("0.5m") and name.startswith("swissimage_strip") else name + ".tif"


def check_split(split: DataSplit) -> None:
    """Raise :class:`DataSplitError` when a held-out orthophoto's footprint overlaps a training one (whole-ortho
    areas only; block areas are checked by :func:`export.data.splits.block_split`)."""
    from export.data.splits import SplitOverlapError, area_of, check_disjoint

    whole_train = [a for a in split.train if a.boxes is None]
    whole_held = [a for a in split.held_out if a.boxes is None]
    if not whole_train or not whole_held:
        return
    try:
        check_disjoint([area_of(a.name, a.load()) for a in whole_train], [area_of(a.name, a.load()) for a in whole_held])
    except SplitOverlapError as exc:
        raise DataSplitError(str(exc)) from exc


class _MultiPairs:
    """Deterministic pairs over several areas. Every batch comes from ONE area (round robin: step ``s`` uses area
    ``s % len(areas)``), so the in-batch negatives are other places of the same orthophoto (hard, same-domain
    negatives, as the retrieval at test time) rather than other domains (easy); its samples are items
    ``(s // len(areas)) * batch_size + j`` of that area's :class:`RenderedPairs` (same seed)."""

    def __init__(self, areas: Sequence[Area], contract, seed: int, config, group_size: int = 1,
                 group_radius_m: float = 40.0, group_min_separation_m: float = 16.0) -> None:
        from .data.pairs import RenderedPairs

        self.sets = []
        for a in areas:
            ortho = a.load()
            self.sets.append(RenderedPairs(ortho, contract, 2**40, seed, config, areas=a.boxes))
        self.group_size, self.group_radius_m = group_size, group_radius_m
        self.group_min_separation_m = group_min_separation_m

    def batch(self, step: int, batch_size: int) -> list:
        """The samples of ``step``: groups of ``group_size`` nearby places (see :class:`TrainPreset`); a neighbour
        that cannot be placed (edge of the area, no valid imagery) is drawn anywhere instead."""
        from .data.pairs import PairSamplingError

        n = len(self.sets)
        pairs = self.sets[step % n]
        start = (step // n) * batch_size
        out: list = []
        for i in range(start, start + batch_size):
            j = (i - start) % self.group_size
            if j == 0:
                out.append(pairs[i])
                continue
            group = out[len(out) - j:]
            try:
                out.append(pairs.sample(i, around=group[0].position, radius_m=self.group_radius_m,
                                        avoid=np.stack([s.position for s in group]),
                                        min_separation_m=self.group_min_separation_m))
            except PairSamplingError:
                out.append(pairs[i])
        return out


class _DevicePairs:
    """:class:`_MultiPairs`' batches (the same areas, samples and groups) rendered on a torch device
    (:class:`export.data.gpu_pairs.TorchPairRenderer`, one per area: its orthophoto uploaded once). ``batch``
    returns a :class:`export.data.gpu_pairs.DevicePairBatch`."""

    def __init__(self, multi: _MultiPairs, device, jpeg: str = "host") -> None:
        from .data.gpu_pairs import TorchPairRenderer

        self.multi = multi
        self.renderers = [TorchPairRenderer(p, device, jpeg=jpeg) for p in multi.sets]

    def batch(self, step: int, batch_size: int):
        n = len(self.renderers)
        start = (step // n) * batch_size
        m = self.multi
        return self.renderers[step % n].batch(range(start, start + batch_size), group_size=m.group_size,
                                              group_radius_m=m.group_radius_m,
                                              group_min_separation_m=m.group_min_separation_m)

    def close(self) -> None:
        for r in self.renderers:
            r.close()


# ---------------------------------------------------------------------------------------------------- devices
def train_device(name):
    """The ``torch.device`` for ``skyfix train --device``: "cpu", "cuda" (= cuda:0) or "cuda:N".

    Raises:
        DeviceError: another name, CUDA where torch sees no GPU (a CPU-only build or no driver), an index beyond the
            GPUs torch sees.
    """
    import torch

    if not isinstance(name, str) or not name.strip():
        raise DeviceError(f"the training device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    text = name.strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        index = int(text[5:]) if text != "cuda" else 0
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False: a "
                "CPU-only build of torch or no NVIDIA driver); install a CUDA build of PyTorch, or train with --device "
                "cpu")
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"--device {name}: torch sees {count} CUDA GPU(s) (cuda:0..cuda:{count - 1}); choose one "
                              "of them, or train with --device cpu")
        return torch.device("cuda", index)
    raise DeviceError(f"unknown training device {name!r}; expected 'cpu', 'cuda' or 'cuda:N' (a GPU torch sees)")


def _amp_dtype(preset: TrainPreset, device):
    """The autocast dtype of ``preset.amp`` on ``device`` (None: float32); DeviceError when the GPU lacks it."""
    import torch

    mode = preset.amp
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if mode == "auto":
            return torch.bfloat16 if bf16 else torch.float16
        if mode == "bf16" and not bf16:
            raise DeviceError(f"amp = bf16 but {torch.cuda.get_device_name(device)} has no bfloat16 support; use "
                              "amp = fp16 (with a gradient scaler), auto or off")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def _device_input(images, mean, std):
    """RGB uint8[n, h, w, 3] on a torch device -> normalised float32[n, 3, h, w] there (the operations of
    :func:`export.models.encoder.preprocess`)."""
    import torch

    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


# ---------------------------------------------------------------------------------------------------- loop
def learning_rate(preset: TrainPreset, step: int, total_steps: int | None = None) -> float:
    """LR at ``step`` (0-based): linear warm-up over ``warmup_steps``, then cosine to ``min_lr_ratio * lr``."""
    total = preset.steps if total_steps is None else total_steps
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / (preset.warmup_steps + 1)
    span = max(1, total - preset.warmup_steps)
    t = min(1.0, (step - preset.warmup_steps) / span)
    lo = preset.lr * preset.min_lr_ratio
    return lo + 0.5 * (preset.lr - lo) * (1.0 + math.cos(math.pi * t))


class _Progress:
    """A plain-text progress bar on stderr (carriage returns on a terminal, a line every ~5 % otherwise)."""

    def __init__(self, total: int, start: int, stream=None) -> None:
        self.total, self.start, self.t0 = total, start, time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, total // 20)

    def update(self, step: int, loss: float, lr: float) -> None:
        done = step + 1
        el = time.monotonic() - self.t0
        rate = (done - self.start) / el if el > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        fill = int(width * done / self.total)
        line = (f"train [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                f"{rate:.2f} step/s elapsed {el:.0f}s eta {eta:.0f}s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        elif done % self.every == 0 or done == self.total or done == self.start + 1:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: ``checkpoint`` (final or last), ``steps_done`` (total), ``losses`` (this run's
    per-step losses), ``wall_s`` (this run's wall time), ``stopped_early`` (time budget hit)."""

    checkpoint: Path
    steps_done: int
    losses: tuple[float, ...]
    wall_s: float
    steps_per_s: float
    stopped_early: bool = False
    split: dict = field(default_factory=dict)


def _frozen_modules(model, n: int) -> list:
    """The stem and first ``n`` blocks of every distinct EfficientNet backbone of ``model`` ([] for n = 0)."""
    if n <= 0:
        return []
    out, seen = [], set()
    for branch in (model.camera, model.aerial):
        bb = branch.backbone
        if id(bb) in seen:
            continue
        seen.add(id(bb))
        if n > len(bb.blocks):
            raise PresetError(f"freeze_blocks = {n} but the backbone has {len(bb.blocks)} blocks")
        out += [bb.stem] + list(bb.blocks[:n])
    return out


def _to_tensor(images: np.ndarray, mean, std):
    from .models.encoder import preprocess

    return preprocess(images, mean, std)


def train(preset: TrainPreset, out_dir, *, resume: bool = False, split: DataSplit | None = None,
          progress: bool = True, stream=None, stop_after: int | None = None, device="cpu") -> TrainResult:
    """Train ``preset`` into ``out_dir`` (``last.pt`` every ``checkpoint_every`` steps, ``final.pt`` at the end,
    ``run.json`` = preset + split + device + timings).

    Args:
        preset: the recipe (:func:`get_preset`).
        out_dir: output folder. Without ``resume`` it must not hold a ``last.pt`` already.
        resume: continue from ``out_dir/last.pt`` (the preset must equal the one recorded in ``run.json``).
        split: training/held-out areas (default :func:`default_split`).
        progress: print the progress bar on ``stream`` (default stderr).
        stop_after: stop (with a checkpoint) once this many steps are done in total, as if interrupted; a later
            ``resume=True`` call continues exactly.
        device: "cpu" (default), "cuda" or "cuda:N" (:func:`train_device`): where the model, the loss and (with
            ``pair_renderer`` auto/device) the pair rendering run; ``amp`` picks the autocast dtype. Checkpoints hold
            CPU tensors whatever the device. A resumed run must render pairs and use AMP as it did (run.json).
    Raises:
        TrainError / PresetError / DataSplitError / CheckpointError / DeviceError.
    """
    import torch

    from .checkpoint import load_checkpoint, save_checkpoint
    from .losses import edbl, info_nce, orientation_loss, soft_margin_triplet
    from .models.encoder import build_encoder
    from maps.contract import EncoderContract

    if not isinstance(preset, TrainPreset):
        raise PresetError(f"train needs a TrainPreset (get_preset), got {type(preset).__name__}")
    dev = train_device(device)
    amp = _amp_dtype(preset, dev)
    on_device = preset.pair_renderer == "device" or (preset.pair_renderer == "auto" and dev.type == "cuda")
    placement = {"device": str(dev), "pair_renderer": "device" if on_device else "cpu",
                 "amp": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrainError(f"output {out} exists and is not a folder")
    last = out / LAST
    if resume and not last.is_file():
        raise TrainError(f"--resume: no checkpoint {last}; run without --resume to start training")
    if not resume and last.exists():
        raise TrainError(f"{out} already holds a run ({last}); pass --resume to continue it or choose another --out")
    split = default_split() if split is None else split
    if resume:
        try:
            recorded_run = json.loads((out / RUN_JSON).read_text())
            recorded = recorded_run["preset"]
        except (OSError, ValueError, KeyError) as exc:
            raise TrainError(f"--resume: cannot read the preset of the run from {out / RUN_JSON} ({exc})") from exc
        # keys added to the preset since the run was recorded take their defaults
        recorded = {**{f.name: json.loads(json.dumps(TrainPreset.to_dict(TrainPreset())[f.name])) for f in fields(TrainPreset)
                       if f.name not in recorded}, **recorded}
        if recorded != json.loads(json.dumps(preset.to_dict())):
            diff = sorted(k for k in recorded if recorded.get(k) != json.loads(json.dumps(preset.to_dict())).get(k))
            raise TrainError(f"--resume: the preset differs from the recorded one in {diff}; use the same options")
        was = {k: v for k, v in recorded_run.get("placement", {"pair_renderer": "cpu", "amp": "off"}).items()
               if k != "device"}
        if was != {k: v for k, v in placement.items() if k != "device"}:
            raise TrainError(f"--resume: the run rendered pairs and used AMP as {was} (run.json), this call would use "
                             f"{placement}; resume with the run's --device (it was "
                             f"{recorded_run.get('placement', {}).get('device', 'cpu')})")
        names = [a["name"] for a in recorded_run.get("split", {}).get("train", [])]
        if names and names != [a.name for a in split.train]:
            raise TrainError(f"--resume: the run trained on {names} but the data now are "
                             f"{[a.name for a in split.train]}; use the same data (--no-shared-data / SKYFIX_DATA)")
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(preset.threads)
    torch.manual_seed(preset.seed)
    config = preset.encoder_config()
    model = build_encoder(config)
    name = f"skyfix-{preset.name}"
    frozen = _frozen_modules(model, preset.freeze_blocks)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    model.to(dev)  # before the optimizer state is loaded: it follows its parameters' device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes
    scaler = torch.amp.GradScaler(dev.type) if amp == torch.float16 else None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=preset.lr,
                            weight_decay=preset.weight_decay)
    start = 0
    if resume:
        ck = load_checkpoint(last)
        if ck.config.to_dict() != dict(config.to_dict(), pretrained=False):
            raise CheckpointError(f"{last} was trained with another model config; cannot resume with this preset")
        model.load_state_dict(ck.model.state_dict())
        if ck.optimizer_state is None:
            raise CheckpointError(f"{last} has no optimizer state; cannot resume exactly")
        opt.load_state_dict(ck.optimizer_state)
        if ck.rng_state is not None:
            torch.set_rng_state(ck.rng_state)
        if scaler is not None and ck.scaler_state is not None:
            scaler.load_state_dict(ck.scaler_state)
        start = ck.step
    contract = EncoderContract(encoder_id="training", name=name, input_width=config.input_size,
                               input_height=config.input_size, ground_resolution_m=preset.ground_resolution_m,
                               embedding_dim=config.dim, mean=config.mean, std=config.std, colour_order="RGB")
    data = _MultiPairs(split.train, contract, preset.seed, preset.pair_config(), preset.group_size,
                       preset.group_radius_m, preset.group_min_separation_m)
    if on_device:
        data = _DevicePairs(data, dev, preset.device_jpeg)
    command = f"skyfix train --preset {preset.name} --seed {preset.seed} --steps {preset.steps}"
    run_info = {"preset": preset.to_dict(), "split": split.describe(),
                "command": command + (f" --device {dev}" if dev.type != "cpu" else "")}
    if dev.type != "cpu" or on_device or amp is not None:
        run_info["placement"] = placement
    (out / RUN_JSON).write_text(json.dumps(run_info, indent=2))

    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    def save(path, step, metrics):
        return save_checkpoint(path, model, config, ground_resolution_m=preset.ground_resolution_m, name=name,
                               optimizer=opt, epoch=step // preset.steps_per_epoch, step=step, metrics=metrics,
                               rng_state=torch.get_rng_state(),
                               scaler_state=scaler.state_dict() if scaler is not None else None)

    bar = _Progress(preset.steps, start, stream) if progress else None
    losses: list[float] = []
    t0 = time.monotonic()
    stopped = False
    model.train()
    for m in frozen:
        m.eval()  # frozen blocks keep their BatchNorm statistics too
    step = start
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # renders the next batch while this one trains
            nxt = pool.submit(data.batch, step, preset.batch_size) if step < preset.steps else None
            while step < preset.steps:
                samples = nxt.result()
                nxt = pool.submit(data.batch, step + 1, preset.batch_size) if step + 1 < preset.steps else None
                if on_device:  # a DevicePairBatch: the images are on the device already
                    q = _device_input(samples.query, config.mean, config.std)
                    p = _device_input(samples.positive, config.mean, config.std)
                    rotations = samples.rotation_rad.tolist()
                else:
                    q = _to_tensor(np.stack([s.query for s in samples]), config.mean, config.std)
                    p = _to_tensor(np.stack([s.positive for s in samples]), config.mean, config.std)
                    rotations = [s.rotation_rad for s in samples]
                lr = learning_rate(preset, step)
                for g in opt.param_groups:
                    g["lr"] = lr
                with torch.autocast(dev.type, dtype=amp) if amp is not None else nullcontext():
                    if config.orientation_head:
                        eq, ep, cs = model.forward_with_orientation(q, p)
                    else:
                        eq, ep = model(q, p)
                if amp is not None:  # the losses in float32
                    eq, ep = eq.float(), ep.float()
                    if config.orientation_head:
                        cs = cs.float()
                if preset.loss == "infonce":
                    loss = info_nce(eq, ep, preset.temperature)
                elif preset.loss == "triplet":
                    loss = soft_margin_triplet(eq, ep, preset.alpha)
                else:
                    loss = edbl(eq, ep, preset.alpha)
                if config.orientation_head:
                    rot = torch.tensor(rotations, dtype=torch.float32, device=dev)
                    loss = loss + preset.orientation_weight * orientation_loss(cs, rot)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                step += 1
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update(step - 1, losses[-1], lr)
                if step % preset.checkpoint_every == 0 or step == preset.steps:
                    save(last, step, {"loss": losses[-1]})
                if stop_after is not None and step >= stop_after and step < preset.steps:
                    save(last, step, {"loss": losses[-1]})
                    stopped = True
                    break
                if preset.time_budget_s is not None and time.monotonic() - t0 > preset.time_budget_s and step < preset.steps:
                    save(last, step, {"loss": losses[-1]})
                    stopped = True
                    if stream is not None or progress:
                        (stream or sys.stderr).write(f"train: time budget {preset.time_budget_s:.0f} s reached at step "
                                                     f"{step}/{preset.steps}; checkpoint {last}\n")
                    break
            if nxt is not None:
                nxt.cancel()
    finally:
        if on_device:
            data.close()
    wall = time.monotonic() - t0
    model.eval()
    final = last
    if step >= preset.steps:
        final = save(out / FINAL, step, {"loss": float(np.mean(losses[-10:])) if losses else float("nan")})
    rate = (step - start) / wall if wall > 0 else 0.0
    run_info.update({"steps_done": step, "wall_s_last_run": round(wall, 2), "steps_per_s": round(rate, 4),
                     "stopped_early": stopped, "final_loss_mean10": float(np.mean(losses[-10:])) if losses else None})
    (out / RUN_JSON).write_text(json.dumps(run_info, indent=2))
    return TrainResult(final, step, tuple(losses), wall, rate, stopped, split.describe())
