"""runtime.sources.photos: geotagged photo folders as a source.

Real data: the Seneca senseFly swinglet CAM survey (167 photos, ``real/seneca/images`` under ``$SKYFIX_DATA``):
every metadata field of IMG_0446.jpg, the whole folder, and the measured senseFly convention (mount, roll and pitch
signs) re-checked on 4 real pairs. There is no real DJI file in the data: the DJI gimbal convention is tested on a
synthetic JPEG (real JPEG written by Pillow, an EXIF GPS block through Pillow's Exif object, an XMP packet in its own
APP1 segment). Errors, plain-EXIF photos (heading from the GPS track) and the PhotoFolder event stream close it.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude
from runtime.events import Frame, GpsFix, GroundMotion, ImuSample
from runtime.sources import SourceError
from runtime.sources.photos import (
    SENSEFLY_IMAGE_TOP,
    SENSEFLY_PITCH_SIGN,
    SENSEFLY_ROLL_SIGN,
    PhotoError,
    PhotoFolder,
    dji_gimbal_attitude,
    is_photo_folder,
    mount_with_image_top,
    read_photo,
    read_photo_folder,
    sensefly_attitude,
)

PIL = pytest.importorskip("PIL")
from PIL import ExifTags, Image  # noqa: E402
from PIL.TiffImagePlugin import IFDRational  # noqa: E402

SENECA = "real/seneca/images"


def _utc_ns(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
def seneca(shared_data) -> Path:
    return shared_data(SENECA)


# ============================================================================================ synthetic photos
def _dms(deg: float):
    deg = abs(deg)
    d = int(deg)
    m = int((deg - d) * 60)
    s = round(((deg - d) * 60 - m) * 60, 4)
    return (IFDRational(d, 1), IFDRational(m, 1), IFDRational(int(round(s * 10000)), 10000))


def _with_xmp(jpeg: bytes, xmp: str) -> bytes:
    """Insert an XMP APP1 segment after the JPEG's APPn segments (works whatever Pillow's save supports)."""
    seg = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode("utf-8")
    app1 = b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg
    i = 2
    while jpeg[i] == 0xFF and 0xE0 <= jpeg[i + 1] <= 0xEF:
        i += 2 + struct.unpack(">H", jpeg[i + 2:i + 4])[0]
    return jpeg[:i] + app1 + jpeg[i:]


def make_jpeg(path: Path, *, size=(160, 120), lat=47.3765, lon=8.4875, alt=520.5, gps=True,
              dto="2024:05:01 12:00:00", subsec=None, offset=None, model="FC6310", make="DJI",
              focal_mm=8.8, f35=24, xmp: str | None = None) -> Path:
    """A real JPEG with an EXIF block (Exif IFD, optional GPS IFD) and an optional XMP packet."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ex = Image.Exif()
    if make:
        ex[ExifTags.Base.Make] = make
    if model:
        ex[ExifTags.Base.Model] = model
    e = ex.get_ifd(ExifTags.IFD.Exif)
    if dto:
        e[ExifTags.Base.DateTimeOriginal] = dto
    if subsec:
        e[ExifTags.Base.SubsecTimeOriginal] = subsec
    if offset:
        e[ExifTags.Base.OffsetTimeOriginal] = offset
    if focal_mm:
        e[ExifTags.Base.FocalLength] = IFDRational(int(round(focal_mm * 100)), 100)
    if f35:
        e[ExifTags.Base.FocalLengthIn35mmFilm] = int(f35)
    if gps:
        g = ex.get_ifd(ExifTags.IFD.GPSInfo)
        g[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        g[ExifTags.GPS.GPSLatitude] = _dms(lat)
        g[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        g[ExifTags.GPS.GPSLongitude] = _dms(lon)
        g[ExifTags.GPS.GPSAltitude] = IFDRational(int(round(abs(alt) * 100)), 100)
        g[ExifTags.GPS.GPSAltitudeRef] = b"\x01" if alt < 0 else b"\x00"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=ex, quality=90)
    data = buf.getvalue()
    if xmp is not None:
        data = _with_xmp(data, xmp)
    path.write_bytes(data)
    return path


def dji_xmp(yaw: float, pitch: float, roll: float = 0.0, rel_alt: str = "+40.20") -> str:
    return (
        "<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>"
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:drone-dji='http://www.dji.com/drone-dji/1.0/' "
        f"drone-dji:AbsoluteAltitude='+520.50' drone-dji:RelativeAltitude='{rel_alt}' "
        f"drone-dji:GimbalRollDegree='{roll:+.2f}' drone-dji:GimbalYawDegree='{yaw:+.2f}' "
        f"drone-dji:GimbalPitchDegree='{pitch:+.2f}' drone-dji:FlightRollDegree='+1.00' "
        "drone-dji:FlightYawDegree='+12.00' drone-dji:FlightPitchDegree='-3.00'/>"
        "</rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
    )


# ============================================================================================ real senseFly photos
def test_read_real_sensefly_photo_every_field(seneca):
    m = read_photo(seneca / "IMG_0446.jpg")
    assert m.maker == "sensefly"
    assert m.lat == pytest.approx(41.0346708, abs=1e-7)
    assert m.lon == pytest.approx(-83.3057253, abs=1e-7)
    assert m.alt_m == pytest.approx(281.69, abs=0.01)
    assert m.height_m == pytest.approx(66.11, abs=0.01)
    # time: the XMP UTCTime 2013-06-04T17:38:03 (the camera's EXIF clock says 13:37:29 local time)
    assert m.t_ns == _utc_ns(2013, 6, 4, 17, 38, 3)
    # camera: 4.3 mm / (25.4 / 16393.44 mm/px) at 4000 px, scaled to the real 1200 px
    fx = 4.3 / (25.4 / 16393.44262295082) * 1200 / 4000
    cam = m.camera
    assert (cam.width, cam.height) == (1200, 900)
    assert cam.fx == pytest.approx(fx, rel=1e-9) and cam.fx == pytest.approx(832.6, abs=0.05)
    assert cam.fy == pytest.approx(fx, rel=1e-9)
    assert (cam.cx, cam.cy) == (599.5, 449.5) and cam.distortion == ()
    # attitude: heading 70.06 deg, roll -2.93 deg (REP-103 as is), pitch 2.56 deg nose up (REP-103: -2.56)
    assert m.heading_deg == pytest.approx(70.0620575, abs=1e-6)
    assert math.degrees(m.attitude.roll) == pytest.approx(-2.933370113, abs=1e-6)
    assert math.degrees(m.attitude.pitch) == pytest.approx(-2.563315153, abs=1e-6)
    assert m.mount == NADIR_MOUNT == mount_with_image_top("forward")
    assert m.notes == ()
    # two more photos of the flight
    a, b = read_photo(seneca / "IMG_0447.jpg"), read_photo(seneca / "IMG_0448.jpg")
    assert m.t_ns < a.t_ns < b.t_ns
    for p in (a, b):
        assert p.maker == "sensefly" and 60 < p.height_m < 80 and 280 < p.alt_m < 300
        assert abs(p.lat - m.lat) < 0.001 and abs(p.lon - m.lon) < 0.001
        assert p.camera == m.camera


def test_read_real_folder(seneca):
    survey = read_photo_folder(seneca)
    assert len(survey.photos) == 167 and survey.skipped == () and survey.notes == ()
    t = np.array([p.t_ns for p in survey.photos])
    dt = np.diff(t) / 1e9
    assert np.all(dt > 0)  # strictly increasing
    assert 4.0 <= np.median(dt) <= 7.0
    assert {p.maker for p in survey.photos} == {"sensefly"}
    assert all(p.attitude is not None and 60 < p.height_m < 80 for p in survey.photos)
    assert is_photo_folder(seneca) and not is_photo_folder(seneca / "IMG_0446.jpg")


# ============================================================================================ the senseFly convention
def _sift_matches(cv2, a: Path, b: Path):
    sift = cv2.SIFT_create(3000)
    (ka, da), (kb, db) = (sift.detectAndCompute(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), None) for p in (a, b))
    knn = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    ua = np.float64([ka[g.queryIdx].pt for g in good])
    ub = np.float64([kb[g.trainIdx].pt for g in good])
    _, inl = cv2.findHomography(ua, ub, cv2.RANSAC, 3.0)
    inl = inl.ravel().astype(bool)
    return ua[inl], ub[inl]


