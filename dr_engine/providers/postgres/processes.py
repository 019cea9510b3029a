"""The server processes of a PostgreSQL data directory on this host, and the lock files they leave.

Two facts of PostgreSQL on Linux shape this module:

- Every child of the postmaster (checkpointer, walsender, backends...) makes itself a process
  group leader, so signalling the postmaster's group reaches the postmaster alone. The processes
  of a cluster are found by their working directory instead: the postmaster ``chdir``s to the
  data directory and its children inherit it, which also finds children orphaned by a killed
  postmaster.
- PostgreSQL decides whether the PID in a lock file (``postmaster.pid``, the socket's
  ``.s.PGSQL.PORT.lock``) still runs with ``kill(pid, 0)``, which succeeds for a zombie. Where
  the init process reaps orphans late (containers, micro-VMs), a SIGKILLed postmaster stays a
  zombie for a while and every later start of that node, pg_rewind's single-user run included,
  fails with "lock file already exists". :func:`clear_stale_locks` removes such locks when their
  PID is gone or a zombie, and never when it is a live process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from dr_engine.providers.postgres.client import lock_file_pid, process_state


def _dead(pid: int) -> bool:
    return process_state(pid) in ("gone", "zombie")


def server_pids(data_dir: Path) -> list[int]:
    """PIDs of the live (not zombie) processes whose working directory is ``data_dir``."""
    try:
        wanted = data_dir.resolve()
    except OSError:
        return []
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").readlink()
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
        if cwd == wanted and not _dead(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def signal_server(postmaster: int | None, data_dir: Path | None, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to the postmaster first (a frozen postmaster forks nothing new), then to every
    other process of ``data_dir``; returns the PIDs signalled."""
    pids = [postmaster] if postmaster is not None else []
    done: list[int] = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            done.append(pid)
    for pid in server_pids(data_dir) if data_dir is not None else []:
        if pid not in done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                done.append(pid)
    if sig is signal.SIGSTOP:
        # Delivery is asynchronous: return once the freeze is real, so callers (and a fence
        # looking for a frozen postmaster) see it. Bounded: a process in uninterruptible I/O
        # stops when that I/O ends.
        end = time.monotonic() + 2.0
        while time.monotonic() < end and any(process_state(pid) == "running" for pid in done):
            time.sleep(0.005)
    return done


def kill_server(postmaster: int | None, data_dir: Path | None) -> list[int]:
    """SIGKILL the postmaster and every process of its data directory (orphans included)."""
    if postmaster is not None:
        # Freeze it first, so it cannot fork a replacement child between the scan and the kill.
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGSTOP)
    return signal_server(postmaster, data_dir, signal.SIGKILL)


def clear_stale_locks(data_dir: Path) -> list[Path]:
    """Remove ``postmaster.pid`` and its socket lock when their server is gone or a zombie.

    Returns the files removed. A lock whose PID is a live process is left alone, whatever it is:
    deciding that a live PID was reused by something else is PostgreSQL's job, not ours.
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text(errors="replace").splitlines()
        pid = int(lines[0].strip())
    except (OSError, ValueError, IndexError):
        return []
    if not _dead(pid):
        return []
    removed: list[Path] = []
    if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
        # Line 4 is the port, line 5 the first Unix socket directory (PostgreSQL's LOCK_FILE_LINE_*).
        socket_dir = Path(lines[4].strip())
        lock = socket_dir / f".s.PGSQL.{lines[3].strip()}.lock"
        if lock_file_pid(lock) == pid:
            for path in (lock, socket_dir / f".s.PGSQL.{lines[3].strip()}"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
        removed.append(pid_file)
    return removed


__all__ = ["clear_stale_locks", "kill_server", "server_pids", "signal_server"]
