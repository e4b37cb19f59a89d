"""skyfix_native's CUDA path. Compiling the kernels needs nvcc only (no driver, no GPU): that is checked wherever
nvcc is installed. Running them needs a CUDA device: those tests skip without one (with the CUDA runtime's reason)
and run as they are on a machine with a GPU: ``pytest -q tests/runtime/native``.

On a device, the warp and the normalisation must equal the host functions bit for bit (the kernels use explicitly
rounded float operations, no FMA contraction), and the correlation must agree with the host within 1e-5 and with
OpenCV within the host's tolerance, NaN where they give NaN."""

from __future__ import annotations

import ctypes
import re

import cv2
import numpy as np
import pytest

from runtime import native

from .test_match import TOL, cv_ncc, footprint_template
from .test_warp import cv_reference, opencv_remap_tolerance, perspective_map, rotation_scale_map

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_cuda_sources_compile(cuda_lib, native_builds):
    """The library built with -DSKYFIX_NATIVE_CUDA=ON has the kernels and says for which architectures."""
    assert cuda_lib.has_cuda is True
    archs = cuda_lib.cuda_architectures.split(",")
    assert archs and all(re.fullmatch(r"\d+(-real|-virtual)?", a) for a in archs), archs
    assert "CUDA" in repr(cuda_lib)


def test_without_a_device_the_reason_is_given(cuda_lib):
    count, reason = cuda_lib.cuda_device_count()
    if count > 0:
        pytest.skip(f"a CUDA device is present ({count})")
    assert "cudaGetDeviceCount failed" in reason and "cudaError" in reason
    assert cuda_lib.info()["cuda_reason"] == reason
    with pytest.raises(native.NativeCudaError, match=r"cudaMalloc failed: .*\(cudaError"):
        cuda_lib.cuda_normalize(np.zeros((1, 4, 4, 3), np.uint8), (0, 0, 0), (1, 1, 1))
    with pytest.raises(native.NativeCudaError, match=r"cudaGetDeviceProperties failed"):
        cuda_lib.cuda_device_info(0)


def test_cuda_library_checks_arguments_before_cuda(cuda_lib):
    """Bad arguments are refused with the host functions' messages, before anything reaches CUDA."""
    fn = cuda_lib._lib.skyfix_cuda_normalize_u8
    mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
    assert fn(1, 1, 4, 4, 3, 12, 48, mean.ctypes.data, std.ctypes.data, 7, 0, 2, None) == 1
    assert "normalize: format must be 0 (float32 NCHW)" in cuda_lib.last_error()
    fn = cuda_lib._lib.skyfix_cuda_warp_bilinear_u8
    assert fn(None, 8, 8, 3, 24, 1, 16, 1, 16, 4, 4, 1, 12, None, 0, None) == 1
    assert cuda_lib.last_error() == "warp: src is NULL"
    fn = cuda_lib._lib.skyfix_cuda_match_template_ccoeff_normed
    assert fn(1, 10, 12, 48, 2, 4, 13, 52, None, 0, 3, 0, None) == 1
    assert "the template (4x13, h x w) is larger than the image (10x12)" in cuda_lib.last_error()
    with pytest.raises(native.NativeArgumentError, match=r"dtype must be float32 or float16"):
        cuda_lib.cuda_normalize_ptr(1, (1, 4, 4, 3), 12, 48, (0, 0, 0), (1, 1, 1), np.int16, 2)
    with pytest.raises(native.NativeArgumentError, match=r"shape must be \(n, h, w, c\)"):
        cuda_lib.cuda_normalize_ptr(1, (1, 4, 4), 12, 48, (0, 0, 0), (1, 1, 1), np.float32, 2)


def test_cuda_only_argument_errors(cuda_lib):
    """The CUDA entry points' own limits and the helpers' arguments, refused before CUDA is called."""
    lib = cuda_lib._lib
    n = ctypes.c_int(0)
    ptr = ctypes.c_void_p()
    cases = [
        (lambda: lib.skyfix_cuda_device_count(None), "cuda_device_count: count is NULL"),
        (lambda: lib.skyfix_cuda_device_info(0, None, 256, ctypes.byref(n), ctypes.byref(n)),
         "cuda_device_info: name, major and minor must be non-NULL, name_size >= 1"),
        (lambda: lib.skyfix_cuda_malloc(ctypes.byref(ptr), 0),
         "cuda_malloc: ptr must be non-NULL and nbytes >= 1, got 0"),
        (lambda: lib.skyfix_cuda_memcpy_h2d(1, 2, -1), "cuda_memcpy_h2d: nbytes must be >= 0"),
        (lambda: lib.skyfix_cuda_memcpy_d2h(1, 2, -1), "cuda_memcpy_d2h: nbytes must be >= 0"),
        # 2^16 x 2^16 image, 1 x 1 template: 2^32 output positions, one block each
        (lambda: lib.skyfix_cuda_match_template_ccoeff_normed(1, 65536, 65536, 262144, 2, 1, 1, 4, None, 0, 3, 262144,
                                                              None),
         "cuda match_template: at most 2^31 - 1 output positions and template pixels, got 4294967296 and 1"),
        (lambda: lib.skyfix_cuda_warp_bilinear_u8(1, 8, 8, 3, 24, 2, 16, 3, 16, 65535 * 16 + 1, 4, 4, 12, None, 0,
                                                  None),
         "cuda warp: out_h must be <= 1048560"),
    ]
    for call, message in cases:
        assert call() == 1
        assert cuda_lib.last_error() == message


