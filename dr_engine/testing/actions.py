"""Fake actions for unit tests of the engine, registered under the ``fake.`` provider on import.

Importing this module registers them (so they exist only in processes that ask for them, e.g.
``python -c "import dr_engine.testing.actions; from dr_engine.cli import main; main()"``).
They take time only on ``ctx.clock`` (a FakeClock in unit tests) and keep per-process call
counts in :data:`CALLS` so tests can assert a step did or did not run again.

==========================  ================  ==============================================
action                      capability        behaviour
==========================  ================  ==============================================
fake.noop                   exec.run          sleeps ``seconds``; returns ``outputs``
fake.flaky                  exec.run          TransientError on the first ``failures`` tries
fake.fail                   exec.run          raises ``kind`` (first ``times`` calls, or always)
fake.fence_data             data.fence        fences ``dataset``
fake.promote_data           data.promote      reports ``lag_bytes``/``lag_seconds`` as RPO
fake.reconcile_data         data.reconcile    reports ``rows_lost``
fake.shift_traffic          traffic.shift     sleeps ``seconds``
fake.check_health           health.verify     sleeps ``seconds``; fails if ``healthy: false``
fake.wait_approval          control.approve   sleeps ``seconds`` (a person thinking)
fake.hook                   exec.run          writes ``reached`` file, waits for ``release``
==========================  ================  ==============================================
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from dr_engine import errors
from dr_engine.actions.base import Action, ActionParams, RpoObservation, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability

#: (run_id, step_id) -> number of times ``run`` was called in this process.
CALLS: Counter[tuple[str, str]] = Counter()
_CALLS_LOCK = threading.Lock()


def _count(ctx: StepContext) -> int:
    with _CALLS_LOCK:
        CALLS[(ctx.run_id, ctx.step_id)] += 1
        return CALLS[(ctx.run_id, ctx.step_id)]


def _sleep(ctx: StepContext, seconds: float) -> None:
    # Sleep in deadline-sized slices so a long fake step times out like real I/O would.
    ctx.deadline.check("starting")
    if seconds <= 0:
        return
    if seconds > ctx.deadline.remaining():
        ctx.clock.sleep(ctx.deadline.remaining())
        ctx.deadline.check(f"sleeping {seconds:g}s")
    ctx.clock.sleep(seconds)


class NoopParams(ActionParams):
    """Params of fake.noop and the other timed fakes."""

    seconds: float = 0.0
    outputs: dict[str, str] = Field(default_factory=dict)
    changed: bool = True
    value: Any = None


class _Base(Action[Any]):
    Params = NoopParams
    example = "id: fake-step\naction: fake.noop\n"

    def run(self, params: Any, ctx: StepContext) -> StepResult:
        _count(ctx)
        _sleep(ctx, float(getattr(params, "seconds", 0.0)))
        return StepResult(summary=f"{self.name} ok", changed=bool(getattr(params, "changed", True)),
                          outputs=dict(getattr(params, "outputs", {}) or {}))


@register
class Noop(_Base):
    """Sleep on the clock and return the given outputs."""

    name = "fake.noop"
    capability = Capability.EXEC_RUN
    example = "id: fake-step\naction: fake.noop\nwith: {seconds: 1}\n"


class FlakyParams(ActionParams):
    """Params of fake.flaky."""

    failures: int = 1
    seconds: float = 0.0


@register
class Flaky(Action[FlakyParams]):
    """Fail transiently on the first ``failures`` attempts, then succeed."""

    name = "fake.flaky"
    capability = Capability.EXEC_RUN
    Params = FlakyParams
    example = "id: flaky\naction: fake.flaky\nwith: {failures: 2}\nretry: {attempts: 3, backoff: 1s}\n"

    def run(self, params: FlakyParams, ctx: StepContext) -> StepResult:
        """Raise TransientError while ``ctx.attempt <= failures``."""
        _count(ctx)
        _sleep(ctx, params.seconds)
        if ctx.attempt <= params.failures:
            raise errors.TransientError(f"simulated throttling on attempt {ctx.attempt}")
        return StepResult(summary=f"ok on attempt {ctx.attempt}", facts={"attempt": ctx.attempt})


class FailParams(ActionParams):
    """Params of fake.fail."""

    kind: str = "ProviderError"
    message: str = "simulated failure"
    seconds: float = 0.0
    times: int | None = Field(default=None, description="Fail only the first N calls in this process")
    after_file: str | None = Field(default=None, description="Fail only once this file exists (real time)")


@register
class Fail(Action[FailParams]):
    """Raise the StepFailed subclass named ``kind`` (or RuntimeError for ``kind: crash``)."""

    name = "fake.fail"
    capability = Capability.EXEC_RUN
    Params = FailParams
    example = "id: boom\naction: fake.fail\nwith: {kind: ProviderError}\n"

    def run(self, params: FailParams, ctx: StepContext) -> StepResult:
        """Fail (always, or for the first ``times`` calls of this step in this process)."""
        calls = _count(ctx)
        _sleep(ctx, params.seconds)
        while params.after_file is not None and not Path(params.after_file).exists():
            ctx.deadline.check(f"waiting for {params.after_file}")
            time.sleep(0.01)
        if params.times is not None and calls > params.times:
            return StepResult(summary=f"ok after {params.times} failure(s)",
                              facts={"started_before": ctx.started_before})
        if params.kind == "crash":
            raise RuntimeError(params.message)
        cls = getattr(errors, params.kind)
        raise cls(params.message, hint="this is a simulated failure")


class DatasetParams(ActionParams):
    """Params of the fake data actions."""

    dataset: str = "main"
    seconds: float = 0.0
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    rows_lost: int | None = None


class _Data(Action[DatasetParams]):
    Params = DatasetParams
    example = "id: data\naction: fake.fence_data\nwith: {dataset: main}\n"

    def dataset(self, params: DatasetParams) -> str | None:
        return params.dataset

    def run(self, params: DatasetParams, ctx: StepContext) -> StepResult:
        _count(ctx)
        _sleep(ctx, params.seconds)
        rpo = None
        if params.lag_bytes is not None or params.lag_seconds is not None or params.rows_lost is not None:
            rpo = RpoObservation(params.lag_bytes, params.lag_seconds, params.rows_lost)
        return StepResult(summary=f"{self.name} {params.dataset}", rpo=rpo)


@register
class FenceData(_Data):
    """Fake fence of a dataset."""

    name = "fake.fence_data"
    capability = Capability.DATA_FENCE


@register
class PromoteData(_Data):
    """Fake promote reporting RPO readings."""

    name = "fake.promote_data"
    capability = Capability.DATA_PROMOTE
    example = "id: promote\naction: fake.promote_data\nwith: {dataset: main, lag_bytes: 0}\n"


@register
class ReconcileData(_Data):
    """Fake reconciliation reporting rows lost."""

    name = "fake.reconcile_data"
    capability = Capability.DATA_RECONCILE
    example = "id: reconcile\naction: fake.reconcile_data\nwith: {dataset: main, rows_lost: 0}\n"


@register
class ShiftTraffic(_Base):
    """Fake traffic shift."""

    name = "fake.shift_traffic"
    capability = Capability.TRAFFIC_SHIFT
    example = "id: shift\naction: fake.shift_traffic\n"


class HealthParams(ActionParams):
    """Params of fake.check_health."""

    seconds: float = 0.0
    healthy: bool = True


@register
class CheckHealth(Action[HealthParams]):
    """Fake health verification."""

    name = "fake.check_health"
    capability = Capability.HEALTH_VERIFY
    Params = HealthParams
    example = "id: healthy\naction: fake.check_health\n"

    def run(self, params: HealthParams, ctx: StepContext) -> StepResult:
        """Healthy unless told otherwise."""
        _count(ctx)
        _sleep(ctx, params.seconds)
        if not params.healthy:
            raise errors.VerificationFailed("simulated: target not healthy")
        return StepResult(summary="healthy", changed=False)


@register
class WaitApproval(_Base):
    """Fake approval: a person takes ``seconds`` to approve."""

    name = "fake.wait_approval"
    capability = Capability.CONTROL_APPROVE
    example = "id: approve\naction: fake.wait_approval\nwith: {seconds: 60}\n"


class HookParams(ActionParams):
    """Params of fake.hook."""

    reached: str
    release: str
    poll: float = 0.02


@register
class Hook(Action[HookParams]):
    """Write the ``reached`` marker file, then wait (real time) until ``release`` exists."""

    name = "fake.hook"
    capability = Capability.EXEC_RUN
    Params = HookParams
    example = "id: hook\naction: fake.hook\nwith: {reached: /tmp/r, release: /tmp/go}\n"

    def run(self, params: HookParams, ctx: StepContext) -> StepResult:
        """Block until released or the deadline."""
        _count(ctx)
        Path(params.reached).write_text(ctx.run_id, encoding="utf-8")
        while not Path(params.release).exists():
            ctx.deadline.check(f"waiting for {params.release}")
            ctx.clock.sleep(params.poll)
        return StepResult(summary="released")


__all__ = ["CALLS"]
