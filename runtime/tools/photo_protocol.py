"""``runtime photo-eval PHOTOS``: the real-frame protocol on a geotagged photo survey.

A user flies an area once with GPS, makes the map from those photos, and later navigates it with a worse GPS or
none. The protocol plays this out on one survey:

1. **Flight lines.** The photos, in time order, are cut into flight lines where the GPS track turns by more than
   ``turn_deg`` between consecutive photos or the photos are more than ``gap_s`` apart.
2. **Map from every other line** (lines 0, 2, 4, ...; or ``--split halves``: the first half of the lines):
   orthomosaic (:mod:`runtime.mapping.mosaic`), written as a GeoTIFF, and a map package built from it. The survey
   calibration (the camera's offset from its GPS fix and the ground scale of the heights from the mosaic, the
   camera's constant tilt against the recorded attitude from the map photos' pairs,
   :func:`runtime.mapping.attitude_check.boresight`, and the error of the recorded attitude) is applied to the
   localized photos, as it would be to a later flight of the same aircraft (``--no-offset``: not). Each photo's roll and pitch come from its images (``--recorded-tilt``: not): the map's
   photos from the pairs with both neighbours in their line, the localized ones from the pair with the photo before
   them only, as the loop would have it in flight (:func:`runtime.mapping.attitude_check.images_tilt`).
3. **The other lines are localized** (one replay of their photos in time order, the time between them included),
   with the photos' own GPS as the reference, in three cases: (a) the GPS fed with added noise (sigma, bias); (b)
   the same with the GPS cut for ``cut_s`` seconds in the middle of the held-out photos; (c) no GPS at all.
4. **Measured** per case: the share of frames with an estimate that is not LOST, median / p95 / max distance to the
   photos' GPS (itself a few metres off: a consumer receiver, a fix time that is not the exposure's), the same
   over the frames that show structure, estimates OK while more than 10 m off, and for (c) how many frames after
   the first frame with structure the first estimate within 10 m came, and how many of the localized frames' errors
   the 95 % ellipse of the reported covariance holds once widened by the reference's own noise (the mosaic's
   placement noise per axis). Each frame's *structure* is the share of its ground view (at the map's
   resolution) whose smoothed gradient exceeds ``edge_level`` (grey levels per pixel): roads, buildings and field
   edges make it high, uniform fields low; frames at or above ``structure_min`` count as showing structure.
   Every frame is listed (``frames`` in the JSON) with its error, status, reported sigma (per axis, metres),
   structure, roll/pitch, where its tilt came from, the GPS fed and the visual fix at that frame (their distances
   to the reference); those more than 10 m off also say why (:func:`why_far`: lost, a wrong visual fix, the GPS
   followed without a fix, no fix and no GPS, or a fused estimate off), listed again (``far``) and counted per case.

Printed: a table (and ``--json``); the mosaic's registration report is written next to the map.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mapping.flight_lines import flight_lines  # noqa: F401 (re-exported: the protocol's step 1)

CASES = ("noisy", "cut", "no_gps")


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the protocol (see the module docstring)."""

    turn_deg: float = 60.0
    gap_s: float = 20.0
    gps_sigma_m: float = 5.0
    gps_bias_m: float = 3.0
    cut_s: float = 60.0
    mosaic_gsd: float = 0.25
    edge_level: float = 8.0
    structure_min: float = 0.03
    seed: int = 0
    split: str = "lines"
    calibrate_offset: bool = True
    tilt_from_images: bool = True
    motion_from_images: bool = True
    cases: tuple[str, ...] = CASES

    def __post_init__(self) -> None:
        unknown = [c for c in self.cases if c not in CASES]
        if unknown or not self.cases:
            raise ValueError(f"cases must be a non-empty subset of {CASES}, got {tuple(self.cases)!r}")


def split_survey(lines: list[list[int]], how: str) -> tuple[list[int], list[int]]:
    """(map photo indices, localized photo indices): ``"lines"``: every other flight line (0, 2, ... make the map);
    ``"halves"``: the flight lines of the first half of the flight make the map, the rest are localized (a survey
    that covers its area twice: the map holds both directions of flight, as a map made on another day would)."""
    if how == "lines":
        return ([k for i, line in enumerate(lines) if i % 2 == 0 for k in line],
                [k for i, line in enumerate(lines) if i % 2 == 1 for k in line])
    if how == "halves":
        total = sum(len(line) for line in lines)
        first, n = [], 0
        for i, line in enumerate(lines):
            if n >= total / 2:
                break
            first.append(i)
            n += len(line)
        return ([k for i in first for k in lines[i]], [k for i, line in enumerate(lines) if i not in first for k in line])
    raise ValueError(f"split must be 'lines' or 'halves', got {how!r}")


