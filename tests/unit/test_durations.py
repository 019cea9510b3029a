"""Durations: the only way time is written in runbooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr_engine.model import format_duration, parse_duration
from dr_engine.model.units import MAX_SECONDS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("2d", 172800),
        (" 10s ", 10),
        ("10 s", 10),
        ("0", 0),
        ("0s", 0),
        (0, 0),
        (0.0, 0),
        (timedelta(seconds=3), 3),
    ],
)
def test_parse(text: Any, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("5 minutes", "invalid duration '5 minutes'; write a number with a unit"),
        ("5", "invalid duration '5'"),
        ("s", "invalid duration"),
        ("", "invalid duration"),
        ("1h-5m", "invalid duration"),
        ("-5s", "negative duration '-5s'"),
        (timedelta(seconds=-1), "negative duration"),
        (300, "300 has no unit"),
        (True, "expected a duration, got true"),
        (None, "expected a duration string, got NoneType"),
        ([1], "expected a duration string, got list"),
        ("8d", "longer than a week"),
    ],
)
def test_refused(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as exc:
        parse_duration(value)
    assert fragment in str(exc.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (30, "30s"), (90, "90s"), (300, "5m"), (3600, "1h"), (5400, "90m"), (1.5, "1.5s"),
     (86400, "1d"), (1000.001, "1000.001s")],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=0, max_value=int(MAX_SECONDS * 1000)))
def test_format_parse_round_trip(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert abs(parse_duration(format_duration(value)) - value) < timedelta(milliseconds=1)


def test_intervals_may_be_long_durations_may_not() -> None:
    from dr_engine.model import Runbook

    base = {"runbook": "x", "source": "a", "target": "b", "objectives": {"rto": "5m", "rpo": "0s"},
            "steps": [{"id": "a", "action": "x.y"}]}
    assert Runbook.model_validate({**base, "drill_interval": "180d"}).drill_interval == timedelta(days=180)
    with pytest.raises(ValueError, match="longer than 3650d"):
        Runbook.model_validate({**base, "drill_interval": "4000d"})
    with pytest.raises(ValueError, match="longer than a week"):
        Runbook.model_validate({**base, "objectives": {"rto": "180d", "rpo": "0s"}})
