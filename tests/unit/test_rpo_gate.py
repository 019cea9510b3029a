"""The RPO gate is written once (dr_engine.capabilities.data) and every data.check action uses it.

Unknown lag counts as over the RPO: refused, unless the run allows data loss, and then the
override is recorded in the run's audit log.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import dr_engine.providers.postgres
import dr_engine.providers.postgres.client
from dr_engine.actions.aws.rds import CheckReplica, CheckReplicaParams
from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.postgres import CheckLag
from dr_engine.actions.registry import all_actions, register, unregister
from dr_engine.capabilities import Capability
from dr_engine.capabilities.data import OVERRIDE_EVENT, Standing, rpo_gate, standing
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import PreconditionFailed
from dr_engine.evidence import audit as ev
from dr_engine.evidence.audit import AuditLog, read_events, verify
from dr_engine.evidence.record import RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.model.outcome import RpoObservation
from dr_engine.testing.runbooks import plan_from_steps
from dr_engine.testing.step_context import step_context

S = timedelta(seconds=1)


@pytest.mark.parametrize(("observed", "objective", "expected"), [
    (None, 30 * S, Standing.UNKNOWN),
    (RpoObservation(), 30 * S, Standing.UNKNOWN),
    (RpoObservation(rows_lost=0), 30 * S, Standing.UNKNOWN),  # rows are not lag
    (RpoObservation(lag_bytes=0), 0 * S, Standing.WITHIN),  # nothing missing, whatever the age
    (RpoObservation(lag_bytes=0, lag_seconds=99.0), 0 * S, Standing.WITHIN),
    (RpoObservation(lag_bytes=10), 30 * S, Standing.UNKNOWN),  # missing data of unknown age
    (RpoObservation(lag_seconds=10.0), 30 * S, Standing.WITHIN),
    (RpoObservation(lag_seconds=30.0), 30 * S, Standing.WITHIN),
    (RpoObservation(lag_seconds=30.5), 30 * S, Standing.OVER),
    (RpoObservation(lag_bytes=10, lag_seconds=0.0), 0 * S, Standing.OVER),  # a zero RPO tolerates no loss
    (RpoObservation(lag_bytes=10, lag_seconds=1.0), 30 * S, Standing.WITHIN),
])
def test_the_rule(observed: RpoObservation | None, objective: timedelta, expected: Standing) -> None:
    assert standing(observed, objective) is expected


def _ctx(tmp_path: Path, *, allow: bool = False, log: AuditLog | None = None, rpo: str = "30s") -> StepContext:
    return step_context(state_dir=tmp_path, rpo=rpo, allow_data_loss=allow, step_id="check",
                        emit=log.append if log is not None else None)


def test_unknown_lag_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PreconditionFailed, match=r"lag of standby of ledger is unknown \(nothing measured\); "
                                                 r"unknown lag counts as over the RPO of 30s") as refused:
        rpo_gate(RpoObservation(), 30 * S, _ctx(tmp_path), subject="standby of ledger")
    assert "--allow-data-loss" in (refused.value.hint or "")


def test_allowed_data_loss_passes_unknown_lag_and_audits_the_override(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    verdict = rpo_gate(None, 30 * S, _ctx(tmp_path, allow=True, log=log), subject="replica db")
    assert verdict.overridden and verdict.standing is Standing.UNKNOWN
    assert verdict.facts() == {"rpo_gate": "unknown", "rpo_objective_seconds": 30.0, "override": "allow-data-loss"}
    [event] = read_events(log.path)
    assert event["type"] == "override" and event["data"]["kind"] == "rpo-unknown-lag"
    assert event["data"]["step"] == "check"
    assert event["data"]["detail"].startswith("step check: the RPO gate passed on unknown lag because the run "
                                              "allows data loss (--allow-data-loss)")


def test_an_override_that_cannot_be_audited_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PreconditionFailed, match="cannot be recorded"):
        rpo_gate(RpoObservation(lag_seconds=99.0), 30 * S, _ctx(tmp_path, allow=True), subject="replica db")


def test_within_the_objective_records_nothing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    verdict = rpo_gate(RpoObservation(lag_seconds=1.0), 30 * S, _ctx(tmp_path, allow=True, log=log), subject="x")
    assert not verdict.overridden and verdict.standing is Standing.WITHIN
    assert not log.path.exists()


def test_the_event_type_is_the_audit_logs() -> None:
    # capabilities/ sits below the evidence layer, so it names the event type itself.
    assert OVERRIDE_EVENT == ev.OVERRIDE


# ------------------------------------------------------------------ every data.check action

class _StandbyWithoutReceiver:
    """Stands in for dr_engine.providers.postgres.client: a standby that never replayed, no WAL receiver."""

    @contextmanager
    def connect(self, dsn: str, deadline: Any, **kwargs: Any) -> Iterator[object]:
        yield object()

    def fetch_one(self, conn: object, sql: str) -> tuple[Any, ...] | None:
        if "pg_is_in_recovery" in sql:
            return (True, "0/3000060", None, "standby")
        assert "pg_stat_wal_receiver" in sql, sql
        return None


def _check_lag_unknown(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> StepResult:
    monkeypatch.setattr(dr_engine.providers.postgres, "client", _StandbyWithoutReceiver())
    return CheckLag().run(CheckLag.Params(dsn="postgresql://postgres@127.0.0.1:9/ledger", cluster="ledger"), ctx)


class _ReplicaWithoutMetric(CheckReplica):
    """rds.check_replica observing an available replica and no ReplicaLag datapoint."""

    def _observe(self, params: CheckReplicaParams, ctx: StepContext) -> tuple[dict[str, Any], float | None]:
        return {"DBInstanceStatus": "available", "ReadReplicaSourceDBInstanceIdentifier": "ledger-db"}, None


def _check_replica_unknown(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> StepResult:
    return _ReplicaWithoutMetric().run(CheckReplicaParams(db_instance="ledger-db-usw2"), ctx)


#: The unknown-lag path of every built-in data.check action, through fakes of its observation.
UNKNOWN_LAG: dict[str, Callable[[StepContext, pytest.MonkeyPatch], StepResult]] = {
    "postgres.check_lag": _check_lag_unknown,
    "rds.check_replica": _check_replica_unknown,
}
DATA_CHECKS = {name: cls for name, cls in all_actions().items()
               if cls.capability is Capability.DATA_CHECK and cls.__module__.startswith("dr_engine.")}


def test_every_data_check_action_has_an_unknown_lag_case() -> None:
    assert set(DATA_CHECKS) == set(UNKNOWN_LAG), "add the new data.check action's unknown-lag path to UNKNOWN_LAG"


@pytest.mark.parametrize("name", sorted(UNKNOWN_LAG))
def test_unknown_lag_fails_closed_in_every_data_check_action(name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PreconditionFailed, match=r"is unknown .*unknown lag counts as over"):
        UNKNOWN_LAG[name](_ctx(tmp_path), monkeypatch)
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    result = UNKNOWN_LAG[name](_ctx(tmp_path, allow=True, log=log), monkeypatch)
    assert result.facts["rpo_gate"] == "unknown" and result.facts["override"] == "allow-data-loss"
    assert [(e["type"], e["data"]["kind"]) for e in read_events(log.path)] == [("override", "rpo-unknown-lag")]


def _calls_the_gate(cls: type[Action[Any]]) -> bool:
    for klass in cls.__mro__:
        if not klass.__module__.startswith("dr_engine.actions"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        if any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "rpo_gate"
               for node in ast.walk(tree)):
            return True
    return False


@pytest.mark.parametrize("name", sorted(DATA_CHECKS))
def test_every_data_check_action_calls_the_rpo_gate(name: str) -> None:
    assert _calls_the_gate(DATA_CHECKS[name]), f"{name} must decide through dr_engine.capabilities.data.rpo_gate"


# ------------------------------------------------------------------ through the engine

class _UnknownParams(ActionParams):
    dataset: str = "ledger"


class _UnknownLagCheck(Action[_UnknownParams]):
    """A data check that measures nothing: its lag is unknown."""

    name = "gatetest.unknown"
    capability = Capability.DATA_CHECK
    Params = _UnknownParams
    example = "id: check\naction: gatetest.unknown\n"

    def run(self, params: _UnknownParams, ctx: StepContext) -> StepResult:
        verdict = rpo_gate(RpoObservation(), ctx.objectives.rpo, ctx, subject=f"copy of {params.dataset}")
        return StepResult(summary="gated", changed=False, facts=verdict.facts())


@pytest.fixture
def unknown_lag_check() -> Iterator[None]:
    register(_UnknownLagCheck)
    try:
        yield
    finally:
        unregister(_UnknownLagCheck.name)


STEPS = """
- id: check
  action: gatetest.unknown
