"""Approvals through Prefect: a ``control.approve`` step pauses the flow run until someone answers.

:class:`PrefectApprovalGate` is the approval gate of runs executed by ``dr_engine.flows.failover``. It
records ``approval.requested`` (with the flow run id and the API URL to answer on), then calls
``pause_flow_run(wait_for_input=ApprovalInput, timeout=...)``. The answer comes from
``dr approve RUN_ID --as NAME [--reject]`` (:func:`answer`, which calls ``resume_flow_run`` with a
typed input) or from the Prefect UI's resume form. On timeout the step's ``on_timeout`` outcome
applies and the flow run is set running again. After an approval the gates the step depends
on are re-checked (:func:`dr_engine.engine.approval.recheck_gates`).

Who answered: ``dr approve`` leaves its answer in a file of the run's ``approvals/`` folder and
passes the file's name as ``token``; the run takes the approver's OS user from the file's owner
(:func:`dr_engine.engine.approval.read_approval_token`). An answer without a token (the Prefect UI's
form, or any client of the resume API) is recorded as unauthenticated
(:data:`dr_engine.evidence.identity.PREFECT_UI_UNAUTHENTICATED`): open-source Prefect has no users. An
answer that cannot be accepted (the two-person rule of ``ctx.two_person``, a token that does
not check out) is recorded as ``approval.refused`` and the run keeps waiting.

``pause_flow_run`` cannot be called from inside a task, so the flow's executor runs approval
steps in the flow itself (``dr_engine.flows.failover.PrefectExecutor``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from dr_engine.actions.base import StepContext
from dr_engine.actions.control import ApproveParams
from dr_engine.engine.approval import open_approvals_dir, read_approval_token, recheck_gates
from dr_engine.engine.run import RunOptions
from dr_engine.errors import DrError, PreconditionFailed, RunStateError
from dr_engine.evidence import audit as ev
from dr_engine.evidence.approval_record import APPROVAL_REFUSED
from dr_engine.evidence.identity import (
    PREFECT_UI_UNAUTHENTICATED,
    VIA_DR_APPROVE,
    VIA_PREFECT_UI,
    VIA_TIMEOUT,
    ApprovalAnswer,
    TwoPersonRule,
)

#: Seconds between checks of a paused flow run (Prefect's default is 10).
POLL_SECONDS = 1


class ApprovalInput(RunInput):
    """What an approver answers (also the form the Prefect UI shows on resume).

    ``token`` is set by ``dr approve``: the answer file that proves who answered. An answer
    without one (the Prefect UI) is recorded as unauthenticated: open-source Prefect has no users.
    """

    approver: str
    decision: Literal["approve", "reject"] = "approve"
    comment: str = ""
    token: str = ""


def _api_url() -> str | None:
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    return server.api_url if server.running else None


def _running_again(flow_run_id: uuid.UUID) -> None:
    # After a pause timeout the run is still Paused: tasks could not start. Take it back.
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Running(message="approval timed out; on_timeout applied"),
                                  force=True)


@dataclass(frozen=True)
class _Verdict:
    """An answer as the run understands it: who (proven or not), and why it is refused, if it is."""

    answer: ApprovalAnswer
    note: str = ""
    refusal: tuple[str, str] | None = None


def _verdict(given: ApprovalInput, run_dir: Path | None, request_id: str, rule: TwoPersonRule | None) -> _Verdict:
    """Authenticate ``given`` (through its answer file) and apply the two-person rule."""
    token = given.token.strip()
    if not token:
        answer = ApprovalAnswer(approved=given.decision == "approve", approver=given.approver.strip(),
                                comment=given.comment, identity=None, via=VIA_PREFECT_UI)
        verdict = _Verdict(answer=answer, note=PREFECT_UI_UNAUTHENTICATED)
    else:
        unproven = ApprovalAnswer(approved=given.decision == "approve", approver=given.approver.strip(),
                                  comment=given.comment, identity=None, via=VIA_DR_APPROVE)
        if run_dir is None:
            return _Verdict(answer=unproven, refusal=("this run cannot read answer files (no run folder)",
                                                      "resume the run with `dr resume`"))
        try:
            proof = read_approval_token(run_dir, token, request_id=request_id)
        except DrError as exc:
            return _Verdict(answer=unproven, refusal=(f"the answer could not be authenticated: {exc.message}",
                                                      exc.hint or "answer again with `dr approve`"))
        if proof.approve != (given.decision == "approve") or proof.approver != given.approver.strip():
            # The resume input must say what the file says: anything else was changed on the way.
            return _Verdict(answer=unproven, refusal=(f"the answer does not match its answer file {token}",
                                                      "answer again with `dr approve`"))
        answer = ApprovalAnswer(approved=proof.approve, approver=proof.approver, comment=proof.comment,
                                identity=proof.identity, via=VIA_DR_APPROVE)
        verdict = _Verdict(answer=answer, note=f"uid {proof.identity.uid} proven by the owner of {token}")
    if verdict.answer.approved and rule is not None:
        problem = rule.refusal(verdict.answer.identity, verdict.answer.via)
        if problem is not None:
            return _Verdict(answer=verdict.answer, note=verdict.note, refusal=problem)
    return verdict


class PrefectApprovalGate:
    """Pause the flow run until ``dr approve`` or the Prefect UI answers (see the module docstring)."""

    def __init__(self, poll_seconds: int = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds

    def request(self, ctx: StepContext, params: ApproveParams) -> ApprovalAnswer:
        """Block until decided or timed out; return the answer (with who gave it, when proven).

        An answer that cannot be accepted (it fails the two-person rule of ``ctx.two_person``,
        or its answer file does not check out) is recorded as ``approval.refused`` and the run
        keeps waiting for another answer, within the same timeout.
        """
        flow_ctx = FlowRunContext.get()
        if flow_ctx is None or flow_ctx.flow_run is None:
            raise PreconditionFailed("an approval can only wait inside a Prefect flow run",
                                     hint="run it with `dr failover`/`dr drill`/`dr failback`")
        if TaskRunContext.get() is not None:
            raise PreconditionFailed("an approval cannot wait inside a Prefect task",
                                     hint="the flow's executor must run approval steps in the flow itself")
        emit: Any = ctx.emit or (lambda *a, **k: None)
        run_dir = ctx.run_dir
        if run_dir is not None:
            open_approvals_dir(run_dir)  # where `dr approve` leaves its answer (proves the approver's uid)
        flow_run_id = flow_ctx.flow_run.id
        timeout = max(1, int(min(params.timeout.total_seconds(), ctx.deadline.remaining())))
        request_id = uuid.uuid4().hex[:16]
        rule = ctx.two_person
        emit(ev.APPROVAL_REQUESTED, step=ctx.step_id, prompt=params.prompt, approvers=list(params.approvers),
             timeout_seconds=timeout, on_timeout=params.on_timeout, flow_run_id=str(flow_run_id),
             api_url=_api_url(), request_id=request_id, two_person=rule.as_dict() if rule else None)
        ctx.log.warning("waiting up to %ds for approval: %s (dr approve %s --as NAME)", timeout, params.prompt,
                        ctx.run_id)
        started = ctx.clock.monotonic()
        for pause in itertools.count():
            left = timeout - (ctx.clock.monotonic() - started)
            try:
                if left < 1:
                    raise FlowPauseTimeout("no time left to wait")
                given = pause_flow_run(wait_for_input=ApprovalInput, timeout=int(left),
                                       poll_interval=self.poll_seconds,
                                       key=f"approve-{ctx.step_id}-{request_id}-{pause}")
            except FlowPauseTimeout:
                _running_again(flow_run_id)  # forced: also right when no time was left to pause again
                return self._timed_out(ctx, params, emit, timeout, started)
            except BaseException:
                # A stop signal (StepInterrupted) ended the wait: the flow run is still Paused, and a
                # paused run cannot end. Take it back so the run's end can be recorded in Prefect too.
                with contextlib.suppress(Exception):
                    _running_again(flow_run_id)
                raise
            waited = round(ctx.clock.monotonic() - started, 3)
            verdict = _verdict(given, run_dir, request_id, rule)
            answer = verdict.answer
            shown = answer.identity.as_dict() if answer.identity else None
            common = {"step": ctx.step_id, "approver": answer.approver, "comment": answer.comment,
                      "identity": shown, "authenticated": answer.authenticated, "via": answer.via,
                      "note": verdict.note, "token": given.token.strip() or None}
            actor = str(answer.identity) if answer.identity else answer.via
            if verdict.refusal is not None:
                emit(APPROVAL_REFUSED, actor=actor, decision=given.decision, reason=verdict.refusal[0],
                     hint=verdict.refusal[1], waited_seconds=waited, **common)
                ctx.log.warning("answer by %s not accepted: %s; still waiting", answer.approver, verdict.refusal[0])
                continue
            allowed = not params.approvers or answer.approver in params.approvers
            approved = answer.approved and allowed
            extra = {} if allowed else {"refused": f"{answer.approver!r} is not among the allowed approvers"}
            emit(ev.APPROVAL_GRANTED if approved else ev.APPROVAL_REJECTED, actor=actor,
                 decision=given.decision, waited_seconds=waited, **common, **extra)
            if approved:
                recheck_gates(ctx)
            return ApprovalAnswer(approved=approved, approver=answer.approver, comment=answer.comment,
                                  identity=answer.identity, via=answer.via)
        raise AssertionError("unreachable")  # itertools.count() never ends

    def _timed_out(self, ctx: StepContext, params: ApproveParams, emit: Any, timeout: int,
                   started: float) -> ApprovalAnswer:
        waited = round(ctx.clock.monotonic() - started, 3)
        approved = params.on_timeout == "approve"
        comment = f"no decision within {timeout}s; on_timeout: {params.on_timeout}"
        emit(ev.APPROVAL_GRANTED if approved else ev.APPROVAL_REJECTED, actor="timeout", step=ctx.step_id,
             approver="(timeout)", timed_out=True, comment=comment, waited_seconds=waited, identity=None,
             authenticated=False, via=VIA_TIMEOUT)
        if approved:
            recheck_gates(ctx)
        return ApprovalAnswer(approved=approved, approver="(timeout)", comment=comment, via=VIA_TIMEOUT)


def with_approval_gate(options: RunOptions) -> RunOptions:
    """``options`` with the Prefect approval gate unless the caller supplied a gate."""
    if options.approval_gate is None:
        options.approval_gate = PrefectApprovalGate()
    return options


def answer(flow_run_id: str, *, approver: str, approve: bool, comment: str = "", token: str = "") -> None:
    """Resume a flow run paused for approval with the typed answer (the ``dr approve`` side).

    ``token`` names the answer file (:func:`dr_engine.engine.approval.write_approval_token`) that
    proves who answered; the run reads it before accepting the answer.
    """
    try:
        resume_flow_run(uuid.UUID(flow_run_id), run_input={"approver": approver,
                                                            "decision": "approve" if approve else "reject",
                                                            "comment": comment, "token": token})
    except Exception as exc:  # Prefect raises plain errors (not paused, unknown id, bad input)
        raise RunStateError(f"could not answer flow run {flow_run_id}: {type(exc).__name__}: {exc}",
                            hint="the approval may have timed out or been answered already; see `dr show`") from exc


__all__ = ["ApprovalInput", "PrefectApprovalGate", "answer", "with_approval_gate"]
