"""RTO/RPO arithmetic and retry policy in isolation."""

from __future__ import annotations

import random

import pytest

from dr_engine.clock import Deadline
from dr_engine.errors import ProviderError, StepTimeout, TransientError
from dr_engine.evidence.record import RpoRecord, StepRecord, StepStatus
from dr_engine.evidence.recovery import RpoReading, aggregate_rpo, human_wait_seconds
from dr_engine.evidence.statedir import RUN_ID_PATTERN, StateDir
from dr_engine.retry import RetryPolicy, call_with_retry
from dr_engine.testing.clock import FakeClock


@pytest.mark.parametrize(
    ("reading", "target", "met", "seconds"),
    [
        (RpoReading(), 0, None, None),
        (RpoReading(lag_bytes=0), 0, True, 0.0),
        (RpoReading(lag_bytes=1), 0, False, None),
        (RpoReading(lag_bytes=1), 30, None, None),
        (RpoReading(lag_bytes=1, lag_seconds=2.0), 30, True, 2.0),
        (RpoReading(lag_seconds=31.0), 30, False, 31.0),
        (RpoReading(rows_lost=0), 0, True, 0.0),
        (RpoReading(lag_bytes=0, rows_lost=1), 30, False, 0.0),
    ],
)
def test_rpo_rules(reading: RpoReading, target: float, met: bool | None, seconds: float | None) -> None:
    assert reading.met(target) is met
    assert reading.rpo_seconds == seconds


def step(step_id: str, finished: str, **rpo: object) -> StepRecord:
    return StepRecord(id=step_id, action="x.y", capability="data.promote", status=StepStatus.SUCCEEDED,
                      finished_at=finished, rpo=RpoRecord(**rpo))  # type: ignore[arg-type]


def test_latest_reading_per_dataset_worst_across_datasets() -> None:
    steps = [
        step("check-orders", "2026-01-01T00:00:01.000Z", dataset="orders", lag_bytes=9000, lag_seconds=4.0),
        step("promote-orders", "2026-01-01T00:00:05.000Z", dataset="orders", lag_bytes=0, lag_seconds=0.5),
        step("promote-users", "2026-01-01T00:00:03.000Z", dataset="users", lag_bytes=100, lag_seconds=1.5),
        step("reconcile-users", "2026-01-01T00:00:09.000Z", dataset="users", rows_lost=2),
        step("reconcile-orders", "2026-01-01T00:00:09.000Z", dataset="orders", rows_lost=1),
    ]
    reading = aggregate_rpo(steps)
    assert reading == RpoReading(lag_bytes=100, lag_seconds=1.5, rows_lost=3)


def test_human_wait_prefers_what_the_gate_reports() -> None:
    approve = StepRecord(id="a", action="control.approve", capability="control.approve",
                         status=StepStatus.SUCCEEDED, duration_seconds=100, facts={"waited_seconds": 90})
    other = StepRecord(id="b", action="control.approve", capability="control.approve",
                       status=StepStatus.FAILED, duration_seconds=30)
    work = StepRecord(id="c", action="x.y", capability="exec.run", status=StepStatus.SUCCEEDED, duration_seconds=7)
    assert human_wait_seconds([approve, other, work]) == 120


def test_retry_gives_up_with_the_last_transient_error() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def fn(attempt: int) -> str:
        calls.append(attempt)
        raise TransientError(f"throttled {attempt}")

    with pytest.raises(TransientError, match="throttled 4"):
        call_with_retry(fn, policy=RetryPolicy(attempts=4, backoff=0.5), deadline=Deadline(clock, 600),
                        clock=clock, rng=random.Random(1))
    assert calls == [1, 2, 3, 4]
    assert all(0 <= wait <= 0.5 * 2**i for i, wait in enumerate(clock.sleeps))


def test_retry_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    retries: list[tuple[int, float]] = []

    def fn(attempt: int) -> str:
        clock.advance(3)
        raise TransientError("5xx")

    with pytest.raises(StepTimeout) as info:
        call_with_retry(fn, policy=RetryPolicy(attempts=50, backoff=2), deadline=Deadline(clock, 10), clock=clock,
                        on_retry=lambda n, exc, wait: retries.append((n, clock.monotonic() + wait)),
                        rng=random.Random(3))
    assert isinstance(info.value.__cause__, TransientError)
    assert retries and all(wake_up < 1000 + 10 for _, wake_up in retries)
    assert [n for n, _ in retries] == list(range(1, len(retries) + 1))


