"""The layering rules of docs/DESIGN.md, checked on the real import graph and sources."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("calibration", "maps", "runtime", "export")


def _modules(package: str) -> list[str]:
    root = REPO / package
    return sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")
    )


def _imported_after(modules: list[str]) -> set[str]:
    """Top-level names in sys.modules after importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", ["calibration", "maps"])
def test_foundation_packages_import_nothing_internal(package):
    others = set(PACKAGES) - {package}
    loaded = _imported_after(_modules(package))
    assert not (loaded & others), f"{package} imports {sorted(loaded & others)}"


def test_no_module_imports_torch_or_tensorrt_at_import_time():
    loaded = _imported_after([m for p in PACKAGES for m in _modules(p)])
    assert not loaded & {"torch", "tensorrt", "pycuda", "cuda", "pymavlink"}


def test_static_imports_respect_layers():
    """calibration and maps never import each other, runtime or export, even inside functions."""
    for package in ("calibration", "maps"):
        forbidden = set(PACKAGES) - {package}
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                bad = [n for n in names if n.split(".")[0] in forbidden]
                assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {bad}"


def test_runtime_never_imports_export():
    """The onboard side stays free of the training side (torch, onnx tooling), even inside functions."""
    for path in (REPO / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad = [n for n in names if n.split(".")[0] == "export"]
            # the `skyfix` CLI is the one place that wires the export commands in (lazily, by module name)
            assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {bad}"


def test_no_pickle_anywhere():
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            assert "allow_pickle=True" not in text, path
            tree = ast.parse(text)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    assert all(a.name != "pickle" for a in node.names), path
                if isinstance(node, ast.ImportFrom):
                    assert node.module != "pickle", path
