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
                       config: MosaicConfig | None = None, tilt_from_images: bool = True):
    """Read the photos in ``paths`` (folders or files), mosaic them at ``gsd`` m/px; ``camera`` a camera file
    path or :class:`calibration.camera.CameraModel` for photos whose EXIF gives no intrinsics. Returns
    (:class:`maps.ortho.Orthophoto`, the report as a dict, with the photos skipped and why).

    ``tilt_from_images``: each photo's roll and pitch are taken from its images (the homographies with the photos
    before and after it in its flight line: :func:`runtime.mapping.attitude_check.images_tilt`) where they
    register, the recorded ones elsewhere; the report's ``tilt_from_images`` says how many and how precise. The
    same pairs measure the camera's constant tilt against the recorded attitude (``boresight_deg``:
    :func:`runtime.mapping.attitude_check.boresight`), by which every photo's mount is turned first (and a later
    flight's, with the survey calibration); the report's ``attitude_sigma_deg`` (what a later flight's *recorded*
    attitude, so corrected, is stated to be off by) is then the recorded tilt's error the check measured, the
    mosaic's own figure kept as ``mosaic_attitude_sigma_deg``."""
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
    tilt = None
    if tilt_from_images and sum(m.attitude is not None for m in metas) >= 2:
        from .attitude_check import (apply_boresight, boresight, check_attitude, images_tilt, pair_tilt_sigma_deg,
                                     recorded_tilt_sigma_deg)
        from .flight_lines import flight_lines

        metas.sort(key=lambda m: (m.t_ns, m.name))
        check = check_attitude(metas, flight_lines(metas),
                               progress=None if progress is None else lambda k, n: progress("tilt", k, n))
        bore = boresight(metas, check)  # the camera's constant tilt against the recorded attitude: a calibration
        metas = apply_boresight(metas, bore)
        # what the recorded attitudes are off by once the boresight corrects them, before the images replace them
        recorded = recorded_tilt_sigma_deg(metas, check)
        metas, changed = images_tilt(metas, check)
        tilt = {"photos": len(changed), "pairs_used": len(check.pairs), "pairs_skipped": len(check.skipped),
                "median_change_deg": float(np.median(list(changed.values()))) if changed else None,
                "pair_tilt_sigma_deg": pair_tilt_sigma_deg(check), "recorded_tilt_sigma_deg": recorded,
                "boresight_deg": None if bore is None else bore.to_dict()}
    ortho, report = build_mosaic(mosaic_photos(metas), cfg, progress=progress)
    d = report.to_dict()
    d["skipped"] = [{"file": a, "reason": b} for a, b in skipped]
    if tilt is not None:
        d["tilt_from_images"] = tilt
        if tilt["boresight_deg"] is not None:
            d["boresight_deg"] = tilt["boresight_deg"]
        if tilt["recorded_tilt_sigma_deg"] is not None:
            d["mosaic_attitude_sigma_deg"] = d.get("attitude_sigma_deg")
            d["attitude_sigma_deg"] = tilt["recorded_tilt_sigma_deg"]
    return ortho, d
