"""JSON Schema of the config models, with defaults written the way a runbook writes them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from dr_engine.model.units import format_duration

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class RunbookJsonSchema(GenerateJsonSchema):
    """pydantic would write a duration default as ISO 8601 (``PT30M``); runbooks say ``30m``."""

    def encode_default(self, dft: Any) -> Any:
        """Encode a field default for the schema."""
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def json_schema(model: type[BaseModel], title: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model`` as users write it (aliases, duration text)."""
    schema = model.model_json_schema(by_alias=True, schema_generator=RunbookJsonSchema)
    schema["$schema"] = DRAFT
    if title:
        schema["title"] = title
    return schema
