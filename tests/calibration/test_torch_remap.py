"""calibration.torch_remap's bilinear sampling against the installed OpenCV (4.x fixed point or 5.x float), and
calibration.cv_compat.remap_fraction_bits, which tells the two apart."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.cv_compat import remap_fraction_bits

torch = pytest.importorskip("torch")

from calibration.torch_remap import AS_OPENCV, grid_sample_px, warp_affine_coords_fixed  # noqa: E402


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, border: str) -> np.ndarray:
    """Reference bilinear of float64 img[h, w] at float64 coordinates, BORDER_REPLICATE or constant 0."""
    h, w = img.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0

    def at(yy, xx):
        v = img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        if border == "zeros":
            v = np.where((xx >= 0) & (xx < w) & (yy >= 0) & (yy < h), v, 0.0)
        return v

    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy) + at(y0 + 1, x0) * (1 - fx) * fy
            + at(y0 + 1, x0 + 1) * fx * fy)


def _maps(rng, shape, lo, hi):
    return (rng.uniform(lo, hi, shape).astype(np.float32), rng.uniform(lo, hi, shape).astype(np.float32))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("integer", [True, False], ids=["uint8", "float32"])
def test_remap_fraction_bits_names_how_this_opencv_samples(channels, integer):
    bits = remap_fraction_bits(channels, integer)
    assert bits in (None, 5)
    # the model it names reproduces cv2.remap of a step at sub-pixel positions the probe did not use
    step = np.array([[0, 255, 255], [0, 255, 255]], dtype=np.uint8 if integer else np.float32)
    src = np.repeat(step[:, :, None], channels, axis=2)
    x = np.random.default_rng(3).uniform(0, 1, (1, 4000)).astype(np.float32)
    got = cv2.remap(src, x, np.zeros_like(x), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got = got.reshape(4000, channels)[:, -1].astype(np.float64)
    xd = x[0].astype(np.float64)
    want = 255 * xd if bits is None else 255 * np.rint(xd * 32) / 32
    if integer:
        want = np.rint(want) if bits is None else np.floor(want + 0.5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_remap_fraction_bits_rejects_other_channel_counts():
    with pytest.raises(ValueError, match="channels must be 1 to 4"):
        remap_fraction_bits(5)


@pytest.mark.parametrize("border", ["replicate", "zeros"])
def test_fixed_point_sampling_is_bilinear_on_the_coordinate_grid(border):
    """fraction_bits=b: coordinates rounded to 2**-b px (half to even), then an exact bilinear: for integer sources
    the same numbers as a float64 reference, outside the source clamped or 0."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 23)).astype(np.float64)
    mx, my = _maps(rng, (1, 40, 50), -3.0, 26.0)
    for bits in (1, 5, 8):
        n = 1 << bits
        ref = _bilinear(img, np.rint(mx[0] * n) / n, np.rint(my[0] * n) / n, border)
        out = grid_sample_px(torch.from_numpy(img.astype(np.float32))[None, None], torch.from_numpy(mx),
                             torch.from_numpy(my), bits, border=border)[0, 0].numpy()
        np.testing.assert_array_equal(out, ref.astype(np.float32))


def test_sampling_as_opencv_gives_cv2_remap():
    """The default (AS_OPENCV) follows the installed OpenCV: uint8 remap values (rounded as it rounds) equal
    cv2.remap's, inside and across the border (BORDER_REPLICATE)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (31, 45), dtype=np.uint8)
    mx, my = _maps(rng, (120, 130), -2.0, 47.0)
    ref = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(int)
    r = grid_sample_px(torch.from_numpy(img.astype(np.float32))[None, None], torch.from_numpy(mx)[None],
                       torch.from_numpy(my)[None], AS_OPENCV)[0, 0]
    fixed = remap_fraction_bits(1) is not None
    out = (torch.floor(r + 0.5) if fixed else torch.round(r)).numpy().astype(int)
    d = np.abs(out - ref)
    # 5.x: grid_sample's float32 coordinate normalisation may cross a rounding boundary (1 DN, rarely); 4.x: exact
    assert d.max() <= 1 and np.count_nonzero(d) <= (0 if fixed else d.size // 1000)


def test_fixed_affine_coordinates_give_cv2_warp_affine():
    """warp_affine_coords_fixed + fixed-point sampling is OpenCV 4.x's warpAffine (float32 image, zero border)."""
    bits = remap_fraction_bits(1, integer=False)
    if bits is None:
        pytest.skip(f"OpenCV {cv2.__version__} warps at float precision: no fixed-point warpAffine to compare with")
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 255, (60, 70)).astype(np.float32)
    for angle in (7.3, -41.0, 179.0):
        M = cv2.getRotationMatrix2D((33.3, 28.1), angle, 1.0)
        ref = cv2.warpAffine(img, M, (70, 60), flags=cv2.INTER_LINEAR, borderValue=0.0)
        inv = torch.from_numpy(cv2.invertAffineTransform(M)[None])
        X, Y = warp_affine_coords_fixed(inv, 70, 60, bits)
        out = grid_sample_px(torch.from_numpy(img)[None, None], X, Y, bits, border="zeros")[0, 0].numpy()
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)


def test_grid_sample_px_rejects_an_unknown_border():
    src = torch.zeros(1, 1, 4, 4)
    m = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="border must be 'replicate' or 'zeros', not 'reflect'"):
        grid_sample_px(src, m, m, border="reflect")
