"""Every subcommand of both CLIs answers --help, in a fresh interpreter with the optional extras hidden."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli import onboard, skyfix

REPO = Path(__file__).resolve().parents[2]

# Hide optional extras as if they were not installed (a meta path finder that refuses them).
BLOCK_EXTRAS = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'torch', 'onnx', 'onnxscript', 'tensorrt', 'pycuda', 'cuda', 'pymavlink'}:\n"
    "            raise ImportError('blocked for the test: ' + name)\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def _paths(parser: argparse.ArgumentParser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _paths(sub, prefix + (name,))


CASES = [("skyfix", p) for p in _paths(skyfix.build_parser())] + [("runtime", p) for p in _paths(onboard.build_parser())]


@pytest.mark.parametrize("prog,path", CASES, ids=[" ".join((c[0],) + c[1]) for c in CASES])
def test_help_works_without_extras(prog, path):
    module = "runtime.cli.skyfix" if prog == "skyfix" else "runtime.cli.onboard"
    code = BLOCK_EXTRAS + f"import {module} as m\nm.main({list(path) + ['--help']!r})\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_main_groups_are_present():
    names = {p[0] for p in _paths(skyfix.build_parser()) if p}
    assert {"calibrate", "maps", "simulate", "demo"} <= names
    assert "inspect" in {p[0] for p in _paths(onboard.build_parser()) if p}


def test_typed_errors_of_every_group_become_one_line_messages(tmp_path, capsys):
    """A typed error from a group the runtime package never imports (export's) is still an ``error:`` line, exit 2."""
    code = skyfix.main(["train", "--preset", "no-such-preset", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "no-such-preset" in err and "Traceback" not in err
