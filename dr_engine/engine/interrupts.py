"""Termination signals during a run: stop starting steps, give running steps a grace, then abandon.

SIGINT (Ctrl-C), SIGTERM and SIGHUP all mean "stop this run" and are handled the same way:

1. **First signal.** At once (from the signal handler, with a raw write to stderr, so it shows
   even while the main thread is busy) the operator reads what happens: no new step starts; the
   running steps, named, get a grace period to finish and be recorded: the rest of their timeout,
   capped (:data:`DEFAULT_GRACE_CAP`, ``--grace``, ``DR_INTERRUPT_GRACE``). A step waiting for a
   person (``control.approve``) has nothing to finish and is given up at once.
2. **Second signal, or the grace is over.** The running steps are *abandoned*: each gets a
   ``step.abandoned`` event, the run is sealed (``cancelled``) and the engine returns without
   waiting for the threads still blocked in I/O (they are daemon threads; whatever they return
   later is refused by the sealed audit log). ``dr resume`` re-runs abandoned steps.
3. **After the seal.** Only the summary is left to print; another signal exits at once when the
   caller asked for it (the CLI does), else it raises ``KeyboardInterrupt``.

Before the engine owns the run (loading, taking the lock, starting Prefect) a signal raises
``KeyboardInterrupt`` as usual: nothing was started.

The handler never takes a lock and never writes to the audit log: the main thread may be in the
middle of an append when the signal lands. The engine's wait loop, which polls the flags set
here, records ``run.interrupted`` and the abandonments.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Literal

#: The signals that stop a run.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Longest grace given to running steps after the first signal, in seconds (default).
DEFAULT_GRACE_CAP = 120.0

#: Environment variable overriding :data:`DEFAULT_GRACE_CAP` (seconds).
GRACE_ENV = "DR_INTERRUPT_GRACE"

Phase = Literal["idle", "running", "sealed"]


class StepInterrupted(BaseException):
    """Raised in the main thread when it runs a step itself and that step is given up.

    A ``BaseException`` so that an action's ``except Exception`` cannot swallow it.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name


def grace_cap_from_env(default: float = DEFAULT_GRACE_CAP) -> float:
    """The grace cap from ``DR_INTERRUPT_GRACE`` (seconds), else ``default``."""
    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return max(0.0, value)


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupts:
    """What the operator's signals asked for: set by the handler, read by the engine."""

    def __init__(self, *, grace_cap: float | None = None, exit_after_seal: bool = False,
                 write: Callable[[str], None] | None = None) -> None:
        self.grace_cap = grace_cap_from_env() if grace_cap is None else max(0.0, grace_cap)
        #: After the run is sealed, a signal ends the process at once (``os._exit``): for the CLI.
        self.exit_after_seal = exit_after_seal
        self.signals: list[int] = []
        self.stop = threading.Event()
        self.abandon = threading.Event()
        self.phase: Phase = "idle"
        #: Set by the engine: (running step ids, grace seconds they would get now). Called from
        #: the handler, so it must not take locks.
        self.describe: Callable[[], tuple[list[str], float]] = lambda: ([], self.grace_cap)
        #: The step the main thread is running itself (approvals under Prefect, inline executors).
        self.inline_step: str | None = None
        self.inline_waits_for_person = False
        self._write = write or _write_stderr
        self._saved: dict[int, Any] = {}

    # ------------------------------------------------------------------ reading

    @property
    def first_signal(self) -> str | None:
        """Name of the signal that stopped the run (``SIGINT``...), None when none came."""
        return signal_name(self.signals[0]) if self.signals else None

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP)."""
        return 128 + self.signals[0] if self.signals else None

    # ------------------------------------------------------------------ installing

    def install(self) -> bool:
        """Handle the stop signals in this process (main thread only; False elsewhere).

        A signal ignored when the process started (``nohup``, a background job of a
        non-interactive shell) stays ignored: whoever started us asked for it.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in STOP_SIGNALS:
            current = signal.getsignal(sig)
            if current == signal.SIG_IGN and sig is not signal.SIGTERM:
                continue
            if current != self._handle:
                self._saved.setdefault(sig, current)
            signal.signal(sig, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install`."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._saved.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle stop signals inside the block."""
        self.install()
        try:
            yield self
        finally:
            self.restore()

    @contextlib.contextmanager
    def inline(self, step_id: str, *, waits_for_person: bool) -> Iterator[None]:
        """Mark the main thread as running ``step_id`` itself (a signal may then interrupt it)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.inline_step, self.inline_waits_for_person = step_id, waits_for_person
        try:
            if self.abandon.is_set() or (waits_for_person and self.stop.is_set()):
                raise StepInterrupted(self.first_signal or "an interrupt")
            yield
        finally:
            self.inline_step, self.inline_waits_for_person = None, False

    # ------------------------------------------------------------------ the handler

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.signals.append(signum)
        name = signal_name(signum)
        if self.phase == "idle":
            raise KeyboardInterrupt
        if self.phase == "sealed":
            if self.exit_after_seal:
                self._say(f"\n{name}: the run is already recorded; exiting now\n")
                os._exit(self.exit_code or 130)
            raise KeyboardInterrupt
        again = "Ctrl-C" if signum == signal.SIGINT else name
        if len(self.signals) == 1:
            self.stop.set()
            try:
                running, grace = self.describe()
            except Exception:  # a handler must not fail: describe what is known
                running, grace = [], self.grace_cap
            if running:
                self._say(f"\n{name} received: no new step will start. Still running: {', '.join(running)}; "
                          f"they get up to {grace:.0f}s to finish and be recorded (the rest of their timeout, "
                          f"capped at {self.grace_cap:.0f}s). {again} again abandons them "
                          "(`dr resume` re-runs them).\n")
            else:
                self._say(f"\n{name} received: no new step will start; recording the run's end.\n")
            if self.inline_step is not None and self.inline_waits_for_person:
                raise StepInterrupted(name)
            return
        self.abandon.set()
        self._say(f"\n{name} again: abandoning the running steps; recording the run's end.\n")
        if self.inline_step is not None:
            raise StepInterrupted(name)

    def _say(self, text: str) -> None:
        with contextlib.suppress(Exception):  # a closed terminal (SIGHUP) must not break the stop
            self._write(text)


def _write_stderr(text: str) -> None:
    # A raw write: the handler may run while the main thread is inside a buffered print.
    os.write(2, text.encode("utf-8", "replace"))


__all__ = [
    "DEFAULT_GRACE_CAP",
    "GRACE_ENV",
    "STOP_SIGNALS",
    "Interrupts",
    "StepInterrupted",
    "grace_cap_from_env",
    "signal_name",
]
