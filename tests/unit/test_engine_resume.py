"""Resume: completed steps are not executed again, the failed/in-flight one re-runs, the chain continues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dr_engine.testing.actions as fakes
from dr_engine.engine.progress import Progress
from dr_engine.engine.run import RunOptions, prepare_resume, resume_run, start_run
from dr_engine.errors import LockHeld, RunStateError
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.record import RunRecord, RunStatus, StepRecord, StepStatus, load_record
from dr_engine.lock.base import FileLock, NullLock
from dr_engine.planning.plan import ExecutionPlan
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: first
  action: fake.noop
  with: {seconds: 5, outputs: {token: abc}}
- id: flaky-once
  action: fake.fail
  with: {kind: ProviderError, times: 1, seconds: 1}
  after: [first]
- id: uses-output
  action: fake.noop
  with: {outputs: {echo: "${steps.first.token}"}}
  after: [flaky-once]
- id: healthy
  action: fake.check_health
  after: [uses-output]
"""


def opts(tmp_path: Path, clock: FakeClock, **kw: object) -> RunOptions:
    return RunOptions(state_dir=tmp_path / "state", clock=clock, concurrency=1, lock=kw.pop("lock", NullLock()),
                      **kw)  # type: ignore[arg-type]


def test_resume_skips_finished_steps_and_reruns_the_failed_one(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS)
    first = start_run(plan, opts(tmp_path, clock))
    assert first.status is RunStatus.FAILED and first.halted_at_step == "flaky-once"
    clock.advance(600)  # an operator looks into it for ten minutes
    record = resume_run(tmp_path / "state", first.run_id, clock=clock, lock=NullLock(), reason="fixed the IAM role")
    assert record.status is RunStatus.SUCCEEDED and record.resumes == 1
    assert fakes.CALLS[(first.run_id, "first")] == 1
    assert fakes.CALLS[(first.run_id, "flaky-once")] == 2
    assert record.step("uses-output").outputs == {"echo": "abc"}
    assert record.step("first").started_at == first.step("first").started_at
    # RTO counts the wall-clock time spent halted; machine time does not.
    assert record.rto_seconds == pytest.approx(5 + 1 + 600 + 1)
    assert record.machine_seconds == pytest.approx(5 + 1 + 1)
    assert record.halted_at_step is None and record.error is None
    run_dir = tmp_path / "state" / "runs" / first.run_id
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed
    types = [e["type"] for e in read_events(run_dir / "audit.jsonl")]
    assert types.count("run.started") == 1 and types.count("run.resumed") == 1 and types.count("run.finished") == 2
    assert types.index("run.resumed") > types.index("run.finished")
    assert rebuild_record(read_events(run_dir / "audit.jsonl")).model_dump() == record.model_dump()
    assert load_record(run_dir).model_dump() == record.model_dump()


class Crash(BaseException):
    """Stands in for the process dying (SIGKILL) in the middle of a step."""


class CrashOn(Progress):
    def __init__(self, step_id: str) -> None:
        self.step_id = step_id

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        if step.id == self.step_id:
            raise Crash


