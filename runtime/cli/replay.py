"""``runtime replay BAG [--map MAP]``: run the onboard loop over a recording and write the track.

A recording is a ROS 1 bag, a ROS 2 bag (sqlite3 or mcap folder), or a folder of geotagged photos (a survey: EXIF
GPS and time, senseFly/DJI XMP attitude; :mod:`runtime.sources.photos`). ``--gps-noise SIGMA[:BIAS]`` and
``--gps-cut START:END`` feed the loop a degraded copy of the recorded GPS (:mod:`runtime.sources.gps_faults`): with
``runtime eval --truth`` on the same recording, the recorded GPS is the reference the estimates are measured against.

Events come from the bag in time order (topics found by message type, each overridable by flag); the loop
(:class:`runtime.localizer.Localizer`) turns frames, GPS fixes and IMU samples into estimates, written one JSON line
each (``-o track.jsonl``) with GeoJSON and GPX next to it. As fast as possible by default; ``--realtime`` paces the
events by their timestamps. A recording without camera frames (or replayed with ``--camera-topic none``) is
tracked on GPS alone, and says so; it needs no ``--map``. A run that fails before its first estimate leaves no track
files; one that fails or is interrupted later keeps every estimate written until then.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from ..feed import ROLES, run_events
from .bag import _ROLE_FLAGS, add_typestore_arg


def add_model_args(p: argparse.ArgumentParser, *, required_map: bool = True) -> None:
    """--map/--model/--backend/--device/--threads/--camera/--mount/--height: what the loop runs on."""
    p.add_argument("--map", required=required_map, metavar="MAP",
                   help="map package (skyfix maps build) or region map (skyfix maps build-region: shards loaded "
                        "around the vehicle)" + ("" if required_map else "; may be omitted for a recording "
                                                 "without camera (tracking on GPS alone)"))
    p.add_argument("--region-cache-mb", type=float, default=1024.0, metavar="MB",
                   help="region maps: memory bound of the shards held (LRU, default 1024 MiB)")
    p.add_argument("--shard-stall-ms", type=float, default=50.0, metavar="MS",
                   help="region maps: the longest a frame waits for a shard it needs (default 50 ms); a shard still "
                        "loading then is searched from the next frame on")
    p.add_argument("--map-check", choices=("sha256", "sizes"), default="sha256",
                   help="how the map's files are checked against its manifest on load: sha256 (default: every byte, "
                        "~0.5 s per million tiles) or sizes (sizes and headers only: the fastest start)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="encoder file (.onnx/.engine/.pt), 'default', 'default-int8' (the same model in INT8, faster on "
                        "CPUs; works on maps built with 'default'), 'classical' or MODEL+classical (the two "
                        "concatenated, e.g. default+classical) (default: the encoder that built the map)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                   help="inference backend (default: by model file type)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (default cpu): where the encoder and the loop's rectify, search and align "
                        "stages run (cuda: torch on that GPU, see runtime.gpu; needs torch); torch:cpu runs those "
                        "stages in torch on the CPU (parity checks)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of ONNX Runtime, and of torch with --device torch:cpu (default 1)")
    p.add_argument("--camera", default=None, metavar="CAMERA.yaml",
                   help="camera intrinsics file (default: the recording's CameraInfo)")
    p.add_argument("--mount", default=None, metavar="MOUNT.yaml", help="camera mount extrinsics (default: nadir)")
    p.add_argument("--height", type=float, default=None, metavar="M",
                   help="height above ground to assume until a GPS altitude arrives (default: wait for GPS)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="localizer/tracker settings (YAML mapping)")
    p.add_argument("--likelihood", default=None, metavar="FILE.json",
                   help="visual likelihood calibration: 'default' (shipped), 'softmax' (uncalibrated) or a file from "
                        "`runtime likelihood fit` (default: the config's, else 'default')")


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="run the onboard loop over a ROS 1/ROS 2 bag or a photo folder and "
                              "write the track", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", metavar="BAG", nargs="+",
                   help="ROS 1 .bag file(s) (several: a split recording), a ROS 2 bag folder (sqlite3 or mcap), or a "
                        "folder of geotagged photos")
    add_model_args(p, required_map=False)
    p.add_argument("--region-stats", default=None, metavar="FILE.json",
                   help="with a region map: write how its shards were loaded (loads, load times, frame waits) as JSON")
    p.add_argument("-o", "--output", default="track.jsonl", metavar="TRACK.jsonl",
                   help="track, one JSON line per estimate (default track.jsonl); .geojson and .gpx next to it")
    p.add_argument("--no-geojson", action="store_true", help="do not write TRACK.geojson")
    p.add_argument("--no-gpx", action="store_true", help="do not write TRACK.gpx")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--realtime", action="store_true", help="pace the events by their timestamps (default: as fast "
                   "as possible)")
    p.add_argument("--speed", type=float, default=1.0, help="with --realtime: playback speed factor (default 1)")
    for role, flag in _ROLE_FLAGS:
        p.add_argument(flag, dest=f"{role}_topic", metavar="TOPIC",
                       help=f"topic for the {role.replace('_', ' ')} role ('none' to ignore it)")
    add_typestore_arg(p)
    p.add_argument("--gps-noise", metavar="SIGMA[:BIAS]", default=None,
                   help="add white noise SIGMA m per axis (and a constant BIAS m in a random direction) to every GPS "
                        "fix before the loop sees it (evaluation against the recorded GPS)")
    p.add_argument("--gps-cut", metavar="START:END", action="append", default=[],
                   help="drop the GPS fixes from START to END seconds after the recording's start (repeatable)")
    p.add_argument("--gps-seed", type=int, default=0, help="seed of --gps-noise (default 0)")
    p.add_argument("--survey-calibration", metavar="MAP|MOSAIC.json", default=None,
                   help="a photo folder of the aircraft whose survey made the map: apply the camera-to-GPS offset, "
                        "the ground scale and the attitude error that `skyfix maps build --photos` measured (the map "
                        "it built keeps them, as does its JSON report)")
    p.add_argument("--recorded-tilt", action="store_true",
                   help="a photo folder: keep each photo's recorded roll and pitch (default: from the images of the "
                        "photo before it in its flight line where the two register, as in flight)")
    p.add_argument("--no-photo-motion", action="store_true",
                   help="a photo folder: do not give the loop each photo's displacement from the photo before it, "
                        "measured from the two images (default: given where they register)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=run)


def _err(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def encoder_device(device: str) -> str:
    """The encoder's device for a loop ``--device``: ``torch:DEV`` (the loop's torch stages on DEV) -> DEV."""
    d = str(device)
    return d[len("torch:"):] if d.lower().startswith("torch:") else d


def region_line(region) -> str:
    """One line on how a region map's shards were loaded during a run, from ``RegionMap.stats()``."""
    st = region.stats()
    load, wait, c = st["load_ms"], st["wait_ms"], st["counts"]
    ms = lambda d, q, fmt: format(d[q], fmt) if d else "-"
    return (f"region map {region.path}: {c['loads']} shard loads in the background (p50 {ms(load, 'p50', '.0f')} ms, "
            f"p99 {ms(load, 'p99', '.0f')} ms), {c['evictions']} evicted, frames waited p50 {ms(wait, 'p50', '.1f')} "
            f"ms, p99 {ms(wait, 'p99', '.1f')} ms (bound {st['stall_bound_ms']:.0f} ms), {c['late_shards']} late "
            "shard(s)")


