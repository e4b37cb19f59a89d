"""skyfix_native from Python, without torch: ctypes bindings of the C library built by the repository's CMakeLists.txt.

The library (``native/``) implements the preprocessing of TensorRT deployments on the host and, when built with
CUDA, on device pointers:

* :meth:`NativeLib.warp_bilinear`: bilinear resampling of a uint8 frame at per-pixel source coordinates, as
  ``cv2.remap(INTER_LINEAR, BORDER_REPLICATE)`` with ``calibration.view.rectify``'s validity rule (inside the frame's
  pixel-edge bounds); invalid pixels are 0 with mask False.
* :meth:`NativeLib.normalize`: uint8 NHWC images -> float32/float16 NCHW ``x * (1 / (255 std)) - mean / std`` (i.e.
  ``(x / 255 - mean) / std``, rounded as the runtime's numpy path rounds it), or a uint8 NHWC copy.
* :meth:`NativeLib.match_template`: ``cv2.matchTemplate(image, templ, cv2.TM_CCOEFF_NORMED, mask=mask)`` of float32
  arrays (what :class:`runtime.align.FineAligner` computes per yaw hypothesis); NaN where undefined.

Finding the library (:func:`find_library`): the ``SKYFIX_NATIVE_LIB`` environment variable (the file, or a folder
holding it), else ``build/native/`` next to the ``runtime`` package, which is where :data:`BUILD_COMMAND` puts it::

    cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release && cmake --build build/native -j

Nothing here needs a GPU: :attr:`NativeLib.has_cuda` says whether the CUDA kernels are compiled in and
:meth:`NativeLib.cuda_device_count` whether a device is present (0 and the reason when not).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import OnboardError

__all__ = ["ABI_VERSION", "BUILD_COMMAND", "ENV_VAR", "NativeArgumentError", "NativeCudaError", "NativeError",
           "NativeLib", "NativeLibraryError", "find_library", "library_filename", "load", "normalize_numpy", "try_load"]

#: the C ABI version this module speaks (``SKYFIX_NATIVE_ABI_VERSION`` of native/include/skyfix_native.h)
ABI_VERSION = 1
#: environment variable naming the library file (or its folder)
ENV_VAR = "SKYFIX_NATIVE_LIB"
#: run in the repository root: builds build/native/<library_filename()> (CUDA kernels too when nvcc is found)
BUILD_COMMAND = "cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release && cmake --build build/native -j"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent

# status codes of the C functions (skyfix_native.h)
_OK, _ERR_ARGUMENT, _ERR_NO_CUDA, _ERR_CUDA, _ERR_MEMORY = 0, 1, 2, 3, 4
_FORMATS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.uint8): 2}
_REVERSE_CHANNELS = 1
MAX_CHANNELS = 4


class NativeError(OnboardError):
    """Base class of the errors of :mod:`runtime.native`."""


class NativeLibraryError(NativeError):
    """The library is not found, cannot be loaded, or is of another ABI version; the message says how to build it."""


class NativeArgumentError(NativeError):
    """Arrays or settings the library cannot take (dtype, shape, channels, sizes, mean/std)."""


class NativeCudaError(NativeError):
    """A CUDA operation that cannot run: the library was built without CUDA, no driver or device, a CUDA failure."""


def library_filename() -> str:
    """The library's file name on this platform: ``libskyfix_native.so`` / ``.dylib`` / ``skyfix_native.dll``."""
    if sys.platform.startswith("win"):
        return "skyfix_native.dll"
    if sys.platform == "darwin":
        return "libskyfix_native.dylib"
    return "libskyfix_native.so"


def default_locations() -> list[Path]:
    """Where the library is looked for when ``SKYFIX_NATIVE_LIB`` is not set: ``build/native/`` next to the
    ``runtime`` package (the repository root of a source checkout)."""
    return [_PACKAGE_ROOT / "build" / "native" / library_filename()]


