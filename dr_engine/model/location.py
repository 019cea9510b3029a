"""Where a run's runbook lives, as plain data (no I/O): actions resolve repository files against it.

Terraform stacks and CloudFormation templates are named relative to the repository root in a
runbook, so a run must find them whatever the current directory is. The engine builds one
:class:`RunbookLocation` per run from the runbook's path; ``RunOptions.repo_root`` overrides the
root (a checkout elsewhere, tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunbookLocation:
    """The runbook file of a run and the repository root its relative paths start from."""

    #: The runbook file, absolute (None: a step run outside any runbook, e.g. from a test).
    runbook_path: Path | None = None
    #: The folder above ``runbooks/`` unless overridden (None: unknown).
    repo_root: Path | None = None

    @classmethod
    def of(cls, runbook_path: Path, *, repo_root: Path | None = None) -> RunbookLocation:
        """The location of ``runbook_path``: ``repo_root`` defaults to the folder above ``runbooks/``."""
        path = runbook_path.resolve()
        return cls(runbook_path=path, repo_root=repo_root if repo_root is not None else path.parent.parent)

    def bases(self) -> list[Path]:
        """Folders a relative repository path is looked up in, in order: the root, then beside the runbook."""
        found = [self.repo_root] if self.repo_root is not None else []
        if self.runbook_path is not None:  # runbooks/<name>.yaml -> the repository root
            found.append(self.runbook_path.parent.parent)
        return found


__all__ = ["RunbookLocation"]
