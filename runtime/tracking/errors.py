"""Typed errors of the tracking core."""

from __future__ import annotations

from ..errors import OnboardError


class TrackingError(OnboardError):
    """A tracker input or configuration that cannot be used (bad config value, malformed fix, time going backwards)."""


__all__ = ["TrackingError"]
