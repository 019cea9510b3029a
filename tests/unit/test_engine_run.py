"""The engine with fake actions and a fake clock: waves, retries, deadlines, halting, RTO/RPO."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.engine.executors import ThreadExecutor
from dr_engine.engine.progress import RecordingProgress
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import ConfigError, LockHeld
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus, load_record
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import FileLock, NullLock
from dr_engine.model import RunMode
from dr_engine.planning.plan import ExecutionPlan
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

FAILOVER = """
- id: fence
  action: fake.fence_data
  with: {dataset: orders, seconds: 5}
- id: promote
  action: fake.promote_data
  with: {dataset: orders, seconds: 10, lag_bytes: 0}
  after: [fence]
- id: scale
  action: fake.noop
  with: {seconds: 20}
- id: verify
  action: fake.check_health
  with: {seconds: 3}
  after: [promote, scale]
- id: shift
  action: fake.shift_traffic
  with: {seconds: 2}
  after: [verify]
- id: final
  action: fake.check_health
  with: {seconds: 1}
  after: [shift]
"""


def options(tmp_path: Path, clock: FakeClock, **kwargs: object) -> RunOptions:
    base: dict[str, object] = {"state_dir": tmp_path / "state", "clock": clock, "concurrency": 1,
                               "lock": NullLock(), "seed": 7}
    base.update(kwargs)
    return RunOptions(**base)  # type: ignore[arg-type]


def run(tmp_path: Path, steps: str, clock: FakeClock | None = None, **kwargs: object) -> tuple[RunRecord, Path]:
    clock = clock or FakeClock()
    plan = plan_from_steps(tmp_path, steps, **{k: str(v) for k, v in kwargs.pop("header", {}).items()})  # type: ignore[attr-defined]
    record = start_run(plan, options(tmp_path, clock, **kwargs))
    return record, tmp_path / "state" / "runs" / record.run_id


def assert_consistent(record: RunRecord, run_dir: Path) -> None:
    """run.json == the record returned == the record rebuilt from a verified audit log."""
    check = verify(run_dir / "audit.jsonl")
    assert check.ok, check.reason
    assert check.sealed
    on_disk = load_record(run_dir)
    assert on_disk.model_dump() == record.model_dump()
    rebuilt = rebuild_record(read_events(run_dir / "audit.jsonl"))
    assert rebuilt.model_dump() == record.model_dump()


def test_a_full_failover_succeeds_and_measures_rto(tmp_path: Path) -> None:
    clock = FakeClock()
    incident = clock.now() - timedelta(minutes=2)
    record, run_dir = run(tmp_path, FAILOVER, clock, incident_start=incident)
    assert record.status is RunStatus.SUCCEEDED
    assert [s.status for s in record.steps] == [StepStatus.SUCCEEDED] * 6
    # Inline execution on a fake clock: 5 + 20 + 10 + 3 + 2 + 1 seconds, plus the 2 minutes before the run.
    assert record.rto_seconds == pytest.approx(120 + 41)
    assert record.rto_met is True and record.rto_target_seconds == 300
    assert record.milestones["traffic_shifted"] < record.milestones["healthy"]
    assert record.milestones["promoted"] < record.milestones["traffic_shifted"]
    assert record.rpo_lag_bytes == 0 and record.rpo_seconds == 0 and record.rpo_met is True
    assert record.machine_seconds == pytest.approx(41) and record.human_wait_seconds == 0
    assert record.step("scale").duration_seconds == pytest.approx(20)
    assert record.changed_steps == ["fence", "scale", "promote", "shift"]
    assert record.artifacts == {"run": f"runs/{record.run_id}/run.json", "audit": f"runs/{record.run_id}/audit.jsonl"}
    assert_consistent(record, run_dir)


def test_rto_breach_is_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    record, _ = run(tmp_path, FAILOVER, clock, incident_start=clock.now() - timedelta(minutes=10))
    assert record.status is RunStatus.SUCCEEDED
    assert record.rto_seconds == pytest.approx(600 + 41)
    assert record.rto_met is False


def test_incident_start_in_the_future_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    with pytest.raises(ConfigError, match="in the future"):
        run(tmp_path, FAILOVER, clock, incident_start=clock.now() + timedelta(hours=1))


def test_incident_start_a_minute_ahead_is_refused_and_small_skew_is_clamped(tmp_path: Path) -> None:
    clock = FakeClock()
    with pytest.raises(ConfigError, match="in the future"):
        run(tmp_path / "a", FAILOVER, clock, incident_start=clock.now() + timedelta(seconds=50))
    record, run_dir = run(tmp_path / "b", FAILOVER, clock, incident_start=clock.now() + timedelta(seconds=3))
    assert record.incident_started_at == record.started_at  # clamped: the RTO is never negative
    assert record.rto_seconds is not None and record.rto_seconds >= 0
    notes = [e for e in read_events(run_dir / "audit.jsonl") if e["type"] == "note.added"]
    assert any("clamped" in str(e["data"].get("text")) for e in notes)


def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    record, run_dir = run(tmp_path, """
- id: flaky
  action: fake.flaky
  with: {failures: 2}
  retry: {attempts: 3, backoff: 1s}
