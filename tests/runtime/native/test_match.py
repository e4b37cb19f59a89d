"""skyfix_native's masked normalised cross-correlation against cv2.matchTemplate(TM_CCOEFF_NORMED, mask): the
aligner's sizes (64 px templates over 84 px windows, 128 over 134) on real map imagery and on synthetic texture,
rotated-footprint / full / random masks, row-strided windows as runtime.align cuts them, the degenerate cases (NaN
where OpenCV gives NaN), and the argument errors."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from runtime import native

#: stated tolerance of |native - OpenCV| on defined values (both compute in float32 sums of different orders;
#: measured ~1e-5)
TOL = 1e-4


def cv_ncc(image, templ, mask=None) -> np.ndarray:
    m = np.ones(templ.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    with np.errstate(all="ignore"):
        return cv2.matchTemplate(np.ascontiguousarray(image), np.ascontiguousarray(templ), cv2.TM_CCOEFF_NORMED,
                                 mask=m)


def footprint_template(grey: np.ndarray, cx: float, cy: float, size: int, angle_deg: float):
    """As runtime.align's _Template.rotated: the grey patch of ``size`` px centred at (cx, cy), rotated about its
    centre by ``angle_deg`` with a rotated-square footprint mask (weights > 0.5), values divided by the weight.
    Returns (template float32[size, size], mask uint8[size, size])."""
    half = size / 2.0
    patch = cv2.getRectSubPix(grey, (size, size), (cx, cy))
    M = cv2.getRotationMatrix2D((half - 0.5, half - 0.5), angle_deg, 1.0)
    img = cv2.warpAffine(patch, M, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    wt = cv2.warpAffine(np.ones((size, size), np.float32), M, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    ok = wt > 0.5
    return np.where(ok, img / np.maximum(wt, 1e-6), 0.0).astype(np.float32), ok.astype(np.uint8)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Smooth random texture float32[400, 400] in 0..255 (like grey imagery at the coarse level)."""
    rng = np.random.default_rng(7)
    t = cv2.GaussianBlur(rng.random((400, 400)).astype(np.float32), (0, 0), 2.0)
    return (t - t.min()) / (t.max() - t.min()) * 255.0


