"""Embedding networks: backbone -> aggregation -> projection -> L2-normalised rows, and the two-branch
(camera view / aerial tile) model used for cross-view training.

Two branches with separate weights follow Where-CNN (Lin et al., CVPR 2015) and Vo & Hays (ECCV 2016); shared
weights (one Siamese network) follow Sample4Geo (Deuser et al., ICCV 2023), natural here since a nadir camera
view rectified to the ground and an aerial tile are the same kind of image. The optional orientation-regression
head follows Vo & Hays: it predicts (cos, sin) of the relative heading between the two inputs and its loss is
added to the metric loss during training (helps with unknown/noisy heading).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelConfigError, ModelInputError
from .aggregation import build_aggregation, layout_grid
from .efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0
from .small_cnn import SmallCNN

BACKBONES = ("efficientnet_lite0", "small_cnn")
AGGREGATIONS = ("gem", "netvlad", "gem_spatial")


@dataclass(frozen=True)
class EncoderConfig:
    """Configuration of a :class:`TwoBranchEncoder` (see :func:`build_encoder`).

    Attributes:
        backbone: "efficientnet_lite0" or "small_cnn".
        pretrained: start EfficientNet-Lite0 from the ImageNet weights (rejected for small_cnn).
        aggregation: "gem", "netvlad" or "gem_spatial" (GeM + the feature map's 4x4 layout: tells neighbouring
            tiles apart).
        dim: embedding size d.
        shared: one set of weights for camera and aerial branches.
        orientation_head: add the (cos, sin) relative-heading regression head.
        input_size: square input side in pixels (the contract's input_width/height).
        netvlad_clusters: NetVLAD clusters K (used with aggregation="netvlad").
        netvlad_dim: NetVLAD local-descriptor reduction (1x1 conv) before assignment.
    """

    backbone: str = "small_cnn"
    pretrained: bool = False
    aggregation: str = "gem"
    dim: int = 256
    shared: bool = True
    orientation_head: bool = False
    input_size: int = 128
    netvlad_clusters: int = 16
    netvlad_dim: int = 128

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ModelConfigError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ModelConfigError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.pretrained and self.backbone != "efficientnet_lite0":
            raise ModelConfigError(f"pretrained weights exist only for efficientnet_lite0, not {self.backbone!r}")
        for key in ("pretrained", "shared", "orientation_head"):
            if not isinstance(getattr(self, key), bool):
                raise ModelConfigError(f"encoder config {key} must be true/false, got {getattr(self, key)!r}")
        for key in ("dim", "input_size", "netvlad_clusters", "netvlad_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"encoder config {key} must be a positive integer, got {value!r}")
        if self.input_size % 32 != 0:
            raise ModelConfigError(f"input_size must be a multiple of 32 pixels, got {self.input_size}")

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """Strict construction from a mapping: unknown keys are rejected with the list of known ones."""
        from maps.config import strict_from_dict

        return strict_from_dict(cls, d, "encoder config", error=ModelConfigError)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel RGB mean applied to pixel/255 (ImageNet statistics for both backbones)."""
        return IMAGENET_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        return IMAGENET_STD


class Encoder(nn.Module):
    """``forward(x: float32[n, 3, h, w]) -> float32[n, dim]`` with unit rows (when ``normalize``).

    Args:
        backbone: module mapping images to a feature map ``[n, c, h', w']``; must have ``out_channels = c``.
        aggregation: module mapping the feature map to ``[n, out_dim]``; must have ``out_dim``.
        dim: embedding size after the linear projection; ``None`` keeps the aggregated descriptor.
        normalize: L2-normalise the output rows.
    """

    def __init__(self, backbone: nn.Module, aggregation: nn.Module, dim: int | None = 256, normalize: bool = True) -> None:
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or int(dim) != dim or dim <= 0):
            raise ModelConfigError(f"embedding dim must be a positive integer or None, got {dim!r}")
        self.backbone, self.aggregation = backbone, aggregation
        self.descriptor_dim = int(aggregation.out_dim)
        self.projection = nn.Linear(self.descriptor_dim, int(dim)) if dim is not None else nn.Identity()
        self.dim = int(dim) if dim is not None else self.descriptor_dim
        self.normalize = normalize

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding float32[n, dim], aggregated descriptor float32[n, descriptor_dim])``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelInputError(f"Encoder expects float images [n, 3, h, w], got shape {tuple(x.shape)}")
        desc = self.aggregation(self.backbone(x))
        emb = self.projection(desc)
        if self.normalize:
            emb = F.normalize(emb, dim=1)
        return emb, desc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class OrientationHead(nn.Module):
    """Vo & Hays (2016) orientation regression: MLP on the concatenated descriptors of a (camera, aerial) pair.

    ``forward(a: [n, c], b: [n, c]) -> float32[n, 2]`` unit (cos, sin) of the relative heading (the rotation
    applied to the camera view relative to the north-up aerial tile, as defined by the training pipeline).
    """

    def __init__(self, in_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(torch.cat([a, b], dim=1)), dim=1)


