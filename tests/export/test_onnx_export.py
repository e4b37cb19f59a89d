"""`skyfix export onnx`: a small_cnn checkpoint -> ONNX (uint8 NHWC input, dynamic batch, opset >= 18), parity with
PyTorch <= 1e-4, the contract in metadata_props read back by EncoderContract and the ONNX Runtime backend, separate
camera/aerial files, and the CLI."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export import cli  # noqa: E402
from export.onnx_export import (  # noqa: E402
    EXTRA_PREFIX, INPUT_NAME, OUTPUT_NAME, OnnxExportError, ParityError, check_parity, export_onnx, read_metadata,
    sample_images, torch_embed,
)
from maps.contract import EncoderContract  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


def _checkpoint(path: Path, shared: bool, seed: int = 0) -> Path:
    import torch

    from export.checkpoint import save_checkpoint
    from export.models.encoder import EncoderConfig, build_encoder

    torch.manual_seed(seed)
    config = EncoderConfig(backbone="small_cnn", dim=64, input_size=SIZE, shared=shared)
    return save_checkpoint(path, build_encoder(config), config, ground_resolution_m=0.5, name="test-small")


@pytest.fixture(scope="module")
def shared_export(tmp_path_factory):
    from export.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("onnx_shared")
    ckpt = load_checkpoint(_checkpoint(root / "shared.pt", shared=True))
    results = export_onnx(ckpt, root / "encoder.onnx", branch="both")
    return ckpt, results


def test_modules_import_without_torch():
    code = ("import sys, export.onnx_export, export.quantize, export.cli; "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'cv2') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_shared_weights_give_one_file_with_parity(shared_export):
    ckpt, results = shared_export
    assert len(results) == 1 and results[0].branch == "shared"
    assert results[0].path.name == "encoder.onnx" and results[0].max_abs_diff <= 1e-4


def test_graph_input_output_opset(shared_export):
    import onnx

    _, results = shared_export
    model = onnx.load(str(results[0].path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_metadata_round_trip_and_backend_dynamic_batch(shared_export):
    from runtime.backends import load_backend

    ckpt, results = shared_export
    path = results[0].path
    meta = read_metadata(path)
    assert EncoderContract.from_metadata(meta) == ckpt.contract
    assert meta[EXTRA_PREFIX + "input_layout"] == "NHWC" and meta[EXTRA_PREFIX + "input_dtype"] == "uint8"
    assert meta[EXTRA_PREFIX + "input_normalization"] == "in_graph" and meta[EXTRA_PREFIX + "precision"] == "fp32"
    assert int(meta[EXTRA_PREFIX + "opset"]) >= 18
    backend = load_backend(path, device="cpu", threads=1)
    try:
        assert backend.contract == ckpt.contract
        assert backend.inputs[0].dtype == "uint8" and backend.inputs[0].shape == (None, SIZE, SIZE, 3)
        for n in (1, 5):
            images = sample_images(n, SIZE, seed=10 + n)
            got = backend.infer({INPUT_NAME: images})[OUTPUT_NAME]
            ref = torch_embed(ckpt.model.camera, images, ckpt.contract.mean, ckpt.contract.std)
            assert got.shape == (n, 64) and got.dtype == np.float32
            assert np.max(np.abs(got - ref)) <= 1e-4
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    finally:
        backend.close()


def test_separate_branches_two_files_same_contract(tmp_path):
    from export.checkpoint import load_checkpoint

    ckpt = load_checkpoint(_checkpoint(tmp_path / "sep.pt", shared=False, seed=1))
    results = export_onnx(ckpt, tmp_path / "enc.onnx")
    assert [(r.branch, r.path.name) for r in results] == [("camera", "enc.camera.onnx"), ("aerial", "enc.aerial.onnx")]
    assert all(r.max_abs_diff <= 1e-4 for r in results)
    metas = [read_metadata(r.path) for r in results]
    assert EncoderContract.from_metadata(metas[0]) == EncoderContract.from_metadata(metas[1]) == ckpt.contract
    assert [m[EXTRA_PREFIX + "branch"] for m in metas] == ["camera", "aerial"]
    # the two branches are different networks: exporting the aerial file against the camera weights fails parity
    with pytest.raises(ParityError, match="differ by max"):
        check_parity(results[1].path, ckpt.model.camera, ckpt.contract)
    only = export_onnx(ckpt, tmp_path / "aerial_only.onnx", branch="aerial")
    assert [(r.branch, r.path.name) for r in only] == [("aerial", "aerial_only.onnx")]


@pytest.mark.parametrize("kwargs, match", [({"branch": "left"}, "branch must be"), ({"opset": 17}, ">= 18")])
def test_bad_arguments(shared_export, tmp_path, kwargs, match):
    ckpt, _ = shared_export
    with pytest.raises(OnnxExportError, match=match):
        export_onnx(ckpt, tmp_path / "x.onnx", **kwargs)
    with pytest.raises(OnnxExportError, match=".onnx"):
        export_onnx(ckpt, tmp_path / "x.bin")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_onnx_arguments(capsys):
    args = _parser().parse_args(["export", "onnx", "c.pt", "-o", "e.onnx", "--branch", "camera", "--fp16",
                                 "--int8", "s8", "--int8", "u8s8", "--calib", "imgs", "--max-r1-drop", "0.05"])
    assert args.handler is cli.run_onnx and args.branch == "camera" and args.fp16 and args.int8 == ["s8", "u8s8"]
    assert args.calib == "imgs" and args.max_r1_drop == 0.05 and args.opset == 18
    defaults = _parser().parse_args(["export", "onnx", "c.pt", "-o", "e.onnx"])
    assert defaults.branch == "both" and not defaults.fp16 and defaults.int8 is None and defaults.max_r1_drop == 0.02
    for bad in (["--max-r1-drop", "2"], ["--opset", "17"], ["--int8", "u8"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(["export", "onnx", "c.pt", "-o", "e.onnx", *bad])
    assert _parser().parse_args(["export", "engine", "m.onnx"]).handler is cli.run_engine


def test_cli_help_without_torch():
    code = ("import sys; from runtime.cli.skyfix import main\n"
            "try:\n    main(['export', 'onnx', '--help'])\nexcept SystemExit:\n    pass\n"
            "sys.exit(2 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--max-r1-drop" in proc.stdout and "uint8" in proc.stdout


def test_cli_run_onnx_fp16(tmp_path, capsys):
    ckpt_path = _checkpoint(tmp_path / "c.pt", shared=True, seed=2)
    args = _parser().parse_args(["export", "onnx", str(ckpt_path), "-o", str(tmp_path / "m.onnx"), "--fp16"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "parity max" in out and (tmp_path / "m.onnx").is_file() and (tmp_path / "m.fp16.onnx").is_file()
    from export.quantize import QuantizationError

    args = _parser().parse_args(["export", "onnx", str(ckpt_path), "-o", str(tmp_path / "n.onnx"), "--int8", "s8"])
    with pytest.raises(QuantizationError, match="--calib"):
        args.handler(args)
