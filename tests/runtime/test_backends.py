"""Backends: ONNX Runtime and torch on tiny models built here; TensorRT skips without tensorrt."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maps.contract import EncoderContract
from runtime.backends import backend_for_path, load_backend
from runtime.backends.base import TensorSpec
from runtime.errors import BackendError

REPO = Path(__file__).resolve().parents[2]
D_IN, D_OUT = 8, 4
CONTRACT = EncoderContract("tiny-1234", "tiny", 2, 2, 0.5, D_OUT, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0))
W = np.random.default_rng(0).standard_normal((D_IN, D_OUT)).astype(np.float32)


def _onnx_model(path: Path, with_contract: bool = True) -> Path:
    """x: float32[batch, 8] -> embedding: float32[batch, 4] = normalize(x @ W) (L2, rows)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"]),
        helper.make_node("Mul", ["y", "y"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Sqrt", ["ss"], ["norm"]),
        helper.make_node("Div", ["y", "norm"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", D_IN])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D_OUT])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_contract:
        helper.set_model_props(model, CONTRACT.to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _reference(x: np.ndarray) -> np.ndarray:
    y = x @ W
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def _torchscript(path: Path, with_info: bool = True) -> Path:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.from_numpy(W.copy()))

        def forward(self, x):
            y = x @ self.w
            return y / torch.linalg.vector_norm(y, dim=1, keepdim=True)

    info = {
        "metadata": CONTRACT.to_metadata(),
        "inputs": [{"name": "x", "shape": [None, D_IN], "dtype": "float32"}],
        "outputs": [{"name": "embedding", "shape": [None, D_OUT], "dtype": "float32"}],
    }
    extra = {"skyfix.json": json.dumps(info)} if with_info else {}
    torch.jit.save(torch.jit.script(Tiny().eval()), str(path), _extra_files=extra)
    return path


@pytest.fixture
def onnx_path(tmp_path):
    return _onnx_model(tmp_path / "tiny.onnx")


# ---------------------------------------------------------------------------------------------------- factory
def test_backend_for_path():
    assert backend_for_path("a/b.onnx") == "onnxruntime"
    assert backend_for_path("m.ENGINE") == "tensorrt"
    assert backend_for_path("m.plan") == "tensorrt"
    assert backend_for_path("m.pt") == backend_for_path("m.pth") == backend_for_path("m.pt2") == "torch"
    with pytest.raises(BackendError, match=r"suffix '\.bin'.*\.onnx"):
        backend_for_path("m.bin")


def test_unknown_backend_and_missing_file(tmp_path, onnx_path):
    with pytest.raises(BackendError, match="unknown backend 'tflite'"):
        load_backend(onnx_path, backend="tflite")
    with pytest.raises(BackendError, match="not found"):
        load_backend(tmp_path / "nope.onnx")


def test_tensor_spec_normalises_dynamic_dims():
    spec = TensorSpec("x", ("batch", -1, 3, None), "float32")
    assert spec.shape == (None, None, 3, None)
    assert spec.describe() == "x[?,?,3,?] float32"
    assert TensorSpec("y", None, None).describe() == "y[?] any dtype"


# ---------------------------------------------------------------------------------------------- onnxruntime
def test_onnxruntime_specs_contract_and_output(onnx_path):
    with load_backend(onnx_path, device="cpu", threads=1) as be:
        assert be.name == "onnxruntime" and be.device == "cpu"
        assert be.inputs == [TensorSpec("x", (None, D_IN), "float32")]
        assert be.outputs == [TensorSpec("embedding", (None, D_OUT), "float32")]
        assert be.contract == CONTRACT
        assert math.isnan(be.last_latency_ms)
        for n in (1, 5):
            x = np.random.default_rng(n).standard_normal((n, D_IN)).astype(np.float32)
            out = be.infer({"x": x})
            assert set(out) == {"embedding"}
            np.testing.assert_allclose(out["embedding"], _reference(x), rtol=1e-5, atol=1e-6)
            assert np.isfinite(be.last_latency_ms) and be.last_latency_ms > 0
    with pytest.raises(BackendError, match="closed"):
        be.infer({"x": x})


def test_onnxruntime_without_contract_has_none(tmp_path):
    be = load_backend(_onnx_model(tmp_path / "plain.onnx", with_contract=False), device="cpu")
    assert be.contract is None


def test_onnxruntime_bad_contract_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = _onnx_model(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"skyfix.encoder_id": "x", "skyfix.bogus": "1"})
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="not a valid encoder contract.*skyfix export onnx"):
        load_backend(path, device="cpu")


def test_input_validation_messages(onnx_path):
    be = load_backend(onnx_path, device="cpu")
    x = np.zeros((2, D_IN), np.float32)
    with pytest.raises(BackendError, match=r"missing \['x'\], unexpected \['images'\]"):
        be.infer({"images": x})
    with pytest.raises(BackendError, match=r"expected dtype float32, got float64.*astype"):
        be.infer({"x": x.astype(np.float64)})
    with pytest.raises(BackendError, match=r"expected shape x\[\?,8\] float32.*got \(2, 7\)"):
        be.infer({"x": np.zeros((2, 7), np.float32)})
    with pytest.raises(BackendError, match=r"got \(8,\)"):
        be.infer({"x": np.zeros(8, np.float32)})
    with pytest.raises(BackendError, match="numpy array"):
        be.infer({"x": [[0.0] * D_IN]})
    # a non-contiguous view is accepted (made contiguous)
    xt = np.asfortranarray(np.random.default_rng(1).standard_normal((3, D_IN)).astype(np.float32))
    np.testing.assert_allclose(be.infer({"x": xt})["embedding"], _reference(xt), rtol=1e-5, atol=1e-6)


def test_onnxruntime_device_errors(onnx_path):
    from runtime.backends.onnxruntime_backend import choose_providers

    assert choose_providers("auto", ["CPUExecutionProvider"]) == (["CPUExecutionProvider"], "cpu")
    providers, used = choose_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert used == "cuda:1" and providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        choose_providers("tpu", ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="unknown onnxruntime backend options"):
        load_backend(onnx_path, device="cpu", batch=3)


def test_onnxruntime_rejects_garbage(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="could not load"):
        load_backend(path, device="cpu")


# ---------------------------------------------------------------------------------------------------- torch
def test_torch_matches_onnxruntime(tmp_path, onnx_path):
    pytest.importorskip("torch")
    ts = _torchscript(tmp_path / "tiny.pt")
    tb = load_backend(ts, device="cpu")
    ob = load_backend(onnx_path, device="cpu")
    assert tb.name == "torch" and tb.device == "cpu"
    assert tb.inputs == ob.inputs and tb.outputs == ob.outputs
    assert tb.contract == ob.contract == CONTRACT
    x = np.random.default_rng(3).standard_normal((6, D_IN)).astype(np.float32)
    np.testing.assert_allclose(tb.infer({"x": x})["embedding"], ob.infer({"x": x})["embedding"], rtol=1e-5, atol=1e-6)
    assert tb.last_latency_ms > 0
    with pytest.raises(BackendError, match="expected dtype float32"):
        tb.infer({"x": x.astype(np.float16)})


def test_torch_without_info_uses_signature(tmp_path):
    pytest.importorskip("torch")
    tb = load_backend(_torchscript(tmp_path / "plain.pt", with_info=False), device="cpu")
    assert [s.name for s in tb.inputs] == ["x"] and tb.inputs[0].shape is None
    assert tb.contract is None
    x = np.ones((2, D_IN), np.float32)
    out = tb.infer({"x": x})
    assert list(out) == ["output"] and out["output"].shape == (2, D_OUT)


def test_torch_exported_program(tmp_path):
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.normalize(x @ torch.from_numpy(W), dim=1)

    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(Tiny(), (torch.ones(2, D_IN),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path / "tiny.pt2"
    torch.export.save(ep, str(path))
    tb = load_backend(path, device="cpu")
    assert tb.inputs == [TensorSpec("x", (None, D_IN), "float32")]
    x = np.random.default_rng(4).standard_normal((3, D_IN)).astype(np.float32)
    np.testing.assert_allclose(tb.infer({"x": x})["output"], _reference(x), rtol=1e-5, atol=1e-6)


def test_torch_refuses_pickles(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "state.pth"
    torch.save({"w": torch.zeros(2)}, str(path))  # a state_dict: never unpickled by the backend
    with pytest.raises(BackendError, match="never unpickles.*torch.jit.script"):
        load_backend(path, device="cpu")


# -------------------------------------------------------------------------------------------- missing extras
BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {BLOCKED}:\n"
    "            raise ImportError('blocked for the test: ' + name)\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def _run_blocked(blocked: set[str], body: str) -> subprocess.CompletedProcess:
    code = BLOCK.replace("{BLOCKED}", repr(blocked)) + body
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_missing_torch_names_the_extra(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"x")
    out = _run_blocked({"torch"}, (
        "from runtime.backends import load_backend\n"
        "from runtime.errors import MissingExtraError\n"
        "try:\n"
        f"    load_backend({str(path)!r})\n"
        "except MissingExtraError as e:\n"
        "    print('MISSING', e)\n"
    ))
    assert "MISSING" in out.stdout and "pip install 'skyfix[train]'" in out.stdout, out.stderr


def test_missing_tensorrt_names_the_extra(tmp_path):
    path = tmp_path / "m.engine"
    path.write_bytes(b"x")
    out = _run_blocked({"tensorrt", "cuda", "pycuda"}, (
        "from runtime.backends import load_backend\n"
        "from runtime.errors import MissingExtraError\n"
        "try:\n"
        f"    load_backend({str(path)!r})\n"
        "except MissingExtraError as e:\n"
        "    print('MISSING', e)\n"
    ))
    assert "MISSING" in out.stdout and "pip install 'skyfix[trt]'" in out.stdout, out.stderr
    assert "JetPack" in out.stdout


def test_onnxruntime_backend_runs_without_torch(tmp_path, onnx_path):
    out = _run_blocked({"torch", "tensorrt", "cuda", "pycuda", "onnx"}, (
        "import numpy as np, sys\n"
        "from runtime.backends import load_backend\n"
        f"be = load_backend({str(onnx_path)!r}, device='cpu')\n"
        "print(be.infer({'x': np.ones((2, 8), np.float32)})['embedding'].shape)\n"
        "print(sorted({'torch', 'tensorrt', 'cuda', 'pycuda'} & set(sys.modules)))\n"
    ))
    assert out.stdout.split("\n")[:2] == ["(2, 4)", "[]"], out.stderr


# --------------------------------------------------------------------------------------------------- tensorrt
def test_tensorrt_device_must_be_cuda():
    from runtime.backends.tensorrt_backend import parse_device

    assert parse_device("auto") == 0 and parse_device("cuda:2") == 2
    with pytest.raises(BackendError, match="CUDA GPU.*onnxruntime"):
        parse_device("cpu")


def test_tensorrt_engine_roundtrip(tmp_path, onnx_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (pip install 'skyfix[trt]' on a CUDA machine)")
    from export.engine import build_engine, parse_batch

    engine = tmp_path / "tiny.engine"
    build_engine(onnx_path, engine, parse_batch("1:4:16"), workspace_mib=256, timing_cache=tmp_path / "t.cache")
    with load_backend(engine) as be:
        assert be.contract == CONTRACT
        x = np.random.default_rng(5).standard_normal((4, D_IN)).astype(np.float32)
        np.testing.assert_allclose(be.infer({"x": x})["embedding"], _reference(x), rtol=1e-3, atol=1e-4)
        with pytest.raises(BackendError, match="optimization profile"):
            be.infer({"x": np.zeros((17, D_IN), np.float32)})
