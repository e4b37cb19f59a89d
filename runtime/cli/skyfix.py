"""``skyfix``: every SkyFix tool, grouped (calibrate, maps, simulate, ...).

Each package contributes a ``register(subparsers)`` function in its ``cli`` module; handlers import heavy or
optional dependencies only when they run, so ``--help`` works for every subcommand without any extra installed.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli.common import run_handler

# (module, attribute) of each group's register function; order is the order shown in --help.
GROUPS = (
    ("calibration.cli", "register"),
    ("maps.cli", "register"),
    ("runtime.sim.cli", "register"),
    ("export.cli", "register"),
    ("export.train_cli", "register"),
    ("runtime.bench_cli", "register"),
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
    for module, attr in GROUPS:
        mod = importlib.import_module(module)
        getattr(mod, attr)(sub)
        errors += tuple(getattr(mod, "ERRORS", ()))
    return parser, errors


def main(argv: list[str] | None = None) -> int:
    parser, errors = _build()
    return run_handler(parser.parse_args(argv), errors)


if __name__ == "__main__":
    sys.exit(main())
