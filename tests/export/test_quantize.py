"""FP16 and INT8 (Q/DQ) variants of an exported small_cnn encoder: graphs, zero points, activation ranges shared with
the ReLUs, calibration methods, nodes kept float, equal calibration batches, ORT runs, cosine/R@1 against FP32, the
R@1 refusal, the few-images warning and calibration image loading."""

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
    AccuracyDropError, CalibrationDataError, FewCalibrationImagesWarning, ImageCalibrationReader, QuantizationError,
    QuantReport, convert_fp16, fp16_report, load_images, quantize_int8, recall_at_1,
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


def _activation_qparams(model):
    """``[(scale, zero point) of the Q/DQ before, (scale, zero point) of the Q after]`` for every quantized ReLU/Clip."""
    import onnx

    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pairs = []
    for act in model.graph.node:
        dq = producers.get(act.input[0]) if act.op_type in ("Relu", "Clip") else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        (q_out,) = consumers[act.output[0]]
        assert q_out.op_type == "QuantizeLinear"
        pairs.append(((float(inits[dq.input[1]]), int(inits[dq.input[2]])),
                      (float(inits[q_out.input[1]]), int(inits[q_out.input[2]]))))
    return pairs


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
    relus = _activation_qparams(model)
    if mode == "s8":  # the ReLU stays; the Conv output is quantized over the ReLU's range, not its own
        assert relus and all(before == after for before, after in relus)
    else:  # uint8 [0, max] ranges clip like the ReLU: ORT removes it
        producers = {o: n for n in model.graph.node for o in n.output}
        left = [producers[n.input[0]] for n in model.graph.node if n.op_type == "Relu"]
        stem = quantize.stem_nodes(onnx.load(str(src)))
        # only the ReLUs after float ops are left: residual Adds and the stem Conv (kept float by default)
        assert not relus and all(p.op_type == "Add" or p.name in stem for p in left)
    c8, e8 = _run(out, images[:5])
    _, e32 = _run(src, images[:5])
    assert c8 == contract and _cosine(e8, e32).min() > 0.98
    meta = read_metadata(out)
    assert meta[EXTRA_PREFIX + "precision"] == f"int8-{mode}" and meta[EXTRA_PREFIX + "input_dtype"] == "uint8"
    assert float(meta[EXTRA_PREFIX + "int8_r1_drop"]) == pytest.approx(report.r1_drop, abs=1e-5)
    assert isinstance(report, QuantReport) and report.cosine_mean > 0.98 and report.n_calib == 48
    assert report.r1_drop == pytest.approx(report.r1_fp32 - report.r1)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_int8_calibration_methods(fp32, images, tmp_path, method):
    """Each calibration runs, is recorded in metadata and stays close to FP32; the default (99.99th percentile)
    ranges are no wider than MinMax ones and some are narrower (they clip the tails)."""
    import onnx

    src, _ = fp32
    out, ref = tmp_path / f"{method}.onnx", tmp_path / "default.onnx"
    with pytest.warns(FewCalibrationImagesWarning):
        report = quantize_int8(src, out, "u8s8", images, max_r1_drop=1.0, calib_method=method)
        quantize_int8(src, ref, "u8s8", images, max_r1_drop=1.0)
    assert read_metadata(out)[EXTRA_PREFIX + "int8_calib_method"] == method
    assert read_metadata(ref)[EXTRA_PREFIX + "int8_calib_method"] == "percentile"
    assert report.cosine_mean > 0.97
    if method == "minmax":
        scales = [dict(_scales(onnx.load(str(p)))) for p in (ref, out)]
        common = scales[0].keys() & scales[1].keys()
        assert common and all(scales[0][k] <= scales[1][k] * (1 + 1e-6) for k in common)
        assert any(scales[0][k] < scales[1][k] * 0.999 for k in common)


def _scales(model):
    import onnx

    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [(n.input[0], float(inits[n.input[1]])) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits]


