"""`skyfix export engine` without TensorRT: --batch parsing, precision policy, sidecar and its compatibility check,
the CLI's help and missing-extra error. A real build runs only where tensorrt is installed."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import cli
from export.engine import BatchRange, file_sha256, parse_batch, plan_precision, profile_shapes
from runtime.backends.tensorrt_backend import (
    EngineSidecar, ProfileShape, check_engine_compatible, read_sidecar, sidecar_path, version_key,
)
from runtime.errors import BackendError, MissingExtraError

REPO = Path(__file__).resolve().parents[2]
TRT10_BUILDER = {"FP16", "INT8", "BF16", "FP8", "STRICT_TYPES", "REFIT", "TF32"}
TRT10_NETWORK = {"EXPLICIT_BATCH", "STRONGLY_TYPED"}
TRT11_BUILDER = {"REFIT", "TF32", "DEBUG"}
TRT11_NETWORK = {"STRONGLY_TYPED"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyfix")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


# ------------------------------------------------------------------------------------------------------ --batch
def test_parse_batch():
    assert parse_batch("1:4:16") == BatchRange(1, 4, 16)
    assert parse_batch("8") == BatchRange(8, 8, 8)
    for bad in ("4:1:16", "0:1:2", "1:4", "a:b:c", "1:-4:16", ""):
        with pytest.raises(BackendError, match="MIN"):
            parse_batch(bad)


def test_cli_parses_engine_arguments(capsys):
    args = _parser().parse_args(["export", "engine", "m.onnx", "-o", "m.engine", "--batch", "1:4:16",
                                 "--workspace", "512", "--fp16", "--timing-cache", "t.cache"])
    assert args.batch == BatchRange(1, 4, 16) and args.workspace == 512 and args.fp16
    assert args.timing_cache == "t.cache" and args.output == "m.engine" and args.handler is cli.run_engine
    defaults = _parser().parse_args(["export", "engine", "m.onnx"])
    assert defaults.batch == BatchRange(1, 1, 1) and defaults.workspace == 1024 and not defaults.fp16
    with pytest.raises(SystemExit):
        _parser().parse_args(["export", "engine", "m.onnx", "--batch", "16:4:1"])
    assert "1 <= MIN <= OPT <= MAX" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["export", "engine", "m.onnx", "--workspace", "0"])


def test_profile_shapes():
    b = BatchRange(1, 4, 16)
    assert profile_shapes("x", (-1, 3, 224, 224), b) == ((1, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224))
    assert profile_shapes("x", (2, 8), BatchRange(1, 2, 4)) == ((2, 8),) * 3
    with pytest.raises(BackendError, match=r"dynamic dimensions \[2, 3\].*fixed input size"):
        profile_shapes("x", (-1, 3, -1, -1), b)
    with pytest.raises(BackendError, match="fixed batch of 32.*--batch 32"):
        profile_shapes("x", (32, 8), b)
    with pytest.raises(BackendError, match="scalar"):
        profile_shapes("x", (), b)


# --------------------------------------------------------------------------------------------- precision policy
def test_precision_trt10_fp32_graph():
    plan = plan_precision("fp32", False, TRT10_BUILDER, TRT10_NETWORK)
    assert (plan.precision, plan.strongly_typed, plan.builder_flags, plan.network_flags) == ("fp32", False, (), ())
    plan = plan_precision("fp32", True, TRT10_BUILDER, TRT10_NETWORK)
    assert (plan.precision, plan.strongly_typed, plan.builder_flags) == ("fp16", False, ("FP16",))


def test_precision_graph_types_build_strongly_typed():
    for builder, network in ((TRT10_BUILDER, TRT10_NETWORK), (TRT11_BUILDER, TRT11_NETWORK), (TRT11_BUILDER, set())):
        for prec in ("fp16", "qdq"):
            plan = plan_precision(prec, True, builder, network)
            assert plan.precision == prec and plan.strongly_typed and plan.builder_flags == ()
            assert plan.network_flags == (("STRONGLY_TYPED",) if "STRONGLY_TYPED" in network else ())
    assert "--fp16 ignored" in plan_precision("qdq", True, TRT10_BUILDER, TRT10_NETWORK).note


def test_precision_trt11_fp32_graph():
    plan = plan_precision("fp32", False, TRT11_BUILDER, TRT11_NETWORK)
    assert (plan.precision, plan.strongly_typed, plan.builder_flags) == ("fp32", True, ())
    with pytest.raises(BackendError, match=r"TensorRT 11\.1 no longer has.*modelopt\.onnx\.autocast.*drop --fp16"):
        plan_precision("fp32", True, TRT11_BUILDER, TRT11_NETWORK, "11.1")
    with pytest.raises(BackendError, match="one of"):
        plan_precision("int4", False, TRT11_BUILDER, TRT11_NETWORK)


def test_onnx_precision_detection():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from export.engine import onnx_precision_of

    def model(dtype, nodes, inits):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [1, 2])],
                              [helper.make_tensor_value_info("y", dtype, [1, 2])], inits)
        return helper.make_model(g)

    assert onnx_precision_of(model(TensorProto.FLOAT, [helper.make_node("Relu", ["x"], ["y"])], [])) == "fp32"
    assert onnx_precision_of(model(TensorProto.FLOAT16, [helper.make_node("Relu", ["x"], ["y"])], [])) == "fp16"
    q = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s")]
    assert onnx_precision_of(model(TensorProto.FLOAT, q, inits)) == "qdq"


# ------------------------------------------------------------------------------------------------------ sidecar
def _sidecar(**over) -> EngineSidecar:
    values = dict(
        tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7", precision="fp16",
        strongly_typed=False, onnx_sha256="ab" * 32, onnx_name="enc.onnx",
        inputs=(ProfileShape("images", (1, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224)),),
        workspace_mib=512, metadata={"skyfix.encoder_id": "abc"},
    )
    values.update(over)
    return EngineSidecar(**values)


def test_sidecar_roundtrip(tmp_path):
    engine = tmp_path / "enc.engine"
    sc = _sidecar()
    assert sidecar_path(engine) == tmp_path / "enc.engine.json"
    sc.write(sidecar_path(engine))
    data = json.loads(sidecar_path(engine).read_text())
    assert data["tensorrt_version"] == "10.3.0.30" and data["inputs"][0]["max"] == [16, 3, 224, 224]
    assert read_sidecar(engine) == sc


def test_sidecar_errors(tmp_path):
    engine = tmp_path / "enc.engine"
    with pytest.raises(BackendError, match="no sidecar enc.engine.json.*skyfix export engine"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(BackendError, match="not readable JSON.*rebuild"):
        read_sidecar(engine)
    d = _sidecar().to_dict()
    d["colour"] = 1
    sidecar_path(engine).write_text(json.dumps(d))
    with pytest.raises(BackendError, match=r"unknown engine sidecar .* keys \['colour'\]"):
        read_sidecar(engine)
    d = _sidecar().to_dict()
    d["format"] = 99
    with pytest.raises(BackendError, match="upgrade SkyFix"):
        EngineSidecar.from_dict(d)
    with pytest.raises(BackendError, match="precision"):
        _sidecar(precision="int8")
    with pytest.raises(BackendError, match="min <= opt <= max"):
        ProfileShape("x", (4, 3), (1, 3), (16, 3))


def test_compatibility_check():
    sc = _sidecar()
    check_engine_compatible(sc, "10.3.0", "Orin", "8.7", "enc.engine")  # build number ignored
    with pytest.raises(BackendError) as info:
        check_engine_compatible(sc, "10.7.0.23", "NVIDIA H100 80GB HBM3", "9.0", "enc.engine")
    msg = str(info.value)
    assert "TensorRT 10.3.0.30 at build vs 10.7.0.23 here" in msg
    assert "GPU 'Orin' at build vs 'NVIDIA H100 80GB HBM3' here" in msg
    assert "compute capability 8.7 at build vs 9.0 here" in msg
    assert "`skyfix export engine enc.onnx -o enc.engine --batch 1:4:16 --workspace 512 --fp16`" in msg
    with pytest.raises(BackendError, match="GPU 'Orin' at build vs 'Orin Nano' here"):
        check_engine_compatible(sc, "10.3.0.30", "Orin Nano", "8.7", "enc.engine")
    assert version_key("10.3.0.30") == (10, 3, 0) and version_key("11.0") == (11, 0, 0)


def test_file_sha256(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ---------------------------------------------------------------------------------------------------------- CLI
BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'torch', 'onnx', 'tensorrt', 'pycuda', 'cuda'}:\n"
    "            raise ImportError('blocked for the test: ' + name)\n"
    "sys.meta_path.insert(0, _Block())\n"
    "import argparse\n"
    "from export import cli\n"
    "from runtime.cli.common import run_handler\n"
    "p = argparse.ArgumentParser(prog='skyfix')\n"
    "cli.register(p.add_subparsers(dest='command', required=True))\n"
)


def _cli(argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCK + f"sys.exit(run_handler(p.parse_args({argv!r})))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_help_works_without_tensorrt():
    out = _cli(["export", "engine", "--help"])
    assert out.returncode == 0, out.stderr
    assert "--batch MIN:OPT:MAX" in out.stdout and "--timing-cache" in out.stdout


def test_engine_without_tensorrt_names_the_extra(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    out = _cli(["export", "engine", str(onnx_file), "--batch", "1:4:16"])
    assert out.returncode == 2
    assert out.stderr.startswith("error: TensorRT is not installed")
    assert "pip install 'skyfix[trt]'" in out.stderr and "pypi.nvidia.com" in out.stderr and "JetPack" in out.stderr
    out = _cli(["export", "engine", str(tmp_path / "absent.onnx")])
    assert out.returncode == 2 and "ONNX model not found" in out.stderr


def test_build_engine_without_tensorrt_raises_missing_extra(tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed: this checks the error shown when it is absent")
    from export.engine import build_engine

    path = tmp_path / "m.onnx"
    path.write_bytes(b"x")
    with pytest.raises(MissingExtraError, match=r"skyfix\[trt\]"):
        build_engine(path, tmp_path / "m.engine", BatchRange(1, 1, 1))
