"""Notification settings of a runbook (``notify:``): webhooks and the events they receive."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from dr_engine.model.region import SecretRef, StrictModel
from dr_engine.model.units import Duration


class NotifyEvent(StrEnum):
    """What a webhook can be told about."""

    STARTED = "started"
    APPROVAL = "approval"
    HALTED = "halted"
    SUCCEEDED = "succeeded"
    BREACH = "breach"
    READINESS = "readiness"


class Webhook(StrictModel):
    """One webhook; its URL is a secret (a Slack webhook URL is a credential), so never inline."""

    url: SecretRef = Field(description="Where the URL comes from: {env: VAR} or {file: PATH}")
    # Enums are read from YAML text, which strict mode would refuse: accept their values.
    events: list[Annotated[NotifyEvent, Field(strict=False)]] = Field(
        default_factory=lambda: list(NotifyEvent), description="Events sent to this webhook (default: all)")


class Notifications(StrictModel):
    """``notify:`` block of a runbook."""

    webhooks: list[Webhook] = Field(default_factory=list)
    timeout: Duration = Field(default=timedelta(seconds=5), description="Bound on each delivery")

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: timedelta) -> timedelta:
        if not 0 < value.total_seconds() <= 60:
            raise ValueError("timeout must be between 0 and 60s (a webhook must never hold up a failover)")
        return value
