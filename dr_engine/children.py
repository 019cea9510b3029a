"""Commands run by steps: each in a session of its own, tracked while it runs.

Why a session of its own: a Ctrl-C typed in a terminal reaches the terminal's whole foreground
process group. A command a step runs (``pg_ctl``, a shell step, terraform) must not die with
the operator's first Ctrl-C, which only means "start no new step; let the running ones finish"
(:mod:`dr_engine.interrupts`). The engine decides when they stop: when it abandons the running
steps it calls :func:`interrupt_all`, which sends SIGINT to every tracked command's process
group (terraform then stops cleanly and releases its state lock; a shell dies), without
waiting: the run's end is already recorded and the operator asked to leave.

Why tracked: the process group of a command is its pid (``start_new_session``), so stopping it
reaches its children too (``sh -c 'a | b'``), also when a timeout kills it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import Any

_LIVE: dict[int, subprocess.Popen[Any]] = {}
_LOCK = threading.Lock()


@contextlib.contextmanager
def tracked(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """Track ``process`` (started with ``start_new_session=True``) while the block runs."""
    with _LOCK:
        _LIVE[process.pid] = process
    try:
        yield process
    finally:
        with _LOCK:
            _LIVE.pop(process.pid, None)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid`` (gone or not ours: ignored)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def interrupt_all(sig: signal.Signals = signal.SIGINT) -> list[int]:
    """Send ``sig`` to every tracked command's process group; return their pids (no waiting)."""
    with _LOCK:
        live = [p for p in _LIVE.values() if p.poll() is None]
    for process in live:
        signal_group(process.pid, sig)
    return [p.pid for p in live]


def run(argv: Sequence[str], *, timeout: float | None, input: str | None = None,
        **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)`` in a session of its own, tracked.

    Standard input is ``/dev/null`` unless ``input`` is given (a command in its own session has
    no terminal to read). On timeout the whole process group is killed and
    :class:`subprocess.TimeoutExpired` raised, as ``subprocess.run`` does.
    """
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    with subprocess.Popen(list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as process, tracked(process):
        try:
            out, err = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout or 0.0, output=out, stderr=err) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


__all__ = ["interrupt_all", "run", "signal_group", "tracked"]
