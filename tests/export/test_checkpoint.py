"""export.checkpoint: weights-only round trip, contract, and refusals."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from export.checkpoint import FORMAT, load_checkpoint, save_checkpoint  # noqa: E402
from export.errors import CheckpointError  # noqa: E402
from export.models.encoder import EncoderConfig, build_encoder  # noqa: E402


def test_round_trip_keeps_weights_optimizer_and_contract(tmp_path):
    torch.manual_seed(0)
    config = EncoderConfig(dim=64)
    model = build_encoder(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 128, 128)
    a, b = model(x, x)
    (a - b).pow(2).sum().add(a.sum()).backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model, config, ground_resolution_m=0.4, name="t", optimizer=opt,
                           epoch=3, step=17, metrics={"r1": 0.25})
    ck = load_checkpoint(path)
    model.eval()
    assert torch.equal(model.encode_camera(x), ck.model.encode_camera(x))
    assert (ck.epoch, ck.step, ck.metrics) == (3, 17, {"r1": 0.25})
    opt2 = torch.optim.AdamW(ck.model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    c = ck.contract
    assert (c.input_width, c.ground_resolution_m, c.embedding_dim, c.name) == (128, 0.4, 64, "t")
    assert len(c.encoder_id) == 16
    assert not (tmp_path / "c.pt.partial").exists()


def test_refuses_other_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=f"expected {FORMAT!r}"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "junk.pt")


def test_refuses_weights_that_do_not_fit_the_config(tmp_path):
    model = build_encoder(EncoderConfig(dim=64))
    save_checkpoint(tmp_path / "c.pt", model, EncoderConfig(dim=32), ground_resolution_m=0.4, name="t")
    with pytest.raises(CheckpointError, match="do not fit its config"):
        load_checkpoint(tmp_path / "c.pt")