def load_loop(args: argparse.Namespace):
    """(Localizer, package, encoder) from the common model arguments."""
    from maps.region import open_map

    from ..encoder import CLASSICAL, DEFAULT, PLUS_CLASSICAL, load_encoder
    from ..localizer import Localizer, LocalizerConfig

    if args.map is None:
        return Localizer(None, None), None, None
    package = open_map(args.map, verify=getattr(args, "map_check", "sha256"),
                       cache_mb=getattr(args, "region_cache_mb", 1024.0), stall_ms=getattr(args, "shard_stall_ms", 50.0))
    model = args.model
    if model is None:
        eid = package.contract.encoder_id
        model = CLASSICAL if eid.startswith("classical") else (
            DEFAULT + PLUS_CLASSICAL if "+classical" in eid else DEFAULT)
    from ..gpu import import_torch, loop_device

    if loop_device(args.device) == "cpu":
        # the torch stages on the CPU: torch's own thread pool would compete with the loop's other work (measured on
        # a busy 2-core machine: 40x slower with 2 threads than with 1)
        import_torch().set_num_threads(max(1, int(args.threads)))
    encoder = load_encoder(model, backend=args.backend, device=encoder_device(args.device), threads=args.threads)
    camera = None
    if args.camera:
        from calibration.camera_io import load_camera

        camera = load_camera(args.camera)
    mount = None
    if args.mount:
        from calibration.geometry import load_mount

        mount = load_mount(args.mount)
    cfg = {}
    if args.config:
        import yaml

        from ..localizer import LocalizerError

        try:
            cfg = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise LocalizerError(f"cannot read the localizer config {args.config}: {exc}") from exc
        if not isinstance(cfg, dict):
            raise LocalizerError(f"{args.config} must hold a mapping of localizer settings, got {type(cfg).__name__}")
    if args.height is not None:
        cfg["height_m"] = args.height
    if getattr(args, "likelihood", None):
        cfg["likelihood"] = args.likelihood
    config = LocalizerConfig.from_dict(cfg)
    kwargs = {"camera": camera, "config": config, "device": args.device}
    if mount is not None:
        kwargs["mount"] = mount
    return Localizer(package, encoder, **kwargs), package, encoder


