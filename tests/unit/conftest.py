"""Fixtures for unit tests: corpus regions, a runbook writer and test-local fake actions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook_fixtures import CORPUS_REGIONS, LoadRunbook, WriteRunbook

from dr_engine.actions.registry import register, unregister
from dr_engine.config.loader import LoadedRunbook, load_runbook

HEADER = """runbook: {name}
source: east
target: west
objectives: {{rto: 5m, rpo: 0s}}
{extra}steps:
"""


@pytest.fixture
def fake_actions() -> Iterator[None]:
    """Register the fake fence/promote/shift/health/emit actions for one test only."""
    from fake_actions import FAKES

    for cls in FAKES:
        register(cls)
    try:
        yield
    finally:
        for cls in FAKES:
            unregister(cls.name)


@pytest.fixture
def write_runbook(tmp_path: Path) -> WriteRunbook:
    """Write a runbook with the standard header (east -> west) and the given steps YAML."""

    def write(steps: str, *, name: str = "t", extra: str = "", file: str = "rb.yaml") -> Path:
        path = tmp_path / file
        path.write_text(HEADER.format(name=name, extra=extra) + steps, encoding="utf-8")
        return path

    return write


@pytest.fixture
def load(write_runbook: WriteRunbook) -> LoadRunbook:
    """Write and load a runbook against the corpus regions."""

    def run(steps: str, **kwargs: str) -> LoadedRunbook:
        return load_runbook(write_runbook(steps, **kwargs), regions_dir=CORPUS_REGIONS)

    return run
