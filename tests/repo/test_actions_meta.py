"""Every registered action declares what the planner, `dr actions` and reviewers rely on."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from dr_engine.actions.base import Action, ActionParams, Capability
from dr_engine.actions.registry import all_actions
from dr_engine.loader import SECRET_PLACEHOLDER, load_regions
from dr_engine.model import DrillBehaviour, Step
from dr_engine.substitution import Reference, find_references, substitute
from dr_engine.yamlsafe import parse_path, parse_yaml

REPO = Path(__file__).resolve().parents[2]
ACTIONS = all_actions()
AWS_PREFIXES = ("route53.", "cloudformation.", "rds.", "autoscaling.", "cloudwatch.", "s3.", "dynamodb.",
                "secretsmanager.")
IAM_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*]+$")


def test_there_are_actions_to_check() -> None:
    assert {"control.wait", "control.approve", "shell.run", "shell.verify"} <= set(ACTIONS)


@pytest.mark.parametrize("name", list(ACTIONS))
def test_action_declares_its_contract(name: str) -> None:
    cls = ACTIONS[name]
    assert cls.name == name
    assert re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", name)
    assert isinstance(cls.capability, Capability)
    assert inspect.isclass(cls.Params) and issubclass(cls.Params, ActionParams), "Params must subclass ActionParams"
    assert cls.Params.model_config.get("extra") == "forbid", "Params must refuse unknown keys"
    assert inspect.getdoc(cls), f"{name} needs a docstring (the first line is shown by `dr actions`)"
    assert isinstance(cls.permissions, tuple) and all(isinstance(p, str) for p in cls.permissions)
    assert isinstance(cls.drill_default, DrillBehaviour)
    assert not inspect.isabstract(cls), f"{name} does not implement run()"


@pytest.mark.parametrize("name", [n for n in ACTIONS if n.startswith(AWS_PREFIXES)])
def test_aws_actions_declare_iam_permissions(name: str) -> None:
    permissions = ACTIONS[name].permissions
    assert permissions, f"{name} talks to AWS and must list the IAM actions it needs"
    assert all(IAM_ACTION.match(p) for p in permissions), permissions


def _resolver() -> Any:
    regions = load_regions(REPO / "regions")
    source, target = regions["us-east-1"], regions["us-west-2"]

    def resolve(ref: Reference) -> Any:
        region = source if ref.region == "source" else target
        if ref.scope == "region" and ref.key in region.params:
            return region.params[ref.key]
        if ref.scope == "secret":
            return SECRET_PLACEHOLDER
        raise KeyError(ref.text)  # step outputs and run values exist only at run time

    return resolve


@pytest.mark.parametrize("name", list(ACTIONS))
def test_example_loads_as_a_step_and_validates(name: str) -> None:
    cls: type[Action[Any]] = ACTIONS[name]
    data, _ = parse_yaml(cls.example, f"{name} example")
    step = Step.model_validate(data)
    assert step.action == name, "the example must use the action it documents"
    resolved = substitute(step.with_, _resolver(), keep_unresolved=True)
    deferred = {parse_path(path) for path, _ in find_references(resolved)}
    try:
        cls.Params.model_validate(resolved)
    except ValidationError as exc:
        real = [e for e in exc.errors() if tuple(e["loc"]) not in deferred]
        assert not real, f"{name} example does not validate against its Params: {real}"
    # The example is what `dr actions NAME` prints: it must be plain YAML a user can paste.
    assert yaml.safe_load(cls.example) == data
