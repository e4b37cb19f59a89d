"""``runtime run --camera SRC --gps PORT --map MAP``: the live onboard process.

Camera frames come from OpenCV (a device index, a video file or a GStreamer pipeline string) through a grabber that
keeps only the newest frame (:class:`runtime.sources.camera.LatestFrameCamera`: when processing falls behind, old
frames are dropped and counted, never queued). The GPS is NMEA 0183 on a serial port, read in its own thread
(:class:`runtime.sources.serial_gps.SerialGps`; reconnects after an unplug), so frames never block it. Estimates go
to a JSONL track and, with ``--nmea-out PORT``, as GGA + RMC sentences over a serial port (how an autopilot takes a
GPS). Both clocks are the host's (``--gps-time host``, the default) so frames and fixes line up without a UTC-synced
host clock. Stops on Ctrl-C, at the end of a video file, or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    from .replay_cli import add_model_args

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
    p.add_argument("-o", "--output", default="live_track.jsonl", metavar="TRACK.jsonl",
                   help="track file (default live_track.jsonl)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing track file")
    p.add_argument("--every-frame", action="store_true",
                   help="video files: process every frame in order instead of the newest one")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(handler=run)


def _err(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from .outputs import TrackWriter
    from .replay_cli import load_loop, record_of
    from .sources import EndOfStream
    from .sources.camera import LatestFrameCamera
    from .sources.serial_gps import NmeaSerialWriter, SerialGps

    if not args.camera:
        from .errors import OnboardError

        raise OnboardError("runtime run needs the camera's intrinsics: pass --camera CAMERA.yaml (from `skyfix "
                           "calibrate`, OpenCV or ROS camera_info YAML)")
    loop, package, encoder = load_loop(args)
    from .sources.sanitize import EventSanitizer, skip_report

    checks = EventSanitizer(max_behind_s=loop.tracker.config.max_backstep_s)
    source = int(args.source) if str(args.source).isdigit() else args.source
    camera = LatestFrameCamera(source, every_frame=args.every_frame, realtime=False if args.every_frame else None)
    gps = SerialGps(args.gps, args.baud, queue_size=256, time_source=args.gps_time) if args.gps else None
    nmea = NmeaSerialWriter(args.nmea_out, args.nmea_baud) if args.nmea_out else None
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
                    h = package.ground_elevation_m + (loop.height.height_m if loop.height.ready else 0.0)
                    nmea.write(rec.t_ns, rec.lat, rec.lon, h, course_deg=rec.heading_deg or 0.0,
                               sigma_h_m=rec.sigma_m, valid=rec.status != "LOST")
                now = time.monotonic()
                if now - last_status > 2.0:
                    last_status = now
                    _err(f"{n} estimates, status {rec.status}, sigma {rec.sigma_m:.1f} m, "
                         f"{out.latency_ms['total']:.0f} ms/frame, camera {camera.stats}")
    except KeyboardInterrupt:
        _err("stopped (Ctrl-C)")
    finally:
        camera.close()
        if gps is not None:
            gps.close()
        if nmea is not None:
            nmea.close()
    for note in loop.notes:
        _err(f"note: {note}")
    for line in skip_report(checks, loop.counts):
        _err(f"note: {line}")
    print(f"{n} estimates -> {args.output}; camera {camera.stats}"
          + (f"; GPS {gps.counters}" if gps is not None else ""))
    return 0