def shift_to_camera(metas, offset_m, lines: list[list[int]]) -> list:
    """``metas`` (time order, indices as in ``lines``) with each position moved by the survey's camera-to-GPS
    offset (forward, right metres along the photo's flight line, from its line's first to last GPS position):
    where the camera's nadir was, by the mosaic's estimate (:func:`runtime.mapping.mosaic._adjust`)."""
    from dataclasses import replace

    from maps.geodesy import LocalFrame

    out = list(metas)
    if not metas or not any(offset_m):
        return out
    frame = LocalFrame(float(np.mean([m.lat for m in metas])), float(np.mean([m.lon for m in metas])))
    for line in lines:
        if len(line) < 2:
            continue
        x, y = frame.to_local(np.array([metas[k].lat for k in line]), np.array([metas[k].lon for k in line]))
        f = np.array([x[-1] - x[0], y[-1] - y[0]])
        if np.linalg.norm(f) < 1.0:
            continue
        f /= np.linalg.norm(f)
        d = offset_m[0] * f + offset_m[1] * np.array([f[1], -f[0]])
        for k, xi, yi in zip(line, x, y):
            lat, lon = frame.to_wgs84(xi + d[0], yi + d[1])
            out[k] = replace(metas[k], lat=float(lat), lon=float(lon))
    return out


