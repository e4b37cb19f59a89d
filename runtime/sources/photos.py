"""Folders of geotagged survey photos (DJI, senseFly, plain EXIF) as a source of the onboard loop.

A mapping flight leaves a folder of JPEGs, each with its position (EXIF GPS), its capture time and often the
vehicle's or gimbal's attitude (maker XMP). :class:`PhotoFolder` replays such a folder like a recording: per photo,
in time order, an :class:`~runtime.events.ImuSample` (the attitude), a :class:`~runtime.events.GpsFix` and the
:class:`~runtime.events.Frame`; it offers the surface of :class:`runtime.bags.BagReader` that
``runtime/cli/replay.py`` uses (``notes``, ``selection``, ``start_ns``, ``end_ns``, ``duration_s``,
``first_camera()``, ``events()``, context manager).

Metadata is read with Pillow: it is the most widely kept Python imaging library, reads the EXIF, Exif-IFD and GPS IFDs
(``Image.getexif()``, ``Exif.get_ifd``) and exposes the XMP packet (``Image.info["xmp"]``) from the file header
without decoding a pixel. The XMP packet comes from the user's file, so it is parsed with ``defusedxml`` (no entity
expansion, no external DTDs).

Conventions (``docs/DESIGN.md``)
--------------------------------
* Times: integer nanoseconds since the Unix epoch, UTC (:attr:`PhotoMeta.t_ns`; which clock, see :func:`read_photo`).
* Positions: WGS84 degrees; ``alt_m`` metres as the EXIF GPS block gives it (above sea level / the ellipsoid, as the
  receiver wrote it); ``height_m`` metres above ground (above the take-off point for DJI).
* Attitude: :class:`calibration.geometry.Attitude` of the BODY (FLU in world ENU, REP-103, radians); the camera
  orientation is ``attitude.R_body2world @ mount.R_cam2body`` (:func:`calibration.geometry.R_cam2world`).
* Cameras: :class:`calibration.camera.CameraModel` at the file's real pixel size; principal point at the image
  centre; no distortion unless a calibrated camera is given.

Makers
------
* ``"dji"`` (XMP namespace ``http://www.dji.com/drone-dji/1.0/``): the camera orientation is the gimbal's,
  ``GimbalYawDegree``/``GimbalPitchDegree``/``GimbalRollDegree``; it is expressed as the attitude of a virtual body
  carrying a :data:`~calibration.geometry.NADIR_MOUNT` camera (:func:`dji_gimbal_attitude`).
  ``RelativeAltitude`` is the height above the take-off point.
* ``"sensefly"`` (XMP namespace ``http://ns.sensefly.com/sensefly/1.0/``, swinglet CAM / eBee): ``Heading``,
  ``PitchAngle``, ``RollAngle`` are the fixed wing's body attitude (no gimbal); ``Height`` is the height above
  ground; ``UTCTime`` the GPS-derived UTC time. The camera is fixed in the body, nadir, image top towards the nose;
  REP-103 roll = ``RollAngle``, pitch = -``PitchAngle`` (aerospace: nose up positive). Mount and signs were measured
  on a real flight (:func:`sensefly_attitude`, :data:`SENSEFLY_MOUNT`); the heading is noisy (+/-17 deg).
* ``"exif"``: no maker attitude. :func:`read_photo_folder` takes the heading from the GPS track (the bearing from the
  previous to the next photo), roll = pitch = 0, and assumes a nadir camera with the image top towards the direction
  of travel; photos less than 1 m apart get no attitude.

Errors are :class:`PhotoError` (a :class:`runtime.sources.SourceError`); messages name the file and what is missing.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude, Mount, yaw_from_heading
from calibration.rotations import rotation_from_rpy

from ..events import Frame, GpsFix, GroundMotion, ImuSample
from . import SourceError

__all__ = [
    "PHOTO_EXTENSIONS",
    "PhotoError",
    "PhotoFolder",
    "PhotoMeta",
    "PhotoSurvey",
    "SENSEFLY_MOUNT",
    "SENSOR_WIDTH_MM",
    "dji_gimbal_attitude",
    "is_photo_folder",
    "mount_with_image_top",
    "read_photo",
    "read_photo_folder",
    "sensefly_attitude",
]

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".tif", ".tiff")
"""File extensions (case-insensitive) a photo folder is searched for."""

NS_DJI = "http://www.dji.com/drone-dji/1.0/"
NS_SENSEFLY = "http://ns.sensefly.com/sensefly/1.0/"
_NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

GRAVITY_MPS2 = 9.80665
"""Standard gravity, m/s^2: the specific force of a body at rest."""

FULL_FRAME_DIAGONAL_MM = 43.27
"""Diagonal of a 36 x 24 mm frame: the reference of the EXIF ``FocalLengthIn35mmFilm`` equivalence (by diagonal)."""

SENSOR_WIDTH_MM = {
    "fc6310": 13.2,  # DJI Phantom 4 Pro / Advanced: 1" sensor, 13.2 x 8.8 mm (5472 x 3648 px at 2.41 um)
    "fc6310s": 13.2,  # Phantom 4 Pro V2.0, same 1" sensor
    "fc6310r": 13.2,  # Phantom 4 RTK, same 1" sensor
    "fc330": 6.17,  # DJI Phantom 4: 1/2.3" sensor, 6.17 x 4.55 mm
    "fc220": 6.17,  # DJI Mavic Pro: 1/2.3" sensor, 6.17 x 4.55 mm
    "l1d-20c": 13.2,  # Hasselblad L1D-20c (DJI Mavic 2 Pro): 1" sensor, 13.2 x 8.8 mm
    "canon powershot elph 300 hs": 6.17,  # 1/2.3" sensor (its own EXIF: 4000 px / 16393.44 px/in = 6.20 mm)
}
"""Sensor width in mm by lower-cased EXIF ``Model``: the last resort for the focal length in pixels, used only when
the EXIF has neither ``FocalPlaneXResolution`` nor ``FocalLengthIn35mmFilm``. Only values that sources agree on are
listed (models whose published widths disagree, e.g. DJI FC3170, FC7303 and the senseFly S.O.D.A., are left out:
calibrate them, or pass ``--camera FILE.yaml``)."""


class PhotoError(SourceError):
    """A photo (or a photo folder) that cannot be read or lacks what the loop needs (position, time, intrinsics)."""


# ---------------------------------------------------------------------------------------------------- mounts
_IMAGE_TOP = {
    "forward": (1.0, 0.0, 0.0),
    "left": (0.0, 1.0, 0.0),
    "backward": (-1.0, 0.0, 0.0),
    "right": (0.0, -1.0, 0.0),
}


def mount_with_image_top(toward: str) -> Mount:
    """A nadir camera (optical axis = body -z) whose image top points ``toward`` the body's ``"forward"`` (nose:
    :data:`~calibration.geometry.NADIR_MOUNT`), ``"left"``, ``"backward"`` (tail) or ``"right"`` side: NADIR_MOUNT
    rotated about the optical axis by 0, 90, 180 or 270 degrees.

    Raises:
        PhotoError: ``toward`` is not one of those four names.
    """
    if toward not in _IMAGE_TOP:
        raise PhotoError(f"image top direction must be one of {sorted(_IMAGE_TOP)}, got {toward!r}")
    top = np.array(_IMAGE_TOP[toward])
    z = np.array([0.0, 0.0, -1.0])  # optical axis: straight down from the body
    y = -top  # camera y points down the image, away from its top
    x = np.cross(y, z)  # right-handed: x = y x z
    return Mount(np.column_stack([x, y, z]))


# ---------------------------------------------------------------------------------------------------- attitudes
_R_CAM2GIMBAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# columns: camera x (image right) = gimbal -y, camera y (image down) = gimbal -z, camera z (optical axis) = gimbal +x


def dji_gimbal_attitude(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> Attitude:
    """DJI gimbal angles (XMP ``GimbalYawDegree``, ``GimbalPitchDegree``, ``GimbalRollDegree``, degrees) -> the
    attitude of a virtual body that carries the camera with :data:`~calibration.geometry.NADIR_MOUNT`.

    Derivation. DJI gives the gimbal (= camera) orientation as aerospace Euler angles of a gimbal frame whose x axis is
    the optical axis: yaw = compass heading of the optical axis (clockwise from north), pitch = elevation of the
    optical axis (0 = horizon, -90 = nadir, positive up), roll = rotation about the optical axis (positive: image
    right side down). In the project's REP-103 terms the gimbal frame G (x optical axis, y left of the image, z image
    top) has ``R_G2world = Rz(yaw_from_heading(yaw)) @ Ry(-pitch) @ Rx(roll)``: positive aerospace pitch lifts the
    x axis, which is a negative REP-103 pitch (positive REP-103 pitch puts the nose down), and both conventions put
    the right side down for positive roll. The camera sits in G as ``R_cam2G`` (image right = -y_G, image down =
    -z_G, optical axis = +x_G). The body is then ``R_body2world = R_G2world @ R_cam2G @ NADIR_MOUNT.R_cam2body.T``,
    which, for roll = 0, is ``Rz(yaw) @ Ry(-(pitch + 90 deg))``: a nadir gimbal (pitch -90) is a level body whose
    nose (= image top) points along the gimbal yaw; a gimbal at -60 is the body pitched 30 deg nose up, so the
    optical axis (body -z) leans 30 deg towards the yaw direction. With a gimbal roll the exact matrix is converted
    back to roll/pitch/yaw (:meth:`Attitude.from_matrix`), so the camera orientation is reproduced exactly.
    """
    R_g2w = rotation_from_rpy(math.radians(roll_deg), -math.radians(pitch_deg), yaw_from_heading(math.radians(yaw_deg)))
    return Attitude.from_matrix(R_g2w @ _R_CAM2GIMBAL @ NADIR_MOUNT.R_cam2body.T)


# --- senseFly convention, measured on the Seneca swinglet CAM flight (runs/sensefly_convention.py) --------------------
SENSEFLY_IMAGE_TOP = "forward"
"""Where the image top points in the senseFly body: towards the nose (measured, see :func:`sensefly_attitude`)."""
SENSEFLY_ROLL_SIGN = 1.0
"""REP-103 roll = this * ``RollAngle``: senseFly's positive roll is right wing down, as REP-103's (measured)."""
SENSEFLY_PITCH_SIGN = -1.0
"""REP-103 pitch = this * ``PitchAngle``: senseFly's positive pitch is nose UP (aerospace), REP-103's nose down
(measured)."""
SENSEFLY_HEADING_SIGMA_DEG = 17.0
"""How far a senseFly XMP Heading scatters around the heading the images show (degrees; measured: +/-17, IQR 35).
Most of it is the crab (:data:`SENSEFLY_HEADING_IS_COURSE`): the Heading is the course over ground, the images show
where the nose points."""
SENSEFLY_HEADING_IS_COURSE = True
"""A senseFly XMP Heading is the course over ground, not where the nose points: measured on Seneca's 113 registered
consecutive pairs, the Heading minus the GPS course between the two photos has a median of -1.3 degrees and of -4
to +3 in every 30-degree bin of flight direction (robust sigma 12.7, the photos' GPS noise included), while the
pair's motion in the first camera's axes -- the crab into the wind -- is a median 31-40 degrees on the lines flown
south-east and 3-9 on those flown north-east and south-west (wind along those). An eBee has no magnetometer: its
autopilot's heading is the GPS track's. So a displacement between two photos points along the chord of their
Headings (:func:`runtime.mapping.photo_motion.pair_motion`: 5.9 degrees robust sigma from the GPS's), and the
camera's own yaw is the Heading less the crab."""
DJI_YAW_SIGMA_DEG = 5.0
"""How far a DJI gimbal's recorded yaw may be off (degrees; assumed from the compass's usual accuracy, not measured:
no real DJI file here)."""


def heading_is_course(photo: "PhotoMeta") -> bool:
    """Whether ``photo``'s recorded heading is its course over ground rather than where its nose points:
    senseFly's (:data:`SENSEFLY_HEADING_IS_COURSE`); DJI's gimbal and flight yaw are the compass's."""
    return photo.maker == "sensefly" and SENSEFLY_HEADING_IS_COURSE


def heading_sigma_deg(photo: "PhotoMeta") -> float | None:
    """How far ``photo``'s recorded heading may be off, degrees: :data:`SENSEFLY_HEADING_SIGMA_DEG` for senseFly,
    :data:`DJI_YAW_SIGMA_DEG` for DJI; None for a photo whose heading is no measurement (plain EXIF: from the GPS
    track)."""
    return {"sensefly": SENSEFLY_HEADING_SIGMA_DEG, "dji": DJI_YAW_SIGMA_DEG}.get(photo.maker)


#: the aligner's high-pass for real photos (LocalizerConfig ``align_highpass_m``, metres): vignetting, the sun's hotspot
#: and exposure gradients move with the camera; chosen on Seneca from 2 / 4 / 10 m at the held-out photos' own
#: positions (photos passing the aligner's gates 3 / 13 / 12 of 56, against 8 without)
PHOTO_HIGHPASS_M = 4.0
#: agreeing visual fixes before the camera counts as supporting the belief (TrackerConfig ``visual_confirm_frames``,
#: 3 for video): consecutive photos seconds apart look at different ground (Seneca's: 30 m apart, a third of the
#: footprint), so two of them are two independent checks, where three video frames a tenth of a second apart see
#: the same ground and can share the same wrong match; a third photo would come 5-6 s and 30 m later. Without GPS the
#: photo that initialises the belief is the first of the two when the displacement from it to the next photo was
#: measured (their images registered: :class:`~runtime.events.GroundMotion`; or step by step across photos without
#: candidates), else the next two photos must agree
PHOTO_CONFIRM_FRAMES = 2
SENSEFLY_MOUNT = mount_with_image_top(SENSEFLY_IMAGE_TOP)
"""The camera of a senseFly swinglet CAM in its body: nadir, image top towards the nose (equal to NADIR_MOUNT)."""


def sensefly_attitude(heading_deg: float, pitch_deg: float, roll_deg: float, *, roll_sign: float = SENSEFLY_ROLL_SIGN,
                      pitch_sign: float = SENSEFLY_PITCH_SIGN) -> Attitude:
    """senseFly XMP ``Heading`` (compass degrees, clockwise from north), ``PitchAngle``, ``RollAngle`` (degrees) ->
    the body :class:`Attitude` (REP-103, radians) that goes with :data:`SENSEFLY_MOUNT`:
    ``Attitude(roll=+RollAngle, pitch=-PitchAngle, yaw=yaw_from_heading(Heading))``.

    The convention is measured, not taken from a document. Experiment (``runs/sensefly_convention.py``; the test
    ``tests/runtime/sources/test_photos.py::test_sensefly_convention_on_real_pairs`` repeats it on 4 pairs): 40
    consecutive pairs of the Seneca swinglet CAM flight (Canon ELPH 300 HS, 63-77 m above ground, 40-60 % overlap;
    half of the pairs chosen for large roll changes, up to 24 deg), SIFT matches between the two photos (RANSAC
    homography inliers, the same points for every candidate), each matched pixel mapped to the flat ground as
    ``calibration.view.rectify`` maps it, under 16 candidates: image top towards nose / left wing / tail / right wing
    x roll sign x pitch sign. Per candidate, medians over the pairs:

    ===========================  =========  ============  ==========  ============
    candidate                    fit rms m  dist err m    resid m     head corr
    ===========================  =========  ============  ==========  ============
    nose, roll +, pitch -        **1.20**   **5.5**       **14.7**    -12 deg
    nose, roll -, pitch -        1.62       6.5           19.7        -9 deg
    nose, roll +, pitch +        2.83       8.2           20.9        -13 deg
    nose, roll -, pitch +        3.20       10.7          19.3        -10 deg
    tail, roll -, pitch +        1.20       5.5           65.0        138 deg
    left wing, roll -, pitch +   1.71       5.9           45.2        75 deg
    right wing, roll +, pitch -  1.71       5.9           55.9        -104 deg
    ===========================  =========  ============  ==========  ============

    ``fit rms``: RMS of a rigid 2-D fit between the two photos' ground points (free of GPS and heading: only the roll,
    pitch and mount shape them); ``dist err``: | fitted translation - GPS distance | (heading-invariant);
    ``resid``: distance between the two photos' ground points placed by GPS and the XMP heading, no fit;
    ``head corr``: the heading correction the images ask for. "Tail, roll -, pitch +" is the same camera turned
    180 deg about the vertical, so only the heading tells it apart, and it asks for 138 deg. The pitch sign is also
    what a fixed wing flies: ``PitchAngle`` is +5..+10 deg (nose up) in cruise. A first attempt, phase correlation
    of rectified 32 m windows at the GPS midpoint, found no correlation for any candidate (peak response ~0.05):
    the overlap is smaller than planned and the crop rows are periodic.

    Caveat (measured, not corrected): the XMP ``Heading`` scatters by about +/-17 deg (IQR 35 deg) around the
    heading the images give, with a median offset of -12 deg (images: the true heading is ~10 deg counter-clockwise
    of ``Heading``); its changes between photos correlate 0.85 with the images' rotations. Treat it as a noisy yaw.

    ``roll_sign`` and ``pitch_sign`` (+1 or -1) exist for that experiment; leave them at their defaults.
    """
    return Attitude(roll_sign * math.radians(roll_deg), pitch_sign * math.radians(pitch_deg),
                    yaw_from_heading(math.radians(heading_deg)))


def _specific_force(attitude: Attitude) -> tuple[float, float, float]:
    """Specific force (m/s^2, body FLU) of a body at rest in ``attitude``: ``R_body2world.T @ (0, 0, g)``."""
    return tuple(float(v) for v in attitude.R_body2world.T @ np.array([0.0, 0.0, GRAVITY_MPS2]))


# ---------------------------------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class PhotoMeta:
    """What one photo says about itself.

    Attributes:
        path: the file.
        t_ns: capture time, integer ns since the Unix epoch, UTC (see :func:`read_photo` for the clock used).
        lat, lon: WGS84 degrees (EXIF GPS, hemisphere references applied).
        alt_m: EXIF GPSAltitude in metres (negative below the reference when GPSAltitudeRef = 1); NaN when absent.
        height_m: height above ground, metres (DJI ``RelativeAltitude``: above the take-off point; senseFly
            ``Height``), or None when the file does not say.
        camera: intrinsics at the file's pixel size.
        attitude: body attitude (REP-103, radians) that with :attr:`mount` gives the camera orientation, or None.
        mount: the camera in the body.
        maker: ``"dji"``, ``"sensefly"`` or ``"exif"`` (no maker attitude).
        notes: assumptions and fallbacks taken for this photo.
        tilt_sigma_deg: 1-sigma of the attitude's roll and pitch, degrees, when it is known for this photo (its
            tilt taken from its images: :func:`runtime.mapping.attitude_check.images_tilt`); None: the survey's
            (:attr:`PhotoSurvey.attitude_sigma_deg`) or the loop's default.
        motion: the displacement since the photo before it, measured from the two photos' images
            (:func:`runtime.mapping.photo_motion.pair_motions`), yielded before this photo's frame; None: not
            measured.
    """

    path: Path
    t_ns: int
    lat: float
    lon: float
    alt_m: float
    height_m: float | None
    camera: CameraModel
    attitude: Attitude | None
    mount: Mount
    maker: str
    notes: tuple[str, ...] = ()
    tilt_sigma_deg: float | None = None
    motion: GroundMotion | None = None

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name

    @property
    def heading_deg(self) -> float | None:
        """Compass heading of the body x axis, degrees clockwise from north in [0, 360), or None without attitude."""
        return None if self.attitude is None else math.degrees(self.attitude.heading)

    @property
    def R_cam2world(self) -> np.ndarray | None:
        """float64[3, 3] camera (OpenCV) -> world (ENU) rotation, or None without attitude."""
        return None if self.attitude is None else self.attitude.R_body2world @ self.mount.R_cam2body


@dataclass(frozen=True)
class PhotoSurvey:
    """The readable photos of a folder in time order, and the files that were skipped.

    Attributes:
        photos: :class:`PhotoMeta` sorted by ``t_ns``, then file name.
        skipped: ``(path, reason)`` of every file that could not be used.
        notes: one line per skipped file and per survey-level assumption (heading from the GPS track).
        attitude_sigma_deg: how far the photos' recorded roll and pitch are off (degrees), when it was measured (a
            survey calibration's ``attitude_sigma_deg``, or the folder's own consecutive pairs:
            :func:`runtime.mapping.attitude_check.recorded_tilt_sigma_deg`); None: unknown. A photo whose tilt came
            from its images states its own (:attr:`PhotoMeta.tilt_sigma_deg`).
    """

    photos: tuple[PhotoMeta, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    notes: tuple[str, ...] = ()
    attitude_sigma_deg: float | None = None


# ---------------------------------------------------------------------------------------------------- EXIF helpers
def _num(value) -> float | None:
    """An EXIF number (int, float, IFDRational) -> finite float, else None."""
    try:
        f = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    s = str(value).replace("\x00", "").strip()
    return s or None


def _dms(value) -> float | None:
    """EXIF degrees/minutes/seconds (three rationals, or one number) -> decimal degrees."""
    if isinstance(value, (tuple, list)):
        parts = [_num(v) for v in value]
        if not parts or len(parts) > 3 or any(p is None for p in parts):
            return None
        return sum(p / 60.0**i for i, p in enumerate(parts))
    return _num(value)


_EXIF_DT = re.compile(r"^(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?$")


def _ns_of(dt: datetime, frac_ns: int = 0) -> int:
    """A timezone-aware datetime (whole seconds are used, microseconds too) + extra ns -> integer ns since the epoch."""
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000 + int(frac_ns)


def _fraction_ns(digits: str | None) -> int:
    """EXIF SubSecTime digits ("123" = 0.123 s) -> ns (0 when absent or not digits)."""
    if not digits or not digits.isdigit():
        return 0
    return int(round(int(digits) * 10 ** (9 - len(digits)))) if len(digits) <= 9 else int(digits[:9])


def _exif_datetime(text: str | None) -> tuple[datetime, int] | None:
    """'YYYY:MM:DD HH:MM:SS[.fff]' -> (naive datetime, fraction ns), or None."""
    if not text:
        return None
    m = _EXIF_DT.match(text.strip())
    if not m:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return None
    return dt, _fraction_ns(m.group(7)[1:] if m.group(7) else None)


_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _utc_offset(text: str | None) -> timedelta | None:
    """EXIF OffsetTime '+02:00' -> timedelta, or None."""
    m = _OFFSET.match(text.strip()) if text else None
    if not m:
        return None
    off = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return -off if m.group(1) == "-" else off


def _iso_utc(text: str | None) -> int | None:
    """ISO 8601 time ('2013-06-04T17:38:03', optional fraction, 'Z' or offset; no zone = UTC) -> ns, or None."""
    if not text:
        return None
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", s)
    if m:  # fromisoformat of Python 3.10 takes 3 or 6 fraction digits only
        s, frac_ns = m.group(1) + m.group(3), _fraction_ns(m.group(2))
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return _ns_of(dt, frac_ns)


# ---------------------------------------------------------------------------------------------------- XMP
def _xmp_fields(packet) -> tuple[dict[str, dict[str, str]], str | None]:
    """Parse an XMP packet safely -> ({namespace: {name: text}}, problem or None).

    Simple properties are read both as ``rdf:Description`` attributes (DJI's style) and as leaf elements (senseFly's
    style); structured properties (``rdf:Seq``, ``rdf:Alt``) are ignored.
    """
    if not packet:
        return {}, None
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    data = bytes(packet) if not isinstance(packet, str) else packet.encode("utf-8", "replace")
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        start = data.find(b"<rdf:RDF")
    end_tag = b"</x:xmpmeta>" if data[start:start + 10] == b"<x:xmpmeta" else b"</rdf:RDF>"
    end = data.find(end_tag, max(start, 0))
    if start >= 0 and end > start:
        data = data[start:end + len(end_tag)]
    try:
        root = fromstring(data)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        return {}, f"XMP packet unreadable ({type(exc).__name__}: {exc}); maker attitude ignored"
    out: dict[str, dict[str, str]] = {}

    def put(tag: str, value: str | None) -> None:
        if not tag.startswith("{") or value is None:
            return
        ns, _, name = tag[1:].partition("}")
        if ns == _NS_RDF or not value.strip():
            return
        out.setdefault(ns, {}).setdefault(name, value.strip())

    for el in root.iter():
        for key, value in el.attrib.items():
            put(key, value)
        if isinstance(el.tag, str) and len(el) == 0:
            put(el.tag, el.text)
    return out, None


def _xmp_float(fields: dict[str, str], name: str) -> float | None:
    v = fields.get(name)
    if v is None:
        return None
    try:
        f = float(v.strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------------------- cameras
def _camera_for(path: Path, width: int, height: int, exif: dict, model: str | None,
                camera: CameraModel | None) -> tuple[CameraModel, list[str]]:
    """Intrinsics at (width, height) px: the given camera (scaled), else from the EXIF (see :func:`read_photo`)."""
    notes: list[str] = []
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    if camera is not None:
        if not isinstance(camera, CameraModel):
            raise PhotoError(f"camera must be a calibration.camera.CameraModel, got {type(camera).__name__}")
        if (camera.width, camera.height) == (width, height):
            return camera, notes
        sx, sy = width / camera.width, height / camera.height
        if abs(sx / sy - 1.0) > 0.01:
            notes.append(f"the camera file is {camera.width}x{camera.height} px but {path.name} is {width}x{height} "
                         "px (another aspect ratio): intrinsics scaled per axis, which is only right for a resize")
        else:
            notes.append(f"camera intrinsics scaled from {camera.width}x{camera.height} to {width}x{height} px")
        return camera.scaled(sx, sy), notes
    from PIL import ExifTags

    B = ExifTags.Base
    f_mm = _num(exif.get(B.FocalLength))
    if f_mm is not None and f_mm <= 0:
        f_mm = None
    unit_mm = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}.get(int(_num(exif.get(B.FocalPlaneResolutionUnit)) or 2))
    res_x = _num(exif.get(B.FocalPlaneXResolution))
    res_y = _num(exif.get(B.FocalPlaneYResolution))
    full_w = _num(exif.get(B.ExifImageWidth))
    full_h = _num(exif.get(B.ExifImageHeight))
    if f_mm is not None and res_x and res_x > 0 and unit_mm is not None:
        if not full_w or full_w <= 0:
            full_w = float(width)
            notes.append("EXIF has no ExifImageWidth: FocalPlaneXResolution taken at the file's own width")
        if not full_h or full_h <= 0:
            full_h = full_w * height / width
        fx = f_mm * res_x / unit_mm * width / full_w
        fy = f_mm * res_y / unit_mm * height / full_h if res_y and res_y > 0 else fx
        if abs(fy / fx - 1.0) > 0.02:  # inconsistent Y resolution (or a crop): keep square pixels
            fy = fx
        return CameraModel(width, height, fx, fy, cx, cy), notes
    f35 = _num(exif.get(B.FocalLengthIn35mmFilm))
    if f35 is not None and f35 > 0:
        f = f35 * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
        notes.append(f"focal length from FocalLengthIn35mmFilm {f35:g} mm by the diagonal equivalence "
                     f"(43.27 mm full-frame diagonal; square pixels assumed): {f:.1f} px")
        return CameraModel(width, height, f, f, cx, cy), notes
    sensor = SENSOR_WIDTH_MM.get((model or "").strip().lower())
    if sensor is not None and f_mm is not None:
        f = f_mm * width / sensor
        notes.append(f"focal length from FocalLength {f_mm:g} mm and the {sensor:g} mm sensor width of {model}: "
                     f"{f:.1f} px")
        return CameraModel(width, height, f, f, cx, cy), notes
    missing = []
    if f_mm is None:
        missing.append("FocalLength")
    missing.append("FocalPlaneXResolution")
    missing.append("FocalLengthIn35mmFilm")
    raise PhotoError(
        f"{path}: cannot tell the camera's focal length in pixels: the EXIF has no {', no '.join(missing)}, and the "
        f"camera model {model!r} is not in the table of known sensors; pass a camera file with --camera FILE.yaml "
        "(`skyfix calibrate`)"
    )


# ---------------------------------------------------------------------------------------------------- read_photo
def read_photo(path, *, camera: CameraModel | None = None) -> PhotoMeta:
    """Read the metadata of one photo (no pixel is decoded).

    Args:
        path: a JPEG or TIFF file.
        camera: calibrated intrinsics; they win over the EXIF (scaled to the file's size when they differ).
    Returns:
        :class:`PhotoMeta`. Its fields come from:

        * ``t_ns``: ``DateTimeOriginal`` (+ ``SubSecTimeOriginal``) shifted to UTC by ``OffsetTimeOriginal`` when
          present; otherwise the maker's UTC time (senseFly ``UTCTime``, whose seconds are the autopilot's
          GPS-derived UTC; the camera's own clock is local time and drifts); otherwise the EXIF GPS time
          (``GPSDateStamp`` + ``GPSTimeStamp``, UTC by definition); otherwise ``DateTimeOriginal`` taken as UTC
          (with a note).
        * ``lat``, ``lon``, ``alt_m``: the EXIF GPS block (N/S, E/W and GPSAltitudeRef applied).
        * ``height_m``: DJI ``drone-dji:RelativeAltitude`` (e.g. ``"+40.20"``), senseFly ``Height``; else None.
        * ``camera``: ``camera`` if given; else ``FocalLength`` (mm) with ``FocalPlaneXResolution`` /
          ``FocalPlaneResolutionUnit`` (pixels per inch/cm/mm at ``ExifImageWidth``), scaled to the file's real
          width (survey photos are often downscaled while the EXIF keeps the sensor size); else
          ``FocalLengthIn35mmFilm`` by the diagonal equivalence ``f_px = f35 * hypot(w, h) / 43.27 mm``; else
          ``FocalLength`` with the sensor width of :data:`SENSOR_WIDTH_MM` by EXIF ``Model``. Principal point at the
          image centre, no distortion.
        * ``attitude``, ``mount``, ``maker``: see the module docstring (:func:`dji_gimbal_attitude`,
          :func:`sensefly_attitude`); plain EXIF: None, NADIR_MOUNT, ``"exif"``.
    Raises:
        PhotoError: not a readable image, no EXIF GPS position, no capture time, an EXIF Orientation other than 1
        (rotated storage is not supported), or no way to tell the focal length (the message names the missing tags
        and the ``--camera FILE.yaml`` fix).
    """
    from PIL import ExifTags, Image, UnidentifiedImageError

    p = Path(path)
    notes: list[str] = []
    try:
        with Image.open(p) as im:
            width, height = im.size
            exif_all = im.getexif()
            exif = dict(exif_all.get_ifd(ExifTags.IFD.Exif))
            gps = dict(exif_all.get_ifd(ExifTags.IFD.GPSInfo))
            top = dict(exif_all)
            xmp = im.info.get("xmp")
            if xmp is None and hasattr(im, "tag_v2"):  # TIFF: XMLPacket tag 700
                xmp = im.tag_v2.get(700)
    except FileNotFoundError as exc:
        raise PhotoError(f"{p}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise PhotoError(f"{p}: not an image Pillow can read (expected a JPEG or TIFF photo)") from exc
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise PhotoError(f"{p}: unreadable image or EXIF ({type(exc).__name__}: {exc})") from exc
    B, G = ExifTags.Base, ExifTags.GPS
    orientation = _num(top.get(B.Orientation))
    if orientation not in (None, 1.0):
        raise PhotoError(f"{p}: EXIF Orientation {orientation:g} (pixels stored rotated or mirrored) is not supported; "
                         "survey cameras store Orientation 1: re-save the photo without rotation")
    fields, problem = _xmp_fields(xmp)
    if problem:
        notes.append(problem)
    dji, sf = fields.get(NS_DJI, {}), fields.get(NS_SENSEFLY, {})

    # position
    lat, lon = _dms(gps.get(G.GPSLatitude)), _dms(gps.get(G.GPSLongitude))
    if lat is None or lon is None:
        raise PhotoError(f"{p}: no GPS position in the EXIF (GPSLatitude/GPSLongitude missing); a photo source needs "
                         "geotagged photos")
    if (_text(gps.get(G.GPSLatitudeRef)) or "N").upper().startswith("S"):
        lat = -lat
    if (_text(gps.get(G.GPSLongitudeRef)) or "E").upper().startswith("W"):
        lon = -lon
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise PhotoError(f"{p}: EXIF GPS position out of range: lat {lat}, lon {lon}")
    alt = _num(gps.get(G.GPSAltitude))
    if alt is None:
        alt = math.nan
        notes.append("no GPSAltitude in the EXIF: alt_m is NaN")
    else:
        ref = gps.get(G.GPSAltitudeRef)
        ref = ref[0] if isinstance(ref, bytes) and ref else ref
        if _num(ref) == 1:
            alt = -alt

    # time
    dto = _exif_datetime(_text(exif.get(B.DateTimeOriginal)))
    sub_ns = _fraction_ns(_text(exif.get(B.SubsecTimeOriginal)))
    offset = _utc_offset(_text(exif.get(B.OffsetTimeOriginal)))
    maker_utc = _iso_utc(sf.get("UTCTime")) if sf else None
    t_ns = None
    if dto is not None and offset is not None:
        t_ns = _ns_of((dto[0] - offset).replace(tzinfo=timezone.utc), dto[1] or sub_ns)
    elif maker_utc is not None:
        t_ns = maker_utc
    else:
        gdate = _exif_datetime((_text(gps.get(G.GPSDateStamp)) or "") + " 00:00:00")
        gtime = gps.get(G.GPSTimeStamp)
        hms = [_num(v) for v in gtime] if isinstance(gtime, (tuple, list)) and len(gtime) == 3 else None
        if gdate is not None and hms and all(v is not None for v in hms):
            secs = hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
            t_ns = _ns_of(gdate[0].replace(tzinfo=timezone.utc)) + int(round(secs * 1e9))
            notes.append("capture time from the EXIF GPS time stamp (UTC)")
        elif dto is not None:
            t_ns = _ns_of(dto[0].replace(tzinfo=timezone.utc), dto[1] or sub_ns)
            notes.append("DateTimeOriginal has no OffsetTimeOriginal and no UTC time is known: it is taken as UTC")
    if t_ns is None:
        raise PhotoError(f"{p}: no capture time (EXIF DateTimeOriginal, maker UTC time or GPS time stamp)")

    model = _text(top.get(B.Model))
    cam, cam_notes = _camera_for(p, width, height, exif, model, camera)
    notes.extend(cam_notes)

    # attitude, height
    attitude: Attitude | None = None
    mount = NADIR_MOUNT
    height_m: float | None = None
    if dji and ("GimbalPitchDegree" in dji or "RelativeAltitude" in dji):
        maker = "dji"
        height_m = _xmp_float(dji, "RelativeAltitude")
        gy, gp = _xmp_float(dji, "GimbalYawDegree"), _xmp_float(dji, "GimbalPitchDegree")
        gr = _xmp_float(dji, "GimbalRollDegree")
        if gy is not None and gp is not None:
            attitude = dji_gimbal_attitude(gy, gp, 0.0 if gr is None else gr)
        else:
            notes.append("DJI XMP without GimbalYawDegree/GimbalPitchDegree: no attitude")
        if height_m is not None:
            notes.append("height_m is DJI RelativeAltitude: the height above the take-off point")
    elif sf and "Heading" in sf:
        maker = "sensefly"
        height_m = _xmp_float(sf, "Height")
        heading = _xmp_float(sf, "Heading")
        pitch, roll = _xmp_float(sf, "PitchAngle"), _xmp_float(sf, "RollAngle")
        if heading is not None:
            if pitch is None or roll is None:
                notes.append("senseFly XMP without PitchAngle/RollAngle: taken as 0")
            attitude = sensefly_attitude(heading, pitch or 0.0, roll or 0.0)
            mount = SENSEFLY_MOUNT
        if maker_utc is None and sf.get("UTCTime"):
            notes.append(f"senseFly UTCTime {sf['UTCTime']!r} unreadable")
    else:
        maker = "exif"
        notes.append("no maker attitude (DJI or senseFly XMP): heading from the GPS track, roll = pitch = 0")
    if height_m is not None and not height_m > 0:
        notes.append(f"height above ground {height_m:g} m is not positive: ignored")
        height_m = None
    return PhotoMeta(p, int(t_ns), float(lat), float(lon), float(alt), height_m, cam, attitude, mount, maker,
                     tuple(notes))


# ---------------------------------------------------------------------------------------------------- folders
def _photo_files(folder_or_paths) -> tuple[list[Path], str]:
    """Candidate files (photo extensions, not recursive) and a description of where they came from."""
    if isinstance(folder_or_paths, (str, os.PathLike)):
        folder = Path(folder_or_paths)
        if not folder.exists():
            raise PhotoError(f"photo folder {folder} does not exist")
        if folder.is_file():
            return [folder], str(folder)
        entries = sorted(folder.iterdir())
        files = [e for e in entries if e.is_file() and e.suffix.lower() in PHOTO_EXTENSIONS]
        if not files:
            others = sum(1 for e in entries if e.is_file())
            raise PhotoError(
                f"no photos in {folder}: no {'/'.join(PHOTO_EXTENSIONS)} file directly inside it ({others} other "
                f"file(s), {sum(1 for e in entries if e.is_dir())} folder(s); folders are not searched)"
            )
        return files, str(folder)
    try:
        files = [Path(x) for x in folder_or_paths]
    except TypeError as exc:
        raise PhotoError(f"give a folder or a list of photo paths, got {type(folder_or_paths).__name__}") from exc
    if not files:
        raise PhotoError("no photo paths given")
    return files, f"{len(files)} given path(s)"


def _bearings(photos: Sequence[PhotoMeta], min_dist_m: float = 1.0) -> list[float | None]:
    """Compass bearing (radians) of the GPS track at each photo: previous -> next (central), one-sided at the ends;
    None where the two positions are less than ``min_dist_m`` apart."""
    from maps.geodesy import LocalFrame

    n = len(photos)
    if n < 2:
        return [None] * n
    frame = LocalFrame(photos[0].lat, photos[0].lon)
    x, y = (np.asarray(v, dtype=float) for v in frame.to_local([p.lat for p in photos], [p.lon for p in photos]))
    out: list[float | None] = []
    for i in range(n):
        a, b = max(i - 1, 0), min(i + 1, n - 1)
        dx, dy = x[b] - x[a], y[b] - y[a]
        out.append(math.atan2(dx, dy) if math.hypot(dx, dy) >= min_dist_m else None)
    return out


def read_photo_folder(folder_or_paths, *, camera: CameraModel | None = None) -> PhotoSurvey:
    """Read every photo (``.jpg``/``.jpeg``/``.tif``/``.tiff``, any case, not recursive) of a folder, or the given
    paths, sorted by capture time then file name.

    Files that cannot be used (not an image, no GPS, no time, corrupt EXIF, unknown camera) are skipped and listed
    in :attr:`PhotoSurvey.skipped` and :attr:`PhotoSurvey.notes`. Photos without a maker attitude get one from the
    GPS track (heading = bearing from the previous to the next photo, one-sided at the ends, roll = pitch = 0, nadir
    camera with the image top along the track); where the neighbours are less than 1 m apart they keep None.

    Raises:
        PhotoError: the folder does not exist, holds no photo file, or none of its photos is usable (the message
            says what was found and the first reasons).
    """
    files, where = _photo_files(folder_or_paths)
    photos: list[PhotoMeta] = []
    skipped: list[tuple[Path, str]] = []
    for f in files:
        try:
            photos.append(read_photo(f, camera=camera))
        except PhotoError as exc:
            skipped.append((f, str(exc)))
    if not photos:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3])
        raise PhotoError(f"no usable photo in {where}: {len(files)} file(s) found, all skipped ({reasons}"
                         + (", ..." if len(skipped) > 3 else "") + ")")
    photos.sort(key=lambda m: (m.t_ns, m.name))
    notes = [f"skipped {p.name}: {r}" for p, r in skipped]
    if any(m.attitude is None and m.maker == "exif" for m in photos):
        bearings = _bearings(photos)
        n_track = n_none = 0
        for i, m in enumerate(photos):
            if m.attitude is not None or m.maker != "exif":
                continue
            b = bearings[i]
            if b is None:
                n_none += 1
                photos[i] = replace(m, notes=m.notes + ("neighbours less than 1 m apart: no heading, no attitude",))
            else:
                n_track += 1
                photos[i] = replace(m, attitude=Attitude(0.0, 0.0, yaw_from_heading(b)),
                                    notes=m.notes + ("heading from the GPS track; roll = pitch = 0 assumed; "
                                                     "image top assumed along the track",))
        notes.append(f"{n_track} photo(s) without maker attitude: heading from the GPS track (previous -> next "
                     f"photo), roll = pitch = 0, nadir camera with the image top along the track"
                     + (f"; {n_none} without attitude (neighbours < 1 m apart)" if n_none else ""))
    return PhotoSurvey(tuple(photos), tuple(skipped), tuple(notes))


def is_photo_folder(path) -> bool:
    """True when ``path`` is a directory holding at least one photo file (by extension only: a cheap check for the
    CLI to choose this source over a bag)."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        return any(e.is_file() and e.suffix.lower() in PHOTO_EXTENSIONS for e in p.iterdir())
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------- source
ROLES = ("camera", "camera_info", "gps", "imu")
_ALTITUDES = ("relative", "gps")
_ATTITUDE_MAKERS = ("dji", "sensefly")  # photos whose attitude is measured (maker XMP), not assumed


class PhotoFolder:
    """A folder of geotagged photos replayed as events, with the surface of :class:`runtime.bags.BagReader` that
    ``runtime/cli/replay.py`` uses.

    Args:
        folder_or_paths: a folder (its photos, not recursive) or a list of photo paths (ignored with ``survey``).
        survey: photos already read (:func:`read_photo_folder`), e.g. with their positions corrected by a
            calibrated camera-to-GPS offset; None: read ``folder_or_paths``.
        camera: calibrated intrinsics (win over the EXIF; scaled to each photo's size).
        gps_sigma_m: horizontal 1-sigma (metres) given to each :class:`~runtime.events.GpsFix`; the covariance is
            ``diag(s^2, s^2, (2 s)^2)``.
        gps: where the fixes come from; ``"exif"`` (the EXIF GPS block) is the only source so far.
        altitude: what the GpsFix ``alt`` holds. The loop takes the height above ground as
            ``GpsFix.alt - map.ground_elevation_m`` (:class:`runtime.ground_view.HeightKeeper`), and the maps built
            from orthophotos keep ``ground_elevation_m = 0`` unless told otherwise (``skyfix maps build
            --ground-elevation``), which the photos' ground is not. ``"relative"``: ``alt`` = the photo's height above
            ground (:meth:`height_of`), so with such a map the loop uses the right height (every photo must have
            one). ``"gps"``: ``alt`` = the EXIF GPS altitude, right only with a map whose ``ground_elevation_m`` is
            the ground's altitude in the same datum. None (default): ``"relative"`` when every photo has a height
            above ground, else ``"gps"``; a note says which.

    Raises:
        PhotoError: see :func:`read_photo_folder`; also a bad option, or ``altitude="relative"`` with photos that
        have no height above ground.
    """

    def __init__(self, folder_or_paths, *, camera: CameraModel | None = None, gps_sigma_m: float = 5.0,
                 gps: str = "exif", altitude: str | None = None, survey: PhotoSurvey | None = None) -> None:
        if gps != "exif":
            raise PhotoError(f"gps must be 'exif' (the EXIF GPS block of each photo), got {gps!r}")
        s = _num(gps_sigma_m)
        if isinstance(gps_sigma_m, bool) or s is None or s <= 0:
            raise PhotoError(f"gps_sigma_m must be a finite number of metres > 0, got {gps_sigma_m!r}")
        if altitude is not None and altitude not in _ALTITUDES:
            raise PhotoError(f"altitude must be 'relative', 'gps' or None (automatic), got {altitude!r}")
        # survey: photos already read (and, e.g., their positions corrected by a calibrated camera offset)
        self.survey = survey if survey is not None else read_photo_folder(folder_or_paths, camera=camera)
        self.gps_sigma_m = float(s)
        self.gps = gps
        photos = self.survey.photos
        notes = list(self.survey.notes)
        all_heights = all(m.height_m is not None for m in photos)
        if altitude is None:
            altitude = "relative" if all_heights else "gps"
            notes.append(
                "GPS fix altitude = the photos' height above ground (maker XMP): the loop takes alt - the map's "
                "ground_elevation_m as the height, so use a map with ground elevation 0"
                if altitude == "relative" else
                "GPS fix altitude = the EXIF GPS altitude (not every photo has a height above ground): the map's "
                "ground_elevation_m must be the ground's altitude in the same datum, or pass --height"
            )
        elif altitude == "relative" and not all_heights:
            missing = [m.name for m in photos if m.height_m is None]
            raise PhotoError(f"altitude='relative' needs a height above ground in every photo; {len(missing)} have "
                             f"none (e.g. {', '.join(missing[:3])}); use altitude='gps'")
        self.altitude = altitude
        makers = sorted({m.maker for m in photos})
        notes.append(f"{len(photos)} photo(s) ({', '.join(makers)}), {len(self.survey.skipped)} skipped")
        if "sensefly" in makers:
            notes.append("senseFly attitude: yaw from Heading, REP-103 roll = RollAngle, pitch = -PitchAngle; camera "
                         "nadir with the image top towards the nose (measured convention); the Heading scatters "
                         "by about +/-17 deg around the heading the images show")
        if "dji" in makers:
            notes.append("DJI attitude: the gimbal's (GimbalYaw/Pitch/RollDegree) as a virtual body with a nadir mount")
        if any(m.maker in _ATTITUDE_MAKERS for m in photos):
            notes.append("IMU samples carry the photo attitude with zero rates and the specific force of a body at "
                         "rest (a photo carries no acceleration)")
        mounts = {m.mount for m in photos if m.maker in _ATTITUDE_MAKERS}
        if len(mounts) > 1:
            notes.append("photos with different camera mounts: the loop gets the first photo's (PhotoFolder.mount)")
        self.notes: list[str] = notes
        self.selection: dict[str, str | None] = {
            "camera": "photos",
            "camera_info": "exif",
            "gps": "exif",
            "imu": "xmp attitude" if any(m.maker in _ATTITUDE_MAKERS for m in photos) else None,
        }

    def loop_settings(self) -> dict:
        """Localizer settings these photos imply (:class:`runtime.localizer.LocalizerConfig` keys): ``imu_accel``
        False when they carry an attitude (no acceleration is measured), ``attitude_yaw_sigma_deg`` 17 for senseFly
        photos (their Heading scatters by about that around the heading their images show, measured on the Seneca
        flight), ``attitude_sigma_deg`` when it is known how far the photos' recorded attitude is off
        (:attr:`PhotoSurvey.attitude_sigma_deg`: each visual fix then carries the nadir shift that error makes;
        photos whose tilt came from their images state their own with each sample), ``height_m`` the median height
        above ground of the photos (what the loop assumes until a GPS altitude comes: with the GPS cut or absent, the
        autopilot's barometric height), ``align_highpass_m`` (:data:`PHOTO_HIGHPASS_M`: real photometry, see
        :class:`runtime.align.FineAligner`), and the tracker's ``visual_confirm_frames``
        (:data:`PHOTO_CONFIRM_FRAMES`)."""
        out: dict = {}
        if self.selection.get("imu"):
            # the IMU samples carry the photos' attitude only: their (static) specific force is no measurement, and
            # integrating it would hold the velocity through the turns between flight lines
            out["imu_accel"] = False
        if any(m.maker == "sensefly" for m in self.photos):
            out["attitude_yaw_sigma_deg"] = SENSEFLY_HEADING_SIGMA_DEG
        if self.survey.attitude_sigma_deg is not None:
            out["attitude_sigma_deg"] = float(self.survey.attitude_sigma_deg)
        heights = [m.height_m for m in self.photos if m.height_m is not None]
        if heights:
            out["height_m"] = float(np.median(heights))
        out["align_highpass_m"] = PHOTO_HIGHPASS_M
        out["tracker"] = {"visual_confirm_frames": PHOTO_CONFIRM_FRAMES}
        return out

    # ------------------------------------------------------------------ lifecycle (nothing stays open)
    def open(self) -> "PhotoFolder":
        return self

    def close(self) -> None:
        return None

    def __enter__(self) -> "PhotoFolder":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata
    @property
    def photos(self) -> tuple[PhotoMeta, ...]:
        """The usable photos in time order."""
        return self.survey.photos

    @property
    def skipped(self) -> tuple[tuple[Path, str], ...]:
        """``(path, reason)`` of the files that were skipped."""
        return self.survey.skipped

    @property
    def start_ns(self) -> int:
        return self.photos[0].t_ns

    @property
    def end_ns(self) -> int:
        return self.photos[-1].t_ns

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def mount(self) -> Mount:
        """The camera mount the loop must use with the IMU attitudes (``Localizer(..., mount=...)``): the first
        photo's with an attitude (NADIR_MOUNT for DJI and plain EXIF, :data:`SENSEFLY_MOUNT` for senseFly)."""
        for m in self.photos:
            if m.attitude is not None:
                return m.mount
        return NADIR_MOUNT

    @property
    def truth_height_m(self) -> tuple[float | None, ...]:
        """Per photo (time order), the maker's height above ground in metres (None where unknown)."""
        return tuple(m.height_m for m in self.photos)

    def height_of(self, photo: PhotoMeta) -> float | None:
        """The relative height (above ground, metres) of ``photo``, or None when its file does not say."""
        return photo.height_m

    def first_camera(self) -> CameraModel | None:
        """Intrinsics of the first photo."""
        return self.photos[0].camera

    # ------------------------------------------------------------------ events
    def events(self, *, roles=None, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator:
        """Yield, per photo in time order: its :attr:`PhotoMeta.motion` where it has one (role ``camera``: a
        :class:`~runtime.events.GroundMotion` from the photo before, first, as the prediction the photo's GPS fix and
        frame then correct), an :class:`~runtime.events.ImuSample` at the photo time (role ``imu``,
        photos with a maker attitude (DJI, senseFly): orientation = the body attitude, zero angular velocity, linear
        acceleration = the specific force at rest ``R_body2world.T @ (0, 0, 9.80665)`` m/s^2, since a photo carries
        no acceleration; ``tilt_sigma_rad`` from :attr:`PhotoMeta.tilt_sigma_deg`; the heading-from-track
        attitude of plain EXIF photos is an assumption, not a measurement, so the loop gets no IMU sample for it
        and keeps its own no-IMU handling of the unknown tilt),
        a :class:`~runtime.events.GpsFix` (role ``gps``: lat, lon, alt per :attr:`altitude`, ``cov_enu`` =
        ``diag(s^2, s^2, (2 s)^2)``, topic ``"exif"``) and the :class:`~runtime.events.Frame` (role ``camera``: the
        file's bytes, decoded on first use; camera = the photo's intrinsics; topic ``"photos"``; frame_id = the file
        name). Role ``camera_info`` yields nothing of its own: each Frame carries its intrinsics.

        Args:
            roles: subset of ``("camera", "camera_info", "gps", "imu")`` (default all).
            start_ns, stop_ns: photo times kept: ``start_ns <= t_ns < stop_ns`` (None: unbounded).
        Raises:
            PhotoError: an unknown role, or a photo file that cannot be read any more.
        """
        roles = tuple(ROLES if roles is None else roles)
        bad = sorted(set(roles) - set(ROLES))
        if bad:
            raise PhotoError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
        s = self.gps_sigma_m
        cov = np.diag([s * s, s * s, 4.0 * s * s])
        for m in self.photos:
            if (start_ns is not None and m.t_ns < start_ns) or (stop_ns is not None and m.t_ns >= stop_ns):
                continue
            if "camera" in roles and m.motion is not None:
                yield m.motion  # first: the motion since the photo before is the prediction this photo's fixes correct
            if "imu" in roles and m.attitude is not None and m.maker in _ATTITUDE_MAKERS:
                yield ImuSample(m.t_ns, m.attitude.to_quaternion(), (0.0, 0.0, 0.0), _specific_force(m.attitude),
                                topic="xmp", frame_id=m.name,
                                tilt_sigma_rad=None if m.tilt_sigma_deg is None else math.radians(m.tilt_sigma_deg))
            if "gps" in roles:
                alt = m.height_m if self.altitude == "relative" else m.alt_m
                yield GpsFix(m.t_ns, m.lat, m.lon, float(alt), cov, topic="exif", frame_id=m.name)
            if "camera" in roles:
                try:
                    data = m.path.read_bytes()
                except OSError as exc:
                    raise PhotoError(f"cannot read {m.path} any more: {exc}") from exc
                yield Frame(m.t_ns, data, m.camera, topic="photos", frame_id=m.name)
