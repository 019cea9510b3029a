"""Continuous readiness: would each runbook succeed if it ran now?

A readiness check loads and plans a runbook (config and safety invariants) and runs its
read-only pre-flight (:mod:`dr_engine.planning.preflight`: replication lag against the RPO, target stack
state and drift, credentials, DNS and health configuration). Nothing changes anywhere.

Results are kept under the state dir::

    <state-dir>/readiness/<runbook>.json     the latest result (``dr readiness`` shows it)
    <state-dir>/readiness/history.jsonl      every result, one JSON line each

A ``readiness`` notification is sent (see :mod:`dr_engine.engine.notify`) when a runbook becomes not
ready or its failing checks change, and once when it is ready again, so a 30-minute schedule
does not repeat the same alarm every half hour. The drill cadence (last successful drill or
failover against the runbook's ``drill_interval``) is reported but does not make a runbook
"not ready".
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from dr_engine.clock import SystemClock, parse_utc, utc_iso
from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import runbooks_dir
from dr_engine.engine.notify import message, notifier_for
from dr_engine.errors import DrError
from dr_engine.evidence.record import RunStatus, atomic_write_text
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import Runbook
from dr_engine.model.notify import NotifyEvent
from dr_engine.planning.plan import build_plan
from dr_engine.planning.preflight import run_preflight

log = logging.getLogger("dr_engine.engine.readiness")

READINESS_DIR = "readiness"
HISTORY_FILE = "history.jsonl"
#: How often the scheduled readiness flow runs by default (as AWS ARC evaluates plans).
DEFAULT_INTERVAL = timedelta(minutes=30)


@dataclass
class Check:
    """One check of one step (or ``runbook`` for load/plan problems)."""

    step: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Readiness:
    """The readiness of one runbook at one moment."""

    runbook: str
    path: str
    checked_at: str
    ready: bool
    checks: list[Check] = field(default_factory=list)
    duration_seconds: float = 0.0
    last_test_run: str | None = None
    last_test_at: str | None = None
    drill_overdue: bool | None = None

    @property
    def failures(self) -> list[Check]:
        """The failed checks."""
        return [c for c in self.checks if not c.ok]

    def signature(self) -> list[str]:
        """What failed (to tell a new problem from the same one again)."""
        return sorted(f"{c.step}/{c.name}" for c in self.failures)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["failed"] = len(self.failures)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Readiness:
        """Inverse of :meth:`to_json`."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["checks"] = [Check(**c) for c in data.get("checks", [])]
        return cls(**fields)


def _last_test(state: StateDir, runbook: Runbook) -> tuple[str | None, str | None, bool | None]:
    tests = [r for r in state.list_runs() if r.runbook == runbook.runbook and r.status is RunStatus.SUCCEEDED]
    if not tests:
        return None, None, True
    last = tests[-1]
    overdue = parse_utc(last.started_at) + runbook.drill_interval < SystemClock().now()
    return last.run_id, last.started_at, overdue


def check_runbook(path: Path, state_dir: StateDir | Path, *, regions_dir: Path | None = None) -> Readiness:
    """Load, plan and pre-flight ``path`` (read-only); never raises for a problem it finds."""
    started = time.monotonic()
    checked_at = utc_iso(SystemClock().now())
    name = path.stem
    try:
        plan = build_plan(load_runbook(path, regions_dir))
    except DrError as exc:
        return Readiness(runbook=name, path=str(path), checked_at=checked_at, ready=False,
                         checks=[Check("runbook", "load and plan", False, str(exc))],
                         duration_seconds=round(time.monotonic() - started, 3))
    rb = plan.loaded.runbook
    checks = [Check("runbook", "load and plan", True, f"{len(plan.steps)} steps in {len(plan.waves)} waves")]
    try:
        results = run_preflight(plan)
    except Exception as exc:  # a broken pre-flight is itself a readiness failure, never a crash
        results = {}
        checks.append(Check("runbook", "pre-flight", False, f"{type(exc).__name__}: {exc}"))
    checks += [Check(step, c.name, c.ok, c.detail) for step, found in results.items() for c in found]
    run_id, at, overdue = _last_test(StateDir.of(state_dir), rb)
    return Readiness(runbook=rb.runbook, path=str(path), checked_at=checked_at, ready=all(c.ok for c in checks),
                     checks=checks, duration_seconds=round(time.monotonic() - started, 3), last_test_run=run_id,
                     last_test_at=at, drill_overdue=overdue)


