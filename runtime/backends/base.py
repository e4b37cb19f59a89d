"""The one backend contract every inference engine implements (as NVIDIA's Polygraphy does).

A backend loads a model file, describes its named inputs and outputs (:class:`TensorSpec`), runs it on named numpy
arrays and reports the wall time of the last run. Feeds are checked against the input specs before anything runs,
so a wrong name, rank, fixed dimension or dtype fails with a :class:`BackendError` naming what was expected and what
came. Nothing here imports an optional dependency.
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maps.contract import EncoderContract
from runtime.errors import BackendError


def _dim(d) -> int | None:
    """One dimension: a non-negative int, or None for dynamic (-1, None, symbolic names like "batch")."""
    if d is None or isinstance(d, str) or isinstance(d, bool):
        return None
    try:
        d = int(d)
    except (TypeError, ValueError):
        return None
    return d if d >= 0 else None


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: tensor name in the model.
        shape: one entry per dimension, an int for a fixed size or None for a dynamic one (-1 and symbolic names
            are turned into None); ``None`` for the whole shape when the rank is unknown (TorchScript).
        dtype: numpy dtype name (``"float32"``, ``"uint8"``, ...), or None when the model does not say.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str | None = "float32"

    def __post_init__(self) -> None:
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(_dim(d) for d in self.shape))
        if self.dtype is not None:
            try:
                object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
            except TypeError:  # a type numpy lacks (bfloat16, fp8): not checked
                object.__setattr__(self, "dtype", None)

    def describe(self) -> str:
        """``name[dims] dtype`` with ``?`` for dynamic dimensions, e.g. ``images[?,3,224,224] float32``."""
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype or 'any dtype'}"

    def check(self, array: np.ndarray) -> None:
        """Raise :class:`BackendError` unless ``array`` has this spec's rank, fixed dimensions and dtype."""
        if self.dtype is not None and array.dtype != np.dtype(self.dtype):
            raise BackendError(
                f"input {self.name!r}: expected dtype {self.dtype}, got {array.dtype} (shape {tuple(array.shape)}); "
                f"convert it with array.astype(np.{self.dtype})"
            )
        if self.shape is None:
            return
        if array.ndim != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            raise BackendError(
                f"input {self.name!r}: expected shape {self.describe()} (? = any size), got {tuple(array.shape)} "
                f"{array.dtype}"
            )


class Backend(abc.ABC):
    """A loaded model that runs on named numpy arrays.

    Subclasses implement :meth:`load` (a classmethod returning a ready instance) and :meth:`_run`; they set
    ``self._inputs``, ``self._outputs`` and ``self._contract`` while loading. Use as a context manager or call
    :meth:`close` to free the session/engine/device memory.
    """

    #: short backend name ("onnxruntime", "torch", "tensorrt").
    name: str = "backend"

    def __init__(self, path: str | Path, device: str) -> None:
        self.path = Path(path)
        #: where it runs, e.g. "cpu" or "cuda:0".
        self.device = device
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._contract: EncoderContract | None = None
        self._last_latency_ms = math.nan
        self._closed = False

    # --- to implement ---------------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path, device: str = "auto", **options) -> "Backend":
        """Open the model at ``path`` on ``device`` ("auto", "cpu", "cuda", "cuda:N") and return a ready backend."""

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on validated, C-contiguous feeds; return every output by name (host numpy arrays)."""

    def _release(self) -> None:
        """Free backend resources (called once by :meth:`close`)."""

    # --- shared ---------------------------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        """Input specs in model order (dynamic dimensions are None)."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output specs in model order (dynamic dimensions are None)."""
        return list(self._outputs)

    @property
    def contract(self) -> EncoderContract | None:
        """The encoder's preprocessing contract from the model's ``skyfix.*`` metadata, or None when it has none."""
        return self._contract

    @property
    def last_latency_ms(self) -> float:
        """Wall time of the last :meth:`infer` in milliseconds (host-to-host, copies included); NaN before any."""
        return self._last_latency_ms

    def validate(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``feeds`` against :attr:`inputs` and return them as C-contiguous arrays.

        Raises:
            BackendError: a missing or unexpected name, a non-array value, or a wrong rank/fixed dim/dtype.
        """
        if self._closed:
            raise BackendError(f"{self.name} backend for {self.path} is closed; load the model again")
        if not isinstance(feeds, dict):
            raise BackendError(f"feeds must be a dict of input name -> numpy array, got {type(feeds).__name__}")
        expected = [s.name for s in self._inputs]
        missing = [n for n in expected if n not in feeds]
        unknown = [n for n in feeds if n not in expected]
        if missing or unknown:
            raise BackendError(
                f"model {self.path.name} expects inputs {[s.describe() for s in self._inputs]}; "
                f"missing {missing}, unexpected {unknown} (got {sorted(feeds)})"
            )
        out = {}
        for spec in self._inputs:
            value = feeds[spec.name]
            if not isinstance(value, np.ndarray):
                raise BackendError(
                    f"input {spec.name!r}: expected a numpy array {spec.describe()}, got {type(value).__name__}"
                )
            spec.check(value)
            out[spec.name] = np.ascontiguousarray(value)
        return out

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feeds: one numpy array per input name, matching :attr:`inputs` (e.g. ``{"images": float32[n,3,h,w]}``).

        Returns:
            One numpy array per output name (host memory), e.g. ``{"embedding": float32[n, d]}``.
        """
        checked = self.validate(feeds)
        t0 = time.perf_counter_ns()
        result = self._run(checked)
        self._last_latency_ms = (time.perf_counter_ns() - t0) / 1e6
        return result

    def close(self) -> None:
        """Free the model; later :meth:`infer` calls fail. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self._inputs)
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r}, inputs=[{ins}])"


def contract_from_metadata(meta: dict[str, str], path: Path) -> EncoderContract | None:
    """The :class:`EncoderContract` in ``meta`` (``skyfix.*`` keys), None when there are none.

    Raises:
        BackendError: the keys are there but do not form a valid contract.
    """
    from maps.contract import METADATA_PREFIX
    from maps.errors import MapError

    if not any(k.startswith(METADATA_PREFIX) for k in meta):
        return None
    try:
        return EncoderContract.from_metadata(meta)
    except MapError as exc:
        raise BackendError(
            f"{path}: its '{METADATA_PREFIX}*' metadata is not a valid encoder contract ({exc}); "
            "re-export the model with `skyfix export onnx`"
        ) from exc
