"""Approvals through a real paused Prefect flow run, answered by `dr approve` in another process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.engine.run import RunOptions
from dr_engine.errors import PreconditionFailed
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.identity import PREFECT_UI_UNAUTHENTICATED, OsIdentity
from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.settings import EMBEDDED_SETTINGS
from dr_engine.testing.runbooks import plan_from_steps

pytestmark = pytest.mark.integration


class GateParams(ActionParams):
    """Params of test.gate."""

    flag: str


@register
class Gate(Action[GateParams]):
    """A safety gate that passes while its flag file says ``open``."""

    name = "test.gate"
    capability = Capability.DATA_CHECK
    Params = GateParams
    example = "id: gate\naction: test.gate\nwith: {flag: /tmp/flag}\n"

    def run(self, params: GateParams, ctx: StepContext) -> StepResult:
        """Pass when the flag is open."""
        if Path(params.flag).read_text().strip() != "open":
            raise PreconditionFailed("gate closed", hint="open it")
        return StepResult(summary="gate open", changed=False)


def _steps(flag: Path, timeout: str = "60s", on_timeout: str = "reject") -> str:
    return f"""
- id: gate
  action: test.gate
  with: {{flag: "{flag}"}}
- id: approve
  action: control.approve
  with: {{prompt: "Go?", timeout: {timeout}, on_timeout: {on_timeout}}}
  after: [gate]
  timeout: 2m
- id: healthy
  action: fake.check_health
  after: [approve]
"""


def _start(tmp_path: Path, steps: str, name: str) -> tuple[threading.Thread, dict[str, Any], Path]:
    from dr_engine.flows.failover import launch

    plan = plan_from_steps(tmp_path, steps, name=name)
    state = tmp_path / "state"
    result: dict[str, Any] = {}

    def go() -> None:
        result["record"] = launch(plan, RunOptions(state_dir=state))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, result, state


def _wait_request(state: Path) -> str:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for run_id in StateDir(state).run_ids():
            types = [e["type"] for e in read_events(StateDir(state).audit_file(run_id))]
            if "approval.requested" in types:
                return run_id
        time.sleep(0.1)
    raise AssertionError("no approval was requested")


def quiet_env(home: Path) -> dict[str, str]:
    """The environment of a `dr` subprocess in embedded mode (dr approve sets PREFECT_API_URL itself)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DR_STATE_DIR"}
    env.update({**EMBEDDED_SETTINGS, "PREFECT_HOME": str(home), "NO_COLOR": "1"})
    return env