def _folder(state_dir: StateDir | Path) -> Path:
    return StateDir.of(state_dir).readiness_dir


def store(state_dir: StateDir | Path, result: Readiness) -> Path:
    """Write ``result`` as the latest of its runbook and append it to the history."""
    folder = _folder(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    latest = folder / f"{result.runbook}.json"
    atomic_write_text(latest, json.dumps(result.to_json(), indent=2) + "\n")
    with (folder / HISTORY_FILE).open("a", encoding="utf-8") as history:
        history.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
    return latest


def latest(state_dir: StateDir | Path, runbook: str | None = None) -> list[Readiness]:
    """The latest stored result per runbook (one runbook when named), sorted by name."""
    folder = _folder(state_dir)
    if not folder.is_dir():
        return []
    paths = [folder / f"{runbook}.json"] if runbook else sorted(folder.glob("*.json"))
    paths = [p for p in paths if p.is_file()]
    found: list[Readiness] = []
    for path in paths:
        try:
            found.append(Readiness.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable readiness result %s: %s", path, exc)
    return found


def worth_telling(previous: Readiness | None, current: Readiness) -> bool:
    """Notify on a new or changed problem, and once on recovery; not on the same state again."""
    if previous is None:
        return not current.ready
    if current.ready:
        return not previous.ready
    return previous.ready or previous.signature() != current.signature()


def readiness_message(result: Readiness) -> dict[str, Any]:
    """The webhook payload for ``result``."""
    if result.ready:
        return message(NotifyEvent.READINESS, f"runbook *{result.runbook}* is ready again",
                       [("Checked at", result.checked_at), ("Checks", len(result.checks))])
    failures = result.failures
    lines = "\n".join(f"• {c.step}: {c.name}: {c.detail}" for c in failures[:5])
    more = f"\n… and {len(failures) - 5} more" if len(failures) > 5 else ""
    return message(NotifyEvent.READINESS,
                   f"runbook *{result.runbook}* would NOT succeed now: {len(failures)} failed check(s)",
                   [("Checked at", result.checked_at), ("Failed", lines + more),
                    ("Details", f"dr readiness {result.runbook}")])


def notify(result: Readiness, previous: Readiness | None) -> bool:
    """Send a readiness notification when worth it; True when one was sent (delivery bounded)."""
    if not worth_telling(previous, result):
        return False
    runbook: Runbook | None = None
    path = Path(result.path)
    try:
        runbook = load_runbook(path).runbook
    except DrError:
        runbook = None  # a broken runbook still reaches the environment's webhooks
    notifier = notifier_for(runbook, path.parent)
    if notifier is None or not notifier.wants(NotifyEvent.READINESS):
        return False
    notifier.send(NotifyEvent.READINESS, readiness_message(result))
    notifier.flush()
    return True


def runbook_paths(folder: Path | None = None, only: str | None = None) -> list[Path]:
    """Runbook files to check: every ``*.yaml`` in ``folder`` (default ``$DR_RUNBOOKS_DIR``), or one."""
    if only is not None:
        from dr_engine.config.runbooks import resolve_runbook

        return [resolve_runbook(only)]
    folder = folder or runbooks_dir()
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def run_readiness(state_dir: StateDir | Path, *, folder: Path | None = None, only: str | None = None,
                  regions_dir: Path | None = None, send: bool = True) -> list[Readiness]:
    """Check, store and (when worth it) notify for each runbook; return the results."""
    results: list[Readiness] = []
    for path in runbook_paths(folder, only):
        result = check_runbook(path, state_dir, regions_dir=regions_dir)
        previous = next(iter(latest(state_dir, result.runbook)), None)
        store(state_dir, result)
        if send:
            try:
                notify(result, previous)
            except Exception:  # notifications never break the readiness loop
                log.exception("readiness notification for %s failed", result.runbook)
        results.append(result)
    return results


__all__ = [
    "DEFAULT_INTERVAL",
    "Check",
    "Readiness",
    "check_runbook",
    "latest",
    "notify",
    "readiness_message",
    "run_readiness",
    "runbook_paths",
    "store",
    "worth_telling",
]
