"""``runtime photo-check PHOTOS``: how far a survey's recorded attitude and GPS are off, from its own photos.

Before a survey becomes a map (``skyfix maps build --photos``) or a reference (``runtime eval --truth PHOTOS``),
this says what its metadata is worth: the attitude the photos record against the one their overlapping images give
(consecutive photos of each flight line, flat ground: :mod:`runtime.mapping.attitude_check`), the ground shift of
the nadir point that the recorded attitude makes, and how smooth the GPS track is. Printed as text (``--json``:
also every pair and photo).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("photo-check", help="a photo survey's recorded attitude and GPS checked against its "
                              "own overlapping images (tilt error, nadir shift, GPS smoothness)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", metavar="PHOTOS", help="folder of geotagged photos of one survey")
    p.add_argument("--camera", default=None, metavar="CAMERA.yaml",
                   help="camera intrinsics (default: from each photo's EXIF)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the whole check here")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..mapping.attitude_check import check_attitude
    from ..sources.photos import read_photo_folder
    from ..mapping.flight_lines import flight_lines

    camera = None
    if args.camera:
        from calibration.camera_io import load_camera

        camera = load_camera(args.camera)
    survey = read_photo_folder(args.photos, camera=camera)
    for note in survey.notes:
        print(note, file=sys.stderr)
    photos = list(survey.photos)
    lines = flight_lines(photos)
    print(f"{len(photos)} photos in {len(lines)} flight lines", file=sys.stderr, flush=True)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty or done == total or done % 25 == 0:
            lead, end = ("\r", "") if tty else ("", "\n")
            print(f"{lead}pairs {done}/{total}", end=end, file=sys.stderr, flush=True)

    check = check_attitude(photos, lines, progress=progress)
    if tty:
        print(file=sys.stderr)
    print(check.format_text())
    if args.json:
        Path(args.json).write_text(json.dumps(check.to_dict(), indent=1))
    return 0
