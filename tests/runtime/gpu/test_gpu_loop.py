"""The Localizer with its torch stages (device "torch:cpu": the GPU code path on the CPU) against the CPU Localizer on
a simulated flight over a real orthophoto: frame by frame from the same state (lockstep), and the whole track; the
device setting's errors; no torch import on the CPU path; ``runtime bench --device`` per-stage device times."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.events import Frame
from runtime.localizer import Localizer

from .parity import ORTHO

REPO = Path(__file__).resolve().parents[3]
#: Localizer attributes that are its stages, set-up or read-only: not copied between the two loops in lockstep
_OWN = {"package", "encoder", "stages", "_viewer", "_aligner", "_camera", "_imagery_checked", "likelihood"}


@pytest.fixture(scope="module")
def flight(shared_data, tmp_path_factory):
    """(map package, encoder, bag, events with IMU, events without) of an 8 s simulated flight over zurich_a.

    The map is loaded without HNSW, so the CPU path's search is exact too (with HNSW, whole-map and wide-scope
    queries are approximate on the CPU and exact on the device; that is a difference of method, not of parity)."""
    pytest.importorskip("rasterio")
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage
    from runtime.bags import BagReader
    from runtime.encoder import load_encoder
    from runtime.feed import ROLES
    from runtime.sim.config import SimConfig
    from runtime.sim.flight import simulate

    path = shared_data(ORTHO)
    enc = load_encoder("classical")
    root = tmp_path_factory.mktemp("gpu_loop")
    map_dir = build_map(load_orthophoto(path), enc, enc.contract, root / "map")
    bag = root / "flight.bag"
    simulate(SimConfig(ortho=str(path), out=str(bag), duration_s=8.0, altitude_m=70.0, seed=4))
    with BagReader(bag) as r:
        events = list(r.events(roles=ROLES))
    no_imu = [e for e in events if type(e).__name__ != "ImuSample"]
    return MapPackage.load(map_dir, hnsw="off"), enc, bag, events, no_imu


def _sync(dst: Localizer, src: Localizer) -> None:
    """Give ``dst`` the state of ``src`` (tracker, height, IMU integration, odometry reference, ...)."""
    for k, v in vars(src).items():
        if k not in _OWN:
            setattr(dst, k, copy.deepcopy(v))


@pytest.mark.parametrize("imu", [True, False], ids=["imu", "no_imu"])
def test_every_frame_measures_the_same_from_the_same_state(flight, imu):
    """Lockstep: before each frame the torch loop takes the CPU loop's state; the frame's candidates (retrieved tiles,
    fine-aligned positions) and the estimate after it must agree. Without IMU each frame has one view per heading
    hypothesis (8), so every stage runs on many views."""
    pkg, enc, _, events, no_imu = flight
    cpu, dev = Localizer(pkg, enc), Localizer(pkg, enc, device="torch:cpu")
    assert cpu.stages is None and dev.stages is not None
    frames, aligned, est_d = 0, 0, []
    worst, worst_wrong = np.zeros(5), np.zeros(3)
    for ev in events if imu else no_imu:
        if isinstance(ev, Frame):
            _sync(dev, cpu)
        a, b = cpu.process(ev), dev.process(ev)
        if not isinstance(ev, Frame):
            continue
        frames += 1
        ca, cb = cpu.last_candidates, dev.last_candidates
        # retrieval: the same tiles in the same order, cosines within float rounding (the views differ by 1 DN
        # on a few pixels at most); tile centres move with the predicted turn tilt, which the velocity from ground
        # odometry of those views moves by ~1e-6 m
        assert ca.retrieved.shape == cb.retrieved.shape
        assert np.allclose(ca.retrieved[:, :2], cb.retrieved[:, :2], rtol=0.0, atol=1e-4)
        assert np.abs(ca.retrieved[:, 2] - cb.retrieved[:, 2]).max() < 1e-4
        # fine alignment: the same candidates aligned, the same positions, scores, sigmas, gates
        assert ca.aligned.shape == cb.aligned.shape
        if ca.aligned.size:
            d = np.abs(ca.aligned - cb.aligned)
            moved = np.hypot(d[:, 0], d[:, 1])
            usable = ca.aligned[:, 2] >= cpu.config.align_min_score
            rel_peak = d[:, 4] / ca.aligned[:, 4]
            worst = np.maximum(worst, [moved[usable].max(initial=0.0), d[usable, 2].max(initial=0.0),
                                       d[usable, 3].max(initial=0.0), rel_peak[usable].max(initial=0.0),
                                       d[:, 5].max()])
            worst_wrong = np.maximum(worst_wrong, [moved[~usable].max(initial=0.0), d[~usable, 2].max(initial=0.0),
                                                   d[~usable, 3].max(initial=0.0)])
            aligned += len(ca.aligned)
        est_d.append(math.hypot(a.estimate.x - b.estimate.x, a.estimate.y - b.estimate.y))
    assert frames == 40 and aligned >= 80
    # positions the loop can use (NCC >= align_min_score): position, NCC, sigma, peak ratio as the CPU's, no gate
    # flipped. Measured (with / without IMU), OpenCV 5.1: positions 1.9e-5 / 1.5e-5 m, NCC 8e-7 / 1.3e-6, sigma
    # 8.3e-5 / 1.8e-6 m; OpenCV 4.14 (coordinates rounded to 1/32 px, so a tiny difference of the maps can move
    # a sample by a whole step): 8.1e-5 / 8.9e-5 m, 1.6e-5 / 2.5e-6, 7.2e-5 / 4.5e-6 m. Wrong places (NCC ~0.1-0.4,
    # never used) have flat peaks whose sub-pixel vertex moves further (runtime/gpu/align.py): 2.3e-4 m with 5.1,
    # 1.4e-3 m with 4.14
    assert worst[0] < 1e-3 and worst[1] < 1e-4 and worst[2] < 1e-3 and worst[3] < 1e-3 and worst[4] == 0.0
    assert worst_wrong[0] < 0.5
    # the particle filter's resampling may still turn a 1e-6 difference into another particle set: measured 5e-4 m
    est_d = np.array(est_d)
    assert np.mean(est_d < 1e-3) >= 0.9 and est_d.max() < 0.5


def test_the_replayed_track_matches_the_cpu_track(flight):
    """Closed loop: the two loops run on their own. The particle filter amplifies the stages' float-rounding
    differences once its resampling picks another particle (measured: with OpenCV 5.1 the first difference at frame
    3, 1e-4 m; with 4.14 at frame 0, 6 mm), so the tracks differ by the filter's own noise, not by accuracy: both
    are compared with the truth. That the stages agree frame by frame is the lockstep test above."""
    from runtime.tools.evaluation import evaluate_track
    from runtime.feed import run_events

    pkg, enc, bag, events, _ = flight
    cpu = run_events(Localizer(pkg, enc), events)
    dev = run_events(Localizer(pkg, enc, device="torch:cpu"), events)
    assert len(cpu) == len(dev) == 40
    assert [r.t_ns for r in cpu] == [r.t_ns for r in dev]
    diff = np.array([math.hypot(a.x_m - b.x_m, a.y_m - b.y_m) for a, b in zip(cpu, dev)])
    assert np.median(diff) < 0.5 and diff.max() < 1.5  # measured: median 0.17 m, max 0.52 m
    ec, ed = evaluate_track(cpu, bag).estimate["all"], evaluate_track(dev, bag).estimate["all"]
    assert abs(ec.median_m - ed.median_m) < 0.3 and ed.p95_m <= ec.p95_m + 0.5
    assert [r.status for r in cpu].count("OK") - [r.status for r in dev].count("OK") in (-1, 0, 1)


def _fresh(events):
    """The events with every frame rebuilt from its encoded bytes (a Frame keeps what it decoded once)."""
    return [Frame(e.t_ns, image=e.encoded, camera=e.camera, topic=e.topic, frame_id=e.frame_id)
            if isinstance(e, Frame) and e.encoded is not None else e for e in events]


def test_frames_decoded_on_the_device_give_the_same_track(flight):
    """A JPEG decoded by the stages' decoder goes straight into the device frame, never through the host image: with
    OpenCV's decode as the device callable (no GPU here; the same pixels), the track is the host-decoded track to
    the bit, every frame was decoded there, and a corrupt JPEG is the same counted skip."""
    import torch

    from runtime.feed import run_events
    from runtime.gpu.decode import JpegDecoder

    from .test_gpu_decode import host_chw

    pkg, enc, _, events, _ = flight
    events = list(events)
    bad = next(i for i, e in enumerate(events) if isinstance(e, Frame) and i > 20)
    events.insert(bad, Frame(events[bad].t_ns - 1, image=b"\xff\xd8\xff\xe0 truncated", camera=events[bad].camera,
                             topic=events[bad].topic))
    host = Localizer(pkg, enc, device="torch:cpu")
    assert not host.stages.jpeg.available  # off CUDA the stages decode nothing themselves
    ref = run_events(host, _fresh(events))
    dev = Localizer(pkg, enc, device="torch:cpu")
    dev.stages.jpeg = JpegDecoder(torch.device("cpu"), host_chw)
    fresh = _fresh(events)
    got = run_events(dev, fresh)
    assert [(r.t_ns, r.x_m, r.y_m, r.status) for r in got] == [(r.t_ns, r.x_m, r.y_m, r.status) for r in ref]
    assert dev.stages.jpeg.decoded == 40 and dev.stages.jpeg.fallbacks == 1  # the truncated one: refused there
    assert not any(e.is_decoded for e in fresh if isinstance(e, Frame) and e.t_ns != events[bad].t_ns)
    assert dev.counts["frames_undecodable"] == host.counts["frames_undecodable"] == 1
    # a device decoder that cannot work here is switched off after its first refusals, with a note; the track is the
    # host-decoded one still

    def broken(data):
        raise RuntimeError("image extension not loaded")

    off = Localizer(pkg, enc, device="torch:cpu")
    off.stages.jpeg = JpegDecoder(torch.device("cpu"), broken)
    got = run_events(off, _fresh(events))
    assert [(r.t_ns, r.x_m, r.y_m) for r in got] == [(r.t_ns, r.x_m, r.y_m) for r in ref]
    assert off.stages.jpeg.fallbacks == JpegDecoder.MAX_REFUSALS and not off.stages.jpeg.available
    assert sum("device JPEG decoder refused the first 3 frames" in n for n in off.notes) == 1


def test_device_setting_errors(flight):
    import torch

    from runtime.gpu import DeviceError

    pkg, enc, *_ = flight
    with pytest.raises(DeviceError, match=r"unknown loop device 'gpu'.*'cpu'.*'cuda'.*'torch:cpu'"):
        Localizer(pkg, enc, device="gpu")
    with pytest.raises(DeviceError, match="must be a string"):
        Localizer(pkg, enc, device=0)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="sees no CUDA GPU.*--device cpu"):
            Localizer(pkg, enc, device="cuda")
    assert Localizer(None, None, device="cuda:3").stages is None  # GPS alone: no stages to place


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_the_cpu_path_never_imports_torch(flight):
    pkg, _, bag, *_ = flight
    code = f"""
