"""Without the `train` extra, `skyfix train` / `export onnx` / `eval-encoder` end with `error: ...` naming it.

Each command runs in a fresh interpreter where the module really cannot be imported (``sys.modules[name] = None``
makes ``import name`` raise ``ModuleNotFoundError``, as on a machine without it); nothing else is replaced.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _skyfix_without(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from runtime.cli.skyfix import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


CASES = [
    ("torch", ["train", "--preset", "tiny", "--steps", "1", "--out", "{tmp}/run"], "skyfix train"),
    ("onnx", ["train", "--preset", "tiny", "--steps", "1", "--out", "{tmp}/run"], "skyfix train"),
    ("onnxscript", ["train", "--preset", "tiny", "--steps", "1", "--out", "{tmp}/run"], "skyfix train"),
    ("torch", ["export", "onnx", "{tmp}/model.pt", "-o", "{tmp}/model.onnx"], "skyfix export onnx"),
    ("torch", ["export", "torch", "{tmp}/model.pt", "-o", "{tmp}/model.pt2"], "skyfix export torch"),
    ("torch", ["eval-encoder", "{tmp}/model.pt"], "skyfix eval-encoder"),
]


@pytest.mark.parametrize("module,argv,command", CASES)
def test_a_missing_extra_is_named(tmp_path, module, argv, command):
    (tmp_path / "model.pt").write_bytes(b"not read: the import fails first")
    res = _skyfix_without(module, [a.format(tmp=tmp_path) for a in argv], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "ModuleNotFoundError" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    expected = (f"error: `{command}` needs {module}, which is not installed: install it with "
                "`pip install 'skyfix[train]'`")
    assert last.startswith(expected), last
    if module == "torch":
        assert last == expected + " (on a Jetson, install NVIDIA's PyTorch wheel for your JetPack first)"
    else:
        assert last == expected
    # nothing was trained or written before the refusal
    assert not (tmp_path / "run").exists() and not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "model.pt2").exists()


def test_train_without_onnx_export_does_not_need_onnx(tmp_path):
    """--no-onnx skips the export, so training does not ask for onnx (it gets past the check to the training)."""
    res = _skyfix_without("onnx", ["train", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run"),
                                   "--no-onnx"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "needs onnx" not in res.stderr and (tmp_path / "run" / "final.pt").exists()


def test_other_import_errors_pass_through():
    from export.extras import missing_extra, needs_extras

    assert missing_extra(ModuleNotFoundError("no module named 'yaml'", name="yaml"), "x") is None

    @needs_extras("skyfix demo-command")
    def handler(args):
        raise ModuleNotFoundError("No module named 'somethingelse'", name="somethingelse")

    with pytest.raises(ModuleNotFoundError, match="somethingelse"):
        handler(None)

    @needs_extras("skyfix demo-command")
    def handler2(args):
        importlib.import_module("tensorrt_does_not_exist")

    with pytest.raises(ModuleNotFoundError):
        handler2(None)
    from runtime.errors import MissingExtraError

    err = missing_extra(ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt"), "skyfix export engine")
    assert isinstance(err, MissingExtraError)
    assert str(err) == ("`skyfix export engine` needs tensorrt, which is not installed: install it with "
                        "`pip install 'skyfix[trt]'` (on a Jetson, JetPack ships TensorRT)")
