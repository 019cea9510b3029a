"""`--allow-data-loss` needs a reason and a second person's approval (a different OS user), all audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.actions.base import StepContext
from dr_engine.actions.control import ApproveParams
from dr_engine.cli import build_app
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.identity import ApprovalAnswer, OsIdentity, TwoPersonRule
from dr_engine.evidence.record import Override, RunRecord, RunStatus, load_record
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: first
  action: fake.noop
- id: healthy
  action: fake.check_health
  after: [first]
"""


def _options(state: Path, **fields: Any) -> RunOptions:
    return RunOptions(state_dir=state, concurrency=1, lock=NullLock(), allow_data_loss=True,
                      reason="primary region lost; business accepts losing in-flight transfers",
                      require_data_loss_approval=True, **fields)


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


class AnsweringGate:
    """An approval gate whose answer comes from a given OS identity (None: it cannot tell who)."""

    def __init__(self, identity: OsIdentity | None, approver: str = "bob@risk") -> None:
        self.identity, self.approver = identity, approver
        self.asked: list[TwoPersonRule | None] = []

    def request(self, ctx: StepContext, params: ApproveParams) -> ApprovalAnswer | tuple[bool, str, str]:
        """Approve at once, as ``identity``."""
        del params
        self.asked.append(ctx.two_person)
        if self.identity is None:
            return True, self.approver, "looks fine"
        return ApprovalAnswer(approved=True, approver=self.approver, comment="CHG-7", identity=self.identity,
                              via="dr approve")


ME = OsIdentity.current()
SOMEONE_ELSE = OsIdentity(user="approver-not-me", uid=ME.uid + 4242, host=ME.host)
SELF_APPROVAL = 'approvals: {allow_self_approval: true, reason: "one on-call engineer at night"}\n'


def _overrides(record: RunRecord, kind: str) -> list[Override]:
    return [o for o in record.overrides if o.kind == kind]


