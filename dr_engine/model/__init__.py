"""Pydantic configuration models (no I/O): units, regions, runbooks."""

from dr_engine.model.region import AwsSettings, Region, SecretRef
from dr_engine.model.runbook import Approvals, DrillBehaviour, Fencing, Objectives, Retry, Runbook, RunMode, Step
from dr_engine.model.units import Duration, Interval, format_duration, parse_duration

__all__ = [
    "Approvals",
    "AwsSettings",
    "DrillBehaviour",
    "Duration",
    "Fencing",
    "Interval",
    "Objectives",
    "Region",
    "Retry",
    "RunMode",
    "Runbook",
    "SecretRef",
    "Step",
    "format_duration",
    "parse_duration",
]