def _build_hint() -> str:
    return (f"build it in the repository root with `{BUILD_COMMAND}` (needs cmake >= 3.18 and a C++17 compiler; "
            f"the CUDA kernels are added when nvcc is found), or set {ENV_VAR} to the library file")


def find_library(path: str | os.PathLike | None = None) -> Path:
    """The library file: ``path`` if given, else ``$SKYFIX_NATIVE_LIB``, else :func:`default_locations`.

    ``path`` and the variable may name the file or a folder holding :func:`library_filename`.

    Raises:
        NativeLibraryError: what was looked for, where, and the cmake command that builds it.
    """
    name = library_filename()
    if path is not None or os.environ.get(ENV_VAR):
        origin = "path" if path is not None else ENV_VAR
        given = Path(path if path is not None else os.environ[ENV_VAR]).expanduser()
        candidate = given / name if given.is_dir() else given
        if candidate.is_file():
            return candidate
        raise NativeLibraryError(
            f"{origin}={str(given)!r} names no skyfix_native library (looked for {candidate}); point it at "
            f"{name} or at the folder holding it, or {'pass no path' if path is not None else 'unset it'} to use "
            f"{default_locations()[0]}; {_build_hint()}"
        )
    for candidate in default_locations():
        if candidate.is_file():
            return candidate
    where = ", ".join(str(p) for p in default_locations())
    raise NativeLibraryError(f"the skyfix_native library ({name}) was not found: {ENV_VAR} is not set and {where} "
                             f"does not exist; {_build_hint()}")


_CACHE: dict[Path, "NativeLib"] = {}
_CACHE_LOCK = threading.Lock()


def load(path: str | os.PathLike | None = None) -> "NativeLib":
    """The library (see :func:`find_library`), loaded once per file.

    Raises:
        NativeLibraryError: not found, not loadable (wrong architecture, missing dependency), not a skyfix_native
            library, or built for another ABI version.
    """
    file = find_library(path).resolve()
    with _CACHE_LOCK:
        if file not in _CACHE:
            _CACHE[file] = NativeLib(file)
        return _CACHE[file]


def try_load(path: str | os.PathLike | None = None) -> tuple["NativeLib | None", str]:
    """``(library, "")`` when :func:`load` succeeds, else ``(None, the reason)``: for optional uses."""
    try:
        return load(path), ""
    except NativeLibraryError as exc:
        return None, str(exc)


def normalize_numpy(images: np.ndarray, mean: Sequence[float], std: Sequence[float], dtype=np.float32,
                    reverse_channels: bool = False) -> np.ndarray:
    """What :meth:`NativeLib.normalize` computes for the float formats, in numpy (the fallback without the library,
    and the reference of its tests): uint8[n, h, w, c] -> ``dtype`` (float32/float16) [n, c, h, w] of
    ``x * (1 / (255 std)) - mean / std`` in float32 steps, i.e. ``(x / 255 - mean) / std``; ``mean`` and ``std`` in the
    output channel order; ``reverse_channels``: output channel k is input channel c - 1 - k."""
    c = images.shape[3]
    mean = np.asarray(mean, np.float32).reshape(1, c, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, c, 1, 1)
    x = images[..., ::-1] if reverse_channels else images
    x = x.transpose(0, 3, 1, 2).astype(np.float32) * (np.float32(1.0) / (np.float32(255.0) * std)) - mean / std
    return np.ascontiguousarray(x, dtype)


# ------------------------------------------------------------------------------------------------- checks
def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype}{list(a.shape)}"
    return type(a).__name__


def _pitched(a: np.ndarray, leading: int = 1) -> np.ndarray:
    """``a`` itself when the C functions can take it as a pointer and pitches, else a C-contiguous copy.

    They take the axes after the first ``leading`` as one contiguous block (a row: pixels and their channels) and
    each leading axis (rows; images) as a positive pitch in bytes of at least the extent of what follows it: true
    of C-contiguous arrays and of row slices like ``window[r0:r1, c0:c1]``.
    """
    expected = a.itemsize
    for k in range(a.ndim - 1, leading - 1, -1):
        if a.shape[k] > 1 and a.strides[k] != expected:
            return np.array(a, order="C")  # a new array: natural strides, size-1 axes included
        expected *= a.shape[k]
    extent = expected
    for k in range(leading - 1, -1, -1):
        if a.strides[k] < extent:  # (a size-1 axis may carry any stride: 0 after a[None])
            return np.array(a, order="C")
        extent += a.strides[k] * (a.shape[k] - 1)
    return a