def _dr(home: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dr = str(Path(sys.executable).parent / "dr")
    return subprocess.run([dr, *args, "--state-dir", str(state)],
                          env=quiet_env(home), capture_output=True, text=True, timeout=120, check=False)


def _finish(thread: threading.Thread, result: dict[str, Any]) -> RunRecord:
    thread.join(120)
    assert not thread.is_alive()
    record = result["record"]
    assert isinstance(record, RunRecord)
    return record


def _events(state: Path, record: RunRecord) -> list[dict[str, Any]]:
    audit = StateDir(state).audit_file(record.run_id)
    assert verify(audit).ok
    return read_events(audit)


def test_approve_from_another_process_resumes_the_paused_flow(in_process_prefect: Path, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("open")
    thread, result, state = _start(tmp_path, _steps(flag), "approve-app")
    run_id = _wait_request(state)
    done = _dr(in_process_prefect, state, "approve", run_id, "--as", "alice@risk", "--comment", "CHG-1")
    assert done.returncode == 0, done.stderr
    record = _finish(thread, result)
    assert record.status is RunStatus.SUCCEEDED
    assert record.step("approve").facts["approver"] == "alice@risk"
    assert record.human_wait_seconds > 0
    events = _events(state, record)
    granted = [e for e in events if e["type"] == "approval.granted"]
    # The name given is recorded beside who the OS says answered (the actor of the event).
    me = OsIdentity.current()
    assert granted[0]["data"]["approver"] == "alice@risk" and granted[0]["data"]["comment"] == "CHG-1"
    assert granted[0]["actor"] == str(me) and granted[0]["data"]["identity"] == me.as_dict()
    assert record.step("approve").facts["identity"] == me.as_dict()
    assert [(a.approver, a.via, a.identity.user if a.identity else None) for a in record.approvals] == \
        [("alice@risk", "dr approve", me.user)]
    assert any(e["type"] == "note.added" and e["data"].get("rechecked") == "gate" for e in events)


def test_reject_halts_the_run(in_process_prefect: Path, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("open")
    thread, result, state = _start(tmp_path, _steps(flag), "reject-app")
    run_id = _wait_request(state)
    done = _dr(in_process_prefect, state, "approve", run_id, "--reject", "--as", "bob@risk", "--comment", "no")
    assert done.returncode == 0, done.stderr
    record = _finish(thread, result)
    assert record.status is RunStatus.HALTED and record.halted_at_step == "approve"
    assert record.step("healthy").status is StepStatus.PENDING
    assert any(e["type"] == "approval.rejected" and e["data"]["approver"] == "bob@risk"
               and e["data"]["authenticated"] is True for e in _events(state, record))


def test_gates_are_rechecked_after_approval(in_process_prefect: Path, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("open")
    thread, result, state = _start(tmp_path, _steps(flag), "recheck-app")
    run_id = _wait_request(state)
    flag.write_text("closed")  # the world changed while people deliberated
    assert _dr(in_process_prefect, state, "approve", run_id, "--as", "alice@risk").returncode == 0
    record = _finish(thread, result)
    assert record.status is RunStatus.HALTED and record.halted_at_step == "approve"
    assert record.error is not None and "no longer passes" in record.error.message


@pytest.mark.parametrize(("on_timeout", "status"), [("reject", RunStatus.HALTED), ("approve", RunStatus.SUCCEEDED)])
def test_timeout_applies_the_on_timeout_outcome(in_process_prefect: Path, tmp_path: Path, on_timeout: str,
                                                status: RunStatus) -> None:
    flag = tmp_path / "flag"
    flag.write_text("open")
    thread, result, state = _start(tmp_path, _steps(flag, "2s", on_timeout), f"timeout-{on_timeout}-app")
    record = _finish(thread, result)
    assert record.status is status
    decided = [e for e in _events(state, record) if e["type"] in ("approval.granted", "approval.rejected")]
    assert decided and decided[0]["data"]["timed_out"] is True
    if status is RunStatus.SUCCEEDED:
        assert record.step("healthy").status is StepStatus.SUCCEEDED  # tasks ran after the timed-out pause


def _resume_as_the_prefect_ui(state: Path, run_id: str, decision: str) -> None:
    """Answer like the Prefect UI's resume form: the typed fields, no answer file."""
    from prefect.flow_runs import resume_flow_run

    from dr_engine.engine.approval import pending_approval

    pending = pending_approval(state, run_id)
    resume_flow_run(uuid.UUID(str(pending["flow_run_id"])),
                    run_input={"approver": "carol", "decision": decision, "comment": "from the UI"})


def _wait_for(state: Path, run_id: str, kind: str, count: int = 1) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if sum(e["type"] == kind for e in read_events(StateDir(state).audit_file(run_id))) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event")


def test_a_prefect_ui_answer_is_recorded_as_unauthenticated(in_process_prefect: Path, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("open")
    thread, result, state = _start(tmp_path, _steps(flag), "ui-approve-app")
    _resume_as_the_prefect_ui(state, _wait_request(state), "approve")
    record = _finish(thread, result)
    assert record.status is RunStatus.SUCCEEDED  # an ordinary approval step takes it, as before
    [answer] = record.approvals
    assert (answer.decision, answer.approver, answer.identity, answer.via) == ("granted", "carol", None, "prefect-ui")
    assert answer.note == PREFECT_UI_UNAUTHENTICATED
    assert record.step("approve").summary == "approved by carol (not authenticated)"


def test_a_prefect_ui_answer_cannot_approve_data_loss(in_process_prefect: Path, tmp_path: Path) -> None:
    from dr_engine.flows.failover import launch

    plan = plan_from_steps(tmp_path, "- id: healthy\n  action: fake.check_health\n", name="ui-data-loss-app")
    state = tmp_path / "state"
    options = RunOptions(state_dir=state, allow_data_loss=True, reason="region lost; CRO accepts the loss",
                         require_data_loss_approval=True)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(record=launch(plan, options)), daemon=True)
    thread.start()
    run_id = _wait_request(state)
    _resume_as_the_prefect_ui(state, run_id, "approve")
    _wait_for(state, run_id, "approval.refused")
    assert thread.is_alive()  # refused, and still waiting for an approval that proves who gave it
    _resume_as_the_prefect_ui(state, run_id, "reject")  # rejecting is always accepted: it is the safe way
    record = _finish(thread, result)
    assert record.status is RunStatus.HALTED and record.steps[0].attempts == 0
    assert [(a.decision, a.via) for a in record.approvals] == [("refused", "prefect-ui"), ("rejected", "prefect-ui")]
    assert "unauthenticated" in record.approvals[0].reason
    assert not [o for o in record.overrides if o.kind == "allow-data-loss-approved"]