def test_keep_float_by_op_type_and_node_name(fp32, images, tmp_path):
    import onnx

    src, _ = fp32
    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    out = tmp_path / "keep.onnx"
    with pytest.warns(FewCalibrationImagesWarning):
        report = quantize_int8(src, out, "u8s8", images, max_r1_drop=1.0, keep_float=["Gemm", convs[1]])
    model = onnx.load(str(out))
    producers = {o: n for n in model.graph.node for o in n.output}
    kept = [n for n in model.graph.node if n.op_type == "Gemm" or n.name == convs[1]]
    assert len(kept) == 2
    inits = {i.name for i in model.graph.initializer}
    assert all(node.input[1] in inits for node in kept)  # float weights, no DequantizeLinear
    others = [n for n in model.graph.node if n.op_type == "Conv" and n.name != convs[1]]
    assert len(others) == len(convs) - 1  # the stem too: an explicit keep_float replaces the default
    assert all(producers[n.input[1]].op_type == "DequantizeLinear" for n in others)
    assert read_metadata(out)[EXTRA_PREFIX + "int8_keep_float"].split(",") == [k.name for k in kept if
                                                                              k.op_type == "Gemm"] + [convs[1]]
    assert report.cosine_mean > 0.98


def test_stem_kept_float_by_default(fp32, images, tmp_path):
    """Default: the first Conv (it reads the normalised uint8 image) stays float, every other Conv is quantized."""
    import onnx

    src, _ = fp32
    fp32_model = onnx.load(str(src))
    convs = [n.name for n in fp32_model.graph.node if n.op_type == "Conv"]
    assert quantize.stem_nodes(fp32_model) == convs[:1]
    out = tmp_path / "default.onnx"
    with pytest.warns(FewCalibrationImagesWarning):
        quantize_int8(src, out, "s8", images, max_r1_drop=1.0)
    model = onnx.load(str(out))
    producers = {o: n for n in model.graph.node for o in n.output}
    fed_by_dq = {n.name: getattr(producers.get(n.input[1]), "op_type", None) == "DequantizeLinear"
                 for n in model.graph.node if n.op_type == "Conv"}  # weights through Q/DQ = quantized Conv
    assert fed_by_dq.pop(convs[0]) is False and fed_by_dq and all(fed_by_dq.values())
    assert read_metadata(out)[EXTRA_PREFIX + "int8_keep_float"] == convs[0]


def test_bad_calibration_method_percentile_and_keep_float(fp32, images, tmp_path):
    src, _ = fp32
    with pytest.raises(QuantizationError, match=r"calibration method must be one of .*'minmax'.*got 'kl'"):
        quantize_int8(src, tmp_path / "x.onnx", "s8", images, calib_method="kl")
    with pytest.raises(QuantizationError, match=r"percentile must be in \(90, 100\].*got 50"):
        quantize_int8(src, tmp_path / "x.onnx", "s8", images, calib_method="percentile", percentile=50)
    with pytest.warns(FewCalibrationImagesWarning):
        with pytest.raises(QuantizationError, match=r"keep_float entry 'no_such_node' is neither \"stem\", a node "
                                                    r"name nor an op type.*Conv"):
            quantize_int8(src, tmp_path / "x.onnx", "s8", images, keep_float=["no_such_node"])
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_reader_equal_batches():
    """Exactly ``batch`` images per batch (ORT's histogram calibrators need equal batches): the short last batch is
    topped up from the start; every image is read at least once, in order."""
    imgs = np.arange(40 * 2 * 2 * 3, dtype=np.uint8).reshape(40, 2, 2, 3)
    reader = ImageCalibrationReader(imgs, batch=16)
    feeds = [feed[INPUT_NAME] for feed in reader]
    assert [len(f) for f in feeds] == [16, 16, 16] and reader.get_next() is None  # not 16, 16, 8
    np.testing.assert_array_equal(np.concatenate(feeds), imgs[np.arange(48) % 40])
    reader.rewind()
    assert len(list(reader)) == 3
    assert [len(f[INPUT_NAME]) for f in ImageCalibrationReader(imgs[:32], batch=16)] == [16, 16]
    assert [len(f[INPUT_NAME]) for f in ImageCalibrationReader(imgs[:3], batch=16)] == [3]
    with pytest.raises(QuantizationError, match="calibration batch must be an integer >= 1, got 0"):
        ImageCalibrationReader(imgs, batch=0)


