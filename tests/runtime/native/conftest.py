"""Builds of the skyfix_native library for its tests: configured and built with cmake into temporary folders, once per
session.

* ``host_lib``: the host part only (``-DSKYFIX_NATIVE_CUDA=OFF``): every machine with cmake and a C++ compiler.
* ``cuda_lib``: with the CUDA kernels (``-DSKYFIX_NATIVE_CUDA=ON``) where nvcc is found; compiling ``.cu`` files
  needs no driver or GPU. The architectures are the GPU's own when ``nvidia-smi`` reports one, else the CMake
  default (72/87/90 as the nvcc supports them).
* ``gpu_lib``: ``cuda_lib`` on a machine with a CUDA device.

Each skips with the reason when a tool is missing (cmake, a C++ compiler, a build tool, nvcc, a GPU); once the tools
are there, a failing configure or build is a test error, with cmake's output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BUILD_TIMEOUT_S = 600


def _tool(*names: str) -> str | None:
    """A program on PATH or next to this Python (a venv's pip-installed cmake/ninja when the venv is not active)."""
    here = Path(sys.executable).parent
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=str(here))
        if found:
            return found
    return None


def _nvcc() -> str | None:
    env = os.environ.get("CUDACXX")
    if env and Path(env).is_file():
        return env
    return shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if Path(p).is_file()), None)


def _gpu_arch() -> str | None:
    """The first GPU's compute capability as a CMake architecture ("90"), None without a GPU or nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return first.replace(".", "") if first.replace(".", "").isdigit() else None


class NativeBuilds:
    """Configures and builds the library once per set of options; remembers the build time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.builds: dict[tuple, Path] = {}
        self.seconds: dict[tuple, float] = {}

    def tools(self) -> tuple[str, list[str]]:
        """(cmake, generator arguments), or skip with the missing tool."""
        cmake = _tool("cmake")
        if cmake is None:
            pytest.skip("cmake is not installed (pip install cmake, or the `test` extra: pip install -e '.[test]'); "
                        "the skyfix_native library cannot be built")
        if not (os.environ.get("CXX") or _tool("c++", "g++", "clang++")):
            pytest.skip("no C++ compiler (c++, g++ or clang++ on PATH, or CXX) to build skyfix_native")
        ninja = _tool("ninja")
        if ninja:
            return cmake, ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        if _tool("make", "gmake"):
            return cmake, []
        pytest.skip("neither ninja nor make is installed (pip install ninja): cmake has no build tool")

    def build(self, *options: str) -> Path:
        """The build folder of the library configured with ``options`` (``-D...`` arguments)."""
        key = tuple(options)
        if key in self.builds:
            return self.builds[key]
        cmake, generator = self.tools()
        folder = self.root / f"build{len(self.builds)}"
        t0 = time.perf_counter()
        for cmd in ([cmake, "-S", str(REPO), "-B", str(folder), *generator, "-DCMAKE_BUILD_TYPE=Release", *options],
                    [cmake, "--build", str(folder), "-j", "2"]):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{' '.join(cmd)}` ran over {BUILD_TIMEOUT_S} s")
            if out.returncode != 0:
                pytest.fail(f"`{' '.join(cmd)}` failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        self.seconds[key] = time.perf_counter() - t0
        self.builds[key] = folder
        return folder


@pytest.fixture(scope="session")
def native_builds(tmp_path_factory) -> NativeBuilds:
    return NativeBuilds(tmp_path_factory.mktemp("skyfix_native"))


@pytest.fixture(scope="session")
def host_lib(native_builds):
    """The host-only library, loaded (``runtime.native.NativeLib``)."""
    from runtime import native

    return native.load(native_builds.build("-DSKYFIX_NATIVE_CUDA=OFF"))


@pytest.fixture(scope="session")
def cuda_lib(native_builds):
    """The library with the CUDA kernels compiled in, loaded; skips without nvcc."""
    from runtime import native

    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc (the CUDA toolkit) is not installed: the CUDA kernels cannot be compiled here")
    options = ["-DSKYFIX_NATIVE_CUDA=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    arch = _gpu_arch()
    if arch:
        options.append(f"-DSKYFIX_CUDA_ARCHITECTURES={arch}")
    return native.load(native_builds.build(*options))


@pytest.fixture(scope="session")
def gpu_lib(cuda_lib):
    """``cuda_lib`` on a machine with a CUDA device; skips (with the CUDA runtime's reason) without one."""
    count, reason = cuda_lib.cuda_device_count()
    if count == 0:
        pytest.skip(f"no CUDA device: {reason}")
    cuda_lib.cuda_set_device(0)
    return cuda_lib