- id: healthy
  action: fake.check_health
  after: [check]
"""


@pytest.mark.usefixtures("unknown_lag_check")
def test_the_run_halts_on_unknown_lag_and_with_allow_data_loss_its_audit_log_says_why(tmp_path: Path) -> None:
    import dr_engine.testing.actions  # noqa: F401  (registers fake.check_health)

    plan = plan_from_steps(tmp_path, STEPS, name="gate-app")
    halted = start_run(plan, RunOptions(state_dir=tmp_path / "a", concurrency=1, lock=NullLock()))
    assert halted.status is RunStatus.HALTED and halted.halted_at_step == "check"
    assert halted.error is not None and "unknown lag counts as over the RPO" in halted.error.message

    state = tmp_path / "b"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock(), allow_data_loss=True,
                                        reason="region lost; loss accepted"))
    assert record.status is RunStatus.SUCCEEDED
    assert record.step("check").status is StepStatus.SUCCEEDED
    assert record.step("check").facts["rpo_gate"] == "unknown"
    audit = StateDir(state).audit_file(record.run_id)
    assert verify(audit).ok
    gate = [e for e in read_events(audit) if e["type"] == "override" and e["data"]["kind"] == "rpo-unknown-lag"]
    assert len(gate) == 1 and gate[0]["data"]["step"] == "check"
    assert "passed on unknown lag because the run allows data loss" in gate[0]["data"]["detail"]
    assert [o.kind for o in record.overrides] == ["allow-data-loss", "rpo-unknown-lag"]
