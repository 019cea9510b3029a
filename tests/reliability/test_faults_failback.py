"""Faults during a failback (``runbooks/core-banking-failback.yaml``) in a real world.

Each scenario first fails the world over for real (core-banking, source region frozen), lets
the home region recover, then runs the failback with a fault injected the moment the chosen
step starts. The invariants are the failover's, seen from the failback's side: never two
writable primaries, the public name never moves home before home was verified, the audit chain
verifies, a halted run resumes to success once the fault is repaired. A switchover whose old
primary did not stop cleanly must halt: zero data loss could not be proven.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import reliability_kit as kit
import yaml
from reliability_kit import CONNECT, REPO, TIMEOUT
from world_kit import dns_answer, started_world, writable_primaries

from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunRecord, RunStatus
from dr_engine.model import RunMode
from dr_engine.planning.plan import build_plan
from dr_engine.world import World

pytestmark = pytest.mark.integration

Action = Callable[[World], None]
FAILBACK = REPO / "runbooks" / "core-banking-failback.yaml"


def home(world: World) -> str:
    """The failback's target: the region the failover left."""
    return world.config.source


def recovery(world: World) -> str:
    """The failback's source: the region that serves since the failover."""
    return world.config.target


def kill_pg(region_of: Callable[[World], str], sig: signal.Signals = signal.SIGKILL) -> Action:
    """Signal every process of a region's PostgreSQL server."""
    def fault(world: World) -> None:
        assert world.pg is not None
        assert world.pg.signal_node(region_of(world), sig), f"{region_of(world)} is not running"

    return fault


def start_pg(region_of: Callable[[World], str]) -> Action:
    """Repair: start a region's server again, in whatever role its data directory holds."""
    def repair(world: World) -> None:
        assert world.pg is not None
        world.pg.start_node(region_of(world))

    return repair


def freeze_app(region_of: Callable[[World], str]) -> Action:
    """Freeze a region's ledger app (its health checks time out)."""
    return lambda world: os.kill(world._apps[region_of(world)].pid, signal.SIGSTOP)


def continue_everything(world: World) -> None:
    """Repair: continue every frozen process."""
    world.restore_region(world.config.source)
    world.restore_region(world.config.target)


def _runbook(tmp_path: Path, timeouts: dict[str, str]) -> Path:
    data = yaml.safe_load(FAILBACK.read_text())
    for step in data["steps"]:
        step["timeout"] = timeouts.get(step["id"], step.get("timeout"))
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    path = tmp_path / "runbooks" / FAILBACK.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _probe(world: World, home_verified: bool) -> list[str]:
    """Real-state violations: two writable primaries, or the public name home before home was verified."""
    continue_everything(world)
    problems: list[str] = []
    primaries = writable_primaries(world)
    if len(primaries) > 1:
        problems.append(f"two writable primaries: {primaries}")
    with contextlib.suppress(Exception):  # BIND may be down in that scenario: checked by the test
        if dns_answer(world) == [world.config.source_addr] and not home_verified:
            problems.append("public name points home although home was never verified")
    return problems


