"""Approvals: what happens around a human decision (the waiting itself is the gate's job).

The approval gate (``ctx.approval_gate``, see :class:`dr_engine.actions.control.ApprovalGate`)
is supplied by the flow: :class:`dr_engine.flows.approval.PrefectApprovalGate` pauses the Prefect flow
run until ``dr approve RUN_ID --as NAME`` (or the Prefect UI) answers. This module holds the
parts that do not depend on Prefect:

- :func:`recheck_gates`: after an approval, the safety gates the approval step depends on
  (``data.check`` / ``stack.check`` steps, e.g. the replication-lag gate) run again, because
  the world may have changed while people deliberated. A gate that now refuses halts the run.
- :func:`data_loss_refusal`: a run started with ``--allow-data-loss`` from the CLI must be
  approved by a person before any step runs (and must carry a reason); the decision is audited.
  Under the two-person rule (:class:`dr_engine.evidence.identity.TwoPersonRule`) that person must be a
  different OS user than the run's initiator, unless the runbook allows self-approval.
- :func:`pending_approval`: what ``dr approve`` answers (read from the audit log).
- Approval tokens: how a waiting run learns *who* answered. ``dr approve`` writes its answer
  to ``runs/<run-id>/approvals/<request>-<uid>-<random>.json`` (:func:`write_approval_token`)
  and passes the file name with the Prefect resume; the run opens it (:func:`read_approval_token`)
  and takes the approver's uid from the file's owner, which the kernel sets and a non-root user
  cannot forge. Prefect's resume input itself carries no user in open-source Prefect.

Sharing a run with a second operator: the approver's ``dr approve`` must read the run's audit
log and create a file in its ``approvals/`` folder. The run creates that folder with mode
``3770`` (group-writable; setgid so answers get the run's group; sticky so nobody removes
another's answer), so approvers are the members of the state dir's group: give the state dir
that group with the setgid bit (``chgrp -R ops .dr && chmod -R g+rX .dr && chmod g+s .dr .dr/runs``)
and start runs with ``umask 0027`` so that run folders and audit logs are group-readable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dr_engine.actions.base import StepContext
from dr_engine.capabilities import Capability
from dr_engine.clock import Deadline
from dr_engine.errors import DrError, PreconditionFailed, RunStateError
from dr_engine.evidence import audit as ev
from dr_engine.evidence.approval_record import APPROVAL_REFUSED
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.identity import ApprovalAnswer, OsIdentity, TwoPersonRule, as_answer, user_name
from dr_engine.evidence.record import RUN_FILE, RunRecord, StepError, StepStatus, load_record
from dr_engine.evidence.statedir import StateDir

log = logging.getLogger("dr_engine.engine.approval")

#: Capabilities re-checked after an approval.
GATE_CAPABILITIES = frozenset({Capability.DATA_CHECK, Capability.STACK_CHECK})
#: Budget of re-running one gate after an approval.
RECHECK_SECONDS = 30.0
#: Pseudo step id of the approval that ``--allow-data-loss`` needs.
DATA_LOSS_STEP = "allow-data-loss"
#: Override kinds: an accepted ``--allow-data-loss`` approval, and one its initiator gave.
DATA_LOSS_APPROVED = "allow-data-loss-approved"
SELF_APPROVAL = "self-approval"
#: Folder of a run where ``dr approve`` leaves its answers (see the module docstring).
APPROVALS_DIR = "approvals"
#: Group members may add answers; setgid: answers get the run's group; sticky: nobody removes another's.
APPROVALS_DIR_MODE = 0o3770
#: ``<request id>-<uid>-<random>.json``: nothing else is ever opened from that folder.
TOKEN_NAME = re.compile(r"^[0-9a-f]{8,64}-[0-9]{1,10}-[0-9a-f]{8}\.json$")
#: An answer file is a few hundred bytes; refuse to read more.
TOKEN_MAX_BYTES = 64 * 1024
#: What to do when a second operator cannot reach a run's files.
SHARE_HINT = ("share the state dir with approvers through a group: `chgrp -R GROUP STATE_DIR && chmod -R g+rX "
              "STATE_DIR && chmod g+s STATE_DIR STATE_DIR/runs`, and start runs with `umask 0027` "
              "(docs/operations/approvals.md)")


def recheck_gates(ctx: StepContext) -> list[str]:
    """Re-run the succeeded gate steps the approval step ``ctx.step_id`` depends on; return summaries.

    Raises :class:`PreconditionFailed` when one of them now refuses.
    """
    from dr_engine.config.bindings import Bindings, bind_params, read_secret
    from dr_engine.config.loader import load_runbook
    from dr_engine.planning.plan import build_plan

    run_dir = ctx.run_dir
    if run_dir is None or not (run_dir / RUN_FILE).is_file():
        return []
    record = load_record(run_dir)
    plan = build_plan(load_runbook(Path(record.runbook_file),
                                   Path(record.regions_dir) if record.regions_dir else None))
    try:
        me = plan.get(ctx.step_id)
    except StopIteration:
        return []
    emit = ctx.emit
    done: list[str] = []
    for planned in plan.steps:
        if planned.id not in me.ancestors or planned.capability not in GATE_CAPABILITIES:
            continue
        if record.step(planned.id).status is not StepStatus.SUCCEEDED:
            continue
        action_cls = plan.loaded.actions[planned.id]
        bindings = Bindings(ctx.source, ctx.target, plan.loaded.runbook.runbook, ctx.run_id, ctx.mode, ctx.outputs)
        params = bind_params(action_cls.Params, planned.step.with_, bindings, planned.id)
        # The approval step's context for the gate's own step: same run, a fresh deadline and attempt.
        check_ctx = replace(ctx, step_id=planned.id, deadline=Deadline(ctx.clock, RECHECK_SECONDS), attempt=1,
                            two_person=None, secret_resolver=read_secret)
        try:
            result = action_cls().run(params, check_ctx)
        except DrError as exc:
            if callable(emit):
                emit(ev.NOTE_ADDED, text=f"after approval, gate {planned.id} refused: {exc.message}",
                     step=ctx.step_id, rechecked=planned.id, ok=False)
            raise PreconditionFailed(f"approved, but gate {planned.id} no longer passes: {exc.message}",
                                     hint=exc.hint or "resolve it, then `dr resume RUN_ID` to ask again") from exc
        done.append(f"{planned.id}: {result.summary}")
        if callable(emit):
            emit(ev.NOTE_ADDED, text=f"after approval, gate {planned.id} re-checked: {result.summary}",
                 step=ctx.step_id, rechecked=planned.id, ok=True)
    return done


def data_loss_refusal(ctx: StepContext, gate: Any, *, reason: str, already_approved: bool) -> StepError | None:
    """Ask ``gate`` to approve running with ``--allow-data-loss``; the StepError that halts the run if not.

    ``ctx.two_person`` (when set) is the rule the approval must satisfy. The gate is expected to
    keep waiting past answers that cannot satisfy it; one that returns such an answer anyway
    (or cannot say who answered) fails closed here.
    """
    from dr_engine.actions.control import ApproveParams

    if not reason.strip():
        return StepError(kind="PreconditionFailed", message="--allow-data-loss needs a reason (--reason TEXT)",
                         hint="start the run again with --reason saying why accepting data loss is right")
    if already_approved:
        return None
    if gate is None:
        return StepError(kind="PreconditionFailed", message="--allow-data-loss needs an approval, and this run "
                         "has no way to ask for one", hint="run it through `dr failover` (Prefect pauses for "
                                                           "`dr approve`)")
    params = ApproveParams(prompt=f"Accept DATA LOSS for this run? Reason given: {reason}",
                           on_timeout="reject")
    try:
        answer = as_answer(gate.request(ctx, params))
    except DrError as exc:
        return StepError(kind=type(exc).__name__, message=exc.message, hint=exc.hint)
    if not answer.approved:
        return StepError(kind="PreconditionFailed",
                         message=f"--allow-data-loss was not approved ({answer.approver}: "
                                 f"{answer.comment or 'no comment'})",
                         hint="resume the run to ask again, or start one without --allow-data-loss")
    problem = ctx.two_person.refusal(answer.identity, answer.via) if ctx.two_person is not None else None
    if problem is not None:
        return StepError(kind="PreconditionFailed", message=f"--allow-data-loss was not approved: {problem[0]}",
                         hint=problem[1])
    emit = ctx.emit
    if callable(emit):
        record_data_loss_approval(emit, answer, ctx.two_person, reason)
    return None


def record_data_loss_approval(emit: Callable[..., Any], answer: ApprovalAnswer, rule: TwoPersonRule | None,
                              reason: str) -> None:
    """Audit an accepted ``--allow-data-loss`` approval (and the self-approval override, if it is one)."""
    identity = answer.identity
    who = f"{answer.approver} (OS user {identity})" if identity else f"{answer.approver} (not authenticated)"
    emit(ev.OVERRIDE, actor=str(identity) if identity else answer.approver, kind=DATA_LOSS_APPROVED,
         approver=answer.approver, identity=identity.as_dict() if identity else None, via=answer.via,
         detail=f"data loss accepted by {who}: {answer.comment or reason}")
    if rule is not None and identity is not None and rule.is_self(identity):
        emit(ev.OVERRIDE, actor=str(identity), kind=SELF_APPROVAL, approver=answer.approver,
             identity=identity.as_dict(), via=answer.via,
             detail=f"{identity} approved their own --allow-data-loss run (two-person rule relaxed by the "
                    f"runbook's approvals.allow_self_approval: {rule.reason})")


def data_loss_approved(record: RunRecord) -> bool:
    """True when the audit log holds an accepted ``--allow-data-loss`` approval with a proven identity.

    Approvals recorded before identities were (a typed name only) do not count: fail closed.
    """
    return any(o.kind == DATA_LOSS_APPROVED and o.identity is not None for o in record.overrides)


def two_person_rule(record: RunRecord, allow_self_approval: bool, reason: str) -> TwoPersonRule:
    """The rule of ``record``'s run: its initiator, and the runbook's self-approval setting."""
    initiator = None
    if record.initiator is not None:
        initiator = OsIdentity(user=record.initiator.user, uid=record.initiator.uid, host=record.initiator.host)
    return TwoPersonRule(initiator=initiator, allow_self_approval=allow_self_approval, reason=reason)


def pending_approval(state_dir: StateDir | Path, run_id: str) -> dict[str, Any]:
    """The open ``approval.requested`` event data of a run (RunStateError when none is open)."""
    state = StateDir.of(state_dir)
    try:
        full = state.resolve_run_id(run_id)
        events = read_events(state.audit_file(full))
    except PermissionError as exc:
        raise RunStateError(f"cannot read the runs in {state.root} as OS user {OsIdentity.current().user}: "
                            f"{exc.strerror} ({exc.filename})", hint=SHARE_HINT) from exc
    open_requests: dict[str, dict[str, Any]] = {}
    for event in events:
        data = dict(event.get("data") or {})
        step = str(data.get("step", ""))
        if event["type"] == ev.APPROVAL_REQUESTED:
            open_requests[step] = {**data, "run_id": full, "requested_at": event["ts"]}
        elif event["type"] in (ev.APPROVAL_GRANTED, ev.APPROVAL_REJECTED, ev.RUN_FINISHED):
            if event["type"] == ev.RUN_FINISHED:
                open_requests.clear()
            open_requests.pop(step, None)
    if not open_requests:
        raise RunStateError(f"run {full} is not waiting for an approval",
                            hint=f"see `dr show {full}` for where it stands")
    return list(open_requests.values())[-1]


# ----------------------------------------------------------------- approval tokens


@dataclass(frozen=True)
class ApprovalToken:
    """An answer ``dr approve`` left for a waiting run; ``identity.uid`` is the file's owner."""

    name: str
    request_id: str
    run_id: str
    step: str
    approver: str
    approve: bool
    comment: str
    identity: OsIdentity


