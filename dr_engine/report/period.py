"""The period report: every run between two dates, per-runbook results, cadence and controls.

``dr report --since DATE [--until DATE] [--runbook NAME]`` builds a :class:`PeriodReport`
from the run directories of a state dir (each through the same per-run report model, so a
period report never disagrees with the per-run reports it summarises).

Drill cadence looks at *all* recorded runs up to the end of the period (a successful test
before the period still counts) and at the runbooks in the runbooks directory (a runbook
that was never tested is a gap). The next test is due ``drill_interval`` after the last
successful drill or failover (the runbook's ``drill_interval:``, default 365 days).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dr_engine.clock import parse_utc, utc_iso
from dr_engine.config.yamlsafe import read_yaml
from dr_engine.errors import RunStateError
from dr_engine.evidence.statedir import StateDir
from dr_engine.report.controls import ControlRow, PeriodFacts, control_mapping
from dr_engine.report.formatting import parse_ts
from dr_engine.report.model import Deviation, RunReport, build_run_report
from dr_engine.report.notes import RemediationItem
from dr_engine.report.source import load_run

PERIOD_SCHEMA = "dr-engine/period-report/1"
DEFAULT_INTERVAL = timedelta(days=365)
#: A test is "due soon" this long before its due date.
DUE_SOON = timedelta(days=30)
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class RunSummary(BaseModel):
    """One run as a row of the period report."""

    run_id: str
    runbook: str
    mode: str
    status: str
    verdict: str
    started_at: str | None
    rto_seconds: float | None
    rto_target_seconds: float
    rto_met: bool | None
    rpo_seconds: float | None
    rpo_target_seconds: float
    rpo_met: bool | None
    rows_lost: int | None
    deviations: int
    chain_ok: bool
    verified: bool = Field(description="false: the run's records do not verify (verdict UNVERIFIED)")
    verification: str = ""
    triggered_by: str = ""


class RunbookStats(BaseModel):
    """Results and cadence of one runbook."""

    runbook: str
    runs: int
    succeeded: int
    unverified: int = Field(default=0, description="runs whose records do not verify: never counted as succeeded")
    success_rate: float | None
    rto_target_seconds: float | None
    rto_best_seconds: float | None
    rto_median_seconds: float | None
    rto_worst_seconds: float | None
    rto_met: int
    rpo_target_seconds: float | None
    rpo_worst_seconds: float | None
    rows_lost: int
    last_successful_test: str | None
    last_test_run: str | None = None
    drill_interval_days: float
    next_due: str | None
    cadence: str = Field(description="ok | due-soon | overdue | never-tested")


class OpenDeviation(Deviation):
    """A deviation of a run in the period whose run still has open remediation or none at all."""

    run_id: str
    runbook: str


class OpenRemediation(RemediationItem):
    """An open remediation item with the run it belongs to."""

    run_id: str
    runbook: str
    is_overdue: bool = False


class PeriodReport(BaseModel):
    """The period report model."""

    schema_: str = Field(default=PERIOD_SCHEMA, alias="schema")
    generated_at: str
    title: str
    since: str
    until: str
    runbook_filter: str | None
    verdict: str
    total_runs: int
    succeeded_runs: int
    success_rate: float | None
    runs: list[RunSummary]
    runbooks: list[RunbookStats]
    open_deviations: list[OpenDeviation]
    open_remediation: list[OpenRemediation]
    controls: list[ControlRow]
    chain_problems: list[str]
    unverified_runs: list[str] = Field(default_factory=list,
                                       description="runs whose records do not verify (verdict UNVERIFIED)")
    content_sha256: str = ""

    model_config = {"populate_by_name": True}


def interval_of(text: Any) -> timedelta:
    """A drill interval such as ``90d``/``26w``/``365d`` (run-time durations stop at a week)."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str) or not text.strip():
        return DEFAULT_INTERVAL
    parts = _PART.findall(text.replace(" ", ""))
    seconds = sum(float(n) * _FACTORS[u] for n, u in parts)
    return timedelta(seconds=seconds) if seconds > 0 else DEFAULT_INTERVAL


def _runbook_settings(path: Path) -> dict[str, Any]:
    try:
        data, _ = read_yaml(path)
    except Exception:  # a broken runbook file only loses its cadence setting
        return {}
    return data if isinstance(data, dict) else {}


