"""The RPO gate, written once: every ``data.check`` action decides through :func:`rpo_gate`.

A ``data.check`` step stands before a promote. It measures how far the copy about to become
the primary is behind (an :class:`~dr_engine.model.outcome.RpoObservation`) and asks the gate:

- **within** the objective: proceed;
- **over** it, or **unknown** (nothing measured, or an age nobody can tell): refuse with
  :class:`~dr_engine.errors.PreconditionFailed`. Unknown lag counts as over the RPO: a safety
  gate fails closed;
- unless the run allows data loss (``--allow-data-loss``): then the gate lets the step pass
  and records an ``override`` event in the run's audit log saying why. A context that cannot
  record it (no audit log to write to) is refused: an override nobody can see is not allowed.

The rule, with ``r`` the objective in seconds:

1. no observation, or neither bytes nor seconds known: unknown;
2. ``lag_bytes == 0``: within (nothing is missing; a synchronous standby reports this);
3. ``lag_seconds`` unknown: unknown (something may be missing and nobody knows how old it is);
4. ``lag_seconds > r``: over;
5. ``r == 0`` and ``lag_bytes > 0``: over (a zero RPO tolerates no measured loss);
6. otherwise within.

An action that knows only a lower bound of the missing bytes (e.g. a standby that lost its
primary: the primary may have written more since it last reported) must pass ``lag_bytes``
as unknown rather than 0, so that rule 2 never reads a bound as proof.

This module sits below the evidence and action layers: it imports only the error taxonomy
and the model, and reaches the audit log through the ``emit`` callable of the step context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from dr_engine.errors import PreconditionFailed
from dr_engine.model.outcome import RpoObservation

#: The audit event type of an override (``dr_engine.evidence.audit.OVERRIDE``; the evidence layer sits
#: above this one, so the name is repeated here and a test keeps the two equal).
OVERRIDE_EVENT = "override"
#: ``kind`` of the override event when the gate passed on unknown lag / on lag over the objective.
UNKNOWN_LAG_OVERRIDE = "rpo-unknown-lag"
EXCEEDED_LAG_OVERRIDE = "rpo-exceeded"
#: The ``StepResult.facts`` key every gated step carries (``within``, ``over`` or ``unknown``).
GATE_FACT = "rpo_gate"
#: What to do, in every refusal.
REFUSAL_HINT = ("wait for replication to catch up and re-run the step, or re-run the run with "
                "--allow-data-loss and a --reason (the override is recorded in the audit log)")


class GateContext(Protocol):
    """What the gate needs from a step context (:class:`~dr_engine.actions.base.StepContext` has it)."""

    @property
    def step_id(self) -> str:
        """The step being gated (named in the override event)."""
        ...

    @property
    def allow_data_loss(self) -> bool:
        """True when the run was started with ``--allow-data-loss``."""
        ...

    @property
    def log(self) -> logging.Logger:
        """The step's logger."""
        ...

    @property
    def emit(self) -> Callable[..., Any] | None:
        """Appends an event to the run's audit log (None outside a run)."""
        ...


class Standing(StrEnum):
    """Where the observed lag stands against the objective."""

    WITHIN = "within"
    OVER = "over"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RpoVerdict:
    """The gate's decision for a step that may proceed (a refusal raises instead)."""

    standing: Standing
    objective_seconds: float
    #: True when the step proceeds only because the run allows data loss (and it was audited).
    overridden: bool = False

    def facts(self) -> dict[str, Any]:
        """What the step records: the verdict, the objective and, if any, the override."""
        found: dict[str, Any] = {GATE_FACT: self.standing.value, "rpo_objective_seconds": self.objective_seconds}
        if self.overridden:
            found["override"] = "allow-data-loss"
        return found