def _raw_angles(photo):
    from runtime.sources.photos import NS_SENSEFLY, _xmp_fields

    with Image.open(photo.path) as im:
        f, _ = _xmp_fields(im.info.get("xmp"))
    s = f[NS_SENSEFLY]
    return float(s["Heading"]), float(s["PitchAngle"]), float(s["RollAngle"])


def _ground(photo, uv, top, roll_sign, pitch_sign):
    """Pixels -> flat-ground points (x east, y north, metres from the nadir point), the mapping rectify resamples."""
    h, p, r = _raw_angles(photo)
    att = sensefly_attitude(h, p, r, roll_sign=roll_sign, pitch_sign=pitch_sign)
    R = att.R_body2world @ mount_with_image_top(top).R_cam2body
    rays, _ = photo.camera.unproject(uv)
    w = rays @ R.T
    return w[:, :2] * (photo.height_m / -w[:, 2])[:, None]


def _rigid_rms(P, Q) -> float:
    mp, mq = P.mean(0), Q.mean(0)
    U, _, Vt = np.linalg.svd((P - mp).T @ (Q - mq))
    R = U @ np.diag([1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return float(np.sqrt(np.mean(np.sum((P - (Q @ R.T + mp - R @ mq)) ** 2, 1))))


def test_sensefly_convention_on_real_pairs(seneca):
    """A small version of runs/sensefly_convention.py: 4 consecutive pairs (3 with roll changes of 8-17 deg, one
    with a 10 deg pitch change); the matched points of each pair mapped to the ground under each of the 16
    candidates (image top towards nose/left/tail/right x roll sign x pitch sign) and placed by GPS and the XMP heading.
    The module's convention must leave the smallest residual (the two photos' ground points agree with the GPS
    displacement) by a wide margin, and the tightest GPS- and heading-free rigid fit among its sign flips."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "SIFT_create"):
        pytest.skip("this OpenCV build has no SIFT")
    from maps.geodesy import LocalFrame

    names = [("IMG_0447.jpg", "IMG_0448.jpg"), ("IMG_0448.jpg", "IMG_0449.jpg"), ("IMG_0536.jpg", "IMG_0537.jpg"),
             ("IMG_0537.jpg", "IMG_0538.jpg")]
    photos = {n: read_photo(seneca / n) for n in {n for pair in names for n in pair}}
    frame = LocalFrame(photos["IMG_0447.jpg"].lat, photos["IMG_0447.jpg"].lon)
    pos = {n: np.array(frame.to_local(p.lat, p.lon), dtype=float) for n, p in photos.items()}
    matches = {pair: _sift_matches(cv2, photos[pair[0]].path, photos[pair[1]].path) for pair in names}
    assert all(len(uv[0]) >= 50 for uv in matches.values())
    candidates = list(itertools.product(("forward", "left", "backward", "right"), (1.0, -1.0), (1.0, -1.0)))
    resid, rms = {}, {}
    for key in candidates:
        r, f = [], []
        for (na, nb), (ua, ub) in matches.items():
            A = _ground(photos[na], ua, *key)
            B = _ground(photos[nb], ub, *key)
            r.append(float(np.median(np.linalg.norm((A + pos[na]) - (B + pos[nb]), axis=1))))
            f.append(_rigid_rms(A, B))
        resid[key], rms[key] = float(np.mean(r)), float(np.mean(f))
    chosen = (SENSEFLY_IMAGE_TOP, SENSEFLY_ROLL_SIGN, SENSEFLY_PITCH_SIGN)
    assert chosen == ("forward", 1.0, -1.0)
    others = {k: v for k, v in resid.items() if k != chosen}
    assert resid[chosen] < 12.0, resid  # measured 8.8 m (GPS jitter and the noisy XMP heading make the rest)
    assert resid[chosen] < 0.7 * min(others.values()), (resid[chosen], sorted(others.items(), key=lambda kv: kv[1]))
    for flip in ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0)):  # the roll and pitch signs, GPS- and heading-free
        assert rms[chosen] < 0.6 * rms[("forward", *flip)], rms
    assert rms[chosen] < 1.0  # measured 0.43 m
    # read_photo applies exactly this convention
    m = photos["IMG_0447.jpg"]
    h, p, r = _raw_angles(m)
    assert m.attitude == sensefly_attitude(h, p, r) and m.mount == mount_with_image_top(SENSEFLY_IMAGE_TOP)


# ============================================================================================ DJI (synthetic)
def _axis_and_top(att: Attitude, mount=NADIR_MOUNT):
    R = att.R_body2world @ mount.R_cam2body
    return R @ np.array([0.0, 0.0, 1.0]), R @ np.array([0.0, -1.0, 0.0])


def test_dji_gimbal_synthetic_file(tmp_path):
    """No real DJI photo is available here: a synthetic JPEG with DJI's XMP attributes and an EXIF GPS block."""
    path = make_jpeg(tmp_path / "DJI_0001.JPG", lat=-33.5, lon=151.25, alt=120.25, dto="2024:05:01 12:00:00",
                     subsec="25", offset="+02:00", xmp=dji_xmp(30.0, -90.0))
    m = read_photo(path)
    assert m.maker == "dji" and m.mount == NADIR_MOUNT
    assert m.lat == pytest.approx(-33.5, abs=1e-6) and m.lon == pytest.approx(151.25, abs=1e-6)
    assert m.alt_m == pytest.approx(120.25)
    assert m.height_m == pytest.approx(40.2)  # "+40.20": above the take-off point
    assert any("take-off" in n for n in m.notes)
    assert m.t_ns == _utc_ns(2024, 5, 1, 10, 0, 0) + 250_000_000  # local 12:00:00.25 at +02:00
    f = 24 * math.hypot(160, 120) / 43.27  # FocalLengthIn35mmFilm by the diagonal
    assert m.camera.fx == pytest.approx(f) and m.camera.fy == pytest.approx(f)
    assert (m.camera.cx, m.camera.cy) == (79.5, 59.5)
    # gimbal -90: optical axis straight down, image top along the gimbal yaw (compass 30 deg)
    axis, top = _axis_and_top(m.attitude, m.mount)
    yaw_dir = np.array([math.sin(math.radians(30)), math.cos(math.radians(30)), 0.0])
    np.testing.assert_allclose(axis, [0.0, 0.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(top, yaw_dir, atol=1e-9)
    assert m.attitude.roll == pytest.approx(0.0, abs=1e-9) and m.attitude.pitch == pytest.approx(0.0, abs=1e-9)
    # gimbal -60: the optical axis leans 30 deg from nadir towards the yaw direction
    m60 = read_photo(make_jpeg(tmp_path / "DJI_0002.JPG", xmp=dji_xmp(30.0, -60.0)))
    axis, top = _axis_and_top(m60.attitude, m60.mount)
    np.testing.assert_allclose(axis, -math.cos(math.radians(30)) * np.array([0, 0, 1.0])
                               + math.sin(math.radians(30)) * yaw_dir, atol=1e-9)
    assert top @ yaw_dir > 0.8 and top[2] > 0  # image top: further along the yaw direction, upwards
    assert math.degrees(m60.attitude.pitch) == pytest.approx(-30.0)  # body nose up 30 deg (REP-103: negative)
    # gimbal roll turns the image about the optical axis (positive: image right side down)
    att = dji_gimbal_attitude(0.0, -45.0, 10.0)
    R = att.R_body2world @ NADIR_MOUNT.R_cam2body
    axis = R @ [0, 0, 1.0]
    np.testing.assert_allclose(axis, [0.0, math.sqrt(0.5), -math.sqrt(0.5)], atol=1e-9)  # roll leaves it
    right = R @ [1.0, 0, 0]
    assert right[2] < 0 and right[0] > 0.9  # image right (east) tips downwards
    # the dip of the image's right edge: roll about an axis 45 deg below the horizon, sin(dip) = sin(10) cos(45)
    assert -right[2] == pytest.approx(math.sin(math.radians(10.0)) * math.cos(math.radians(45.0)), abs=1e-9)
    # at the horizon (gimbal pitch 0, a gimbal-lock body pitch of -90 deg) the dip is the roll itself
    R0 = dji_gimbal_attitude(0.0, 0.0, 10.0).R_body2world @ NADIR_MOUNT.R_cam2body
    np.testing.assert_allclose(R0 @ [0, 0, 1.0], [0.0, 1.0, 0.0], atol=1e-9)  # looking north, level
    assert -(R0 @ [1.0, 0, 0])[2] == pytest.approx(math.sin(math.radians(10.0)), abs=1e-9)


def test_plain_exif_heading_from_gps_track(tmp_path):
    folder = tmp_path / "flight"
    folder.mkdir()
    # north-east at ~10 m per photo; the last photo sits on the previous one's position (< 1 m)
    lat0, lon0 = 47.0, 8.0
    dlat = 7.0 / 111_195.0
    dlon = 7.0 / (111_195.0 * math.cos(math.radians(47.0)))
    pts = [(lat0 + k * dlat, lon0 + k * dlon) for k in (0, 1, 2, 2)]
    for k, (la, lo) in enumerate(pts):
        make_jpeg(folder / f"P{k}.jpg", lat=la, lon=lo, dto=f"2024:05:01 12:00:{10 + 2 * k:02d}", make="Acme",
                  model="Cam")
    survey = read_photo_folder(folder)
    assert [p.name for p in survey.photos] == ["P0.jpg", "P1.jpg", "P2.jpg", "P3.jpg"]
    assert {p.maker for p in survey.photos} == {"exif"}
    for p in survey.photos[:3]:
        assert p.heading_deg == pytest.approx(45.0, abs=0.5)
        assert p.attitude.roll == 0.0 and p.attitude.pitch == 0.0 and p.mount == NADIR_MOUNT
        assert any("GPS track" in n for n in p.notes)
        assert any("taken as UTC" in n for n in p.notes)  # no offset, no UTC source
    assert survey.photos[3].attitude is None  # its neighbour (P2) is on the same spot
    assert any("GPS track" in n for n in survey.notes)
    assert survey.photos[0].t_ns == _utc_ns(2024, 5, 1, 12, 0, 10)


# ============================================================================================ errors
def test_errors_name_the_problem(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    with pytest.raises(PhotoError, match="not an image"):
        read_photo(bad)
    assert issubclass(PhotoError, SourceError)
    with pytest.raises(PhotoError, match="no GPS position"):
        read_photo(make_jpeg(tmp_path / "nogps.jpg", gps=False))
    with pytest.raises(PhotoError, match="no capture time"):
        read_photo(make_jpeg(tmp_path / "notime.jpg", dto=None))
    unknown = make_jpeg(tmp_path / "unknown.jpg", model="Mystery 9", f35=None, focal_mm=5.0)
    with pytest.raises(PhotoError,
                       match=r"FocalPlaneXResolution.*FocalLengthIn35mmFilm.*Mystery 9.*--camera FILE\.yaml"):
        read_photo(unknown)
    with pytest.raises(PhotoError, match="no such file"):
        read_photo(tmp_path / "missing.jpg")
    # a given camera wins and is scaled to the file's size
    cam = CameraModel(320, 240, 400.0, 400.0, 159.5, 119.5)
    m = read_photo(unknown, camera=cam)
    assert (m.camera.width, m.camera.height) == (160, 120) and m.camera.fx == pytest.approx(200.0)
    # the table of known sensors: FocalLength with the model's sensor width
    m = read_photo(make_jpeg(tmp_path / "p4p.jpg", model="FC6310", f35=None, focal_mm=8.8))
    assert m.camera.fx == pytest.approx(8.8 * 160 / 13.2)
    # folders
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(PhotoError, match=r"no photos in .*empty.*1 other file"):
        read_photo_folder(empty)
    assert not is_photo_folder(empty)
    with pytest.raises(PhotoError, match="does not exist"):
        read_photo_folder(tmp_path / "nowhere")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("x")
    make_jpeg(junk / "b.JPG", gps=False)
    with pytest.raises(PhotoError, match=r"no usable photo .*2 file\(s\) found, all skipped .*a\.jpg: .*not an image"):
        read_photo_folder(junk)
    make_jpeg(junk / "c.jpeg")
    survey = read_photo_folder(junk)
    assert [p.name for p in survey.photos] == ["c.jpeg"]
    assert [p.name for p, _ in survey.skipped] == ["a.jpg", "b.JPG"]
    assert "no GPS position" in survey.skipped[1][1]
    assert len(survey.notes) == 3 and survey.notes[0].startswith("skipped a.jpg")
    with pytest.raises(PhotoError, match="altitude='relative' needs a height"):
        PhotoFolder(junk, altitude="relative")
    with pytest.raises(PhotoError, match="gps must be 'exif'"):
        PhotoFolder(junk, gps="nmea")
    with pytest.raises(PhotoError, match="gps_sigma_m"):
        PhotoFolder(junk, gps_sigma_m=0)


def test_unsafe_xmp_is_ignored_with_a_note(tmp_path):
    evil = ("<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]>"
            "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
            "<rdf:Description xmlns:drone-dji='http://www.dji.com/drone-dji/1.0/' drone-dji:GimbalYawDegree='&b;'/>"
            "</rdf:RDF></x:xmpmeta>")
    m = read_photo(make_jpeg(tmp_path / "evil.jpg", xmp=evil))
    assert m.maker == "exif" and m.attitude is None
    assert any("XMP packet unreadable" in n for n in m.notes)


# ============================================================================================ PhotoFolder
def test_photo_folder_events_real(seneca):
    from runtime.ground_view import HeightKeeper
    from runtime.imu_frame import ImuFrameResolver

    paths = [seneca / n for n in ("IMG_0448.jpg", "IMG_0446.jpg", "IMG_0447.jpg")]
    with PhotoFolder(paths, gps_sigma_m=4.0) as src:
        assert [p.name for p in src.photos] == ["IMG_0446.jpg", "IMG_0447.jpg", "IMG_0448.jpg"]
        assert src.selection == {"camera": "photos", "camera_info": "exif", "gps": "exif", "imu": "xmp attitude"}
        assert src.altitude == "relative" and src.skipped == ()
        assert any("height above ground" in n for n in src.notes)
        assert any("-PitchAngle" in n for n in src.notes)
        assert src.start_ns == src.photos[0].t_ns and src.end_ns == src.photos[-1].t_ns
        assert src.duration_s == pytest.approx((src.end_ns - src.start_ns) / 1e9) and src.duration_s > 0
        assert src.first_camera() == src.photos[0].camera
        assert src.mount == NADIR_MOUNT
        assert src.truth_height_m == tuple(p.height_m for p in src.photos)
        assert src.height_of(src.photos[0]) == pytest.approx(66.11, abs=0.01)
        events = list(src.events())
        assert [type(e) for e in events] == [ImuSample, GpsFix, Frame] * 3
        assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)
        for k, photo in enumerate(src.photos):
            imu, fix, frame = events[3 * k:3 * k + 3]
            assert imu.t_ns == fix.t_ns == frame.t_ns == photo.t_ns
            np.testing.assert_allclose(imu.R_body2world, photo.attitude.R_body2world, atol=1e-9)
            assert imu.angular_velocity == (0.0, 0.0, 0.0)
            f_world = imu.R_body2world @ np.array(imu.linear_acceleration)
            np.testing.assert_allclose(f_world, [0.0, 0.0, 9.80665], atol=1e-9)  # at rest: +g up
            assert (fix.lat, fix.lon) == (photo.lat, photo.lon)
            assert fix.alt == pytest.approx(photo.height_m)  # altitude="relative"
            np.testing.assert_allclose(fix.cov_enu, np.diag([16.0, 16.0, 64.0]))
            assert fix.topic == "exif" and frame.topic == "photos" and frame.frame_id == photo.name
            assert frame.camera == photo.camera and frame.encoded == photo.path.read_bytes()
        assert events[2].shape == (900, 1200)
        # the loop's height keeper (ground elevation 0 for these maps) gets the height above ground
        keeper = HeightKeeper(0.0)
        assert keeper.update(events[1]) and keeper.height_m == pytest.approx(66.11, abs=0.01)
        # the loop's IMU frame detection takes these samples as ENU/FLU from the first one
        resolver = ImuFrameResolver("auto", min_samples=1)
        assert resolver.convert(events[0]) is not None and resolver.frame == "enu_flu"
        # roles and time bounds
        only = list(src.events(roles=("gps",), start_ns=src.photos[1].t_ns))
        assert [type(e) for e in only] == [GpsFix, GpsFix]
        assert [type(e) for e in src.events(roles=("camera", "camera_info"), stop_ns=src.photos[1].t_ns)] == [Frame]
        with pytest.raises(PhotoError, match="unknown role"):
            list(src.events(roles=("lidar",)))
    gps_alt = PhotoFolder([seneca / "IMG_0446.jpg"], altitude="gps")
    assert next(e for e in gps_alt.events() if isinstance(e, GpsFix)).alt == pytest.approx(281.69, abs=0.01)


def test_photo_folder_yields_a_photos_motion_before_its_frame(seneca):
    """A photo with a measured displacement from the photo before (PhotoMeta.motion): the folder yields it, role
    camera, first of the photo's events: the prediction that its GPS fix and its frame then correct."""
    from dataclasses import replace

    survey = read_photo_folder([seneca / n for n in ("IMG_0446.jpg", "IMG_0447.jpg")])
    a, b = survey.photos
    motion = GroundMotion(b.t_ns, a.t_ns, (30.0, 12.0), 1.6, math.radians(17.0), topic="photos", frame_id=b.name)
    src = PhotoFolder(None, survey=replace(survey, photos=(a, replace(b, motion=motion))))
    events = list(src.events())
    assert [type(e) for e in events] == [ImuSample, GpsFix, Frame, GroundMotion, ImuSample, GpsFix, Frame]
    assert events[3] is motion
    assert [type(e) for e in src.events(roles=("gps", "imu"))] == [ImuSample, GpsFix] * 2
    assert [type(e) for e in src.events(roles=("camera",), start_ns=b.t_ns)] == [GroundMotion, Frame]
    assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)


def test_photo_folder_without_heights_uses_gps_altitude(tmp_path):
    for k in range(3):
        make_jpeg(tmp_path / f"p{k}.jpg", lat=47.0 + k * 1e-4, dto=f"2024:05:01 12:00:{k * 3:02d}", model="FC6310",
                  make="DJI")
    src = PhotoFolder(tmp_path)
    assert src.altitude == "gps" and src.selection["imu"] is None
    assert any("EXIF GPS altitude" in n for n in src.notes)
    ev = list(src.events())
    assert [type(e) for e in ev] == [GpsFix, Frame] * 3  # a heading from the GPS track is no IMU measurement
    assert ev[0].alt == pytest.approx(520.5)
    assert math.degrees(src.photos[0].attitude.heading) == pytest.approx(0.0, abs=0.5)  # due north
