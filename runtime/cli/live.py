"""``runtime run --source SRC --gps PORT --map MAP``: the live onboard process.

Camera frames come from OpenCV (a device index, a video file or a GStreamer pipeline string) through a grabber that
keeps only the newest frame (:class:`runtime.sources.camera.LatestFrameCamera`: when processing falls behind, old
frames are dropped and counted, never queued). The GPS is NMEA 0183 on a serial port, read in its own thread
(:class:`runtime.sources.serial_gps.SerialGps`; reconnects after an unplug), so frames never block it. Estimates go
to a JSONL track and, with ``--nmea-out PORT``, as GGA + RMC sentences over a serial port (how an autopilot takes a
GPS): fix quality 1 / 6 (estimated) / 0 and RMC mode A / E / N for OK / dead reckoning / LOST, HDOP = sigma / 5 m,
speed and course from the filter, altitude = height above ground + the map's ground elevation
(:func:`runtime.nmea.nmea_fix_kind`). A ``--gps`` port that cannot be opened is said at start and in the status lines,
and retried.
Both clocks are the host's (``--gps-time host``, the default) so frames and fixes line up without a UTC-synced
host clock. With ``--mavlink-in URL`` the flight controller gives IMU (ATTITUDE, HIGHRES_IMU) and, without
``--gps``, GPS (GPS_RAW_INT); ``--mavlink-out URL`` sends each estimate as GPS_INPUT (ArduPilot),
VISION_POSITION_ESTIMATE or ODOMETRY (PX4 EKF2) at most ``--mavlink-rate`` Hz (:mod:`runtime.mavlink`, the
``mavlink`` extra). Stops on Ctrl-C, at the end of a video file, or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    from .replay import add_model_args

    p = subparsers.add_parser("run", help="the live onboard process (camera + serial NMEA GPS -> estimates)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", "--video", dest="source", required=True, metavar="SRC",
                   help="camera: device index (0), video file, or GStreamer pipeline string (contains '!')")
    add_model_args(p)
    p.add_argument("--gps", default=None, metavar="PORT", help="NMEA serial port, e.g. /dev/ttyUSB0 (default: none)")
    p.add_argument("--baud", type=int, default=9600, help="GPS baud rate (default 9600)")
    p.add_argument("--gps-time", choices=("host", "gps"), default="host",
                   help="time stamp of fixes: host clock (default) or the receiver's UTC")
    p.add_argument("--nmea-out", default=None, metavar="PORT", help="write estimates as NMEA GGA/RMC to this port")
    p.add_argument("--nmea-baud", type=int, default=9600, help="baud rate of --nmea-out (default 9600)")
    p.add_argument("--mavlink-out", default=None, metavar="URL",
                   help="send estimates over MAVLink 2: udpout:HOST:PORT, udpin:HOST:PORT, tcp:HOST:PORT or "
                        "serial:/dev/ttyX:BAUD (needs pip install 'skyfix[mavlink]')")
    p.add_argument("--mavlink-msg", choices=("gps_input", "vision", "odometry"), default="gps_input",
                   help="what --mavlink-out sends: gps_input (ArduPilot GPS1_TYPE=14 MAV, default), vision "
                        "(VISION_POSITION_ESTIMATE) or odometry (ODOMETRY): PX4 EKF2 external vision")
    p.add_argument("--mavlink-rate", type=float, default=5.0, metavar="HZ",
                   help="ceiling rate of --mavlink-out (default 5 Hz; an estimate is never repeated)")
    p.add_argument("--mavlink-in", default=None, metavar="URL",
                   help="read IMU (ATTITUDE, HIGHRES_IMU) and, without --gps, GPS (GPS_RAW_INT) from the flight "
                        "controller over MAVLink (same URL forms; equal to --mavlink-out: one shared link)")
    p.add_argument("--mavlink-sysid", type=int, default=1, metavar="ID",
                   help="our MAVLink system id (default 1, the vehicle's; component 191, onboard computer)")
    p.add_argument("-o", "--output", default="live_track.jsonl", metavar="TRACK.jsonl",
                   help="track file (default live_track.jsonl)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing track file")
    p.add_argument("--every-frame", action="store_true",
                   help="video files: process every frame in order instead of the newest one")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(handler=run)


def _err(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _check_gps_port(gps, wait_s: float = 2.0) -> None:
    """Say at start when the --gps port cannot be opened (the reader keeps retrying: a late plug is picked up)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not gps.connected and gps.open_failures == 0:
        time.sleep(0.02)
    if not gps.connected:
        _err(f"warning: {gps.warning or f'GPS port {gps.port!r} is not open yet'}; running on without GPS fixes "
             "until it opens")


def _altitude_m(loop, package) -> float | None:
    """Altitude above the ellipsoid for NMEA out: the height above ground the loop uses (GPS-held, else --height,
    times the image-based scale correction) + the map's ground elevation; None when no height is known."""
    h = loop.height.height_m if loop.height.ready else loop.config.height_m
    if h is None:
        return None
    return float(h) * loop.height_scale + (package.ground_elevation_m if package is not None else 0.0)


