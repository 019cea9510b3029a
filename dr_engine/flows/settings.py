"""Prefect settings for dr-engine runs (no Prefect import here, so it can run before one).

Two modes:

- **embedded** (``PREFECT_API_URL`` unset, the default): Prefect starts a temporary local
  server on the first flow call. We make it quiet and fast: ``PREFECT_HOME`` under the state
  dir (or the caller's ``PREFECT_HOME`` if set), no analytics (no outbound DNS lookups), the
  task-run recorder and event persister off (they lock SQLite and turn into 2 s client
  retries), and a 90 s startup timeout for a cold first start (migrations).
- **server** (``PREFECT_API_URL`` set): nothing is changed; runs appear in that server's UI.

Call :func:`configure` before ``import prefect``: Prefect reads its settings at import time.
The flow-run heartbeat is switched off in code by ``dr_engine.flows.failover`` for these non-deployment
runs (it cannot be set by environment variable).
"""

from __future__ import annotations

import os
from pathlib import Path

from dr_engine.evidence.statedir import StateDir

#: Quiet, fast settings for embedded runs (docs/concepts/execution.md, "Embedded Prefect (default) and a
#: Prefect server" says why each one).
EMBEDDED_SETTINGS: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}

#: Settings for both modes: dr-engine's step logs go to Prefect's run logs.
COMMON_SETTINGS: dict[str, str] = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "dr_engine",
}


def server_mode() -> bool:
    """True when runs go to the Prefect server named by ``PREFECT_API_URL``."""
    return bool(os.environ.get("PREFECT_API_URL"))


def embedded_settings(state_dir: StateDir | Path) -> dict[str, str]:
    """The environment an embedded run needs (``PREFECT_HOME`` included)."""
    home = os.environ.get("PREFECT_HOME") or str(StateDir.of(state_dir).prefect_home.resolve())
    return {**EMBEDDED_SETTINGS, **COMMON_SETTINGS, "PREFECT_HOME": home}


def configure(state_dir: StateDir | Path, *, quiet_console: bool = False) -> dict[str, str]:
    """Set the Prefect environment for this process (values already set by the user win).

    With ``quiet_console``, Prefect's own console logging is limited to warnings (the CLI
    draws its own progress). Returns the variables that were set.
    """
    wanted = dict(COMMON_SETTINGS) if server_mode() else embedded_settings(state_dir)
    if quiet_console:
        wanted["PREFECT_LOGGING_LEVEL"] = "WARNING"
    applied: dict[str, str] = {}
    for key, value in wanted.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    home = os.environ.get("PREFECT_HOME")
    if home and not server_mode():
        Path(home).mkdir(parents=True, exist_ok=True)
    return applied


__all__ = ["COMMON_SETTINGS", "EMBEDDED_SETTINGS", "configure", "embedded_settings", "server_mode"]
