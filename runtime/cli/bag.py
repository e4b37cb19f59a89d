"""``runtime inspect BAG``: what a recording holds and what the runtime would use from it."""

from __future__ import annotations

import argparse
import math

_ROLE_FLAGS = (
    ("camera", "--camera-topic"),
    ("camera_info", "--camera-info-topic"),
    ("gps", "--gps-topic"),
    ("imu", "--imu-topic"),
    ("truth_fix", "--truth-fix-topic"),
    ("truth_pose", "--truth-pose-topic"),
    ("gps_velocity", "--gps-velocity-topic"),
    ("imu_attitude", "--imu-attitude-topic"),
)

TYPESTORE_HELP = (
    "message definitions for the types a bag does not store: auto (default: ROS 1 bags ros1_noetic; ROS 2 bags their "
    "stored definitions, else the distribution the bag names, else ros2_humble), ros1_noetic, ros2_foxy, "
    "ros2_galactic, ros2_humble, ros2_iron, ros2_jazzy, ros2_kilted; px4_msgs SensorGps/VehicleAttitude/SensorCombined "
    "are always known"
)


def add_typestore_arg(p: argparse.ArgumentParser) -> None:
    """``--typestore NAME`` (see :data:`runtime.bags.msgtypes.TYPESTORES`)."""
    p.add_argument("--typestore", default="auto", metavar="NAME", help=TYPESTORE_HELP)


def register(subparsers) -> None:
    """Add ``inspect`` to a ``runtime`` subparsers object."""
    p = subparsers.add_parser(
        "inspect",
        help="list a bag's topics and the ones the runtime would use",
        description=(
            "List the topics of a ROS bag (ROS 1 .bag, or a ROS 2 bag folder: sqlite3 or mcap) -- types, counts, rates, "
            "duration -- and which ones the runtime would use for camera, camera_info, GPS, IMU and ground truth "
            "(found by message type: sensor_msgs, and px4_msgs SensorGps/SensorCombined/VehicleAttitude; override "
            "by name), and what is missing."
        ),
    )
    p.add_argument("bag", metavar="BAG", nargs="+",
                   help="ROS 1 .bag file(s) (several: split recording) or a ROS 2 bag folder (sqlite3 or mcap)")
    for role, flag in _ROLE_FLAGS:
        p.add_argument(flag, dest=f"{role}_topic", metavar="TOPIC",
                       help=f"topic for the {role.replace('_', ' ')} role ('none' to ignore it)")
    add_typestore_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(handler=run)


def describe(paths, overrides: dict | None = None, typestore: str = "auto") -> dict:
    """A JSON-friendly description of a bag: topics, selection per role, notes, first GPS fix, camera size, the
    message definitions used."""
    from ..bags import BagReader

    with BagReader(paths, topics=overrides or {}, typestore=typestore) as bag:
        topics = [
            {
                "topic": t.name,
                "type": t.ros1_type,
                "count": t.count,
                "rate_hz": None if math.isnan(t.rate_hz) else round(t.rate_hz, 3),
                "mean_rate_hz": None if math.isnan(t.mean_rate_hz) else round(t.mean_rate_hz, 3),
                "max_gap_s": round(t.max_gap_ns / 1e9, 3),
            }
            for t in bag.topics.values()
        ]
        info = {
            "paths": [str(p) for p in bag.paths],
            "format": "ROS 2" if bag.is_ros2 else "ROS 1",
            "typestore": bag.typestore_used,
            "bytes": sum(_size(p) for p in bag.paths),
            "duration_s": round(bag.duration_s, 3),
            "start_ns": bag.start_ns if topics else None,
            "messages": sum(t["count"] for t in topics),
            "topics": topics,
            "selection": dict(bag.selection),
            "notes": list(bag.notes) + bag.missing_notes(),
        }
        for t in bag.topics.values():
            if t.has_gap:
                info["notes"].append(
                    f"{t.name}: no message for {t.max_gap_ns / 1e9:.1f} s from "
                    f"{(t.max_gap_start_ns - bag.start_ns) / 1e9:.1f} s into the recording"
                )
        used = {t for t in bag.selection.values() if t}
        unused = [f"{t['topic']} ({t['type']})" for t in topics if t["topic"] not in used]
        if unused:
            info["notes"].append("not used by the runtime: " + ", ".join(unused))
        if bag.selection.get("gps"):
            for ev in bag.events(roles=["gps"]):
                info["first_fix"] = {"lat": ev.lat, "lon": ev.lon, "alt": ev.alt, "status": ev.status,
                                     "sigma_h_m": ev.sigma_h}
                break
        cam = bag.first_camera()
        info["notes"] += bag.reading_notes()  # the first fix / camera read: messages skipped or noted on the way
        if cam is not None:
            info["camera"] = {"width": cam.width, "height": cam.height, "model": cam.model,
                              "hfov_deg": round(cam.hfov_deg, 2)}
    return info


def _size(path) -> int:
    """Bytes of a bag file, or of every file in a ROS 2 bag folder."""
    import os
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    return os.path.getsize(p) if p.is_file() else 0


def format_text(info: dict) -> str:
    """The table ``runtime inspect`` prints."""
    import datetime

    lines = []
    start = ""
    if info.get("start_ns") is not None:
        dt = datetime.datetime.fromtimestamp(info["start_ns"] / 1e9, tz=datetime.timezone.utc)
        start = f", starts {dt.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    lines.append(
        f"{', '.join(info['paths'])}: {info.get('format', 'ROS')} bag, {info['bytes'] / 1e6:.1f} MB, "
        f"{info['duration_s']:.1f} s, {info['messages']} messages{start}"
        + (f"; message definitions: {info['typestore']}" if info.get("typestore") else "")
    )
    width = max([len(t["topic"]) for t in info["topics"]] + [5])
    tw = max([len(t["type"]) for t in info["topics"]] + [30])  # the columns stay aligned for long type names
    lines.append(f"  {'topic':{width}s}  {'type':{tw}s} {'count':>7s} {'rate Hz':>8s}")
    for t in info["topics"]:
        rate = "-" if t["rate_hz"] is None else f"{t['rate_hz']:.2f}"
        lines.append(f"  {t['topic']:{width}s}  {t['type']:{tw}s} {t['count']:7d} {rate:>8s}")
    lines.append("runtime would use:")
    by_name = {t["topic"]: t for t in info["topics"]}
    for role, topic in info["selection"].items():
        detail = ""
        if topic:
            t = by_name[topic]
            detail = f"  ({t['type']}, {t['count']} msgs)"
            if role == "gps" and "first_fix" in info:
                f = info["first_fix"]
                sig = "" if f["sigma_h_m"] is None else f", sigma {f['sigma_h_m']:.1f} m"
                detail += f"  first fix {f['lat']:.6f}, {f['lon']:.6f}, alt {f['alt']:.1f} m{sig}"
            if role == "camera_info" and "camera" in info:
                c = info["camera"]
                detail += f"  {c['width']}x{c['height']} {c['model']}, hfov {c['hfov_deg']:.1f} deg"
        lines.append(f"  {role:12s} {topic or '-'}{detail}")
    if info["notes"]:
        lines.append("notes:")
        lines += [f"  - {n}" for n in info["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    overrides = {role: getattr(args, f"{role}_topic") for role, _ in _ROLE_FLAGS if getattr(args, f"{role}_topic")}
    info = describe(args.bag, overrides, typestore=getattr(args, "typestore", "auto"))
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print(format_text(info))
    return 0