def _config_keys(args: argparse.Namespace) -> set:
    """Localizer settings the user gave (``--config`` keys, ``--height``): those win over what a source implies."""
    keys = set()
    if args.config:
        import yaml

        try:
            keys |= set((yaml.safe_load(Path(args.config).read_text()) or {}).keys())
        except (OSError, yaml.YAMLError, AttributeError):
            pass
    if args.height is not None:
        keys.add("height_m")
    return keys


def open_recording(paths, *, topics=None, camera=None, survey_calibration=None, typestore="auto",
                   tilt_from_images: bool = False, motion_from_images: bool = False):
    """A reader of ``paths``: a :class:`runtime.sources.photos.PhotoFolder` when they are one folder of photos (or
    photo files), else a :class:`runtime.bags.BagReader`. Role overrides set to ``'none'`` (``--gps-topic none``,
    ``--imu-topic none``) leave that role out of a photo folder too. ``survey_calibration``: the JSON report of
    ``skyfix maps build --photos`` (its ``camera_offset_m``, ``survey_scale``, ``boresight_deg`` and
    ``attitude_sigma_deg``), applied to a photo folder of the same aircraft: each photo's GPS moved to where its
    camera was, its height scaled, its mount turned by the boresight, the error of its recorded attitude stated.
    ``tilt_from_images``: each photo's roll and pitch from the images of the photo before it;
    ``motion_from_images``: each photo's displacement from the photo before it, from the two images
    (:func:`_image_pairs_survey`)."""
    from ..bags import BagReader
    from ..sources.photos import PhotoFolder, is_photo_folder, read_photo_folder

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if len(paths) == 1 and is_photo_folder(paths[0]) or paths and all(
            Path(p).suffix.lower() in (".jpg", ".jpeg", ".tif", ".tiff") for p in paths):
        if isinstance(camera, (str, Path)):
            from calibration.camera_io import load_camera

            camera = load_camera(camera)
        src = paths[0] if len(paths) == 1 else paths
        survey = None if survey_calibration is None else _calibrated_survey(src, camera, survey_calibration)
        if tilt_from_images or motion_from_images:
            survey = _image_pairs_survey(survey if survey is not None else read_photo_folder(src, camera=camera),
                                         tilt=tilt_from_images, motion=motion_from_images)
        folder = PhotoFolder(src, camera=camera, survey=survey)
        return _RoleFilter(folder, {r for r, v in (topics or {}).items() if v in ("none", "")})
    if survey_calibration is not None:
        from ..sources import SourceError

        raise SourceError("--survey-calibration applies to photo folders only (the recording is a bag)")
    return BagReader(paths, topics=topics, typestore=typestore)


