"""Tiny fake actions with the capabilities the planner's invariants read (fence/promote/shift/health).

They are registered only for the tests that ask for the ``fake_actions`` fixture and removed
afterwards, so they never leak into `dr actions` or the meta-tests.
"""

from __future__ import annotations

from typing import Any

from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.capabilities import Capability


class DatasetParams(ActionParams):
    dataset: str


class FreeParams(ActionParams):
    value: str = ""


class _Fake(Action[Any]):
    example = "id: fake\naction: fake.noop\n"

    def run(self, params: Any, ctx: StepContext) -> StepResult:
        return StepResult(summary=f"{self.name} ran", outputs={"token": "t"})


class Fence(_Fake):
    """Fake fence."""

    name = "fake.fence"
    capability = Capability.DATA_FENCE
    Params = DatasetParams

    def dataset(self, params: Any) -> str | None:
        return str(params.dataset)


class Promote(_Fake):
    """Fake promote."""

    name = "fake.promote"
    capability = Capability.DATA_PROMOTE
    Params = DatasetParams

    def dataset(self, params: Any) -> str | None:
        return str(params.dataset)


class Shift(_Fake):
    """Fake traffic shift."""

    name = "fake.shift"
    capability = Capability.TRAFFIC_SHIFT
    Params = FreeParams


class Health(_Fake):
    """Fake health verification."""

    name = "fake.health"
    capability = Capability.HEALTH_VERIFY
    Params = FreeParams


class Emit(_Fake):
    """Fake command that produces an output."""

    name = "fake.emit"
    capability = Capability.EXEC_RUN
    Params = FreeParams


FAKES: tuple[type[Action[Any]], ...] = (Fence, Promote, Shift, Health, Emit)
