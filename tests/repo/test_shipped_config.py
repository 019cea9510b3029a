"""Every shipped runbook and region validates and plans; `dr validate` with no arguments passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dr_engine.config.evacuation import is_evacuation_file, load_evacuation
from dr_engine.config.loader import load_region, load_runbook
from dr_engine.planning.evacuation import build_evacuation_plan
from dr_engine.planning.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "runbooks").glob("*.yaml"))
PLANS = [p for p in SHIPPED if is_evacuation_file(p)]
RUNBOOKS = [p for p in SHIPPED if p not in PLANS]
REGIONS = sorted((REPO / "regions").glob("*.yaml"))


def test_something_is_shipped() -> None:
    assert RUNBOOKS and PLANS and len(REGIONS) >= 2


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_evacuation_plan_validates_and_plans(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    plan = build_evacuation_plan(load_evacuation(path, regions_dir=REPO / "regions"))
    assert plan.name == path.stem, "a plan's name matches its file name"
    assert {a.name for a in plan.applications} == {n for wave in plan.waves for n in wave}


@pytest.mark.parametrize("path", REGIONS, ids=lambda p: p.name)
def test_region_validates(path: Path) -> None:
    assert load_region(path).name == path.stem


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_validates_and_plans(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    plan = build_plan(load_runbook(path, regions_dir=REPO / "regions"))
    assert plan.loaded.runbook.runbook == path.stem, "a runbook's name matches its file name"
    assert all(check.ok for check in plan.checks)
    assert plan.rto_stop in {s.id for s in plan.steps}


def test_dr_validate_with_no_arguments_passes() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DR_REGIONS_DIR", "DR_RUNBOOKS_DIR")}
    dr = Path(sys.executable).with_name("dr")
    done = subprocess.run([str(dr), "validate", "--output", "json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert {f["file"] for f in data["files"]} == {str(p.relative_to(REPO)) for p in SHIPPED + REGIONS}
    assert {f["kind"] for f in data["files"]} == {"runbook", "region", "evacuation"}