class TwoBranchEncoder(nn.Module):
    """Camera-view and aerial-tile encoders with shared or separate weights.

    ``forward(camera: [n, 3, h, w], aerial: [m, 3, h, w]) -> (float32[n, d], float32[m, d])``.

    Args:
        camera: the camera-branch :class:`Encoder` (also the aerial one when ``shared``).
        aerial: the aerial-branch :class:`Encoder`; must be None (or ``camera`` itself) when ``shared``.
        shared: one set of weights for both branches (Sample4Geo) or two (Where-CNN, Vo & Hays).
        orientation_head: add an :class:`OrientationHead` on the pair's aggregated descriptors.
    """

    def __init__(self, camera: Encoder, aerial: Encoder | None = None, shared: bool = True,
                 orientation_head: bool = False) -> None:
        super().__init__()
        self.shared = bool(shared)
        self.camera = camera
        if shared:
            if aerial is not None and aerial is not camera:
                raise ModelConfigError("shared=True takes one encoder: pass aerial=None (or the camera encoder)")
            self._aerial = None
        else:
            if aerial is None or aerial is camera:
                raise ModelConfigError("shared=False needs a separate aerial Encoder instance")
            if aerial.dim != camera.dim:
                raise ModelConfigError(f"branch embedding sizes differ: camera {camera.dim}, aerial {aerial.dim}")
            self._aerial = aerial
        self.orientation = OrientationHead(camera.descriptor_dim) if orientation_head else None

    @property
    def aerial(self) -> Encoder:
        return self.camera if self._aerial is None else self._aerial

    @property
    def dim(self) -> int:
        return self.camera.dim

    def encode_camera(self, x: torch.Tensor) -> torch.Tensor:
        """Camera views ``[n, 3, h, w] -> [n, d]``."""
        return self.camera(x)

    def encode_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """Aerial tiles ``[n, 3, h, w] -> [n, d]``."""
        return self.aerial(x)

    def forward(self, camera: torch.Tensor, aerial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.camera(camera), self.aerial(aerial)

    def forward_with_orientation(self, camera: torch.Tensor, aerial: torch.Tensor):
        """``(camera emb [n, d], aerial emb [n, d], (cos, sin) [n, 2])`` for n aligned pairs."""
        if self.orientation is None:
            raise ModelConfigError("this encoder has no orientation head; build it with orientation_head=True")
        if camera.shape[0] != aerial.shape[0]:
            raise ModelInputError(f"orientation needs pairs: {camera.shape[0]} camera vs {aerial.shape[0]} aerial")
        ec, dc = self.camera.forward_features(camera)
        ea, da = self.aerial.forward_features(aerial)
        return ec, ea, self.orientation(dc, da)


def rotate_images(images: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Rotate ``[n, c, h, w]`` counter-clockwise by ``angle_deg`` about the centre; exact (rot90) for multiples
    of 90 degrees on square images, bilinear with zero fill otherwise."""
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-9 and images.shape[-1] == images.shape[-2]:
        return torch.rot90(images, int(round(quarter)) % 4, dims=(2, 3))
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]],
                         dtype=images.dtype, device=images.device).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_averaged(encoder: nn.Module, images: torch.Tensor, k: int = 4,
                      angles_deg: Sequence[float] | None = None) -> torch.Tensor:
    """Test-time rotation averaging: mean embedding over rotated copies, re-normalised.

    ``images [n, 3, h, w] -> float32[n, d]`` unit rows. With ``angles_deg=None`` the angles are
    ``0, 360/k, ..., 360 (k-1)/k``; ``k=4`` on square inputs averages over the four exact 90-degree rotations,
    which makes the result invariant to 90-degree rotations of the input. Arbitrary angles use bilinear
    resampling with zero fill (corners lost), so invariance is only approximate.
    """
    if angles_deg is None:
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ModelInputError(f"rotation averaging needs k >= 1 rotations, got {k!r}")
        angles_deg = [360.0 * i / k for i in range(int(k))]
    if len(angles_deg) == 0:
        raise ModelInputError("rotation averaging needs at least one angle")
    total = None
    for angle in angles_deg:
        emb = encoder(rotate_images(images, float(angle)))
        total = emb if total is None else total + emb
    return F.normalize(total, dim=1)


def _build_branch(config: EncoderConfig) -> Encoder:
    backbone = efficientnet_lite0(pretrained=config.pretrained) if config.backbone == "efficientnet_lite0" else SmallCNN()
    kwargs = {"clusters": config.netvlad_clusters, "reduce_dim": config.netvlad_dim} if config.aggregation == "netvlad" else {}
    if config.aggregation == "gem_spatial":
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            kwargs["map_size"] = int(backbone(torch.zeros(1, 3, config.input_size, config.input_size)).shape[-1])
            backbone.train(was)
        kwargs["grid"] = layout_grid(kwargs["map_size"])
    aggregation = build_aggregation(config.aggregation, backbone.out_channels, **kwargs)
    return Encoder(backbone, aggregation, config.dim, normalize=True)


def build_encoder(config: EncoderConfig | dict) -> TwoBranchEncoder:
    """Build the :class:`TwoBranchEncoder` described by ``config`` (an :class:`EncoderConfig` or a mapping)."""
    if isinstance(config, dict):
        config = EncoderConfig.from_dict(config)
    if not isinstance(config, EncoderConfig):
        raise ModelConfigError(f"build_encoder needs an EncoderConfig or a mapping, got {type(config).__name__}")
    camera = _build_branch(config)
    aerial = None if config.shared else _build_branch(config)
    return TwoBranchEncoder(camera, aerial, shared=config.shared, orientation_head=config.orientation_head)


def encoder_id(model: nn.Module) -> str:
    """Identity of a model's weights: SHA-256 (first 16 hex chars) over its state dict in sorted key order.

    Each entry contributes its name, dtype, shape and raw little-endian bytes; BatchNorm ``num_batches_tracked``
    counters are left out (they do not change outputs). Architecture changes change the keys/shapes, hence the id.
    """
    h = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        if key.endswith("num_batches_tracked"):
            continue
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def preprocess(images, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """RGB ``uint8[n, h, w, 3]`` (numpy or tensor) -> normalised ``float32[n, 3, h, w]`` ((x/255 - mean) / std)."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ModelInputError(f"preprocess expects RGB uint8[n, h, w, 3], got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()

