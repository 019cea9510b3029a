"""Paths and fixture types shared by the foundation unit tests (imported by conftest and tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dr_engine.config.loader import LoadedRunbook

REPO = Path(__file__).resolve().parents[2]
CORPUS_REGIONS = REPO / "tests" / "corpus" / "regions"

WriteRunbook = Callable[..., Path]
"""write_runbook(steps_yaml, *, name=, extra=, file=) -> path of the written runbook."""

LoadRunbook = Callable[..., LoadedRunbook]
"""load(steps_yaml, **same keywords) -> the loaded runbook (regions: the test corpus)."""
