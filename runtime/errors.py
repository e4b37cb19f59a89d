"""Typed errors of the runtime package. Messages say what was expected, what came, and how to fix it."""

from __future__ import annotations


class OnboardError(Exception):
    """Base class of every error raised by :mod:`runtime`."""


class BagError(OnboardError):
    """A recording that cannot be read or written, or that lacks the topics asked for."""


class SimulationError(OnboardError):
    """A simulation request that cannot be met (trajectory does not fit the orthophoto, bad phase spec, ...)."""


class MissingExtraError(OnboardError):
    """An optional dependency is not installed; the message names the ``pip install`` extra."""


class BackendError(OnboardError):
    """An inference backend that cannot load a model or run it (bad inputs, incompatible engine, missing device)."""


class ImuFrameError(OnboardError):
    """An IMU frame convention that is unknown (valid: auto, enu_flu, ned_frd) or a resolver used with bad inputs."""
