"""Webhook notifications (Slack-compatible JSON) on run start, approval needed, halt, success, breach.

Where webhooks come from (both apply):

- the runbook's ``notify:`` block: ``webhooks: [{url: {env: SLACK_WEBHOOK_URL}, events: [...]}]``
  and ``timeout`` (the URL is a secret reference, never written in the runbook);
- the environment: ``DR_NOTIFY_WEBHOOKS`` (URLs separated by commas or spaces),
  ``DR_NOTIFY_EVENTS`` (default: all) and ``DR_NOTIFY_TIMEOUT`` (default 5s).

A payload is ``{"text": ..., "blocks": [...]}``: Slack shows the blocks, other receivers can
read ``text``. It carries run facts only (runbook, run id, mode, regions, step, status, RTO/RPO
figures) passed through :func:`dr_engine.evidence.redact.redact_text`; secret values and the
webhook URLs themselves are never part of it.

Delivery never slows down or fails a run: messages go through a queue to one background
thread, each POST is bounded by the timeout, failures are logged (with the URL's path hidden,
since it usually is the credential). At the end of a run the queue is drained for a bounded time.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from dr_engine.engine.progress import Progress
from dr_engine.evidence.record import RunRecord, RunStatus, StepRecord
from dr_engine.evidence.redact import redact_text
from dr_engine.evidence.secrets_scrub import scrub_text
from dr_engine.evidence.summary import fmt_seconds
from dr_engine.model import Runbook, SecretRef, parse_duration
from dr_engine.model.notify import NotifyEvent

log = logging.getLogger("dr_engine.engine.notify")

DEFAULT_TIMEOUT = 5.0
#: Slack refuses a section field over 2000 characters; keep every value short.
MAX_VALUE = 300
ICONS = {NotifyEvent.STARTED: ":rotating_light:", NotifyEvent.APPROVAL: ":raised_hand:",
         NotifyEvent.HALTED: ":x:", NotifyEvent.SUCCEEDED: ":white_check_mark:",
         NotifyEvent.BREACH: ":warning:", NotifyEvent.READINESS: ":mag:"}


@dataclass(frozen=True)
class Target:
    """A resolved webhook: its URL (secret) and the events it wants."""

    url: SecretStr
    events: frozenset[NotifyEvent]

    @property
    def label(self) -> str:
        """``scheme://host/…``: enough to tell webhooks apart in logs, without the credential."""
        parts = urlsplit(self.url.get_secret_value())
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…"


def _resolve(ref: SecretRef, base: Path | None) -> SecretStr | None:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            log.warning("webhook URL variable %s is not set; that webhook is off", ref.env)
            return None
        return SecretStr(value)
    path = Path(ref.file or "").expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        log.warning("cannot read webhook URL file %s (%s); that webhook is off", path, exc.strerror)
        return None


def _env_events() -> frozenset[NotifyEvent]:
    raw = os.environ.get("DR_NOTIFY_EVENTS", "")
    names = [n.strip().lower() for n in re.split(r"[,\s]+", raw) if n.strip()]
    known = {e.value for e in NotifyEvent}
    unknown = [n for n in names if n not in known]
    if unknown:
        log.warning("DR_NOTIFY_EVENTS: unknown events %s ignored (known: %s)", unknown, sorted(known))
    picked = frozenset(NotifyEvent(n) for n in names if n in known)
    return picked or frozenset(NotifyEvent)


def _env_timeout() -> float | None:
    raw = os.environ.get("DR_NOTIFY_TIMEOUT")
    if not raw:
        return None
    try:
        return min(60.0, max(0.1, parse_duration(raw).total_seconds()))
    except ValueError:
        log.warning("DR_NOTIFY_TIMEOUT=%r is not a duration; using %ss", raw, DEFAULT_TIMEOUT)
        return None


def targets_for(runbook: Runbook | None, base: Path | None = None) -> tuple[list[Target], float]:
    """Webhooks of ``runbook`` plus those of the environment, and the delivery timeout."""
    targets: list[Target] = []
    timeout = DEFAULT_TIMEOUT
    if runbook is not None and runbook.notify is not None:
        timeout = runbook.notify.timeout.total_seconds()
        for hook in runbook.notify.webhooks:
            url = _resolve(hook.url, base)
            if url is not None:
                targets.append(Target(url, frozenset(hook.events)))
    env_urls = [u for u in re.split(r"[,\s]+", os.environ.get("DR_NOTIFY_WEBHOOKS", "")) if u]
    if env_urls:
        events = _env_events()
        targets.extend(Target(SecretStr(u), events) for u in env_urls)
    return targets, _env_timeout() or timeout


def _clip(value: Any) -> str:
    text = redact_text(str(value))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def message(event: NotifyEvent, text: str, fields: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    """A Slack-compatible payload: ``text`` (fallback) and ``blocks`` (section, fields, context)."""
    headline = f"{ICONS[event]} {_clip(text)}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
    shown = [(k, v) for k, v in fields if v not in (None, "")][:10]  # Slack allows 10 fields
    if shown:
        blocks.append({"type": "section",
                       "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_clip(v)}"} for k, v in shown]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"dr-engine · {event.value}"}]})
    return {"text": headline, "blocks": blocks}


@dataclass
class Delivery:
    """The outcome of one POST (for logs and tests)."""

    event: NotifyEvent
    target: str
    ok: bool
    detail: str = ""