def test_a_run_killed_mid_step_resumes_from_that_step(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    with pytest.raises(Crash):
        start_run(plan, opts(tmp_path, clock), progress=CrashOn("uses-output"))
    run_id = next((tmp_path / "state" / "runs").iterdir()).name
    on_disk = load_record(tmp_path / "state" / "runs" / run_id)
    assert on_disk.status is RunStatus.RUNNING
    assert on_disk.step("uses-output").status is StepStatus.RUNNING
    point = prepare_resume(tmp_path / "state", run_id)
    assert [s.status for s in point.record.steps] == [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED,
                                                      StepStatus.RUNNING, StepStatus.PENDING]
    record = resume_run(tmp_path / "state", run_id, clock=clock, lock=NullLock())
    assert record.status is RunStatus.SUCCEEDED
    assert fakes.CALLS[(run_id, "first")] == 1 and fakes.CALLS[(run_id, "flaky-once")] == 1
    resumed = next(e for e in read_events(tmp_path / "state" / "runs" / run_id / "audit.jsonl")
                   if e["type"] == "run.resumed")
    assert resumed["data"]["reset_steps"] == ["uses-output"] and resumed["data"]["previous_status"] == "running"


def test_resume_of_a_killed_run_takes_its_own_stale_lease_back(tmp_path: Path) -> None:
    clock = FakeClock()
    lock = FileLock(tmp_path / "state" / "locks", clock=clock)
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    with pytest.raises(Crash):
        start_run(plan, opts(tmp_path, clock, lock=lock), progress=CrashOn("healthy"))
    run_id = next((tmp_path / "state" / "runs").iterdir()).name
    lease_file = tmp_path / "state" / "locks" / "test-app.lock"
    # The crashed holder is this (live) process; make the lease look like a dead process's.
    lease = json.loads(lease_file.read_text())
    lease["pid"] = 2**22 + 12345
    lease_file.write_text(json.dumps(lease))
    with pytest.raises(LockHeld):
        start_run(plan, opts(tmp_path, clock, lock=lock))  # another run: a stale lease needs --take-over-lock
    record = resume_run(tmp_path / "state", run_id, clock=clock, lock=lock)
    assert record.status is RunStatus.SUCCEEDED
    assert lock.inspect("test-app") is None


def test_resume_refuses_a_run_that_succeeded(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    record = start_run(plan, opts(tmp_path, FakeClock()))
    with pytest.raises(RunStateError, match="already succeeded"):
        prepare_resume(tmp_path / "state", record.run_id)


def _failed_run(tmp_path: Path) -> tuple[ExecutionPlan, RunRecord]:
    plan = plan_from_steps(tmp_path, STEPS)
    return plan, start_run(plan, opts(tmp_path, FakeClock()))


def test_resume_refuses_a_changed_runbook_unless_forced(tmp_path: Path) -> None:
    plan, record = _failed_run(tmp_path)
    path = plan.loaded.path
    path.write_text(path.read_text().replace("seconds: 5,", "seconds: 6,"))
    with pytest.raises(RunStateError, match="changed since run") as info:
        prepare_resume(tmp_path / "state", record.run_id)
    assert "--force" in (info.value.hint or "")
    resumed = resume_run(tmp_path / "state", record.run_id, force=True, clock=FakeClock(), lock=NullLock())
    assert resumed.status is RunStatus.SUCCEEDED
    assert [o.kind for o in resumed.overrides] == ["runbook-changed"]
    assert resumed.runbook_sha256 != record.runbook_sha256


def test_resume_refuses_changed_steps_even_when_forced(tmp_path: Path) -> None:
    plan, record = _failed_run(tmp_path)
    path = plan.loaded.path
    path.write_text(path.read_text() + "  - id: extra\n    action: fake.noop\n")
    with pytest.raises(RunStateError, match="added: \\['extra'\\]"):
        prepare_resume(tmp_path / "state", record.run_id, force=True)


def test_resume_refuses_a_tampered_audit_log(tmp_path: Path) -> None:
    _, record = _failed_run(tmp_path)
    log = tmp_path / "state" / "runs" / record.run_id / "audit.jsonl"
    log.write_text(log.read_text().replace('"ProviderError"', '"TransientError"', 1))
    with pytest.raises(RunStateError, match="BROKEN at line"):
        prepare_resume(tmp_path / "state", record.run_id)


def test_resume_accepts_unique_prefixes_and_rejects_unknown_ids(tmp_path: Path) -> None:
    _, record = _failed_run(tmp_path)
    assert prepare_resume(tmp_path / "state", record.run_id[:17]).record.run_id == record.run_id
    with pytest.raises(RunStateError, match="no run"):
        prepare_resume(tmp_path / "state", "19990101T000000Z-000000")


def test_a_resume_that_lost_the_race_reads_the_record_again_under_the_lock(tmp_path: Path) -> None:
    from dr_engine.engine.run import Engine, resume_options

    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS)
    state = tmp_path / "state"
    first = start_run(plan, opts(tmp_path, clock))
    assert first.status is RunStatus.FAILED
    stale = prepare_resume(state, first.run_id)  # the second `dr resume` read the record...
    done = resume_run(state, first.run_id, clock=clock, lock=NullLock())  # ...then the first one finished
    assert done.status is RunStatus.SUCCEEDED
    late = Engine(stale.plan, resume_options(stale.record, state, clock=clock, lock=NullLock()))
    with pytest.raises(RunStateError, match="already succeeded"):
        late.resume(stale.record)
    assert fakes.CALLS[(first.run_id, "first")] == 1
    assert fakes.CALLS[(first.run_id, "healthy")] == 1
    assert verify(state / "runs" / first.run_id / "audit.jsonl").ok


def test_resume_refuses_changed_region_files_unless_forced(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS)
    state = tmp_path / "state"
    first = start_run(plan, opts(tmp_path, clock))
    assert first.status is RunStatus.FAILED
    west = tmp_path / "regions" / "west.yaml"
    west.write_text(west.read_text(encoding="utf-8") + "# moved to another account\n", encoding="utf-8")
    with pytest.raises(RunStateError, match=r"region file.*west"):
        resume_run(state, first.run_id, clock=clock, lock=NullLock())
    assert set(first.region_sha256) == {"east", "west"}
    done = resume_run(state, first.run_id, clock=clock, lock=NullLock(), force=True)
    assert done.status is RunStatus.SUCCEEDED
    assert any(o.kind == "regions-changed" and "west" in o.detail for o in done.overrides)
    assert rebuild_record(read_events(state / "runs" / first.run_id / "audit.jsonl")).region_sha256 == \
        done.region_sha256


def test_a_resumed_run_keeps_the_failed_attempt_the_halt_and_the_time_between_sessions(tmp_path: Path) -> None:
    from dr_engine.evidence.record import AttemptOutcome

    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS)
    first = start_run(plan, opts(tmp_path, clock))
    clock.advance(600)
    record = resume_run(tmp_path / "state", first.run_id, clock=clock, lock=NullLock(), reason="fixed the IAM role",
                        triggered_by="bob@ops")
    flaky = record.step("flaky-once")
    assert flaky.attempts == 2
    assert [(a.session, a.outcome) for a in flaky.history] == [(1, AttemptOutcome.FAILED),
                                                               (2, AttemptOutcome.SUCCEEDED)]
    failed = flaky.history[0]
    assert failed.error is not None and failed.error.kind == "ProviderError"
    assert failed.finished_at == first.step("flaky-once").finished_at
    assert [len(s.history) for s in record.steps] == [1, 2, 1, 1]  # steps that ran once keep their one attempt
    one, two = record.sessions
    assert (one.status, one.halted_at_step, two.status, two.actor, two.reason) == (
        "failed", "flaky-once", "succeeded", "bob@ops", "fixed the IAM role")
    split = record.rto_breakdown
    assert split is not None and record.rto_seconds is not None
    assert split.halted_seconds == pytest.approx(600) and split.before_run_seconds == 0
    assert split.machine_seconds == pytest.approx(7) and split.human_wait_seconds == 0
    assert split.before_run_seconds + split.machine_seconds + split.human_wait_seconds + split.halted_seconds == \
        pytest.approx(record.rto_seconds)
    assert record.incident_start_declared is False
    run_dir = tmp_path / "state" / "runs" / first.run_id
    assert rebuild_record(read_events(run_dir / "audit.jsonl")).model_dump() == record.model_dump()