def open_approvals_dir(run_dir: Path) -> Path:
    """Create (or re-mode) the run's ``approvals/`` folder where approvers leave their answers."""
    path = Path(run_dir) / APPROVALS_DIR
    if path.is_symlink():
        raise RunStateError(f"{path} is a symbolic link; approvals are only read from a real folder",
                            hint="remove the link; the run recreates the folder")
    path.mkdir(exist_ok=True)
    try:
        path.chmod(APPROVALS_DIR_MODE)
    except PermissionError:  # made by another user (a resume as someone else): its mode stays
        log.warning("cannot set the mode of %s; approvers may not be able to answer", path)
    return path


def write_approval_token(run_dir: Path, *, run_id: str, request_id: str, step: str, approver: str, approve: bool,
                         comment: str) -> ApprovalToken:
    """Leave this process's answer for the run (the ``dr approve`` side); return it."""
    me = OsIdentity.current()
    if not re.fullmatch(r"[0-9a-f]{8,64}", request_id):
        raise RunStateError(f"run {run_id} asked with an unusable request id {request_id!r}",
                            hint="resume the run to ask again")
    name = f"{request_id}-{me.uid}-{secrets.token_hex(4)}.json"
    folder = Path(run_dir) / APPROVALS_DIR
    body = json.dumps({"request_id": request_id, "run_id": run_id, "step": step, "approver": approver,
                       "decision": "approve" if approve else "reject", "comment": comment,
                       "user": me.user, "uid": me.uid, "host": me.host, "pid": os.getpid()}, sort_keys=True)
    try:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    except FileNotFoundError as exc:
        raise RunStateError(f"run {run_id} has no {folder} folder: it was started by an older dr-engine, which "
                            "cannot learn who approves", hint="answer it as before with a dr-engine of that "
                                                              "version, or start a new run") from exc
    except PermissionError as exc:
        raise RunStateError(f"cannot record your answer in {folder} as OS user {me.user}: permission denied",
                            hint=SHARE_HINT) from exc
    try:
        os.fchmod(fd, 0o640)  # the umask must not hide the answer from the run's group
        os.write(fd, body.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return ApprovalToken(name=name, request_id=request_id, run_id=run_id, step=step, approver=approver,
                         approve=approve, comment=comment, identity=me)


def read_approval_token(run_dir: Path, name: str, *, request_id: str) -> ApprovalToken:
    """Open the answer ``name`` for request ``request_id``; RunStateError when it does not check out.

    The identity's uid is the file's owner (set by the kernel when the approver created it);
    the claimed uid inside must agree, and the answer must be for this very request.
    """
    if not TOKEN_NAME.match(name):
        raise RunStateError(f"{name!r} is not the name of an answer file written by `dr approve`")
    path = Path(run_dir) / APPROVALS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise RunStateError(f"cannot read the answer file {path}: {exc.strerror}", hint=SHARE_HINT) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunStateError(f"the answer file {path} is not a regular file")
        raw = os.read(fd, TOKEN_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > TOKEN_MAX_BYTES:
        raise RunStateError(f"the answer file {path} is larger than {TOKEN_MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RunStateError(f"the answer file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RunStateError(f"the answer file {path} is not a JSON object")
    claimed_uid = data.get("uid")
    if claimed_uid != info.st_uid:
        raise RunStateError(f"the answer file {path} claims uid {claimed_uid!r} but belongs to uid {info.st_uid}")
    if data.get("request_id") != request_id:
        raise RunStateError(f"the answer file {path} answers request {data.get('request_id')!r}, not this one "
                            f"({request_id})", hint="answer the open request with `dr approve`")
    decision = data.get("decision")
    if decision not in ("approve", "reject"):
        raise RunStateError(f"the answer file {path} has no decision (approve or reject)")
    identity = OsIdentity(user=user_name(info.st_uid), uid=info.st_uid, host=str(data.get("host") or ""))
    return ApprovalToken(name=name, request_id=request_id, run_id=str(data.get("run_id") or ""),
                         step=str(data.get("step") or ""), approver=str(data.get("approver") or ""),
                         approve=decision == "approve", comment=str(data.get("comment") or ""), identity=identity)


#: Answer events that settle one ``dr approve`` answer (by its token).
_SETTLING = (ev.APPROVAL_GRANTED, ev.APPROVAL_REJECTED, APPROVAL_REFUSED)


def wait_for_verdict(audit_file: Path, token: str, *, after_seq: int, timeout: float,
                     sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
    """The event in which the run settled answer ``token`` (None when it did not within ``timeout`` s).

    Only events after ``after_seq`` count (a resumed run's log holds earlier ``run.finished``
    events); a ``run.finished`` before any verdict is returned as it is (the run ended first).
    """
    end = time.monotonic() + timeout
    while True:
        for event in read_events(audit_file):
            if int(event.get("seq") or 0) <= after_seq:
                continue
            if event.get("type") in _SETTLING and (event.get("data") or {}).get("token") == token:
                return event
            if event.get("type") == ev.RUN_FINISHED:
                return event
        if time.monotonic() >= end:
            return None
        sleep(0.2)


__all__ = [
    "APPROVALS_DIR",
    "DATA_LOSS_APPROVED",
    "DATA_LOSS_STEP",
    "GATE_CAPABILITIES",
    "SELF_APPROVAL",
    "SHARE_HINT",
    "ApprovalToken",
    "data_loss_approved",
    "data_loss_refusal",
    "open_approvals_dir",
    "pending_approval",
    "read_approval_token",
    "recheck_gates",
    "record_data_loss_approval",
    "two_person_rule",
    "wait_for_verdict",
    "write_approval_token",
]
