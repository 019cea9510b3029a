"""Stopping world processes by PID, also from another process than the one that started them.

``dr world down`` runs in a different process than ``dr world up``: it cannot ``wait()`` for
the servers, only signal them. A PID may have been reused since it was recorded, so the
command line is checked against what we started before any signal is sent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True when a process (not a zombie) with this PID exists."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pid_runs(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker`` (guards against reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return pid_alive(pid) and marker in cmdline


def stop_pid(pid: int, marker: str, timeout: float = 5.0) -> bool:
    """SIGCONT + SIGTERM ``pid`` (if it still runs ``marker``), SIGKILL after ``timeout``.

    Returns True when the process is gone. Used for processes this process did not start;
    for its own children use ``Popen`` (which also reaps them).
    """
    if not pid_runs(pid, marker):
        return True
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + timeout
    while time.monotonic() < end and pid_alive(pid):
        time.sleep(0.02)
    return not pid_alive(pid)
