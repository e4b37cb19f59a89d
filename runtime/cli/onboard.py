"""``runtime``: the onboard commands (``replay``, ``run``, ``eval``, ``bench``, ``scenarios``, ``matrix``,
``likelihood``, ``inspect``, ``photo-eval``, ``photo-check``)."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.common import run_handler

GROUPS = (
    ("runtime.cli.replay", "register"),
    ("runtime.cli.live", "register"),
    ("runtime.cli.eval", "register"),
    ("runtime.tools.bench_loop", "register"),
    ("runtime.tools.scenarios", "register"),
    ("runtime.tools.matrix", "register"),
    ("runtime.tools.photo_protocol", "register"),
    ("runtime.tools.photo_check", "register"),
    ("runtime.cli.bag", "register"),
    ("runtime.cli.likelihood", "register"),
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="runtime", description="SkyFix onboard runtime.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, attr in GROUPS:
        getattr(importlib.import_module(module), attr)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_handler(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