- id: ok
  action: fake.check_health
  after: [flaky]
""", clock)
    assert record.status is RunStatus.SUCCEEDED
    step = record.step("flaky")
    assert step.attempts == 3 and step.facts == {"attempt": 3}
    attempts = [e for e in read_events(run_dir / "audit.jsonl") if e["type"] == "step.attempt"]
    assert [e["data"]["attempt"] for e in attempts] == [1, 2]
    assert all(e["data"]["error"]["kind"] == "TransientError" for e in attempts)
    # Full jitter: each wait is within [0, backoff * 2**(n-1)] and was slept on the fake clock.
    assert len(clock.sleeps) == 2 and 0 <= clock.sleeps[0] <= 1 and 0 <= clock.sleeps[1] <= 2
    assert step.duration_seconds == pytest.approx(sum(clock.sleeps), abs=0.001)
    assert_consistent(record, run_dir)


def test_retries_stop_after_the_declared_attempts(tmp_path: Path) -> None:
    record, run_dir = run(tmp_path, """
- id: flaky
  action: fake.flaky
  with: {failures: 10}
  retry: {attempts: 3, backoff: 10ms}
- id: ok
  action: fake.check_health
  after: [flaky]
""")
    assert record.status is RunStatus.FAILED
    step = record.step("flaky")
    assert step.status is StepStatus.FAILED and step.attempts == 3
    assert step.error is not None and step.error.kind == "TransientError"
    assert record.step("ok").status is StepStatus.PENDING
    assert_consistent(record, run_dir)


def test_retries_are_bounded_by_the_step_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    record, _ = run(tmp_path, """
- id: flaky
  action: fake.flaky
  with: {failures: 100, seconds: 2}
  timeout: 9s
  retry: {attempts: 100, backoff: 1s}
- id: ok
  action: fake.check_health
  after: [flaky]
""", clock)
    step = record.step("flaky")
    assert step.error is not None and step.error.kind == "StepTimeout"
    assert 1 < step.attempts < 100
    assert step.duration_seconds is not None and step.duration_seconds <= 9


def test_a_slow_step_hits_its_deadline(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: slow
  action: fake.noop
  with: {seconds: 600}
  timeout: 30s
- id: ok
  action: fake.check_health
  after: [slow]
""")
    step = record.step("slow")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.kind == "StepTimeout" and "30s" in step.error.message
    assert step.duration_seconds == pytest.approx(30)


