"""`skyfix export torch`: a small_cnn checkpoint -> torch.export programs (.pt2, fp32/fp16/bf16) with a dynamic batch,
uint8 NHWC in, float32 unit rows out, the contract in skyfix.json; parity with the ONNX export of the same checkpoint
at batch 1, 3 and 16 through the torch and ONNX Runtime backends and through runtime.encoder.load_encoder; the CLI
and every error message of the command."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export import cli  # noqa: E402
from export.errors import CheckpointError  # noqa: E402
from export.onnx_export import EXTRA_PREFIX, INPUT_NAME, OUTPUT_NAME, export_onnx, sample_images  # noqa: E402
from export.torch_export import (  # noqa: E402
    EXTRA_FILE, MAX_BATCH, TOLERANCES, TorchExportError, TorchParityError, check_program_parity, compare,
    export_torch, reduced_precision,
)
from maps.contract import EncoderContract  # noqa: E402
from runtime.cli.common import run_handler  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
DIM = 64
BATCHES = (1, 3, 16)


def _checkpoint(path: Path, shared: bool, seed: int = 0) -> Path:
    import torch

    from export.checkpoint import save_checkpoint
    from export.models.encoder import EncoderConfig, build_encoder

    torch.manual_seed(seed)
    config = EncoderConfig(backbone="small_cnn", dim=DIM, input_size=SIZE, shared=shared)
    return save_checkpoint(path, build_encoder(config), config, ground_resolution_m=0.5, name="test-small")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, onnx path, {precision: ExportedProgramFile}) of one shared-weights small_cnn checkpoint."""
    from export.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("torch_export")
    ckpt = load_checkpoint(_checkpoint(root / "shared.pt", shared=True))
    (onnx_file,) = export_onnx(ckpt, root / "enc.onnx")
    programs = {}
    for precision in ("fp32", "fp16", "bf16"):
        (programs[precision],) = export_torch(ckpt, root / f"enc.{precision}.pt2", precision=precision)
    return ckpt, onnx_file.path, programs


def _infer(path: Path, images: np.ndarray) -> np.ndarray:
    from runtime.backends import load_backend

    backend = load_backend(path, device="cpu", threads=1) if path.suffix == ".onnx" else load_backend(path, device="cpu")
    try:
        return backend.infer({INPUT_NAME: images})[OUTPUT_NAME]
    finally:
        backend.close()


def test_modules_import_without_torch():
    code = ("import sys, export.torch_export, export.cli, runtime.backends.torch_backend, runtime.backends.cuda_graphs\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_export_reports_parity_within_the_stated_bounds(exported):
    _, _, programs = exported
    for precision, result in programs.items():
        tol = TOLERANCES[precision]
        assert result.precision == precision and result.branch == "shared" and result.path.is_file()
        assert 0.0 <= result.max_abs_diff <= tol.max_abs and tol.min_cosine <= result.min_cosine <= 1.0 + 1e-9
    assert programs["fp32"].max_abs_diff <= 1e-4
    # reduced precision is measurably not float32 (the check would pass vacuously if the cast were lost)
    assert programs["fp16"].max_abs_diff > 1e-6 and programs["bf16"].max_abs_diff > programs["fp16"].max_abs_diff


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_parity_with_the_onnx_export_at_dynamic_batches(exported, precision):
    """The .pt2 through the torch backend against the FP32 ONNX through ONNX Runtime, batch 1, 3 and 16."""
    _, onnx_path, programs = exported
    tol = TOLERANCES[precision]
    for n in BATCHES:
        images = sample_images(n, SIZE, seed=20 + n)
        ref = _infer(onnx_path, images)
        got = _infer(programs[precision].path, images)
        assert got.shape == ref.shape == (n, DIM) and got.dtype == np.float32
        diff, cos = compare(got, ref)
        assert diff <= (1e-4 if precision == "fp32" else tol.max_abs), (precision, n, diff)
        assert cos >= tol.min_cosine, (precision, n, cos)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_load_encoder_gives_the_onnx_embeddings(exported):
    from runtime.encoder import load_encoder

    ckpt, onnx_path, programs = exported
    with load_encoder(str(programs["fp32"].path)) as pt2, load_encoder(str(onnx_path)) as onnx_enc:
        assert pt2.contract == onnx_enc.contract == ckpt.contract
        assert pt2.backend.name == "torch" and onnx_enc.backend.name == "onnxruntime"
        assert pt2.max_batch is None and pt2.input_size == (SIZE, SIZE) and pt2.embedding_dim == DIM
        for n in BATCHES:
            images = sample_images(n, SIZE, seed=40 + n)
            a, b = pt2(images), onnx_enc(images)
            assert a.shape == (n, DIM) and np.max(np.abs(a - b)) <= 1e-4


def test_contract_travels_in_skyfix_json(exported):
    from runtime.backends import load_backend

    ckpt, _, programs = exported
    for precision, result in programs.items():
        with zipfile.ZipFile(result.path) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("/extra/" + EXTRA_FILE)]
            info = json.loads(archive.read(name))
        assert set(info) == {"metadata", "inputs", "outputs"}
        meta = info["metadata"]
        assert meta == result.metadata and EncoderContract.from_metadata(meta) == ckpt.contract
        assert meta[EXTRA_PREFIX + "precision"] == precision and meta[EXTRA_PREFIX + "format"] == "torch.export"
        assert meta[EXTRA_PREFIX + "input_layout"] == "NHWC" and meta[EXTRA_PREFIX + "input_dtype"] == "uint8"
        assert meta[EXTRA_PREFIX + "input_normalization"] == "in_graph" and meta[EXTRA_PREFIX + "branch"] == "shared"
        assert EXTRA_PREFIX + "opset" not in meta  # not an ONNX model
        assert info["inputs"] == [{"name": INPUT_NAME, "shape": [None, SIZE, SIZE, 3], "dtype": "uint8"}]
        assert info["outputs"] == [{"name": OUTPUT_NAME, "shape": [None, DIM], "dtype": "float32"}]
        with load_backend(result.path, device="cpu") as backend:
            assert backend.contract == ckpt.contract
            assert [s.describe() for s in backend.inputs] == [f"images[?,{SIZE},{SIZE},3] uint8"]
            assert [s.describe() for s in backend.outputs] == [f"embedding[?,{DIM}] float32"]