@pytest.fixture(scope="module")
def map_grey(shared_data) -> np.ndarray:
    """Real map imagery (swisstopo 0.5 m orthophoto) in grey at 2 m (the aligner's coarse level), float32."""
    from maps.geotiff import load_orthophoto

    ortho = load_orthophoto(shared_data("ortho/swissimage_zurich_a_0.5m.tif"))
    grey = cv2.cvtColor(np.ascontiguousarray(ortho.image), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    return cv2.resize(grey, (w // 4, h // 4), interpolation=cv2.INTER_AREA).astype(np.float32)


def check(lib, image, templ, mask, stats=None) -> np.ndarray:
    out = lib.match_template(image, templ, mask)
    ref = cv_ncc(image, templ, mask)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    ok = ~np.isnan(ref)
    diff = float(np.abs(out[ok] - ref[ok]).max()) if ok.any() else 0.0
    assert diff <= TOL, diff
    if stats is not None:
        stats.append(diff)
    return out


@pytest.mark.parametrize("angle", [0.0, -10.0, 7.5, 45.0])
def test_aligner_sizes_on_texture(host_lib, texture, angle):
    """A 64 px rotated-footprint template (the view at the coarse level) over an 84 px window around its place."""
    templ, mask = footprint_template(texture, 171 + 31.5, 165 + 31.5, 64, angle)  # texture[165:229, 171:235] turned
    window = texture[155:239, 161:245]  # row-strided view, as runtime.align's window slices
    out = check(host_lib, window, templ, mask)
    if angle == 0.0:  # the template's own place, offset (10, 10): a perfect match there
        assert np.unravel_index(np.nanargmax(out), out.shape) == (10, 10) and out[10, 10] > 0.9999


def test_fine_level_sizes(host_lib, texture):
    templ, mask = footprint_template(texture, 250.0, 240.0, 128, 3.0)
    check(host_lib, texture[170:304, 180:314], templ, mask)


def test_real_map_imagery(host_lib, map_grey):
    """Windows of a real orthophoto at the aligner's coarse level, templates rotated views of nearby places."""
    rng = np.random.default_rng(11)
    h, w = map_grey.shape
    stats = []
    for _ in range(6):
        cy, cx = rng.uniform(45, h - 45), rng.uniform(45, w - 45)
        templ, mask = footprint_template(map_grey, cx + rng.uniform(-4, 4), cy + rng.uniform(-4, 4), 64,
                                         rng.uniform(-10, 10))
        y0, x0 = int(cy) - 42, int(cx) - 42
        check(host_lib, map_grey[y0:y0 + 84, x0:x0 + 84], templ, mask, stats)
    assert len(stats) == 6


def test_masks_full_none_random(host_lib, texture):
    rng = np.random.default_rng(5)
    templ = texture[100:164, 120:184] + rng.normal(0, 3, (64, 64)).astype(np.float32)
    window = texture[90:174, 110:194]
    full = check(host_lib, window, templ, np.ones((64, 64), np.uint8))
    np.testing.assert_array_equal(host_lib.match_template(window, templ, None), full)
    np.testing.assert_array_equal(host_lib.match_template(window, templ, np.ones((64, 64), bool)), full)
    unmasked = cv2.matchTemplate(np.ascontiguousarray(window), templ, cv2.TM_CCOEFF_NORMED)  # OpenCV's own path
    assert np.abs(full - unmasked).max() <= TOL
    check(host_lib, window, templ, (rng.random((64, 64)) > 0.3).astype(np.uint8))
    check(host_lib, window, templ, (rng.random((64, 64)) > 0.3).astype(np.uint8) * 200)  # nonzero = valid


def test_small_and_odd_shapes(host_lib, texture):
    rng = np.random.default_rng(9)
    for th, tw, H, W in ((1, 1, 5, 7), (3, 9, 3, 20), (17, 5, 40, 5), (31, 29, 31, 29)):
        templ = texture[:th, 50:50 + tw] + rng.normal(0, 1, (th, tw)).astype(np.float32)
        mask = (rng.random((th, tw)) > 0.2).astype(np.uint8)
        mask.flat[0] = 1
        out = host_lib.match_template(texture[200:200 + H, 10:10 + W], templ, mask)
        assert out.shape == (H - th + 1, W - tw + 1)
        if mask.sum() >= 2:
            check(host_lib, texture[200:200 + H, 10:10 + W], templ, mask)


# ---------------------------------------------------------------------------------------------------- degenerate
def test_constant_template_is_nan(host_lib, texture):
    templ, mask = footprint_template(texture, 200.0, 200.0, 64, 5.0)
    const = np.where(mask > 0, np.float32(117.25), templ).astype(np.float32)  # constant where valid
    out = host_lib.match_template(texture[150:234, 150:234], const, mask)
    assert np.isnan(out).all() and np.isnan(cv_ncc(texture[150:234, 150:234], const, mask)).all()


def test_all_masked_is_nan(host_lib, texture):
    templ = texture[:64, :64].copy()
    zero = np.zeros((64, 64), np.uint8)
    out = host_lib.match_template(texture[:84, :84], templ, zero)
    assert np.isnan(out).all() and np.isnan(cv_ncc(texture[:84, :84], templ, zero)).all()


def test_flat_windows_are_nan_where_opencv_is(host_lib, texture):
    """A flat block larger than the template: the offsets wholly inside it are undefined (NaN), the others not."""
    templ, mask = footprint_template(texture, 120.0, 130.0, 64, -4.0)
    window = texture[88:172, 98:182].copy()
    window[10:80, 5:75] = 101.5
    out = check(host_lib, window, templ, mask)
    assert np.isnan(out).sum() >= 49 and np.isfinite(out).sum() > 0
    flat = np.full((84, 84), 55.0, np.float32)
    assert np.isnan(check(host_lib, flat, templ, mask)).all()


def test_window_offset_and_scale_do_not_matter(host_lib, texture):
    """NCC is invariant to I -> a I + b (a > 0): the window mean is subtracted in double, so a large offset does
    not cancel the variance."""
    templ, mask = footprint_template(texture, 200.0, 210.0, 64, 2.0)
    window = np.ascontiguousarray(texture[160:244, 170:254])
    base = host_lib.match_template(window, templ, mask)
    shifted = host_lib.match_template((window * 0.01 + 30000.0).astype(np.float32), templ, mask)
    assert np.abs(base - shifted).max() < 2e-3  # float32 of 30000 + x/100 keeps ~1e-3 of the texture


# ---------------------------------------------------------------------------------------------------- errors
def test_argument_errors(host_lib):
    img = np.zeros((10, 10), np.float32)
    t = np.ones((4, 4), np.float32)
    cases = [
        ((img.astype(np.float64), t, None), r"image must be a non-empty float32\[h, w\] array \(the map window "
                                            r"searched\), got float64\[10, 10\]; convert it with "
                                            r"\.astype\(np\.float32\)"),
        ((img, t[None], None), r"templ must be a non-empty float32\[h, w\] array \(the template\), got "
                               r"float32\[1, 4, 4\]$"),
        ((img[:3], t, None), r"templ \[4, 4\] must fit inside image \[3, 10\] \(h, w\)"),
        ((img, t, np.ones((4, 5), np.uint8)), r"mask must be uint8 or bool \[4, 4\] \(the template's shape; nonzero = "
                                              r"valid\) or None, got uint8\[4, 5\]"),
        ((img, t, np.ones((4, 4), np.float32)), r"got float32\[4, 4\]"),
        ((np.full((10, 10), np.nan, np.float32), t, None), r"image must be finite \(it holds NaN or inf\)"),
        ((img, np.full((4, 4), np.inf, np.float32), None), r"templ must be finite"),
        ((np.zeros((0, 10), np.float32), t, None), r"image must be a non-empty .* got float32\[0, 10\]"),
    ]
    for args, message in cases:
        with pytest.raises(native.NativeArgumentError, match=message):
            host_lib.match_template(*args)


def test_c_argument_errors(host_lib):
    fn = host_lib._lib.skyfix_match_template_ccoeff_normed
    img = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    t = img[2:6, 3:8].copy()
    mask = np.ones((4, 5), np.uint8)
    res = np.zeros((7, 8), np.float32)
    good = dict(img=img.ctypes.data, H=10, W=12, ip=48, t=t.ctypes.data, th=4, tw=5, tp=20, m=mask.ctypes.data,
                mp=5, res=res.ctypes.data, rp=32)
    assert fn(*good.values()) == 0 and res[2, 3] > 0.9999
    cases = [
        (dict(img=None), "match_template: image is NULL"),
        (dict(t=None), "match_template: templ is NULL"),
        (dict(res=None), "match_template: result is NULL"),
        (dict(th=0), r"match_template: templ_h must be in \[1, 1073741824\], got 0"),
        (dict(tw=13), r"match_template: the template \(4x13, h x w\) is larger than the image \(10x12\)"),
        (dict(ip=46), r"match_template: image_pitch must be in \[48, 4294967296\] bytes and a multiple of 4, got 46"),
        (dict(tp=22), r"match_template: templ_pitch must be in \[20, "),
        (dict(mp=4), r"match_template: mask_pitch must be in \[5, "),
        (dict(rp=28), r"match_template: result_pitch must be in \[32, "),
    ]
    for change, message in cases:
        assert fn(*{**good, **change}.values()) == 1, change
        assert re.search(message, host_lib.last_error()), (change, host_lib.last_error())
    assert fn(*{**good, "m": None, "mp": 0}.values()) == 0  # no mask: all valid
