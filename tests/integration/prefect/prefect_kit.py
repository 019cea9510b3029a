"""Helpers shared by the Prefect integration tests (environment of `dr` subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dr_engine.flows.settings import EMBEDDED_SETTINGS

REPO = Path(__file__).resolve().parents[3]
DR = str(Path(sys.executable).parent / "dr")


def quiet_env(home: Path) -> dict[str, str]:
    """The environment of a `dr` subprocess in embedded mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DR_STATE_DIR"}
    env.update(EMBEDDED_SETTINGS)
    env.update({"PREFECT_HOME": str(home), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    return env


def dr(args: list[str], home: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `dr` command like a user would, without a terminal."""
    return subprocess.run([DR, *args], cwd=cwd, env=quiet_env(home), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