def test_permanent_errors_are_not_retried(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: boom
  action: fake.fail
  with: {kind: ProviderError, message: AccessDenied}
  retry: {attempts: 5, backoff: 1s}
- id: ok
  action: fake.check_health
  after: [boom]
""")
    step = record.step("boom")
    assert step.attempts == 1 and step.error is not None
    assert (step.error.kind, step.error.message, step.error.hint) == ("ProviderError", "AccessDenied",
                                                                      "this is a simulated failure")
    assert record.status is RunStatus.FAILED and record.halted_at_step == "boom"


def test_a_safety_gate_halts_the_run_and_reports_what_changed(tmp_path: Path) -> None:
    record, run_dir = run(tmp_path, """
- id: scale
  action: fake.noop
- id: gate
  action: fake.fail
  with: {kind: PreconditionFailed, message: "lag 5000 bytes > RPO 0s"}
  after: [scale]
- id: promote
  action: fake.promote_data
  with: {dataset: orders}
  after: [gate]
- id: ok
  action: fake.check_health
  after: [promote]
""", header={"extra": "fencing: best-effort\nfencing_reason: the old primary is unreachable\n"})
    assert record.status is RunStatus.HALTED
    assert record.error is not None and record.error.kind == "PreconditionFailed"
    assert record.changed_steps == ["scale"]
    assert [s.status for s in record.steps] == [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.PENDING,
                                                StepStatus.PENDING]
    halted = next(e for e in read_events(run_dir / "audit.jsonl") if e["type"] == "run.halted")
    assert halted["data"]["changed_steps"] == [{"step": "scale", "summary": "fake.noop ok"}]
    assert halted["data"]["pending_steps"] == ["promote", "ok"]
    assert [o.kind for o in record.overrides] == ["fencing"]
    assert record.rto_seconds is None and record.rto_met is False
    assert_consistent(record, run_dir)


def test_halting_stops_new_steps_but_lets_running_ones_finish(tmp_path: Path) -> None:
    # Real threads and time: `boom` fails once `busy` is running, and `busy` ends only after that.
    import threading

    from dr_engine.clock import SystemClock
    from dr_engine.evidence.audit import read_events

    reached, release = tmp_path / "busy.reached", tmp_path / "busy.release"
    plan = plan_from_steps(tmp_path, f"""
- id: boom
  action: fake.fail
  with: {{kind: ProviderError, after_file: "{reached}"}}
- id: busy
  action: fake.hook
  with: {{reached: "{reached}", release: "{release}"}}
  timeout: 1m
- id: later
  action: fake.check_health
  after: [boom, busy]
""")
    state = tmp_path / "state"

    def release_after_boom_failed() -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            logs = list(state.glob("runs/*/audit.jsonl"))
            if logs and any(e["type"] == "step.failed" for e in read_events(logs[0])):
                break
            time.sleep(0.01)
        release.touch()

    threading.Thread(target=release_after_boom_failed, daemon=True).start()
    opts = RunOptions(state_dir=state, clock=SystemClock(), concurrency=2, lock=NullLock())
    executor = ThreadExecutor(2)
    try:
        record = start_run(plan, opts, executor=executor)
    finally:
        executor.shutdown()
    assert record.step("busy").status is StepStatus.SUCCEEDED
    assert record.step("boom").status is StepStatus.FAILED
    assert record.step("later").status is StepStatus.PENDING
    assert record.status is RunStatus.FAILED


def test_with_one_worker_no_step_starts_after_a_failure(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: boom
  action: fake.fail
- id: sibling
  action: fake.noop
- id: ok
  action: fake.check_health
  after: [boom, sibling]
""")
    assert record.step("sibling").status is StepStatus.PENDING
    assert fakes.CALLS[(record.run_id, "boom")] == 1
    assert (record.run_id, "sibling") not in fakes.CALLS


def test_an_action_crash_is_recorded_not_raised(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: bug
  action: fake.fail
  with: {kind: crash, message: "list index out of range"}
- id: ok
  action: fake.check_health
  after: [bug]
""")
    step = record.step("bug")
    assert step.error is not None and step.error.kind == "RuntimeError"
    assert "report it" in (step.error.hint or "")
    assert record.status is RunStatus.FAILED


def test_step_outputs_and_secrets_are_bound_at_run_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-s3cr3t-7f1c"
    monkeypatch.setenv("DR_TEST_WEST_TOKEN", canary)
    record, run_dir = run(tmp_path, """
- id: first
  action: fake.noop
  with: {outputs: {endpoint: "db.${target.addr}:${target.port}"}}
- id: second
  action: fake.noop
  with:
    outputs: {seen: "${steps.first.endpoint}/${run.mode}"}
    value: "user:${target.secrets.token}@host"
  after: [first]
- id: ok
  action: fake.check_health
  after: [second]
""")
    assert record.status is RunStatus.SUCCEEDED
    assert record.step("first").outputs == {"endpoint": "db.127.0.2.1:5433"}
    assert record.step("second").outputs == {"seen": "db.127.0.2.1:5433/failover"}
    for name in ("run.json", "audit.jsonl"):
        assert canary not in (run_dir / name).read_text()


def test_a_missing_secret_fails_the_step_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_TEST_WEST_TOKEN", raising=False)
    record, _ = run(tmp_path, """
- id: needs
  action: fake.noop
  with: {value: "${target.secrets.token}"}
- id: ok
  action: fake.check_health
  after: [needs]
""")
    error = record.step("needs").error
    assert error is not None and error.kind == "PreconditionFailed"
    assert "DR_TEST_WEST_TOKEN" in error.message and error.hint


def test_rpo_comes_from_the_latest_reading_per_dataset(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: fence
  action: fake.fence_data
  with: {dataset: orders, lag_bytes: 4096}
- id: promote
  action: fake.promote_data
  with: {dataset: orders, lag_bytes: 0, lag_seconds: 0}
  after: [fence]
- id: reconcile
  action: fake.reconcile_data
  with: {dataset: orders, rows_lost: 0}
  after: [promote]
- id: ok
  action: fake.check_health
  after: [reconcile]
""")
    assert (record.rpo_lag_bytes, record.rpo_seconds, record.rows_lost, record.rpo_met) == (0, 0, 0, True)


