"""Ctrl-C, SIGTERM and SIGHUP sent to a real `dr failover` process, with and without a terminal.

The terminal is a real pseudo-terminal whose foreground process group is dr's: typing Ctrl-C
(``\\x03`` on the master side) makes the kernel send SIGINT to that whole group, as a shell's
terminal does. Every run must end with a log that verifies (running steps recorded before the
seal), print its summary, exit 130/143/129, and resume to success.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect_kit import DR, REPO, dr, quiet_env

from dr_engine.evidence.audit import read_events, verify

pytestmark = pytest.mark.integration

WAIT_RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: slow
    action: control.wait
    with: {{duration: 8s, reason: a step that finishes within the grace}}
    timeout: 2m
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [slow]
"""

BLOCKED_RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: blocked
    action: shell.run
    with:
      command:
        - sh
        - -c
        - "echo ran >> {d}/blocked.count; while [ ! -f {d}/release ]; do sleep 0.05; done"
    timeout: 5m
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [blocked]
"""

APPROVAL_RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: go-ahead
    action: control.approve
    with: {{prompt: "cut over?", timeout: 5m}}
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [go-ahead]
"""


def _default_signals() -> None:
    # As a shell starts a foreground command: whoever runs the tests may have started them with
    # SIGINT ignored (a background job of a non-interactive shell), and `dr` keeps an ignored
    # SIGINT/SIGHUP ignored, as it should.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _take_terminal() -> None:
    # In the child, after setsid: the pty on fd 0 becomes the controlling terminal, and dr's
    # process group its foreground group (what a shell does for the command it runs).
    _default_signals()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))


