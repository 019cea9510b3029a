"""Operator controls on real runs in-process: dr skip, dr cancel, and drill step behaviour."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.cli import build_app
from dr_engine.drill.session import drill_address, drill_behaviour
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.model import DrillBehaviour, Region
from dr_engine.testing.runbooks import plan_from_steps

HALTS = """
- id: first
  action: fake.noop
- id: lag-gate
  action: postgres.check_lag
  with: {dsn: "postgresql://postgres@127.0.0.1:9/x", cluster: main}
  after: [first]
- id: flaky
  action: fake.fail
  with: {kind: PreconditionFailed}
  after: [lag-gate]
- id: healthy
  action: fake.check_health
  after: [flaky]
"""


def _dr(state: Path, *args: str) -> Any:
    return CliRunner().invoke(build_app(), [*args, "--state-dir", str(state)])


def _types(state: Path, run_id: str) -> list[str]:
    audit = StateDir(state).audit_file(run_id)
    assert verify(audit).ok, verify(audit).describe(audit)
    return [e["type"] for e in read_events(audit)]


def test_skip_refuses_safety_critical_steps_unless_forced_and_resume_continues(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, HALTS, name="skip-app")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock()))
    assert record.status in (RunStatus.FAILED, RunStatus.HALTED) and record.halted_at_step == "lag-gate"

    refused = _dr(state, "skip", record.run_id, "lag-gate", "--reason", "lag checked by hand")
    assert refused.exit_code != 0 and "safety-critical" in refused.output
    assert _dr(state, "skip", record.run_id, "lag-gate", "--reason", "").exit_code != 0
    forced = _dr(state, "skip", record.run_id, "lag-gate", "--reason", "DBA checked lag: 0", "--force",
                 "--as", "carol@dba")
    assert forced.exit_code == 0, forced.output
    after = StateDir(state).load(record.run_id)
    assert after.step("lag-gate").status is StepStatus.SKIPPED
    assert "carol@dba" in after.step("lag-gate").summary and "DBA checked lag: 0" in after.step("lag-gate").summary
    assert any(o.kind == "skip-safety-critical" and o.actor == "carol@dba" for o in after.overrides)
    assert after.status is record.status  # still stopped; the log is re-sealed
    assert _types(state, record.run_id)[-1] == "run.finished"

    resumed = resume_run(state, record.run_id, lock=NullLock(), concurrency=1)
    assert resumed.status is RunStatus.HALTED and resumed.halted_at_step == "flaky"  # the next failure
    assert _dr(state, "skip", record.run_id, "flaky", "--reason", "known flake").exit_code == 0
    done = resume_run(state, record.run_id, lock=NullLock(), concurrency=1)
    assert done.status is RunStatus.SUCCEEDED
    assert done.step("healthy").status is StepStatus.SUCCEEDED
    actions = (done.model_extra or {})["operator_actions"]
    assert [a["step"] for a in actions if a["action"] == "skip"] == ["lag-gate", "flaky"]


def test_cancel_stops_a_running_run_before_its_next_step(tmp_path: Path) -> None:
    reached, release = tmp_path / "reached", tmp_path / "release"
    plan = plan_from_steps(tmp_path, f"""
- id: long
  action: fake.hook
  with: {{reached: "{reached}", release: "{release}"}}
- id: next
  action: fake.noop
  after: [long]
- id: healthy
  action: fake.check_health
  after: [next]
