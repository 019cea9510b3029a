"""Faults in the real world under core-banking: PostgreSQL, BIND and the health endpoint.

Each scenario starts a fresh embedded world (real PostgreSQL primary + synchronous standby,
ledger apps, BIND), injects its fault the moment the chosen step starts, runs the shipped
runbook through the engine, and checks the declared outcome and the invariants. Afterwards the
frozen processes are continued and both databases are probed: there must never be two
writable primaries, and the public name may point at the target only if it was verified.
Halted runs are resumed once the fault is repaired.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import reliability_kit as kit
import yaml
from reliability_kit import REPO
from world_kit import dns_answer, safety_probe, started_world, writable_primaries

from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunRecord, RunStatus
from dr_engine.planning.plan import build_plan
from dr_engine.world import World

pytestmark = pytest.mark.integration

CONNECT, TIMEOUT = kit.CONNECT, kit.TIMEOUT

Fault = Callable[[World], None]
Repair = Callable[[World], None]


def _runbook(tmp_path: Path, timeouts: dict[str, str]) -> Path:
    """core-banking, with some step timeouts shortened so a hang ends quickly (stacks/ linked in)."""
    data = yaml.safe_load((REPO / "runbooks" / "core-banking.yaml").read_text())
    for step in data["steps"]:
        if step["id"] in timeouts:
            step["timeout"] = timeouts[step["id"]]
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    if not (tmp_path / "stacks").exists():
        (tmp_path / "stacks").symlink_to(REPO / "stacks")
    path = tmp_path / "runbooks" / "core-banking.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def primary(sig: signal.Signals) -> Fault:
    """Signal every process of the old primary's server."""
    return lambda world: _signal_pg(world, world.config.source, sig)


def standby(sig: signal.Signals) -> Fault:
    """Signal every process of the standby's server."""
    return lambda world: _signal_pg(world, world.config.target, sig)


def _signal_pg(world: World, region: str, sig: signal.Signals) -> None:
    assert world.pg is not None
    assert world.pg.signal_node(region, sig), f"{region} is not running"


def bind(sig: signal.Signals | None) -> Fault:
    """Stop BIND (None) or signal it."""
    def fault(world: World) -> None:
        server = world._bind
        if sig is None:
            server.stop()
        else:
            os.kill(server.pid, sig)

    return fault


