"""skyfix_native's normalisation into an engine input against numpy: bit-identical to the runtime's float32 path
(x * (1 / (255 std)) - mean / std) for float32 and float16, within float32 rounding of (x / 255 - mean) / std; the
uint8 NHWC copy; channel reversal; strided batches; the float16 conversion; argument errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from runtime import native

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def encoder_numpy_path(images, mean, std, dtype, bgr=False) -> np.ndarray:
    """runtime.encoder's host normalisation of a float NCHW model input, written out here as the reference."""
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    scale, shift = 1.0 / (255.0 * std), mean / std
    x = images[..., ::-1] if bgr else images
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.float32) * scale - shift, dtype)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).integers(0, 256, (4, 96, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                                       ((0.5, -0.25, 3.0), (0.01, 2.0, 1e-3))])
def test_bit_identical_to_the_numpy_path(host_lib, images, dtype, mean, std):
    out = host_lib.normalize(images, mean, std, dtype=dtype)
    ref = encoder_numpy_path(images, mean, std, dtype)
    assert out.shape == (4, 3, 96, 80) and out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out.view(np.uint16 if dtype == np.float16 else np.uint32),
                                  ref.view(np.uint16 if dtype == np.float16 else np.uint32))
    np.testing.assert_array_equal(native.normalize_numpy(images, mean, std, dtype).view(out.dtype), ref)


def test_close_to_the_definition(host_lib, images):
    """(x / 255 - mean) / std in float64: the float32 steps stay within a few float32 ulps."""
    out = host_lib.normalize(images, IMAGENET_MEAN, IMAGENET_STD)
    exact = (images.transpose(0, 3, 1, 2) / 255.0 - np.reshape(IMAGENET_MEAN, (1, 3, 1, 1))) / \
        np.reshape(IMAGENET_STD, (1, 3, 1, 1))
    assert np.abs(out - exact).max() <= 4 * np.finfo(np.float32).eps * np.abs(exact).max()


def test_reverse_channels(host_lib, images):
    out = host_lib.normalize(images, IMAGENET_MEAN, IMAGENET_STD, reverse_channels=True)
    np.testing.assert_array_equal(out, encoder_numpy_path(images, IMAGENET_MEAN, IMAGENET_STD, np.float32, bgr=True))
    np.testing.assert_array_equal(out[:, 0], host_lib.normalize(images[..., 2:], IMAGENET_MEAN[:1],
                                                                IMAGENET_STD[:1])[:, 0])


@pytest.mark.parametrize("c", [1, 2, 4])
def test_other_channel_counts(host_lib, c):
    imgs = np.random.default_rng(c).integers(0, 256, (2, 5, 7, c), dtype=np.uint8)
    mean, std = np.linspace(0.1, 0.9, c), np.linspace(0.5, 2.0, c)
    for dtype in (np.float32, np.float16):
        np.testing.assert_array_equal(host_lib.normalize(imgs, mean, std, dtype), encoder_numpy_path(imgs, mean, std,
                                                                                                     dtype))


def test_uint8_passthrough(host_lib, images):
    out = host_lib.normalize(images, None, None, dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == images.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, images)
    assert not np.shares_memory(out, images)
    np.testing.assert_array_equal(host_lib.normalize(images, None, None, np.uint8, reverse_channels=True),
                                  images[..., ::-1])


def test_strided_batches(host_lib, images):
    """Crops and every other image of a batch: row and image pitches given to the library as they are."""
    for view in (images[:, 10:70, 5:45], images[::2], images[1:3, ::-1]):
        np.testing.assert_array_equal(host_lib.normalize(view, IMAGENET_MEAN, IMAGENET_STD),
                                      encoder_numpy_path(view, IMAGENET_MEAN, IMAGENET_STD, np.float32))
        np.testing.assert_array_equal(host_lib.normalize(view, None, None, np.uint8), view)


def test_float16_conversion_matches_numpy(host_lib):
    """Round to nearest even everywhere: a 2^22 sample of all float32 bit patterns, a 1/13 sample of the range that
    becomes half subnormals, and every pattern around the smallest subnormal, the smallest normal and the overflow to
    inf."""
    dense = [np.arange(b - 2**16, b + 2**16, dtype=np.uint32) for b in (0x33000000, 0x33800000, 0x38800000, 0x477FF000)]
    patterns = [np.arange(0, 2**32, 1024, dtype=np.uint64).astype(np.uint32),
                np.arange(0x33000000, 0x38800000, 13, dtype=np.uint32), *dense]
    bits = np.concatenate(patterns + [p | np.uint32(0x80000000) for p in patterns[1:]])
    x = bits.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(np.float16)
    out = host_lib.f32_to_f16(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out[~nan].view(np.uint16), ref[~nan].view(np.uint16))