def _uint8_image(name: str, a, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim not in (2, 3) or (
            a.ndim == 3 and not 1 <= a.shape[2] <= MAX_CHANNELS) or 0 in a.shape:
        raise NativeArgumentError(f"{name} must be a non-empty uint8[h, w] or uint8[h, w, c] array with c in 1.."
                                  f"{MAX_CHANNELS} ({what}), got {_describe(a)}")
    return _pitched(a)


def _float_image(name: str, a, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2 or 0 in a.shape:
        hint = "; convert it with .astype(np.float32)" if isinstance(a, np.ndarray) and a.ndim == 2 else ""
        raise NativeArgumentError(f"{name} must be a non-empty float32[h, w] array ({what}), got {_describe(a)}{hint}")
    return _pitched(a)


def _channels_values(name: str, values, c: int) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise NativeArgumentError(f"{name} must be {c} numbers (one per channel of the images), got {values!r}") \
            from exc
    if v.size != c:
        raise NativeArgumentError(f"{name} must be {c} numbers (one per channel of the images), got {v.size}: "
                                  f"{values!r}")
    if not np.all(np.isfinite(v)) or (name == "std" and not np.all(v > 0)):
        raise NativeArgumentError(f"{name} must be finite{' and > 0' if name == 'std' else ''}, got {values!r}")
    return v.astype(np.float32)


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


# ------------------------------------------------------------------------------------------------- library
_i64, _int, _vp, _cp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
_SIGNATURES = {
    "skyfix_native_abi_version": ([], _int),
    "skyfix_native_version": ([], _cp),
    "skyfix_native_last_error": ([], _cp),
    "skyfix_native_has_cuda": ([], _int),
    "skyfix_native_cuda_architectures": ([], _cp),
    "skyfix_warp_bilinear_u8": ([_vp, _i64, _i64, _i64, _i64, _vp, _i64, _vp, _i64, _i64, _i64, _vp, _i64, _vp, _i64],
                                _int),
    "skyfix_normalize_u8": ([_vp, _i64, _i64, _i64, _i64, _i64, _i64, _vp, _vp, _int, _int, _vp], _int),
    "skyfix_f32_to_f16": ([_vp, _vp, _i64], _int),
    "skyfix_match_template_ccoeff_normed": ([_vp, _i64, _i64, _i64, _vp, _i64, _i64, _i64, _vp, _i64, _vp, _i64],
                                            _int),
    "skyfix_cuda_device_count": ([ctypes.POINTER(_int)], _int),
    "skyfix_cuda_device_info": ([_int, _cp, _i64, ctypes.POINTER(_int), ctypes.POINTER(_int)], _int),
    "skyfix_cuda_set_device": ([_int], _int),
    "skyfix_cuda_malloc": ([ctypes.POINTER(_vp), _i64], _int),
    "skyfix_cuda_free": ([_vp], _int),
    "skyfix_cuda_memcpy_h2d": ([_vp, _vp, _i64], _int),
    "skyfix_cuda_memcpy_d2h": ([_vp, _vp, _i64], _int),
    "skyfix_cuda_synchronize": ([_vp], _int),
    "skyfix_cuda_warp_bilinear_u8": ([_vp, _i64, _i64, _i64, _i64, _vp, _i64, _vp, _i64, _i64, _i64, _vp, _i64, _vp,
                                      _i64, _vp], _int),
    "skyfix_cuda_normalize_u8": ([_vp, _i64, _i64, _i64, _i64, _i64, _i64, _vp, _vp, _int, _int, _vp, _vp], _int),
    "skyfix_cuda_match_template_ccoeff_normed": ([_vp, _i64, _i64, _i64, _vp, _i64, _i64, _i64, _vp, _i64, _vp,
                                                  _i64, _vp], _int),
}
_ERRORS = {_ERR_ARGUMENT: NativeArgumentError, _ERR_NO_CUDA: NativeCudaError, _ERR_CUDA: NativeCudaError,
           _ERR_MEMORY: NativeError}


class NativeLib:
    """The loaded library (use :func:`load`). Host methods take and return numpy arrays; ``cuda_*_ptr`` methods
    take device pointers (ints) and a stream handle; ``cuda_*`` methods run the device path on numpy arrays
    (allocate, copy, run, copy back: for checks and simple uses).

    Attributes:
        path: the library file.
        version: its version string.
        has_cuda: the CUDA kernels are compiled in.
        cuda_architectures: the CUDA architectures compiled in (e.g. ``"87-real,90"``; ``""`` without CUDA).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise NativeLibraryError(f"could not load the skyfix_native library {self.path}: {exc}; rebuild it "
                                     f"for this machine: {_build_hint()}") from exc
        missing = [n for n in _SIGNATURES if not hasattr(lib, n)]
        if missing:
            raise NativeLibraryError(f"{self.path} is not a skyfix_native library of ABI {ABI_VERSION} (it lacks "
                                     f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); {_build_hint()}")
        for name, (args, res) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        abi = lib.skyfix_native_abi_version()
        if abi != ABI_VERSION:
            raise NativeLibraryError(f"{self.path} has ABI version {abi} but this SkyFix speaks {ABI_VERSION}; "
                                     f"rebuild the library from this checkout: {_build_hint()}")
        self._lib = lib
        self.version = lib.skyfix_native_version().decode()
        self.has_cuda = bool(lib.skyfix_native_has_cuda())
        self.cuda_architectures = lib.skyfix_native_cuda_architectures().decode()

    def __repr__(self) -> str:
        cuda = f"CUDA {self.cuda_architectures}" if self.has_cuda else "host only"
        return f"NativeLib({str(self.path)!r}, version {self.version}, {cuda})"

    # ---------------------------------------------------------------------------------------------- plumbing
    def last_error(self) -> str:
        """The C library's message of the last failed call on this thread ("" when none)."""
        return self._lib.skyfix_native_last_error().decode(errors="replace")

    def _call(self, name: str, *args) -> None:
        rc = getattr(self._lib, name)(*args)
        if rc != _OK:
            raise _ERRORS.get(rc, NativeError)(f"skyfix_native: {self.last_error()} (status {rc})")

    # ---------------------------------------------------------------------------------------------- CUDA state
    def cuda_device_count(self) -> tuple[int, str]:
        """(number of CUDA devices, "" or why there are none): 0 with the reason when the library has no CUDA, or
        the machine no driver or device."""
        n = _int(0)
        rc = self._lib.skyfix_cuda_device_count(ctypes.byref(n))
        if rc != _OK:
            return 0, self.last_error()
        return int(n.value), "" if n.value > 0 else "the CUDA runtime reports no device"

    def cuda_device_info(self, device: int = 0) -> tuple[str, str]:
        """(name, compute capability "major.minor") of a CUDA device.

        Raises:
            NativeCudaError: no CUDA in the library, no such device.
        """
        name = ctypes.create_string_buffer(256)
        major, minor = _int(0), _int(0)
        self._call("skyfix_cuda_device_info", int(device), name, 256, ctypes.byref(major), ctypes.byref(minor))
        return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"

    def cuda_set_device(self, device: int) -> None:
        """Make ``device`` current for this thread (its primary context, shared with cuda-python and pycuda)."""
        self._call("skyfix_cuda_set_device", int(device))

    def info(self) -> dict:
        """What the library offers here: path, version, CUDA compiled in, architectures, devices (and why none)."""
        count, reason = self.cuda_device_count()
        return {"path": str(self.path), "version": self.version, "abi": ABI_VERSION, "cuda_compiled": self.has_cuda,
                "cuda_architectures": self.cuda_architectures, "cuda_devices": count, "cuda_reason": reason}

    # ---------------------------------------------------------------------------------------------- host
    def warp_bilinear(self, frame: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear resampling of ``frame`` at (``map_x``, ``map_y``).

        Args:
            frame: uint8[h, w, c] (c 1..4) or uint8[h, w], e.g. an RGB camera frame.
            map_x, map_y: float32[H, W], source pixel coordinates of each output pixel (pixel centres at integers,
                as ``cv2.remap``).
        Returns:
            (image uint8[H, W(, c)], mask bool[H, W]): the value is ``cv2.remap(frame, map_x, map_y,
            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)`` where ``-0.5 <= x <= w - 0.5`` and
            ``-0.5 <= y <= h - 0.5`` (mask True), else 0 (mask False; NaN coordinates too).
        Raises:
            NativeArgumentError: wrong dtypes or shapes.
        """
        frame = _uint8_image("frame", frame, "the source image")
        map_x = _float_image("map_x", map_x, "source x of each output pixel")
        map_y = _float_image("map_y", map_y, "source y of each output pixel")
        if map_x.shape != map_y.shape:
            raise NativeArgumentError(f"map_x and map_y must have one shape [H, W], got {list(map_x.shape)} and "
                                      f"{list(map_y.shape)}")
        c = frame.shape[2] if frame.ndim == 3 else 1
        H, W = map_x.shape
        out = np.empty((H, W, c) if frame.ndim == 3 else (H, W), np.uint8)
        mask = np.empty((H, W), np.uint8)
        self._call("skyfix_warp_bilinear_u8", _ptr(frame), frame.shape[0], frame.shape[1], c, frame.strides[0],
                   _ptr(map_x), map_x.strides[0], _ptr(map_y), map_y.strides[0], H, W, _ptr(out), out.strides[0],
                   _ptr(mask), mask.strides[0])
        return out, mask.view(bool)

    def _normalize_args(self, images, mean, std, dtype) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None,
                                                                 np.dtype]:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or \
                not 1 <= images.shape[3] <= MAX_CHANNELS or 0 in images.shape:
            hint = " (one image: add a batch axis, images[None])" if isinstance(images, np.ndarray) and \
                images.ndim == 3 else ""
            raise NativeArgumentError(f"images must be a non-empty uint8[n, h, w, c] array with c in 1..{MAX_CHANNELS}"
                                      f", got {_describe(images)}{hint}")
        try:
            dtype = np.dtype(dtype)
        except TypeError as exc:
            raise NativeArgumentError(f"dtype must be float32, float16 or uint8, got {dtype!r}") from exc
        if dtype not in _FORMATS:
            raise NativeArgumentError(f"dtype must be float32 or float16 (NCHW, normalised) or uint8 (NHWC copy), got "
                                      f"{dtype}")
        c = images.shape[3]
        if dtype == np.uint8:
            return images, None, None, dtype
        return images, _channels_values("mean", mean, c), _channels_values("std", std, c), dtype

    def normalize(self, images: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None,
                  dtype=np.float32, reverse_channels: bool = False) -> np.ndarray:
        """uint8 NHWC images into an engine input.

        Args:
            images: uint8[n, h, w, c] (c 1..4), e.g. RGB views.
            mean, std: c floats each (std > 0), in the OUTPUT channel order; unused (may be None) for uint8.
            dtype: float32 or float16 -> ``[n, c, h, w]`` of ``x * (1 / (255 std)) - mean / std`` computed in
                float32 (then rounded to nearest-even half), bit-identical to numpy's
                ``x.transpose(0, 3, 1, 2).astype(np.float32) * scale - shift`` with ``scale = 1 / (255 * std)`` and
                ``shift = mean / std`` in float32; uint8 -> a contiguous ``[n, h, w, c]`` copy.
            reverse_channels: output channel k is input channel c - 1 - k (RGB -> BGR).
        Raises:
            NativeArgumentError: wrong dtype or shape, mean/std of the wrong length, not finite, std <= 0.
        """
        images, m, s, dtype = self._normalize_args(images, mean, std, dtype)
        images = _pitched(images, leading=2)
        n, h, w, c = images.shape
        out = np.empty((n, h, w, c) if dtype == np.uint8 else (n, c, h, w), dtype)
        self._call("skyfix_normalize_u8", _ptr(images), n, h, w, c, images.strides[1], images.strides[0],
                   None if m is None else _ptr(m), None if s is None else _ptr(s), _FORMATS[dtype],
                   _REVERSE_CHANNELS if reverse_channels else 0, _ptr(out))
        return out

    def f32_to_f16(self, values: np.ndarray) -> np.ndarray:
        """float32 -> float16 with the library's conversion (round to nearest even, as ``astype(np.float16)``)."""
        if not isinstance(values, np.ndarray) or values.dtype != np.float32:
            raise NativeArgumentError(f"values must be a float32 array, got {_describe(values)}")
        src = np.ascontiguousarray(values)
        out = np.empty(src.shape, np.float16)
        self._call("skyfix_f32_to_f16", _ptr(src), _ptr(out), src.size)
        return out

    def _match_args(self, image, templ, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        image = _float_image("image", image, "the map window searched")
        templ = _float_image("templ", templ, "the template")
        if templ.shape[0] > image.shape[0] or templ.shape[1] > image.shape[1]:
            raise NativeArgumentError(f"templ {list(templ.shape)} must fit inside image {list(image.shape)} (h, w)")
        if mask is not None:
            if not isinstance(mask, np.ndarray) or mask.dtype not in (np.uint8, np.bool_) or \
                    mask.shape != templ.shape:
                raise NativeArgumentError(f"mask must be uint8 or bool {list(templ.shape)} (the template's shape; "
                                          f"nonzero = valid) or None, got {_describe(mask)}")
            mask = _pitched(mask.view(np.uint8))
        for name, a in (("image", image), ("templ", templ)):
            if not np.all(np.isfinite(a)):
                raise NativeArgumentError(f"{name} must be finite (it holds NaN or inf); fill invalid pixels (e.g. "
                                          "with the window's mean) and mask them in the template")
        return image, templ, mask

    def match_template(self, image: np.ndarray, templ: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Masked normalised cross-correlation, ``cv2.matchTemplate(image, templ, cv2.TM_CCOEFF_NORMED, mask=mask)``.

        Args:
            image: float32[H, W] (e.g. a grey map window; row-strided views are taken without a copy).
            templ: float32[h, w], h <= H and w <= W.
            mask: uint8/bool[h, w], nonzero = the pixel takes part; None: all do.
        Returns:
            float32[H - h + 1, W - w + 1]: at each offset, the correlation of the template's and the window's valid
            pixels, each less its mean over them, in [-1, 1] up to rounding (~1e-6 from OpenCV's float32 result);
            NaN where undefined (as OpenCV): no valid pixel, a constant template, or a window constant under the
            mask (variance <= 1e-12 x its mean square).
        Raises:
            NativeArgumentError: wrong dtypes or shapes, a template larger than the image, NaN or inf values.
        """
        image, templ, mask = self._match_args(image, templ, mask)
        H, W = image.shape
        h, w = templ.shape
        out = np.empty((H - h + 1, W - w + 1), np.float32)
        self._call("skyfix_match_template_ccoeff_normed", _ptr(image), H, W, image.strides[0], _ptr(templ), h, w,
                   templ.strides[0], None if mask is None else _ptr(mask), 0 if mask is None else mask.strides[0],
                   _ptr(out), out.strides[0])
        return out

    # ---------------------------------------------------------------------------------------------- device
    def cuda_normalize_ptr(self, src: int, shape: tuple[int, int, int, int], row_pitch: int, image_pitch: int,
                           mean: Sequence[float] | None, std: Sequence[float] | None, dtype, dst: int,
                           stream: int = 0, reverse_channels: bool = False) -> None:
        """Queue the normalisation of device images on ``stream`` (returns after the launch).

        Args:
            src: device pointer of uint8 images [n, h, w, c] (``shape``), rows ``row_pitch`` bytes apart, images
                ``image_pitch`` bytes apart.
            mean, std, dtype, reverse_channels: as :meth:`normalize`.
            dst: device pointer of the contiguous output (float32/float16 [n, c, h, w] or uint8 [n, h, w, c]).
            stream: a cudaStream_t as an int (0: the legacy default stream).
        Raises:
            NativeArgumentError: bad sizes, pitches, mean/std, dtype (checked before anything is queued).
            NativeCudaError: no CUDA in the library, or the launch failed (no device, no kernel for this GPU).
        """
        try:
            n, h, w, c = (int(v) for v in shape)
        except (TypeError, ValueError) as exc:
            raise NativeArgumentError(f"shape must be (n, h, w, c) of the uint8 images, got {shape!r}") from exc
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise NativeArgumentError(f"dtype must be float32, float16 or uint8, got {dtype!r}") from exc
        if dt not in _FORMATS:
            raise NativeArgumentError(f"dtype must be float32 or float16 (NCHW, normalised) or uint8 (NHWC copy), got "
                                      f"{dt}")
        m = s = None
        if dt != np.uint8:
            m, s = _channels_values("mean", mean, c), _channels_values("std", std, c)
        self._call("skyfix_cuda_normalize_u8", _vp(int(src)), n, h, w, c, int(row_pitch), int(image_pitch),
                   None if m is None else _ptr(m), None if s is None else _ptr(s), _FORMATS[dt],
                   _REVERSE_CHANNELS if reverse_channels else 0, _vp(int(dst)), _vp(int(stream)))

    def cuda_warp_bilinear_ptr(self, src: int, src_shape: tuple[int, int, int], src_pitch: int, map_x: int,
                               map_x_pitch: int, map_y: int, map_y_pitch: int, out_shape: tuple[int, int], out: int,
                               out_pitch: int, mask: int | None, mask_pitch: int, stream: int = 0) -> None:
        """Queue :meth:`warp_bilinear` on device pointers (``src_shape`` = (h, w, c), ``out_shape`` = (H, W);
        pitches in bytes; ``mask`` may be None)."""
        h, w, c = (int(v) for v in src_shape)
        H, W = (int(v) for v in out_shape)
        self._call("skyfix_cuda_warp_bilinear_u8", _vp(int(src)), h, w, c, int(src_pitch), _vp(int(map_x)),
                   int(map_x_pitch), _vp(int(map_y)), int(map_y_pitch), H, W, _vp(int(out)), int(out_pitch),
                   None if mask is None else _vp(int(mask)), int(mask_pitch), _vp(int(stream)))

    def cuda_match_template_ptr(self, image: int, image_shape: tuple[int, int], image_pitch: int, templ: int,
                                templ_shape: tuple[int, int], templ_pitch: int, mask: int | None, mask_pitch: int,
                                result: int, result_pitch: int, stream: int = 0) -> None:
        """Queue :meth:`match_template` on device pointers (shapes (h, w), pitches in bytes; ``mask`` may be None;
        ``result`` is float32[H - h + 1, W - w + 1])."""
        H, W = (int(v) for v in image_shape)
        h, w = (int(v) for v in templ_shape)
        self._call("skyfix_cuda_match_template_ccoeff_normed", _vp(int(image)), H, W, int(image_pitch),
                   _vp(int(templ)), h, w, int(templ_pitch), None if mask is None else _vp(int(mask)), int(mask_pitch),
                   _vp(int(result)), int(result_pitch), _vp(int(stream)))

    # numpy in, numpy out, through the device -------------------------------------------------------------------
    def _upload(self, a: np.ndarray, held: list) -> int:
        a = np.ascontiguousarray(a)
        ptr = _vp()
        self._call("skyfix_cuda_malloc", ctypes.byref(ptr), max(1, a.nbytes))
        held.append(ptr.value)
        self._call("skyfix_cuda_memcpy_h2d", _vp(ptr.value), _ptr(a), a.nbytes)
        return int(ptr.value)

    def _alloc(self, nbytes: int, held: list) -> int:
        ptr = _vp()
        self._call("skyfix_cuda_malloc", ctypes.byref(ptr), max(1, int(nbytes)))
        held.append(ptr.value)
        return int(ptr.value)

    def _download(self, out: np.ndarray, ptr: int) -> np.ndarray:
        self._call("skyfix_cuda_synchronize", None)
        self._call("skyfix_cuda_memcpy_d2h", _ptr(out), _vp(ptr), out.nbytes)
        return out

    def _free(self, held: list) -> None:
        for p in held:
            self._lib.skyfix_cuda_free(_vp(p))

    def cuda_warp_bilinear(self, frame: np.ndarray, map_x: np.ndarray,
                           map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`warp_bilinear` through the current CUDA device (copies in and out; for checks and simple uses).

        Raises:
            NativeArgumentError: as :meth:`warp_bilinear`.
            NativeCudaError: no CUDA in the library, no device, a CUDA failure.
        """
        frame = np.ascontiguousarray(_uint8_image("frame", frame, "the source image"))
        map_x = np.ascontiguousarray(_float_image("map_x", map_x, "source x of each output pixel"))
        map_y = np.ascontiguousarray(_float_image("map_y", map_y, "source y of each output pixel"))
        if map_x.shape != map_y.shape:
            raise NativeArgumentError(f"map_x and map_y must have one shape [H, W], got {list(map_x.shape)} and "
                                      f"{list(map_y.shape)}")
        c = frame.shape[2] if frame.ndim == 3 else 1
        H, W = map_x.shape
        out = np.empty((H, W, c) if frame.ndim == 3 else (H, W), np.uint8)
        mask = np.empty((H, W), np.uint8)
        held: list = []
        try:
            src, mx, my = (self._upload(a, held) for a in (frame, map_x, map_y))
            d_out, d_mask = self._alloc(out.nbytes, held), self._alloc(mask.nbytes, held)
            self.cuda_warp_bilinear_ptr(src, (frame.shape[0], frame.shape[1], c), frame.shape[1] * c, mx, W * 4, my,
                                        W * 4, (H, W), d_out, W * c, d_mask, W)
            self._download(out, d_out)
            self._download(mask, d_mask)
        finally:
            self._free(held)
        return out, mask.view(bool)

    def cuda_normalize(self, images: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None,
                       dtype=np.float32, reverse_channels: bool = False) -> np.ndarray:
        """:meth:`normalize` through the current CUDA device (copies in and out)."""
        images, m, s, dt = self._normalize_args(images, mean, std, dtype)
        images = np.ascontiguousarray(images)
        n, h, w, c = images.shape
        out = np.empty((n, h, w, c) if dt == np.uint8 else (n, c, h, w), dt)
        held: list = []
        try:
            src, dst = self._upload(images, held), self._alloc(out.nbytes, held)
            self.cuda_normalize_ptr(src, images.shape, w * c, h * w * c, m, s, dt, dst,
                                    reverse_channels=reverse_channels)
            self._download(out, dst)
        finally:
            self._free(held)
        return out

    def cuda_match_template(self, image: np.ndarray, templ: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """:meth:`match_template` through the current CUDA device (copies in and out)."""
        image, templ, mask = self._match_args(image, templ, mask)
        image, templ = np.ascontiguousarray(image), np.ascontiguousarray(templ)
        H, W = image.shape
        h, w = templ.shape
        out = np.empty((H - h + 1, W - w + 1), np.float32)
        held: list = []
        try:
            d_img, d_t = self._upload(image, held), self._upload(templ, held)
            d_m = None if mask is None else self._upload(mask, held)
            d_out = self._alloc(out.nbytes, held)
            self.cuda_match_template_ptr(d_img, (H, W), W * 4, d_t, (h, w), w * 4, d_m, w, d_out,
                                         out.shape[1] * 4)
            self._download(out, d_out)
        finally:
            self._free(held)
        return out
