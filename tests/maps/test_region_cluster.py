"""Region builds on a Ray cluster the driver joins (``--address``), as across machines: a head started with
``ray start --head`` in its own process group (workers there do not run in the driver's folder), and the typed
errors of an address where no cluster answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the region extra (pip install 'skyfix[region]') is not installed")

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"  # the head and the driver alike (Ray >= 2.59 turns it on for `ray start`)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def ray_head():
    """The address ``ray start --head`` prints, of a 2-CPU head run by this module (stopped at its end)."""
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.exists():
        pytest.skip(f"the ray command is not next to {sys.executable}")
    proc = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(_free_port()), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True)
    address, seen = None, []
    try:
        for line in proc.stdout:
            seen.append(line)
            m = re.search(r"ray start --address='([^']+)'", line)
            if m:
                address = m.group(1)
                break
        if address is None:
            pytest.fail("ray start --head printed no address:\n" + "".join(seen[-30:]))
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # --block stops the head's processes on Ctrl-C
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # `ray start` left the head's address for `auto` (`ray stop` would remove it, and every Ray process with it)
        for tmp in {os.environ.get("RAY_TMPDIR", ""), tempfile.gettempdir(), "/tmp"} - {""}:
            f = Path(tmp) / "ray" / "ray_current_cluster"
            if address and f.is_file() and f.read_text().strip() == address:
                f.unlink()


def _skyfix(args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "runtime.cli.skyfix", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A folder holding ``src.tif``, a 600 x 500 m synthetic orthophoto."""
    import cv2
    import numpy as np

    from maps.geodesy import LocalFrame
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto

    root = tmp_path_factory.mktemp("cluster")
    noise = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((1000, 1200, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    write_geotiff(root / "src.tif", Orthophoto(img, np.ones((1000, 1200), bool), 0.5, -300.0, 250.0,
                                               LocalFrame(46.5, 7.5)))
    return root


def test_a_build_on_a_cluster_the_driver_joins(ray_head, source):
    """The source is given relative to the driver's folder: the plan holds absolute paths, so the cluster's workers
    (started by the head, elsewhere) find it. The manifest names the cluster; a rerun resumes nothing and refuses."""
    from maps.region import read_region_manifest, verify_region

    r = _skyfix(["maps", "build-region", "src.tif", "-o", "c.region", "--address", ray_head, "--model", "classical",
                 "--shard-km", "0.25"], cwd=source)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "built 6 shards, 0 resumed" in r.stderr
    m = read_region_manifest(source / "c.region")
    assert m.build["cluster"]["address"] == ray_head and m.build["cluster"]["nodes"] == 1
    assert m.build["sources"] == [str(source / "src.tif")]
    assert verify_region(source / "c.region").ok
    again = _skyfix(["maps", "build-region", "src.tif", "-o", "c.region", "--address", ray_head, "--model",
                     "classical", "--shard-km", "0.25"], cwd=source)
    assert again.returncode == 2 and "is already built; pass --overwrite" in again.stderr


def test_without_address_a_local_instance_even_beside_a_cluster(ray_head, source):
    """No --address: a Ray instance of the build's own, even where RAY_ADDRESS names a running cluster (ray.init
    would join it, and refuse the CPU count)."""
    from maps.region import read_region_manifest

    env = dict(_env(), RAY_ADDRESS=ray_head)
    r = subprocess.run([sys.executable, "-m", "runtime.cli.skyfix", "maps", "build-region", "src.tif", "-o",
                        "l.region", "--model", "classical", "--shard-km", "0.25", "--workers", "2"], cwd=source,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_region_manifest(source / "l.region").build["cluster"]["address"] == "local"


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{closed}", r"no Ray cluster answers at --address '127\.0\.0\.1:\d+' \(127\.0\.0\.1:\d+: Connection refused\)"),
    ("ray://nohost.invalid:10001", r"no Ray cluster answers at --address 'ray://nohost\.invalid:10001'"),
    ("head-node", r"--address 'head-node' is not host:port, ray://host:port or auto"),
    ("head:99999", r"--address 'head:99999' is not host:port"),
])
def test_an_address_without_a_cluster_fails_fast_and_writes_nothing(source, address, message):
    address = address.format(closed=_free_port())
    t0 = time.perf_counter()
    r = _skyfix(["maps", "build-region", "src.tif", "-o", "x.region", "--address", address, "--model", "classical",
                 "--shard-km", "0.25"], cwd=source, timeout=120)
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr[-2000:]
    assert "ray start --head" in r.stderr and "Traceback" not in r.stderr
    assert time.perf_counter() - t0 < 30.0  # Ray alone retries such an address for minutes
    assert not (source / "x.region").exists()


def test_check_ray_address_accepts_the_forms_ray_takes():
    from maps.errors import MapError
    from maps.region_build import check_ray_address

    check_ray_address("auto")  # left to Ray
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        check_ray_address(f"127.0.0.1:{port}")
        check_ray_address(f"ray://127.0.0.1:{port}")
    for bad in ("", "   ", "ray://", ":6379", "host:port"):
        with pytest.raises(MapError, match="--address"):
            check_ray_address(bad)
    with pytest.raises(MapError, match="--address must be"):
        check_ray_address(None)  # type: ignore[arg-type]