def _survey_report(path) -> dict:
    """The survey calibration of ``path``: the JSON report of ``skyfix maps build --photos`` (MAP.mosaic.json), or a
    map package built from photos (its manifest keeps the calibration under ``build.provenance``)."""
    import json

    from ..sources import SourceError

    p = Path(path)
    if p.is_dir():
        build = json.loads((p / "manifest.json").read_text()).get("build", {})
        survey = (build.get("provenance") or {}).get("survey_calibration")
        if not isinstance(survey, dict):
            raise SourceError(f"--survey-calibration {path}: this map holds no survey calibration (it was not built "
                              "from photos with `skyfix maps build --photos`); give that map, or its MAP.mosaic.json")
        return survey
    return json.loads(p.read_text())


def _image_pairs_survey(survey, *, tilt: bool = True, motion: bool = True):
    """``survey`` (:class:`runtime.sources.photos.PhotoSurvey`) with what each photo's images and those of the photo
    before it in its flight line say (causal: what the loop would have in flight). ``tilt``: each photo's roll and
    pitch from them (:func:`runtime.mapping.attitude_check.images_tilt`), each such photo stating its tilt's sigma;
    photos without a registered pair keep the recorded attitude, stated off by the survey calibration's figure or,
    without one, by what this folder's own pairs measure
    (:func:`runtime.mapping.attitude_check.recorded_tilt_sigma_deg`). ``motion``: each photo's displacement since the
    photo before it (:func:`runtime.mapping.photo_motion.pair_motions`, with its maker's heading error), which the
    folder yields before the photo's frame."""
    from dataclasses import replace

    from ..mapping.attitude_check import check_attitude, images_tilt, recorded_tilt_sigma_deg
    from ..mapping.flight_lines import flight_lines
    from ..mapping.photo_motion import with_motions

    metas = list(survey.photos)
    if sum(m.attitude is not None for m in metas) < 2:
        return survey
    check = check_attitude(metas, flight_lines(metas))
    sigma = survey.attitude_sigma_deg
    notes = list(survey.notes)
    if tilt:
        if sigma is None:
            sigma = recorded_tilt_sigma_deg(metas, check)
        metas, changed = images_tilt(metas, check, causal=True)
        notes.append(f"tilt from the images: {len(changed)} of {len(metas)} photos take their roll and pitch from the "
                     f"photo before them ({len(check.pairs)} of {len(check.pairs) + len(check.skipped)} consecutive "
                     "pairs register; --recorded-tilt keeps the recorded ones)"
                     + ("" if sigma is None else f"; the others' recorded tilt stated off by {sigma:.1f} deg"))
    if motion:
        metas, n_motion = with_motions(metas, check)
        notes.append(f"motion from the images: {n_motion} of {len(metas)} photos have their displacement from "
                     "the photo before them (the loop weighs its belief by it; --no-photo-motion: not)")
    return replace(survey, photos=tuple(metas), notes=tuple(notes), attitude_sigma_deg=sigma)