def structure_of(meta, gsd: float, edge_level: float) -> float:
    """Share of the photo's ground view (rectified at ``gsd``) whose gradient magnitude after a 1-pixel Gaussian
    exceeds ``edge_level`` grey levels per pixel."""
    import cv2

    from calibration.geometry import Attitude
    from calibration.view import rectify

    bgr = cv2.imdecode(np.frombuffer(Path(meta.path).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    att = meta.attitude or Attitude(0.0, 0.0, 0.0)
    view = rectify(bgr[:, :, ::-1], meta.camera, att, float(meta.height_m or 60.0), gsd, mount=meta.mount)
    g = cv2.GaussianBlur(cv2.cvtColor(view.image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0, cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0)
    m = cv2.erode(view.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float((mag[m] > edge_level).mean()) if m.any() else 0.0


def _errors(records, metas, frame):
    """Per held-out photo: (record or None, distance to its GPS in metres (nan without estimate))."""
    by_t = {r.t_ns: r for r in records}
    out = []
    for m in metas:
        r = by_t.get(int(m.t_ns))
        if r is None or r.lat is None or not math.isfinite(r.lat):
            out.append((r, math.nan))
            continue
        ex, ey = frame.to_local(r.lat, r.lon)
        tx, ty = frame.to_local(m.lat, m.lon)
        out.append((r, float(math.hypot(ex - tx, ey - ty))))
    return out


def covariance_held(errs, metas, frame, reference_sigma_m: float, chi2: float = 5.991) -> float | None:
    """Share of the localized frames (status not LOST) whose error against the photo's GPS lies inside the 95 %
    ellipse (``chi2``, 2 degrees of freedom) of the reported covariance plus the reference's own noise
    (``reference_sigma_m`` per axis: the photos' GPS is not the truth). None without such frames."""
    inside = [ellipse_holds(r, e, m, frame, reference_sigma_m, chi2) for (r, e), m in zip(errs, metas)]
    inside = [v for v in inside if v is not None]
    return float(np.mean(inside)) if inside else None


def ellipse_holds(r, error_m: float, meta, frame, reference_sigma_m: float, chi2: float = 5.991) -> bool | None:
    """Whether one frame's error against the photo's GPS lies inside the 95 % ellipse of its reported covariance
    plus the reference's noise (:func:`covariance_held`); None when it is not counted (no record, LOST, no
    position or covariance)."""
    if r is None or r.status == "LOST" or not math.isfinite(error_m) or r.cov_en is None:
        return None
    ex, ey = frame.to_local(r.lat, r.lon)
    tx, ty = frame.to_local(meta.lat, meta.lon)
    d = np.array([float(ex) - float(tx), float(ey) - float(ty)])
    C = np.asarray(r.cov_en, dtype=np.float64) + reference_sigma_m ** 2 * np.eye(2)
    return bool(float(d @ np.linalg.solve(C, d)) <= chi2)


def _stats(d: np.ndarray) -> dict:
    d = d[np.isfinite(d)]
    if not len(d):
        return {"n": 0, "median_m": None, "p95_m": None, "max_m": None, "within_10m": None}
    return {"n": int(len(d)), "median_m": float(np.median(d)), "p95_m": float(np.percentile(d, 95)),
            "max_m": float(d.max()), "within_10m": float((d <= 10.0).mean())}


@dataclass(frozen=True)
class SurveyMap:
    """A survey split into map photos and held-out photos, and the orthomosaic of the map photos.

    Attributes:
        metas: every photo (time order); with the survey calibration applied (``calibrate_offset``): positions moved
            to the camera's nadir by the mosaic's camera-to-GPS offset, heights scaled by its ground scale, mounts
            turned by the map photos' boresight (``boresight``: :class:`runtime.mapping.attitude_check.Boresight`,
            None when not measured).
        lines: flight lines (indices into ``metas``). map_idx / test_idx: the photos of the map / held out.
        ortho: the mosaic (:class:`maps.ortho.Orthophoto`), also written to ``mosaic_path`` (GeoTIFF) with its
            registration report (``mosaic.json``). report: :class:`runtime.mapping.mosaic.MosaicReport`.
        offset_m: (forward, right) camera-to-GPS offset applied, metres. scale: ground scale applied to heights.
        tilt_changed: name -> degrees, the photos whose roll and pitch came from their images
            (``tilt_from_images``), and how far that moved their tilt. recorded_tilt_sigma_deg: how far the
            recorded roll and pitch are off against the images (degrees per axis; None: not measured).
    """

    metas: list
    lines: list
    map_idx: list
    test_idx: list
    ortho: object
    report: object
    mosaic_path: Path
    offset_m: tuple
    scale: float
    tilt_changed: dict | None = None
    recorded_tilt_sigma_deg: float | None = None
    boresight: object | None = None


def survey_map(photos_dir, out_dir, cfg: "ProtocolConfig", say=None) -> SurveyMap:
    """Steps 1-2 of the protocol: flight lines, the split, the mosaic of the map photos (written to ``out_dir``) and
    the survey calibration (module docstring)."""
    from dataclasses import replace as _replace

    from maps.geotiff import write_geotiff

    from ..mapping.mosaic import MosaicConfig, build_mosaic
    from ..mapping.photo_map import mosaic_photos
    from ..sources.photos import read_photo_folder

    say = say or (lambda *a: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metas = list(read_photo_folder(photos_dir).photos)
    lines = flight_lines(metas, cfg.turn_deg, cfg.gap_s)
    map_idx, test_idx = split_survey(lines, cfg.split)
    say(f"{len(metas)} photos in {len(lines)} flight lines: {len(map_idx)} make the map, {len(test_idx)} are "
        "localized")
    tilt_changed, recorded_sigma, check = {}, None, None
    if cfg.tilt_from_images or cfg.motion_from_images:
        from ..mapping.attitude_check import check_attitude

        check = check_attitude(metas, lines)
    bore = None
    if check is not None and cfg.calibrate_offset:
        from ..mapping.attitude_check import apply_boresight, boresight

        # the camera's constant tilt against its recorded attitude: measured on the map's photos (the survey), a
        # calibration of the aircraft applied to every photo, as it would be to a later flight
        bore = boresight([metas[k] for k in map_idx], check)
        metas = apply_boresight(metas, bore)
        if bore is not None:
            say(f"boresight from the map's photos: the camera tilted {bore.x_deg:.1f} / {bore.y_deg:.1f} deg (camera "
                f"x / y) from its recorded attitude ({bore.photos} photos; scatter {bore.sigma_deg:.1f} deg): every "
                "photo's mount turned by it")
    if cfg.tilt_from_images:
        metas, tilt_changed, recorded_sigma = _tilt_from_images(metas, check, map_idx, test_idx, say)
    ortho, report = build_mosaic(mosaic_photos([metas[k] for k in map_idx]), MosaicConfig(gsd=cfg.mosaic_gsd))
    mosaic_path = write_geotiff(out / "mosaic.tif", ortho)  # the map is built from the file a user would get
    (out / "mosaic.json").write_text(json.dumps(report.to_dict(), indent=1))
    rep = report.to_dict()["residual_m"]
    say(f"mosaic {ortho.width}x{ortho.height} px: residual median {rep['after_median']:.2f} m, p95 "
        f"{rep['after_p95']:.2f} m (by GPS alone {rep['before_median']:.1f} / {rep['before_p95']:.1f} m)")
    offset = report.offset_m if cfg.calibrate_offset else (0.0, 0.0)
    scale = report.scale if cfg.calibrate_offset else 1.0
    if cfg.calibrate_offset:
        metas = shift_to_camera(metas, offset, lines)
        metas = [_replace(m, height_m=None if m.height_m is None else m.height_m * scale) for m in metas]
        say(f"survey calibration from the mosaic: camera {offset[0]:.1f} m forward, {offset[1]:.1f} m right of its "
            f"GPS fix, ground scale x{scale:.3f} (heights scaled by it): applied to the localized photos (their "
            "reference GPS, the GPS fed and their heights); the photos' own placement noise (images against GPS) "
            f"{report.placement_sigma_m:.1f} m per axis, {report.attitude_sigma_deg:.1f} deg of attitude at "
            f"{report.height_m:.0f} m")
    if cfg.motion_from_images:
        metas = _motion_from_images(metas, check, test_idx, say)
    return SurveyMap(metas, lines, map_idx, test_idx, ortho, report, mosaic_path, tuple(offset), float(scale),
                     tilt_changed, recorded_sigma, bore)


def _motion_from_images(metas, check, test_idx, say):
    """The localized photos each with the displacement since the photo before it in its flight line, from their
    images (:func:`runtime.mapping.photo_motion.pair_motions`; their calibrated heights and the maker's heading
    error), as the loop would measure it in flight."""
    from ..mapping.photo_motion import with_motions

    moved, n_motion = with_motions([metas[k] for k in test_idx], check)
    out = list(metas)
    for k, m in zip(test_idx, moved):
        out[k] = m
    say(f"motion from the images: {n_motion} of {len(test_idx)} localized photos have their displacement "
        "from the photo before them")
    return out


def _tilt_from_images(metas, check, map_idx, test_idx, say):
    """Each photo's roll and pitch from its images (:func:`runtime.mapping.attitude_check.images_tilt`): the map's
    photos from both neighbours in their flight line (the map is made offline), the localized photos from the
    photo before them only (as the loop would have it in flight). Returns (metas, name -> tilt change degrees, the
    recorded tilt's error in degrees per axis or None)."""
    from ..mapping.attitude_check import images_tilt, pair_tilt_sigma_deg, recorded_tilt_sigma_deg

    recorded = recorded_tilt_sigma_deg(metas, check)
    one = pair_tilt_sigma_deg(check)
    out = list(metas)
    changed = {}
    for idx, causal in ((map_idx, False), (test_idx, True)):
        new, ch = images_tilt([metas[k] for k in idx], check, causal=causal)
        for k, m in zip(idx, new):
            out[k] = m
        changed.update(ch)
    n_map = sum(1 for k in map_idx if metas[k].name in changed)
    n_test = sum(1 for k in test_idx if metas[k].name in changed)
    say(f"tilt from the images: {len(check.pairs)} of {len(check.pairs) + len(check.skipped)} consecutive pairs "
        f"register; {n_map} of {len(map_idx)} map photos and {n_test} of {len(test_idx)} localized photos (from the "
        f"photo before) take it, a median {np.median(list(changed.values())) if changed else 0.0:.1f} deg from "
        f"the recorded tilt; one pair's tilt is good to {one if one is not None else float('nan'):.1f} deg per axis, "
        f"the recorded tilt to {recorded if recorded is not None else float('nan'):.1f} deg")
    return out, changed, recorded


def run_protocol(photos_dir, out_dir, *, model: str = "default", config: ProtocolConfig | None = None,
                 progress=None) -> dict:
    """Run the protocol (module docstring) on ``photos_dir``; files go to ``out_dir``. Returns the results dict."""
    from maps.build import build_map
    from maps.geodesy import LocalFrame
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage

    from ..encoder import load_encoder
    from ..localizer import Localizer, LocalizerConfig
    from ..feed import ROLES, run_events
    from ..sources.gps_faults import GpsDegradation, degrade_gps
    from ..sources.photos import PhotoFolder, PhotoSurvey

    cfg = config or ProtocolConfig()
    say = progress or (lambda *a: None)
    out = Path(out_dir)
    sm = survey_map(photos_dir, out, cfg, say)
    metas, lines, map_idx, test_idx, report = sm.metas, sm.lines, sm.map_idx, sm.test_idx, sm.report
    offset, scale, mosaic_path = sm.offset_m, sm.scale, sm.mosaic_path
    encoder = load_encoder(model)
    pkg_dir = build_map(load_orthophoto(mosaic_path), encoder, encoder.contract, out / "map", overwrite=True)
    package = MapPackage.load(pkg_dir)
    test = [metas[k] for k in test_idx]
    gsd = float(package.contract.ground_resolution_m)
    structure = np.array([structure_of(m, gsd, cfg.edge_level) for m in test])
    structured = structure >= cfg.structure_min
    frame = LocalFrame(float(np.mean([m.lat for m in test])), float(np.mean([m.lon for m in test])))
    t_first = test[0].t_ns
    mid = (test[len(test) // 2].t_ns - t_first) * 1e-9
    all_cases = {
        "noisy": GpsDegradation(cfg.gps_sigma_m, cfg.gps_bias_m, (), cfg.seed),
        "cut": GpsDegradation(cfg.gps_sigma_m, cfg.gps_bias_m, ((mid - cfg.cut_s / 2, mid + cfg.cut_s / 2),), cfg.seed),
        "no_gps": None,
    }
    cases = {name: all_cases[name] for name in cfg.cases}
    results = {"photos": len(metas), "lines": len(lines), "split": cfg.split,
               "camera_offset_m": {"forward": offset[0], "right": offset[1]}, "survey_scale": scale, "map_photos": len(map_idx), "test_photos": len(test),
               "structured": int(structured.sum()), "mosaic": report.to_dict()["residual_m"],
               "mosaic_pairs": {"tried": report.tried, "used": len(report.pairs), "dropped": report.dropped},
               "config": cfg.__dict__, "cases": {}}
    att_sigma = report.attitude_sigma_deg if cfg.calibrate_offset else math.nan
    if cfg.tilt_from_images and sm.recorded_tilt_sigma_deg is not None:
        # the mosaic's figure is that of the map photos' tilt from images; the localized photos without a pair keep
        # the recorded tilt, whose error the check measured (those with one state their own, PhotoMeta.tilt_sigma_deg)
        att_sigma = sm.recorded_tilt_sigma_deg
    results["boresight_deg"] = None if sm.boresight is None else sm.boresight.to_dict()
    results["attitude_sigma_deg"] = att_sigma if math.isfinite(att_sigma) else None
    tilt = sm.tilt_changed or {}
    results["tilt_from_images"] = {"map_photos": sum(1 for k in map_idx if metas[k].name in tilt),
                                   "test_photos": sum(1 for m in test if m.name in tilt),
                                   "median_change_deg": float(np.median(list(tilt.values()))) if tilt else None}
    results["placement_sigma_m"] = report.placement_sigma_m if math.isfinite(report.placement_sigma_m) else None
    test_survey = PhotoSurvey(tuple(test), (), (), att_sigma if math.isfinite(att_sigma) else None)
    # the reference's own noise for the covariance check: the mosaic's placement noise (images against GPS), an
    # upper bound of the GPS's; unmeasured: the GPS smoothness bound of a consumer receiver, 2.5 m
    ref_sigma = report.placement_sigma_m if math.isfinite(report.placement_sigma_m) else 2.5
    results["reference_sigma_m"] = ref_sigma
    for name, deg in cases.items():
        with PhotoFolder(None, survey=test_survey) as src:
            loop = Localizer(package, encoder, mount=src.mount, config=LocalizerConfig.from_dict(src.loop_settings()))
            roles = [r for r in ROLES if not (deg is None and r == "gps")]
            events = src.events(roles=roles)
            if deg is not None:
                events = degrade_gps(events, deg)
            fixes: dict[int, tuple] = {}
            records = run_events(loop, events, on_event=lambda ev, n: _note_fix(loop.last_candidates, ev, fixes))
        errs = _errors(records, test, frame)
        d = np.array([e for _, e in errs])
        status = [None if r is None else r.status for r, _ in errs]
        localized = np.array([s not in (None, "LOST") for s in status])
        ok_far = int(sum(1 for s, e in zip(status, d) if s == "OK" and e > 10.0))
        case = {"localized": float(localized.mean()), "all": _stats(np.where(localized, d, np.nan)),
                "structured": _stats(np.where(localized & structured, d, np.nan)),
                "structured_within_10m": float(np.mean([(loc and e <= 10.0) for loc, e, s in
                                                        zip(localized, d, structured) if s]) if structured.any()
                                               else math.nan),
                "ok_over_10m": ok_far, "status": {s: status.count(s) for s in set(status) if s is not None},
                "covariance_held_95": covariance_held(errs, test, frame, ref_sigma)}
        if deg is not None and deg.cuts_s:
            a, b = deg.cuts_s[0]
            inside = np.array([a <= (m.t_ns - t_first) * 1e-9 < b for m in test])
            case["during_cut_frames"] = int(inside.sum())
            case["during_cut"] = _stats(np.where(localized & inside, d, np.nan))
            case["during_cut_structured_within_10m"] = float(np.mean(
                [(loc and e <= 10.0) for loc, e, s, i in zip(localized, d, structured, inside) if s and i])) \
                if (structured & inside).any() else math.nan
        if name == "no_gps":
            first_s = next((k for k in range(len(test)) if structured[k]), None)
            first_ok = next((k for k in range(len(test)) if localized[k] and d[k] <= 10.0), None)
            case["frames_to_fix_after_first_structure"] = (None if first_s is None or first_ok is None
                                                           else int(first_ok - first_s))
        noisy = None
        if deg is not None:
            noisy = _noisy_gps_errors(test, deg, frame)
            case["gps_fed"] = _stats(noisy)
        fixes_local = {t: tuple(float(v) for v in frame.to_local(*loop.frame.to_wgs84(x, y)))
                       for t, (x, y) in fixes.items()}
        frames = frame_rows(test, errs, structure, fixes_local, noisy, tilt, frame, cfg.structure_min, ref_sigma)
        far = [f for f in frames if f["why"] is not None]
        case["frames"] = frames
        case["far"] = far
        case["far_why"] = {w: sum(1 for f in far if f["why"] == w) for w in WHY if any(f["why"] == w for f in far)}
        results["cases"][name] = case
        say(f"{name}: localized {case['localized']:.0%}, median {case['all']['median_m']}, OK>10 {ok_far}")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    return results


def frame_rows(test, errs, structure, fixes: dict, noisy, tilt: dict, frame, structure_min: float,
               reference_sigma_m: float = 0.0) -> list[dict]:
    """One row per held-out photo (the protocol's ``frames``; metres, degrees, rounded to 0.1).

    Args:
        test: the held-out photos (:class:`runtime.sources.photos.PhotoMeta`, time order).
        errs: per photo (the loop's record or None, distance to the photo's GPS; nan without an estimate).
        structure: float[n], each photo's structure (:func:`structure_of`).
        fixes: frame time ns -> the frame's visual fix (x, y) in ``frame`` (:func:`_note_fix`).
        noisy: float[n] the GPS fed's distance to the reference (nan: none fed), or None without GPS.
        tilt: names of the photos whose tilt came from their images.
        frame: the local frame (:class:`maps.geodesy.LocalFrame`) of the errors.
        structure_min: the structure from which a photo shows structure.
        reference_sigma_m: the reference's own noise per axis (:func:`covariance_held`).
    Returns:
        dicts: photo, error_m, status, sigma_m (the reported covariance's, per axis), ellipse_95 (the error inside
        the 95 % ellipse of the reported covariance and the reference's noise; None when not counted), structure,
        roll_deg, pitch_deg, tilt ("images" / "recorded"), gps_fed_m, visual_fix_m, error_en_m and visual_fix_en_m
        (east, north from the reference), heading_deg (recorded), why (:func:`why_far`; None within 10 m).
    """
    from calibration.geometry import heading_from_yaw

    rows = []
    for k, (m, (r, e), st) in enumerate(zip(test, errs, structure)):
        tx, ty = (float(v) for v in frame.to_local(m.lat, m.lon))
        fix = fixes.get(int(m.t_ns))
        fix_err = fix_en = err_en = None
        if fix is not None:
            fix_err, fix_en = math.hypot(fix[0] - tx, fix[1] - ty), [round(fix[0] - tx, 1), round(fix[1] - ty, 1)]
        if r is not None and math.isfinite(e):
            ex, ey = (float(v) for v in frame.to_local(r.lat, r.lon))
            err_en = [round(ex - tx, 1), round(ey - ty, 1)]
        gps_err = None if noisy is None or not math.isfinite(noisy[k]) else float(noisy[k])
        sigma = None if r is None or r.cov_en is None else round(
            math.sqrt(max(float(np.trace(np.asarray(r.cov_en, dtype=np.float64))), 0.0) / 2.0), 1)
        att = m.attitude
        rows.append({"photo": Path(m.path).name, "error_m": None if not math.isfinite(e) else round(e, 1),
                     "status": None if r is None else r.status, "sigma_m": sigma,
                     "ellipse_95": ellipse_holds(r, e, m, frame, reference_sigma_m), "structure": round(float(st), 3),
                     "roll_deg": None if att is None else round(math.degrees(att.roll), 1),
                     "pitch_deg": None if att is None else round(math.degrees(att.pitch), 1),
                     "tilt": "images" if m.name in tilt else "recorded",
                     "gps_fed_m": None if gps_err is None else round(gps_err, 1),
                     "visual_fix_m": None if fix_err is None else round(fix_err, 1),
                     "error_en_m": err_en, "visual_fix_en_m": fix_en,
                     "heading_deg": None if att is None else round(math.degrees(heading_from_yaw(att.yaw)) % 360.0, 1),
                     "why": None if e <= 10.0 else why_far(e, fix_err, gps_err, bool(st >= structure_min))})
    return rows


#: why a frame ended more than 10 m from its reference (:func:`why_far`), in the order the rules test them
WHY = ("lost", "wrong visual fix", "uniform field, followed the GPS", "followed the GPS", "uniform field, no GPS",
       "no visual fix, no GPS", "fused off")


def why_far(error_m: float, fix_error_m: float | None, gps_error_m: float | None, structured: bool) -> str:
    """Why a frame's estimate is more than 10 m from its reference, from what the frame had (one of :data:`WHY`).

    Args:
        error_m: the estimate's distance to the reference (nan: no estimate with a position, "lost"; a LOST
            estimate with a position is judged by the other rules, its status is listed beside).
        fix_error_m: the frame's visual fix (its best aligned position that passed the gates) from the reference,
            None when none passed.
        gps_error_m: the GPS fed at that frame from the reference, None when none was fed (no GPS, inside the cut).
        structured: the frame shows structure (roads, houses, field edges).
    """
    if not math.isfinite(error_m):
        return "lost"
    if fix_error_m is not None and fix_error_m > 10.0:
        return "wrong visual fix"
    if fix_error_m is None and gps_error_m is not None and gps_error_m > 10.0:
        return "followed the GPS" if structured else "uniform field, followed the GPS"
    if fix_error_m is None and gps_error_m is None:
        return "no visual fix, no GPS" if structured else "uniform field, no GPS"
    return "fused off"


def _note_fix(c, ev, fixes: dict) -> None:
    """After event ``ev``: when it is a frame and ``c`` (the loop's ``last_candidates``) is its, the frame's visual fix
    (the best-scoring aligned position that passed the gates, loop-local x, y) into ``fixes`` by frame time."""
    from ..events import Frame

    if not isinstance(ev, Frame) or c is None or c.t_ns != ev.t_ns or not c.aligned.size:
        return
    passed = c.aligned[c.aligned[:, 5] > 0.5]
    if len(passed):
        best = passed[int(np.argmax(passed[:, 2]))]
        fixes[int(ev.t_ns)] = (float(best[0]), float(best[1]))


def _noisy_gps_errors(test, deg, frame) -> np.ndarray:
    """The distance of the degraded GPS fed to the loop from the photos' GPS (what GPS alone would give)."""
    from ..events import GpsFix
    from ..sources.gps_faults import degrade_gps  # noqa: F811 (run_protocol's import is local to it)

    fixes = [GpsFix(int(m.t_ns), float(m.lat), float(m.lon), float(m.alt_m), cov_enu=5.0) for m in test]
    out = []
    kept = {f.t_ns: f for f in degrade_gps(fixes, deg)}
    for m in test:
        f = kept.get(int(m.t_ns))
        if f is None:
            out.append(math.nan)
            continue
        ex, ey = frame.to_local(f.lat, f.lon)
        tx, ty = frame.to_local(m.lat, m.lon)
        out.append(math.hypot(ex - tx, ey - ty))
    return np.array(out)


def format_table(res: dict) -> str:
    f = lambda v: "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.1f}"
    rows = ["| case | localized | median / p95 / max m (all) | median / p95 m (structure) | structure within 10 m "
            "| OK > 10 m | GPS fed median / p95 |", "|---|---|---|---|---|---|---|"]
    for name, c in res["cases"].items():
        a, s, g = c["all"], c["structured"], c.get("gps_fed", {})
        rows.append(f"| {name} | {c['localized']:.0%} | {f(a['median_m'])} / {f(a['p95_m'])} / {f(a['max_m'])} | "
                    f"{f(s['median_m'])} / {f(s['p95_m'])} | {c['structured_within_10m']:.0%} | {c['ok_over_10m']} | "
                    f"{f(g.get('median_m'))} / {f(g.get('p95_m'))} |")
    held = {n: c.get("covariance_held_95") for n, c in res["cases"].items() if c.get("covariance_held_95") is not None}
    if held:
        rows.append(f"95 % ellipse (reported covariance + the reference's {res.get('reference_sigma_m', 0.0):.1f} m) "
                    "holds " + ", ".join(f"{n} {v:.0%}" for n, v in held.items()) + " of the localized frames' errors")
    for name, c in res["cases"].items():
        if "during_cut" in c:
            dc, share = c["during_cut"], c.get("during_cut_structured_within_10m")
            rows.append(f"{name}, inside the cut: {dc['n']} of {c.get('during_cut_frames', '?')} frames localized, "
                        f"median / max {f(dc['median_m'])} / {f(dc['max_m'])} m; frames with structure within 10 m: "
                        + ("-" if share is None or not math.isfinite(share) else f"{share:.0%}"))
        if c.get("far_why"):
            rows.append(f"{name}: frames more than 10 m off: " + ", ".join(f"{w} {n}" for w, n in c["far_why"].items()))
        if "frames_to_fix_after_first_structure" in c:
            k = c["frames_to_fix_after_first_structure"]
            rows.append(f"{name}: first estimate within 10 m "
                        + ("never" if k is None else f"{k} frame(s) after the first frame with structure"))
    return "\n".join(rows)


def register(subparsers) -> None:
    p = subparsers.add_parser("photo-eval", help="real-frame protocol on a geotagged photo survey: map from every "
                              "other flight line, the rest localized with noisy / cut / no GPS (table + JSON)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", metavar="PHOTOS", help="folder of geotagged photos of one survey")
    p.add_argument("--out", default="photo_eval", metavar="DIR", help="output folder (default ./photo_eval)")
    p.add_argument("--model", default="default", help="encoder (default: the shipped default model)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results here")
    p.add_argument("--split", choices=("lines", "halves"), default="lines",
                   help="lines: every other flight line makes the map (default); halves: the first half of the "
                        "flight's lines make the map (a survey that covers its area twice)")
    p.add_argument("--no-offset", action="store_true",
                   help="do not apply the survey calibration to the localized photos (the camera-to-GPS offset and "
                        "the height scale the mosaic estimates, the boresight the map photos' pairs measure)")
    p.add_argument("--no-photo-motion", action="store_true",
                   help="do not give the loop each photo's displacement from the photo before it, measured from "
                        "their images (default: given)")
    p.add_argument("--recorded-tilt", action="store_true",
                   help="keep the photos' recorded roll and pitch (default: from the images of consecutive photos, "
                        "runtime photo-check)")
    p.add_argument("--cases", default=",".join(CASES), metavar="LIST",
                   help=f"comma-separated cases to run (default {','.join(CASES)})")
    p.add_argument("--seed", type=int, default=0, help="seed of the GPS noise added in the noisy and cut cases")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = ProtocolConfig(split=args.split, calibrate_offset=not args.no_offset, seed=args.seed,
                             tilt_from_images=not args.recorded_tilt, motion_from_images=not args.no_photo_motion,
                             cases=tuple(c.strip() for c in args.cases.split(",") if c.strip()))
    except ValueError as exc:
        print(f"runtime photo-eval: {exc}", file=sys.stderr)
        return 2
    res = run_protocol(args.photos, args.out, model=args.model, config=cfg,
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0
