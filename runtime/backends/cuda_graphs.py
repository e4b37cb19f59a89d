"""Per-batch-size captured runs with static buffers: CUDA graphs for the torch backend, testable on CPU.

:class:`BatchGraphCache` keeps one entry per input signature (shapes and dtypes, i.e. per batch size for an
encoder): host input buffers (pinned on CUDA), device input buffers, the captured run and its output buffers, and
host output buffers. A call copies the numpy inputs into the host buffers, then into the device buffers, replays,
copies the outputs to the host buffers and returns numpy copies of them. The first call of a new signature captures;
when capture fails the signature runs eagerly from then on (one warning, the reason in :attr:`failures`). At most
``max_entries`` signatures are held; the least recently used one is dropped (its graph and memory pool freed).

The capture step is a parameter, ``capture(fn, static_inputs) -> (replay, static_outputs)``:

* :func:`cuda_graph_capture`: warms ``fn`` up on a side stream, then captures it into a ``torch.cuda.CUDAGraph``
  (``torch.cuda.graph``); ``replay`` is the graph's ``replay`` and the outputs live in the graph's private pool.
* :func:`eager_capture`: runs ``fn`` once into output buffers; ``replay`` recomputes ``fn`` on the static inputs
  and copies the result into those buffers, which is what a graph replay does. It is the CPU stand-in that lets the
  cache's logic (entries, buffer reuse, eviction, fallback) run where there is no GPU.

torch is imported only inside the functions and methods.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: default bound on the captured signatures (batch sizes) of one model
DEFAULT_MAX_GRAPHS = 8
#: eager calls on the side stream before a capture (cuDNN algorithm choice, lazy initialisation)
CAPTURE_WARMUP = 3


class GraphCaptureWarning(RuntimeWarning):
    """A batch size could not be captured and runs eagerly (slower, still correct)."""


def _flatten(value) -> tuple[list, Any]:
    """Tensors of ``value`` (a tensor, or a tuple/list/dict of tensors) in order, and the structure to rebuild it."""
    if isinstance(value, dict):
        keys = list(value)
        return [value[k] for k in keys], ("dict", keys)
    if isinstance(value, (tuple, list)):
        return list(value), ("seq", type(value))
    return [value], ("one", None)


def _unflatten(items: list, spec) -> Any:
    kind, extra = spec
    if kind == "dict":
        return dict(zip(extra, items))
    if kind == "seq":
        return extra(items)
    return items[0]


def eager_capture(fn: Callable, static_inputs: tuple) -> tuple[Callable[[], None], Any]:
    """Run ``fn(*static_inputs)`` into output buffers; ``replay()`` recomputes it from the (refilled) inputs and
    copies into the same buffers. The CPU equivalent of :func:`cuda_graph_capture`."""
    import torch

    with torch.no_grad():  # not inference_mode: its tensors refuse the in-place copies of later replays
        outputs, spec = _flatten(fn(*static_inputs))
        buffers = [t.clone() for t in outputs]

    def replay() -> None:
        with torch.no_grad():
            fresh, _ = _flatten(fn(*static_inputs))
            for buf, t in zip(buffers, fresh):
                buf.copy_(t)

    return replay, _unflatten(buffers, spec)


def cuda_graph_capture(fn: Callable, static_inputs: tuple, warmup: int = CAPTURE_WARMUP):
    """Capture ``fn(*static_inputs)`` (CUDA tensors) into a CUDA graph; returns ``(graph.replay, static outputs)``.

    ``fn`` first runs ``warmup`` times on a side stream (as the ``torch.cuda.graph`` documentation asks), then once
    under capture. Replays read ``static_inputs`` in place and write the returned outputs in place.

    Raises:
        RuntimeError (or what torch raises): no CUDA, or an operation that cannot be captured (host sync, ...).
    """
    import torch

    device = static_inputs[0].device
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):
                fn(*static_inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            outputs = fn(*static_inputs)
    return graph.replay, outputs


@dataclass
class _Entry:
    """Buffers and run of one input signature."""

    host_in: list  # numpy views of the (pinned) host tensors
    host_in_tensors: list
    static_in: list  # device tensors read by the replay
    replay: Callable[[], None]
    static_out: list  # device tensors written by the replay
    host_out: list  # (pinned) host tensors the outputs are copied to
    spec: Any
    calls: int = field(default=0)


class BatchGraphCache:
    """Captured runs of ``fn`` per input signature with static, reused buffers; bounded, least recently used out.

    Args:
        fn: ``fn(*tensors on device) -> tensor | tuple/list/dict of tensors`` (a model's forward).
        capture: ``capture(fn, static_inputs) -> (replay, static_outputs)``: :func:`cuda_graph_capture` on CUDA,
            :func:`eager_capture` on CPU.
        device: where ``fn`` runs ("cpu", "cuda:0", ...).
        max_entries: signatures held at once (>= 1).
        pin_memory: host buffers in page-locked memory (CUDA only) with asynchronous copies.
        synchronize: called after the device-to-host copies are queued (CUDA: the stream's ``synchronize``);
            None where copies are synchronous (CPU).
    """

    def __init__(self, fn: Callable, capture: Callable, *, device: str = "cpu", max_entries: int = DEFAULT_MAX_GRAPHS,
                 pin_memory: bool = False, synchronize: Callable[[], None] | None = None) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, got {max_entries!r}")
        self._fn, self._capture, self.device = fn, capture, device
        self.max_entries, self.pin_memory, self._sync = max_entries, bool(pin_memory), synchronize
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        #: signature -> why its capture failed (it runs eagerly)
        self.failures: dict[tuple, str] = {}
        #: signatures dropped to respect ``max_entries``
        self.evictions = 0

    @staticmethod
    def signature(arrays: Sequence[np.ndarray]) -> tuple:
        """The cache key of a call: ``((shape, dtype), ...)`` per input."""
        return tuple((tuple(a.shape), a.dtype.str) for a in arrays)

    @property
    def sizes(self) -> list[tuple]:
        """Held signatures, least recently used first."""
        return list(self._entries)

    def buffers(self, arrays: Sequence[np.ndarray]) -> tuple[list, list] | None:
        """(device input tensors, device output tensors) held for the signature of ``arrays``; None when none."""
        entry = self._entries.get(self.signature(arrays))
        return None if entry is None else (list(entry.static_in), list(entry.static_out))

    def __call__(self, arrays: Sequence[np.ndarray]):
        """Run on host arrays; returns ``fn``'s output structure with numpy arrays (copies, safe to keep)."""
        key = self.signature(arrays)
        if key in self.failures:
            return self._eager(arrays)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._create(key, arrays)
            if entry is None:
                return self._eager(arrays)
        else:
            self._entries.move_to_end(key)
        for view, host, static, array in zip(entry.host_in, entry.host_in_tensors, entry.static_in, arrays):
            np.copyto(view, array)
            static.copy_(host, non_blocking=self.pin_memory)
        entry.replay()
        for host, out in zip(entry.host_out, entry.static_out):
            host.copy_(out, non_blocking=self.pin_memory)
        if self._sync is not None:
            self._sync()
        entry.calls += 1
        return _unflatten([h.numpy().copy() for h in entry.host_out], entry.spec)

    def clear(self) -> None:
        """Drop every entry (graphs, pools, buffers)."""
        self._entries.clear()

    def _eager(self, arrays: Sequence[np.ndarray]):
        import torch

        with torch.inference_mode():
            result = self._fn(*[torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays])
        items, spec = _flatten(result)
        return _unflatten([t.detach().cpu().numpy() for t in items], spec)

    def _create(self, key: tuple, arrays: Sequence[np.ndarray]) -> _Entry | None:
        import torch

        while len(self._entries) >= self.max_entries:  # free the oldest graph before capturing a new one
            self._entries.popitem(last=False)
            self.evictions += 1
        host = [torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype)).dtype, pin_memory=self.pin_memory)
                for a in arrays]
        views = [h.numpy() for h in host]
        static = [torch.empty(h.shape, dtype=h.dtype, device=self.device) for h in host]
        for view, h, s, a in zip(views, host, static, arrays):  # capture on the first call's real values
            np.copyto(view, a)
            s.copy_(h)
        try:
            replay, outputs = self._capture(self._fn, tuple(static))
        except Exception as exc:  # noqa: BLE001 - capture failures are many and untyped; the eager run stays correct
            self.failures[key] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"could not capture a CUDA graph for inputs {[s for s, _ in key]} ({self.failures[key]}); "
                          "they run eagerly", GraphCaptureWarning, stacklevel=3)
            return None
        outs, spec = _flatten(outputs)
        host_out = [torch.empty(t.shape, dtype=t.dtype, pin_memory=self.pin_memory) for t in outs]
        entry = _Entry(views, host, static, replay, outs, host_out, spec)
        self._entries[key] = entry
        return entry
