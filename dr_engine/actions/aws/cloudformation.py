"""CloudFormation actions: ``cloudformation.apply`` (stack.apply) and ``cloudformation.check`` (stack.check).

``apply`` creates or updates a stack from a template file kept in the repository, waits for the
stack to settle and exposes its outputs as step outputs (``${steps.ID.OutputKey}``).
"No updates are to be performed" is success with ``changed=False``. A stack found mid-operation
(e.g. after a crash of a previous run) is waited for first, so re-running is safe.

Template paths are relative to the repository: the current directory, then the run's repository
root, then the folder above the runbook (both from ``ctx.runbook_location``).
Templates are sent inline (``TemplateBody``), which CloudFormation limits to 51,200 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field

from dr_engine.actions.aws.base import AwsAction, AwsParams, PollingParams, checked, connect, identity_check, poll
from dr_engine.actions.base import PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, ProviderError
from dr_engine.providers.aws.cloudformation import CloudFormation

#: Largest inline template CloudFormation accepts.
MAX_TEMPLATE_BYTES = 51_200
COMPLETE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
#: Stable states from which an update may start (a failed update rolled back to a working stack).
UPDATABLE = COMPLETE | {"UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}

StackName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9-]*$", max_length=128)]


class ApplyParams(PollingParams):
    """Parameters of ``cloudformation.apply``."""

    stack: StackName = Field(description="Stack name in the region")
    template: str = Field(description="Template file, relative to the repository root")
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list, description="e.g. CAPABILITY_IAM")
    tags: dict[str, str] = Field(default_factory=dict)


class CheckParams(AwsParams):
    """Parameters of ``cloudformation.check``."""

    stack: StackName
    required_outputs: list[str] = Field(default_factory=list, description="Outputs that must exist")


def template_path(template: str, ctx: StepContext) -> Path:
    """Find the template file (see the module docstring); PreconditionFailed when missing."""
    path = Path(template)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute():
        candidates += [base / path for base in ctx.runbook_location.bases()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PreconditionFailed(f"CloudFormation template {template} not found (looked in "
                             f"{', '.join(str(c.parent) for c in candidates)})",
                             hint="paths are relative to the repository root; run dr from there")


def read_template(template: str, ctx: StepContext) -> str:
    """The template text, refusing what CloudFormation would refuse inline."""
    path = template_path(template, ctx)
    body = path.read_text(encoding="utf-8")
    if len(body.encode()) > MAX_TEMPLATE_BYTES:
        raise ProviderError(f"template {template} is {len(body.encode())} bytes; inline templates are limited "
                            f"to {MAX_TEMPLATE_BYTES}", hint="split the stack into nested stacks or shrink it")
    return body


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that accepts CloudFormation's short-form tags (``!Ref``, ``!Sub``...)."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def declared_parameters(body: str) -> set[str] | None:
    """Parameter names a template declares (None when the text cannot be read as YAML/JSON)."""
    try:
        document = yaml.load(body, Loader=_TemplateLoader)  # a SafeLoader subclass: plain data only
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    return set(document.get("Parameters") or {})


def outputs_of(stack: dict[str, Any]) -> dict[str, str]:
    """Stack outputs as step outputs, plus the stack id and status."""
    found = {str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in stack.get("Outputs", []) or []}
    return {**found, "stack_id": str(stack.get("StackId", "")), "stack_status": str(stack.get("StackStatus", ""))}


def _settled(api: CloudFormation, stack: str, ctx: StepContext, interval: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = api.describe(stack)
        if found is None:
            raise ProviderError(f"stack {stack} disappeared while waiting for it ({api.region_name})",
                                hint="someone deleted it; re-run the step to create it again")
        return None if str(found["StackStatus"]).endswith("_IN_PROGRESS") else found

    return poll(ctx, f"waiting for stack {stack} to settle", probe, interval)


def _failed(api: CloudFormation, stack: str, status: str, doing: str) -> ProviderError:
    reasons = "; ".join(api.failure_reasons(stack)) or "no failed resource events"
    hint = ("delete the stack (it never reached CREATE_COMPLETE), then re-run"
            if status == "ROLLBACK_COMPLETE" else "fix the template or parameters, then re-run")
    return ProviderError(f"stack {stack} {doing} ended in {status} ({api.region_name}): {reasons}", hint=hint)


@register
class Apply(AwsAction[ApplyParams]):
    """Create or update a CloudFormation stack from a repository template; expose its outputs.

    Real CloudFormation takes minutes; moto creates every resource at once (the wait ends on the
    first probe).
    """

    name = "cloudformation.apply"
    capability = Capability.STACK_APPLY
    Params = ApplyParams
    permissions = ("cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
                   "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:ValidateTemplate")
    # Create/update only: never DeleteStack (a stack in ROLLBACK_COMPLETE is left to a person).
    # Drills delete their own copies, and only those (named <stack>-drill).
    drill_permissions = (("cloudformation:DeleteStack", "arn:aws:cloudformation:*:*:stack/*-drill/*"),)
    example = (
        "id: apply-stack\naction: cloudformation.apply\n"
        "with:\n  stack: ledger-app\n  template: stacks/cloudformation/ledger.yaml\n"
        "  parameters: {AppAddress: 127.0.2.1}\n"
    )

    def run(self, params: ApplyParams, ctx: StepContext) -> StepResult:
        """Observe the stack, create or update it, wait, and return its outputs."""
        body = read_template(params.template, ctx)
        api = connect(CloudFormation, self.region(params, ctx), ctx)
        # Validate first: a broken template fails here with a clear, permanent error.
        api.validate(body, params.template)
        values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.parameters.items()}
        stack = api.describe(params.stack)
        if stack is not None and str(stack["StackStatus"]).endswith("_IN_PROGRESS"):
            ctx.log.info("stack %s is %s; waiting for it before applying", params.stack, stack["StackStatus"])
            stack = _settled(api, params.stack, ctx, params.poll_interval)
        if stack is None:
            ctx.log.info("creating stack %s in %s from %s", params.stack, api.region_name, params.template)
            api.create(params.stack, body, values, params.capabilities, params.tags)
            doing, expected = "create", "CREATE_COMPLETE"
        else:
            status = str(stack["StackStatus"])
            if status not in UPDATABLE:
                raise _failed(api, params.stack, status, "found")
            if not api.update(params.stack, body, values, params.capabilities, params.tags):
                ctx.log.info("stack %s is already up to date", params.stack)
                return StepResult(summary=f"stack {params.stack} already up to date ({status})", changed=False,
                                  outputs=outputs_of(stack), facts={"stack": params.stack, "status": status})
            doing, expected = "update", "UPDATE_COMPLETE"
        final = _settled(api, params.stack, ctx, params.poll_interval)
        if final["StackStatus"] != expected:
            raise _failed(api, params.stack, str(final["StackStatus"]), doing)
        outputs = outputs_of(final)
        return StepResult(summary=f"stack {params.stack} {doing}d ({expected}) in {api.region_name}",
                          outputs=outputs, facts={"stack": params.stack, "status": expected,
                                                  "outputs": sorted(k for k in outputs if k[0].isupper())})

    def preflight(self, params: ApplyParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials, template validity (ValidateTemplate) and the stack's current state."""
        region = self.region(params, ctx)
        checks = [identity_check(region, ctx)]

        def template() -> str:
            body = read_template(params.template, ctx)
            connect(CloudFormation, region, ctx).validate(body, params.template)
            declared = declared_parameters(body) or set()
            unknown = sorted(set(params.parameters) - declared)
            if unknown:
                raise PreconditionFailed(f"parameters not declared by the template: {', '.join(unknown)}")
            return f"valid; parameters {', '.join(sorted(declared)) or '-'}"

        def state() -> str:
            found = connect(CloudFormation, region, ctx).describe(params.stack)
            if found is None:
                return "does not exist yet: it will be created"
            status = str(found["StackStatus"])
            if status not in UPDATABLE and not status.endswith("_IN_PROGRESS"):
                raise PreconditionFailed(f"stack is {status}; it cannot be updated")
            return f"exists ({status}): it will be updated"

        checks.append(checked(f"template {params.template}", template))
        checks.append(checked(f"stack {params.stack} in {region.name}", state))
        return checks

    def describe(self, params: ApplyParams) -> str:
        """Stack and template."""
        return f"stack {params.stack} <- {params.template}"


