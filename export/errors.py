"""Typed errors of the export package (training, models, ONNX/TensorRT export).

Messages say what was expected, what came, and how to fix it. This module imports nothing heavy (no torch).
"""

from __future__ import annotations


class ExportError(Exception):
    """Base class of every error raised by :mod:`export`."""


class ModelConfigError(ExportError):
    """A model/encoder configuration with unknown keys, missing keys or invalid values."""


class CheckpointError(ExportError):
    """A weights file that cannot be read safely or does not match the model (missing/unexpected/mis-shaped keys)."""


class LossInputError(ExportError):
    """A loss called with tensors of the wrong shape, dtype or with invalid hyper-parameters."""


class ModelInputError(ExportError):
    """A model called with an input of the wrong rank, channel count or size."""