def test_program_batch_is_dynamic_from_one(exported):
    """Exported with an example batch of 2, the batch dimension ranges over 1..MAX_BATCH (no 0/1 specialisation)."""
    import torch

    _, _, programs = exported
    program = torch.export.load(str(programs["fp32"].path))
    (placeholder,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == INPUT_NAME]
    batch = placeholder.meta["val"].shape[0]
    assert not isinstance(batch, int)
    (bounds,) = [r for s, r in program.range_constraints.items() if str(s) == str(batch)]
    assert (int(bounds.lower), int(bounds.upper)) == (1, MAX_BATCH)


@pytest.mark.parametrize("precision, dtype", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_reduced_precision_weights_and_float32_heads(exported, precision, dtype):
    import torch

    ckpt, _, programs = exported
    program = torch.export.load(str(programs[precision].path))
    dtypes = {name: str(t.dtype).removeprefix("torch.") for name, t in program.state_dict.items()}
    gem = [name for name in dtypes if name.endswith(".p")]  # GeM's exponent, kept float32
    assert gem and all(dtypes[name] == "float32" for name in gem)
    convs = [name for name in dtypes if name.endswith(".weight") and name not in gem]
    assert convs and all(dtypes[name] == dtype for name in convs)
    # the source encoder is untouched: float32 weights, same encoder id
    module = reduced_precision(ckpt.model.camera, precision)
    assert module is not ckpt.model.camera
    assert all(p.dtype == torch.float32 for p in ckpt.model.camera.parameters())
    from export.models.encoder import encoder_id

    assert encoder_id(ckpt.model) == ckpt.contract.encoder_id


def test_program_moves_off_the_cpu(exported):
    """Moved by the backend's helper to another device (meta: shapes only), no CPU-bound constant is left behind."""
    import torch

    from runtime.backends.torch_backend import program_module

    _, _, programs = exported
    for result in programs.values():
        module = program_module(torch, torch.export.load(str(result.path)), "meta")
        out = module(torch.empty(5, SIZE, SIZE, 3, dtype=torch.uint8, device="meta"))
        assert out.device.type == "meta" and tuple(out.shape) == (5, DIM) and out.dtype == torch.float32


def test_separate_branches_two_files_and_a_failing_parity(tmp_path):
    from export.checkpoint import load_checkpoint

    ckpt = load_checkpoint(_checkpoint(tmp_path / "sep.pt", shared=False, seed=1))
    results = export_torch(ckpt, tmp_path / "enc.pt2")
    assert [(r.branch, r.path.name) for r in results] == [("camera", "enc.camera.pt2"), ("aerial", "enc.aerial.pt2")]
    assert [r.metadata[EXTRA_PREFIX + "branch"] for r in results] == ["camera", "aerial"]
    assert all(EncoderContract.from_metadata(r.metadata) == ckpt.contract for r in results)
    # the aerial program against the camera weights: a real parity failure, with its message
    with pytest.raises(TorchParityError, match=r"fp32 program and the float32 PyTorch encoder differ by max .* "
                                               r"\(bound 0.0001\), lowest cosine .* not faithful"):
        check_program_parity(results[1].path, ckpt.model.camera, ckpt.contract, "fp32")
    only = export_torch(ckpt, tmp_path / "aerial_only.pt2", branch="aerial", precision="bf16")
    assert [(r.branch, r.path.name, r.precision) for r in only] == [("aerial", "aerial_only.pt2", "bf16")]
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("kwargs, message", [
    ({"branch": "left"}, "branch must be one of ('camera', 'aerial', 'both'), got 'left'"),
    ({"precision": "int8"}, "precision must be one of ('fp32', 'fp16', 'bf16'), got 'int8' (CLI: --fp16 or --bf16)"),
])
def test_bad_arguments(exported, tmp_path, kwargs, message):
    ckpt, _, _ = exported
    with pytest.raises(TorchExportError) as info:
        export_torch(ckpt, tmp_path / "x.pt2", **kwargs)
    assert str(info.value) == message
    with pytest.raises(TorchExportError) as info:
        export_torch(ckpt, tmp_path / "x.onnx")
    assert str(info.value) == f"output must end in .pt2 (a torch.export archive), got {tmp_path / 'x.onnx'}"
    assert not (tmp_path / "x.pt2").exists() and not (tmp_path / "x.onnx").exists()


# ------------------------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_torch_arguments():
    args = _parser().parse_args(["export", "torch", "c.pt", "-o", "e.pt2", "--branch", "camera", "--bf16"])
    assert args.handler is cli.run_torch and args.branch == "camera" and args.bf16 and not args.fp16
    defaults = _parser().parse_args(["export", "torch", "c.pt", "-o", "e.pt2"])
    assert defaults.branch == "both" and not defaults.fp16 and not defaults.bf16


def test_cli_refuses_fp16_with_bf16(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["export", "torch", "c.pt", "-o", "e.pt2", "--fp16", "--bf16"])
    assert info.value.code == 2
    assert "error: argument --bf16: not allowed with argument --fp16" in capsys.readouterr().err
    # a Namespace built without argparse is refused by the handler too (before reading the checkpoint)
    args = argparse.Namespace(checkpoint=str(tmp_path / "c.pt"), output=str(tmp_path / "e.pt2"), branch="both",
                              fp16=True, bf16=True, handler=cli.run_torch)
    assert run_handler(args, cli.ERRORS) == 2
    assert capsys.readouterr().err == "error: --fp16 and --bf16 exclude each other; pick one precision\n"


def test_cli_missing_checkpoint(capsys, tmp_path):
    missing = tmp_path / "missing.pt"
    args = _parser().parse_args(["export", "torch", str(missing), "-o", str(tmp_path / "e.pt2")])
    assert run_handler(args, cli.ERRORS) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {missing} not found; train one with `skyfix train` or pass "
                                       "the right path\n")
    with pytest.raises(CheckpointError):
        export_torch(missing, tmp_path / "e.pt2")
    assert not (tmp_path / "e.pt2").exists()


def test_cli_end_to_end_bf16(tmp_path, capsys):
    ckpt_path = _checkpoint(tmp_path / "c.pt", shared=True, seed=3)
    out = tmp_path / "m.pt2"
    args = _parser().parse_args(["export", "torch", str(ckpt_path), "-o", str(out), "--bf16"])
    assert run_handler(args, cli.ERRORS) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (shared, bf16, parity vs torch fp32: max |diff| = ")
    assert "min cosine = " in printed and out.is_file()
    # an existing output is replaced, as `skyfix export onnx` does (no --overwrite convention in the export group)
    args = _parser().parse_args(["export", "torch", str(ckpt_path), "-o", str(out)])
    assert run_handler(args, cli.ERRORS) == 0
    assert "(shared, fp32," in capsys.readouterr().out


def test_cli_help_without_torch():
    code = ("import sys; from runtime.cli.skyfix import main\n"
            "try:\n    main(['export', 'torch', '--help'])\nexcept SystemExit:\n    pass\n"
            "sys.exit(2 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--bf16" in proc.stdout and "uint8" in proc.stdout and "skyfix.json" in proc.stdout
