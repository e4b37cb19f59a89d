"""runtime.native's loader: where it looks, what it says when the library is missing, unloadable, foreign or of
another ABI; what the host-only library reports about CUDA."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime import native
from runtime.errors import OnboardError


def test_errors_are_onboard_errors():
    for cls in (native.NativeLibraryError, native.NativeArgumentError, native.NativeCudaError):
        assert issubclass(cls, native.NativeError) and issubclass(cls, OnboardError)


def test_env_var_names_the_library(host_lib, monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, str(host_lib.path))
    assert native.find_library() == host_lib.path
    monkeypatch.setenv(native.ENV_VAR, str(host_lib.path.parent))  # a folder holding it
    assert native.find_library() == host_lib.path
    assert native.load() is native.load(host_lib.path)  # loaded once per file


def test_env_var_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(native.NativeLibraryError) as e:
        native.find_library()
    msg = str(e.value)
    assert f"{native.ENV_VAR}=" in msg and "nope.so" in msg and "unset it" in msg
    assert native.BUILD_COMMAND in msg
    lib, reason = native.try_load()
    assert lib is None and reason == msg


def test_env_var_folder_without_library(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, str(tmp_path))
    with pytest.raises(native.NativeLibraryError, match=r"looked for .*" + native.library_filename()):
        native.find_library()


def test_explicit_path_pointing_nowhere(tmp_path):
    with pytest.raises(native.NativeLibraryError, match="path=.*pass no path"):
        native.find_library(tmp_path / "missing")


def test_default_location_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(native.ENV_VAR, raising=False)
    monkeypatch.setattr(native, "_PACKAGE_ROOT", tmp_path)  # a checkout without build/native
    expected = tmp_path / "build" / "native" / native.library_filename()
    assert native.default_locations() == [expected]
    with pytest.raises(native.NativeLibraryError) as e:
        native.load()
    msg = str(e.value)
    assert "was not found" in msg and f"{native.ENV_VAR} is not set" in msg and str(expected) in msg
    assert native.BUILD_COMMAND in msg and "cmake" in msg


def test_default_location_found(host_lib, tmp_path, monkeypatch):
    monkeypatch.delenv(native.ENV_VAR, raising=False)
    monkeypatch.setattr(native, "_PACKAGE_ROOT", tmp_path)
    (tmp_path / "build" / "native").mkdir(parents=True)
    shutil.copy(host_lib.path, tmp_path / "build" / "native" / native.library_filename())
    lib = native.load()
    assert lib.path == (tmp_path / "build" / "native" / native.library_filename()).resolve()
    assert lib.version == host_lib.version


def test_not_a_shared_library(tmp_path):
    fake = tmp_path / native.library_filename()
    fake.write_text("not an ELF file\n")
    with pytest.raises(native.NativeLibraryError, match="could not load the skyfix_native library .*rebuild it"):
        native.load(fake)


def test_another_library_is_refused():
    """A real shared library that is not skyfix_native (numpy's extension module)."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 / numpy 1
    other = Path(core._multiarray_umath.__file__)
    with pytest.raises(native.NativeLibraryError, match=r"is not a skyfix_native library of ABI 1 \(it lacks "
                                                        r"skyfix_native_abi_version"):
        native.load(other)


def test_other_abi_version_is_refused(native_builds):
    folder = native_builds.build("-DSKYFIX_NATIVE_CUDA=OFF", "-DCMAKE_CXX_FLAGS=-DSKYFIX_NATIVE_ABI_VERSION=99")
    with pytest.raises(native.NativeLibraryError, match="has ABI version 99 but this SkyFix speaks 1; rebuild"):
        native.load(folder)


def test_portable_build_gives_the_same_results(native_builds, host_lib):
    """The library without the GCC/Clang vector code (what other compilers build) computes the same values."""
    lib = native.load(native_builds.build("-DSKYFIX_NATIVE_CUDA=OFF", "-DCMAKE_CXX_FLAGS=-DSKYFIX_NATIVE_NO_VECTOR"))
    rng = np.random.default_rng(8)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mx = rng.uniform(-3, 163, (64, 70)).astype(np.float32)
    my = rng.uniform(-3, 123, (64, 70)).astype(np.float32)
    for a, b in zip(lib.warp_bilinear(frame, mx, my), host_lib.warp_bilinear(frame, mx, my)):
        np.testing.assert_array_equal(a, b)
    image = rng.random((84, 84)).astype(np.float32) * 255
    templ = image[7:71, 11:75] + rng.normal(0, 4, (64, 64)).astype(np.float32)
    mask = (rng.random((64, 64)) > 0.1).astype(np.uint8)
    assert np.abs(lib.match_template(image, templ, mask) - host_lib.match_template(image, templ, mask)).max() <= 1e-6


def test_host_library_reports_no_cuda(host_lib):
    assert host_lib.has_cuda is False and host_lib.cuda_architectures == ""
    count, reason = host_lib.cuda_device_count()
    assert count == 0 and "built without CUDA" in reason and "-DSKYFIX_NATIVE_CUDA=ON" in reason
    info = host_lib.info()
    assert info["cuda_compiled"] is False and info["cuda_devices"] == 0 and info["abi"] == native.ABI_VERSION
    assert "host only" in repr(host_lib)


def test_host_library_cuda_calls_raise(host_lib):
    images = np.zeros((1, 4, 4, 3), np.uint8)
    calls = [
        lambda: host_lib.cuda_normalize(images, (0, 0, 0), (1, 1, 1)),
        lambda: host_lib.cuda_warp_bilinear(images[0], np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)),
        lambda: host_lib.cuda_match_template(np.zeros((4, 4), np.float32), np.zeros((2, 2), np.float32)),
        lambda: host_lib.cuda_normalize_ptr(1, (1, 4, 4, 3), 12, 48, (0, 0, 0), (1, 1, 1), np.float32, 2),
        lambda: host_lib.cuda_device_info(0),
        lambda: host_lib.cuda_set_device(0),
    ]
    for call in calls:
        with pytest.raises(native.NativeCudaError, match="built without CUDA; rebuild it on a machine with the CUDA "
                                                         "toolkit"):
            call()
    assert "built without CUDA" in host_lib.last_error()


def test_last_error_is_cleared_by_a_good_call(host_lib):
    with pytest.raises(native.NativeArgumentError):
        host_lib._call("skyfix_f32_to_f16", None, None, 1)
    assert "NULL" in host_lib.last_error()
    host_lib.f32_to_f16(np.zeros(3, np.float32))
    assert host_lib.last_error() == ""