@dataclass
class Notifier:
    """Sends messages to webhooks from one background thread; never raises to the caller."""

    targets: list[Target]
    timeout: float = DEFAULT_TIMEOUT
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[tuple[NotifyEvent, dict[str, Any]]] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def wants(self, event: NotifyEvent) -> bool:
        """True when some webhook takes ``event``."""
        return any(event in t.events for t in self.targets)

    def send(self, event: NotifyEvent, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every webhook that takes ``event``."""
        if not self.wants(event):
            return
        with self._idle:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dr-notify", daemon=True)
                self._thread.start()
        self._queue.put((event, payload))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (bounded) until every queued message was tried; True when none is left."""
        limit = timeout if timeout is not None else self.timeout * 2 + 1
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=limit)

    def _work(self) -> None:
        while True:
            event, payload = self._queue.get()
            try:
                for target in self.targets:
                    if event in target.events:
                        self.deliveries.append(self._post(target, event, payload))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _post(self, target: Target, event: NotifyEvent, payload: dict[str, Any]) -> Delivery:
        body = scrub_text(json.dumps(payload)).encode("utf-8")  # a webhook is outside the team too
        request = urllib.request.Request(target.url.get_secret_value(), data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "dr-engine-notify"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad URL: log, never fail the run
            log.warning("notification %s to %s failed: %s", event.value, target.label, type(exc).__name__)
            return Delivery(event, target.label, False, type(exc).__name__)
        if not 200 <= status < 300:
            log.warning("notification %s to %s refused: HTTP %d", event.value, target.label, status)
            return Delivery(event, target.label, False, f"HTTP {status}")
        return Delivery(event, target.label, True, f"HTTP {status}")


# --------------------------------------------------------------------------- run events


def _run_fields(record: RunRecord) -> list[tuple[str, Any]]:
    return [("Run", record.run_id), ("Mode", record.mode), ("Regions", f"{record.source} → {record.target}"),
            ("Triggered by", record.triggered_by), ("Reason", record.reason)]


def started_message(record: RunRecord) -> dict[str, Any]:
    """Run (or resume) started."""
    again = f" (resume {record.resumes})" if record.resumes else ""
    return message(NotifyEvent.STARTED, f"{record.mode} of *{record.runbook}* started{again}",
                   [*_run_fields(record), ("RTO objective", fmt_seconds(record.rto_target_seconds)),
                    ("Steps", len(record.steps))])


def approval_message(record: RunRecord, step: StepRecord) -> dict[str, Any]:
    """A ``control.approve`` step waits for a person."""
    return message(NotifyEvent.APPROVAL, f"{record.mode} of *{record.runbook}* waits for approval at step "
                   f"`{step.id}`: `dr approve {record.run_id} --as NAME` (or `--reject`)", _run_fields(record))


def finished_messages(record: RunRecord) -> list[tuple[NotifyEvent, dict[str, Any]]]:
    """Success or halt, plus a breach message when an objective was missed."""
    figures = [("RTO", f"{fmt_seconds(record.rto_seconds)} (objective {fmt_seconds(record.rto_target_seconds)})"),
               ("RPO", f"{fmt_seconds(record.rpo_seconds)} (objective {fmt_seconds(record.rpo_target_seconds)})")]
    out: list[tuple[NotifyEvent, dict[str, Any]]] = []
    if record.status is RunStatus.SUCCEEDED:
        out.append((NotifyEvent.SUCCEEDED, message(
            NotifyEvent.SUCCEEDED, f"{record.mode} of *{record.runbook}* succeeded", [*_run_fields(record), *figures])))
    else:
        error = f"{record.error.kind}: {record.error.message}" if record.error else ""
        where = f" at step `{record.halted_at_step}`" if record.halted_at_step else ""
        out.append((NotifyEvent.HALTED, message(
            NotifyEvent.HALTED, f"{record.mode} of *{record.runbook}* {record.status.value.upper()}{where}; "
            f"resume with `dr resume {record.run_id}`", [*_run_fields(record), ("Error", error), *figures])))
    # A halted run has no RTO yet (rto_met is false by definition): its halt message says enough.
    rto_missed = record.rto_met is False and record.rto_seconds is not None
    missed = [name for name, met in (("RTO", not rto_missed), ("RPO", record.rpo_met)) if met is False]
    if missed:
        out.append((NotifyEvent.BREACH, message(
            NotifyEvent.BREACH, f"{' and '.join(missed)} objective missed by {record.mode} of *{record.runbook}*",
            [("Run", record.run_id), *figures])))
    return out


class NotifyingProgress(Progress):
    """A progress listener that turns run events into webhook messages."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def run_started(self, record: RunRecord) -> None:
        """Send ``started``."""
        self.notifier.send(NotifyEvent.STARTED, started_message(record))

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        """Send ``approval`` when an approval step begins to wait."""
        if step.capability == "control.approve":
            self.notifier.send(NotifyEvent.APPROVAL, approval_message(record, step))

    def run_finished(self, record: RunRecord) -> None:
        """Send ``succeeded`` or ``halted`` (and ``breach``), then drain the queue (bounded)."""
        for event, payload in finished_messages(record):
            self.notifier.send(event, payload)
        self.notifier.flush()


def notifier_for(runbook: Runbook | None, base: Path | None = None) -> Notifier | None:
    """A notifier for ``runbook``'s webhooks and the environment's, or None when there are none."""
    targets, timeout = targets_for(runbook, base)
    return Notifier(targets, timeout) if targets else None


def listeners_for(runbook: Runbook, base: Path | None = None) -> list[Progress]:
    """Progress listeners the engine adds to a run of ``runbook`` (empty without webhooks)."""
    notifier = notifier_for(runbook, base)
    return [NotifyingProgress(notifier)] if notifier is not None else []


__all__ = [
    "Delivery",
    "Notifier",
    "NotifyEvent",
    "NotifyingProgress",
    "Target",
    "approval_message",
    "finished_messages",
    "listeners_for",
    "message",
    "notifier_for",
    "started_message",
    "targets_for",
]
