"""Ctrl-C in a terminal: how fast `dr failover` answers the first and exits after the second.

A real pseudo-terminal whose foreground process group is dr's, as a shell's: the bench types
Ctrl-C (``\\x03``) while a step is blocked (it waits for a file that only appears after dr
exits), and measures the time from the first Ctrl-C to the printed notice and from the second
to the process's exit (run sealed, summary printed, embedded Prefect server stopped). The
operator is promised an answer at once and an exit within 2 s. ``--quick``: one run; else 3.
Writes bench/out/interrupt.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "interrupt.json"
sys.path.insert(0, str(ROOT))

from dr_engine.flows.settings import EMBEDDED_SETTINGS  # noqa: E402

RUNBOOK = """runbook: blocked
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: blocked
    action: shell.run
    with: {{command: [sh, -c, "while [ ! -f {release} ]; do sleep 0.05; done"]}}
    timeout: 5m
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [blocked]
"""
GUARD = 300.0


def _child_setup() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(master: int, needle: bytes, seen: bytearray, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + GUARD
    while needle not in seen:
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"dr did not print {needle!r}: {seen.decode(errors='replace')[-2000:]}")
        try:
            seen.extend(os.read(master, 4096))
        except OSError:
            time.sleep(0.01)


def _started(run_root: Path) -> bool:
    logs = list(run_root.glob("runs/*/audit.jsonl"))
    return bool(logs) and b'"step.started"' in logs[0].read_bytes()


def one(work: Path, home: Path) -> dict[str, float]:
    """One failover interrupted twice; seconds to the notice and to the exit."""
    release = work / "release"
    (work / "runbooks").mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "regions", work / "regions")
    (work / "runbooks" / "blocked.yaml").write_text(RUNBOOK.format(release=release))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({**EMBEDDED_SETTINGS, "PREFECT_HOME": str(home), "NO_COLOR": "1", "TERM": "xterm"})
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dr"), "failover", "blocked", "--yes"], cwd=work,
                            env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=_child_setup)
    os.close(slave)
    os.set_blocking(master, False)
    seen = bytearray()
    try:
        end = time.monotonic() + GUARD
        while not _started(work / ".dr"):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the blocked step never started: {seen.decode(errors='replace')[-2000:]}")
            try:
                seen.extend(os.read(master, 4096))
            except OSError:
                time.sleep(0.02)
        first = time.monotonic()
        os.write(master, b"\x03")
        _read_until(master, b"no new step will start", seen, proc)
        notice = time.monotonic() - first
        second = time.monotonic()
        os.write(master, b"\x03")
        proc.wait(GUARD)
        exit_s = time.monotonic() - second
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        release.touch()
        os.close(master)
    if proc.returncode != 130:
        raise RuntimeError(f"dr exited {proc.returncode}, not 130")
    return {"notice_s": round(notice, 3), "exit_after_second_s": round(exit_s, 3)}


def main(quick: bool = False) -> dict[str, Any]:
    """Measure, write bench/out/interrupt.json and return the figures."""
    runs = 1 if quick else 3
    root = Path(tempfile.mkdtemp(prefix="dr-bench-interrupt-"))
    try:
        home = root / "prefect-home"
        samples = [one(root / f"run{i}", home) for i in range(runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "runs": runs,
        "notice_s": {"median": statistics.median(s["notice_s"] for s in samples),
                     "max": max(s["notice_s"] for s in samples)},
        "exit_after_second_ctrl_c_s": {"median": statistics.median(s["exit_after_second_s"] for s in samples),
                                       "max": max(s["exit_after_second_s"] for s in samples)},
        "promise_s": 2.0,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
