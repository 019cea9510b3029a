"""Shared machinery of the reliability suite: expected outcomes, safety invariants, the ledger.

Every fault scenario declares what must happen (:class:`Expect`: recovered by retry, or halted
at a named step with an error naming the fault), runs, then :func:`judge` checks the outcome
and the invariants that must hold whatever happened:

- no traffic shifted to an unverified region (every ``traffic.shift`` that started had all its
  ``health.verify`` ancestors succeed first; plus a real check of DNS/Route 53 by the test);
- never two writable primaries (promote only after a fence of the same dataset; plus a real
  probe of both PostgreSQL nodes after the outage ended, by the test);
- the audit chain verifies (and is sealed, since every scenario run ends);
- the run is resumable (``prepare_resume`` accepts it) unless it succeeded.

Each verdict is appended to :data:`LEDGER`; ``conftest.py`` prints the summary table.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dr_engine.capabilities import Capability
from dr_engine.engine.progress import Progress
from dr_engine.engine.run import prepare_resume
from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, RunStatus, StepRecord
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.settings import EMBEDDED_SETTINGS
from dr_engine.planning.plan import ExecutionPlan

Outcome = Literal["recovered", "halted"]
REPO = Path(__file__).resolve().parents[2]

#: What an error naming a connection fault, or a timeout, says (matched case-insensitively).
CONNECT = r"refused|connect|unreachable|not answer|no answer|down|closed|timed? ?out|deadline"
TIMEOUT = r"deadline|timed? ?out|within|timeout|not answer|no answer"


@dataclass(frozen=True)
class Expect:
    """What a scenario must end with."""

    outcome: Outcome
    #: halted: the step the run stops at; recovered: a step that must have retried (optional).
    step: str | None = None
    #: halted: accepted error kinds (e.g. ``("StepTimeout", "TransientError")``).
    kinds: tuple[str, ...] = ()
    #: halted: a regex the error message (or hint) must match: it names the fault.
    match: str = ""


@dataclass
class Verdict:
    """One scenario's result, as shown in the summary table."""

    scenario: str
    area: str
    expected: Outcome
    actual: str
    unsafe: list[str] = field(default_factory=list)
    detail: str = ""


LEDGER: list[Verdict] = []
_LEDGER_LOCK = threading.Lock()


class InjectAt(Progress):
    """Run ``fault()`` the moment ``step`` starts (recorded as running, action not yet called).

    The engine calls listeners synchronously in the step's thread, so the fault is in place
    before the action does its first I/O: "mid-step" without any sleep.
    """

    def __init__(self, step: str, fault: Callable[[], None], *, attempt_only_first: bool = True) -> None:
        self.step = step
        self.fault = fault
        self.fired = 0
        self.once = attempt_only_first

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        """Inject when the chosen step starts."""
        if step.id == self.step and not (self.once and self.fired):
            self.fired += 1
            self.fault()


def run_dir(state_dir: Path, run_id: str) -> Path:
    """Where the engine keeps a run's files."""
    return StateDir(state_dir).run_dir(run_id)


def audit_invariants(plan: ExecutionPlan, state_dir: Path, run_id: str) -> list[str]:
    """Safety violations visible in the audit log (empty list = safe)."""
    path = run_dir(state_dir, run_id) / AUDIT_FILE
    problems: list[str] = []
    check = verify(path)
    if not check.ok:
        problems.append(f"audit chain broken: {check.describe(path)}")
    steps = {s.id: s for s in plan.steps}
    fences: dict[str | None, set[str]] = {}
    for s in plan.steps:
        if s.capability is Capability.DATA_FENCE:
            fences.setdefault(_dataset(plan, s.id), set()).add(s.id)
    succeeded: set[str] = set()
    for event in read_events(path):
        kind, step = event["type"], event.get("data", {}).get("step")
        if step not in steps:
            continue
        planned = steps[step]
        if kind == "step.started" and planned.capability is Capability.TRAFFIC_SHIFT:
            gates = [a for a in planned.ancestors if steps[a].capability is Capability.HEALTH_VERIFY]
            missing = [g for g in gates if g not in succeeded]
            if not gates or missing:
                problems.append(f"traffic shift {step} started before the target was verified "
                                f"(missing: {missing or 'no health gate'})")
        if kind == "step.started" and planned.capability is Capability.DATA_PROMOTE and not plan.overrides:
            mine = fences.get(_dataset(plan, step), set())
            if not mine & succeeded:
                problems.append(f"promote {step} started before its dataset was fenced ({sorted(mine)})")
        if kind == "step.succeeded":
            succeeded.add(step)
    return problems


def _dataset(plan: ExecutionPlan, step_id: str) -> str | None:
    action = plan.loaded.actions[step_id]
    params = plan.loaded.params.get(step_id) if hasattr(plan.loaded, "params") else None
    try:
        return action().dataset(params) if params is not None else None
    except Exception:  # unbound ${...} params: the fence/promote pairing is then per runbook
        return None


