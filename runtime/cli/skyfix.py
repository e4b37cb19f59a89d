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
    import importlib

    parser = argparse.ArgumentParser(
        prog="skyfix",
        description="SkyFix: localize a drone or ground vehicle by matching its camera against aerial imagery.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, attr in GROUPS:
        getattr(importlib.import_module(module), attr)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