def test_retry_passes_permanent_errors_through_at_once() -> None:
    clock = FakeClock()

    def fn(attempt: int) -> str:
        raise ProviderError("AccessDenied")

    with pytest.raises(ProviderError):
        call_with_retry(fn, policy=RetryPolicy(attempts=5), deadline=Deadline(clock, 60), clock=clock)
    assert clock.sleeps == []


def test_retry_returns_the_result_and_attempts() -> None:
    clock = FakeClock()
    result = call_with_retry(lambda n: "ok" if n == 2 else (_ for _ in ()).throw(TransientError("x")),
                             policy=RetryPolicy(attempts=3, backoff=0.01), deadline=Deadline(clock, 60), clock=clock)
    assert result == ("ok", 2)


def test_run_ids_sort_by_time() -> None:
    clock = FakeClock()
    first = StateDir.new_run_id(clock)
    clock.advance(1)
    second = StateDir.new_run_id(clock)
    assert RUN_ID_PATTERN.match(first) and first.startswith("20260131T020000Z-")
    assert sorted([second, first]) == [first, second]


# --------------------------------------------------------------------------- the fold keeps history

T0 = "2026-01-31T02:00:00.000Z"


def _at(seconds: float) -> str:
    from datetime import timedelta

    from dr_engine.clock import parse_utc, utc_iso

    return utc_iso(parse_utc(T0) + timedelta(seconds=seconds))


def _initial(*, incident: str = T0, declared: bool | None = False, approve: bool = False) -> dict[str, object]:
    from dr_engine.evidence.record import RunRecord

    steps = [StepRecord(id="work", action="fake.fail", capability="exec.run"),
             StepRecord(id="healthy", action="fake.check_health", capability="health.verify")]
    if approve:
        steps.insert(0, StepRecord(id="approve", action="control.approve", capability="control.approve"))
    record = RunRecord(run_id="r1", runbook="rb", runbook_file="rb.yaml", runbook_sha256="0" * 64, mode="failover",
                       source="east", target="west", started_at=T0, triggered_by="alice@ops",
                       incident_started_at=incident, rto_target_seconds=900, rpo_target_seconds=0,
                       rto_stop="healthy", steps=steps)
    data = record.model_dump(mode="json")
    if declared is None:  # a record written before the field existed
        data.pop("incident_start_declared", None)
    else:
        data["incident_start_declared"] = declared
    return data


