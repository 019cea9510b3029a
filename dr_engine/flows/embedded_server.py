"""The embedded (temporary) Prefect server runs in its own session, out of the operator's Ctrl-C.

A Ctrl-C typed in a terminal reaches the whole foreground process group. Prefect starts its
temporary server (``SubprocessASGIServer``, used when ``PREFECT_API_URL`` is unset) as a plain
child, so that Ctrl-C killed the server too, while the run still had to record its end:
``dr`` then spent minutes retrying the dead API and ended without a summary. :func:`detach`
makes Prefect start that server with ``start_new_session=True``; the engine, not the
terminal, decides when the run stops. The server still ends with us: Prefect stops it at exit,
and when started from the main thread it also gets SIGTERM from the kernel if ``dr`` dies
(``PR_SET_PDEATHSIG``), so a SIGKILLed ``dr`` leaves no server behind.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from dr_engine.providers import children

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    # Resolved in the parent: the child between fork and exec must not load libraries.
    try:
        function: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return function


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class _DetachedSubprocess:
    """The ``subprocess`` module as Prefect's server module sees it: ``Popen`` in a new session."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def Popen(self, args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        """:func:`dr_engine.providers.children.spawn` (a new session; parent-death SIGTERM from the main thread)."""
        kwargs.pop("start_new_session", None)
        # The parent-death signal fires when the forking *thread* ends: only safe from the main one.
        if _PRCTL is not None and threading.current_thread() is threading.main_thread():
            kwargs.setdefault("preexec_fn", _die_with_parent)
        return children.spawn([args] if isinstance(args, str) else args, **kwargs)


def detach() -> None:
    """Make Prefect start its temporary server in a session of its own (idempotent)."""
    from prefect.server.api import server as server_module

    current = getattr(server_module, "subprocess", None)
    if current is None or isinstance(current, _DetachedSubprocess):
        return
    # Only that module's view of `subprocess` changes; every other Popen in the process is untouched.
    setattr(server_module, "subprocess", _DetachedSubprocess(current))  # noqa: B010 - not re-exported there


def stop_now() -> None:
    """Ask every embedded server this process started to stop, without waiting (a fast exit)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        process = server.server_process
        if process is not None and process.poll() is None:
            process.terminate()


__all__ = ["detach", "stop_now"]
