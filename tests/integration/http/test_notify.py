"""Webhook notifications from real runs to a real HTTP receiver: payloads, events, failures, secrets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.engine.notify import Notifier, Target, message
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.lock.base import NullLock
from dr_engine.model.notify import NotifyEvent
from dr_engine.testing.runbooks import plan_from_steps
from dr_engine.testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

CANARY = "region-secret-canary-8817"
NOTIFY = "notify:\n  webhooks:\n    - url: {env: TEST_HOOK_URL}\n  timeout: 2s\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DR_NOTIFY_WEBHOOKS", "DR_NOTIFY_EVENTS", "DR_NOTIFY_TIMEOUT", "TEST_HOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DR_TEST_WEST_TOKEN", CANARY)
    monkeypatch.setenv("DR_TEST_EAST_TOKEN", CANARY)


def run(tmp_path: Path, steps: str, **kwargs: str) -> Any:
    plan = plan_from_steps(tmp_path, steps, **kwargs)
    return start_run(plan, RunOptions(state_dir=tmp_path / "state", concurrency=1, lock=NullLock(),
                                      triggered_by="oncall@bank"))


def event_of(payload: dict[str, Any]) -> str:
    return str(payload["blocks"][-1]["elements"][0]["text"]).rsplit(" ", 1)[-1]


def check_slack_shape(payload: dict[str, Any]) -> None:
    assert isinstance(payload["text"], str) and payload["text"]
    assert payload["blocks"][0]["type"] == "section" and payload["blocks"][0]["text"]["type"] == "mrkdwn"
    for block in payload["blocks"]:
        for item in block.get("fields", []):
            assert item["type"] == "mrkdwn" and len(item["text"]) < 2000


def test_a_run_notifies_start_approval_success_and_breach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as hook:
        monkeypatch.setenv("TEST_HOOK_URL", hook.url)
        record = run(tmp_path, """
- id: approve
  action: fake.wait_approval
  with: {seconds: 0.05}
- id: healthy
  action: fake.check_health
  after: [approve]
""", rto="10ms", extra=NOTIFY)
        assert record.status is RunStatus.SUCCEEDED and record.rto_met is False
        payloads = hook.wait_for(4)
    assert [event_of(p) for p in payloads] == ["started", "approval", "succeeded", "breach"]
    for payload in payloads:
        check_slack_shape(payload)
    started, approval, succeeded, breach = payloads
    assert "failover of *test-app* started" in started["text"]
    facts = " ".join(f["text"] for f in started["blocks"][1]["fields"])
    assert record.run_id in facts and "east → west" in facts and "oncall@bank" in facts
    assert "`approve`" in approval["text"] and f"dr approve {record.run_id}" in approval["text"]
    assert "succeeded" in succeeded["text"]
    assert "RTO objective missed" in breach["text"]
    raw = b"".join(r["body"] for r in hook.requests)
    assert CANARY.encode() not in raw and b"/hooks/T000" not in raw  # no secret, not even the webhook URL
    assert all(r["headers"]["Content-Type"] == "application/json" for r in hook.requests)


def test_a_halt_is_notified_with_a_redacted_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as hook:
        monkeypatch.setenv("DR_NOTIFY_WEBHOOKS", hook.url)
        monkeypatch.setenv("DR_NOTIFY_EVENTS", "halted,breach")
        record = run(tmp_path, """
- id: promote
  action: fake.fail
  with: {kind: FencingFailed, message: "old primary postgresql://admin:hunter2-pw@10.0.0.1/db still up"}
- id: healthy
  action: fake.check_health
  after: [promote]
""")
        assert record.status is RunStatus.HALTED
        (payload,) = hook.wait_for(1)
    assert event_of(payload) == "halted"  # started was not subscribed
    assert "HALTED at step `promote`" in payload["text"] and f"dr resume {record.run_id}" in payload["text"]
    error = next(f["text"] for f in payload["blocks"][1]["fields"] if f["text"].startswith("*Error*"))
    assert "FencingFailed" in error and "hunter2-pw" not in error and "***" in error


def test_broken_webhooks_never_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dr_engine.engine.notify")
    with WebhookReceiver(status=500) as failing, WebhookReceiver(delay=3.0) as slow, WebhookReceiver() as good:
        unreachable = WebhookReceiver(path="/hooks/T000/B000/gone-secret")
        unreachable.stop()  # its port is closed now: connection refused
        monkeypatch.setenv("DR_NOTIFY_WEBHOOKS", " ".join([failing.url, slow.url, unreachable.url, good.url]))
        monkeypatch.setenv("DR_NOTIFY_TIMEOUT", "300ms")
        monkeypatch.setenv("DR_NOTIFY_EVENTS", "succeeded")
        record = run(tmp_path, "- id: healthy\n  action: fake.check_health\n")
        assert record.status is RunStatus.SUCCEEDED
        assert len(good.wait_for(1)) == 1
        assert len(failing.wait_for(1)) == 1
    assert "refused: HTTP 500" in caplog.text
    assert "failed: " in caplog.text  # the timeout and the refused connection
    assert "gone-secret" not in caplog.text and "/hooks/T000" not in caplog.text


def test_the_notifier_only_sends_subscribed_events() -> None:
    with WebhookReceiver() as hook:
        from pydantic import SecretStr

        notifier = Notifier([Target(SecretStr(hook.url), frozenset({NotifyEvent.READINESS}))], timeout=2)
        notifier.send(NotifyEvent.STARTED, message(NotifyEvent.STARTED, "ignored"))
        notifier.send(NotifyEvent.READINESS, message(NotifyEvent.READINESS, "checked", [("Runbook", "x" * 5000)]))
        assert notifier.flush(10)
        (payload,) = hook.payloads
    assert event_of(payload) == "readiness"
    assert len(payload["blocks"][1]["fields"][0]["text"]) < 400
    assert [d.ok for d in notifier.deliveries] == [True]
