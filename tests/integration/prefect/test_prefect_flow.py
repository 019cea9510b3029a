"""The failover flow on real Prefect (embedded mode): tasks per step, concurrency, artifacts, states."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.clock import parse_utc
from dr_engine.engine.progress import RecordingProgress
from dr_engine.engine.run import RunOptions
from dr_engine.errors import LockHeld
from dr_engine.evidence.audit import verify
from dr_engine.evidence.record import RunStatus, StepStatus
from dr_engine.lock.base import FileLock
from dr_engine.testing.runbooks import plan_from_steps

pytestmark = pytest.mark.integration

PARALLEL = """
- id: prepare
  action: fake.noop
- id: a
  action: fake.noop
  with: {seconds: 0.4}
  after: [prepare]
- id: b
  action: fake.noop
  with: {seconds: 0.4}
  after: [prepare]
- id: c
  action: fake.noop
  with: {seconds: 0.4}
  after: [prepare]
- id: healthy
  action: fake.check_health
  after: [a, b, c]
"""


async def _artifacts(key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return list(await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))))


async def _flow_runs(name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async with get_client() as client:
        return list(await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))))


def test_a_run_is_one_flow_run_with_concurrent_step_tasks(in_process_prefect: Path, tmp_path: Path) -> None:
    from dr_engine.flows.failover import launch

    plan = plan_from_steps(tmp_path, PARALLEL, name="parallel-app")
    progress = RecordingProgress()
    record = launch(plan, RunOptions(state_dir=tmp_path / "state", concurrency=3), progress=progress)
    assert record.status is RunStatus.SUCCEEDED
    assert all(s.status is StepStatus.SUCCEEDED for s in record.steps)
    # The three independent steps overlapped in time (they ran on three Prefect worker threads).
    spans = [(parse_utc(record.step(i).started_at or ""), parse_utc(record.step(i).finished_at or ""))
             for i in ("a", "b", "c")]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert progress.events[0] == ("run_started", None) and progress.events[-1] == ("run_succeeded", None)
    check = verify(tmp_path / "state" / "runs" / record.run_id / "audit.jsonl")
    assert check.ok and check.sealed
    runs = asyncio.run(_flow_runs(f"parallel-app-{record.run_id}"))
    assert len(runs) == 1 and runs[0].state.is_completed()
    table = asyncio.run(_artifacts("dr-steps-parallel-app"))
    summary = asyncio.run(_artifacts("dr-summary-parallel-app"))
    assert table and summary
    assert "healthy" in str(table[0].data) and record.run_id in summary[0].data


def test_a_failed_run_marks_the_flow_run_failed_and_can_be_resumed(in_process_prefect: Path, tmp_path: Path) -> None:
    from dr_engine.flows.failover import launch, resume_run

    plan = plan_from_steps(tmp_path, """
- id: first
  action: fake.noop
- id: flaky-once
  action: fake.fail
  with: {kind: ProviderError, times: 1}
  after: [first]
- id: healthy
  action: fake.check_health
  after: [flaky-once]
""", name="resumable-app")
    record = launch(plan, RunOptions(state_dir=tmp_path / "state"))
    assert record.status is RunStatus.FAILED and record.halted_at_step == "flaky-once"
    runs = asyncio.run(_flow_runs(f"resumable-app-{record.run_id}"))
    assert runs[0].state.is_failed() and "flaky-once" in (runs[0].state.message or "")
    resumed = resume_run(tmp_path / "state", record.run_id)
    assert resumed.status is RunStatus.SUCCEEDED and resumed.resumes == 1
    assert fakes.CALLS[(record.run_id, "first")] == 1 and fakes.CALLS[(record.run_id, "flaky-once")] == 2
    assert asyncio.run(_flow_runs(f"resumable-app-{record.run_id}-resume1"))[0].state.is_completed()


def test_lock_held_is_raised_before_a_run_starts(in_process_prefect: Path, tmp_path: Path) -> None:
    from dr_engine.flows.failover import launch

    plan = plan_from_steps(tmp_path, "- id: healthy\n  action: fake.check_health\n", name="locked-app")
    FileLock(tmp_path / "state" / "locks").acquire("locked-app", "20260101T000000Z-abcdef")
    with pytest.raises(LockHeld, match="20260101T000000Z-abcdef"):
        launch(plan, RunOptions(state_dir=tmp_path / "state"))
    assert not (tmp_path / "state" / "runs").exists()
