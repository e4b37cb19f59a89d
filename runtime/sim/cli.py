"""``skyfix simulate``: a simulated flight over an orthophoto, written as a ROS 1 bag.

Settings come from the defaults of :class:`runtime.sim.config.SimConfig`, then ``--config sim.yaml``, then the flags
given on the command line (a flag given wins; ``--gps-outage``/``--gps-spoof``/``--gps-drag`` given on the command line
replace the file's lists).
"""

from __future__ import annotations

import argparse
import sys

# runtime.sim.trajectory.TRAJECTORIES, spelled out so that registering the CLI imports nothing heavy (a test checks)
TRAJECTORY_CHOICES = ("lawnmower", "racetrack", "waypoints", "random")

# flag dest -> SimConfig field
_FLAG_FIELDS = {
    "ortho": "ortho",
    "camera": "camera",
    "out": "out",
    "mount": "mount",
    "duration": "duration_s",
    "altitude": "altitude_m",
    "speed": "speed_mps",
    "trajectory": "trajectory",
    "waypoints": "waypoints",
    "max_outside": "max_outside_m",
    "camera_rate": "camera_rate_hz",
    "gps_rate": "gps_rate_hz",
    "imu_rate": "imu_rate_hz",
    "gps_sigma": "gps_sigma_m",
    "gps_bias": "gps_bias_m",
    "gps_bias_mode": "gps_bias_mode",
    "gps_outage": "gps_outages",
    "gps_spoof": "gps_spoofs",
    "seed": "seed",
    "ground_elevation": "ground_elevation_m",
    "jpeg_quality": "jpeg_quality",
    "vehicle": "vehicle",
    "imu_accel_bias": "imu_accel_bias_mps2",
    "imu_accel_scale_error": "imu_accel_scale_error",
    "imu_accel_sees_attitude": "imu_accel_sees_attitude",
    "imu_frame": "imu_frame",
    "imu_time_offset": "imu_time_offset_s",
    "gps_drag": "gps_drags",
    "gps_velocity": "gps_velocity",
    "gps_noise_tau": "gps_noise_tau_s",
}
# runtime.sim.config.VEHICLES / IMU_FRAMES, spelled out for the same reason
VEHICLE_CHOICES = ("multicopter", "fixed_wing", "ground")
IMU_FRAME_CHOICES = ("enu_flu", "ned_frd")


