"""Real Prefect in embedded (ephemeral) mode, with a PREFECT_HOME migrated once per test session.

The session home is migrated by a throw-away subprocess (so its database is closed and can be
copied). In-process flow tests share it; each subprocess test gets its own copy, so no two
Prefect servers ever write the same SQLite file.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect_kit import quiet_env

from dr_engine.flows.settings import EMBEDDED_SETTINGS
from dr_engine.testing.prefect_home import migrate_home


@pytest.fixture(scope="session")
def migrated_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFECT_HOME whose database is already migrated (cold start happens once)."""
    home = tmp_path_factory.mktemp("prefect-home")
    return migrate_home(home, quiet_env(home))


@pytest.fixture
def prefect_home_copy(migrated_prefect_home: Path, tmp_path: Path) -> Path:
    """A private copy of the migrated home for one subprocess test."""
    copy = tmp_path / "prefect-home"
    shutil.copytree(migrated_prefect_home, copy)
    return copy


@pytest.fixture(scope="session")
def in_process_prefect(migrated_prefect_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Configure this process for embedded Prefect on a private copy of the migrated home."""
    home = tmp_path_factory.mktemp("prefect-home-inproc")
    shutil.copytree(migrated_prefect_home, home, dirs_exist_ok=True)
    saved = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    for key in saved:
        del os.environ[key]
    # WARNING: Prefect logs "Stopping temporary server" at interpreter exit, after pytest has
    # closed the captured streams; at INFO that message fails to print.
    os.environ.update({**EMBEDDED_SETTINGS, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"})
    if "prefect" in sys.modules:
        # Prefect read its settings at import; make it see ours.
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    yield home
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update(saved)
