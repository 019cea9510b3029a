"""Unit-typed values used in runbooks: durations such as ``"250ms"``, ``"30s"``, ``"1h30m"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Longest duration accepted for timeouts, objectives and waits: a week. Longer is almost always a typo.
MAX_SECONDS = 7 * 86400.0
#: Longest calendar interval (e.g. how often a drill is due): ten years.
MAX_INTERVAL_SECONDS = 3650 * 86400.0
DURATION_HINT = "write a number with a unit: 250ms, 30s, 5m, 1h, 1h30m (or 0 for none)"


def parse_duration(value: Any, max_seconds: float = MAX_SECONDS) -> timedelta:
    """Parse ``"90s"``/``"1h30m"`` (or the number 0) into a :class:`timedelta`.

    Bare numbers other than 0 are refused because their unit would be a guess.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration, got {str(value).lower()}; {DURATION_HINT}")
    elif isinstance(value, int | float):
        if value != 0:
            raise ValueError(f"{value!r} has no unit; {DURATION_HINT}")
        seconds = 0.0
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.startswith("-"):
            raise ValueError(f"negative duration {value!r}; durations must be >= 0")
        if text == "0":
            seconds = 0.0
        elif not _WHOLE.match(text):
            raise ValueError(f"invalid duration {value!r}; {DURATION_HINT}")
        else:
            seconds = sum(float(n) * _FACTORS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"expected a duration string, got {type(value).__name__}; {DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"negative duration {value!r}; durations must be >= 0")
    if seconds > max_seconds:
        limit = "a week" if max_seconds == MAX_SECONDS else format_duration(timedelta(seconds=max_seconds))
        raise ValueError(f"duration {value!r} is longer than {limit}; is that a typo?")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a duration the way a person writes it in a runbook (``"90s"``, ``"250ms"``)."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_number(seconds * 1000)}ms"
    if seconds % 86400 == 0:
        return f"{_number(seconds / 86400)}d"
    if seconds % 3600 == 0:
        return f"{_number(seconds / 3600)}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{_number(seconds / 60)}m"
    return f"{_number(seconds)}s"


def _number(value: float) -> str:
    # Not `:g`: its 6 significant digits would turn 1000.001s into "1000s".
    return f"{value:.3f}".rstrip("0").rstrip(".")


_SCHEMA_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$|^0$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": _SCHEMA_PATTERN}, {"const": 0}],
            "description": "A duration: 250ms, 30s, 5m, 1h, 1h30m (at most a week)",
        }
    ),
]
"""A non-negative duration written with a unit (at most a week); serialised back as text."""


def _parse_interval(value: Any) -> timedelta:
    return parse_duration(value, MAX_INTERVAL_SECONDS)


Interval = Annotated[
    timedelta,
    BeforeValidator(_parse_interval),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": _SCHEMA_PATTERN}, {"const": 0}],
            "description": "A calendar interval: 90d, 180d, 365d (at most ten years)",
        }
    ),
]
"""Like :data:`Duration` but for calendar intervals (drill cadence), up to ten years."""
