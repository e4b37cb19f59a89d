"""Shared fixtures: the real third-party data in ../shared/data (or $SKYFIX_DATA), skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("SKYFIX_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data():
    """Callable ``shared_data("ortho/x.tif") -> Path``; skips the test when the file is not available."""
    root = _data_root()

    def get(rel: str) -> Path:
        if root is None:
            pytest.skip("real data not found: set SKYFIX_DATA or place it at ../shared/data")
        path = root / rel
        if not path.exists():
            pytest.skip(f"real data file {rel} not found under {root}")
        return path

    return get
