"""Stop signals reaching the engine: grace for running steps, abandonment, a seal that holds.

In-process (the engine runs on pytest's main thread, signals are real ``os.kill`` to this
process); the CLI behaviour with a terminal is tested in tests/integration/prefect/test_interrupts_cli.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.engine.executors import ThreadExecutor
from dr_engine.engine.interrupts import Interrupts
from dr_engine.engine.progress import Progress, RecordingProgress
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.report.publish import run_report
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: slow
  action: control.wait
  with: {duration: WAIT}
  timeout: 10m
- id: after-slow
  action: fake.check_health
  after: [slow]
"""


def _signal_later(*delays_and_signals: tuple[float, int]) -> threading.Thread:
    def send() -> None:
        for delay, sig in delays_and_signals:
            time.sleep(delay)
            os.kill(os.getpid(), sig)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _options(state: Path, interrupts: Interrupts) -> RunOptions:
    return RunOptions(state_dir=state, lock=NullLock(), concurrency=2, interrupts=interrupts)


def _types(state: Path, run_id: str) -> list[str]:
    return [e["type"] for e in read_events(StateDir(state).audit_file(run_id))]


@pytest.fixture(autouse=True)
def _restore_handlers() -> object:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    # The tests may run with SIGINT ignored (a background job of a non-interactive shell); the
    # engine keeps an ignored signal ignored, so start from the dispositions of a foreground command.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield None
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_step_that_ends_within_the_grace_is_recorded_before_the_seal(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("WAIT", "1500ms"), name="grace-ok")
    said: list[str] = []
    interrupts = Interrupts(grace_cap=60, write=said.append)
    _signal_later((0.4, signal.SIGINT))
    progress = RecordingProgress()
    with interrupts.installed():
        record = start_run(plan, _options(tmp_path / "state", interrupts), progress=progress)
    assert record.status is RunStatus.CANCELLED
    # Listeners hear of the interruption before the step that finished within the grace.
    assert progress.events.index(("run_interrupted", None)) < progress.events.index(("step_succeeded", "slow"))
    assert record.step("slow").status is StepStatus.SUCCEEDED
    assert record.step("after-slow").status is StepStatus.PENDING  # no new step started
    assert record.interrupted_by == ["SIGINT"]
    assert record.error is not None and record.error.kind == "Interrupted"
    types = _types(tmp_path / "state", record.run_id)
    assert types.index("run.interrupted") < types.index("step.succeeded") < types.index("run.finished")
    assert types[-1] == "run.finished"
    assert verify(StateDir(tmp_path / "state").audit_file(record.run_id)).ok
    assert "slow" in said[0] and "no new step will start" in said[0]
    assert interrupts.exit_code == 130
    # The report tells the interruption as a deviation, and the run verifies as recorded.
    report = run_report(StateDir(tmp_path / "state").run_dir(record.run_id))
    assert report.verified
    interruption = [d for d in report.deviations if d.kind == "stop-signal"]
    assert len(interruption) == 1 and "SIGINT" in interruption[0].detail and "slow" in interruption[0].reason


def test_a_second_signal_abandons_a_blocked_step_at_once_and_resume_reruns_it(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("WAIT", "5s"), name="abandon")
    interrupts = Interrupts(grace_cap=600, write=lambda text: None)
    _signal_later((0.4, signal.SIGTERM), (0.3, signal.SIGTERM))
    with interrupts.installed():
        record = start_run(plan, _options(tmp_path / "state", interrupts))
    assert record.status is RunStatus.CANCELLED
    # Abandoned, not waited for: had the engine waited, the 5 s wait would have succeeded.
    assert record.step("slow").status is StepStatus.ABANDONED
    assert record.interrupted_by == ["SIGTERM"] and interrupts.exit_code == 143
    audit = StateDir(tmp_path / "state").audit_file(record.run_id)
    types = _types(tmp_path / "state", record.run_id)
    assert types[-3:] == ["step.abandoned", "run.halted", "run.finished"]
    assert verify(audit).ok
    # Resume re-runs the abandoned step (shortened: the runbook is unchanged, the wait is what it is).
    resumed = resume_run(tmp_path / "state", record.run_id, lock=NullLock(),
                         executor=ThreadExecutor(2))
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.step("slow").status is StepStatus.SUCCEEDED
    assert verify(audit).ok


def test_the_grace_ends_with_the_steps_abandoned(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("WAIT", "30s"), name="grace-over")
    interrupts = Interrupts(grace_cap=0.5, write=lambda text: None)
    _signal_later((0.3, signal.SIGHUP))
    with interrupts.installed():
        record = start_run(plan, _options(tmp_path / "state", interrupts))
    assert record.step("slow").status is StepStatus.ABANDONED
    assert record.step("slow").error is not None and "grace" in record.step("slow").error.message
    assert interrupts.exit_code == 129
    assert verify(StateDir(tmp_path / "state").audit_file(record.run_id)).ok


def test_an_ignored_sigint_stays_ignored(tmp_path: Path) -> None:
    # nohup / a background job: whoever started the process asked for SIGINT to be ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    plan = plan_from_steps(tmp_path, STEPS.replace("WAIT", "600ms"), name="ignored")
    _signal_later((0.2, signal.SIGINT))
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", lock=NullLock(), concurrency=2))
    assert record.status is RunStatus.SUCCEEDED and record.interrupted_by == []
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_the_engine_handles_signals_itself_when_nobody_installed_a_handler(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS.replace("WAIT", "1s"), name="own-handler")
    before = signal.getsignal(signal.SIGINT)
    _signal_later((0.3, signal.SIGINT))
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", lock=NullLock(), concurrency=2, grace_cap=30))
    assert record.status is RunStatus.CANCELLED and record.step("slow").status is StepStatus.SUCCEEDED
    assert signal.getsignal(signal.SIGINT) is before  # put back after the run


def test_every_notification_the_engine_sends_is_a_progress_method() -> None:
    # A listener lacking one is logged as failing at the worst moment (a Ctrl-C at 3 a.m.).
    import re

    import dr_engine.engine.run
    source = Path(dr_engine.engine.run.__file__).read_text()
    names = set(re.findall(r'_notify\("([a-z_]+)"', source))
    assert "run_interrupted" in names and "run_finished" in names
    assert {name for name in names if not callable(getattr(Progress, name, None))} == set()
