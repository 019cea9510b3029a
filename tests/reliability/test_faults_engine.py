"""Faults in the provider-free action kinds (shell.run, control.wait, shell.verify) of sample-noop.

The runbook is sample-noop's shape plus a fake traffic shift after the health gate, so the
"no traffic to an unverified region" invariant has something to guard. Each command is a tiny
probe script whose behaviour comes from ``fault.json`` in the scenario folder: removing that
file clears the fault, and the halted run is then resumed to success (it is resumable for real).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import reliability_kit as kit

import dr_engine.testing.actions  # noqa: F401 - registers fake.shift_traffic / fake.check_health
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.testing.runbooks import plan_from_steps
from dr_engine.world.loopback import free_port

PROBE = r'''
import json, pathlib, socket, sys, time
d = pathlib.Path(__file__).parent
role = sys.argv[1]
fault = (json.loads((d / "fault.json").read_text()) if (d / "fault.json").exists() else {}).get(role)
counter = d / f"{role}.count"
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
if not fault:
    sys.exit(0)
kind = fault["kind"]
if kind == "hang":
    time.sleep(120)
if kind == "fail_first":
    sys.exit(fault.get("code", 75) if n < fault["times"] else 0)
if kind == "flap":
    sys.exit(0 if n % 2 == 0 else 1)
if kind == "refused":
    with socket.create_connection(("127.0.0.1", fault["port"]), timeout=1):
        pass
sys.exit(0)
'''

STEPS = """
- id: announce
  action: shell.run
  with: {{command: ["{py}", "{d}/probe.py", announce], transient_exit_codes: [75]}}
  timeout: {announce_timeout}
  retry: {{attempts: 3, backoff: 50ms}}
- id: settle
  action: control.wait
  with: {{duration: {settle}}}
  after: [announce]
  timeout: {settle_timeout}
- id: verify-target
  action: shell.verify
  with: {{command: ["{py}", "{d}/probe.py", verify], consecutive: 2, interval: 20ms}}
  after: [settle]
  timeout: 2s
- id: shift
  action: fake.shift_traffic
  after: [verify-target]
- id: healthy
  action: fake.check_health
  after: [shift]
"""

Case = tuple[str, dict[str, dict[str, object]], dict[str, str], kit.Expect, bool]
CASES: list[Case] = [
    ("shell.run transient exit twice", {"announce": {"kind": "fail_first", "times": 2}}, {},
     kit.Expect("recovered", step="announce"), False),
    ("shell.run transient exit forever", {"announce": {"kind": "fail_first", "times": 99}}, {},
     kit.Expect("halted", "announce", ("TransientError", "StepTimeout"), r"exited 75"), True),
    ("shell.run hangs past the deadline", {"announce": {"kind": "hang"}}, {"announce_timeout": "1s"},
     kit.Expect("halted", "announce", ("StepTimeout",), r"deadline"), True),
    ("shell.run command fails", {"announce": {"kind": "fail_first", "times": 99, "code": 3}}, {},
     kit.Expect("halted", "announce", ("ProviderError",), r"exited 3"), True),
    ("control.wait longer than its deadline", {}, {"settle": "5s", "settle_timeout": "300ms"},
     kit.Expect("halted", "settle", ("StepTimeout",), r"deadline|within|timed out|timeout"), False),
    ("shell.verify flaps then settles", {"verify": {"kind": "fail_first", "times": 3, "code": 1}}, {},
     kit.Expect("recovered"), False),
    ("shell.verify health flapping", {"verify": {"kind": "flap"}}, {},
     kit.Expect("halted", "verify-target", ("VerificationFailed",), r"consecutive"), True),
    ("shell.verify connection refused", {"verify": {"kind": "refused", "port": 0}}, {},
     kit.Expect("halted", "verify-target", ("VerificationFailed",), r"refused"), True),
]


@pytest.mark.parametrize(("name", "faults", "shape", "expect", "resume"), CASES, ids=[c[0] for c in CASES])
def test_provider_free_fault(name: str, faults: dict[str, dict[str, object]], shape: dict[str, str],
                             expect: kit.Expect, resume: bool, tmp_path: Path) -> None:
    d = tmp_path / "scenario"
    d.mkdir()
    (d / "probe.py").write_text(PROBE)
    for fault in faults.values():
        if fault.get("port") == 0:
            fault["port"] = free_port("127.0.0.1")  # nothing listens there: connection refused
    (d / "fault.json").write_text(json.dumps(faults))
    values = {"py": sys.executable, "d": d, "announce_timeout": "10s", "settle": "10ms", "settle_timeout": "5s",
              **shape}
    plan = kit.remember_plan(plan_from_steps(tmp_path / "rb", STEPS.format(**values), name="fault-engine"))
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=2, seed=1))

    verdict = kit.judge(name, "engine", expect, plan, record, state)
    kit.assert_verdict(verdict, expect, record)
    steps = {s.id: s.status.value for s in record.steps}
    if expect.outcome == "halted":
        assert steps["shift"] == "pending"  # traffic never moved
    if resume:
        (d / "fault.json").unlink()  # the fault clears
        again = resume_run(state, record.run_id)
        assert again.status is RunStatus.SUCCEEDED, again.error
        assert kit.audit_invariants(plan, state, record.run_id) == []