def test_share_activation_ranges_rewires_the_pre_activation_pair():
    """Q(x; 1.0) -> DQ -> Relu -> Q(y; 0.05): the pre-activation pair takes (0.05, zp_y); the result equals
    quantizing the ReLU output (exact for the activation) and the old scale is no longer used."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sx", 1.0), ("sy", 0.05))]
    inits += [numpy_helper.from_array(np.array(0, np.uint8), n) for n in ("zx", "zy")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("Relu", ["xd"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.array([-3.0, 0.02, 0.26, 1.3, 40.0], np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    np.testing.assert_allclose(run(model), [0, 0, 0, 1.0, 12.75])  # coarse pre-activation steps of 1.0
    assert quantize._share_activation_ranges(model) == 1
    quantize._drop_unused_initializers(model.graph)
    onnx.checker.check_model(model)
    assert list(model.graph.node[0].input) == ["x", "sy", "zy"] and list(model.graph.node[1].input) == ["xq", "sy", "zy"]
    assert {i.name for i in model.graph.initializer} == {"sy", "zy"}
    np.testing.assert_allclose(run(model), [0, 0, 0.25, 1.3, 12.75], atol=1e-6)  # ReLU's 0.05 steps
    assert quantize._share_activation_ranges(model) == 0  # idempotent


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
    """Calibrating U8S8 (MinMax, everything quantized) on flat images at the normalisation mean gives the input a range
    of almost zero width: every real image clips to nearly the same input, R@1 collapses (0.58 -> 0.19 with these
    seeds) and the model is refused. (Flat black images are not enough: they clip only the brighter half of the
    input, and on a random network R@1 may then even rise, as with onnxruntime 1.32.)"""
    src, contract = fp32
    mean_grey = np.empty((8, SIZE, SIZE, 3), np.uint8)
    mean_grey[...] = np.round(np.asarray(contract.mean) * 255.0).astype(np.uint8)
    out = tmp_path / "bad.onnx"
    with pytest.warns(FewCalibrationImagesWarning), pytest.raises(AccuracyDropError, match="R@1 drops by") as info:
        quantize_int8(src, out, "u8s8", mean_grey, max_r1_drop=0.0, eval_images=images, calib_method="minmax",
                      keep_float=())
    assert info.value.report.r1_drop > 0.2
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
                              "--calib", str(calib), "--max-r1-drop", "1",
                              "--calib-method", "minmax", "--keep-float", "Gemm,"])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "e.int8-u8s8.onnx").is_file() and "int8-u8s8: cosine to fp32" in captured.out
    assert "27 calibration images" in captured.err
    meta = read_metadata(tmp_path / "e.int8-u8s8.onnx")
    assert EncoderContract.from_metadata(meta).ground_resolution_m == 0.3
    assert meta[EXTRA_PREFIX + "int8_calib_method"] == "minmax" and meta[EXTRA_PREFIX + "int8_keep_float"]
    args = parser.parse_args(["export", "onnx", str(ckpt), "-o", str(tmp_path / "n.onnx"), "--int8", "s8",
                              "--calib", str(calib), "--max-r1-drop", "1", "--keep-float", "none"])
    assert args.handler(args) == 0
    meta = read_metadata(tmp_path / "n.int8-s8.onnx")  # everything quantized, percentile by default
    assert EXTRA_PREFIX + "int8_keep_float" not in meta and meta[EXTRA_PREFIX + "int8_calib_method"] == "percentile"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "onnx", str(ckpt), "-o", "x.onnx", "--calib-method", "kl"])
    assert "invalid choice: 'kl'" in capsys.readouterr().err


def test_upcast_fp16_gives_the_fp16_weights_in_fp32(fp32, images, tmp_path):
    import onnx
    from onnx import TensorProto, numpy_helper

    from export.quantize import upcast_fp16

    path, contract = fp32
    half = convert_fp16(path, tmp_path / "h.onnx")
    up = upcast_fp16(half, tmp_path / "up.onnx")
    model = onnx.load(str(up))
    assert not [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert not [n.name for n in model.graph.node if n.op_type == "Cast"
                and next(a.i for a in n.attribute if a.name == "to") == TensorProto.FLOAT16]
    # every weight is the fp16 value, exactly, in float32
    w16 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(half)).graph.initializer}
    for t in model.graph.initializer:
        if t.name in w16 and w16[t.name].dtype == np.float16:
            assert np.array_equal(numpy_helper.to_array(t), w16[t.name].astype(np.float32))
    meta = read_metadata(up)
    assert meta[EXTRA_PREFIX + "precision"] == "fp32" and meta[EXTRA_PREFIX + "upcast_from"] == "fp16"
    c_up, e_up = _run(up, images)
    _, e32 = _run(path, images)
    _, e16 = _run(half, images)
    assert c_up == contract
    assert _cosine(e_up, e32).min() > 0.999 and _cosine(e_up, e16).min() > 0.999
    with pytest.raises(QuantizationError, match="is not a float16 model.*needs no upcast"):
        upcast_fp16(path, tmp_path / "again.onnx")


def test_quantize_cli_from_an_fp16_model(fp32, tmp_path, capsys):
    """`skyfix export quantize` makes the INT8 variant of a model shipped only in FP16, against its FP32 upcast."""
    import argparse

    from export import cli

    path, contract = fp32
    half = convert_fp16(path, tmp_path / "m.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(sample_images(3, 192, seed=3)):
        cv2.imwrite(str(calib / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", "quantize", str(half), "--int8", "u8s8", "--calib", str(calib),
                              "--max-r1-drop", "1", "--fp32", str(tmp_path / "up.onnx")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "(fp16) to fp32 in" in out and "int8-u8s8: cosine to fp32" in out
    q = tmp_path / "m.int8-u8s8.onnx"
    meta = read_metadata(q)
    assert meta[EXTRA_PREFIX + "precision"] == "int8-u8s8" and meta[EXTRA_PREFIX + "upcast_from"] == "fp16"
    assert EncoderContract.from_metadata(meta) == contract  # same embedding space: maps of either serve both
    imgs = sample_images(16, SIZE, seed=11)
    assert _cosine(_run(q, imgs)[1], _run(tmp_path / "up.onnx", imgs)[1]).mean() > 0.9
    # -o with an FP32 model, no upcast
    args = parser.parse_args(["export", "quantize", str(path), "--int8", "s8", "--calib", str(calib),
                              "--max-r1-drop", "1", "-o", str(tmp_path / "s8.onnx")])
    assert args.handler(args) == 0 and (tmp_path / "s8.onnx").is_file()
    capsys.readouterr()
    for argv, message in (
        (["--int8", "s8", "--int8", "u8s8", "-o", str(tmp_path / "x.onnx")], "-o names one file but --int8 asks for 2"),
        (["--int8", "s8", "--fp32", str(tmp_path / "y.onnx")], "keeps the upcast of a float16 model"),
    ):
        args = parser.parse_args(["export", "quantize", str(path), "--calib", str(calib), "--max-r1-drop", "1", *argv])
        with pytest.raises(QuantizationError, match=message):
            args.handler(args)
    (tmp_path / "noise.onnx").write_bytes(b"not a model")
    for model, message in ((tmp_path / "gone.onnx", "does not exist"), (tmp_path / "noise.onnx", "is not a SkyFix encoder")):
        args = parser.parse_args(["export", "quantize", str(model), "--int8", "u8s8", "--calib", str(calib)])
        with pytest.raises(QuantizationError, match=message):
            args.handler(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "quantize", str(path), "--calib", str(calib)])
    assert "--int8" in capsys.readouterr().err
