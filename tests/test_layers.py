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


#: Training modules whose whole content is torch code: they import torch at the top (the module that needs a heavy
#: import is where it happens). Everything else, the packages `export` and `export.models` included, must not.
TORCH_MODULES = {
    "export.losses",
    "export.models.aggregation",
    "export.models.efficientnet_lite",
    "export.models.encoder",
    "export.models.small_cnn",
}
HEAVY = {"torch", "tensorrt", "pycuda", "cuda", "pymavlink"}


def test_no_other_module_imports_torch_or_tensorrt_at_import_time():
    modules = [m for p in PACKAGES for m in _modules(p)]
    assert TORCH_MODULES <= set(modules), "update TORCH_MODULES: a listed module no longer exists"
    loaded = _imported_after([m for m in modules if m not in TORCH_MODULES])
    assert not loaded & HEAVY, f"importing the non-training modules loads {sorted(loaded & HEAVY)}"


def test_torch_modules_are_not_imported_by_the_rest():
    """No module outside TORCH_MODULES imports one of them at module level (only inside functions)."""
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            if name in TORCH_MODULES:
                continue
            for node in ast.parse(path.read_text()).body:  # module level only
                if isinstance(node, ast.ImportFrom):
                    mod = node.module or ""
                    if node.level:
                        base = name.split(".")[: len(name.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
                        mod = ".".join(base + ([mod] if mod else []))
                    targets = {mod} | {f"{mod}.{a.name}" for a in node.names}
                elif isinstance(node, ast.Import):
                    targets = {a.name for a in node.names}
                else:
                    continue
                bad = targets & TORCH_MODULES
                assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {sorted(bad)} at module level"


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
