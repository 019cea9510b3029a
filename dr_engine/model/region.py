"""Region model: one ``regions/<name>.yaml`` per region."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
KEY_PATTERN = r"^[a-z_][a-z0-9_]*$"

ParamValue = str | int | float | bool
"""Region params are flat scalars so that ``${target.key}`` always yields text."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AwsSettings(StrictModel):
    """How to reach AWS for this region."""

    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="AWS region name")]
    endpoint_url: str | None = Field(
        default=None, description="Override endpoint for local emulation (moto, LocalStack)"
    )
    profile: str | None = Field(default=None, description="Named profile from ~/.aws/config")


class SecretRef(StrictModel):
    """Where a secret comes from at run time. Secret values never enter files or records."""

    env: str | None = Field(default=None, description="Environment variable holding the value")
    file: str | None = Field(default=None, description="File whose content is the value")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of `env` or `file`")
        return self


class Region(StrictModel):
    """A region that runbooks fail over from or to."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    description: str = ""
    aws: AwsSettings | None = None
    params: dict[Annotated[str, Field(pattern=KEY_PATTERN)], ParamValue] = Field(
        default_factory=dict,
        description="Named endpoints and values steps reference as ${source.KEY} / ${target.KEY}",
    )
    secrets: dict[Annotated[str, Field(pattern=KEY_PATTERN)], SecretRef] = Field(
        default_factory=dict,
        description="Secrets steps reference as ${target.secrets.NAME}; resolved at run time",
    )
