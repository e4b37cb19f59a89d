"""Geotagged photo folders -> orthomosaic: the glue between :mod:`runtime.sources.photos` (EXIF/XMP) and
:mod:`runtime.mapping.mosaic` (rectify, register, blend), used by ``skyfix maps build --photos``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .mosaic import MosaicConfig, MosaicError, MosaicPhoto, build_mosaic


def _decoder(path: Path):
    def load() -> np.ndarray:
        import cv2

        data = np.frombuffer(Path(path).read_bytes(), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise MosaicError(f"{path}: cannot decode the image (not a JPEG/PNG/TIFF OpenCV reads?)")
        return np.ascontiguousarray(bgr[:, :, ::-1])

    return load


def mosaic_photos(metas) -> list[MosaicPhoto]:
    """:class:`runtime.sources.photos.PhotoMeta` -> :class:`MosaicPhoto` (photos without a height above ground
    are refused: the mosaic's scale comes from it)."""
    out = []
    for m in metas:
        if m.height_m is None or not m.height_m > 0:
            raise MosaicError(f"{Path(m.path).name}: no height above ground in its metadata (DJI RelativeAltitude, "
                              "senseFly Height): the photo's ground scale is unknown")
        yaw = 0.0 if m.attitude is None else float(m.attitude.yaw)
        out.append(MosaicPhoto(Path(m.path).name, _decoder(Path(m.path)), m.camera, m.attitude, float(m.height_m),
                               float(m.lat), float(m.lon), m.mount, yaw, m.t_ns * 1e-9))
    return out


def mosaic_from_photos(paths: Sequence, *, gsd: float = 0.25, camera=None, progress=None,
                       config: MosaicConfig | None = None):
    """Read the photos in ``paths`` (folders or files), mosaic them at ``gsd`` m/px; ``camera`` a camera file
    path or :class:`calibration.camera.CameraModel` for photos whose EXIF gives no intrinsics. Returns
    (:class:`maps.ortho.Orthophoto`, the report as a dict, with the photos skipped and why)."""
    from dataclasses import replace

    from ..sources.photos import read_photo_folder

    if isinstance(camera, (str, Path)):
        from calibration.camera_io import load_camera

        camera = load_camera(camera)
    metas, skipped = [], []
    for p in paths:
        survey = read_photo_folder(p, camera=camera)
        metas += list(survey.photos)
        skipped += [(str(a), str(b)) for a, b in survey.skipped]
    cfg = replace(config or MosaicConfig(), gsd=float(gsd))
    ortho, report = build_mosaic(mosaic_photos(metas), cfg, progress=progress)
    d = report.to_dict()
    d["skipped"] = [{"file": a, "reason": b} for a, b in skipped]
    return ortho, d
