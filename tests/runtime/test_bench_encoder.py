"""``skyfix bench encoder``: tiny FP32 and INT8 (QDQ, U8S8) ONNX encoders built here, benchmarked at tiny counts.

No timing is asserted: only structure, coverage of every model and batch, ordering of percentiles and the
throughput definition.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from runtime.tools.bench_encoder import (
    BenchConfig,
    EncoderBenchError,
    format_table,
    input_shape,
    parse_batches,
    parse_input_size,
    run_bench,
    summarize,
)
from runtime.backends import TensorSpec
from runtime.cli.common import run_handler

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = 16  # pixels of the tiny encoders' input
DIM = 8  # embedding size


def _encoder_graph(batch="batch", uint8_nhwc=False, spatial=SIZE, seed=0):
    """conv 3x3 (3->6) + ReLU + global average pool + matmul (6->DIM) + L2 normalise: float32[n, DIM].

    Input float32[batch, 3, spatial, spatial], or (uint8_nhwc) uint8[batch, spatial, spatial, 3] cast + transposed.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    b = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32) * 0.1, "b")
    m = numpy_helper.from_array(rng.standard_normal((6, DIM)).astype(np.float32), "m")
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = []
    if uint8_nhwc:
        inp = helper.make_tensor_value_info("images", TensorProto.UINT8, [batch, spatial, spatial, 3])
        nodes += [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2])]
        first = "x"
    else:
        inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, spatial, spatial])
        first = "images"
    nodes += [
        helper.make_node("Conv", [first, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ReduceMean", ["r", "axes"], ["p"], keepdims=0),
        helper.make_node("MatMul", ["p", "m"], ["e"]),
        helper.make_node("LpNormalization", ["e"], ["embedding"], axis=1, p=2),
    ]
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])
    graph = helper.make_graph(nodes, "tiny_encoder", [inp], [out], initializer=[w, b, m, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class _Calibration:
    """A few random float32[4, 3, SIZE, SIZE] calibration batches for quantize_static."""

    def __init__(self, batches=3, seed=1):
        rng = np.random.default_rng(seed)
        self._data = iter([{"images": rng.standard_normal((4, 3, SIZE, SIZE), dtype=np.float32)}
                           for _ in range(batches)])

    def get_next(self):
        return next(self._data, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(fp32 path, int8 path): the tiny encoder with dynamic batch and its static QDQ U8S8 quantisation."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    root = tmp_path_factory.mktemp("bench_models")
    fp32 = root / "fp32.onnx"
    int8 = root / "int8.onnx"
    onnx.save(_encoder_graph(), str(fp32))
    quantize_static(str(fp32), str(int8), _Calibration(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return fp32, int8


def _check_rows(result, labels, batches):
    seen = {(r["model"], r["batch"]) for r in result["results"]}
    assert seen == {(m, b) for m in labels for b in batches}
    for r in result["results"]:
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput_ips"] == pytest.approx(r["batch"] * 1000.0 / r["p50_ms"])
        assert r["throughput_mean_ips"] == pytest.approx(r["batch"] * 1000.0 / r["mean_ms"])
        assert r["iterations"] == result["config"]["iterations"]
        if r["model_index"] == 0:
            assert r["speedup_vs_first"] == pytest.approx(1.0)
        else:
            first = next(x for x in result["results"] if x["model_index"] == 0 and x["batch"] == r["batch"])
            assert r["speedup_vs_first"] == pytest.approx(first["p50_ms"] / r["p50_ms"])


def test_fp32_vs_int8_structure(models):
    fp32, int8 = models
    cfg = BenchConfig(batches=(1, 4), warmup=1, iterations=5, threads=1)
    result = run_bench([fp32, int8], cfg)
    json.dumps(result, allow_nan=False)  # JSON-ready, no NaN/inf
    assert set(result) == {"config", "machine", "models", "results"}
    assert result["config"]["batches"] == [1, 4] and result["config"]["threads_used"] == 1
    assert [m["label"] for m in result["models"]] == ["fp32.onnx", "int8.onnx"]
    for m in result["models"]:
        assert m["backend"] == "onnxruntime" and m["device"] == "cpu" and m["threads"] == 1
        assert m["fixed_batch"] is None and m["batches"] == [1, 4]
        assert m["inputs"] == [f"images[?,3,{SIZE},{SIZE}] float32"]
    _check_rows(result, ["fp32.onnx", "int8.onnx"], [1, 4])
    assert [(r["batch"], r["model_index"]) for r in result["results"]] == [(1, 0), (1, 1), (4, 0), (4, 1)]
    table = format_table(result)
    assert "fp32.onnx" in table and "int8.onnx" in table and "p99 ms" in table


def test_int8_model_is_quantized(models):
    _, int8 = models
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_fixed_batch_and_uint8_contract_inputs(tmp_path, models):
    """A fixed-batch model runs only at its size; a uint8 NHWC model with dynamic size takes it from its contract."""
    from maps.contract import EncoderContract

    fixed = tmp_path / "fixed.onnx"
    onnx.save(_encoder_graph(batch=2), str(fixed))
    u8 = tmp_path / "u8.onnx"
    model = _encoder_graph(uint8_nhwc=True, spatial="side")
    contract = EncoderContract(encoder_id="tiny", name="tiny", input_width=12, input_height=12,
                               ground_resolution_m=0.5, embedding_dim=DIM)
    onnx.helper.set_model_props(model, contract.to_metadata())
    onnx.save(model, str(u8))
    fp32, _ = models
    result = run_bench([fp32, fixed, u8], BenchConfig(batches=(1, 3), warmup=0, iterations=3, threads=1))
    by_label = {m["label"]: m for m in result["models"]}
    assert by_label["fixed.onnx"]["fixed_batch"] == 2 and by_label["fixed.onnx"]["batches"] == [2]
    assert by_label["u8.onnx"]["encoder_id"] == "tiny"
    seen = {(r["model"], r["batch"]) for r in result["results"]}
    assert seen == {("fp32.onnx", 1), ("fp32.onnx", 3), ("u8.onnx", 1), ("u8.onnx", 3), ("fixed.onnx", 2)}
    row = next(r for r in result["results"] if r["model"] == "fixed.onnx")
    assert row["speedup_vs_first"] is None  # the first model did not run batch 2
    # the same dynamic-size model without a contract needs --input-size
    bare = tmp_path / "bare.onnx"
    onnx.save(_encoder_graph(uint8_nhwc=True, spatial="side"), str(bare))
    with pytest.raises(EncoderBenchError, match="--input-size"):
        run_bench([bare], BenchConfig(warmup=0, iterations=1, threads=1))
    result = run_bench([bare], BenchConfig(warmup=0, iterations=2, threads=1, input_size=(10, 10)))
    assert result["results"][0]["batch"] == 1


def test_input_shape_rules():
    c = TensorSpec("images", (None, 3, None, None), "float32")
    assert input_shape(c, 4, input_size=(8, 10)) == (4, 3, 8, 10)
    h = TensorSpec("images", (None, None, None, 3), "uint8")
    assert input_shape(h, 2, input_size=(8, 10)) == (2, 8, 10, 3)
    assert input_shape(TensorSpec("x", None, "uint8"), 2, input_size=(5, 6)) == (2, 5, 6, 3)
    assert input_shape(TensorSpec("x", None, None), 2, input_size=(5, 6)) == (2, 3, 5, 6)
    assert input_shape(TensorSpec("x", (2, 3, 7, 7)), 16) == (2, 3, 7, 7)
    with pytest.raises(EncoderBenchError, match="rank 4"):
        input_shape(TensorSpec("x", (None, None)), 1, input_size=(5, 5))


def test_summarize_and_parsers():
    s = summarize([4.0, 1.0, 2.0, 3.0, 100.0], batch=8)
    assert s["p50_ms"] == 3.0 and s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= 100.0
    assert s["throughput_ips"] == pytest.approx(8 * 1000 / 3.0)
    assert parse_batches("1,8,16") == (1, 8, 16)
    assert parse_input_size("224") == (224, 224) and parse_input_size("240x320") == (240, 320)
    for bad in ("", "0", "a,b", "1,-2"):
        with pytest.raises(EncoderBenchError):
            parse_batches(bad)
    with pytest.raises(EncoderBenchError):
        parse_input_size("1x2x3")


@pytest.mark.parametrize("kwargs", [dict(batches=()), dict(batches=(0,)), dict(iterations=0), dict(warmup=-1),
                                    dict(threads=-1), dict(backend="tflite"), dict(input_size=(0, 3))])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(EncoderBenchError):
        BenchConfig(**kwargs)


def test_missing_model_is_a_typed_error(tmp_path):
    with pytest.raises(EncoderBenchError, match="not found"):
        run_bench([tmp_path / "nope.onnx"], BenchConfig(iterations=1))


def _parser():
    from runtime.cli import bench as bench_cli

    parser = argparse.ArgumentParser(prog="skyfix")
    sub = parser.add_subparsers(dest="command", required=True)
    bench_cli.register(sub)
    return parser


def test_cli_end_to_end(models, tmp_path, capsys):
    fp32, int8 = models
    out = tmp_path / "bench.json"
    args = _parser().parse_args(["bench", "encoder", str(fp32), "--compare", str(int8), "--batch", "1,2",
                                 "--warmup", "1", "--iterations", "3", "--threads", "1", "--json", str(out)])
    assert run_handler(args) == 0
    printed = capsys.readouterr().out
    assert "fp32.onnx" in printed and "int8.onnx" in printed
    result = json.loads(out.read_text())
    _check_rows(result, ["fp32.onnx", "int8.onnx"], [1, 2])


def test_cli_errors_are_one_line(tmp_path, capsys):
    args = _parser().parse_args(["bench", "encoder", str(tmp_path / "missing.onnx")])
    assert run_handler(args) == 2
    assert capsys.readouterr().err.startswith("error: ")
    args = _parser().parse_args(["bench", "encoder", "m.onnx", "--batch", "x"])
    assert run_handler(args) == 2


def test_help_without_heavy_imports():
    import subprocess
    import sys

    code = ("import sys, argparse\n"
            "from runtime.cli import bench as bench_cli\n"
            "p = argparse.ArgumentParser(prog='skyfix'); s = p.add_subparsers(dest='c')\n"
            "bench_cli.register(s)\n"
            "import runtime.tools.bench_encoder\n"
            "bad = {'torch', 'tensorrt', 'onnxruntime', 'onnx'} & {k.split('.')[0] for k in sys.modules}\n"
            "assert not bad, bad\n"
            "p.parse_args(['bench', 'encoder', '--help'])\n")
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: skyfix bench encoder" in out.stdout


# ------------------------------------------------------------------------------------ torch.export programs (.pt2)
@pytest.fixture(scope="module")
def pt2_and_onnx(tmp_path_factory):
    """(enc.pt2, enc.onnx): one small_cnn checkpoint exported by `skyfix export torch` and `skyfix export onnx`."""
    torch = pytest.importorskip("torch")
    from export.checkpoint import load_checkpoint, save_checkpoint
    from export.models.encoder import EncoderConfig, build_encoder
    from export.onnx_export import export_onnx
    from export.torch_export import export_torch

    root = tmp_path_factory.mktemp("bench_pt2")
    torch.manual_seed(0)
    config = EncoderConfig(backbone="small_cnn", dim=32, input_size=32, shared=True)
    ckpt = load_checkpoint(save_checkpoint(root / "c.pt", build_encoder(config), config, ground_resolution_m=0.5,
                                           name="bench"))
    (program,) = export_torch(ckpt, root / "enc.pt2")
    (onnx_model,) = export_onnx(ckpt, root / "enc.onnx")
    return program.path, onnx_model.path


def test_torch_program_vs_onnx_on_cpu(pt2_and_onnx):
    pt2, onnx_path = pt2_and_onnx
    result = run_bench([pt2, onnx_path], BenchConfig(batches=(1, 3), warmup=1, iterations=4, threads=1, device="cpu"))
    json.dumps(result, allow_nan=False)
    by_label = {m["label"]: m for m in result["models"]}
    assert by_label["enc.pt2"]["backend"] == "torch" and by_label["enc.onnx"]["backend"] == "onnxruntime"
    for m in result["models"]:
        assert m["device"] == "cpu" and m["threads"] == 1 and m["timer"] == "wall_clock"
        assert m["inputs"] == ["images[?,32,32,3] uint8"] and m["outputs"] == ["embedding[?,32] float32"]
        assert m["encoder_id"] == by_label["enc.onnx"]["encoder_id"]
    _check_rows(result, ["enc.pt2", "enc.onnx"], [1, 3])
    assert all(r["timer"] == "wall_clock" for r in result["results"])
    assert result["machine"]["torch"] and result["machine"]["onnxruntime"]
    table = format_table(result)
    assert "enc.pt2: torch on cpu, 1 threads, timer wall_clock" in table and "cuda_event: a synchronised" in table


def test_timer_choice():
    from runtime.tools.bench_encoder import TIMERS, ModelRun, timer_for

    assert timer_for("torch", "cuda:0") == "cuda_event" and timer_for("torch", "cuda:1") == "cuda_event"
    assert timer_for("torch", "cpu") == "wall_clock"
    assert timer_for("onnxruntime", "cuda:0") == timer_for("tensorrt", "cuda:0") == "wall_clock"
    assert TIMERS == ("wall_clock", "cuda_event")
    with pytest.raises(EncoderBenchError, match=r"unknown timer 'tsc'; expected one of \['wall_clock', 'cuda_event'\]"):
        ModelRun("m", None, None, 1, None, timer="tsc")


def test_torch_program_on_cuda_uses_cuda_events(pt2_and_onnx):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pt2, _ = pt2_and_onnx
    result = run_bench([pt2], BenchConfig(batches=(1, 8), warmup=2, iterations=5, device="cuda"))
    (model,) = result["models"]
    assert model["device"].startswith("cuda") and model["timer"] == "cuda_event"
    _check_rows(result, ["enc.pt2"], [1, 8])
    assert "timer cuda_event" in format_table(result)