""", name="cancel-app")
    state = tmp_path / "state"
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        record=start_run(plan, RunOptions(state_dir=state, concurrency=1))), daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not reached.exists():
        assert time.monotonic() < end
        time.sleep(0.02)
    cancelled = _dr(state, "cancel", reached.read_text(), "--reason", "change freeze", "--as", "dave@ops")
    assert cancelled.exit_code == 0 and "stops before its next step" in cancelled.output
    release.write_text("go")
    thread.join(30)
    record = result["record"]
    assert record.status is RunStatus.CANCELLED
    assert record.step("long").status is StepStatus.SUCCEEDED  # a running step finishes
    assert record.step("next").status is StepStatus.PENDING  # no new step starts
    events = read_events(StateDir(state).audit_file(record.run_id))
    cancel = [e for e in events if e["type"] == "operator.cancel"]
    assert cancel and cancel[0]["actor"] == "dave@ops" and cancel[0]["data"]["reason"] == "change freeze"
    assert _types(state, record.run_id)[-1] == "run.finished"
    # Resuming a cancelled run is allowed and is not cancelled again by the old request.
    assert resume_run(state, record.run_id, concurrency=1).status is RunStatus.SUCCEEDED


def test_cancelling_a_halted_run_marks_it_cancelled(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, "- id: boom\n  action: fake.fail\n- id: healthy\n  action: fake.check_health\n"
                                     "  after: [boom]\n", name="halted-app")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, lock=NullLock()))
    assert _dr(state, "cancel", record.run_id, "--reason", "abandoned").exit_code == 0
    assert StateDir(state).load(record.run_id).status is RunStatus.CANCELLED
    assert _types(state, record.run_id)[-2:] == ["operator.cancel", "run.finished"]


def test_drill_behaviour_and_drill_address(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, """
- id: fence
  action: postgres.fence
  with: {dsn: "postgresql://postgres@127.0.1.1:5432/x", data_dir: /nonexistent, cluster: main}
- id: promote
  action: postgres.promote
  with: {dsn: "postgresql://postgres@127.0.2.1:5432/x", cluster: main}
  after: [fence]
- id: forced
  action: fake.check_health
  drill: skip
  after: [promote]
- id: healthy
  action: fake.check_health
  after: [forced]
""", name="drill-app")
    actions = plan.loaded.actions
    behaviour = {s.id: drill_behaviour(s, actions[s.id]) for s in plan.steps}
    assert behaviour == {"fence": DrillBehaviour.SKIP, "promote": DrillBehaviour.RUN,  # promote: via its variant
                         "forced": DrillBehaviour.SKIP, "healthy": DrillBehaviour.RUN}
    region = Region.model_validate({"name": "west", "params": {"addr": "127.0.2.1"}})
    assert drill_address(region) == "127.0.2.201"
    assert drill_address(Region.model_validate({"name": "w", "params": {"addr": "10.0.0.5"}})) is None
    assert drill_address(Region.model_validate({"name": "w", "params": {"addr": "10.0.0.5",
                                                                        "drill_addr": "10.9.0.5"}})) == "10.9.0.5"


GATED = """
- id: first
  action: fake.noop
- id: healthy
  action: fake.check_health
  with: {healthy: false}
  after: [first]
- id: shift
  action: fake.shift_traffic
  after: [healthy]
- id: serving
  action: fake.check_health
  after: [shift]
"""


def test_skipping_a_health_gate_needs_force_and_the_success_shows_the_override(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, GATED, name="skip-gate")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock()))
    assert record.halted_at_step == "healthy"

    refused = _dr(state, "skip", record.run_id, "healthy", "--reason", "looks fine to me")
    assert refused.exit_code != 0 and "safety-critical" in refused.output
    assert StateDir(state).load(record.run_id).step("healthy").status is StepStatus.FAILED
    forced = _dr(state, "skip", record.run_id, "healthy", "--reason", "checked by hand", "--force",
                 "--as", "dave@sre")
    assert forced.exit_code == 0, forced.output
    done = resume_run(state, record.run_id, lock=NullLock(), concurrency=1)
    assert done.status is RunStatus.SUCCEEDED
    assert any(o.kind == "skip-safety-critical" and o.actor == "dave@sre" for o in done.overrides)
    shown = _dr(state, "show", record.run_id)
    assert shown.exit_code == 0, shown.output
    assert "WITH 1 OVERRIDE(S)" in shown.output and "skip-safety-critical" in shown.output
