"""A migrated ``PREFECT_HOME`` for test sessions: Prefect's cold start, paid once.

The first flow run on a fresh home migrates Prefect's SQLite database (seconds on a shared
machine). Test sessions migrate one home in a throw-away subprocess, so the database is closed
and can be copied, and give every test that starts Prefect a copy of it: no two Prefect
servers ever write the same SQLite file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: A flow run that makes Prefect create and migrate its database.
WARM_UP = """
from prefect import flow
@flow(persist_result=False)
def warm_up() -> int:
    return 1
assert warm_up() == 1
"""


def migrate_home(home: Path, env: Mapping[str, str], timeout: float = 300.0) -> Path:
    """Migrate the Prefect database in ``home`` with a throw-away flow run; returns ``home``.

    ``env`` is the child's whole environment (embedded-mode settings and ``PREFECT_HOME=home``).
    Raises RuntimeError with the child's output when the run fails.
    """
    done = subprocess.run([sys.executable, "-c", WARM_UP], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0 or not (home / "prefect.db").is_file():
        raise RuntimeError(f"warming up Prefect in {home} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return home


__all__ = ["WARM_UP", "migrate_home"]
