"""Typed errors of the calibration package. Messages say what was expected, what came, and how to fix it."""

from __future__ import annotations


class CalibrationError(Exception):
    """Base class of every error raised by :mod:`calibration`."""


class CameraModelError(CalibrationError):
    """A camera model with impossible parameters (size, focal length, distortion count)."""


class CameraFileError(CalibrationError):
    """A camera or mount file that cannot be read, or that holds the wrong keys or shapes."""


class BoardNotFoundError(CalibrationError):
    """Too few images with a detectable calibration board."""


class GeometryError(CalibrationError):
    """A view-geometry request that cannot be satisfied (camera above the horizon, height <= 0, ...)."""
