"""Reliability suite: the fast subset runs by default, the full matrix with ``-m reliability_full``.

Tests marked ``reliability_full`` are deselected unless the ``-m`` expression names that
marker (``make test-full``) or ``DR_RELIABILITY_FULL=1`` is set. At the end of the session the
scenario ledger (:mod:`reliability_kit`) is printed as a table and written to
``.dr/reliability/summary.md`` and ``summary.json`` (or ``$DR_RELIABILITY_SUMMARY_DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import reliability_kit as kit
from reliability_kit import quiet_env

from dr_engine.flows.server import PrefectServer
from dr_engine.testing.prefect_home import migrate_home

FULL = "reliability_full"


def _full_requested(config: pytest.Config) -> bool:
    return FULL in (config.getoption("markexpr", "") or "") or os.environ.get("DR_RELIABILITY_FULL") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the full matrix unless asked for (it is not skipped: it simply is not collected)."""
    if _full_requested(config):
        return
    keep = [item for item in items if item.get_closest_marker(FULL) is None]
    dropped = [item for item in items if item.get_closest_marker(FULL) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _table() -> list[str]:
    rows = kit.summary_rows()
    totals = kit.totals()
    lines = ["| area | scenario | expected | actual | safety |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines += ["", f"scenarios: {totals['scenarios']}, recovered: {totals['recovered']}, "
                  f"halted safely: {totals['halted_safely']}, unexpected outcome: {totals['unexpected']}, "
                  f"unsafe: {totals['unsafe']}"]
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Print the scenario table and write it to the summary directory."""
    if not kit.LEDGER:
        return
    lines = _table()
    terminalreporter.section("dr-engine reliability summary")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path(os.environ.get("DR_RELIABILITY_SUMMARY_DIR") or config.rootpath / ".dr" / "reliability")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text("# Reliability summary\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
        (out / "summary.json").write_text(json.dumps({
            "totals": kit.totals(), "full_matrix": _full_requested(config),
            "scenarios": [v.__dict__ for v in kit.LEDGER]}, indent=2) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"written to {out / 'summary.md'}")
    except OSError as exc:  # a read-only checkout must not fail the session
        terminalreporter.write_line(f"could not write the summary to {out}: {exc}")


# ---------------------------------------------------------------------------------- Prefect

@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFECT_HOME whose database is migrated (so copies of it start fast)."""
    home = tmp_path_factory.mktemp("rel-prefect-home")
    return migrate_home(home, quiet_env(home))


@pytest.fixture(scope="session")
def prefect_server(migrated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `prefect server` of our own on a free port (its API URL); stopped by its process group."""
    home = tmp_path_factory.mktemp("rel-prefect-server")
    shutil.copytree(migrated_home, home, dirs_exist_ok=True)
    server = PrefectServer(home)
    try:
        yield server.start()
    finally:
        server.stop(30)