def register(subparsers) -> None:
    """Add ``simulate`` to a ``skyfix`` subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a flight over an orthophoto and write it as a ROS 1 bag",
        description=(
            "Fly a camera over an orthophoto and write what its sensors would record as a ROS 1 bag: JPEG frames "
            "(/camera/image_raw/compressed) with /camera/camera_info, a noisy GPS (/gps/fix) with outages and "
            "spoofing, an IMU (/imu/data) and ground truth (/ground_truth/fix, /ground_truth/pose). Deterministic "
            "by --seed."
        ),
        epilog=(
            "example: skyfix simulate --ortho ortho.tif --camera camera.yaml --out flight.bag --duration 120 "
            "--altitude 60 --speed 8 --gps-sigma 5 --gps-bias 3 --gps-outage 40:70 --gps-spoof 90:95:200 --seed 1"
        ),
    )
    p.add_argument("--ortho", metavar="ORTHO", help="orthophoto GeoTIFF (any CRS) or a folder of tiles")
    p.add_argument("--camera", metavar="CAMERA.yaml", help="camera file (OpenCV or ROS YAML); default: SkyFix's "
                   "default 640x480 camera")
    p.add_argument("--out", "-o", metavar="BAG", help="output .bag (replaced if it exists; default flight.bag)")
    p.add_argument("--mount", metavar="MOUNT.yaml", help="camera mount file; default nadir, image top = forward")
    p.add_argument("--config", metavar="SIM.yaml", help="YAML of simulation settings (keys of SimConfig)")
    g = p.add_argument_group("flight")
    g.add_argument("--duration", type=float, metavar="S", help="flight duration, seconds (default 120)")
    g.add_argument("--altitude", type=float, metavar="M", help="height above ground, metres (default 60)")
    g.add_argument("--speed", type=float, metavar="M/S", help="ground speed (default 8)")
    g.add_argument("--trajectory", choices=TRAJECTORY_CHOICES,
                   help="path shape (default lawnmower; waypoints when --waypoints is given; racetrack: an oval "
                   "along the usable area, for narrow areas)")
    g.add_argument("--waypoints", metavar="FILE", help="CSV 'lat,lon' lines (or header 'x,y' for local metres) or "
                   "YAML/JSON list; flown in order, looped when short")
    g.add_argument("--max-outside", type=float, metavar="M",
                   help="metres of a frame's footprint allowed to fall on nodata, rendered as nodata (default 0)")
    g.add_argument("--ground-elevation", type=float, metavar="M",
                   help="ground altitude in the GPS datum, metres (default 0)")
    g.add_argument("--seed", type=int, help="random seed (default 1); same seed -> same bag")
    g.add_argument("--vehicle", choices=VEHICLE_CHOICES,
                   help="attitude model: multicopter (default; tilts into its acceleration), fixed_wing (coordinated "
                   "turns, 3 deg nose up) or ground (level body)")
    s = p.add_argument_group("sensors")
    s.add_argument("--camera-rate", type=float, metavar="HZ", help="camera frame rate (default 5)")
    s.add_argument("--gps-rate", type=float, metavar="HZ", help="GPS fix rate (default 5)")
    s.add_argument("--imu-rate", type=float, metavar="HZ", help="IMU rate (default 50)")
    s.add_argument("--jpeg-quality", type=int, metavar="Q", help="JPEG quality 1-100 (default 85)")
    f = p.add_argument_group("IMU faults")
    f.add_argument("--imu-accel-bias", type=float, metavar="M/S2",
                   help="constant accelerometer bias magnitude, random body direction by seed (default 0)")
    f.add_argument("--imu-accel-scale-error", type=float, metavar="E",
                   help="accelerometer scale error per axis, reported (1 +- E) f, signs by seed (default 0)")
    f.add_argument("--imu-accel-no-attitude", dest="imu_accel_sees_attitude", action="store_false", default=None,
                   help="soft mount: the specific force misses the attitude wobble (gravity leaks horizontally)")
    f.add_argument("--imu-frame", choices=IMU_FRAME_CHOICES,
                   help="enu_flu (default, REP-103) or ned_frd (PX4: orientation FRD->NED, FRD rates and force)")
    f.add_argument("--imu-time-offset", type=float, metavar="S",
                   help="IMU stamps = true sample time + S seconds, |S| <= 1 (default 0)")
    e = p.add_argument_group("GPS errors")
    e.add_argument("--gps-sigma", type=float, metavar="M", help="white noise per horizontal axis (default 5)")
    e.add_argument("--gps-bias", type=float, metavar="M", help="bias magnitude, random direction (default 3)")
    e.add_argument("--gps-bias-mode", choices=("gauss_markov", "constant"),
                   help="bias direction wanders slowly (default) or stays")
    e.add_argument("--gps-outage", action="append", metavar="START:END",
                   help="no GPS from START to END seconds (repeatable)")
    e.add_argument("--gps-spoof", action="append", metavar="START:END:METRES",
                   help="GPS offset by METRES from START to END seconds, covariance unchanged (repeatable)")
    e.add_argument("--gps-drag", action="append", metavar="START:END:MPS",
                   help="GPS pulled away at MPS m/s from START to END seconds, /gps/vel moved too (repeatable)")
    e.add_argument("--no-gps-velocity", dest="gps_velocity", action="store_false", default=None,
                   help="write no /gps/vel topic")
    e.add_argument("--gps-noise-tau", type=float, metavar="S",
                   help="correlation time of the horizontal GPS noise, seconds (default 0: white)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`SimConfig` for parsed arguments (defaults < --config file < flags given)."""
    from .config import SimConfig

    base = SimConfig.from_yaml(args.config) if getattr(args, "config", None) else SimConfig()
    values = {}
    for dest, key in _FLAG_FIELDS.items():
        v = getattr(args, dest, None)
        if v is not None:
            values[key] = tuple(v) if isinstance(v, list) else v
    if values.get("waypoints") and "trajectory" not in values:
        values["trajectory"] = "waypoints"
    return SimConfig.from_dict(values, base=base, source="command line")


def run(args: argparse.Namespace) -> int:
    from ..errors import SimulationError
    from .flight import simulate

    config = config_from_args(args)
    if not config.ortho:
        raise SimulationError("no orthophoto given: pass --ortho ORTHO.tif (any GeoTIFF) or set 'ortho' in --config")
    show = not args.quiet and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show and (done == total or done % max(1, total // 20) == 0):
            print(f"\rrendering frames {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    summary = simulate(config, progress=progress)
    if not args.quiet:
        print(summary.to_text())
    return 0
