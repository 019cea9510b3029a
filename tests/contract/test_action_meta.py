"""Contract of the AWS actions: examples load and validate, permissions are declared, policies are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dr_engine.actions.base import Action
from dr_engine.actions.registry import all_actions
from dr_engine.cli import build_app
from dr_engine.loader import load_runbook
from dr_engine.model import Step
from dr_engine.preflight import has_preflight

REPO = Path(__file__).resolve().parents[2]
ACTIONS = all_actions()
AWS_MODULE = "dr_engine.actions.aws_"
AWS = {name: cls for name, cls in ACTIONS.items() if cls.__module__.startswith(AWS_MODULE)}
IAM_ACTION = re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z0-9]*$")


def test_the_aws_actions_are_registered() -> None:
    assert set(AWS) == {
        "route53.shift", "route53.verify", "cloudformation.apply", "cloudformation.check", "rds.promote_replica",
        "rds.check_replica", "autoscaling.scale", "cloudwatch.verify_alarms", "s3.sync", "s3.verify",
        "dynamodb.verify_replica", "secretsmanager.verify_replica"}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_example_loads_and_validates(name: str) -> None:
    cls = ACTIONS[name]
    step = Step.model_validate(yaml.safe_load(cls.example))
    assert step.action == name
    cls.Params.model_validate(step.with_)


@pytest.mark.parametrize("name", list(AWS))
def test_aws_actions_declare_permissions_and_preflight(name: str) -> None:
    cls = AWS[name]
    assert cls.permissions, f"{name} must list the IAM actions it needs"
    assert all(IAM_ACTION.match(p) for p in cls.permissions), cls.permissions
    assert len(set(cls.permissions)) == len(cls.permissions)
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