@register
class Check(AwsAction[CheckParams]):
    """Check that a stack exists, is complete and has the required outputs (exposed as step outputs)."""

    name = "cloudformation.check"
    capability = Capability.STACK_CHECK
    Params = CheckParams
    permissions = ("cloudformation:DescribeStacks",)
    example = "id: check-stack\naction: cloudformation.check\nwith: {stack: ledger-app, required_outputs: [QueueUrl]}\n"

    def _check(self, params: CheckParams, ctx: StepContext) -> dict[str, Any]:
        api = connect(CloudFormation, self.region(params, ctx), ctx)
        stack = api.describe(params.stack)
        if stack is None:
            raise PreconditionFailed(f"stack {params.stack} does not exist in {api.region_name}",
                                     hint="apply it first (cloudformation.apply)")
        if stack["StackStatus"] not in COMPLETE:
            raise PreconditionFailed(f"stack {params.stack} is {stack['StackStatus']}, not complete",
                                     hint="wait for the running operation or repair the stack")
        missing = sorted(set(params.required_outputs) - set(outputs_of(stack)))
        if missing:
            raise PreconditionFailed(f"stack {params.stack} lacks output(s) {', '.join(missing)}",
                                     hint="add them to the template's Outputs")
        return stack

    def run(self, params: CheckParams, ctx: StepContext) -> StepResult:
        """Describe the stack; PreconditionFailed when missing, incomplete or lacking outputs."""
        stack = self._check(params, ctx)
        return StepResult(summary=f"stack {params.stack} is {stack['StackStatus']}", changed=False,
                          outputs=outputs_of(stack), facts={"stack": params.stack, "status": stack["StackStatus"]})

    def preflight(self, params: CheckParams, ctx: StepContext) -> list[PreflightCheck]:
        """Credentials and the same check as the step (it is read-only)."""
        region = self.region(params, ctx)
        return [identity_check(region, ctx),
                checked(f"stack {params.stack} in {region.name}",
                        lambda: str(self._check(params, ctx)["StackStatus"]))]
