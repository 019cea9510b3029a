"""Continuous readiness against a real moto server: not ready -> notified once -> ready again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dr_engine.cli import build_app
from dr_engine.engine.readiness import latest, run_readiness
from dr_engine.testing.webhook_receiver import WebhookReceiver
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration

RUNBOOK = """
runbook: secret-app
source: us-east-1
target: us-west-2
objectives: {rto: 5m, rpo: 0s}
notify:
  webhooks:
    - url: {env: READINESS_HOOK}
      events: [readiness]
steps:
  - id: verify-secret
    action: secretsmanager.verify_replica
    with: {secret_id: app/db}
  - id: healthy
    action: shell.verify
    with: {command: ["true"]}
    after: [verify-secret]
"""


def write_world(tmp_path: Path, endpoint: str) -> Path:
    (tmp_path / "regions").mkdir()
    for name in ("us-east-1", "us-west-2"):
        (tmp_path / "regions" / f"{name}.yaml").write_text(
            f"name: {name}\naws: {{region: {name}, endpoint_url: '{endpoint}'}}\n")
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "secret-app.yaml").write_text(RUNBOOK)
    (folder / "broken-app.yaml").write_text("runbook: broken-app\nsource: us-east-1\n")
    return folder


def test_readiness_notifies_on_change_only_and_is_shown_by_the_cli(
        moto: MotoServer, boto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_world(tmp_path, moto.endpoint_url)
    state = tmp_path / "state"
    monkeypatch.delenv("DR_NOTIFY_WEBHOOKS", raising=False)
    with WebhookReceiver() as hook:
        monkeypatch.setenv("READINESS_HOOK", hook.url)
        first = {r.runbook: r for r in run_readiness(state, folder=folder)}
        assert not first["broken-app"].ready
        assert first["broken-app"].failures[0].name == "load and plan"
        secret = first["secret-app"]
        assert not secret.ready
        assert any("app/db" in c.name and "does not exist" in c.detail for c in secret.failures)
        assert len(hook.wait_for(1)) == 1
        run_readiness(state, folder=folder, only=str(folder / "secret-app.yaml"))  # same problem: no repeat
        for region in ("us-east-1", "us-west-2"):
            boto("secretsmanager", region).create_secret(Name="app/db", SecretString="canary-secret-value")
        (again,) = run_readiness(state, folder=folder, only=str(folder / "secret-app.yaml"))
        assert again.ready, again.failures
        payloads = hook.wait_for(2)
    assert len(payloads) == 2
    assert "would NOT succeed" in payloads[0]["text"] and "secret-app" in payloads[0]["text"]
    assert "ready again" in payloads[1]["text"]
    assert all("canary-secret-value" not in json.dumps(p) for p in payloads)
    history = (state / "readiness" / "history.jsonl").read_text().splitlines()
    assert len(history) == 4
    assert {r.runbook: r.ready for r in latest(state)} == {"broken-app": False, "secret-app": True}

    runner = CliRunner()
    shown = runner.invoke(build_app(), ["readiness", "secret-app", "--output", "json", "--state-dir", str(state)])
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.stdout)
    assert row["ready"] is True and row["failed"] == 0
    every = runner.invoke(build_app(), ["readiness", "--state-dir", str(state)])
    assert every.exit_code == 1 and "broken-app" in every.stdout and "NO" in every.stdout