def _calibrated_survey(src, camera, report_path):
    """The photos of ``src`` with a survey calibration (``skyfix maps build --photos``'s JSON report, or the map it
    built) applied."""
    from dataclasses import replace

    from ..sources import SourceError
    from ..sources.photos import PhotoSurvey, read_photo_folder
    from ..tools.photo_protocol import flight_lines, shift_to_camera

    try:
        rep = _survey_report(report_path)
        off = (float(rep["camera_offset_m"]["forward"]), float(rep["camera_offset_m"]["right"]))
        scale = float(rep["survey_scale"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"--survey-calibration {report_path}: expected the JSON report of `skyfix maps build "
                          f"--photos` (camera_offset_m.forward/right, survey_scale), got an error: {exc}") from exc
    if not 0.2 < scale < 5.0:
        raise SourceError(f"--survey-calibration {report_path}: survey_scale {scale} is not a plausible ground scale")
    att_sigma = rep.get("attitude_sigma_deg")  # absent from reports written before it was measured
    if att_sigma is not None:
        try:
            att_sigma = float(att_sigma)
        except (TypeError, ValueError):
            att_sigma = math.nan
        if not 0.0 <= att_sigma < 45.0:
            raise SourceError(f"--survey-calibration {report_path}: attitude_sigma_deg {rep['attitude_sigma_deg']!r} "
                              "is not an attitude error in degrees (0 <= sigma < 45); rebuild the map with `skyfix "
                              "maps build --photos`")
    bore = rep.get("boresight_deg")  # absent from reports written before it was measured, None when unmeasured
    if bore is not None:
        from ..mapping.attitude_check import AttitudeCheckError, Boresight

        try:
            bore = Boresight.from_dict(bore)
        except AttitudeCheckError as exc:
            raise SourceError(f"--survey-calibration {report_path}: {exc}; rebuild the map with `skyfix maps build "
                              "--photos`") from exc
    survey = read_photo_folder(src, camera=camera)
    metas = list(survey.photos)
    metas = shift_to_camera(metas, off, flight_lines(metas))
    metas = [replace(m, height_m=None if m.height_m is None else m.height_m * scale) for m in metas]
    if bore is not None:
        from ..mapping.attitude_check import apply_boresight

        metas = apply_boresight(metas, bore)
    note = (f"survey calibration {report_path}: camera {off[0]:.1f} m forward, {off[1]:.1f} m right of its GPS fix, "
            f"heights x{scale:.3f}"
            + ("" if bore is None else f", camera tilted {bore.x_deg:.1f} / {bore.y_deg:.1f} deg (x / y) in its mount")
            + ("" if att_sigma is None else f", recorded attitude off by {att_sigma:.1f} deg (1 sigma)"))
    return PhotoSurvey(tuple(metas), survey.skipped, survey.notes + (note,), att_sigma)


class _RoleFilter:
    """A reader whose events leave out ``off`` roles (a photo folder with ``--gps-topic none``)."""

    def __init__(self, reader, off: set):
        self._r, self._off = reader, off

    def __getattr__(self, name):
        return getattr(self._r, name)

    @property
    def selection(self) -> dict:
        return {k: (None if k in self._off else v) for k, v in self._r.selection.items()}

    def events(self, *, roles=None, **kw):
        roles = [r for r in (roles or ROLES) if r not in self._off]
        return self._r.events(roles=roles, **kw)

    def __enter__(self):
        self._r.__enter__()
        return self

    def __exit__(self, *exc):
        return self._r.__exit__(*exc)


def run(args: argparse.Namespace) -> int:
    from ..errors import BagError
    from ..events import Frame, GpsFix
    from ..outputs import TrackWriter
    from ..sources.replay import replay_events
    from ..sources.sanitize import EventSanitizer, skip_report

    overrides = {role: getattr(args, f"{role}_topic") for role, _ in _ROLE_FLAGS if getattr(args, f"{role}_topic")}
    loop, package, encoder = load_loop(args)
    out_path = Path(args.output)
    t0 = time.perf_counter()
    from ..sources.gps_faults import GpsDegradation, degrade_gps

    deg = GpsDegradation.parse(args.gps_noise, args.gps_cut, args.gps_seed)
    with open_recording(args.bag, topics=overrides, camera=args.camera,
                        survey_calibration=args.survey_calibration, typestore=args.typestore,
                        tilt_from_images=not args.recorded_tilt,
                        motion_from_images=not args.no_photo_motion) as bag:
        if deg.active:
            _err(f"note: {deg.describe()}")
        if not args.mount and getattr(bag, "mount", None) is not None:
            loop.mount = bag.mount  # a photo folder knows how its maker's camera sits in the body
        implied = getattr(bag, "loop_settings", None)
        if implied is not None:
            from dataclasses import replace as _replace

            given = _config_keys(args)
            settings = implied()
            tracker = {k: v for k, v in settings.pop("tracker", {}).items() if k not in loop.config.tracker}
            extra = {k: v for k, v in settings.items() if k not in given}
            if tracker:  # the tracker is built with the loop: rebuilt (no event has reached it yet), --config wins
                from ..tracking import ParticleTracker, TrackerConfig

                merged = {**loop.config.tracker, **tracker}
                loop.config = _replace(loop.config, tracker=merged)
                loop.tracker = ParticleTracker(TrackerConfig.from_dict(merged), bounds=loop.tracker.bounds)
                _err("note: from the photos: tracker " + ", ".join(f"{k}={v}" for k, v in tracker.items()))
            if loop.stages is not None and extra.pop("align_highpass_m", 0.0):
                _err("note: the photos' align_highpass_m is not applied: the torch aligner has none (--device cpu "
                     "aligns with it)")
            if extra:
                loop.config = _replace(loop.config, **extra)
                shown = ", ".join(f"{k}={v}" if isinstance(v, bool) else f"{k}={v:g}" for k, v in extra.items())
                _err(f"note: from the photos: {shown}")
        for note in bag.notes:
            _err(f"note: {note}")
        if implied is not None and args.survey_calibration is None and package is not None and (
                (package.manifest.build.get("provenance") or {}).get("survey_calibration")):
            _err(f"notice: the map was made from a photo survey whose calibration it keeps (camera-to-GPS offset, "
                 f"ground scale, attitude error); if these photos come from the same aircraft, pass "
                 f"--survey-calibration {args.map}")
        if bag.selection.get("camera") is None and bag.selection.get("gps") is None:
            found = ", ".join(f"{name} ({getattr(t, 'msgtype', '?')})" for name, t in
                              sorted((getattr(bag, "topics", None) or {}).items())) or "none"
            raise BagError(f"the recording has neither camera frames nor GPS fixes to localize with (topics: {found}); "
                           "see `runtime inspect BAG`, or name them with --camera-topic / --gps-topic")
        gps_only = bag.selection.get("camera") is None or package is None
        if bag.selection.get("camera") is None:
            why = ("--camera-topic none" if overrides.get("camera") in ("none", "")
                   else "the recording has no camera topic")
            _err(f"notice: {why}: tracking on GPS alone (no visual fixes)")
        elif package is None:
            raise BagError(f"the recording has camera frames ({bag.selection['camera']}): pass --map MAP (a map "
                           "built with `skyfix maps build`) to localize with them")
        duration = bag.duration_s
        last_shown = [0.0]

        def progress(ev, n: int) -> None:
            now = time.perf_counter()
            if not args.quiet and isinstance(ev, (Frame, GpsFix)) and now - last_shown[0] > 2.0:
                last_shown[0] = now
                _err(f"replay {(ev.t_ns - bag.start_ns) / 1e9:6.1f}/{duration:.1f} s  estimates {n}")

        with TrackWriter(out_path, geojson=not args.no_geojson, gpx=not args.no_gpx, overwrite=args.overwrite) as w:
            # GPS alone (no camera topic, or no map): the camera roles are not read at all, so a CameraInfo left
            # in the recording cannot set up a ground view that has no map to give it a scale
            roles = tuple(r for r in ROLES if r not in ("camera", "camera_info")) if gps_only else ROLES
            # the input checks (runtime.sources.sanitize): duplicates, clocks going back, NaN values are counted,
            # noted and skipped here instead of ending the run
            checks = EventSanitizer(max_behind_s=loop.tracker.config.max_backstep_s)
            events = replay_events(degrade_gps(checks.filter(bag.events(roles=roles)), deg), realtime=args.realtime,
                                   speed=args.speed)
            n_out = len(run_events(loop, events, w, gps_only=gps_only, on_event=progress))
    wall = time.perf_counter() - t0
    for note in loop.notes:
        _err(f"note: {note}")
    for note in getattr(bag, "reading_notes", list)():  # the bag's messages skipped (topic, time, reason)
        _err(f"note: {note}")
    for line in skip_report(checks, loop.counts):
        _err(f"note: {line}")
    if getattr(package, "is_region", False):
        _err(f"note: {region_line(package)}")
        if getattr(args, "region_stats", None):
            import json

            Path(args.region_stats).write_text(json.dumps(package.stats(), indent=2) + "\n", encoding="utf-8")
    c = loop.counts
    print(f"{n_out} estimates -> {out_path} in {wall:.1f} s ({c['frames']} frames, {c['frames_used']} with a visual "
          f"fix; {c['gps']} GPS fixes, {c['gps_rejected']} rejected; "
          + (f"encoder {encoder.name})" if encoder is not None else "GPS alone)"))
    return 0
