"""TensorRTBackend.infer_images: uint8 images normalised into a float NCHW engine input on the GPU by skyfix_native
(or on the host without its CUDA part) give the engine exactly the input the numpy path gives. Needs TensorRT and a
GPU (skips otherwise); the engine is a Flatten of its input, so its output is the input it saw."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import native

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def flatten_engine(tmp_path, dtype: str):
    """An engine: images float[batch, 3, 16, 12] -> out float[batch, 576] (Flatten), batch 1..8."""
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (pip install 'skyfix[trt]' on a CUDA machine)")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from export.engine import build_engine, parse_batch

    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.FLOAT16
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["out"], axis=1)], "flatten",
        [helper.make_tensor_value_info("images", elem, ["batch", 3, 16, 12])],
        [helper.make_tensor_value_info("out", elem, ["batch", 576])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"flatten_{dtype}.onnx"
    onnx.save(model, str(path))
    engine = tmp_path / f"flatten_{dtype}.engine"
    build_engine(path, engine, parse_batch("1:4:8"), workspace_mib=256, timing_cache=tmp_path / "t.cache")
    return engine


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_infer_images_gives_the_engine_the_numpy_input(gpu_lib, tmp_path, monkeypatch, dtype):
    from runtime.backends import load_backend

    monkeypatch.setenv(native.ENV_VAR, str(gpu_lib.path))
    engine = flatten_engine(tmp_path, dtype)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 12, 3), dtype=np.uint8)
    with load_backend(engine) as be:
        for reverse in (False, True):
            out = be.infer_images(images, MEAN, STD, reverse_channels=reverse)["out"]
            assert be._native_lib is gpu_lib and be._native_device  # the GPU path ran
            ref = native.normalize_numpy(images, MEAN, STD, dtype, reverse).reshape(5, -1)
            np.testing.assert_array_equal(out, ref)
            np.testing.assert_array_equal(out, be.infer({"images": ref.reshape(5, 3, 16, 12)})["out"])
        from runtime.errors import BackendError

        with pytest.raises(BackendError, match=r"images \[5, 12, 16, 3\] \(N, H, W, C\) do not fit input"):
            be.infer_images(images.transpose(0, 2, 1, 3), MEAN, STD)
        with pytest.raises(BackendError, match=r"outside the engine's optimization profile"):
            be.infer_images(np.zeros((9, 16, 12, 3), np.uint8), MEAN, STD)
        with pytest.raises(BackendError, match=r"std must be 3 finite numbers > 0 \(one per channel\), got "
                                               r"\(1\.0, 0\.0, 1\.0\)"):
            be.infer_images(images, MEAN, (1.0, 0.0, 1.0))
