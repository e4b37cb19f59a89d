"""PyTorch backend (CPU/CUDA): for GPUs without TensorRT and for parity checks against the training code.

Reads TorchScript archives (``torch.jit.save``; ``.pt``/``.pth``/``.ts``) and exported programs
(``torch.export.save``; ``.pt2``). It never unpickles: a pickled ``nn.Module`` or a ``state_dict`` is refused with a
message saying how to export the model. ``torch`` is imported only when a model is loaded.

Optional metadata rides in an extra file ``skyfix.json`` inside the archive (``_extra_files=`` / ``extra_files=``)::

    {"metadata": {"skyfix.encoder_id": ..., ...},            # EncoderContract.to_metadata()
     "inputs": [{"name": "images", "shape": [null, 3, 224, 224], "dtype": "float32"}],
     "outputs": [{"name": "embedding", "shape": [null, 256], "dtype": "float32"}]}

Without it, input names come from ``forward``'s signature (any shape/dtype) and outputs are named ``output`` (or
``output_0``, ``output_1``, ... for tuples). ``skyfix export torch`` writes such programs (:mod:`export.torch_export`).

CUDA graphs: an exported program on a CUDA device runs under CUDA graphs, one per batch size
(:class:`~runtime.backends.cuda_graphs.BatchGraphCache`): the first call of a new batch size warms up on a side
stream and captures a graph with static input/output buffers; later calls copy the input into a pinned host buffer
and the static device input, replay, and copy the output out through a pinned buffer. At most ``max_graphs`` batch
sizes are held (least recently used dropped); a batch size whose capture fails runs eagerly. Options:
``cuda_graphs`` (None = on for a program on CUDA; False = eager; True = insist, refused on CPU or for TorchScript,
whose scripted code may branch on data a graph would freeze) and ``max_graphs`` (default 8). On CPU: eager calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.errors import BackendError, MissingExtraError

from .base import Backend, TensorSpec, contract_from_metadata
from .cuda_graphs import DEFAULT_MAX_GRAPHS

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
    def load(cls, path: str | Path, device: str = "auto", cuda_graphs: bool | None = None,
             max_graphs: int = DEFAULT_MAX_GRAPHS, **options) -> "TorchBackend":
        """Open a TorchScript archive (``.pt``/``.pth``/``.ts``) or an exported program (``.pt2``).

        Args:
            device: "auto", "cpu", "cuda" or "cuda:N".
            cuda_graphs: None (default) = CUDA graphs for an exported program on CUDA; False = eager calls;
                True = CUDA graphs or an error (CPU device, TorchScript file).
            max_graphs: batch sizes captured at once (>= 1; least recently used dropped).

        Raises:
            BackendError: file missing, not TorchScript/exported program (pickles are refused), bad metadata,
                unknown or invalid options.
            MissingExtraError: torch is not installed (``pip install 'skyfix[train]'``).
        """
        if options:
            raise BackendError(f"unknown torch backend options {sorted(options)}; it takes cuda_graphs (None, True or "
                               "False) and max_graphs (an integer >= 1)")
        if cuda_graphs is not None and not isinstance(cuda_graphs, bool):
            raise BackendError(f"cuda_graphs must be None (auto), True or False, got {cuda_graphs!r}")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise BackendError(f"max_graphs must be an integer >= 1 (batch sizes captured at once), got {max_graphs!r}")
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"PyTorch model not found: {path}")
        program_file = path.suffix.lower() == ".pt2"
        if cuda_graphs and not program_file:
            raise BackendError(f"cuda_graphs=True needs a torch.export program (.pt2), got {path.name} (TorchScript "
                               "may branch on data, which a graph would freeze); export it with `skyfix export torch`")
        torch = _import_torch()
        used = _resolve_device(torch, device)
        if cuda_graphs and not used.startswith("cuda"):
            raise BackendError(f"cuda_graphs=True needs a CUDA device, but {path.name} runs on {used}; leave "
                               "cuda_graphs unset (None) or use device 'cuda'")
        extra = {EXTRA_FILE: ""}
        try:
            if program_file:
                program = torch.export.load(str(path), extra_files=extra)
                default_inputs = _exported_inputs(program)
                module = program_module(torch, program, used)
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
                + _version_hint(path, torch.__version__)
            ) from exc
        self = cls(path, used)
        self._torch = torch
        self._module = module
        self._graphs = None
        if program_file and used.startswith("cuda") and cuda_graphs is not False:
            from .cuda_graphs import BatchGraphCache, cuda_graph_capture

            stream_device = torch.device(used)
            self._graphs = BatchGraphCache(
                module, cuda_graph_capture, device=used, max_entries=max_graphs, pin_memory=True,
                synchronize=lambda: torch.cuda.current_stream(stream_device).synchronize(),
            )
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

    @property
    def cuda_graphs(self):
        """The :class:`~runtime.backends.cuda_graphs.BatchGraphCache` running this model, None for eager calls."""
        return self._graphs

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        try:
            if self._graphs is not None:
                result = self._graphs([feeds[s.name] for s in self._inputs])
            else:
                args = [torch.from_numpy(feeds[s.name]).to(self.device) for s in self._inputs]
                with torch.inference_mode():
                    result = self._module(*args)
        except Exception as exc:
            raise BackendError(f"torch failed on {self.path.name}: {type(exc).__name__}: {exc}") from exc
        if isinstance(result, dict):
            return {str(k): _host(v) for k, v in result.items()}
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        return {self._output_name(i, len(values)): _host(v) for i, v in enumerate(values)}

    def _release(self) -> None:
        if self._graphs is not None:
            self._graphs.clear()
        self._graphs = None
        self._module = None


def program_module(torch, program, device: str):
    """The callable module of an exported ``program`` on ``device`` ("cpu", "cuda:0", ...).

    Off the CPU, ``torch.export.passes.move_to_device_pass`` moves the weights and rewrites the device arguments
    recorded inside the graph (e.g. ``aten._assert_tensor_metadata(device=cpu)`` of a program exported on a CPU);
    torch versions without the pass get ``module.to(device)``.
    """
    move = getattr(getattr(torch.export, "passes", None), "move_to_device_pass", None)
    if device != "cpu" and move is not None:
        program = move(program, device)
    module = program.module()
    module.to(device)
    return module


def _host(value) -> np.ndarray:
    """A numpy array on the host from a torch tensor (any device) or a numpy array (the graph cache's output)."""
    return value if isinstance(value, np.ndarray) else value.detach().cpu().numpy()


def _version_hint(path: Path, running: str) -> str:
    """`` It was exported with torch X ...`` when ``path``'s ``skyfix.json`` names another torch version; else ""."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/extra/" + EXTRA_FILE)), None)
            if name is None:
                return ""
            meta = json.loads(archive.read(name)).get("metadata", {})
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError):
        return ""
    exported = meta.get("skyfix_export.torch_version") if isinstance(meta, dict) else None
    if not exported or exported == running:
        return ""
    return (f". It was exported with torch {exported} and this is torch {running}: torch.export archives are not "
            "guaranteed to load in another torch version; export it again here with `skyfix export torch`")


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
