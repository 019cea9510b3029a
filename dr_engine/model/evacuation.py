"""Evacuation plan model: every application of a region, moved in dependency order.

An evacuation plan (``runbooks/evacuate-<region>.yaml``, ``kind: evacuation``) names the
applications of a source region by their runbooks, puts them in tiers, and says which
application waits for which and what happens to the dependents when one fails::

    kind: evacuation
    evacuation: evacuate-us-east-1
    source: us-east-1
    target: us-west-2
    objectives: {rto: 45m}
    applications:
      - {name: core-banking, runbook: core-banking, tier: 0}
      - name: payments
        runbook: payments
        tier: 1
        after:
          - core-banking                                      # halt payments if it fails
          - {application: fx-rates, on_failure: continue}     # run payments anyway; reported

Every application of tier ``n`` also waits for every application of the nearest lower tier
(the tier's policy is ``tier_failure``). Each application keeps its own runbook, lock and run
record; the evacuation adds its own record and audit log that link them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator

from dr_engine.model.region import NAME_PATTERN, StrictModel
from dr_engine.model.units import Duration

#: Upper bound on applications in one plan: a region of a large bank, with room to spare.
MAX_APPLICATIONS = 1_000


class FailurePolicy(StrEnum):
    """What a failed application means for the applications that wait for it."""

    #: The dependents do not start; they are recorded as skipped, naming the failed dependency.
    HALT = "halt"
    #: The dependents start anyway; the evacuation report lists each as a deviation.
    CONTINUE = "continue"


class Dependency(StrictModel):
    """One application another waits for, with the policy when it fails."""

    application: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    on_failure: FailurePolicy = Field(default=FailurePolicy.HALT, strict=False,
                                      description="halt: the dependent does not start; continue: it starts anyway")


class Application(StrictModel):
    """One application of the region: its runbook, tier and dependencies."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63, description="Unique in the plan")]
    runbook: str = Field(min_length=1, description="Runbook name (runbooks/NAME.yaml) or path, relative to the plan")
    tier: Annotated[int, Field(ge=0, le=99)] = Field(default=0, description="0 first; a tier waits for the one below")
    after: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)] | Dependency] = Field(
        default_factory=list, description="Applications this one waits for (a name means on_failure: halt)")
    business_function: str | None = Field(default=None, description="Reports roll applications up by this")

    def dependencies(self) -> list[Dependency]:
        """``after`` with every entry as a :class:`Dependency`."""
        return [Dependency(application=d) if isinstance(d, str) else d for d in self.after]


class EvacuationObjectives(StrictModel):
    """The objective of the whole evacuation (each application keeps its runbook's own)."""

    rto: Duration = Field(description="Time from the incident start until every application is recovered")

    @field_validator("rto")
    @classmethod
    def _rto_positive(cls, value: object) -> object:
        from datetime import timedelta

        if isinstance(value, timedelta) and value.total_seconds() <= 0:
            raise ValueError("rto must be greater than zero (a zero RTO cannot be met)")
        return value


class Evacuation(StrictModel):
    """A plan to move every listed application from ``source`` to ``target``."""

    kind: Literal["evacuation"] = Field(description="Always `evacuation`: tells the plan from a runbook")
    evacuation: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63, description="The plan's name")]
    description: str = ""
    source: Annotated[str, Field(pattern=NAME_PATTERN)]
    target: Annotated[str, Field(pattern=NAME_PATTERN)]
    objectives: EvacuationObjectives
    tier_failure: FailurePolicy = Field(default=FailurePolicy.HALT, strict=False,
                                        description="Policy of the implicit dependency of a tier on the one below")
    concurrency: Annotated[int, Field(ge=1, le=200)] = Field(
        default=4, description="Applications running at the same time (embedded; workers bring their own)")
    applications: Annotated[list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS)]

    @field_validator("target")
    @classmethod
    def _target_differs(cls, value: str, info: object) -> str:
        source = getattr(info, "data", {}).get("source")
        if value == source:
            raise ValueError(f"source and target are both '{value}'; they must differ")
        return value

    def application(self, name: str) -> Application:
        """The application called ``name`` (KeyError if absent)."""
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(name)


__all__ = ["MAX_APPLICATIONS", "Application", "Dependency", "Evacuation", "EvacuationObjectives", "FailurePolicy"]
