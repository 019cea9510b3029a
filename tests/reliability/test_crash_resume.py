"""SIGKILL `dr failover` at every step boundary and in the middle of every step, then `dr resume`.

The kill is driven by the engine's test hook ``DR_TEST_CRASH_AT=<step>:<point>`` (the process
SIGKILLs itself at that exact point, no sleeps):

- ``before``: the previous wave is recorded, this step is not (a boundary);
- ``during``: the step is recorded as running, its action about to be called (mid-step);
- ``after``: the action returned (its side effects happened) but its result is not recorded.

Then `dr resume` (without the hook) must finish the run: the final state matches an
uninterrupted run, no finished step runs again, the audit chain verifies and is sealed, and
the run record is complete. The provider-free ``sample-noop`` runs in the default suite (against
a `prefect server` of our own, so each process starts in ~3 s); ``core-banking`` against a real
embedded world in the full matrix.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import reliability_kit as kit
from reliability_kit import REPO, quiet_env

from dr_engine.config.loader import load_runbook
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import RunRecord
from dr_engine.planning.plan import build_plan

pytestmark = pytest.mark.integration

DR = str(Path(sys.executable).parent / "dr")
POINTS = ("before", "during", "after")
SAMPLE_STEPS = ("announce", "settle-a", "settle-b", "verify-target")
CORE_STEPS = ("check-lag", "state-ready", "fence-primary", "promote", "apply-stack", "scale-app", "verify-db",
              "verify-alarms", "verify-app-target", "shift-dns", "verify-dns", "verify-public", "reconcile")
GUARD = 300.0  # hang guard for a subprocess, never a performance assertion


def _dr(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DR, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GUARD,
                          stdin=subprocess.DEVNULL, check=False)


def _crash(args: list[str], cwd: Path, env: dict[str, str], point: str) -> subprocess.CompletedProcess[str]:
    """Run `dr` with the crash hook in its own session; kill what is left of the session after it died."""
    proc = subprocess.Popen([DR, *args], cwd=cwd, env={**env, "DR_TEST_CRASH_AT": point}, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=GUARD)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children of the dead process (a step's shell)
        if proc.poll() is None:
            proc.wait(30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _record(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    return data


def _check_interrupted(run_dir: Path, step: str, when: str) -> None:
    record = _record(run_dir)
    assert record["status"] == "running"  # a killed run stays running until resumed
    status = {s["id"]: s["status"] for s in record["steps"]}
    assert status[step] == ("pending" if when == "before" else "running"), status
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and not check.sealed, check


def _check_resumed(run_dir: Path, reference: dict[str, Any], step: str, when: str) -> dict[str, Any]:
    record = _record(run_dir)
    assert record["status"] == "succeeded" and record["resumes"] >= 1
    # Complete: every step finished with timings; the run has its end, RTO and sealed log.
    for s in record["steps"]:
        assert s["status"] == "succeeded" and s["finished_at"] and s["duration_seconds"] is not None, s
    assert record["finished_at"] and record["rto_seconds"] is not None and record["rto_met"] is True
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed and check.count == record["audit_count"]
    # Same final state as an uninterrupted run.
    mine = {s["id"]: (s["status"], s["outputs"]) for s in record["steps"]}
    theirs = {s["id"]: (s["status"], s["outputs"]) for s in reference["steps"]}
    assert mine == theirs
    # No finished step ran again; only the interrupted step ran twice (once if killed before it).
    _check_reruns(run_dir, step, when)
    return record


def _check_reruns(run_dir: Path, step: str, when: str) -> None:
    """No finished step ran again: a step starts once, plus once per resume that reset it.

    A resume resets the steps that were in flight (the killed one unless killed ``before`` it,
    and parallel ones) or failed; only those run again.
    """
    events = read_events(run_dir / "audit.jsonl")
    started = [e["data"]["step"] for e in events if e["type"] == "step.started"]
    resets = [list(e["data"]["reset_steps"]) for e in events if e["type"] == "run.resumed"]
    assert (step in resets[0]) is (when != "before"), resets
    for sid in dict.fromkeys(started):
        assert started.count(sid) == 1 + sum(sid in reset for reset in resets), (sid, started, resets)
    succeeded = [e["data"]["step"] for e in events if e["type"] == "step.succeeded"]
    assert sorted(succeeded) == sorted(set(succeeded)), succeeded  # each step succeeded exactly once


def _ledger(name: str, run_dir: Path, runbook: Path, regions: Path | None, state: Path) -> None:
    plan = kit.remember_plan(build_plan(load_runbook(runbook, regions_dir=regions)))
    record = RunRecord.model_validate(_record(run_dir))
    verdict = kit.judge(name, "crash-resume", kit.Expect("recovered"), plan, record, state)
    kit.assert_verdict(verdict, kit.Expect("recovered"), record)


# ------------------------------------------------------------------------- sample-noop (fast)


@pytest.fixture(scope="module")
def sample_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the provider-free runbook and the shipped regions."""
    work = tmp_path_factory.mktemp("crash-sample")
    (work / "runbooks").mkdir()
    (work / "runbooks" / "sample-noop.yaml").write_text((REPO / "runbooks" / "sample-noop.yaml").read_text())
    (work / "regions").mkdir()
    for region in (REPO / "regions").glob("*.yaml"):
        (work / "regions" / region.name).write_text(region.read_text())
    return work


