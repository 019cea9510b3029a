"""The test tree itself: pytest imports test modules by basename (no packages), so names must be unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(path.name for path in (REPO / "tests").rglob("test_*.py"))
    clashes = sorted(name for name, count in names.items() if count > 1)
    assert not clashes, f"test modules sharing a basename cannot both be collected: {clashes}"