def test_rows_lost_breach_the_rpo(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: fence
  action: fake.fence_data
  with: {dataset: orders}
- id: promote
  action: fake.promote_data
  with: {dataset: orders, lag_seconds: 2}
  after: [fence]
- id: reconcile
  action: fake.reconcile_data
  with: {dataset: orders, rows_lost: 3}
  after: [promote]
- id: ok
  action: fake.check_health
  after: [reconcile]
""", header={"rpo": "5s"})
    assert record.status is RunStatus.SUCCEEDED
    assert (record.rpo_seconds, record.rows_lost, record.rpo_met) == (2, 3, False)


def test_human_wait_is_separate_from_machine_time(tmp_path: Path) -> None:
    record, _ = run(tmp_path, """
- id: work
  action: fake.noop
  with: {seconds: 30}
- id: approve
  action: fake.wait_approval
  with: {seconds: 240}
  after: [work]
- id: ok
  action: fake.check_health
  with: {seconds: 10}
  after: [approve]
""")
    assert record.human_wait_seconds == pytest.approx(240)
    assert record.machine_seconds == pytest.approx(40)
    assert record.rto_seconds == pytest.approx(280)


def test_drill_mode_skips_steps_marked_skip(tmp_path: Path) -> None:
    record, run_dir = run(tmp_path, """
- id: dangerous
  action: fake.noop
  drill: skip
- id: ok
  action: fake.check_health
  after: [dangerous]
""", mode=RunMode.DRILL)
    assert record.mode == "drill"
    assert record.step("dangerous").status is StepStatus.SKIPPED
    assert record.status is RunStatus.SUCCEEDED
    assert_consistent(record, run_dir)


def test_progress_listener_sees_every_transition(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, """
- id: flaky
  action: fake.flaky
  with: {failures: 1}
  retry: {attempts: 2, backoff: 10ms}
- id: ok
  action: fake.check_health
  after: [flaky]
""")
    progress = RecordingProgress()
    start_run(plan, options(tmp_path, FakeClock()), progress=progress)
    assert progress.events == [("run_started", None), ("step_started", "flaky"), ("step_retrying", "flaky"),
                               ("step_succeeded", "flaky"), ("step_started", "ok"), ("step_succeeded", "ok"),
                               ("run_succeeded", None)]


def test_run_json_is_rewritten_after_every_state_change(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, """
- id: a
  action: fake.noop
- id: ok
  action: fake.check_health
  after: [a]
""")
    seen: list[tuple[str, int]] = []

    class Peek(RecordingProgress):
        def step_started(self, record: RunRecord, step: object) -> None:
            on_disk = json.loads((tmp_path / "state" / "runs" / record.run_id / "run.json").read_text())
            seen.append((on_disk["steps"][0]["status"], on_disk["audit_count"]))

    start_run(plan, options(tmp_path, FakeClock()), progress=Peek())
    assert seen[0][0] == "running" and seen[1][0] == "succeeded"
    assert seen[1][1] > seen[0][1]


def test_a_second_run_of_the_same_runbook_fails_fast_on_the_lock(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path / "state" / "locks", clock=clock)
    held = lock.acquire("test-app", "20260131T020000Z-aaaaaa")
    plan: ExecutionPlan = plan_from_steps(tmp_path, """
- id: ok
  action: fake.check_health
""")
    with pytest.raises(LockHeld) as info:
        start_run(plan, options(tmp_path, clock, lock=lock))
    assert info.value.holder_run_id == held.run_id and "20260131T020000Z-aaaaaa" in str(info.value)
    assert StateDir(tmp_path / "state").run_ids() == []
    lock.release(held)
    record = start_run(plan, options(tmp_path, clock, lock=lock))
    assert record.status is RunStatus.SUCCEEDED
    assert lock.inspect("test-app") is None


def test_cli_refuses_an_incident_start_in_the_future_with_exit_2(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from dr_engine.cli import build_app

    ahead = (datetime.now(UTC) + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = CliRunner().invoke(build_app(), ["failover", "sample-noop", "--yes", "--incident-start", ahead,
                                              "--state-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "in the future" in result.output
    assert not (tmp_path / "runs").exists()
