"""An encoder as the rest of SkyFix sees it: ``embed(images uint8[n, h, w, 3] RGB) -> float32[n, d]`` + its contract.

:func:`load_encoder` opens a model file with the backend its type calls for (:func:`runtime.backends.load_backend`)
or, for ``"classical"``, the classical baseline descriptor of :mod:`maps.descriptors`, and returns an
:class:`Encoder`. The model must describe itself: its ``skyfix.*`` metadata (ONNX) or engine sidecar (TensorRT)
gives the contract (input size, ground resolution, embedding size, encoder id); a model without one is refused.

Model input layouts handled (read from the backend's input spec):

* ``uint8[N, H, W, 3]`` RGB, normalisation inside the graph (what ``skyfix export onnx`` writes);
* ``float32/float16[N, 3, H, W]`` normalised by the contract's mean/std on the host (older exports, torch files).

Batches larger than the model's fixed batch (TensorRT profiles, fixed-batch ONNX) are split into chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maps.contract import EncoderContract

from .errors import BackendError

__all__ = ["Encoder", "load_encoder", "default_model_path", "shipped_models", "with_classical", "CLASSICAL", "DEFAULT",
           "DEFAULT_INT8", "PLUS_CLASSICAL", "CLASSICAL_SHARE"]

CLASSICAL = "classical"
DEFAULT = "default"
#: the shipped model quantized to INT8 (U8S8 Q/DQ: uint8 activations, int8 weights; for ONNX Runtime on CPUs), same
#: embedding space and encoder id as :data:`DEFAULT`: maps built with either are searched with either
DEFAULT_INT8 = "default-int8"
_SHIPPED = {DEFAULT: "skyfix-default.onnx", DEFAULT_INT8: "skyfix-default-int8.onnx"}
#: ``MODEL+classical`` (e.g. ``default+classical``): the model's embedding concatenated with the classical
#: descriptor's (:func:`with_classical`)
PLUS_CLASSICAL = "+classical"
#: the classical descriptor's share of the concatenation's squared norm, chosen between 0.5 and 0.7 with
#: ``skyfix eval-encoder``'s protocol (200 queries per area, rendered camera views against every map tile). On the
#: three held-out Swiss areas R@1 is 99.5 / 53.0 / 97.0 at 0.7 and 99.0 / 50.0 / 95.0 at 0.5, against 94.0 / 45.0 /
#: 91.0 for the learned model and 93.5 / 46.0 / 87.5 for the classical descriptor alone. On the five orthophotos the
#: learned model was trained on (not held out for it), the concatenation also led by 2.5-14.5 points. The choice
#: was made on the areas it is reported on: a new area is the honest test.
CLASSICAL_SHARE = 0.7


def default_model_path(name: str = DEFAULT) -> Path:
    """The learned encoder shipped with SkyFix under ``name`` (:func:`shipped_models`): ``"default"`` is
    ``runtime/models/skyfix-default.onnx`` (FP16), ``"default-int8"`` its INT8 U8S8 variant;
    ``runtime/models/README.md`` gives the commands that reproduce them."""
    if name not in _SHIPPED:
        raise BackendError(f"no shipped model is called {name!r}; the shipped ones are {', '.join(_SHIPPED)}")
    return Path(__file__).resolve().parent / "models" / _SHIPPED[name]


def shipped_models() -> dict[str, Path]:
    """``{name: path}`` of the models shipped in ``runtime/models`` (``--model NAME``)."""
    return {name: default_model_path(name) for name in _SHIPPED}


class Encoder:
    """A callable encoder (see the module docstring).

    Attributes:
        contract: the :class:`maps.contract.EncoderContract` the embeddings obey.
        name: a short label (file name or ``"classical"``).
        backend: the :class:`runtime.backends.Backend` behind it (None for the classical descriptor).
    """

    def __init__(self, fn, contract: EncoderContract, name: str, backend=None, max_batch: int | None = None) -> None:
        self._fn = fn
        self.contract = contract
        self.name = name
        self.backend = backend
        self.max_batch = max_batch

    @property
    def embedding_dim(self) -> int:
        return int(self.contract.embedding_dim)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.contract.input_width), int(self.contract.input_height)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``uint8[n, h, w, 3]`` RGB at the contract's input size -> ``float32[n, d]`` L2-normalised rows."""
        arr = np.asarray(images)
        w, h = self.input_size
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (h, w, 3):
            raise BackendError(f"encoder {self.name} expects RGB uint8[n, {h}, {w}, 3] images (its contract), got "
                               f"{arr.dtype}{list(arr.shape)}; rectify/crop frames to the contract's input size first")
        if len(arr) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        step = self.max_batch or len(arr)
        out = [np.asarray(self._fn(arr[i:i + step]), np.float32) for i in range(0, len(arr), step)]
        emb = np.concatenate(out) if len(out) > 1 else out[0]
        if emb.shape != (len(arr), self.embedding_dim):
            raise BackendError(f"encoder {self.name} returned {list(emb.shape)}; its contract says "
                               f"[{len(arr)}, {self.embedding_dim}]")
        return emb

    @property
    def last_latency_ms(self) -> float:
        return float("nan") if self.backend is None else self.backend.last_latency_ms

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, {self.contract.encoder_id}, d={self.embedding_dim})"