# ------------------------------------------------------------------------------------------ on a CUDA device
def test_device_info(gpu_lib):
    name, cc = gpu_lib.cuda_device_info(0)
    assert name and re.fullmatch(r"\d+\.\d+", cc)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_device_warp_equals_host(gpu_lib, host_lib, shared_data, channels):
    rng = np.random.default_rng(channels)
    frame = rng.integers(0, 256, (480, 640, channels), dtype=np.uint8)
    if channels == 3:
        frame = cv2.cvtColor(cv2.imread(str(shared_data("calib/aero1.jpg"))), cv2.COLOR_BGR2RGB)
    for mx, my in (rotation_scale_map(256, 30.0, 1.7, 320.0, 240.0), perspective_map(300)):
        mx = mx.copy()
        mx[0, :5] = [np.nan, np.inf, -0.5, 639.5, 1e30]
        out, mask = gpu_lib.cuda_warp_bilinear(frame, mx, my)
        ref, ref_mask = host_lib.warp_bilinear(frame, mx, my)
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_array_equal(out, ref)
        cv_out, cv_mask = cv_reference(frame, mx, my)
        np.testing.assert_array_equal(mask, cv_mask)
        assert np.abs(out.astype(int) - cv_out.reshape(out.shape)).max() <= opencv_remap_tolerance(channels)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8])
def test_device_normalize_equals_host(gpu_lib, host_lib, dtype):
    images = np.random.default_rng(1).integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)  # a grid of many blocks
    for reverse in (False, True):
        out = gpu_lib.cuda_normalize(images, IMAGENET_MEAN, IMAGENET_STD, dtype, reverse_channels=reverse)
        ref = host_lib.normalize(images, IMAGENET_MEAN, IMAGENET_STD, dtype, reverse_channels=reverse)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))
    if dtype != np.uint8:
        np.testing.assert_array_equal(out, native.normalize_numpy(images, IMAGENET_MEAN, IMAGENET_STD, dtype, True))


def test_device_normalize_pitched_source(gpu_lib, host_lib):
    """Row and image pitches larger than the pixels: a crop of a device batch, read in place."""
    images = np.random.default_rng(2).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    held: list = []
    try:
        src = gpu_lib._upload(images, held)
        dst = gpu_lib._alloc(3 * 3 * 20 * 30 * 4, held)
        offset = 5 * 150 + 7 * 3  # rows 5.., columns 7..
        gpu_lib.cuda_normalize_ptr(src + offset, (3, 20, 30, 3), 150, 40 * 150, IMAGENET_MEAN, IMAGENET_STD,
                                   np.float32, dst)
        out = gpu_lib._download(np.empty((3, 3, 20, 30), np.float32), dst)
    finally:
        gpu_lib._free(held)
    np.testing.assert_array_equal(out, host_lib.normalize(images[:, 5:25, 7:37], IMAGENET_MEAN, IMAGENET_STD))


def test_device_match_agrees_with_host_and_opencv(gpu_lib, host_lib, shared_data):
    from maps.geotiff import load_orthophoto

    ortho = load_orthophoto(shared_data("ortho/swissimage_zurich_a_0.5m.tif"))
    grey = cv2.cvtColor(np.ascontiguousarray(ortho.image), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (grey.shape[1] // 4, grey.shape[0] // 4), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float32)
    rng = np.random.default_rng(4)
    for size, win in ((64, 84), (128, 134), (64, 84)):
        cy = rng.uniform(win / 2 + 1, grey.shape[0] - win / 2 - 1)
        cx = rng.uniform(win / 2 + 1, grey.shape[1] - win / 2 - 1)
        templ, mask = footprint_template(grey, cx, cy, size, rng.uniform(-10, 10))
        y0, x0 = int(cy - win / 2), int(cx - win / 2)
        window = grey[y0:y0 + win, x0:x0 + win]
        out = gpu_lib.cuda_match_template(window, templ, mask)
        ref = host_lib.match_template(window, templ, mask)
        cv = cv_ncc(window, templ, mask)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        assert np.nanmax(np.abs(out - ref)) <= 1e-5
        assert np.nanmax(np.abs(out - cv)) <= TOL


def test_device_match_degenerate_cases(gpu_lib, host_lib):
    rng = np.random.default_rng(6)
    texture = cv2.GaussianBlur(rng.random((200, 200)).astype(np.float32), (0, 0), 2.0) * 255
    templ, mask = footprint_template(texture, 100.0, 100.0, 64, 5.0)
    window = np.ascontiguousarray(texture[60:144, 60:144])
    window[10:80, 5:75] = 101.5  # flat block: NaN where the template lies wholly inside it
    cases = [(window, templ, mask),
             (window, np.where(mask > 0, np.float32(3.0), templ).astype(np.float32), mask),  # constant template
             (window, templ, np.zeros_like(mask)),  # all masked
             (window, templ, None)]
    for image, t, m in cases:
        out = gpu_lib.cuda_match_template(image, t, m)
        ref = host_lib.match_template(image, t, m)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        if np.isfinite(ref).any():
            assert np.nanmax(np.abs(out - ref)) <= 1e-5