def discover_runbooks(runbooks_dir: Path | None) -> dict[str, dict[str, Any]]:
    """Runbook name -> its top-level settings, for every YAML file in ``runbooks_dir``."""
    found: dict[str, dict[str, Any]] = {}
    if runbooks_dir is None or not runbooks_dir.is_dir():
        return found
    for path in sorted(runbooks_dir.glob("*.y*ml")):
        settings = _runbook_settings(path)
        if settings.get("kind", "runbook") == "runbook" and isinstance(settings.get("runbook"), str):
            found[settings["runbook"]] = settings
    return found


def _summary(report: RunReport) -> RunSummary:
    ident, rec = report.identification, report.recovery
    return RunSummary(
        run_id=ident.run_id, runbook=ident.runbook, mode=ident.mode, status=ident.status, verdict=report.verdict,
        started_at=ident.started_at, rto_seconds=rec.rto_seconds, rto_target_seconds=rec.rto_target_seconds,
        rto_met=rec.rto_met, rpo_seconds=rec.rpo_seconds, rpo_target_seconds=rec.rpo_target_seconds,
        rpo_met=rec.rpo_met, rows_lost=rec.rows_lost, deviations=len(report.deviations),
        chain_ok=report.integrity.chain_ok, verified=report.verified, verification=report.verification,
        triggered_by=ident.triggered_by)


def _is_test(report: RunReport) -> bool:
    # A succeeded drill or real failover demonstrates recovery; a failback alone does not.
    # An unverified run's verdict is UNVERIFIED, so it never counts as a test.
    return report.identification.mode in ("drill", "failover") and report.verdict == "PASSED"


def _succeeded(report: RunReport) -> bool:
    # What an unverified run claims is not established: it is counted apart, never as a success.
    return report.verified and report.identification.status == "succeeded"


def load_reports(state_dir: StateDir | Path, until: datetime | None = None) -> list[RunReport]:
    """Reports of every readable run in a state dir that started before ``until`` (oldest first)."""
    state = StateDir.of(state_dir)
    reports: list[RunReport] = []
    for run_id in state.run_ids():
        try:
            report = build_run_report(load_run(state.run_dir(run_id)))
        except RunStateError:
            continue
        started = parse_ts(report.identification.started_at)
        if until is not None and started is not None and started >= until:
            continue
        reports.append(report)
    return reports


def _stats(name: str, in_period: list[RunReport], history: list[RunReport], settings: dict[str, Any],
           as_of: datetime) -> RunbookStats:
    verified = [r for r in in_period if r.verified]
    rtos = [r.recovery.rto_seconds for r in verified if r.recovery.rto_seconds is not None]
    rpos = [r.recovery.rpo_seconds for r in verified if r.recovery.rpo_seconds is not None]
    succeeded = sum(1 for r in in_period if _succeeded(r))
    tests = [r for r in history if r.identification.runbook == name and _is_test(r)]
    last = max(tests, key=lambda r: r.identification.started_at or "", default=None)
    interval = interval_of(settings.get("drill_interval"))
    last_at = parse_ts(last.identification.finished_at or last.identification.started_at) if last else None
    next_due = last_at + interval if last_at else None
    if next_due is None:
        cadence = "never-tested"
    elif next_due < as_of:
        cadence = "overdue"
    elif next_due - as_of <= DUE_SOON:
        cadence = "due-soon"
    else:
        cadence = "ok"
    latest = in_period[-1] if in_period else None
    return RunbookStats(
        runbook=name, runs=len(in_period), succeeded=succeeded, unverified=len(in_period) - len(verified),
        success_rate=succeeded / len(in_period) if in_period else None,
        rto_target_seconds=latest.recovery.rto_target_seconds if latest else None,
        rto_best_seconds=min(rtos) if rtos else None, rto_median_seconds=statistics.median(rtos) if rtos else None,
        rto_worst_seconds=max(rtos) if rtos else None,
        rto_met=sum(1 for r in verified if r.recovery.rto_met is True),
        rpo_target_seconds=latest.recovery.rpo_target_seconds if latest else None,
        rpo_worst_seconds=max(rpos) if rpos else None,
        rows_lost=sum(r.recovery.rows_lost or 0 for r in verified),
        last_successful_test=last.identification.started_at if last else None,
        last_test_run=last.identification.run_id if last else None,
        drill_interval_days=round(interval.total_seconds() / 86400, 2),
        next_due=utc_iso(next_due) if next_due else None, cadence=cadence)