def _classical() -> Encoder:
    from maps.descriptors import ClassicalDescriptor, classical_contract

    return Encoder(ClassicalDescriptor(), classical_contract(), CLASSICAL)


def with_classical(base: Encoder, share: float = CLASSICAL_SHARE) -> Encoder:
    """``base`` and the classical descriptor as one encoder: ``[sqrt(1 - share) * b, sqrt(share) * c]`` with ``b``
    and ``c`` each L2-normalised, so rows stay unit length and the cosine of two embeddings is ``(1 - share)`` times
    the base's cosine plus ``share`` times the classical one (a score-level ensemble that the map's search runs as
    one). The learned model and the hand-made descriptor fail on different imagery (see :data:`CLASSICAL_SHARE`).

    The contract is the base's (input size, ground resolution, preprocessing) with the summed dimension and an
    encoder id naming both parts and the share, so a map built with it refuses either part alone.

    Raises:
        BackendError: ``share`` outside (0, 1), or a base whose input size or ground resolution differs from the
        classical descriptor's.
    """
    from dataclasses import replace

    if not 0.0 < float(share) < 1.0:
        raise BackendError(f"the classical share of a concatenation must be in (0, 1), got {share!r}")
    cls = _classical()
    b, c = base.contract, cls.contract
    if (b.input_width, b.input_height) != (c.input_width, c.input_height) or \
            abs(b.ground_resolution_m - c.ground_resolution_m) > 1e-9:
        raise BackendError(f"{base.name} takes {b.input_width}x{b.input_height} px at {b.ground_resolution_m:g} m/px, "
                           f"the classical descriptor {c.input_width}x{c.input_height} px at {c.ground_resolution_m:g} "
                           "m/px: they cannot share one crop; use the model alone")
    wb, wc = np.float32(np.sqrt(1.0 - share)), np.float32(np.sqrt(share))

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))

    def fn(images: np.ndarray) -> np.ndarray:
        return np.concatenate([wb * unit(base(images)), wc * unit(cls(images))], axis=1)

    contract = replace(b, encoder_id=f"{b.encoder_id}+{c.encoder_id}@{share:g}", name=f"{b.name} + classical",
                       embedding_dim=b.embedding_dim + c.embedding_dim)
    return Encoder(fn, contract, f"{base.name}{PLUS_CLASSICAL}", base.backend, max_batch=base.max_batch)


