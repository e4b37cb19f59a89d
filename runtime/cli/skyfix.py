"""``skyfix``: every SkyFix tool, grouped (calibrate, maps, simulate, ...).

Each package contributes a ``register(subparsers)`` function in its ``cli`` module; handlers import heavy or
optional dependencies only when they run, so ``--help`` works for every subcommand without any extra installed.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli.common import run_handler

# (module, attribute[, wiring]) of each group's register function; order is the order shown in --help. The wiring
# maps a keyword of the register function to a "module:function" it needs from another package.
GROUPS = (
    ("calibration.cli", "register"),
    ("maps.cli", "register", {"load_encoder": "runtime.encoder:load_encoder",
                              "photo_mosaic": "runtime.mapping.photo_map:mosaic_from_photos"}),
    ("runtime.sim.cli", "register"),
    ("export.cli", "register"),
    ("export.train_cli", "register"),
    ("runtime.cli.bench", "register"),
    ("runtime.cli.demo", "register"),
)


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, tuple]:
    """The parser, and the typed error bases the group modules declare (``ERRORS``)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="skyfix",
        description="SkyFix: localize a drone or ground vehicle by matching its camera against aerial imagery.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    errors: tuple = ()
    for module, attr, *rest in GROUPS:
        mod = importlib.import_module(module)
        # wiring: callables a group needs from other packages, imported only when a handler calls them
        kwargs = {k: _lazy(v) for k, v in (rest[0] if rest else {}).items()}
        getattr(mod, attr)(sub, **kwargs)
        errors += tuple(getattr(mod, "ERRORS", ()))
    return parser, errors


def _lazy(target: str):
    """``"module:function"`` -> a function that imports the module on first call (keeps ``--help`` light)."""
    module, name = target.split(":")

    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


def main(argv: list[str] | None = None) -> int:
    parser, errors = _build()
    return run_handler(parser.parse_args(argv), errors)


if __name__ == "__main__":
    sys.exit(main())