def test_a_crashed_session_ends_its_running_attempt_as_interrupted(tmp_path: Path) -> None:
    from dr_engine.evidence.record import AttemptOutcome

    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    with pytest.raises(Crash):
        start_run(plan, opts(tmp_path, clock), progress=CrashOn("uses-output"))
    run_id = next((tmp_path / "state" / "runs").iterdir()).name
    clock.advance(120)
    record = resume_run(tmp_path / "state", run_id, clock=clock, lock=NullLock())
    step = record.step("uses-output")
    assert [(a.session, a.outcome) for a in step.history] == [(1, AttemptOutcome.INTERRUPTED),
                                                              (2, AttemptOutcome.SUCCEEDED)]
    assert record.sessions[0].status == "interrupted"
    assert record.rto_breakdown is not None and record.rto_breakdown.halted_seconds == pytest.approx(120)


def test_the_record_says_whether_the_incident_start_was_declared(tmp_path: Path) -> None:
    from datetime import timedelta

    clock = FakeClock()
    plan = plan_from_steps(tmp_path, STEPS.replace("times: 1", "times: 0"))
    defaulted = start_run(plan, opts(tmp_path, clock))
    declared = start_run(plan, opts(tmp_path, clock, incident_start=clock.now() - timedelta(minutes=5)))
    assert (defaulted.incident_start_declared, declared.incident_start_declared) == (False, True)
    assert declared.rto_breakdown is not None and declared.rto_breakdown.before_run_seconds == pytest.approx(300)
    assert defaulted.rto_breakdown is not None and defaulted.rto_breakdown.before_run_seconds == 0
