"""``dr iam-policy RUNBOOK``: the IAM policy a runbook needs, as JSON."""

from __future__ import annotations

import typer

from dr_engine.cli.common import err, handle_errors, print_json
from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.planning.iam import policy_document, required_permissions


@handle_errors
def iam_policy_cmd(
    runbook: str = typer.Argument(..., help="Runbook name (runbooks/NAME.yaml) or path."),
    explain: bool = typer.Option(False, "--explain", help="Also list, on stderr, which steps need each action."),
    drill: bool = typer.Option(False, "--drill", help="Add what drill cleanup needs, scoped to drill copies."),
) -> None:
    """Print the least-privilege IAM policy JSON for the runbook's AWS steps."""
    loaded = load_runbook(resolve_runbook(runbook))
    document = policy_document(loaded, drill=drill)
    if not document["Statement"]:
        err().print(f"runbook {loaded.runbook.runbook} has no AWS steps: the policy is empty", markup=False)
    if explain:
        for permission, steps in required_permissions(loaded).items():
            err().print(f"{permission}: {', '.join(steps)}", markup=False)
    print_json(document)


def register(app: typer.Typer) -> None:
    """Attach ``iam-policy`` to the root app."""
    app.command("iam-policy")(iam_policy_cmd)