# ---------------------------------------------------------------------------------------------------- errors
def test_argument_errors(host_lib, images):
    cases = [
        ((images[0], IMAGENET_MEAN, IMAGENET_STD), r"images must be a non-empty uint8\[n, h, w, c\] array with c in "
                                                   r"1\.\.4, got uint8\[96, 80, 3\] \(one image: add a batch axis, "
                                                   r"images\[None\]\)"),
        ((images.astype(np.float32), IMAGENET_MEAN, IMAGENET_STD), r"got float32\[4, 96, 80, 3\]$"),
        ((np.zeros((1, 2, 2, 5), np.uint8), (0,) * 5, (1,) * 5), r"got uint8\[1, 2, 2, 5\]"),
        ((images, IMAGENET_MEAN[:2], IMAGENET_STD), r"mean must be 3 numbers \(one per channel of the images\), got 2"),
        ((images, IMAGENET_MEAN, "abc"), r"std must be 3 numbers \(one per channel of the images\), got 'abc'"),
        ((images, IMAGENET_MEAN, (0.2, 0.0, 0.2)), r"std must be finite and > 0, got \(0\.2, 0\.0, 0\.2\)"),
        ((images, (0.1, np.nan, 0.1), IMAGENET_STD), r"mean must be finite, got"),
        ((images, None, IMAGENET_STD), r"mean must be 3 numbers \(one per channel of the images\), got 1: None"),
    ]
    for args, message in cases:
        with pytest.raises(native.NativeArgumentError, match=message):
            host_lib.normalize(*args)
    with pytest.raises(native.NativeArgumentError, match=r"dtype must be float32 or float16 \(NCHW, normalised\) or "
                                                         r"uint8 \(NHWC copy\), got float64"):
        host_lib.normalize(images, IMAGENET_MEAN, IMAGENET_STD, dtype=np.float64)
    with pytest.raises(native.NativeArgumentError, match=r"dtype must be float32, float16 or uint8, got 'float13'"):
        host_lib.normalize(images, IMAGENET_MEAN, IMAGENET_STD, dtype="float13")
    with pytest.raises(native.NativeArgumentError, match=r"values must be a float32 array, got float64\[2\]"):
        host_lib.f32_to_f16(np.zeros(2))


def test_c_argument_errors(host_lib):
    fn = host_lib._lib.skyfix_normalize_u8
    src = np.zeros((2, 4, 5, 3), np.uint8)
    dst = np.zeros((2, 3, 4, 5), np.float32)
    mean = np.zeros(3, np.float32)
    std = np.ones(3, np.float32)
    good = dict(src=src.ctypes.data, n=2, h=4, w=5, c=3, rp=15, ip=60, mean=mean.ctypes.data, std=std.ctypes.data,
                fmt=0, flags=0, dst=dst.ctypes.data)
    assert fn(*good.values()) == 0
    tiny = np.full(3, 1e-44, np.float32)  # 255 * std is subnormal: 1 / it overflows
    bad_std = np.array([1.0, -1.0, 1.0], np.float32)
    cases = [
        (dict(src=None), "normalize: src is NULL"),
        (dict(dst=None), "normalize: dst is NULL"),
        (dict(n=0), r"normalize: n must be in \[1, 1073741824\], got 0"),
        (dict(c=0), r"normalize: channels must be in \[1, 4\], got 0"),
        (dict(rp=14), r"normalize: src_row_pitch must be in \[15, 4294967296\] bytes"),
        (dict(ip=59), r"normalize: src_image_pitch must be in \[60, 2305843009213693952\] bytes"),
        (dict(fmt=3), r"normalize: format must be 0 \(float32 NCHW\), 1 \(float16 NCHW\) or 2 \(uint8 NHWC\), got 3"),
        (dict(flags=2), r"normalize: unknown flags 0x2 \(known: 0x1 reverse channels\)"),
        (dict(mean=None), "normalize: mean is NULL"),
        (dict(std=bad_std.ctypes.data), r"normalize: mean\[1\] must be finite and std\[1\] finite and > 0, got mean 0, "
                                        r"std -1"),
        (dict(std=tiny.ctypes.data), r"normalize: 1 / \(255 std\[0\]\) or mean / std overflows float32 .*use a larger "
                                     r"std"),
    ]
    for change, message in cases:
        assert fn(*{**good, **change}.values()) == 1, change
        assert re.search(message, host_lib.last_error()), (change, host_lib.last_error())
    assert fn(*{**good, "mean": None, "std": None, "fmt": 2}.values()) == 0  # the uint8 copy needs no mean/std
    f16 = host_lib._lib.skyfix_f32_to_f16
    assert f16(None, dst.ctypes.data, 1) == 1 and "f32_to_f16: src or dst is NULL" in host_lib.last_error()
    assert f16(mean.ctypes.data, dst.ctypes.data, -1) == 1 and "count must be >= 0, got -1" in host_lib.last_error()