import sys
from maps.package import MapPackage
from runtime.bags import BagReader
from runtime.encoder import load_encoder
from runtime.localizer import Localizer
from runtime.feed import ROLES, run_events
pkg = MapPackage.load({str(pkg.path)!r}, hnsw="off")
loop = Localizer(pkg, load_encoder("classical"), device="cpu")
with BagReader({str(bag)!r}) as r:
    events = [e for _, e in zip(range(60), r.events(roles=ROLES))]
print(len(run_events(loop, events)), "torch" in sys.modules)
"""
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    n, imported = out.stdout.split()
    assert int(n) > 0 and imported == "False"


def test_missing_torch_is_a_typed_error_naming_the_extra(flight):
    pkg, *_ = flight
    code = f"""
import sys
sys.modules["torch"] = None  # as if torch were not installed
from maps.package import MapPackage
from runtime.encoder import load_encoder
from runtime.errors import MissingExtraError
from runtime.localizer import Localizer
try:
    Localizer(MapPackage.load({str(pkg.path)!r}, hnsw="off"), load_encoder("classical"), device="cuda")
except MissingExtraError as exc:
    print("MissingExtraError:", exc)
"""
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    assert "MissingExtraError:" in out.stdout and "pip install 'skyfix[train]'" in out.stdout, out.stdout


def test_bench_prints_per_stage_device_times(flight, tmp_path, capsys):
    from runtime.cli.onboard import main as runtime_main

    pkg, *_ = flight
    js = tmp_path / "bench.json"
    assert runtime_main(["bench", "--map", str(pkg.path), "--device", "torch:cpu", "--frames", "4", "--warmup", "2",
                         "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "device cpu (wall clock, per frame)" in out
    r = json.loads(js.read_text())
    assert r["device"] == "cpu" and r["frames"] == 4
    stages = r["device_stages_ms"]
    assert set(stages) == {"rectify", "search", "align"}
    assert all(v["frames"] == 4 and 0 < v["p50"] <= v["p90"] <= v["p99"] for v in stages.values())


def test_bench_on_cuda_times_stages_with_cuda_events(flight, tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the torch.cuda.Event timing runs only on one")
    from runtime.cli.onboard import main as runtime_main

    pkg, *_ = flight
    js = tmp_path / "bench.json"
    assert runtime_main(["bench", "--map", str(pkg.path), "--device", "cuda", "--frames", "20", "--warmup", "5",
                         "--json", str(js)]) == 0
    assert "(torch.cuda.Event, per frame)" in capsys.readouterr().out
    r = json.loads(js.read_text())
    from runtime.gpu.decode import device_jpeg_decode

    # the bench's frames are JPEG: with torchvision installed they are decoded on the GPU, a stage of its own
    decode = {"decode"} if device_jpeg_decode(torch.device("cuda:0")) is not None else set()
    assert r["device"] == "cuda:0" and set(r["device_stages_ms"]) == {"rectify", "search", "align"} | decode
