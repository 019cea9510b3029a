"""Real recorded runs for tests of reports and evidence packs (and for trying ``dr report``).

Every run goes through the real :class:`dr_engine.engine.run.Engine` with the provider-free fake
actions of :mod:`dr_engine.testing.actions` on a :class:`FakeClock`, so the run records and
audit logs are exactly what the engine writes, while a 20-minute failover with a 3-minute
approval takes milliseconds. :func:`make_sample_runs` writes a year of history:

==============  ==========  =========  ==============================================
key             runbook     mode       what happens
==============  ==========  =========  ==============================================
``drill``       payments    drill      approval (human wait), a retried step, a step
                                       skipped in drill mode, reconciliation: passes
``failover``    payments    failover   ``--allow-data-loss`` override with a reason;
                                       canary secrets in a DSN, outputs and facts
``failed``      payments    failover   traffic shift fails (ProviderError): failed
``halted``      ledger      drill      a precondition refuses (lag too high): halted
``slow``        ledger      drill      everything succeeds but the RTO is missed
==============  ==========  =========  ==============================================

``CANARIES`` lists the planted secret values: none may appear in any report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.actions.base import StepContext
from dr_engine.actions.control import ApproveParams
from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.record import RunRecord
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.model import RunMode
from dr_engine.planning.plan import build_plan
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import write_runbook

#: Secret values planted in region params, step outputs and run reasons.
CANARIES = ("CANARY-DSN-PASSWORD-7f3a", "CANARY-API-TOKEN-91bc", "CANARY-REASON-SECRET-55d0")

_REGION = """name: {name}
params: {{addr: {addr}, port: 5432, pg_dsn: "postgresql://app:{pw}@{addr}:5432/ledger"}}
secrets: {{token: {{env: DR_TEST_{upper}_TOKEN}}}}
"""

PAYMENTS_STEPS = """
- id: approve-cutover
  action: control.approve
  with: {prompt: "Fail payments over to west?"}
- id: check-lag
  action: fake.noop
  with: {seconds: 0.3, outputs: {lag_bytes: "0"}}
  after: [approve-cutover]
- id: fence-primary
  action: fake.fence_data
  with: {dataset: payments, seconds: 1.5}
  after: [check-lag]
- id: promote-standby
  action: fake.promote_data
  with: {dataset: payments, seconds: 0.8, lag_bytes: 0, lag_seconds: 0.4}
  after: [fence-primary]
- id: scale-target
  action: fake.flaky
  with: {failures: 2, seconds: 4}
  retry: {attempts: 3, backoff: 2s}
  after: [approve-cutover]
- id: notify-partners
  action: fake.noop
  with:
    seconds: 2
    outputs: {dsn: "${target.pg_dsn}", api: "token=CANARY-API-TOKEN-91bc"}
  drill: skip
  after: [approve-cutover]
- id: verify-target
  action: fake.check_health
  with: {seconds: 3}
  after: [promote-standby, scale-target]
- id: shift-traffic
  action: {shift}
  after: [verify-target]
- id: reconcile
  action: fake.reconcile_data
  with: {dataset: payments, seconds: 6, rows_lost: 0}
  after: [shift-traffic]
- id: verify-public
  action: fake.check_health
  with: {seconds: 2}
  after: [reconcile]
"""

LEDGER_STEPS = """
- id: check-lag
  action: fake.fail
  with: {kind: PreconditionFailed, message: "replication lag 48 MiB exceeds the RPO of 0s", times: {fail_times}}
- id: fence
  action: fake.fence_data
  with: {dataset: ledger, seconds: {slow}}
  timeout: 15m
  after: [check-lag]
- id: promote
  action: fake.promote_data
  with: {dataset: ledger, lag_bytes: 0}
  after: [fence]
- id: verify
  action: fake.check_health
  with: {seconds: 2}
  after: [promote]
- id: shift
  action: fake.shift_traffic
  after: [verify]
- id: final-check
  action: fake.check_health
  with: {seconds: 1}
  after: [shift]
"""


class ScriptedApprover:
    """An approval gate whose approver answers after ``wait`` seconds of the run's clock."""

    def __init__(self, approver: str = "bob@risk", wait: float = 184.0, comment: str = "go: change CHG-4411") -> None:
        self.approver, self.wait, self.comment = approver, wait, comment

    def request(self, ctx: StepContext, params: ApproveParams) -> tuple[bool, str, str]:
        """Wait on the run's clock, then approve."""
        del params
        ctx.clock.sleep(self.wait)
        return True, self.approver, self.comment


