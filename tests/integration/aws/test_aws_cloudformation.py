"""cloudformation.apply / cloudformation.check over HTTP against moto."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dr_engine.actions.aws.cloudformation import Apply, ApplyParams, Check, CheckParams
from dr_engine.actions.base import StepContext
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError
from dr_engine.world.faults import FaultControl

pytestmark = pytest.mark.integration
Ctx = Callable[..., StepContext]
REPO = Path(__file__).resolve().parents[3]
TEMPLATE = "stacks/cloudformation/ledger.yaml"


def _apply(address: str = "127.0.2.1", **extra: Any) -> ApplyParams:
    return ApplyParams.model_validate({"stack": "ledger-app", "template": TEMPLATE, "poll_interval": "10ms",
                                       "parameters": {"Environment": "dr", "AppAddress": address}, **extra})


def _ctx(aws_context: Ctx) -> StepContext:
    return aws_context(repo_root=REPO)


def test_apply_creates_the_stack_and_exposes_outputs(moto: Any, aws_context: Ctx, boto: Any) -> None:
    result = Apply().run(_apply(), _ctx(aws_context))
    assert result.changed
    assert result.outputs["AppAddress"] == "127.0.2.1"
    assert result.outputs["QueueUrl"]
    assert result.outputs["stack_status"] == "CREATE_COMPLETE"
    param = boto("ssm", "us-west-2").get_parameter(Name="/ledger/dr/app-address")["Parameter"]["Value"]
    assert param == "127.0.2.1"  # the template's resources really exist in the target region
    assert Check().run(CheckParams(stack="ledger-app", required_outputs=["AppAddress"]),
                       _ctx(aws_context)).outputs["AppAddress"] == "127.0.2.1"


def test_reapply_without_changes_is_success_without_change(moto: Any, aws_context: Ctx) -> None:
    Apply().run(_apply(), _ctx(aws_context))
    again = Apply().run(_apply(), _ctx(aws_context))
    assert not again.changed
    assert "already up to date" in again.summary
    assert again.outputs["AppAddress"] == "127.0.2.1"  # outputs still flow to later steps


def test_apply_with_new_parameters_updates(moto: Any, aws_context: Ctx) -> None:
    Apply().run(_apply(), _ctx(aws_context))
    updated = Apply().run(_apply("127.0.2.7"), _ctx(aws_context))
    assert updated.changed
    assert updated.outputs["AppAddress"] == "127.0.2.7"
    assert updated.outputs["stack_status"] == "UPDATE_COMPLETE"


def test_missing_template_is_a_precondition(moto: Any, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match=r"template stacks/nope.yaml not found"):
        Apply().run(_apply(template="stacks/nope.yaml"), _ctx(aws_context))


def test_invalid_template_fails_permanently_naming_the_call(moto: Any, aws_context: Ctx, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("Outputs:\n  A: {Value: !Ref Missing}\nResources:\n  Q: {Type: AWS::SQS::Queue}\n")
    with pytest.raises(ProviderError, match=r"cloudformation:ValidateTemplate on template .*bad.yaml \(us-west-2\)"):
        Apply().run(_apply(stack="broken", template=str(bad), parameters={}), _ctx(aws_context))


def test_check_of_a_missing_stack(moto: Any, aws_context: Ctx) -> None:
    with pytest.raises(PreconditionFailed, match="stack ledger-app does not exist in us-west-2"):
        Check().run(CheckParams(stack="ledger-app"), _ctx(aws_context))


def test_check_names_missing_outputs(moto: Any, aws_context: Ctx) -> None:
    Apply().run(_apply(), _ctx(aws_context))
    with pytest.raises(PreconditionFailed, match="lacks output\\(s\\) LoadBalancerDns"):
        Check().run(CheckParams(stack="ledger-app", required_outputs=["LoadBalancerDns"]), _ctx(aws_context))


def test_throttled_create_recovers(moto: Any, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("cloudformation", "CreateStack", "throttle", times=2)
    assert Apply().run(_apply(), _ctx(aws_context)).outputs["stack_status"] == "CREATE_COMPLETE"
    assert faults.hits("cloudformation", "CreateStack") == 2


def test_html_500_on_every_try_is_transient(moto: Any, aws_context: Ctx, faults: FaultControl) -> None:
    faults.add("cloudformation", "DescribeStacks", "html500", times=-1)
    with pytest.raises(TransientError, match=r"cloudformation:DescribeStacks on stack ledger-app .*unparseable"):
        Apply().run(_apply(), _ctx(aws_context))


def test_preflight_validates_template_and_parameters(moto: Any, aws_context: Ctx) -> None:
    ctx = _ctx(aws_context)
    checks = Apply().preflight(_apply(), ctx)
    assert all(c.ok for c in checks), checks
    assert any("it will be created" in c.detail for c in checks)
    wrong = Apply().preflight(_apply(parameters={"Nope": "x", "AppAddress": "1"}), ctx)
    assert any(not c.ok and "Nope" in c.detail for c in wrong)