def standing(observed: RpoObservation | None, objective: timedelta) -> Standing:
    """Apply the rule in the module docstring (no side effects)."""
    if observed is None or (observed.lag_bytes is None and observed.lag_seconds is None):
        return Standing.UNKNOWN
    if observed.lag_bytes == 0:
        return Standing.WITHIN
    if observed.lag_seconds is None:
        return Standing.UNKNOWN
    limit = objective.total_seconds()
    if observed.lag_seconds > limit:
        return Standing.OVER
    if limit == 0 and observed.lag_bytes is not None and observed.lag_bytes > 0:
        return Standing.OVER
    return Standing.WITHIN


def describe_lag(observed: RpoObservation | None) -> str:
    """``"1234 bytes, 2.500 s"``, ``"120.000 s"``, ``"1234 bytes, age unknown"`` or ``"nothing measured"``."""
    lag_bytes = None if observed is None else observed.lag_bytes
    lag_seconds = None if observed is None else observed.lag_seconds
    if lag_bytes is None and lag_seconds is None:
        return "nothing measured"
    age = "age unknown" if lag_seconds is None else f"{lag_seconds:.3f} s"
    return age if lag_bytes is None else f"{lag_bytes} bytes, {age}"


def rpo_gate(observed: RpoObservation | None, objective: timedelta, ctx: GateContext, *, subject: str,
             where: str = "", limit_name: str = "the RPO", shown: str | None = None) -> RpoVerdict:
    """Decide whether a promote may follow; raise :class:`PreconditionFailed` when it may not.

    ``subject`` names what was measured (``"standby of ledger"``), ``where`` how (``"measured
    on the standby"``), ``limit_name`` what ``objective`` is (``"the RPO"``, ``"max_lag"``);
    ``shown`` replaces :func:`describe_lag` of ``observed`` in messages when the action knows more.
    With ``ctx.allow_data_loss`` an over-or-unknown lag passes and an ``override`` event is
    appended to the run's audit log through ``ctx.emit``.
    """
    found = standing(observed, objective)
    limit = objective.total_seconds()
    verdict = RpoVerdict(found, limit)
    if found is Standing.WITHIN:
        return verdict
    shown = (describe_lag(observed) if shown is None else shown) + (f"; {where}" if where else "")
    if found is Standing.UNKNOWN:
        problem = (f"replication lag of {subject} is unknown ({shown}); unknown lag counts as over "
                   f"{limit_name} of {limit:g}s: promoting now could lose data")
    else:
        problem = f"{subject} is behind ({shown}), over {limit_name} of {limit:g}s: promoting now would lose data"
    if not ctx.allow_data_loss:
        raise PreconditionFailed(problem, hint=REFUSAL_HINT)
    emit = ctx.emit
    if not callable(emit):
        # An override must be audited; where there is no audit log, there is no override.
        raise PreconditionFailed(f"{problem}; --allow-data-loss cannot be honoured here because the override "
                                 "cannot be recorded (no audit log in this step context)",
                                 hint="run the step through the engine (`dr failover` / `dr run`), which audits it")
    kind = UNKNOWN_LAG_OVERRIDE if found is Standing.UNKNOWN else EXCEEDED_LAG_OVERRIDE
    reason = "unknown lag" if found is Standing.UNKNOWN else "lag over the objective"
    emit(OVERRIDE_EVENT, kind=kind, step=ctx.step_id,
         detail=f"step {ctx.step_id}: the RPO gate passed on {reason} because the run allows data loss "
                f"(--allow-data-loss): {problem}",
         lag_bytes=None if observed is None else observed.lag_bytes,
         lag_seconds=None if observed is None else observed.lag_seconds, objective_seconds=limit)
    ctx.log.warning("%s: proceeding because the run allows data loss (override recorded)", problem)
    return RpoVerdict(found, limit, overridden=True)


__all__ = [
    "EXCEEDED_LAG_OVERRIDE",
    "GATE_FACT",
    "OVERRIDE_EVENT",
    "UNKNOWN_LAG_OVERRIDE",
    "GateContext",
    "RpoVerdict",
    "Standing",
    "describe_lag",
    "rpo_gate",
    "standing",
]
