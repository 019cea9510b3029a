"""`--allow-data-loss` needs a reason and a second person's approval, and both are audited."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.audit import read_events
from dr_engine.cli import build_app
from dr_engine.lock import NullLock
from dr_engine.operations import DATA_LOSS_APPROVED_BY, REQUIRE_DATA_LOSS_APPROVAL
from dr_engine.record import RunStatus
from dr_engine.run import RunOptions, start_run
from dr_engine.statedir import StateDir
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: first
  action: fake.noop
- id: healthy
  action: fake.check_health
  after: [first]
"""


def _options(state: Path, **extras: object) -> RunOptions:
    options = RunOptions(state_dir=state, concurrency=1, lock=NullLock(), allow_data_loss=True,
                         reason="primary region lost; business accepts losing in-flight transfers")
    options.extras.update({REQUIRE_DATA_LOSS_APPROVAL: True, **extras})
    return options


def test_cli_refuses_allow_data_loss_without_a_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["failover", "runbooks/sample-noop.yaml", "--yes", "--allow-data-loss",
                                              "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--allow-data-loss needs --reason" in result.output
    assert not (tmp_path / "runs").exists()  # refused before anything was recorded


def test_cli_refuses_approved_by_without_allow_data_loss(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["failover", "sample-noop", "--yes", "--approved-by", "bob",
                                              "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "only applies with --allow-data-loss" in result.output


def test_named_approver_is_audited_and_the_run_proceeds(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-approved")
    state = tmp_path / "state"
    record = start_run(plan, _options(state, **{DATA_LOSS_APPROVED_BY: "bob@risk"}))
    assert record.status is RunStatus.SUCCEEDED
    approvals = [o for o in record.overrides if o.kind == "allow-data-loss-approved"]
    assert len(approvals) == 1 and approvals[0].actor == "bob@risk"
    events = read_events(StateDir(state).audit_file(record.run_id))
    assert any(e["type"] == "override" and e["actor"] == "bob@risk" for e in events)


def test_without_any_approver_the_run_halts_before_the_first_step(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-unapproved")
    state = tmp_path / "state"
    record = start_run(plan, _options(state))  # no approval gate in a plain engine run
    assert record.status is not RunStatus.SUCCEEDED
    assert all(step.attempts == 0 for step in record.steps)


def test_resume_keeps_the_two_person_rule_for_allow_data_loss(tmp_path: Path) -> None:
    from dr_engine.run import resume_run

    plan = plan_from_steps(tmp_path, STEPS, name="dl-resume")
    state = tmp_path / "state"
    first = start_run(plan, _options(state))
    assert first.status is not RunStatus.SUCCEEDED
    # Resuming without any approval must not run the steps either.
    again = resume_run(state, first.run_id, lock=NullLock())
    assert again.status is not RunStatus.SUCCEEDED
    assert all(step.attempts == 0 for step in again.steps)
    assert not any(o.kind == "allow-data-loss-approved" for o in again.overrides)
    assert first.data_loss_approval_required is True  # kept in run.started for deployed flows too


def test_resume_after_an_approval_does_not_ask_again(tmp_path: Path) -> None:
    from dr_engine.audit import AuditLog
    from dr_engine.journal import rebuild_record
    from dr_engine.record import write_record
    from dr_engine.run import resume_run

    plan = plan_from_steps(tmp_path, STEPS, name="dl-resume-approved")
    state = tmp_path / "state"
    first = start_run(plan, _options(state, **{DATA_LOSS_APPROVED_BY: "bob@risk"}))
    assert first.status is RunStatus.SUCCEEDED
    # A halted copy of the situation: the approval is in the log, the run stopped before the end.
    run_dir = StateDir(state).run_dir(first.run_id)
    log = AuditLog(run_dir / "audit.jsonl", first.run_id)
    log.amend([], status="halted", actor="x")
    write_record(run_dir, rebuild_record(read_events(run_dir / "audit.jsonl")))
    resumed = resume_run(state, first.run_id, lock=NullLock())
    assert resumed.status is RunStatus.SUCCEEDED
    assert len([o for o in resumed.overrides if o.kind == "allow-data-loss-approved"]) == 1