def _log(initial: dict[str, object], *items: tuple[float, str, dict[str, object]]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [{"seq": 1, "ts": T0, "type": "run.started", "actor": "alice@ops",
                                        "hash": "h1", "data": {"at": T0, "record": initial}}]
    for number, (seconds, kind, data) in enumerate(items, start=2):
        events.append({"seq": number, "ts": _at(seconds), "type": kind, "actor": str(data.pop("actor", "alice@ops")),
                       "hash": f"h{number}", "data": {"at": _at(seconds), **data}})
    return events


PROVIDER = {"kind": "ProviderError", "message": "AccessDenied on ChangeResourceRecordSets", "hint": None}
THROTTLED = {"kind": "TransientError", "message": "Throttling", "hint": None}


def _failed_then_resumed() -> list[dict[str, object]]:
    return _log(
        _initial(),
        (0, "step.started", {"step": "work"}),
        (3, "step.attempt", {"step": "work", "attempt": 1, "error": THROTTLED, "wait_seconds": 2}),
        (8, "step.failed", {"step": "work", "attempts": 2, "duration_seconds": 8, "error": PROVIDER}),
        (8, "run.halted", {"step": "work", "error": PROVIDER, "changed_steps": [], "pending_steps": ["healthy"]}),
        (9, "run.finished", {"status": "failed"}),
        (609, "run.resumed", {"previous_status": "failed", "reset_steps": ["work"], "actor": "bob@ops",
                              "reason": "fixed the IAM role"}),
        (609, "step.started", {"step": "work"}),
        (611, "step.succeeded", {"step": "work", "attempts": 1, "duration_seconds": 2, "summary": "ok"}),
        (611, "step.started", {"step": "healthy"}),
        (612, "step.succeeded", {"step": "healthy", "attempts": 1, "duration_seconds": 1, "summary": "healthy"}),
        (613, "run.finished", {"status": "succeeded"}),
    )


def test_a_resume_keeps_every_attempt_of_the_step_it_reruns() -> None:
    from dr_engine.evidence.journal import rebuild_record
    from dr_engine.evidence.record import AttemptOutcome

    record = rebuild_record(_failed_then_resumed())
    work = record.step("work")
    assert work.status is StepStatus.SUCCEEDED and work.attempts == 3
    assert [(a.session, a.attempt, a.outcome) for a in work.history] == [
        (1, 1, AttemptOutcome.RETRIED), (1, 2, AttemptOutcome.FAILED), (2, 3, AttemptOutcome.SUCCEEDED)]
    first, second, third = work.history
    assert (first.started_at, first.finished_at, first.wait_seconds) == (_at(0), _at(3), 2)
    assert first.error is not None and first.error.kind == "TransientError"
    assert (second.started_at, second.finished_at) == (_at(5), _at(8))  # after the 2 s backoff
    assert second.error is not None and second.error.message == PROVIDER["message"]
    assert (third.started_at, third.finished_at, third.error) == (_at(609), _at(611), None)
    # The halt of the first session survives the resume that cleared the run's error.
    assert record.error is None and record.halted_at_step is None
    one, two = record.sessions
    assert (one.status, one.halted_at_step, one.finished_at) == ("failed", "work", _at(9))
    assert one.error is not None and one.error.kind == "ProviderError"
    assert (two.status, two.actor, two.reason, two.started_at) == ("succeeded", "bob@ops", "fixed the IAM role",
                                                                   _at(609))


def test_the_rto_parts_add_up_to_the_rto() -> None:
    from dr_engine.evidence.journal import rebuild_record

    record = rebuild_record(_failed_then_resumed())
    split = record.rto_breakdown
    assert split is not None and split.until == "healthy"
    assert record.rto_seconds == pytest.approx(612) and split.total_seconds == record.rto_seconds
    assert (split.before_run_seconds, split.human_wait_seconds, split.halted_seconds) == (0, 0, 600)
    assert split.machine_seconds == pytest.approx(12)
    parts = split.before_run_seconds + split.machine_seconds + split.human_wait_seconds + split.halted_seconds
    assert parts == pytest.approx(record.rto_seconds)
    assert record.incident_start_declared is False and not record.incident_declared


def test_the_rto_split_counts_a_declared_incident_and_every_approval_wait() -> None:
    from dr_engine.evidence.journal import rebuild_record

    incident = _at(-300)
    events = _log(
        _initial(incident=incident, declared=True, approve=True),
        (0, "step.started", {"step": "approve"}),
        (40, "step.failed", {"step": "approve", "attempts": 1, "duration_seconds": 40,
                             "error": {"kind": "PreconditionFailed", "message": "rejected by carol"}}),
        (40, "run.halted", {"step": "approve", "error": {"kind": "PreconditionFailed", "message": "rejected"}}),
        (41, "run.finished", {"status": "halted"}),
        (141, "run.resumed", {"previous_status": "halted", "reset_steps": ["approve"]}),
        (141, "step.started", {"step": "approve"}),
        (171, "step.succeeded", {"step": "approve", "attempts": 1, "duration_seconds": 30,
                                 "facts": {"waited_seconds": 29}}),
        (171, "step.started", {"step": "work"}),
        (181, "step.succeeded", {"step": "work", "attempts": 1, "duration_seconds": 10}),
        (181, "step.started", {"step": "healthy"}),
        (182, "step.succeeded", {"step": "healthy", "attempts": 1, "duration_seconds": 1}),
        (183, "run.finished", {"status": "succeeded"}),
    )
    record = rebuild_record(events)
    split = record.rto_breakdown
    assert split is not None and record.rto_seconds == pytest.approx(482)
    assert split.before_run_seconds == 300 and split.halted_seconds == 100
    assert split.human_wait_seconds == pytest.approx(40 + 29)  # the rejected wait counts too
    assert split.machine_seconds == pytest.approx(482 - 300 - 100 - 69)
    assert record.human_wait_seconds == pytest.approx(69)
    assert record.incident_declared


def test_abandoned_cancelled_and_crashed_attempts_stay_in_the_history() -> None:
    from dr_engine.evidence.journal import rebuild_record
    from dr_engine.evidence.record import AttemptOutcome

    events = _log(
        _initial(),
        (0, "step.started", {"step": "work"}),
        (4, "step.abandoned", {"step": "work", "reason": "abandoned after a second Ctrl-C", "attempts": 1,
                               "duration_seconds": 4}),
        (5, "run.halted", {"step": None, "error": {"kind": "Cancelled", "message": "run interrupted"}}),
        (5, "run.finished", {"status": "cancelled"}),
        (65, "run.resumed", {"previous_status": "cancelled", "reset_steps": ["work"]}),
        (65, "step.started", {"step": "work"}),
        (66, "note.added", {"text": "still going"}),
        # the process dies here: no step end, no run.finished
        (300, "run.resumed", {"previous_status": "running", "reset_steps": ["work"]}),
        (300, "step.started", {"step": "work"}),
        (302, "step.succeeded", {"step": "work", "attempts": 1, "duration_seconds": 2}),
        (302, "step.started", {"step": "healthy"}),
        (303, "run.halted", {"step": None, "error": {"kind": "Cancelled", "message": "run interrupted"}}),
        (303, "run.finished", {"status": "cancelled"}),
    )
    record = rebuild_record(events)
    work = record.step("work")
    assert [(a.session, a.outcome, a.finished_at) for a in work.history] == [
        (1, AttemptOutcome.ABANDONED, _at(4)), (2, AttemptOutcome.INTERRUPTED, _at(66)),
        (3, AttemptOutcome.SUCCEEDED, _at(302))]
    assert work.history[0].error is not None and "second Ctrl-C" in work.history[0].error.message
    assert work.attempts == 3
    healthy = record.step("healthy")
    assert [(a.outcome, a.finished_at) for a in healthy.history] == [(AttemptOutcome.CANCELLED, _at(303))]
    assert [s.status for s in record.sessions] == ["cancelled", "interrupted", "cancelled"]
    split = record.rto_breakdown
    assert split is not None and split.until == "run_finished" and record.rto_seconds is None
    # Halted: 5 s -> 65 s after the cancel, and 66 s (last event of the dead session) -> 300 s.
    assert split.halted_seconds == pytest.approx(60 + 234)
    assert split.total_seconds == pytest.approx(303)
    assert split.before_run_seconds + split.machine_seconds + split.human_wait_seconds + split.halted_seconds == \
        pytest.approx(split.total_seconds)


def test_records_written_before_the_history_still_load_and_infer_the_incident_start() -> None:
    from dr_engine.evidence.journal import rebuild_record
    from dr_engine.evidence.record import RunRecord

    old = _initial(declared=None)
    for step_data in old["steps"]:  # type: ignore[attr-defined]
        step_data.pop("history")
    loaded = RunRecord.model_validate(old)
    assert loaded.incident_start_declared is None and not loaded.incident_declared
    assert loaded.rto_breakdown is None and all(s.history == [] for s in loaded.steps)
    earlier = RunRecord.model_validate({**old, "incident_started_at": _at(-60)})
    assert earlier.incident_declared
    assert rebuild_record(_log(old)).incident_start_declared is False
    assert rebuild_record(_log({**old, "incident_started_at": _at(-60)})).incident_start_declared is True
    # A declared start a few seconds in the future was clamped to the run start: still declared.
    clamped = rebuild_record(_log(old, (0, "note.added", {"text": "clamped", "incident_start_given": _at(3)})))
    assert clamped.incident_start_declared is True


def test_a_reseal_by_an_operator_keeps_how_the_session_ended() -> None:
    from dr_engine.evidence.journal import rebuild_record

    events = _log(
        _initial(),
        (0, "step.started", {"step": "work"}),
        (8, "step.failed", {"step": "work", "attempts": 1, "duration_seconds": 8, "error": PROVIDER}),
        (8, "run.halted", {"step": "work", "error": PROVIDER}),
        (9, "run.finished", {"status": "failed"}),
        # `dr cancel` of the stopped run: its facts and a new seal, in the same session
        (70, "note.added", {"text": "cancelled by carol@ops"}),
        (70, "run.finished", {"status": "cancelled", "resealed": True}),
    )
    record = rebuild_record(events)
    assert record.status.value == "cancelled"
    (session,) = record.sessions
    assert (session.status, session.finished_at, session.halted_at_step) == ("failed", _at(9), "work")
