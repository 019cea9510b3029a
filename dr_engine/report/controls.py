"""Which evidence in dr-engine's reports satisfies which regulatory control.

The texts summarise what each control asks for in the words auditors use; they are not
legal advice and do not replace the control text. Every row names the concrete evidence
(report sections, files) and a status computed for the period:

- ``evidenced``: the evidence exists for every runbook in scope;
- ``partial``: evidence exists but something is open (a failed objective without a closed
  remediation item, an overdue or never-tested runbook);
- ``gap``: no evidence at all in the period.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


class ControlRow(BaseModel):
    """One control and the evidence that satisfies it."""

    framework: str
    control: str
    requirement: str
    evidence: list[str]
    status: str
    detail: str = ""


@dataclass(frozen=True)
class PeriodFacts:
    """What the period's runs show, as far as the controls care."""

    runs: int
    successful_tests: int
    runbooks: int
    overdue: list[str]
    never_tested: list[str]
    failed_objective_runs: list[str]
    unremediated_runs: list[str]
    open_remediation: int
    #: Runs whose records do not verify (broken audit chain, or run.json disagrees with the log).
    chain_problems: list[str]


_CONTROLS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("PCI DSS v4.0", "12.10.2",
     "The incident response plan, including business recovery and continuity, is reviewed and tested at "
     "least once every 12 months.",
     ("Period report: drill cadence (last successful test, next due)", "Per-run reports of each test",
      "Evidence packs (run.json, audit.jsonl, runbook as run)"), "cadence"),
    ("SOC 2 (TSC 2017)", "A1.3",
     "Recovery plan procedures supporting system recovery are tested periodically to meet the entity's "
     "availability objectives.",
     ("Per-run reports: objectives, achieved RTO/RPO, pass/fail", "Period report: RTO/RPO achieved vs target",
      "Deviations and remediation items"), "objectives"),
    ("DORA (EU) 2022/2554", "Art. 11(6)",
     "ICT business continuity and response and recovery plans are tested at least yearly and after "
     "substantive changes, including scenarios of switchover to redundant capacity.",
     ("Period report: drill cadence per runbook", "Per-run identification: runbook version (git commit, "
      "SHA-256), scenario", "Timeline of each switchover (UTC)"), "cadence"),
    ("RTS (EU) 2024/1774", "Art. 25",
     "Testing of ICT business continuity plans: scenarios, measured recovery against objectives, "
     "documented results, identified deficiencies and their remediation.",
     ("Per-run reports: scenario, timeline, RTO/RPO vs objectives, data integrity",
      "Deviations and remediation items (owner, due date)", "Hash-chained audit log and its verification"),
     "remediation"),
    ("FFIEC BCM booklet", "VII.K",
     "Results of exercises and tests are documented, analysed against objectives, reported to management, "
     "and followed by corrective action.",
     ("Per-run reports and period report (success rate, trend)", "Deviations and remediation items",
      "Integrity: SHA-256 of reports and audit logs; evidence pack verification"), "remediation"),
)


def _status(kind: str, facts: PeriodFacts) -> tuple[str, str]:
    if facts.runs == 0 or facts.successful_tests == 0:
        return "gap", "no successful test in the period"
    problems: list[str] = []
    if facts.chain_problems:
        problems.append(f"records do not verify (UNVERIFIED) for {', '.join(facts.chain_problems)}")
    if kind == "cadence":
        if facts.overdue:
            problems.append(f"test overdue: {', '.join(facts.overdue)}")
        if facts.never_tested:
            problems.append(f"never tested: {', '.join(facts.never_tested)}")
    if kind == "objectives" and facts.failed_objective_runs:
        problems.append(f"{len(facts.failed_objective_runs)} run(s) missed an objective")
    if kind == "remediation":
        if facts.unremediated_runs:
            problems.append(f"no remediation recorded for {', '.join(facts.unremediated_runs)}")
        if facts.open_remediation:
            problems.append(f"{facts.open_remediation} remediation item(s) open")
    if problems:
        return "partial", "; ".join(problems)
    return "evidenced", f"{facts.successful_tests} successful test(s) over {facts.runbooks} runbook(s)"


def control_mapping(facts: PeriodFacts) -> list[ControlRow]:
    """The control mapping table for a period."""
    rows: list[ControlRow] = []
    for framework, control, requirement, evidence, kind in _CONTROLS:
        status, detail = _status(kind, facts)
        rows.append(ControlRow(framework=framework, control=control, requirement=requirement,
                               evidence=list(evidence), status=status, detail=detail))
    return rows


__all__ = ["ControlRow", "PeriodFacts", "control_mapping"]
