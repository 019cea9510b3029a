"""The contract every action implements, and what the engine hands it.

An action is registered under ``<provider>.<verb>`` (``postgres.promote``). It declares:

- ``capability``: what it does, in terms the planner's safety invariants understand;
- ``Params``: a strict pydantic model for its ``with:`` block;
- ``permissions``: the IAM actions it needs (empty for non-AWS actions);
- ``example``: a YAML step showing its use (meta-tests load every example);
- ``safety_critical``: skipping it needs ``--force`` and a reason (fences, lag gates).

Actions decide; providers (``dr_engine.providers``) do the I/O. An action's :meth:`run`
observes state first and is idempotent: running it again after a crash is safe and returns
early with ``changed=False`` when the work is already done.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dr_engine.capabilities import Capability as Capability  # re-exported: actions declare one
from dr_engine.clock import Clock, Deadline
from dr_engine.evidence.identity import ApprovalAnswer, TwoPersonRule
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import DrillBehaviour, Objectives, Region, RunMode
from dr_engine.model.location import RunbookLocation
from dr_engine.model.outcome import RpoObservation as RpoObservation  # re-exported (moved to model/)
from dr_engine.model.units import Duration


class ActionParams(BaseModel):
    """Base for every action's ``Params``: strict keys, immutable, numbers not coerced from bool."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ApproveParams(ActionParams):
    """Parameters of ``control.approve``."""

    prompt: str = Field(description="What the approver is asked to confirm")
    timeout: Duration = Field(default=timedelta(minutes=30), description="How long to wait")
    on_timeout: Literal["reject", "approve"] = Field(
        default="reject", description="Outcome when nobody answers in time (reject is safe)"
    )
    approvers: list[str] = Field(default_factory=list, description="Who may approve (empty: anyone)")


@runtime_checkable
class ApprovalGate(Protocol):
    """Supplied by the flow/engine in ``ctx.approval_gate`` (from ``RunOptions.approval_gate``): waits for a human."""

    def request(self, ctx: StepContext, params: ApproveParams) -> ApprovalAnswer | tuple[bool, str, str]:
        """Block until decided; return the answer.

        A plain ``(approved, approver, comment)`` tuple proves nothing about who answered
        (:func:`dr_engine.evidence.identity.as_answer`); it cannot satisfy the two-person rule.
        """
        ...


@dataclass
class StepResult:
    """What an action reports back to the engine.

    ``outputs`` become ``${steps.<id>.<name>}`` for later steps; ``facts`` are recorded in the
    audit log and run record (never put secrets here); ``summary`` is one line for people.
    """

    summary: str = ""
    changed: bool = True
    outputs: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    rpo: RpoObservation | None = None


@dataclass(frozen=True)
class PreflightCheck:
    """One read-only check run by ``dr plan`` / readiness before anything changes."""

    name: str
    ok: bool
    detail: str = ""


#: Callable that appends an event to the run's audit log: ``emit(type, *, actor=None, **data)``.
AuditEmit = Callable[..., Any]


@dataclass
class StepContext:
    """Everything an action may use while running one step.

    ``deadline`` must bound every I/O call (socket/read timeouts, subprocess ``timeout=``):
    the engine cannot interrupt a thread. ``secret(region, name)`` resolves a region secret at
    run time; its value must never be logged, recorded or put in outputs.

    Every flag that changes what a step may do is a typed field here (never a key in a dict), so
    a reader sees which ones exist and a type checker sees who sets them.
    """

    run_id: str
    step_id: str
    mode: RunMode
    source: Region
    target: Region
    objectives: Objectives
    deadline: Deadline
    clock: Clock
    log: logging.Logger
    #: The run's state directory (pre-flight: the runbook's folder, which actions must leave clean).
    state_dir: StateDir
    allow_data_loss: bool = False
    #: Set on the ``--allow-data-loss`` approval only: who may approve it (see dr_engine.evidence.identity).
    two_person: TwoPersonRule | None = None
    attempt: int = 1
    outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secret_resolver: Callable[[Region, str], SecretStr] | None = None
    #: Appends to the run's audit log (None outside a run: then no override can be honoured).
    emit: AuditEmit | None = None
    #: The run's folder under the state dir (None outside a run).
    run_dir: Path | None = None
    #: True when an earlier segment of this run already started the step (``dr resume`` after it
    #: crashed, failed or was interrupted), so its effect may already be done.
    started_before: bool = False
    #: Where the runbook lives: repository files (stacks, templates) resolve against it.
    runbook_location: RunbookLocation = field(default_factory=RunbookLocation)
    #: Asks a person (``control.approve`` and the ``--allow-data-loss`` approval); None: nobody to ask.
    approval_gate: ApprovalGate | None = None
    #: True in ``dr plan``'s read-only pre-flight: no state lock, no files beside the runbook.
    preflight: bool = False
    #: AWS credential checks already made, by region name (one pre-flight pass shares one dict).
    identity_checks: dict[str, PreflightCheck] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Callers outside the engine (tests, scripts) may still hand a path: it becomes a StateDir.
        self.state_dir = StateDir.of(self.state_dir)

    def secret(self, region: Region, name: str) -> SecretStr:
        """Return the secret ``name`` of ``region`` (raises KeyError when not declared)."""
        if self.secret_resolver is None:
            raise KeyError(f"no secret resolver configured (secret {name!r} of {region.name})")
        return self.secret_resolver(region, name)

    @property
    def drill(self) -> bool:
        """True when this run is a non-disruptive drill."""
        return self.mode is RunMode.DRILL


P = TypeVar("P", bound=ActionParams)


class Action(ABC, Generic[P]):
    """Base class of all actions. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    capability: ClassVar[Capability]
    Params: ClassVar[type[ActionParams]]
    permissions: ClassVar[tuple[str, ...]] = ()
    example: ClassVar[str]
    safety_critical: ClassVar[bool] = False
    drill_default: ClassVar[DrillBehaviour] = DrillBehaviour.RUN
    #: Extra IAM actions a drill needs to clean up this action's drill copy, each with the only
    #: resources (ARN pattern) it may act on; granted by ``dr iam-policy --drill`` alone.
    drill_permissions: ClassVar[tuple[tuple[str, str], ...]] = ()

    @abstractmethod
    def run(self, params: P, ctx: StepContext) -> StepResult:
        """Do the step: observe first, act only if needed, verify. Raise StepFailed subclasses."""

    def preflight(self, params: P, ctx: StepContext) -> list[PreflightCheck]:
        """Read-only checks for ``dr plan`` and readiness. Default: nothing to check."""
        del params, ctx
        return []

    def dataset(self, params: P) -> str | None:
        """The dataset a data action works on, used to pair fences with promotes."""
        del params
        return None

    def describe(self, params: P) -> str:
        """A short human description of what the step will touch, for ``dr plan``."""
        fields = params.model_dump(exclude_none=True)
        shown = ", ".join(f"{k}={v}" for k, v in list(fields.items())[:3])
        return shown