def build_period_report(state_dir: StateDir | Path, *, since: datetime, until: datetime | None = None,
                        runbook: str | None = None, runbooks_dir: Path | None = None,
                        now: datetime | None = None) -> PeriodReport:
    """Build the period report of the runs in ``state_dir`` started in ``[since, until)``."""
    now = now or datetime.now(UTC)
    until = until or now
    history = [r for r in load_reports(state_dir, until) if runbook is None or r.identification.runbook == runbook]
    in_period = [r for r in history if (parse_ts(r.identification.started_at) or since) >= since]
    known = discover_runbooks(runbooks_dir)
    names = sorted({r.identification.runbook for r in history} | ({runbook} if runbook else set(known)))
    as_of = min(until, now)
    stats = [_stats(name, [r for r in in_period if r.identification.runbook == name], history,
                    known.get(name, {}), as_of) for name in names]
    today = as_of.date()
    open_items: list[OpenRemediation] = []
    deviations: list[OpenDeviation] = []
    for report in history:
        ident = report.identification
        for item in report.open_remediation:
            open_items.append(OpenRemediation(**item.model_dump(), run_id=ident.run_id, runbook=ident.runbook,
                                              is_overdue=item.overdue(today)))
    for report in in_period:
        ident = report.identification
        remediated = bool(report.remediation) and not report.open_remediation
        if not remediated:
            # Retries that ended in success are informational, and steps that did not run are the
            # consequence of the failure listed next to them; everything else needs follow-up.
            deviations += [OpenDeviation(**d.model_dump(), run_id=ident.run_id, runbook=ident.runbook)
                           for d in report.deviations if d.kind not in ("retry", "not-run")]
    succeeded = sum(1 for r in in_period if _succeeded(r))
    failed_runs = [r.identification.run_id for r in in_period if r.failed_objectives]
    chain_problems = [r.identification.run_id for r in in_period if not r.integrity.chain_ok]
    unverified = [r.identification.run_id for r in in_period if not r.verified]
    facts = PeriodFacts(
        runs=len(in_period), successful_tests=sum(1 for r in in_period if _is_test(r)), runbooks=len(names),
        overdue=[s.runbook for s in stats if s.cadence == "overdue"],
        never_tested=[s.runbook for s in stats if s.cadence == "never-tested"],
        failed_objective_runs=failed_runs,
        unremediated_runs=[r.identification.run_id for r in in_period if r.failed_objectives and not r.remediation],
        open_remediation=len(open_items), chain_problems=unverified)
    controls = control_mapping(facts)
    attention = bool(unverified or chain_problems or facts.overdue or facts.never_tested or failed_runs or open_items)
    scope = f" - {runbook}" if runbook else ""
    period = PeriodReport(
        generated_at=utc_iso(now), title=f"DR test period report{scope}: {_day(since)} to {_day(until)}",
        since=utc_iso(since), until=utc_iso(until), runbook_filter=runbook,
        verdict="ATTENTION" if attention else "PASSED", total_runs=len(in_period), succeeded_runs=succeeded,
        success_rate=succeeded / len(in_period) if in_period else None,
        runs=[_summary(r) for r in in_period], runbooks=stats, open_deviations=deviations,
        open_remediation=open_items, controls=controls, chain_problems=chain_problems, unverified_runs=unverified)
    data = period.model_dump(mode="json", by_alias=True)
    data.pop("generated_at", None)
    data.pop("content_sha256", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    period.content_sha256 = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return period


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def parse_day_or_time(text: str, *, end_of_day: bool = False) -> datetime:
    """``2026-01-31`` (midnight UTC; with ``end_of_day`` the next midnight) or a full ISO time with offset."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_utc(text)
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if end_of_day else moment


__all__ = [
    "PERIOD_SCHEMA",
    "OpenDeviation",
    "OpenRemediation",
    "PeriodReport",
    "RunSummary",
    "RunbookStats",
    "build_period_report",
    "discover_runbooks",
    "interval_of",
    "load_reports",
    "parse_day_or_time",
]