def outcome_of(record: RunRecord) -> str:
    """``recovered`` (succeeded), ``halted`` (halted/failed/cancelled) or the raw status."""
    if record.status is RunStatus.SUCCEEDED:
        return "recovered"
    if record.status in (RunStatus.HALTED, RunStatus.FAILED, RunStatus.CANCELLED):
        return "halted"
    return record.status.value


def judge(name: str, area: str, expect: Expect, plan: ExecutionPlan, record: RunRecord, state_dir: Path, *,
          real_checks: list[str] | None = None) -> Verdict:
    """Check ``record`` against ``expect`` and the invariants; add the verdict to the ledger.

    ``real_checks`` are violations the test found by probing real systems (DNS answer, writable
    primaries). Returns the verdict; the caller asserts with :func:`assert_verdict`.
    """
    unsafe = list(real_checks or [])
    unsafe += audit_invariants(plan, state_dir, record.run_id)
    path = run_dir(state_dir, record.run_id) / AUDIT_FILE
    if record.status is not RunStatus.RUNNING and not verify(path).sealed:
        unsafe.append("a finished run's audit log is not sealed")
    if record.status is not RunStatus.SUCCEEDED:
        try:
            prepare_resume(state_dir, record.run_id)
        except RunStateError as exc:
            unsafe.append(f"not resumable: {exc.message}")
    actual = outcome_of(record)
    detail = ""
    if record.error is not None:
        detail = f"{record.halted_at_step}: {record.error.kind}: {record.error.message}"
    verdict = Verdict(name, area, expect.outcome, actual, unsafe, detail)
    with _LEDGER_LOCK:
        LEDGER.append(verdict)
    return verdict


def assert_verdict(verdict: Verdict, expect: Expect, record: RunRecord) -> None:
    """The scenario ended as declared and safely."""
    assert not verdict.unsafe, f"UNSAFE {verdict.scenario}: {verdict.unsafe}"
    steps = {s.id: s for s in record.steps}
    assert verdict.actual == expect.outcome, (
        f"{verdict.scenario}: expected {expect.outcome}, got {record.status.value} ({verdict.detail}); "
        f"steps: {[(s.id, s.status.value, s.error.message if s.error else '') for s in record.steps]}")
    if expect.outcome == "halted":
        assert record.error is not None
        assert record.halted_at_step == expect.step, verdict.detail
        if expect.kinds:
            assert record.error.kind in expect.kinds, verdict.detail
        if expect.match:
            text = f"{record.error.message} {record.error.hint or ''}"
            assert re.search(expect.match, text, re.IGNORECASE), f"{verdict.scenario}: {text!r} !~ {expect.match!r}"
        # Nothing after the failed step ran: the halt is real.
        assert all(s.status.value == "pending" for s in record.steps
                   if expect.step in plan_ancestors(record, s.id)), verdict.detail
    elif expect.step is not None:
        assert steps[expect.step].attempts > 1, f"{expect.step} did not retry: {steps[expect.step]}"


_ANCESTORS: dict[tuple[str, str], frozenset[str]] = {}


def remember_plan(plan: ExecutionPlan) -> ExecutionPlan:
    """Let :func:`assert_verdict` see step ancestry of ``plan`` (keyed by runbook name)."""
    for s in plan.steps:
        _ANCESTORS[(plan.loaded.runbook.runbook, s.id)] = s.ancestors
    return plan


def plan_ancestors(record: RunRecord, step_id: str) -> frozenset[str]:
    """Ancestors of ``step_id`` in the remembered plan of ``record``'s runbook."""
    return _ANCESTORS.get((record.runbook, step_id), frozenset())


def summary_rows() -> list[tuple[str, str, str, str, str]]:
    """(area, scenario, expected, actual, safety) rows of the ledger, in run order."""
    return [(v.area, v.scenario, v.expected, v.actual, "UNSAFE: " + "; ".join(v.unsafe) if v.unsafe else "safe")
            for v in LEDGER]


def totals() -> dict[str, int]:
    """Counts for the summary line."""
    return {
        "scenarios": len(LEDGER),
        "recovered": sum(v.actual == "recovered" and not v.unsafe for v in LEDGER),
        "halted_safely": sum(v.actual == "halted" and not v.unsafe for v in LEDGER),
        "unexpected": sum(v.actual != v.expected for v in LEDGER),
        "unsafe": sum(bool(v.unsafe) for v in LEDGER),
    }


def quiet_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment of a `dr` subprocess: embedded Prefect on ``home``, or the server at ``api_url``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "DR_TEST_")) and k not in ("DR_STATE_DIR", "DR_LOCK_BACKEND")}
    env.update(EMBEDDED_SETTINGS)
    env.update({"PREFECT_HOME": str(home), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING"})
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env
