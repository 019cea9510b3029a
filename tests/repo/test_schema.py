"""`dr schema` prints a valid JSON Schema that shipped files satisfy and broken ones do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from dr_engine.cli import build_app

REPO = Path(__file__).resolve().parents[2]
MALFORMED = REPO / "tests" / "corpus" / "malformed"


def schema(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(build_app(), ["schema", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("kind", ["runbook", "region", "evacuation"])
def test_schema_is_valid_json_schema(kind: str) -> None:
    data = schema("--kind", kind)
    Draft202012Validator.check_schema(data)
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert data["title"] == f"dr-engine {kind}"
    assert data["additionalProperties"] is False


def test_schema_names_every_runbook_key() -> None:
    props = schema()["properties"]
    assert {"runbook", "description", "source", "target", "objectives", "fencing", "fencing_reason", "owner",
            "drill_interval", "steps", "approvals"} <= set(props)
    step = schema()["$defs"]["Step"]["properties"]
    assert {"id", "action", "with", "after", "timeout", "retry", "description", "drill"} <= set(step)


def test_duration_defaults_are_written_like_runbooks() -> None:
    retry = schema()["$defs"]["Retry"]["properties"]
    assert retry["backoff"]["default"] == "1s"
    assert schema()["properties"]["drill_interval"]["default"] == "365d"


@pytest.mark.parametrize("path", sorted((REPO / "runbooks").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_runbooks_and_plans_satisfy_their_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    kind = "evacuation" if data.get("kind") == "evacuation" else "runbook"
    Draft202012Validator(schema("--kind", kind)).validate(data)


@pytest.mark.parametrize("path", sorted((REPO / "regions").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_regions_satisfy_the_schema(path: Path) -> None:
    Draft202012Validator(schema("--kind", "region")).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("name", ["unknown-top-key.yaml", "bad-fencing-value.yaml", "empty-steps.yaml",
                                  "wrong-type-after-string.yaml", "bad-duration-words.yaml", "unknown-step-key.yaml",
                                  "self-approval-no-reason.yaml", "self-approval-not-bool.yaml",
                                  "self-approval-unknown-key.yaml"])
def test_broken_runbooks_do_not(name: str) -> None:
    errors = list(Draft202012Validator(schema()).iter_errors(yaml.safe_load((MALFORMED / name).read_text())))
    assert errors


@pytest.mark.parametrize(("approvals", "valid"), [
    ({"allow_self_approval": True, "reason": "one on-call engineer at night"}, True),
    ({"allow_self_approval": False}, True),
    ({}, True),
    ({"allow_self_approval": True}, False),
    ({"allow_self_approval": True, "reason": "  "}, False),
    ({"allow_self_approval": True, "reason": None}, False),
    ({"allow_self_approval": "true", "reason": "x"}, False),
])
def test_self_approval_needs_a_reason_in_the_schema_too(approvals: dict[str, Any], valid: bool) -> None:
    runbook = yaml.safe_load((REPO / "runbooks" / "sample-noop.yaml").read_text())
    runbook["approvals"] = approvals
    errors = list(Draft202012Validator(schema()).iter_errors(runbook))
    assert (not errors) is valid, errors
