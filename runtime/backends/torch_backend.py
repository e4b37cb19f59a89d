"""PyTorch backend (CPU/CUDA): for GPUs without TensorRT and for parity checks against the training code.

Reads TorchScript archives (``torch.jit.save``; ``.pt``/``.pth``/``.ts``) and exported programs
(``torch.export.save``; ``.pt2``). It never unpickles: a pickled ``nn.Module`` or a ``state_dict`` is refused with a
message saying how to export the model. ``torch`` is imported only when a model is loaded.

Optional metadata rides in an extra file ``skyfix.json`` inside the archive (``_extra_files=`` / ``extra_files=``)::

    {"metadata": {"skyfix.encoder_id": ..., ...},            # EncoderContract.to_metadata()
     "inputs": [{"name": "images", "shape": [null, 3, 224, 224], "dtype": "float32"}],
     "outputs": [{"name": "embedding", "shape": [null, 256], "dtype": "float32"}]}

Without it, input names come from ``forward``'s signature (any shape/dtype) and outputs are named ``output`` (or
``output_0``, ``output_1``, ... for tuples).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.errors import BackendError, MissingExtraError

from .base import Backend, TensorSpec, contract_from_metadata

EXTRA_FILE = "skyfix.json"


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"the torch backend needs PyTorch ({exc}); install it with `pip install 'skyfix[train]'` "
            "(on Jetson, NVIDIA's PyTorch wheel for your JetPack)"
        ) from exc
    return torch


def _specs(items, what: str, path: Path) -> list[TensorSpec]:
    try:
        return [TensorSpec(str(d["name"]), None if d.get("shape") is None else tuple(d["shape"]), d.get("dtype"))
                for d in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"{path}: {EXTRA_FILE} {what} must be a list of {{name, shape, dtype}} objects, got {items!r} ({exc})"
        ) from exc


def _resolve_device(torch, device: str) -> str:
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU; install a CUDA build "
                "of PyTorch or use --device cpu"
            )
        return device if ":" in device else "cuda:0"
    raise BackendError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


class TorchBackend(Backend):
    """A TorchScript module or an exported program run by PyTorch. Load with :meth:`load`."""

    name = "torch"

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", **options) -> "TorchBackend":
        """Open a TorchScript archive (``.pt``/``.pth``/``.ts``) or an exported program (``.pt2``).

        Raises:
            BackendError: file missing, not TorchScript/exported program (pickles are refused), bad metadata.
            MissingExtraError: torch is not installed (``pip install 'skyfix[train]'``).
        """
        if options:
            raise BackendError(f"unknown torch backend options {sorted(options)}; it takes none")
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"PyTorch model not found: {path}")
        torch = _import_torch()
        used = _resolve_device(torch, device)
        extra = {EXTRA_FILE: ""}
        try:
            if path.suffix.lower() == ".pt2":
                program = torch.export.load(str(path), extra_files=extra)
                module = program.module()
                module.to(used)
                default_inputs = _exported_inputs(program)
            else:
                module = torch.jit.load(str(path), map_location=used, _extra_files=extra)
                module.eval()
                args = module.forward.schema.arguments[1:]  # drop self
                default_inputs = [TensorSpec(a.name, None, None) for a in args]
        except Exception as exc:  # torch raises RuntimeError/ValueError/zipfile errors for foreign files
            raise BackendError(
                f"{path} is not a TorchScript archive or torch.export program ({type(exc).__name__}: {exc}). "
                "SkyFix never unpickles models: save it with `torch.jit.script(model).save(path)` (or "
                "torch.jit.trace) or `torch.export.save(torch.export.export(model, args), 'model.pt2')`"
            ) from exc
        self = cls(path, used)
        self._torch = torch
        self._module = module
        info = {}
        if extra[EXTRA_FILE]:
            try:
                info = json.loads(extra[EXTRA_FILE])
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BackendError(f"{path}: the {EXTRA_FILE} inside is not valid JSON ({exc})") from exc
            if not isinstance(info, dict):
                raise BackendError(f"{path}: {EXTRA_FILE} must hold a JSON object, got {type(info).__name__}")
        self._inputs = _specs(info["inputs"], "inputs", path) if "inputs" in info else default_inputs
        self._outputs = _specs(info.get("outputs", []), "outputs", path)
        self._contract = contract_from_metadata(dict(info.get("metadata", {})), path)
        return self

    def _output_name(self, i: int, n: int) -> str:
        if i < len(self._outputs):
            return self._outputs[i].name
        return "output" if n == 1 else f"output_{i}"

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(feeds[s.name]).to(self.device) for s in self._inputs]
        try:
            with torch.inference_mode():
                result = self._module(*args)
        except Exception as exc:
            raise BackendError(f"torch failed on {self.path.name}: {type(exc).__name__}: {exc}") from exc
        if isinstance(result, dict):
            return {str(k): v.detach().cpu().numpy() for k, v in result.items()}
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        return {self._output_name(i, len(values)): v.detach().cpu().numpy() for i, v in enumerate(values)}

    def _release(self) -> None:
        self._module = None


def _exported_inputs(program) -> list[TensorSpec]:
    """Input specs of a ``torch.export`` program from its placeholder nodes (symbolic dims become None)."""
    user = list(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                specs.append(TensorSpec(node.name, None, None))
                continue
            shape = tuple(d if isinstance(d, int) else None for d in val.shape)
            specs.append(TensorSpec(node.name, shape, str(val.dtype).removeprefix("torch.")))
    return specs