def app(region_of: Callable[[World], str], sig: signal.Signals) -> Fault:
    """Signal a region's ledger app."""
    return lambda world: os.kill(world._apps[region_of(world)].pid, sig)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _command(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def kill_terraform(verb: str = "apply") -> Fault:
    """SIGKILL the `terraform <verb>` this process starts, as soon as it exists (a watcher thread)."""
    def fault(world: World) -> None:
        def watch() -> None:
            import time

            end = time.monotonic() + 120  # hang guard only
            while time.monotonic() < end:
                for child in _children(os.getpid()):
                    argv = _command(child)
                    if argv and argv[0].endswith("terraform") and verb in argv[1:3]:
                        os.kill(child, signal.SIGKILL)
                        KILLED.append(child)
                        return
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

    return fault


KILLED: list[int] = []


def restart_standby(world: World) -> None:
    """Repair: start the killed standby again (start_node clears the locks of a zombie postmaster)."""
    assert world.pg is not None
    world.pg.start_node(world.config.target)


def continue_all(world: World) -> None:
    """Repair: continue every frozen process."""
    world.restore_region(world.config.source)
    world.restore_region(world.config.target)
    if world._bind is not None and world._bind.pid is not None:
        os.kill(world._bind.pid, signal.SIGCONT)


def restart_bind(world: World) -> None:
    """Repair: start BIND again (its zone still names the source: nothing was shifted)."""
    world._bind.start()


class Flapping:
    """A health endpoint answering 200/503 alternately (or 200 once ``settled``)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.settled = False
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.count += 1
                ok = outer.settled or outer.count % 2 == 0
                body = b"ok" if ok else b"database unavailable"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_scenario(name: str, tmp_path: Path, expect: kit.Expect, *, step: str, fault: Fault,
                 repair: Repair | None = None, timeouts: dict[str, str] | None = None,
                 outage: bool = True, prepare: Callable[[World], None] | None = None) -> RunRecord:
    """Run core-banking against a fresh world with ``fault`` injected when ``step`` starts."""
    with started_world() as world:
        if prepare is not None:
            prepare(world)
        if outage:
            world.fail_region(world.config.source)  # the incident: the source region froze
        runbook = _runbook(tmp_path, timeouts or {})
        plan = kit.remember_plan(build_plan(load_runbook(runbook, regions_dir=world.regions_dir)))
        state = tmp_path / "state"
        inject = kit.InjectAt(step, lambda: fault(world))
        options = RunOptions(state_dir=state, triggered_by="reliability", seed=3, repo_root=REPO)
        record = start_run(plan, options, progress=inject)
        assert inject.fired == 1, f"the fault at {step} never fired"
        statuses = {s.id: s.status.value for s in record.steps}
        real = safety_probe(world, verified_target=statuses["verify-app-target"] == "succeeded")
        verdict = kit.judge(name, "world", expect, plan, record, state, real_checks=real)
        kit.assert_verdict(verdict, expect, record)
        if expect.outcome == "recovered":
            assert dns_answer(world) == [world.config.target_addr]
            assert writable_primaries(world) == [world.config.target]
        elif repair is not None:
            repair(world)
            if timeouts:  # the operator restores the real deadlines and resumes with --force (audited)
                runbook.write_text((REPO / "runbooks" / "core-banking.yaml").read_text())
            again = resume_run(state, record.run_id, force=bool(timeouts), repo_root=REPO)
            assert again.status is RunStatus.SUCCEEDED, again.error
            assert dns_answer(world) == [world.config.target_addr]
            continue_all(world)
            assert writable_primaries(world) == [world.config.target]
        if statuses["shift-dns"] != "succeeded" and world._bind is not None and world._bind.pid is not None \
                and repair is None:
            assert dns_answer(world) == [world.config.source_addr]  # traffic never moved
        return record


# ----------------------------------------------------------------------- fast subset


def test_primary_sigstopped_mid_lag_check_is_fenced_and_failover_completes(tmp_path: Path) -> None:
    run_scenario("postgres primary SIGSTOPped mid check-lag", tmp_path, kit.Expect("recovered"),
                 step="check-lag", fault=primary(signal.SIGSTOP), outage=False)


@pytest.mark.reliability_full
def test_primary_killed_mid_fence_counts_as_fenced(tmp_path: Path) -> None:
    run_scenario("postgres primary killed mid fence", tmp_path, kit.Expect("recovered"),
                 step="fence-primary", fault=primary(signal.SIGKILL))


def test_standby_killed_mid_promote_halts_then_resumes(tmp_path: Path) -> None:
    run_scenario("postgres standby killed mid promote", tmp_path,
                 kit.Expect("halted", "promote", ("TransientError", "StepTimeout", "ProviderError",
                                                  "PreconditionFailed"), CONNECT),
                 step="promote", fault=standby(signal.SIGKILL), repair=restart_standby, timeouts={"promote": "5s"})


def test_bind_down_halts_the_shift_then_resumes(tmp_path: Path) -> None:
    run_scenario("BIND down at dns.shift", tmp_path,
                 kit.Expect("halted", "shift-dns", ("TransientError", "StepTimeout", "ProviderError"), CONNECT),
                 step="shift-dns", fault=bind(None), repair=restart_bind, timeouts={"shift-dns": "3s"})


def test_flapping_health_endpoint_never_gets_traffic(tmp_path: Path) -> None:
    flappers: list[Flapping] = []

    def point_health_at_flapper(world: World) -> None:
        # The stack's health URL is built from the target's app_port: serve a flapping /healthz there.
        flappers.append(Flapping(world.config.target_addr))
        path = world.regions_dir / f"{world.config.target}.yaml"
        data = yaml.safe_load(path.read_text())
        data["params"]["app_port"] = flappers[0].port
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def settle(world: World) -> None:
        flappers[0].settled = True

    run_scenario("health endpoint flapping at http.verify", tmp_path,
                          kit.Expect("halted", "verify-app-target", ("VerificationFailed", "StepTimeout"),
                                     r"503|consecutive|unavailable"),
                          step="verify-app-target", fault=lambda world: None, repair=settle,
                          timeouts={"verify-app-target": "3s"}, prepare=point_health_at_flapper)
    assert flappers[0].count > 3
    flappers[0].close()


def test_terraform_killed_mid_apply_halts_precisely(tmp_path: Path) -> None:
    KILLED.clear()
    run_scenario("terraform process killed mid apply", tmp_path,
                 kit.Expect("halted", "apply-stack", ("ProviderError", "TransientError", "StepTimeout",
                                                      "PreconditionFailed"), r"terraform.*(kill|signal|-9|exit)"),
                 step="apply-stack", fault=kill_terraform(), repair=lambda world: None)
    assert KILLED, "terraform apply was never seen"


# ----------------------------------------------------------------------- full matrix

FULL: list[tuple[str, str, Fault, kit.Expect, Repair | None, dict[str, str], bool]] = [
    ("postgres primary killed mid check-lag", "check-lag", primary(signal.SIGKILL), kit.Expect("recovered"),
     None, {}, False),
    ("postgres primary SIGSTOPped mid fence", "fence-primary", primary(signal.SIGSTOP), kit.Expect("recovered"),
     None, {}, False),
    ("postgres standby killed mid check-lag", "check-lag", standby(signal.SIGKILL),
     kit.Expect("halted", "check-lag", ("PreconditionFailed", "TransientError", "StepTimeout", "ProviderError"),
                CONNECT), restart_standby, {"check-lag": "5s"}, True),
    ("postgres standby SIGSTOPped mid promote (timeout)", "promote", standby(signal.SIGSTOP),
     kit.Expect("halted", "promote", ("StepTimeout", "TransientError", "ProviderError"), TIMEOUT),
     continue_all, {"promote": "3s"}, True),
    ("postgres standby killed mid verify-db", "verify-db", standby(signal.SIGKILL),
     kit.Expect("halted", "verify-db", ("VerificationFailed", "StepTimeout", "TransientError", "ProviderError"),
                CONNECT), restart_standby, {"verify-db": "3s"}, True),
    ("postgres standby SIGSTOPped mid verify-db (timeout)", "verify-db", standby(signal.SIGSTOP),
     kit.Expect("halted", "verify-db", ("VerificationFailed", "StepTimeout", "TransientError"), TIMEOUT),
     continue_all, {"verify-db": "3s"}, True),
    ("target app frozen mid http.verify (timeout)", "verify-app-target",
     app(lambda w: w.config.target, signal.SIGSTOP),
     kit.Expect("halted", "verify-app-target", ("VerificationFailed", "StepTimeout"), TIMEOUT),
     continue_all, {"verify-app-target": "3s"}, True),
    ("BIND frozen at dns.shift (timeout)", "shift-dns", bind(signal.SIGSTOP),
     kit.Expect("halted", "shift-dns", ("StepTimeout", "TransientError", "ProviderError"), TIMEOUT),
     continue_all, {"shift-dns": "3s"}, True),
    ("BIND down at dns.verify", "verify-dns", bind(None),
     kit.Expect("halted", "verify-dns", ("VerificationFailed", "StepTimeout", "TransientError", "ProviderError"),
                CONNECT), None, {"verify-dns": "3s"}, True),
    ("BIND frozen at dns.verify (timeout)", "verify-dns", bind(signal.SIGSTOP),
     kit.Expect("halted", "verify-dns", ("VerificationFailed", "StepTimeout", "TransientError"), TIMEOUT),
     continue_all, {"verify-dns": "3s"}, True),
    ("target app killed at public http.verify (connection refused)", "verify-public",
     app(lambda w: w.config.target, signal.SIGKILL),
     kit.Expect("halted", "verify-public", ("VerificationFailed", "StepTimeout"), CONNECT),
     None, {"verify-public": "3s"}, True),
    ("terraform init killed mid apply-stack", "apply-stack", kill_terraform("init"),
     kit.Expect("halted", "apply-stack", ("ProviderError", "TransientError", "StepTimeout", "PreconditionFailed"),
                r"terraform.*(kill|signal|-9|exit)"), lambda world: None, {}, True),
    ("new primary killed mid reconcile", "reconcile", standby(signal.SIGKILL),
     kit.Expect("halted", "reconcile", ("TransientError", "StepTimeout", "ProviderError", "PreconditionFailed"),
                CONNECT), restart_standby, {"reconcile": "5s"}, True),
]


@pytest.mark.reliability_full
@pytest.mark.parametrize(("name", "step", "fault", "expect", "repair", "timeouts", "outage"), FULL,
                         ids=[c[0] for c in FULL])
def test_world_fault(name: str, step: str, fault: Fault, expect: kit.Expect, repair: Repair | None,
                     timeouts: dict[str, str], outage: bool, tmp_path: Path) -> None:
    run_scenario(name, tmp_path, expect, step=step, fault=fault, repair=repair, timeouts=timeouts, outage=outage)
