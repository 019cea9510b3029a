"""CloudFormation: describe, validate, create and update stacks; read failure reasons."""

from __future__ import annotations

from typing import Any

from dr_engine.providers.aws.api import AwsApi
from dr_engine.providers.aws.errors import error_code

NO_UPDATES = "No updates are to be performed"


def _missing_stack(exc: BaseException) -> bool:
    # CloudFormation reports a missing stack as a generic ValidationError; only the text differs.
    return error_code(exc) == "ValidationError" and "does not exist" in str(exc)


def _no_updates(exc: BaseException) -> bool:
    return error_code(exc) == "ValidationError" and NO_UPDATES in str(exc)


def _params(parameters: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())]


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


class CloudFormation(AwsApi):
    """CloudFormation in one region."""

    service = "cloudformation"

    def describe(self, stack: str) -> dict[str, Any] | None:
        """The stack description, or None when no such (live) stack exists."""
        found = self.call("describe_stacks", f"stack {stack}", absent_if=_missing_stack, StackName=stack)
        if found is None or not found.get("Stacks"):
            return None
        described: dict[str, Any] = found["Stacks"][0]
        return None if described.get("StackStatus") == "DELETE_COMPLETE" else described

    def validate(self, body: str, name: str) -> dict[str, Any]:
        """ValidateTemplate (raises ProviderError naming the template when invalid)."""
        result: dict[str, Any] = self.call("validate_template", f"template {name}", TemplateBody=body)
        return result

    def create(self, stack: str, body: str, parameters: dict[str, str], capabilities: list[str],
               tags: dict[str, str]) -> str:
        """CreateStack; return the stack id."""
        done = self.call("create_stack", f"stack {stack}", StackName=stack, TemplateBody=body,
                         Parameters=_params(parameters), Capabilities=capabilities, Tags=_tags(tags))
        return str(done["StackId"])

    def update(self, stack: str, body: str, parameters: dict[str, str], capabilities: list[str],
               tags: dict[str, str]) -> bool:
        """UpdateStack; False when CloudFormation says there is nothing to update."""
        done = self.call("update_stack", f"stack {stack}", absent_if=_no_updates, StackName=stack,
                         TemplateBody=body, Parameters=_params(parameters), Capabilities=capabilities,
                         Tags=_tags(tags))
        return done is not None

    def delete(self, stack: str) -> None:
        """DeleteStack (asynchronous: poll :meth:`describe` until it returns None)."""
        self.call("delete_stack", f"stack {stack}", StackName=stack)

    def failure_reasons(self, stack: str, limit: int = 5) -> list[str]:
        """The most recent failed resource events, newest first (for error messages)."""
        found = self.call("describe_stack_events", f"stack {stack}", absent_if=_missing_stack, StackName=stack)
        reasons: list[str] = []
        for event in (found or {}).get("StackEvents", []):
            if str(event.get("ResourceStatus", "")).endswith("FAILED"):
                reasons.append(f"{event.get('LogicalResourceId')}: {event.get('ResourceStatusReason', '')}")
            if len(reasons) >= limit:
                break
        return reasons
