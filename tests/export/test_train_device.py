"""train(device=...) and the GPU recipe, exercised on the CPU: the device pair renderer (CPU torch), autocast (bf16,
and fp16 with a gradient scaler), CPU checkpoints, exact resume, the run's placement, the gpu preset and the typed
device errors (the CUDA code is the same code on another torch device; a GPU session must still run it there)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.checkpoint import load_checkpoint  # noqa: E402
from export.train import (  # noqa: E402
    PRESETS, Area, DataSplit, DeviceError, PresetError, TrainError, get_preset, train, train_device,
)


@pytest.fixture(scope="module")
def split(make_synthetic_ortho):
    return DataSplit((Area("synthetic_train", ortho=make_synthetic_ortho(seed=0)),),
                     (Area("synthetic_held_out", ortho=make_synthetic_ortho(seed=1)),))


def tiny(**kw):
    return get_preset("tiny", **kw)


def test_gpu_preset():
    g = PRESETS["gpu"]
    assert g.time_budget_s == 600.0 and g.freeze_blocks == 0 and g.batch_size >= 128
    assert g.batch_size % g.group_size == 0 and g.amp == "auto" and g.pair_renderer == "auto"
    assert g.backbone == "efficientnet_lite0" and g.pretrained
    # the CPU presets did not change
    d = PRESETS["default"]
    assert (d.batch_size, d.steps, d.freeze_blocks, d.amp, d.pair_renderer) == (32, 1100, 4, "auto", "auto")


def test_device_renderer_with_bf16_autocast_trains_and_checkpoints_on_the_cpu(tmp_path, split):
    """The GPU code path on CPU torch: pairs from export.data.gpu_pairs, bf16 autocast, 3 steps; the checkpoint
    holds CPU tensors and loads; run.json records where it ran."""
    preset = tiny(steps=3, checkpoint_every=1, pair_renderer="device", amp="bf16")
    res = train(preset, tmp_path / "bf16", split=split, progress=False)
    assert res.steps_done == 3 and all(np.isfinite(res.losses))
    ck = load_checkpoint(res.checkpoint)
    assert ck.step == 3 and ck.scaler_state is None
    assert all(t.device.type == "cpu" for t in ck.model.state_dict().values())
    raw = torch.load(res.checkpoint, weights_only=True)  # no map_location: the tensors where they were saved
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())
    info = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert info["placement"] == {"device": "cpu", "pair_renderer": "device", "amp": "bf16"}
    # the default CPU run records no placement (its run.json is what it was)
    plain = train(tiny(steps=1), tmp_path / "plain", split=split, progress=False)
    assert plain.steps_done == 1
    assert "placement" not in json.loads((tmp_path / "plain" / "run.json").read_text())


def test_device_batches_are_the_training_batches(split):
    """What train() feeds on the device for step s are _MultiPairs' samples of step s (the preset's own pair
    config: groups, photometric augmentation): the same poses, labels and masks (pixels: test_gpu_pairs.py)."""
    from export.train import _DevicePairs, _MultiPairs
    from maps.contract import EncoderContract

    preset = tiny(group_size=4, positive_jitter_m=3.0)
    c = EncoderContract("t", "t", 64, 64, 0.4, 32)
    multi = _MultiPairs(split.train, c, preset.seed, preset.pair_config(), preset.group_size, preset.group_radius_m,
                        preset.group_min_separation_m)
    dev = _DevicePairs(multi, torch.device("cpu"))
    try:
        for step in (0, 1):
            cpu, got = multi.batch(step, preset.batch_size), dev.batch(step, preset.batch_size)
            assert [(d.index, d.tries) for d in got.draws] == [(s.index, s.tries) for s in cpu]
            assert np.array_equal(got.positions, np.stack([s.position for s in cpu]))
            assert np.array_equal(got.rotation_rad, [s.rotation_rad for s in cpu])
            assert np.array_equal(got.query_mask.numpy(), np.stack([s.query_mask for s in cpu]))
            assert np.array_equal(got.positive.numpy(), np.stack([s.positive for s in cpu]))
    finally:
        dev.close()


def test_device_input_is_preprocess():
    from export.models.encoder import preprocess
    from export.train import _device_input

    imgs = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert torch.equal(_device_input(torch.from_numpy(imgs), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                       preprocess(imgs))


def test_fp16_with_grad_scaler_resumes_exactly(tmp_path, split):
    """fp16 autocast with torch.amp.GradScaler: the scaler's state goes into the checkpoint, and a resumed run gives
    the uninterrupted run's losses and weights."""
    preset = tiny(steps=4, checkpoint_every=2, pair_renderer="device", amp="fp16")
    full = train(preset, tmp_path / "full", split=split, progress=False)
    part = train(preset, tmp_path / "part", split=split, progress=False, stop_after=2)
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ck.scaler_state is not None and ck.scaler_state["scale"] > 0
    rest = train(preset, tmp_path / "part", split=split, progress=False, resume=True)
    assert part.stopped_early and rest.steps_done == 4
    assert list(full.losses[2:]) == list(rest.losses)
    a, b = load_checkpoint(full.checkpoint).model.state_dict(), load_checkpoint(rest.checkpoint).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_must_render_and_cast_as_the_run_did(tmp_path, split):
    train(tiny(steps=2), tmp_path / "r", split=split, progress=False, stop_after=1)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    run["placement"] = {"device": "cuda:0", "pair_renderer": "device", "amp": "bf16"}  # as a GPU run records it
    (tmp_path / "r" / "run.json").write_text(json.dumps(run))
    with pytest.raises(TrainError, match=r"resume with the run's --device \(it was cuda:0\)"):
        train(tiny(steps=2), tmp_path / "r", split=split, progress=False, resume=True)


