"""Least-privilege IAM policy for a runbook, from the permissions its steps' actions declare.

One ``Allow`` statement per AWS service, listing exactly the IAM actions the runbook's steps
need. Resources are ``*``: actions declare IAM *actions*, not resource ARNs, so scoping
resources (e.g. to one hosted zone or Auto Scaling group) is left to the policy's owner.
"""

from __future__ import annotations

from typing import Any

from dr_engine.config.loader import LoadedRunbook

POLICY_VERSION = "2012-10-17"


def required_permissions(loaded: LoadedRunbook) -> dict[str, list[str]]:
    """IAM action -> ids of the steps that need it."""
    needed: dict[str, list[str]] = {}
    for step in loaded.runbook.steps:
        for permission in loaded.actions[step.id].permissions:
            needed.setdefault(permission, []).append(step.id)
    return dict(sorted(needed.items()))


def drill_permissions(loaded: LoadedRunbook) -> dict[str, list[str]]:
    """Resource ARN pattern -> the extra IAM actions drill cleanup needs on it."""
    needed: dict[str, set[str]] = {}
    for step in loaded.runbook.steps:
        for permission, resource in loaded.actions[step.id].drill_permissions:
            needed.setdefault(resource, set()).add(permission)
    return {resource: sorted(actions) for resource, actions in sorted(needed.items())}


def _sid(*words: str) -> str:
    return "DrEngine" + "".join(part.capitalize() for word in words for part in word.replace("-", " ").split())


def policy_document(loaded: LoadedRunbook, *, drill: bool = False) -> dict[str, Any]:
    """A valid IAM policy document (Version, Statement[Sid, Effect, Action, Resource]).

    With ``drill``, also what drill cleanup needs (e.g. deleting ``<stack>-drill`` copies), each
    scoped to the resources the drill creates, never ``*``.
    """
    by_service: dict[str, list[str]] = {}
    for permission in required_permissions(loaded):
        by_service.setdefault(permission.split(":", 1)[0], []).append(permission)
    statements = [
        {"Sid": _sid(service), "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}
        for service, actions in sorted(by_service.items())
    ]
    if drill:
        for number, (resource, actions) in enumerate(drill_permissions(loaded).items(), start=1):
            statements.append({"Sid": _sid("drill", "cleanup", str(number)), "Effect": "Allow",
                               "Action": actions, "Resource": resource})
    return {"Version": POLICY_VERSION, "Statement": statements}
