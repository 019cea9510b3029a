"""The config models: strict, frozen, unit-typed; the rules that are not plain types."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from dr_engine.model import DrillBehaviour, Fencing, Objectives, Region, Retry, Runbook, Step

BASE: dict[str, Any] = {
    "runbook": "core-banking",
    "source": "east",
    "target": "west",
    "objectives": {"rto": "5m", "rpo": "0s"},
    "steps": [{"id": "a", "action": "shell.run", "with": {"command": ["true"]}}],
}


def runbook(**changes: Any) -> Runbook:
    return Runbook.model_validate({**BASE, **changes})


def messages(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[Any, ...], str]]:
    return [(tuple(e["loc"]), e["msg"]) for e in exc.value.errors()]


def test_minimal_runbook_has_safe_defaults() -> None:
    rb = runbook()
    assert rb.fencing is Fencing.STRICT
    assert rb.objectives.rto == timedelta(minutes=5)
    assert rb.objectives.rpo == timedelta(0)
    assert rb.drill_interval == timedelta(days=365)
    assert rb.steps[0].with_ == {"command": ["true"]}
    assert rb.steps[0].drill is DrillBehaviour.DEFAULT
    assert rb.step("a").action == "shell.run"
    with pytest.raises(KeyError):
        rb.step("nope")


def test_models_are_frozen() -> None:
    rb = runbook()
    with pytest.raises(ValidationError):
        rb.runbook = "other"  # type: ignore[misc]


def test_zero_rpo_is_valid_zero_rto_is_not() -> None:
    assert Objectives.model_validate({"rto": "1s", "rpo": 0}).rpo == timedelta(0)
    with pytest.raises(ValidationError) as exc:
        Objectives.model_validate({"rto": "0s", "rpo": "0s"})
    assert messages(exc) == [(("rto",), "Value error, rto must be greater than zero (a zero RTO cannot be met)")]


def test_source_equal_target_is_located_on_target() -> None:
    with pytest.raises(ValidationError) as exc:
        runbook(target="east")
    assert messages(exc) == [(("target",), "Value error, source and target are both 'east'; they must differ")]


def test_best_effort_fencing_needs_a_reason_and_enums_read_from_text() -> None:
    with pytest.raises(ValidationError) as exc:
        runbook(fencing="best-effort")
    assert [loc for loc, _ in messages(exc)] == [("fencing",)]
    rb = runbook(fencing="best-effort", fencing_reason="old primary unreachable by design")
    assert rb.fencing is Fencing.BEST_EFFORT
    step = Step.model_validate({"id": "a", "action": "x.y", "drill": "skip"})
    assert step.drill is DrillBehaviour.SKIP


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"stepz": []}, ("stepz",)),
        ({"steps": []}, ("steps",)),
        ({"runbook": "Core_Banking"}, ("runbook",)),
        ({"steps": [{"id": "a", "action": "shellrun"}]}, ("steps", 0, "action")),
        ({"steps": [{"id": "a", "action": "s.r", "timeout": "0s"}]}, ("steps", 0, "timeout")),
        ({"steps": [{"id": "a", "action": "s.r", "retry": {"attempts": 0}}]}, ("steps", 0, "retry", "attempts")),
        ({"steps": [{"id": "a", "action": "s.r", "retry": {"attempts": "3"}}]}, ("steps", 0, "retry", "attempts")),
        ({"kind": "region"}, ("kind",)),
    ],
)
def test_invalid_runbooks_are_refused_at_the_right_location(changes: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        runbook(**changes)
    assert loc in [tuple(e["loc"]) for e in exc.value.errors()]


def test_retry_defaults() -> None:
    assert Retry().attempts == 3
    assert Retry.model_validate({"backoff": "250ms"}).backoff == timedelta(milliseconds=250)


def test_region_params_are_flat_scalars_and_secrets_need_one_source() -> None:
    region = Region.model_validate({"name": "east", "params": {"port": 5432, "url": "http://x", "on": True}})
    assert region.params["port"] == 5432
    with pytest.raises(ValidationError):
        Region.model_validate({"name": "east", "params": {"db": {"host": "h"}}})
    with pytest.raises(ValidationError, match="exactly one"):
        Region.model_validate({"name": "east", "secrets": {"pw": {}}})
    with pytest.raises(ValidationError, match="exactly one"):
        Region.model_validate({"name": "east", "secrets": {"pw": {"env": "A", "file": "/b"}}})
    assert Region.model_validate({"name": "east", "secrets": {"pw": {"env": "A"}}}).secrets["pw"].env == "A"


def test_region_aws_settings() -> None:
    region = Region.model_validate({"name": "east", "aws": {"region": "eu-west-2", "endpoint_url": "http://h:1"}})
    assert region.aws is not None and region.aws.region == "eu-west-2"
    with pytest.raises(ValidationError):
        Region.model_validate({"name": "east", "aws": {"region": "Europe"}})


def test_dump_writes_durations_as_text() -> None:
    dumped = runbook().model_dump(mode="json", by_alias=True)
    assert dumped["objectives"] == {"rto": "5m", "rpo": "0s"}
    assert "with" in dumped["steps"][0]
