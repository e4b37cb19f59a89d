"""FP16 and INT8 (Q/DQ) variants of an exported small_cnn encoder: graphs, zero points, ORT runs, cosine/R@1 against
FP32, the R@1 refusal, the few-images warning and calibration image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

import export.quantize as quantize  # noqa: E402
from export.onnx_export import EXTRA_PREFIX, INPUT_NAME, OUTPUT_NAME, export_onnx, read_metadata, sample_images  # noqa: E402
from export.quantize import (  # noqa: E402
    AccuracyDropError, CalibrationDataError, FewCalibrationImagesWarning, QuantizationError, QuantReport,
    convert_fp16, fp16_report, load_images, quantize_int8, recall_at_1,
)
from maps.contract import EncoderContract  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    import torch

    from export.checkpoint import load_checkpoint, save_checkpoint
    from export.models.encoder import EncoderConfig, build_encoder

    root = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    config = EncoderConfig(backbone="small_cnn", dim=64, input_size=SIZE, shared=True)
    path = save_checkpoint(root / "c.pt", build_encoder(config), config, ground_resolution_m=0.5, name="q")
    ckpt = load_checkpoint(path)
    (result,) = export_onnx(ckpt, root / "enc.onnx")
    return result.path, ckpt.contract


@pytest.fixture(scope="module")
def images():
    return sample_images(48, SIZE, seed=7)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _run(path: Path, imgs: np.ndarray):
    from runtime.backends import load_backend

    backend = load_backend(path, device="cpu", threads=1)
    try:
        return backend.contract, backend.infer({INPUT_NAME: imgs})[OUTPUT_NAME]
    finally:
        backend.close()


def test_fp16_runs_with_same_io_and_close_to_fp32(fp32, images, tmp_path):
    import onnx

    src, contract = fp32
    out = convert_fp16(src, tmp_path / "enc.fp16.onnx")
    model = onnx.load(str(out))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    c16, e16 = _run(out, images[:5])
    _, e32 = _run(src, images[:5])
    assert c16 == contract and read_metadata(out)[EXTRA_PREFIX + "precision"] == "fp16"
    assert e16.dtype == np.float32 and _cosine(e16, e32).min() > 0.99
    report = fp16_report(src, out, images[:24])
    assert report.cosine_min > 0.99 and 0 <= report.r1 <= 1 and report.precision == "fp16"


def _zero_points(model):
    import onnx

    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            out.append((node.op_type, node.input[0] in inits, inits[node.input[2]]))
    return out


@pytest.mark.parametrize("mode", ["s8", "u8s8"])
def test_int8_qdq_graph_zero_points_and_accuracy(fp32, images, tmp_path, mode):
    import onnx

    src, contract = fp32
    out = tmp_path / f"enc.int8-{mode}.onnx"
    with pytest.warns(FewCalibrationImagesWarning, match="48 calibration images"):
        report = quantize_int8(src, out, mode, images, max_r1_drop=1.0)
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    zps = _zero_points(model)
    weights = [z for op, is_init, z in zps if is_init and z.dtype != np.int32]
    activations = [z for op, is_init, z in zps if not is_init]
    assert weights and activations
    assert all(z.dtype == np.int8 and not z.any() for z in weights)  # symmetric int8 weights in both modes
    if mode == "s8":
        assert all(z.dtype == np.int8 and not z.any() for z in activations)  # TensorRT: symmetric, zero point 0
    else:
        assert all(z.dtype == np.uint8 for z in activations) and any(z.any() for z in activations)
    c8, e8 = _run(out, images[:5])
    _, e32 = _run(src, images[:5])
    assert c8 == contract and _cosine(e8, e32).min() > 0.98
    meta = read_metadata(out)
    assert meta[EXTRA_PREFIX + "precision"] == f"int8-{mode}" and meta[EXTRA_PREFIX + "input_dtype"] == "uint8"
    assert float(meta[EXTRA_PREFIX + "int8_r1_drop"]) == pytest.approx(report.r1_drop, abs=1e-5)
    assert isinstance(report, QuantReport) and report.cosine_mean > 0.98 and report.n_calib == 48
    assert report.r1_drop == pytest.approx(report.r1_fp32 - report.r1)


def test_refuses_when_r1_drops_too_much(fp32, images, tmp_path, monkeypatch):
    src, _ = fp32
    forced = QuantReport("int8-u8s8", 48, 0.97, 0.9, r1_fp32=0.90, r1=0.85, r1_drop=0.05, n_calib=48)
    monkeypatch.setattr(quantize, "evaluate", lambda *a, **k: forced)
    out = tmp_path / "refused.onnx"
    with pytest.warns(FewCalibrationImagesWarning):
        with pytest.raises(AccuracyDropError, match=r"drops by 0\.050 .*> --max-r1-drop 0\.01") as info:
            quantize_int8(src, out, "u8s8", images, max_r1_drop=0.01)
    assert info.value.report is forced and not out.exists()


def test_refusal_with_a_real_zero_threshold(fp32, images, tmp_path):
    """Calibrating U8S8 on flat black images gives ranges that clip real activations: R@1 falls and, with a zero
    threshold, the model is refused (deterministic: seeded weights and images)."""
    src, _ = fp32
    black = np.zeros((8, SIZE, SIZE, 3), np.uint8)
    out = tmp_path / "bad.onnx"
    with pytest.warns(FewCalibrationImagesWarning), pytest.raises(AccuracyDropError, match="R@1 drops by"):
        quantize_int8(src, out, "u8s8", black, max_r1_drop=0.0, eval_images=images)
    assert not out.exists()


def test_bad_mode_threshold_and_images(fp32, images, tmp_path):
    src, _ = fp32
    with pytest.raises(QuantizationError, match="s8"):
        quantize_int8(src, tmp_path / "x.onnx", "int4", images)
    with pytest.raises(QuantizationError, match="max_r1_drop"):
        quantize_int8(src, tmp_path / "x.onnx", "s8", images, max_r1_drop=5)
    with pytest.raises(CalibrationDataError, match=r"uint8\[n, 64, 64, 3\]"):
        quantize_int8(src, tmp_path / "x.onnx", "s8", images[:, :32, :32])


def test_load_images_tiles_and_resizes(tmp_path):
    big = sample_images(1, 200, seed=1)[0]
    small = sample_images(1, 50, seed=2)[0]
    cv2.imwrite(str(tmp_path / "ortho.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    tiles = load_images(tmp_path, SIZE)
    assert tiles.shape == (3 * 3 + 1, SIZE, SIZE, 3) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiles[0], big[:SIZE, :SIZE])  # "ortho.png" sorts first; RGB order kept
    assert load_images(tmp_path, SIZE, max_images=4).shape[0] == 4
    with pytest.raises(CalibrationDataError, match="not found"):
        load_images(tmp_path / "missing", SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="no readable image"):
        load_images(tmp_path / "empty", SIZE)


def test_recall_at_1():
    db = np.eye(3, dtype=np.float32)
    assert recall_at_1(db, db) == 1.0
    assert recall_at_1(db[[1, 0, 2]], db) == pytest.approx(1 / 3)


def test_int8_cli_end_to_end(fp32, tmp_path, capsys):
    import argparse

    from export import cli
    from export.checkpoint import save_checkpoint
    from export.models.encoder import EncoderConfig, build_encoder

    config = EncoderConfig(backbone="small_cnn", dim=32, input_size=SIZE, shared=True)
    ckpt = save_checkpoint(tmp_path / "c.pt", build_encoder(config), config, ground_resolution_m=0.3, name="cli")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(sample_images(3, 192, seed=3)):
        cv2.imwrite(str(calib / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", "onnx", str(ckpt), "-o", str(tmp_path / "e.onnx"), "--int8", "u8s8",
                              "--calib", str(calib), "--max-r1-drop", "1"])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "e.int8-u8s8.onnx").is_file() and "int8-u8s8: cosine to fp32" in captured.out
    assert "27 calibration images" in captured.err
    assert EncoderContract.from_metadata(read_metadata(tmp_path / "e.int8-u8s8.onnx")).ground_resolution_m == 0.3