def test_device_errors():
    assert train_device("cpu") == torch.device("cpu") and train_device(" CPU ") == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "gpu", "", "cuda:-1"):
        with pytest.raises(DeviceError, match=r"unknown training device|must be 'cpu', 'cuda' or 'cuda:N'"):
            train_device(bad)
    with pytest.raises(DeviceError, match="must be 'cpu', 'cuda' or 'cuda:N'"):
        train_device(0)
    if torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA GPU\\(s\\)"):
            train_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(DeviceError) as err:
            train_device("cuda")
        msg = str(err.value)
        assert "\n" not in msg and f"torch {torch.__version__} sees no CUDA GPU" in msg and "--device cpu" in msg
        with pytest.raises(DeviceError, match="sees no CUDA GPU"):
            train_device("cuda:1")


def test_amp_and_renderer_options_are_validated():
    for key, bad in (("amp", "fp32"), ("amp", True), ("pair_renderer", "gpu"), ("device_jpeg", "device")):
        with pytest.raises(PresetError, match=f"preset {key} must be one of"):
            tiny(**{key: bad})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the no-GPU error cannot happen")
def test_cli_device_cuda_without_a_gpu_fails_before_loading_data(tmp_path):
    from export import train_cli

    args = argparse.Namespace(preset="tiny", seed=None, steps=1, epochs=None, out=str(tmp_path / "x"), resume=False,
                              no_shared_data=True, no_onnx=True, device="cuda")
    with pytest.raises(DeviceError, match="--device cuda: torch .* sees no CUDA GPU"):
        train_cli.run_train(args)
    assert not (tmp_path / "x").exists()


def test_cli_parses_device():
    from export import train_cli

    parser = argparse.ArgumentParser(prog="skyfix")
    train_cli.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["train"]).device == "cpu"
    assert parser.parse_args(["train", "--preset", "gpu", "--device", "cuda:1"]).device == "cuda:1"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the same code ran on CPU torch above")
def test_cuda_training_resumes_and_loads_on_the_cpu(tmp_path, split):
    """On a GPU: --device cuda with the preset's auto AMP and renderer, interrupted and resumed; the checkpoint's
    tensors are CPU tensors; run.json records the placement."""
    preset = tiny(steps=4, checkpoint_every=2)
    part = train(preset, tmp_path / "g", split=split, progress=False, stop_after=2, device="cuda")
    rest = train(preset, tmp_path / "g", split=split, progress=False, resume=True, device="cuda")
    assert part.steps_done == 2 and rest.steps_done == 4 and all(np.isfinite(part.losses + rest.losses))
    raw = torch.load(rest.checkpoint, weights_only=True)
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())
    assert load_checkpoint(rest.checkpoint).step == 4
    placement = json.loads((tmp_path / "g" / "run.json").read_text())["placement"]
    assert placement["pair_renderer"] == "device" and placement["amp"] in ("bf16", "fp16")
    with pytest.raises(TrainError, match="resume with the run's --device"):
        train(preset, tmp_path / "g", split=split, progress=False, resume=True, device="cpu")
