"""Write small runbooks (and their two regions) into a temporary folder, and plan them.

For unit tests of the engine with the fake actions of :mod:`dr_engine.testing.actions`::

    plan = plan_from_steps(tmp_path, '''
      - id: a
        action: fake.noop
    ''')
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from dr_engine.config.loader import load_runbook
from dr_engine.planning.plan import ExecutionPlan, build_plan

SOURCE_REGION = """name: east
params: {addr: 127.0.1.1, port: 5432}
secrets: {token: {env: DR_TEST_EAST_TOKEN}}
"""
TARGET_REGION = """name: west
params: {addr: 127.0.2.1, port: 5433}
secrets: {token: {env: DR_TEST_WEST_TOKEN}}
"""


def write_regions(folder: Path) -> Path:
    """Create ``folder/regions/{east,west}.yaml`` and return the regions folder."""
    regions = folder / "regions"
    regions.mkdir(parents=True, exist_ok=True)
    (regions / "east.yaml").write_text(SOURCE_REGION, encoding="utf-8")
    (regions / "west.yaml").write_text(TARGET_REGION, encoding="utf-8")
    return regions


def write_runbook(folder: Path, steps: str, *, name: str = "test-app", rto: str = "5m", rpo: str = "0s",
                  extra: str = "") -> Path:
    """Write ``folder/runbooks/<name>.yaml`` (east -> west) with the given ``steps:`` YAML list."""
    write_regions(folder)
    runbooks = folder / "runbooks"
    runbooks.mkdir(parents=True, exist_ok=True)
    path = runbooks / f"{name}.yaml"
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    path.write_text(f"runbook: {name}\nsource: east\ntarget: west\nobjectives: {{rto: {rto}, rpo: {rpo}}}\n"
                    f"{extra}steps:\n{body}\n", encoding="utf-8")
    return path


def plan_from_steps(folder: Path, steps: str, **kwargs: str) -> ExecutionPlan:
    """Write a runbook with ``steps`` and return its checked plan."""
    path = write_runbook(folder, steps, **kwargs)
    return build_plan(load_runbook(path, regions_dir=folder / "regions"))


__all__ = ["plan_from_steps", "write_regions", "write_runbook"]
