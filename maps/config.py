"""Strict construction of frozen config dataclasses from mappings (manifest sections, YAML)."""

from __future__ import annotations

from dataclasses import MISSING, fields

from .errors import MapError


def strict_from_dict(cls, d, what: str, error=MapError):
    """``cls(**d)`` after checking ``d`` is a mapping with no unknown keys and every field that has no default.

    Args:
        cls: a dataclass type.
        d: the mapping to read.
        what: how messages name it (e.g. "tile grid").
        error: the exception type to raise (a :class:`MapError` subclass).
    """
    if not isinstance(d, dict):
        raise error(f"a {what} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(d) - names), sorted(required - set(d))
    if unknown:
        raise error(f"unknown {what} keys {unknown}; expected only {sorted(names)}")
    if missing:
        raise error(f"{what} lacks keys {missing}")
    return cls(**d)
