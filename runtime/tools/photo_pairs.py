"""Real camera-vs-map pairs from a geotagged photo survey, for retrieval evaluation (and training) on real frames.

A survey is split as in ``runtime photo-eval`` (:func:`runtime.tools.photo_protocol.survey_map`: flight lines, every
other line or the first half of them make an orthomosaic, with the survey calibration applied to the rest). Each
held-out photo gives a query: its ground view at the encoder's resolution (``calibration.view.rectify`` with the
photo's recorded attitude and calibrated height), ``size_px`` square, centred on the nadir point, invalid pixels
black; the query's position is the photo's calibrated GPS position in the mosaic's local frame (the photos' own
placement noise, about 6 m per axis on the Seneca survey, is in it: say so next to any number). The gallery is the
mosaic's tiles (:func:`export.evaluate.evaluate_area` cuts them), i.e. imagery of another flight line, another
time and another exposure of the same camera, with the real camera's colours (NIR false colour on Seneca).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["SurveyPairs", "survey_pairs"]


@dataclass(frozen=True, eq=False)
class SurveyPairs:
    """Queries of the held-out photos of a survey against its mosaic.

    Attributes:
        mosaic: the orthomosaic of the map photos (:class:`maps.ortho.Orthophoto`; the gallery).
        query: uint8[n, s, s, 3] RGB ground views. query_mask: bool[n, s, s] valid pixels.
        position: float64[n, 2] the photos' calibrated GPS positions, metres in the mosaic's local frame.
        structure: float64[n] share of each view with roads, buildings or field edges
            (:func:`runtime.tools.photo_protocol.structure_of`).
        names: the photos' file names. info: split, counts and the mosaic's calibration (for the report).
    """

    mosaic: object
    query: np.ndarray
    query_mask: np.ndarray
    position: np.ndarray
    structure: np.ndarray
    names: tuple
    info: dict

    def __len__(self) -> int:
        return len(self.query)

    def subset(self, keep: np.ndarray) -> "SurveyPairs":
        """The pairs where ``keep`` (bool[n]) is True."""
        k = np.asarray(keep, bool)
        return replace(self, query=self.query[k], query_mask=self.query_mask[k], position=self.position[k],
                       structure=self.structure[k], names=tuple(n for n, x in zip(self.names, k) if x),
                       info={**self.info, "queries": int(k.sum())})


def _line_yaw(metas, lines, frame) -> dict:
    """Photo index -> ENU yaw (radians) of its flight line's direction at it (for photos without an attitude)."""
    out = {}
    for line in lines:
        if len(line) < 2:
            continue
        x, y = frame.to_local(np.array([metas[k].lat for k in line]), np.array([metas[k].lon for k in line]))
        for j, k in enumerate(line):
            a, b = max(j - 1, 0), min(j + 1, len(line) - 1)
            out[k] = math.atan2(y[b] - y[a], x[b] - x[a])
    return out


def survey_pairs(photos_dir, out_dir, gsd_m: float, size_px: int, *, config=None, progress=None) -> SurveyPairs:
    """Build the pairs (module docstring) of the survey in ``photos_dir``; the mosaic goes to ``out_dir``.

    Args:
        gsd_m: the encoder's ground resolution, metres per pixel. size_px: its input side, pixels.
        config: :class:`runtime.tools.photo_protocol.ProtocolConfig` (split, mosaic resolution, calibration).
    Raises:
        the photo readers' and the mosaic's typed errors (no photos, no height above ground, ...).
    """
    import cv2

    from calibration.geometry import Attitude
    from calibration.view import rectify

    from .photo_protocol import ProtocolConfig, structure_of, survey_map

    cfg = config or ProtocolConfig()
    sm = survey_map(photos_dir, out_dir, cfg, progress)
    frame = sm.ortho.frame
    yaws = _line_yaw(sm.metas, sm.lines, frame)
    views, masks, pos, names, structure = [], [], [], [], []
    for k in sm.test_idx:
        m = sm.metas[k]
        if m.height_m is None or not m.height_m > 0:
            continue
        att = m.attitude if m.attitude is not None else Attitude(0.0, 0.0, yaws.get(k, 0.0))
        bgr = cv2.imdecode(np.frombuffer(Path(m.path).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        v = rectify(np.ascontiguousarray(bgr[:, :, ::-1]), m.camera, att, float(m.height_m), gsd_m, mount=m.mount,
                    size_px=(size_px, size_px))
        img = np.ascontiguousarray(v.image[:, :, :3])
        img[~v.mask] = 0
        views.append(img)
        masks.append(v.mask.copy())
        pos.append(frame.to_local(m.lat, m.lon))
        names.append(Path(m.path).name)
        structure.append(structure_of(m, gsd_m, cfg.edge_level))
    info = {"photos": len(sm.metas), "map_photos": len(sm.map_idx), "test_photos": len(sm.test_idx),
            "queries": len(views), "split": cfg.split, "mosaic": str(sm.mosaic_path),
            "camera_offset_m": list(sm.offset_m), "survey_scale": sm.scale,
            "placement_sigma_m": float(sm.report.placement_sigma_m)}
    s = int(size_px)
    return SurveyPairs(sm.ortho, np.stack(views) if views else np.zeros((0, s, s, 3), np.uint8),
                       np.stack(masks) if masks else np.zeros((0, s, s), bool),
                       np.asarray(pos, np.float64).reshape(-1, 2), np.asarray(structure, np.float64), tuple(names),
                       info)