def load_encoder(model: str | Path | None, *, backend: str = "auto", device: str = "cpu", threads: int = 1,
                 **options) -> Encoder:
    """Open ``model`` (a model file, or ``"classical"``/None for the baseline descriptor) as an :class:`Encoder`.

    Args:
        model: ``.onnx`` / ``.engine`` / ``.pt`` ... (see :func:`runtime.backends.load_backend`), "default" (the
            shipped learned model, :func:`default_model_path`), "default-int8" (its INT8 U8S8 variant) or
            "classical" / None (the baseline descriptor); any
            of the first two followed by ``+classical`` (``default+classical``): concatenated with the classical
            descriptor (:func:`with_classical`).
        backend, device: as for :func:`runtime.backends.load_backend`.
        threads: CPU threads for ONNX Runtime (1: predictable latency next to the rest of the loop).
    Raises:
        BackendError: the model cannot be loaded, carries no SkyFix contract, or has an input layout not handled.
        MissingExtraError: the backend's optional dependency is missing.
    """
    if model is None or str(model) == CLASSICAL:
        return _classical()
    if str(model).endswith(PLUS_CLASSICAL) and str(model) != PLUS_CLASSICAL:
        return with_classical(load_encoder(str(model)[:-len(PLUS_CLASSICAL)], backend=backend, device=device,
                                           threads=threads, **options))
    from .backends import backend_for_path, load_backend

    shipped = str(model) in _SHIPPED
    path = default_model_path(str(model)) if shipped else Path(model)
    if shipped and not path.exists():
        raise BackendError(f"the shipped model {model!r} ({path}) is missing from this installation; reinstall SkyFix "
                           "(`pip install -e .`) or pass --model FILE")
    if not path.exists():
        raise BackendError(f"model {path} does not exist; give an encoder file (skyfix export onnx) or 'classical'")
    name = backend_for_path(path) if backend in (None, "auto") else backend
    if name == "onnxruntime":
        options.setdefault("threads", threads)
    be = load_backend(path, backend=name, device=device, **options)
    contract = be.contract
    if contract is None:
        be.close()
        raise BackendError(f"{path} carries no SkyFix encoder contract (skyfix.* metadata or engine sidecar); export it "
                           "with `skyfix export onnx CHECKPOINT -o MODEL.onnx`")
    if len(be.inputs) != 1:
        be.close()
        raise BackendError(f"{path} has {len(be.inputs)} inputs {[s.describe() for s in be.inputs]}; an encoder has one")
    spec = be.inputs[0]
    shape = tuple(spec.shape) if spec.shape is not None else ()
    out_name = be.outputs[0].name
    fixed = shape[0] if shape and isinstance(shape[0], int) else None
    h, w = int(contract.input_height), int(contract.input_width)
    dtype = np.dtype(spec.dtype or "float32")
    if len(shape) == 4 and shape[3] == 3 and dtype == np.uint8:
        def fn(images: np.ndarray) -> np.ndarray:
            return be.infer({spec.name: np.ascontiguousarray(images)})[out_name]
    elif len(shape) == 4 and shape[1] == 3 and dtype.kind == "f":
        mean = np.asarray(contract.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(contract.std, np.float32).reshape(1, 3, 1, 1)
        scale = 1.0 / (255.0 * std)
        shift = mean / std
        rgb = contract.colour_order.upper() == "RGB"

        def fn(images: np.ndarray) -> np.ndarray:
            if hasattr(be, "infer_images"):  # TensorRT: normalised on the GPU by skyfix_native (runtime.native)
                return be.infer_images(images, contract.mean, contract.std, reverse_channels=not rgb)[out_name]
            x = images if rgb else images[..., ::-1]
            x = x.transpose(0, 3, 1, 2).astype(np.float32) * scale - shift
            return be.infer({spec.name: np.ascontiguousarray(x, dtype)})[out_name]
    else:
        be.close()
        raise BackendError(f"{path}: input {spec.describe()} is neither uint8[N, {h}, {w}, 3] (NHWC) nor "
                           f"float[N, 3, {h}, {w}] (NCHW); re-export it with `skyfix export onnx`")
    return Encoder(fn, contract, path.name, be, max_batch=fixed)
