"""Shared CLI plumbing: run a parsed command's handler and turn SkyFix's typed errors into one-line messages."""

from __future__ import annotations

import argparse
import sys


def run_handler(args: argparse.Namespace, extra_errors: tuple = ()) -> int:
    """Call ``args.handler(args)``; a typed SkyFix error prints ``error: ...`` and exits 2 (no traceback).

    ``extra_errors``: further error base classes to treat so, declared by CLI group modules as ``ERRORS``
    (e.g. ``export``'s, which the runtime package itself never imports).
    """
    from calibration.errors import CalibrationError
    from maps.errors import MapError
    from runtime.errors import OnboardError

    try:
        code = args.handler(args)
    except (CalibrationError, MapError, OnboardError, *extra_errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(code or 0)
