"""Where step functions run: the engine hands each step to an :class:`Executor`.

The engine's step function never raises for step failures (it records them), so an executor
only has to run callables and let the engine wait for them. The Prefect flow
(``dr_engine/flows/failover.py``) provides an executor that submits each step as a Prefect task;
unit tests use :class:`InlineExecutor` (deterministic, works with a fake clock) or
:class:`ThreadExecutor`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from dr_engine.planning.plan import PlannedStep


class StepHandle(Protocol):
    """A submitted step; :meth:`result` blocks until it is done (re-raising a crash)."""

    def result(self) -> object:
        """Wait for the step function and return its result."""
        ...


class Executor(Protocol):
    """Runs step functions, at most ``concurrency`` at a time."""

    def submit(self, step: PlannedStep, fn: Callable[[], None]) -> StepHandle:
        """Start ``fn`` (which runs ``step``) and return a handle to wait on."""
        ...


class _Done:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def result(self) -> object:
        if self.error is not None:
            raise self.error
        return None


class InlineExecutor:
    """Runs each step at submission, in the calling thread, one after the other."""

    def submit(self, step: PlannedStep, fn: Callable[[], None]) -> StepHandle:
        """Run ``fn`` now."""
        del step
        try:
            fn()
        except Exception as exc:  # handed back through result(), like a future
            return _Done(exc)
        return _Done(None)


class ThreadExecutor:
    """A thread pool of ``max_workers`` threads (close it with :meth:`shutdown`)."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="dr-step")

    def submit(self, step: PlannedStep, fn: Callable[[], None]) -> StepHandle:
        """Queue ``fn`` on the pool."""
        future: Future[None] = self._pool.submit(fn)
        return future

    def shutdown(self) -> None:
        """Wait for running steps and stop the threads."""
        self._pool.shutdown(wait=True)


__all__ = ["Executor", "InlineExecutor", "StepHandle", "ThreadExecutor"]