def test_approved_by_is_only_a_claim_under_the_two_person_rule(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-claimed")
    state = tmp_path / "state"
    record = start_run(plan, _options(state, data_loss_approved_by="bob@risk"))
    # A name typed by the initiator approves nothing: no gate to ask a second person, so it halts.
    assert record.status is RunStatus.HALTED
    assert all(step.attempts == 0 for step in record.steps)
    assert not _overrides(record, "allow-data-loss-approved")
    [claim] = record.approvals
    assert (claim.decision, claim.approver, claim.via) == ("claimed", "bob@risk", "--approved-by")
    assert claim.identity is not None and claim.identity.user == ME.user and claim.identity.uid == ME.uid
    assert "different person than the initiator" in claim.reason


def test_approved_by_then_waits_for_a_different_os_user(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-claimed-then-approved")
    gate = AnsweringGate(SOMEONE_ELSE)
    record = start_run(plan, _options(tmp_path / "state", data_loss_approved_by="bob@risk",
                                                     approval_gate=gate))
    assert record.status is RunStatus.SUCCEEDED
    assert gate.asked and gate.asked[0] is not None and gate.asked[0].initiator == ME
    [approval] = _overrides(record, "allow-data-loss-approved")
    assert approval.approver == "bob@risk" and approval.identity is not None
    assert approval.identity.user == SOMEONE_ELSE.user and approval.actor == str(SOMEONE_ELSE)
    assert not _overrides(record, "self-approval")


def test_the_initiator_cannot_approve_their_own_data_loss(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-self")
    record = start_run(plan, _options(tmp_path / "state", approval_gate=AnsweringGate(ME, approver="alice")))
    assert record.status is RunStatus.HALTED
    assert all(step.attempts == 0 for step in record.steps)
    assert record.error is not None
    assert f"different person than the initiator {ME}" in record.error.message
    assert record.error.hint is not None and "allow_self_approval" in record.error.hint
    assert not _overrides(record, "allow-data-loss-approved")


def test_an_answer_without_an_identity_cannot_approve_data_loss(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-unauthenticated")
    record = start_run(plan, _options(tmp_path / "state", approval_gate=AnsweringGate(None)))
    assert record.status is RunStatus.HALTED
    assert record.error is not None and "unauthenticated" in record.error.message


def test_self_approval_allowed_by_the_runbook_is_audited_as_an_override(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-self-allowed", extra=SELF_APPROVAL)
    record = start_run(plan, _options(tmp_path / "state", approval_gate=AnsweringGate(ME, approver="alice")))
    assert record.status is RunStatus.SUCCEEDED
    [approval] = _overrides(record, "allow-data-loss-approved")
    assert approval.approver == "alice" and approval.identity is not None and approval.identity.uid == ME.uid
    [override] = _overrides(record, "self-approval")
    assert "one on-call engineer at night" in override.detail and str(ME) in override.detail


def test_approved_by_with_self_approval_allowed_approves_as_the_initiator(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-self-approved-by", extra=SELF_APPROVAL)
    state = tmp_path / "state"
    record = start_run(plan, _options(state, data_loss_approved_by="alice"))
    assert record.status is RunStatus.SUCCEEDED
    [approval] = _overrides(record, "allow-data-loss-approved")
    assert approval.approver == "alice" and approval.identity is not None and approval.identity.user == ME.user
    assert _overrides(record, "self-approval")
    assert [(a.decision, a.via) for a in record.approvals] == [("granted", "--approved-by")]
    events = read_events(StateDir(state).audit_file(record.run_id))
    assert any(e["type"] == "override" and e["actor"] == str(ME) for e in events)


def test_without_any_approver_the_run_halts_before_the_first_step(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="dl-unapproved")
    state = tmp_path / "state"
    record = start_run(plan, _options(state))  # no approval gate in a plain engine run
    assert record.status is not RunStatus.SUCCEEDED
    assert all(step.attempts == 0 for step in record.steps)


def test_resume_keeps_the_two_person_rule_for_allow_data_loss(tmp_path: Path) -> None:
    from dr_engine.engine.run import resume_run

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
    # A resume by the initiator's own OS user is still the initiator: self-approval stays refused.
    mine = resume_run(state, first.run_id, lock=NullLock(), approval_gate=AnsweringGate(ME))
    assert mine.status is RunStatus.HALTED and not _overrides(mine, "allow-data-loss-approved")


def _halted_copy(state: Path, run_id: str, *events: tuple[str, dict[str, Any]]) -> None:
    """End the run ``run_id`` again as halted, after ``events`` (type, data with actor)."""
    from dr_engine.evidence.audit import AuditLog
    from dr_engine.evidence.journal import rebuild_record
    from dr_engine.evidence.record import write_record

    run_dir = StateDir(state).run_dir(run_id)
    lines = (run_dir / "audit.jsonl").read_text().splitlines(keepends=True)
    # Drop the seal (a sealed log refuses appends), then end it as a halted session would.
    kept = [line for line in lines if '"type":"run.finished"' not in line]
    (run_dir / "audit.jsonl").write_text("".join(kept))
    log = AuditLog(run_dir / "audit.jsonl", run_id)
    for kind, data in events:
        log.append(kind, **data)
    log.append("run.finished", actor="x", status="halted")
    write_record(run_dir, rebuild_record(read_events(run_dir / "audit.jsonl")))


def test_resume_after_an_approval_does_not_ask_again(tmp_path: Path) -> None:
    from dr_engine.engine.run import resume_run

    plan = plan_from_steps(tmp_path, STEPS, name="dl-resume-approved")
    state = tmp_path / "state"
    first = start_run(plan, _options(state, approval_gate=AnsweringGate(SOMEONE_ELSE)))
    assert first.status is RunStatus.SUCCEEDED
    _halted_copy(state, first.run_id)
    resumed = resume_run(state, first.run_id, lock=NullLock())  # no gate: asking again would halt
    assert resumed.status is RunStatus.SUCCEEDED
    assert len(_overrides(resumed, "allow-data-loss-approved")) == 1


def test_an_approval_recorded_without_an_identity_does_not_count_on_resume(tmp_path: Path) -> None:
    from dr_engine.engine.run import resume_run

    plan = plan_from_steps(tmp_path, STEPS, name="dl-resume-old")
    state = tmp_path / "state"
    first = start_run(plan, _options(state))
    assert first.status is RunStatus.HALTED
    # What older versions wrote for `--approved-by bob`: a typed name, no OS identity.
    _halted_copy(state, first.run_id, ("override", {"actor": "bob@risk", "kind": "allow-data-loss-approved",
                                                    "detail": "data loss accepted by bob"}))
    assert _overrides(load_record(StateDir(state).run_dir(first.run_id)), "allow-data-loss-approved")
    resumed = resume_run(state, first.run_id, lock=NullLock())
    assert resumed.status is RunStatus.HALTED  # asked again; no gate here, so it halts
    assert all(step.attempts == 0 for step in resumed.steps)
