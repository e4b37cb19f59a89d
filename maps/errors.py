"""Typed errors of the maps package. Messages say what was expected, what came, and how to fix it."""

from __future__ import annotations


class MapError(Exception):
    """Base class of every error raised by :mod:`maps`."""


class GeoTiffError(MapError):
    """An orthophoto that cannot be used: unreadable, no CRS, no georeference, unsupported bands."""


class WebTilesError(GeoTiffError):
    """Web map tiles that cannot be used: wrong folder layout or scheme, a bbox outside the tiles, a bad MBTiles."""


class MapFormatError(MapError):
    """A map package with a missing, unreadable or inconsistent file (shapes, dtypes, manifest keys)."""


class MapIntegrityError(MapError):
    """A map file whose SHA-256 does not match the manifest (corruption, partial copy)."""


class EncoderMismatchError(MapError):
    """The encoder asked for differs from the one that built the map."""


class QueryError(MapError):
    """A search request with the wrong shape, dimension or parameters."""


class PriorOutsideMapError(QueryError):
    """A position prior whose scope does not overlap the map."""


class DataFetchError(MapError):
    """The embedded default data could not be fetched or read."""