def _gps_sats(gps, rec) -> int:
    """Satellites for NMEA out: the receiver's count while its fix is in use (gps state ok), else 0."""
    if gps is None or rec.gps != "ok":
        return 0
    return gps.parser.n_sats or 0


def _open_mavlink(args):
    """The MAVLink side (:class:`runtime.mavlink.live.LiveMavlink`) of --mavlink-in / --mavlink-out."""
    from ..mavlink.live import LiveMavlink

    return LiveMavlink(args.mavlink_in, args.mavlink_out, message=args.mavlink_msg, rate_hz=args.mavlink_rate,
                       gps=not args.gps, source_system=args.mavlink_sysid)


def _send_mavlink(mav, rec, loop, package, gps) -> bool:
    """One estimate to --mavlink-out: z from the height above ground, GPS_INPUT alt (MSL) = the WGS84 altitude minus
    the geoid separation (from the flight controller's GPS_RAW_INT or the NMEA receiver), unsent when unknown."""
    alt = _altitude_m(loop, package)
    ground = package.ground_elevation_m if package is not None else 0.0
    sep = mav.geoid_sep_m
    if sep is None and gps is not None:
        sep = gps.parser.geoid_sep_m
    return mav.send(rec, height_agl_m=None if alt is None else alt - ground,
                    alt_amsl_m=None if alt is None or sep is None else alt - sep)


def run(args: argparse.Namespace) -> int:
    from ..outputs import TrackWriter
    from ..feed import record_of
    from .replay import load_loop
    from ..sources import EndOfStream
    from ..sources.camera import LatestFrameCamera
    from ..sources.serial_gps import NmeaSerialWriter, SerialGps

    if not args.camera:
        from ..errors import OnboardError

        raise OnboardError("runtime run needs the camera's intrinsics: pass --camera CAMERA.yaml (from `skyfix "
                           "calibrate`, OpenCV or ROS camera_info YAML)")
    loop, package, encoder = load_loop(args)
    from ..sources.sanitize import EventSanitizer, skip_report

    checks = EventSanitizer(max_behind_s=loop.tracker.config.max_backstep_s)
    source = int(args.source) if str(args.source).isdigit() else args.source
    camera = LatestFrameCamera(source, every_frame=args.every_frame, realtime=False if args.every_frame else None)
    gps = SerialGps(args.gps, args.baud, queue_size=256, time_source=args.gps_time) if args.gps else None
    if gps is not None:
        _check_gps_port(gps)
    nmea = NmeaSerialWriter(args.nmea_out, args.nmea_baud) if args.nmea_out else None
    mav = None
    if args.mavlink_in or args.mavlink_out:
        try:
            mav = _open_mavlink(args)
        except BaseException:
            for closer in (camera, gps, nmea):
                if closer is not None:
                    closer.close()
            raise
    n = 0
    t0 = time.monotonic()
    last_status = 0.0
    try:
        with TrackWriter(Path(args.output), geojson=True, gpx=True, overwrite=args.overwrite) as w:
            while args.duration is None or time.monotonic() - t0 < args.duration:
                if gps is not None:
                    for fix in gps.drain():
                        fix = checks.check(fix)  # the input checks: a bad fix is counted and noted, not fatal
                        if fix is not None:
                            loop.process(fix)
                if mav is not None:
                    for ev in mav.drain():  # IMU (and GPS without --gps) from the flight controller
                        ev = checks.check(ev)
                        if ev is not None:
                            loop.process(ev)
                try:
                    frame = camera.read(timeout=0.5)
                except EndOfStream:
                    break
                if frame is None or checks.check(frame) is None:
                    continue
                out = loop.process(frame)
                if out is None:
                    continue
                rec = record_of(out)
                w.write(rec)
                n += 1
                if nmea is not None:
                    nmea.write_estimate(rec, alt_m=_altitude_m(loop, package), n_sats=_gps_sats(gps, rec),
                                        geoid_sep_m=None if gps is None else gps.parser.geoid_sep_m)
                if mav is not None:
                    _send_mavlink(mav, rec, loop, package, gps)
                now = time.monotonic()
                if now - last_status > 2.0:
                    last_status = now
                    _err(f"{n} estimates, status {rec.status}, sigma {rec.sigma_m:.1f} m, "
                         f"{out.latency_ms['total']:.0f} ms/frame, camera {camera.stats}"
                         + ("" if gps is None else ("; WARNING: " if gps.warning else "; ") + gps.status_line()))
    except KeyboardInterrupt:
        _err("stopped (Ctrl-C)")
    finally:
        camera.close()
        if gps is not None:
            gps.close()
        if nmea is not None:
            nmea.close()
        if mav is not None:
            mav.close()
    for note in loop.notes + ([] if mav is None else mav.notes):
        _err(f"note: {note}")
    if gps is not None and gps.warning:
        _err(f"warning: {gps.warning}")
    for line in skip_report(checks, loop.counts):
        _err(f"note: {line}")
    print(f"{n} estimates -> {args.output}; camera {camera.stats}"
          + (f"; GPS {gps.counters}" if gps is not None else "")
          + (f"; {mav.summary()}" if mav is not None else ""))
    return 0
