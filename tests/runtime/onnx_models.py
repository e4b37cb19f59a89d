"""Tiny ONNX encoders built with onnx.helper (no torch): real models ONNX Runtime runs, for plumbing tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maps.contract import EncoderContract


def mean_colour_contract(size: int = 32, encoder_id: str = "mean-colour-v1") -> EncoderContract:
    return EncoderContract(encoder_id, "mean-colour", size, size, 0.4, 3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def reference_embedding(images: np.ndarray, contract: EncoderContract) -> np.ndarray:
    """What :func:`write_mean_colour_encoder`'s model computes: normalised mean colour per image, L2-normalised."""
    x = (images.astype(np.float32) / 255.0 - np.float32(contract.mean[0])) / np.float32(contract.std[0])
    m = x.mean(axis=(1, 2))
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def write_mean_colour_encoder(path, contract: EncoderContract | None = None, *, layout: str = "NHWC",
                              metadata: bool = True) -> Path:
    """An encoder ``images uint8[N, s, s, 3]`` (NHWC, normalisation in the graph) or ``float32[N, 3, s, s]``
    (NCHW, normalised by the host) -> ``embedding float32[N, 3]``: the unit mean colour (see
    :func:`reference_embedding`), with the contract in ``metadata_props`` unless ``metadata`` is False."""
    import onnx
    from onnx import TensorProto, helper

    c = contract or mean_colour_contract()
    s = c.input_width
    nodes, inits = [], []
    if layout == "NHWC":
        inp = helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", s, s, 3])
        inits += [helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / (255.0 * c.std[0])]),
                  helper.make_tensor("shift", TensorProto.FLOAT, [], [-c.mean[0] / c.std[0]])]
        nodes += [helper.make_node("Cast", ["images"], ["xf"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["xf", "scale"], ["xs"]),
                  helper.make_node("Add", ["xs", "shift"], ["xn"])]
        axes = [1, 2]
    else:
        inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, s, s])
        nodes.append(helper.make_node("Identity", ["images"], ["xn"]))
        axes = [2, 3]
    inits.append(helper.make_tensor("axes", TensorProto.INT64, [2], axes))
    nodes += [helper.make_node("ReduceMean", ["xn", "axes"], ["m"], keepdims=0),
              helper.make_node("LpNormalization", ["m"], ["embedding"], axis=1, p=2)]
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(nodes, "mean_colour", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata:
        for k, v in c.to_metadata().items():
            e = model.metadata_props.add()
            e.key, e.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
