"""Commands run by steps: each in a session of its own, tracked while it runs.

Why a session of its own: a Ctrl-C typed in a terminal reaches the terminal's whole foreground
process group. A command a step runs (``pg_ctl``, a shell step, terraform) must not die with
the operator's first Ctrl-C, which only means "start no new step; let the running ones finish"
(:mod:`dr_engine.engine.interrupts`). The engine decides when they stop: when it abandons the running
steps it calls :func:`interrupt_all`, which sends SIGINT to every tracked command's process
group (terraform then stops cleanly and releases its state lock; a shell dies), without
waiting: the run's end is already recorded and the operator asked to leave.

Why tracked: the process group of a command is its pid (``start_new_session``), so stopping it
reaches its children too (``sh -c 'a | b'``), also when a timeout kills it.

Why :func:`spawn` and not a bare ``Popen(start_new_session=True)``: between the fork and the
child's ``setsid`` the child is still in the terminal's process group, and ``subprocess``
restores default signal handling *before* calling ``setsid``. A Ctrl-C typed in that window kills
the new command at once (measured: 49 of 300 spawns under a stream of SIGINTs), so the step
fails with "exited -2" although the operator only asked to start no new step. :func:`spawn`
blocks the terminal's signals in the spawning thread (the child inherits the mask), lets the
child leave the session, discards any signal that arrived meanwhile, and only then unblocks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# What a terminal (Ctrl-C, hang-up) or a supervisor sends; a new command must not die of one
# aimed at dr before it is in a session of its own.
_SHIELDED = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

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


def _leave_shield(restore: tuple[signal.Signals, ...], then: Callable[[], None] | None) -> Callable[[], None]:
    def setup() -> None:
        # In the child, after setsid: no terminal signal reaches this session any more. Setting
        # a blocked signal to SIG_IGN discards it if it is pending (POSIX), then the command
        # gets the default handling it would have had, with nothing blocked.
        for sig in restore:
            signal.signal(sig, signal.SIG_IGN)
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SHIELDED)
        if then is not None:
            then()
    return setup


def spawn(argv: Sequence[str], *, preexec_fn: Callable[[], None] | None = None,
          **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, start_new_session=True, ...)`` that a Ctrl-C aimed at dr cannot kill.

    Signals dr ignores stay ignored in the command (``nohup`` semantics); the others get their
    default handling. ``preexec_fn`` runs after that, in the child.
    """
    restore = tuple(sig for sig in sorted(_SHIELDED) if signal.getsignal(sig) is not signal.SIG_IGN)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED)
    try:
        return subprocess.Popen(list(argv), start_new_session=True,
                                preexec_fn=_leave_shield(restore, preexec_fn), **kwargs)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    with spawn(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
               **kwargs) as process, tracked(process):
        try:
            out, err = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout or 0.0, output=out, stderr=err) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


__all__ = ["interrupt_all", "run", "signal_group", "spawn", "tracked"]
