"""Least-privilege IAM policy for a runbook, from the permissions its steps' actions declare.

One ``Allow`` statement per AWS service, listing exactly the IAM actions the runbook's steps
need. Resources are ``*``: actions declare IAM *actions*, not resource ARNs, so scoping
resources (e.g. to one hosted zone or Auto Scaling group) is left to the policy's owner.
"""

from __future__ import annotations

from typing import Any

from dr_engine.loader import LoadedRunbook

POLICY_VERSION = "2012-10-17"


def required_permissions(loaded: LoadedRunbook) -> dict[str, list[str]]:
    """IAM action -> ids of the steps that need it."""
    needed: dict[str, list[str]] = {}
    for step in loaded.runbook.steps:
        for permission in loaded.actions[step.id].permissions:
            needed.setdefault(permission, []).append(step.id)
    return dict(sorted(needed.items()))


def policy_document(loaded: LoadedRunbook) -> dict[str, Any]:
    """A valid IAM policy document (Version, Statement[Sid, Effect, Action, Resource])."""
    by_service: dict[str, list[str]] = {}
    for permission in required_permissions(loaded):
        by_service.setdefault(permission.split(":", 1)[0], []).append(permission)
    statements = [
        {"Sid": "DrEngine" + "".join(part.capitalize() for part in service.replace("-", " ").split()),
         "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}
        for service, actions in sorted(by_service.items())
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}