@dataclass
class SampleRuns:
    """The state dir, project folder and run dirs written by :func:`make_sample_runs`."""

    state_dir: StateDir | Path
    project: Path
    runs: dict[str, Path] = field(default_factory=dict)
    records: dict[str, RunRecord] = field(default_factory=dict)

    def run_id(self, key: str) -> str:
        """The run id of sample ``key``."""
        return self.records[key].run_id


GOOD_SHIFT = "fake.shift_traffic\n  with: {seconds: 1}"
FAILING_SHIFT = "fake.fail\n  with: {kind: ProviderError, message: 'Route 53 answered AccessDenied', seconds: 0.5}"


def _write_project(project: Path, shift: str = GOOD_SHIFT) -> None:
    write_runbook(project, PAYMENTS_STEPS.replace("{shift}", shift), name="payments", rto="15m", rpo="5s",
                  extra="owner: payments-sre\ndrill_interval: 90d\n")
    regions = project / "regions"
    for name, addr in (("east", "127.0.1.1"), ("west", "127.0.2.1")):
        (regions / f"{name}.yaml").write_text(
            _REGION.format(name=name, addr=addr, pw=CANARIES[0], upper=name.upper()), encoding="utf-8")


def _ledger(project: Path, *, fail_times: int, slow: float) -> Path:
    steps = LEDGER_STEPS.replace("{fail_times}", str(fail_times)).replace("{slow}", str(slow))
    path = write_runbook(project, steps, name="ledger", rto="5m", rpo="0s", extra="owner: core-banking\n")
    _write_project_regions(project)
    return path


def _write_project_regions(project: Path) -> None:
    for name, addr in (("east", "127.0.1.1"), ("west", "127.0.2.1")):
        (project / "regions" / f"{name}.yaml").write_text(
            _REGION.format(name=name, addr=addr, pw=CANARIES[0], upper=name.upper()), encoding="utf-8")


def run_sample(project: Path, state_dir: StateDir | Path, runbook: str, *, start: datetime, mode: RunMode,
               incident_offset: float = 0.0, **options: Any) -> RunRecord:
    """Run ``project/runbooks/<runbook>.yaml`` through the real engine on a fake clock."""
    _write_project_regions(project)
    plan = build_plan(load_runbook(project / "runbooks" / f"{runbook}.yaml", regions_dir=project / "regions"))
    clock = FakeClock(start)
    incident = start - timedelta(seconds=incident_offset) if incident_offset else None
    return start_run(plan, RunOptions(mode=mode, state_dir=state_dir, clock=clock, concurrency=1, lock=NullLock(),
                                      seed=7, incident_start=incident, approval_gate=ScriptedApprover(), **options))


def make_sample_runs(folder: Path) -> SampleRuns:
    """Write the sample project and its five runs under ``folder`` (see the module docstring)."""
    project = folder / "project"
    state_dir = folder / "state"
    _write_project(project)
    samples = SampleRuns(state_dir=state_dir, project=project)
    year = 2026

    def keep(key: str, record: RunRecord) -> None:
        samples.records[key] = record
        samples.runs[key] = StateDir.of(state_dir).run_dir(record.run_id)

    keep("drill", run_sample(project, state_dir, "payments", start=datetime(year, 3, 3, 2, 0, tzinfo=UTC),
                             mode=RunMode.DRILL, triggered_by="alice@ops", reason="Q1 DR drill: loss of east"))
    keep("failover", run_sample(project, state_dir, "payments", start=datetime(year, 6, 10, 14, 30, tzinfo=UTC),
                                mode=RunMode.FAILOVER, incident_offset=420, triggered_by="carol@oncall",
                                allow_data_loss=True,
                                reason=f"east AZ outage INC-2231; CRO accepted data loss; password={CANARIES[2]}"))
    _write_project(project, FAILING_SHIFT)  # the failed run: the traffic shift fails
    keep("failed", run_sample(project, state_dir, "payments", start=datetime(year, 9, 1, 9, 0, tzinfo=UTC),
                              mode=RunMode.FAILOVER, triggered_by="dave@oncall", reason="planned switchover"))
    _write_project(project)  # back to the good payments runbook for later packs
    _ledger(project, fail_times=99, slow=1)
    keep("halted", run_sample(project, state_dir, "ledger", start=datetime(year, 10, 5, 1, 0, tzinfo=UTC),
                              mode=RunMode.DRILL, triggered_by="erin@ops", reason="Q4 ledger drill"))
    _ledger(project, fail_times=0, slow=400)
    keep("slow", run_sample(project, state_dir, "ledger", start=datetime(year, 10, 20, 1, 0, tzinfo=UTC),
                            mode=RunMode.DRILL, triggered_by="erin@ops", reason="Q4 ledger drill (retest)"))
    return samples


__all__ = ["CANARIES", "SampleRuns", "ScriptedApprover", "make_sample_runs", "run_sample"]
