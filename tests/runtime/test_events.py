"""runtime.events: typed, frozen events; lazy JPEG decoding; validation of what they are built from."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import Attitude
from runtime.errors import BagError
from runtime.events import (
    CameraInfoEvent,
    Frame,
    GpsFix,
    GroundMotion,
    ImuSample,
    TruthPose,
    decode_image_bytes,
    image_format,
    matrix_to_quaternion,
    quaternion_to_matrix,
)


def _rgb(h=24, w=32):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 7
    img[..., 1] = 120
    img[..., 2] = np.arange(h, dtype=np.uint8)[:, None] * 9
    return img


def test_frame_from_array_is_readonly_copy():
    img = _rgb()
    f = Frame(5, img, None, "/cam")
    img[0, 0] = 0
    assert f.image[0, 0, 1] == 120 and not f.image.flags.writeable
    assert f.encoded is None and f.is_decoded and f.shape == (24, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.image = img
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.t_ns = 3


def test_frame_from_png_bytes_decodes_lazily_to_rgb():
    img = _rgb()
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    f = Frame(7, buf.tobytes(), topic="/c")
    assert not f.is_decoded and f.encoded == buf.tobytes()
    np.testing.assert_array_equal(f.image, img)  # RGB, exact (PNG)
    assert f.is_decoded
    assert f.image is f.image  # cached
    g = f.with_camera(CameraModel.from_fov(32, 24, 60))
    assert g.encoded == f.encoded and g.camera.width == 32
    assert "encoded bytes" in repr(g)


def test_frame_keyword_construction_and_replace():
    f = Frame(t_ns=1, image=_rgb(), topic="/x")
    g = dataclasses.replace(f, t_ns=2)
    assert g.t_ns == 2 and g.topic == "/x" and g.image.shape == (24, 32, 3)


@pytest.mark.parametrize(
    "bad, match",
    [(np.zeros((4, 4), np.uint8), "RGB uint8"), (np.zeros((4, 4, 3), np.float32), "RGB uint8")],
)
def test_frame_rejects_non_rgb(bad, match):
    with pytest.raises(BagError, match=match):
        Frame(1, bad)


def test_frame_rejects_float_time_and_bad_camera():
    with pytest.raises(BagError, match="integer number of nanoseconds"):
        Frame(1.5, _rgb())
    with pytest.raises(BagError, match="CameraModel"):
        Frame(1, _rgb(), camera="cam.yaml")


def test_undecodable_bytes_raise_bag_error():
    f = Frame(1, b"not an image at all")
    with pytest.raises(BagError, match="expected JPEG or PNG"):
        _ = f.image
    with pytest.raises(BagError, match="empty"):
        decode_image_bytes(b"")


def test_image_format_magic():
    assert image_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert image_format(b"\x89PNG\r\n\x1a\nxxxx") == "png"
    assert image_format(b"GIF89a") == ""


def test_gps_fix_covariance_forms():
    a = GpsFix(1, 47.0, 8.0, 400.0, cov_enu=3.0)
    np.testing.assert_allclose(a.cov_enu, np.eye(3) * 9.0)
    assert a.sigma_h == pytest.approx(3.0) and a.sigma_v == pytest.approx(3.0) and a.has_fix
    b = GpsFix(1, 47.0, 8.0, 400.0, cov_enu=[4, 0, 0, 0, 9, 0, 0, 0, 16])
    assert b.sigma_h == pytest.approx(math.sqrt(6.5)) and b.sigma_v == pytest.approx(4.0)
    c = GpsFix(1, 47.0, 8.0, 400.0, cov_enu=None, status=-1)
    assert c.cov_enu is None and c.sigma_h is None and c.covariance_type == 0 and not c.has_fix
    with pytest.raises(BagError, match="3x3 ENU covariance"):
        GpsFix(1, 47.0, 8.0, 400.0, cov_enu=[1, 2])
    with pytest.raises(BagError, match="non-negative diagonal"):
        GpsFix(1, 47.0, 8.0, 400.0, cov_enu=np.diag([-1.0, 1, 1]))
    with pytest.raises(BagError, match="sigma"):
        GpsFix(1, 47.0, 8.0, 400.0, cov_enu=-2.0)


def test_gps_fix_velocity_is_optional_validated_and_readonly():
    plain = GpsFix(1, 47.0, 8.0, 400.0, 2.0, 0, "/fix", 2, "gps")  # the positional order of before still works
    assert plain.velocity_enu is None and plain.velocity_sigma_mps is None and plain.velocity_xy is None
    v = GpsFix(1, 47.0, 8.0, 400.0, velocity_enu=[3.0, -4.0], velocity_sigma_mps=0.3)
    assert v.velocity_enu.dtype == np.float64 and v.velocity_enu.shape == (2,)
    assert v.velocity_xy == (3.0, -4.0) and v.velocity_sigma_mps == 0.3
    with pytest.raises(ValueError):
        v.velocity_enu[0] = 1.0  # read-only, like cov_enu
    src = np.array([1.0, 2.0, -0.5])
    w = GpsFix(1, 47.0, 8.0, 400.0, velocity_enu=src)
    src[0] = 99.0  # the fix keeps its own copy
    assert w.velocity_enu.tolist() == [1.0, 2.0, -0.5] and w.velocity_xy == (1.0, 2.0)
    moved = plain.with_velocity((0.5, 0.25), 0.2)
    assert moved.velocity_xy == (0.5, 0.25) and moved.velocity_sigma_mps == 0.2
    assert (moved.t_ns, moved.lat, moved.topic, moved.frame_id, moved.sigma_h) == (1, 47.0, "/fix", "gps", 2.0)
    assert plain.velocity_enu is None  # frozen: with_velocity made a new fix
    for bad in ([1.0], [1.0, 2.0, 3.0, 4.0], [math.nan, 1.0], [[1.0, 2.0], [3.0, 4.0]], "fast"):
        with pytest.raises(BagError, match="velocity_enu must be 2 .* or 3 .* finite numbers in m/s"):
            GpsFix(1, 47.0, 8.0, 400.0, velocity_enu=bad)
    for bad in (0.0, -1.0, math.inf, True, "0.3"):
        with pytest.raises(BagError, match="velocity_sigma_mps must be a finite number of m/s > 0"):
            GpsFix(1, 47.0, 8.0, 400.0, velocity_enu=[1.0, 0.0], velocity_sigma_mps=bad)


def test_imu_sample_validates_and_normalises():
    q = Attitude(0.1, -0.2, 1.0).to_quaternion()
    s = ImuSample(3, tuple(1.0001 * v for v in q), (0.1, 0.2, 0.3), (0.0, 0.0, 9.81))
    assert math.isclose(sum(v * v for v in s.orientation), 1.0)
    np.testing.assert_allclose(s.R_body2world, Attitude(0.1, -0.2, 1.0).R_body2world, atol=1e-9)
    assert ImuSample(3, None).R_body2world is None
    with pytest.raises(BagError, match="unit quaternion"):
        ImuSample(3, (0, 0, 0, 2.0))
    with pytest.raises(BagError, match="quaternion"):
        ImuSample(3, (0, 0, 1))
    with pytest.raises(BagError, match="3 finite numbers"):
        ImuSample(3, None, (0, 0, math.nan))


def test_camera_info_event_and_truth_pose():
    cam = CameraModel.from_fov(64, 48, 70)
    assert CameraInfoEvent(1, cam).camera is cam
    with pytest.raises(BagError, match="CameraModel"):
        CameraInfoEvent(1, None)
    q = Attitude(0, 0, 0.5).to_quaternion()
    tp = TruthPose(2, 47.0, 8.0, 460.0, 1.0, 2.0, 60.0, q)
    np.testing.assert_allclose(tp.position, [1, 2, 60])
    np.testing.assert_allclose(tp.R_body2world, Attitude(0, 0, 0.5).R_body2world, atol=1e-12)
    assert TruthPose(2, 47.0, 8.0, 460.0).R_body2world is None


@pytest.mark.parametrize("rpy", [(0.0, 0.0, 0.0), (0.1, -0.3, 2.5), (3.0, 0.2, -2.9), (0.0, 1.5, 0.3)])
def test_quaternion_helpers_match_calibration_attitude(rpy):
    att = Attitude(*rpy)
    q = matrix_to_quaternion(att.R_body2world)
    np.testing.assert_allclose(q, att.to_quaternion(), atol=1e-9)
    np.testing.assert_allclose(quaternion_to_matrix(q), att.R_body2world, atol=1e-9)


def test_ground_motion_validates_its_fields():
    m = GroundMotion(6_000_000_000, 1_000_000_000, [30.0, -4.0], 1.5, 0.3, topic="photos", frame_id="b.jpg")
    assert m.displacement_en == (30.0, -4.0) and m.dt_s == pytest.approx(5.0)
    assert m.sigma_m == 1.5 and m.heading_sigma_rad == 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sigma_m = 2.0
    for kw, match in ((dict(t_ref_ns=6_000_000_000), "t_ref_ns .* must be before t_ns"),
                      (dict(t_ns=6.0e9), "GroundMotion.t_ns"),
                      (dict(displacement_en=(1.0, math.nan)), "displacement_en must be 2 finite numbers"),
                      (dict(displacement_en="east"), "displacement_en must be 2 finite numbers"),
                      (dict(sigma_m=0.0), "sigma_m must be a number > 0 metres"),
                      (dict(sigma_m=True), "sigma_m must be a number > 0 metres"),
                      (dict(heading_sigma_rad=2.0), r"heading_sigma_rad must be a number in \[0, pi/2\) radians")):
        args = dict(t_ns=6_000_000_000, t_ref_ns=1_000_000_000, displacement_en=(1.0, 0.0), sigma_m=1.0)
        args.update(kw)
        with pytest.raises(BagError, match=match):
            GroundMotion(**args)
