"""Stopping and freezing the world's processes by recorded PID (never by name).

``dr world down`` runs in a different process from ``dr world up``: all it has are the PIDs
in the state file. Before signalling, the command line of the PID is compared with what was
recorded, so a PID reused by an unrelated process after a reboot is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (empty when it does not exist or cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\x00", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``."""
    return alive(pid) and marker in cmdline(pid)


def send(pid: int, sig: signal.Signals, *, group: bool = False) -> bool:
    """Send ``sig`` to ``pid`` (or its process group); False when it is gone."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_pid(pid: int, marker: str, timeout: float = 5.0, *, group: bool = False) -> bool:
    """SIGCONT + SIGTERM, then SIGKILL after ``timeout``; only when ``pid`` matches ``marker``.

    Returns True when a matching process was found (and is now stopped).
    """
    if not is_ours(pid, marker):
        return False
    for sig in (signal.SIGCONT, signal.SIGTERM):
        send(pid, sig, group=group)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        send(pid, signal.SIGKILL, group=group)
    return True