class Terminal:
    """`dr` running in a pseudo-terminal; what it prints is collected from the master side."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen([DR, *args], cwd=cwd, env={**env, "TERM": "xterm", "COLUMNS": "80"},
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=_take_terminal)
        os.close(slave)
        self.master = master
        self._buffer = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave end is closed
                return
            if not chunk:
                return
            self._buffer.extend(chunk)

    @property
    def text(self) -> str:
        return self._buffer.decode("utf-8", "replace").replace("\r", "")

    def type_ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait_for_text(self, needle: str, limit: float = 60) -> float:
        """Seconds until ``needle`` was printed (AssertionError after ``limit``)."""
        started = time.monotonic()
        while needle not in self.text:
            if time.monotonic() - started > limit:
                raise AssertionError(f"{needle!r} not printed within {limit}s:\n{self.text}")
            time.sleep(0.02)
        return time.monotonic() - started

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:  # only what this test started: its own session
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        os.close(self.master)


def _project(tmp_path: Path, name: str, template: str) -> tuple[Path, Path]:
    work, marks = tmp_path / "work", tmp_path / "marks"
    marks.mkdir()
    (work / "runbooks").mkdir(parents=True)
    shutil.copytree(REPO / "regions", work / "regions")
    (work / "runbooks" / f"{name}.yaml").write_text(template.format(name=name, d=marks))
    return work, marks


def _wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen[Any] | None = None,
                limit: float = 180) -> None:
    """Poll ``condition``; fail if ``proc`` exits first, or after ``limit`` seconds (a hang guard)."""
    end = time.monotonic() + limit
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"dr exited with {proc.returncode} before {what}")
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {limit:.0f}s")
        time.sleep(0.05)


def _run_dir(work: Path) -> Path:
    runs = work / ".dr" / "runs"

    def found() -> list[Path]:
        return [p for p in runs.iterdir() if (p / "audit.jsonl").exists()] if runs.is_dir() else []

    _wait_until(lambda: bool(found()), "a run directory appeared", limit=120)
    return found()[0]


def _count(run_dir: Path, type_: str, step: str | None) -> int:
    return sum(1 for e in read_events(run_dir / "audit.jsonl")
               if e["type"] == type_ and (step is None or e["data"].get("step") == step))


def _wait_for_event(run_dir: Path, type_: str, step: str | None, proc: subprocess.Popen[Any], *,
                    times: int = 1) -> None:
    _wait_until(lambda: _count(run_dir, type_, step) >= times, f"{type_} of {step or 'the run'} recorded", proc)


def _types(run_dir: Path) -> list[str]:
    return [e["type"] for e in read_events(run_dir / "audit.jsonl")]


def _assert_sealed_and_verified(run_dir: Path, work: Path, home: Path) -> None:
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed, check.reason
    assert _types(run_dir)[-1] == "run.finished"
    cli = dr(["audit", "verify", run_dir.name], home, work)
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_ctrl_c_in_a_terminal_lets_the_running_step_finish_and_resume_completes(
        tmp_path: Path, prefect_home_copy: Path) -> None:
    work, _ = _project(tmp_path, "grace", WAIT_RUNBOOK)
    term = Terminal(["failover", "grace", "--yes"], work, quiet_env(prefect_home_copy))
    try:
        run_dir = _run_dir(work)
        _wait_for_event(run_dir, "step.started", "slow", term.proc)
        term.type_ctrl_c()
        # Said at once, from the signal handler: what happens, and to which steps.
        term.wait_for_text("SIGINT received: no new step will start. Still running: slow", limit=60)
        code = term.wait(120)
    finally:
        term.close()
    assert code == 130, term.text
    assert "internal error" not in term.text and "ConnectError" not in term.text, term.text
    assert "Traceback" not in term.text and "listener" not in term.text, term.text
    assert f"Run {run_dir.name}: CANCELLED" in term.text  # the summary: the embedded server survived Ctrl-C
    types = _types(run_dir)
    # The running step ended recorded, after the interrupt and before the seal; no new step started.
    assert types.index("run.interrupted") < types.index("step.succeeded") < types.index("run.finished")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "cancelled" and record["interrupted_by"] == ["SIGINT"]
    assert [s["status"] for s in record["steps"]] == ["succeeded", "pending"]
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)

    resumed = dr(["resume", run_dir.name], prefect_home_copy, work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    started = [e["data"]["step"] for e in read_events(run_dir / "audit.jsonl") if e["type"] == "step.started"]
    assert started == ["slow", "healthy"]  # nothing lost, nothing run twice
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)


def test_a_second_ctrl_c_abandons_a_blocked_step_at_once_and_resume_reruns_it(
        tmp_path: Path, prefect_home_copy: Path) -> None:
    work, marks = _project(tmp_path, "blocked", BLOCKED_RUNBOOK)
    term = Terminal(["failover", "blocked", "--yes"], work, quiet_env(prefect_home_copy))
    try:
        run_dir = _run_dir(work)
        _wait_for_event(run_dir, "step.started", "blocked", term.proc)
        # Ctrl-C while the step's command runs (not while it is being started).
        _wait_until(lambda: (marks / "blocked.count").exists(), "the blocked step's command ran", term.proc)
        term.type_ctrl_c()
        term.wait_for_text("Ctrl-C again abandons them", limit=60)
        term.type_ctrl_c()
        # The step is blocked until `release` exists, which only happens after dr exits: dr
        # returning at all proves it did not wait for the step (how long it takes is measured by
        # `make bench`, not asserted here). The wait is a hang guard.
        code = term.wait(120)
    finally:
        term.close()
        (marks / "release").touch()
    assert code == 130, term.text
    assert f"Run {run_dir.name}: CANCELLED" in term.text, term.text
    assert "Traceback" not in term.text and "listener" not in term.text, term.text
    types = _types(run_dir)
    assert types[-3:] == ["step.abandoned", "run.halted", "run.finished"]
    record = json.loads((run_dir / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["abandoned", "pending"]
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)

    resumed = dr(["resume", run_dir.name], prefect_home_copy, work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (marks / "blocked.count").read_text().splitlines() == ["ran", "ran"]  # the abandoned step re-ran
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signals_without_a_terminal(tmp_path: Path, prefect_home_copy: Path, sig: signal.Signals, code: int) -> None:
    work, marks = _project(tmp_path, "headless", BLOCKED_RUNBOOK)
    proc = subprocess.Popen([DR, "failover", "headless", "--yes"], cwd=work, env=quiet_env(prefect_home_copy),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_default_signals)
    try:
        run_dir = _run_dir(work)
        _wait_for_event(run_dir, "step.started", "blocked", proc)
        proc.send_signal(sig)
        # Two signals sent before the first is handled arrive as one: wait until it is recorded.
        _wait_for_event(run_dir, "run.interrupted", None, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        (marks / "release").touch()
    text = (out + err).decode()
    assert proc.returncode == code, text
    assert f"{sig.name} received: no new step will start" in text
    assert f"Run {run_dir.name}: CANCELLED" in text
    record = json.loads((run_dir / "run.json").read_text())
    assert record["interrupted_by"] == [sig.name]
    assert record["steps"][0]["status"] == "abandoned"
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)


def test_ctrl_c_during_an_approval_wait_gives_it_up_at_once(tmp_path: Path, prefect_home_copy: Path) -> None:
    work, _ = _project(tmp_path, "waiting", APPROVAL_RUNBOOK)
    term = Terminal(["failover", "waiting", "--yes"], work, quiet_env(prefect_home_copy))
    try:
        run_dir = _run_dir(work)
        _wait_for_event(run_dir, "approval.requested", "go-ahead", term.proc)
        term.type_ctrl_c()
        code = term.wait(60)
    finally:
        term.close()
    assert code == 130, term.text
    record = json.loads((run_dir / "run.json").read_text())
    step = record["steps"][0]
    assert step["status"] == "abandoned" and "waiting for a person" in step["error"]["message"]
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)

    # Resume asks again; an answer completes the run.
    env = quiet_env(prefect_home_copy)
    resumed = subprocess.Popen([DR, "resume", run_dir.name], cwd=work, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_event(run_dir, "approval.requested", "go-ahead", resumed, times=2)  # asked again
        approved = dr(["approve", run_dir.name, "--as", "bob"], prefect_home_copy, work)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        out, err = resumed.communicate(timeout=180)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
            resumed.communicate(timeout=30)
    assert resumed.returncode == 0, out + err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"
    _assert_sealed_and_verified(run_dir, work, prefect_home_copy)
