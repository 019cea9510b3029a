"""Operations hooks the engine calls at fixed points of a run (drills, approvals, operator controls).

:class:`RunHooks` keeps these features out of the engine's core loop: the engine asks it

- whether a step is skipped in a drill, and with which parameters it runs (drill copies);
- before the first step: whether ``--allow-data-loss`` was approved (``RunOptions.require_data_loss_approval``);
- before each step: whether ``dr cancel`` asked the run to stop;
- before sealing the run: to clean up drill copies (always, whatever the outcome).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from dr_engine.actions.base import Action, ActionParams, StepContext
from dr_engine.clock import Clock
from dr_engine.drill.session import DrillSession, skips_in_drill
from dr_engine.engine.controls import OPERATOR_CANCEL, take_cancel_request
from dr_engine.engine.options import RunOptions
from dr_engine.evidence import audit as ev
from dr_engine.evidence.record import RunRecord, StepError
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import RunMode
from dr_engine.planning.plan import ExecutionPlan, PlannedStep

log = logging.getLogger("dr_engine.engine.operations")

class EngineView(Protocol):
    """What the hooks read of the engine that runs them (:class:`dr_engine.engine.run.Engine`)."""

    @property
    def options(self) -> RunOptions:
        """The run's options."""
        ...

    @property
    def plan(self) -> ExecutionPlan:
        """The plan being run."""
        ...

    @property
    def clock(self) -> Clock:
        """The run's clock."""
        ...

    @property
    def state(self) -> StateDir:
        """The state directory."""
        ...

    @property
    def record(self) -> RunRecord | None:
        """The run record (None before the run starts)."""
        ...

    @property
    def run_dir(self) -> Path | None:
        """The run's directory (None before the run starts)."""
        ...

    def emit(self, type: str, *, actor: str | None = None, **data: Any) -> dict[str, Any]:
        """Append an audit event and apply it to the record."""
        ...


class RunHooks:
    """The engine's operations hooks for one run."""

    def __init__(self, engine: EngineView) -> None:
        self.engine = engine
        self._drill: DrillSession | None = None

    @property
    def drilling(self) -> bool:
        """True for a drill run."""
        return self.engine.options.mode is RunMode.DRILL

    def drill_session(self) -> DrillSession:
        """The drill session of this run (rebuilt from the audit log on resume)."""
        if self._drill is None:
            engine = self.engine
            assert engine.record is not None and engine.run_dir is not None
            self._drill = DrillSession.for_run(engine.plan, engine.record.run_id, engine.run_dir, engine.emit,
                                               record=lambda: engine.record)
        return self._drill

    def skips_in_drill(self, planned: PlannedStep, action_cls: type[Action[Any]]) -> bool:
        """True when ``planned`` does not run in this drill."""
        return skips_in_drill(planned, action_cls)

    def params_for(self, planned: PlannedStep, action_cls: type[Action[Any]], params: ActionParams,
                   ctx: StepContext) -> ActionParams:
        """The parameters the step runs with (drill copies in a drill, unchanged otherwise)."""
        if not self.drilling:
            return params
        return self.drill_session().adapt(planned, action_cls, params, ctx)

    def before_steps(self) -> StepError | None:
        """Before any step: the data-loss approval, when required. A StepError halts the run.

        The two-person rule: the approval must come from a different OS user than the run's
        initiator (``record.initiator``), unless the runbook sets ``approvals.allow_self_approval``.
        A name given with ``--approved-by`` is typed by the initiator, so it is recorded as a claim
        (``approval.claimed``) and the run still waits for ``dr approve`` by someone else; where
        self-approval is allowed, it approves as the initiator (audited as a self-approval).
        """
        engine = self.engine
        options = engine.options
        if not (options.allow_data_loss and options.require_data_loss_approval):
            return None
        from dr_engine.clock import Deadline
        from dr_engine.engine.approval import (
            DATA_LOSS_STEP,
            data_loss_approved,
            data_loss_refusal,
            record_data_loss_approval,
            two_person_rule,
        )
        from dr_engine.evidence.approval_record import APPROVAL_CLAIMED
        from dr_engine.evidence.identity import VIA_APPROVED_BY, ApprovalAnswer, OsIdentity

        assert engine.record is not None and engine.run_dir is not None
        settings = engine.plan.loaded.runbook.approvals
        rule = two_person_rule(engine.record, bool(settings and settings.allow_self_approval),
                               (settings.reason if settings else None) or "")
        approved = data_loss_approved(engine.record)
        approver = (options.data_loss_approved_by or "").strip()
        # On resume the reason for accepting data loss is the one the run started with.
        reason = options.reason.strip() or engine.record.reason
        if approver and not approved and reason.strip():
            me = OsIdentity.current()  # whoever typed --approved-by: this process's OS user
            problem = rule.refusal(me, VIA_APPROVED_BY)
            if problem is None:
                answer = ApprovalAnswer(approved=True, approver=approver, comment=reason, identity=me,
                                        via=VIA_APPROVED_BY)
                engine.emit(ev.APPROVAL_GRANTED, actor=str(me), step=DATA_LOSS_STEP, approver=approver,
                            decision="approve", comment=reason, identity=me.as_dict(), authenticated=True,
                            via=VIA_APPROVED_BY)
                record_data_loss_approval(engine.emit, answer, rule, reason)
                approved = True
            else:
                engine.emit(APPROVAL_CLAIMED, actor=str(me), step=DATA_LOSS_STEP, approver=approver,
                            identity=me.as_dict(), authenticated=True, via=VIA_APPROVED_BY, reason=problem[0],
                            note=f"--approved-by {approver} typed by {me}: recorded as a claim; the run waits "
                                 "for an approval by a different OS user")
        loaded = engine.plan.loaded
        ctx = StepContext(run_id=engine.record.run_id, step_id=DATA_LOSS_STEP, mode=options.mode,
                          source=loaded.source, target=loaded.target, objectives=loaded.runbook.objectives,
                          deadline=Deadline(engine.clock, 7 * 24 * 3600.0), clock=engine.clock,
                          log=logging.getLogger("dr_engine.engine.approval"), state_dir=engine.state,
                          allow_data_loss=True, two_person=rule, emit=engine.emit, run_dir=engine.run_dir,
                          approval_gate=options.approval_gate)
        return data_loss_refusal(ctx, options.approval_gate, reason=reason, already_approved=approved)

    def cancel_requested(self) -> bool:
        """True (once) when ``dr cancel`` asked this run to stop; the request is audited here."""
        engine = self.engine
        if engine.run_dir is None:
            return False
        request = take_cancel_request(engine.run_dir)
        if request is None:
            return False
        by = str(request.get("by") or "")
        engine.emit(OPERATOR_CANCEL, actor=by or None, reason=str(request.get("reason", "")),
                    detail=f"cancel requested at {request.get('requested_at', '?')}; no new step starts")
        engine.emit(ev.NOTE_ADDED, text=f"cancelled by {by or 'an operator'}: "
                                        f"{request.get('reason') or 'no reason given'}")
        return True

    def before_finish(self) -> None:
        """Before the run is sealed: remove drill copies (always, whatever the outcome)."""
        if not self.drilling or self.engine.run_dir is None or self.engine.record is None:
            return
        try:
            self.drill_session().cleanup()
        except Exception:  # cleanup records each failure itself; never lose the run's end
            log.exception("drill cleanup crashed")


__all__ = ["RunHooks"]