def run_failback_scenario(name: str, tmp_path: Path, expect: kit.Expect, *, step: str, fault: Action,
                          repair: Action | None = None, timeouts: dict[str, str] | None = None) -> RunRecord:
    """Fail over, recover the home region, then fail back with ``fault`` injected when ``step`` starts."""
    with started_world() as world:
        state = tmp_path / "state"
        world.fail_region(world.config.source)
        over = start_run(build_plan(load_runbook(REPO / "runbooks" / "core-banking.yaml",
                                                 regions_dir=world.regions_dir)),
                         RunOptions(state_dir=state, reason="region outage", repo_root=REPO))
        assert over.status is RunStatus.SUCCEEDED, over.error  # the set-up, not the scenario
        world.restore_region(world.config.source)

        runbook = _runbook(tmp_path, timeouts or {})
        plan = kit.remember_plan(build_plan(load_runbook(runbook, regions_dir=world.regions_dir)))
        inject = kit.InjectAt(step, lambda: fault(world))
        record = start_run(plan, RunOptions(mode=RunMode.FAILBACK, state_dir=state, triggered_by="reliability",
                                            reason="home region recovered", seed=3), progress=inject)
        assert inject.fired == 1, f"the fault at {step} never fired"
        statuses = {s.id: s.status.value for s in record.steps}
        real = _probe(world, home_verified=statuses["verify-app-home"] == "succeeded")
        verdict = kit.judge(name, "failback", expect, plan, record, state, real_checks=real)
        kit.assert_verdict(verdict, expect, record)
        if expect.outcome == "recovered" or repair is not None:
            if repair is not None:
                repair(world)
                if timeouts:  # the operator restores the real deadlines and resumes with --force (audited)
                    runbook.write_text(FAILBACK.read_text())
                record = resume_run(state, record.run_id, force=bool(timeouts))
            assert record.status is RunStatus.SUCCEEDED, record.error
            assert dns_answer(world) == [world.config.source_addr]
            assert writable_primaries(world) == [world.config.source]
            assert record.rows_lost == 0
        elif statuses["shift-dns"] != "succeeded":
            assert dns_answer(world) == [world.config.target_addr]  # customers stay where it is safe
        return record


# ----------------------------------------------------------------------- fast subset


def test_unclean_stop_of_the_current_primary_halts_the_switchover(tmp_path: Path) -> None:
    # Frozen at the fence, the current primary can only be killed: its last WAL may never have
    # reached home, so the switchover must refuse rather than promote on a guess.
    record = run_failback_scenario(
        "current primary frozen mid fence-current (unclean stop)", tmp_path,
        kit.Expect("halted", "switchover", ("PreconditionFailed",), r"not shut down cleanly|zero data loss"),
        step="fence-current", fault=kill_pg(recovery, signal.SIGSTOP))
    assert record.step("fence-current").status.value == "succeeded"


# ----------------------------------------------------------------------- full matrix

FULL: list[tuple[str, str, Action, kit.Expect, Action | None, dict[str, str]]] = [
    ("current primary killed mid rejoin-home", "rejoin-home", kill_pg(recovery),
     kit.Expect("halted", "rejoin-home", ("TransientError", "StepTimeout", "PreconditionFailed", "ProviderError"),
                CONNECT), start_pg(recovery), {"rejoin-home": "5s"}),
    ("home standby killed mid switchover", "switchover", kill_pg(home),
     kit.Expect("halted", "switchover", ("TransientError", "StepTimeout", "ProviderError"), CONNECT),
     start_pg(home), {"switchover": "5s"}),
    ("new home primary killed mid rejoin-recovery", "rejoin-recovery", kill_pg(home),
     kit.Expect("halted", "rejoin-recovery", ("TransientError", "StepTimeout", "PreconditionFailed",
                                              "ProviderError"), CONNECT),
     start_pg(home), {"rejoin-recovery": "5s"}),
    ("home app frozen mid verify-app-home (timeout)", "verify-app-home", freeze_app(home),
     kit.Expect("halted", "verify-app-home", ("VerificationFailed", "StepTimeout"), TIMEOUT),
     continue_everything, {"verify-app-home": "3s"}),
    ("BIND down at the failback's dns.shift", "shift-dns", lambda world: world._bind.stop(),
     kit.Expect("halted", "shift-dns", ("TransientError", "StepTimeout", "ProviderError"), CONNECT),
     lambda world: world._bind.start(), {"shift-dns": "3s"}),
]


@pytest.mark.reliability_full
@pytest.mark.parametrize(("name", "step", "fault", "expect", "repair", "timeouts"), FULL, ids=[c[0] for c in FULL])
def test_failback_fault(name: str, step: str, fault: Action, expect: kit.Expect, repair: Action | None,
                        timeouts: dict[str, str], tmp_path: Path) -> None:
    run_failback_scenario(name, tmp_path, expect, step=step, fault=fault, repair=repair, timeouts=timeouts)
