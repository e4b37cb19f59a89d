"""Maps from a survey's own photos: rectify, register and blend geotagged photos into an orthomosaic
(:mod:`runtime.mapping.mosaic`), which ``skyfix maps build --photos`` turns into a map package."""

from .mosaic import MosaicError, MosaicPhoto, MosaicReport, build_mosaic

__all__ = ["MosaicError", "MosaicPhoto", "MosaicReport", "build_mosaic"]