@pytest.fixture(scope="module")
def sample_reference(sample_work: Path, prefect_server: str, migrated_home: Path) -> dict[str, Any]:
    """The record of an uninterrupted run (the state every resumed run must reach)."""
    state = sample_work / "reference-state"
    done = _dr(["failover", "sample-noop", "--yes", "--state-dir", str(state)], sample_work,
               quiet_env(migrated_home, prefect_server))
    assert done.returncode == 0, done.stdout + done.stderr
    return _record(next((state / "runs").iterdir()))


@pytest.mark.parametrize("when", POINTS)
@pytest.mark.parametrize("step", SAMPLE_STEPS)
def test_sample_noop_killed_then_resumed(step: str, when: str, sample_work: Path, sample_reference: dict[str, Any],
                                         prefect_server: str, migrated_home: Path) -> None:
    state = Path(tempfile.mkdtemp(prefix=f"crash-{step}-{when}-", dir=sample_work))
    env = quiet_env(migrated_home, prefect_server)
    crashed = _crash(["failover", "sample-noop", "--yes", "--state-dir", str(state)], sample_work, env,
                     f"{step}:{when}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    (run_dir,) = list((state / "runs").iterdir())
    _check_interrupted(run_dir, step, when)

    resumed = _dr(["resume", run_dir.name, "--state-dir", str(state)], sample_work, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "SUCCEEDED" in resumed.stdout
    _check_resumed(run_dir, sample_reference, step, when)
    lease = json.loads((state / "locks" / "sample-noop.lock").read_text())
    assert lease["released"] is True and lease["fencing_token"] == 2  # resume took back its own stale lease
    _ledger(f"sample-noop killed {when} {step}", run_dir, sample_work / "runbooks" / "sample-noop.yaml",
            sample_work / "regions", state)


# ------------------------------------------------------------------------- core-banking (full)


@pytest.mark.reliability_full
@pytest.mark.parametrize("when", POINTS)
@pytest.mark.parametrize("step", CORE_STEPS)
def test_core_banking_killed_then_resumed(step: str, when: str, prefect_server: str, migrated_home: Path,
                                          tmp_path: Path) -> None:
    from world_kit import started_world

    with started_world() as world:
        work, runbook, env, state, acked = _core_banking_outage(world, tmp_path, prefect_server, migrated_home)

        crashed = _crash(["failover", str(runbook), "--yes", "--state-dir", str(state)], work, env, f"{step}:{when}")
        assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
        (run_dir,) = list((state / "runs").iterdir())
        _check_interrupted(run_dir, step, when)

        resumed = _dr(["resume", run_dir.name, "--state-dir", str(state)], work, env)
        if resumed.returncode != 0 and "StateLocked" in resumed.stdout + resumed.stderr:
            # terraform apply was running when dr was killed: its state lock outlived it. The
            # resume names the lock and says how to break it; the operator does, and resumes.
            assert "force-unlock" in resumed.stdout + resumed.stderr
            _break_state_lock(world)
            resumed = _dr(["resume", run_dir.name, "--state-dir", str(state)], work, env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        record = _check_failed_over(world, run_dir, acked)
        _check_reruns(run_dir, step, when)
        assert sorted(s["id"] for s in record["steps"]) == sorted(CORE_STEPS)
        check = verify(run_dir / "audit.jsonl")
        assert check.ok and check.sealed
        _ledger(f"core-banking killed {when} {step}", run_dir, runbook, world.regions_dir, state)


def _state_locked(world: Any) -> bool:
    """True while the target's Terraform state lock object (S3-native locking) exists."""
    from dr_engine.providers.aws.session import AwsTarget, client

    target = world.config.target
    s3 = client(AwsTarget(target, world.moto_endpoint_url), "s3")
    found = s3.list_objects_v2(Bucket=f"dr-tfstate-{target}", Prefix=f"ledger/{target}/terraform.tfstate.tflock")
    return bool(found.get("KeyCount"))


def _core_banking_outage(world: Any, tmp_path: Path, prefect_server: str,
                         migrated_home: Path) -> tuple[Path, Path, dict[str, str], Path, set[int]]:
    """A core-banking project against ``world``, writes acknowledged, the source region down.

    Returns (work dir, runbook, env, state dir, acknowledged write sequence numbers).
    """
    work = tmp_path / "work"
    (work / "runbooks").mkdir(parents=True)
    runbook = work / "runbooks" / "core-banking.yaml"
    runbook.write_text((REPO / "runbooks" / "core-banking.yaml").read_text())
    (work / "stacks").symlink_to(REPO / "stacks")  # terraform.apply finds stacks/ledger beside runbooks/
    env = {**quiet_env(migrated_home, prefect_server), "DR_REGIONS_DIR": str(world.regions_dir)}
    load = world.start_load()
    kit_wait(lambda: len(load.acked_seqs()) >= 10, "10 acknowledged writes")
    world.fail_region(world.config.source)
    return work, runbook, env, tmp_path / "state", set(load.acked_seqs())


def _check_failed_over(world: Any, run_dir: Path, acked: set[int]) -> dict[str, Any]:
    """The final state of an uninterrupted failover: DNS on the target, one writable primary, no row lost."""
    from world_kit import writable_primaries

    from dr_engine.providers.dns.client import DnsServer, query
    from dr_engine.world.ledger_app import present_ack_seqs

    record = _record(run_dir)
    assert record["status"] == "succeeded"
    assert record["rows_lost"] == 0 and record["rpo_met"] is True
    ends = world.endpoints()
    host, port = ends.dns_server.rsplit(":", 1)
    assert list(query(DnsServer(host, int(port)), ends.public_name, "A", timeout=2).values) == \
        [world.config.target_addr]
    world.restore_region(world.config.source)  # the outage ends: the old primary must stay down
    assert writable_primaries(world) == [world.config.target]
    assert present_ack_seqs(ends.dsn(world.config.target), sorted(acked)) == acked
    return record


def _break_state_lock(world: Any) -> None:
    """What `terraform force-unlock` does for S3-native locking: delete the state's .tflock object."""
    from dr_engine.providers.aws.session import AwsTarget, client

    target = world.config.target
    s3 = client(AwsTarget(target, world.moto_endpoint_url), "s3")
    s3.delete_object(Bucket=f"dr-tfstate-{target}", Key=f"ledger/{target}/terraform.tfstate.tflock")


def kit_wait(condition: Any, what: str, limit: float = 60.0) -> None:
    """Wait for ``condition()`` (hang guard only)."""
    import time

    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------------- Ctrl-C, then resume
#
# The same boundaries, reached by a Ctrl-C instead of a SIGKILL: the engine's test hook
# ``DR_TEST_INTERRUPT_AT=<step>:<point>[:twice]`` sends SIGINT to dr's process group exactly as a
# terminal does. Once: the running step gets its grace and ends recorded. Twice: it is abandoned
# at once (dr exits while the action may still be in flight). Either way the log is sealed and
# verifies, dr exits 130, and `dr resume` finishes the run with nothing lost or run twice.

INTERRUPTS = ("once", "twice")


def _interrupt(args: list[str], cwd: Path, env: dict[str, str], point: str) -> subprocess.CompletedProcess[str]:
    """Run `dr` with the interrupt hook in its own session (its Ctrl-C reaches only that session)."""
    proc = subprocess.Popen([DR, *args], cwd=cwd, env={**env, "DR_TEST_INTERRUPT_AT": point}, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_default_signals)
    try:
        out, err = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _default_signals() -> None:
    # As a shell starts a foreground command: the tests may run with SIGINT ignored (a background
    # job of a non-interactive shell), and `dr` keeps an ignored SIGINT ignored, as it should.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _check_stopped(run_dir: Path, step: str, how: str, text: str) -> None:
    record = _record(run_dir)
    assert record["status"] == "cancelled" and record["interrupted_by"] == ["SIGINT"], text
    status = {s["id"]: s["status"] for s in record["steps"]}
    # Recorded before the seal: never left "running" in a sealed log.
    assert "running" not in status.values(), status
    if how == "once":
        assert status[step] in ("succeeded", "pending", "failed"), status  # pending: stopped before it began
    events = read_events(run_dir / "audit.jsonl")
    assert events[-1]["type"] == "run.finished"
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed, check


def _check_finished_once(run_dir: Path) -> None:
    events = read_events(run_dir / "audit.jsonl")
    started = [e["data"]["step"] for e in events if e["type"] == "step.started"]
    resets = [list(e["data"]["reset_steps"]) for e in events if e["type"] == "run.resumed"]
    for sid in dict.fromkeys(started):
        assert started.count(sid) == 1 + sum(sid in reset for reset in resets), (sid, started, resets)
    succeeded = [e["data"]["step"] for e in events if e["type"] == "step.succeeded"]
    assert sorted(succeeded) == sorted(set(succeeded)), succeeded


@pytest.mark.parametrize("how", INTERRUPTS)
@pytest.mark.parametrize("step", ("settle-a", "verify-target"))
def test_sample_noop_interrupted_then_resumed(step: str, how: str, sample_work: Path, sample_reference: dict[str, Any],
                                             prefect_server: str, migrated_home: Path) -> None:
    state = Path(tempfile.mkdtemp(prefix=f"interrupt-{step}-{how}-", dir=sample_work))
    env = quiet_env(migrated_home, prefect_server)
    point = f"{step}:during" + (":twice" if how == "twice" else "")
    stopped = _interrupt(["failover", "sample-noop", "--yes", "--state-dir", str(state)], sample_work, env, point)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    (run_dir,) = list((state / "runs").iterdir())
    _check_stopped(run_dir, step, how, stopped.stdout + stopped.stderr)

    resumed = _dr(["resume", run_dir.name, "--state-dir", str(state)], sample_work, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = _record(run_dir)
    assert record["status"] == "succeeded"
    mine = {s["id"]: (s["status"], s["outputs"]) for s in record["steps"]}
    assert mine == {s["id"]: (s["status"], s["outputs"]) for s in sample_reference["steps"]}
    _check_finished_once(run_dir)
    check = verify(run_dir / "audit.jsonl")
    assert check.ok and check.sealed
    _ledger(f"sample-noop Ctrl-C {how} during {step}", run_dir, sample_work / "runbooks" / "sample-noop.yaml",
            sample_work / "regions", state)


@pytest.mark.reliability_full
@pytest.mark.parametrize(("step", "how"), [("check-lag", "twice"), ("promote", "twice"), ("apply-stack", "twice"),
                                           ("shift-dns", "once")])
def test_core_banking_interrupted_then_resumed(step: str, how: str, prefect_server: str, migrated_home: Path,
                                              tmp_path: Path) -> None:
    from world_kit import started_world

    with started_world() as world:
        work, runbook, env, state, acked = _core_banking_outage(world, tmp_path, prefect_server, migrated_home)

        point = f"{step}:during" + (":twice" if how == "twice" else "")
        stopped = _interrupt(["failover", str(runbook), "--yes", "--state-dir", str(state)], work, env, point)
        assert stopped.returncode == 130, stopped.stdout + stopped.stderr
        (run_dir,) = list((state / "runs").iterdir())
        _check_stopped(run_dir, step, how, stopped.stdout + stopped.stderr)

        # No state-lock dance (compare the SIGKILL scenarios): an abandoned terraform apply got
        # SIGINT from dr and released its state lock by itself, moments after dr exited.
        kit_wait(lambda: not _state_locked(world), "terraform to release its state lock after SIGINT", limit=60)
        resumed = _dr(["resume", run_dir.name, "--state-dir", str(state)], work, env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        _check_failed_over(world, run_dir, acked)
        _check_finished_once(run_dir)
        check = verify(run_dir / "audit.jsonl")
        assert check.ok and check.sealed
        _ledger(f"core-banking Ctrl-C {how} during {step}", run_dir, runbook, world.regions_dir, state)
