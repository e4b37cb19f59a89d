"""Encoder networks (plain PyTorch, no torchvision): EfficientNet-Lite0 and a small CNN backbone, GeM/NetVLAD
aggregation, projection to L2-normalised embeddings, two-branch (camera/aerial) models and rotation averaging.

Importing this package does not import torch (docs/DESIGN.md); the first use of a member does.
"""

from __future__ import annotations

import importlib

_MEMBERS = {
    "GeM": "aggregation", "NetVLAD": "aggregation", "build_aggregation": "aggregation",
    "EfficientNetLite0": "efficientnet_lite", "efficientnet_lite0": "efficientnet_lite",
    "load_imagenet_weights": "efficientnet_lite",
    "Encoder": "encoder", "EncoderConfig": "encoder", "OrientationHead": "encoder", "TwoBranchEncoder": "encoder",
    "build_encoder": "encoder", "encoder_id": "encoder", "preprocess": "encoder", "rotate_images": "encoder",
    "rotation_averaged": "encoder",
    "SmallCNN": "small_cnn",
}
__all__ = sorted(_MEMBERS)


def __getattr__(name: str):
    if name in _MEMBERS:
        return getattr(importlib.import_module(f"{__name__}.{_MEMBERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
