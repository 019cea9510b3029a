"""Runbook model: one ``runbooks/<name>.yaml`` per application failover."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from dr_engine.model.notify import Notifications
from dr_engine.model.region import NAME_PATTERN, StrictModel
from dr_engine.model.units import Duration, Interval

ACTION_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
#: Upper bound on steps: far beyond any real runbook, low enough to refuse a runaway file.
MAX_STEPS = 20_000


class RunMode(StrEnum):
    """What kind of run executes a runbook."""

    FAILOVER = "failover"
    DRILL = "drill"
    FAILBACK = "failback"


class DrillBehaviour(StrEnum):
    """How a step behaves in a drill: run it as written, against drill copies, or skip it."""

    DEFAULT = "default"
    RUN = "run"
    SKIP = "skip"


class Objectives(StrictModel):
    """Recovery objectives the run is measured against."""

    rto: Duration = Field(description="Recovery time objective (must be > 0)")
    rpo: Duration = Field(description="Recovery point objective (0s = no data loss)")

    @field_validator("rto")
    @classmethod
    def _rto_positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("rto must be greater than zero (a zero RTO cannot be met)")
        return value


class Retry(StrictModel):
    """Operation-level retry policy for transient errors."""

    attempts: Annotated[int, Field(ge=1, le=100)] = 3
    backoff: Duration = Field(default=timedelta(seconds=1), description="Base of the backoff")


class Step(StrictModel):
    """One step of a runbook."""

    id: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    action: Annotated[str, Field(pattern=ACTION_PATTERN, description="<provider>.<verb>")]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    after: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list)
    timeout: Duration | None = None
    retry: Retry | None = None
    description: str = ""
    # Enums are read from YAML text, which strict mode would refuse: accept their values.
    drill: DrillBehaviour = Field(default=DrillBehaviour.DEFAULT, strict=False,
                                  description="In a drill: default (the action decides), run, or skip")

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("timeout must be greater than zero")
        return value


class Fencing(StrEnum):
    """Whether every promote must be preceded by a fence of the same dataset."""

    STRICT = "strict"
    BEST_EFFORT = "best-effort"


class Approvals(StrictModel):
    """Who may approve what: the two-person rule for ``--allow-data-loss`` and its exception.

    By default the person who starts a run with ``--allow-data-loss`` cannot approve it: the
    approver must be a different OS user. ``allow_self_approval: true`` (with a ``reason``)
    lets the initiator approve their own request; every use is audited as an override.
    """

    # The JSON Schema says what the validator below says: self-approval needs a reason.
    model_config = ConfigDict(**StrictModel.model_config, json_schema_extra={
        "if": {"properties": {"allow_self_approval": {"const": True}}, "required": ["allow_self_approval"]},
        "then": {"required": ["reason"], "properties": {"reason": {"type": "string", "pattern": r"\S"}}},
    })

    # reason comes before allow_self_approval so that the validator below can see it.
    reason: str | None = Field(
        default=None, description="Required when allow_self_approval is true: why one person may accept data "
                                  "loss alone (recorded in the audit with every self-approval)")
    allow_self_approval: bool = Field(
        default=False, description="Let the initiator of an --allow-data-loss run approve it (audited override)")

    @field_validator("allow_self_approval")
    @classmethod
    def _reason_given(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not (info.data.get("reason") or "").strip():
            raise ValueError("allow_self_approval needs a `reason:` explaining why one person may approve "
                             "accepting data loss alone (it is audited with every self-approval)")
        return value


class Runbook(StrictModel):
    """How one application fails over from ``source`` to ``target``."""

    runbook: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    #: The application this runbook moves; runbooks of one application (failover, failback, a
    #: partial one) share one failover lock, so they never run at the same time.
    application: Annotated[str | None, Field(
        default=None, pattern=NAME_PATTERN, max_length=63,
        description="Application this runbook moves: the failover lock key (default: the runbook name)")]
    description: str = ""
    source: Annotated[str, Field(pattern=NAME_PATTERN)]
    target: Annotated[str, Field(pattern=NAME_PATTERN)]
    objectives: Objectives
    # fencing_reason comes before fencing so that the `fencing` validator can see it and the
    # error points at the `fencing:` line.
    fencing_reason: str | None = Field(
        default=None, description="Required when fencing is best-effort; recorded in the audit"
    )
    fencing: Fencing = Field(default=Fencing.STRICT, strict=False,
                             description="strict: every promote needs a fence first; best-effort: audited")
    owner: str | None = Field(default=None, description="Team accountable for this runbook")
    drill_interval: Interval = Field(
        default=timedelta(days=365), description="How often a successful test is due"
    )
    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    notify: Notifications | None = Field(default=None, description="Webhook notifications (see docs)")
    approvals: Approvals | None = Field(
        default=None, description="The two-person rule for --allow-data-loss; allow_self_approval relaxes it (audited)")
    kind: Literal["runbook"] = "runbook"

    # Field validators (not a model validator) so that errors carry the field's location.
    @field_validator("target")
    @classmethod
    def _target_differs(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("source"):
            raise ValueError(f"source and target are both '{value}'; they must differ")
        return value

    @field_validator("fencing")
    @classmethod
    def _reason_given(cls, value: Fencing, info: ValidationInfo) -> Fencing:
        if value is Fencing.BEST_EFFORT and not (info.data.get("fencing_reason") or "").strip():
            raise ValueError("best-effort fencing needs a `fencing_reason:` explaining why (it is audited)")
        return value

    @property
    def lock_key(self) -> str:
        """The failover lock key: ``application``, or the runbook name when none is given."""
        return self.application or self.runbook

    def step(self, step_id: str) -> Step:
        """Return the step with ``step_id`` (KeyError if absent)."""
        for item in self.steps:
            if item.id == step_id:
                return item
        raise KeyError(step_id)
