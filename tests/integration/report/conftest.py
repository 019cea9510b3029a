"""Fixtures for report tests: real runs written by the engine with fake actions on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from dr_engine.testing.sample_runs import SampleRuns, make_sample_runs


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleRuns:
    """Five recorded runs (drill, failover with override, failed, halted, RTO missed)."""
    return make_sample_runs(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def fresh_samples(tmp_path: Path) -> SampleRuns:
    """Sample runs this test may modify."""
    return make_sample_runs(tmp_path)
