"""Every registered action declares what the planner, `dr actions`, `dr iam-policy` and reviewers rely on.

Driven by the registry: an action is checked because it is registered, never because a list here
names it. An AWS action is one that subclasses :class:`~dr_engine.actions.aws.base.AwsAction`.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from dr_engine.actions.aws.base import AwsAction
from dr_engine.actions.base import Action, ActionParams
from dr_engine.actions.registry import all_actions, load_builtin
from dr_engine.capabilities import Capability
from dr_engine.cli import build_app
from dr_engine.config.loader import SECRET_PLACEHOLDER, load_regions, load_runbook
from dr_engine.config.yamlsafe import parse_path, parse_yaml
from dr_engine.model import DrillBehaviour, Step
from dr_engine.model.substitution import Reference, find_references, substitute
from dr_engine.planning.preflight import has_preflight
from dr_engine.testing.contracts import ActionContract

REPO = Path(__file__).resolve().parents[2]
ACTIONS = all_actions()
AWS = {name: cls for name, cls in ACTIONS.items() if issubclass(cls, AwsAction)}
#: One IAM action (``service:Operation``), no wildcard: a policy grants exactly what a step needs.
IAM_ACTION = re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z0-9]*$")


def test_there_are_actions_to_check() -> None:
    assert {"control.wait", "control.approve", "shell.run", "shell.verify"} <= set(ACTIONS)


def test_every_built_in_action_comes_from_a_discovered_module() -> None:
    # Discovery, not a list: each built-in action's module was found by walking dr_engine.actions.
    modules = set(load_builtin())
    built_in = {name: cls.__module__ for name, cls in ACTIONS.items()
                if cls.__module__.startswith("dr_engine.actions.")}
    assert built_in and all(module in modules for module in built_in.values()), built_in
    assert not any(module.endswith("_drill") for module in modules), "drill variants load with the drill"


def test_the_aws_actions_are_registered() -> None:
    assert set(AWS) == {
        "route53.shift", "route53.verify", "cloudformation.apply", "cloudformation.check", "rds.promote_replica",
        "rds.check_replica", "autoscaling.scale", "cloudwatch.verify_alarms", "s3.sync", "s3.verify",
        "dynamodb.verify_replica", "secretsmanager.verify_replica"}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_action_declares_its_contract(name: str) -> None:
    cls = ACTIONS[name]
    assert cls.name == name
    assert re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", name)
    assert isinstance(cls.capability, Capability)
    assert inspect.isclass(cls.Params) and issubclass(cls.Params, ActionParams), "Params must subclass ActionParams"
    assert cls.Params.model_config.get("extra") == "forbid", "Params must refuse unknown keys"
    assert isinstance(cls.permissions, tuple) and all(isinstance(p, str) for p in cls.permissions)
    assert all(IAM_ACTION.match(p) for p in cls.permissions), cls.permissions
    assert len(set(cls.permissions)) == len(cls.permissions)
    assert isinstance(cls.drill_default, DrillBehaviour)
    assert not inspect.isabstract(cls), f"{name} does not implement run()"


@pytest.mark.parametrize("name", list(ACTIONS))
def test_action_has_a_docstring_and_one_example(name: str) -> None:
    cls = ACTIONS[name]
    doc = inspect.getdoc(cls)
    assert doc, f"{name} needs a docstring (the first line is shown by `dr actions`)"
    # `example` is the only example: a second copy in the docstring drifts from it.
    assert "Example::" not in (cls.__doc__ or ""), f"{name}: put the example in `example`, not the docstring"
    assert isinstance(cls.example, str) and cls.example.strip()


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


@pytest.mark.parametrize("name", list(ACTIONS))
def test_params_refuse_unknown_keys(name: str) -> None:
    cls = ACTIONS[name]
    with_block = yaml.safe_load(cls.example).get("with") or {}
    ActionContract(cls, with_block).check_params_refuse_unknown_keys()


@pytest.mark.parametrize("name", list(AWS))
def test_aws_actions_declare_permissions_and_preflight(name: str) -> None:
    cls = AWS[name]
    assert cls.permissions, f"{name} talks to AWS and must list the IAM actions it needs"
    assert has_preflight(cls), f"{name} must define read-only pre-flight checks"
    assert cls.preflight is not Action.preflight


def test_iam_policy_for_the_shipped_runbook_is_a_valid_document() -> None:
    result = CliRunner().invoke(build_app(), ["iam-policy", str(REPO / "runbooks" / "core-banking-aws.yaml")])
    assert result.exit_code == 0, result.output
    policy = json.loads(result.stdout)
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"], "the runbook has AWS steps"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(set(sids)) == len(sids) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
        assert all(IAM_ACTION.match(a) for a in statement["Action"])
        granted |= set(statement["Action"])
    loaded = load_runbook(REPO / "runbooks" / "core-banking-aws.yaml")
    needed = {p for step in loaded.runbook.steps for p in loaded.actions[step.id].permissions}
    assert granted == needed  # exactly what the steps declare: nothing more, nothing less
    assert "route53:ChangeResourceRecordSets" in granted
    assert not any(a.endswith(":*") or a.startswith("iam:") for a in granted)


def test_drill_policy_adds_only_the_cleanup_of_drill_copies() -> None:
    runbook = str(REPO / "runbooks" / "core-banking-aws.yaml")
    plain = json.loads(CliRunner().invoke(build_app(), ["iam-policy", runbook]).stdout)
    result = CliRunner().invoke(build_app(), ["iam-policy", "--drill", runbook])
    assert result.exit_code == 0, result.output
    drill = json.loads(result.stdout)
    extra = [s for s in drill["Statement"] if s not in plain["Statement"]]
    assert drill["Statement"][: len(plain["Statement"])] == plain["Statement"]
    assert extra == [{"Sid": "DrEngineDrillCleanup1", "Effect": "Allow", "Action": ["cloudformation:DeleteStack"],
                      "Resource": "arn:aws:cloudformation:*:*:stack/*-drill/*"}]
    assert not any("DeleteStack" in s["Action"] for s in plain["Statement"])  # failovers never delete stacks


def test_iam_policy_of_a_provider_free_runbook_is_empty() -> None:
    result = CliRunner().invoke(build_app(), ["iam-policy", str(REPO / "runbooks" / "sample-noop.yaml")])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"Version": "2012-10-17", "Statement": []}
