"""The ledger app against a real PostgreSQL pair: health means reachable AND writable."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psycopg
import pytest

from dr_engine.providers.http import request
from dr_engine.world.ledger_app import LedgerProcess, LedgerServer, ensure_schema, present_ack_seqs
from dr_engine.world.loopback import free_port
from dr_engine.world.postgres import PostgresPair

pytestmark = pytest.mark.integration


def post_transfer(url: str, amount: str, ack_seq: int | None) -> tuple[int | None, dict[str, object]]:
    answer = request(f"{url}/transfer", timeout=10, method="POST",
                     body=json.dumps({"amount": amount, "ack_seq": ack_seq}).encode(),
                     headers={"Content-Type": "application/json"})
    return answer.status, json.loads(answer.body) if answer.body.startswith("{") else {}


def test_primary_is_healthy_and_the_standby_is_not(pair: PostgresPair) -> None:
    primary = LedgerServer(pair.primary.host, 0, pair.dsn("us-east-1"), "us-east-1")
    standby = LedgerServer(pair.standby.host, 0, pair.dsn("us-west-2"), "us-west-2")
    with primary, standby:
        healthy = request(f"{primary.url}/healthz", timeout=10)
        assert (healthy.status, healthy.body.strip()) == (200, "ok region=us-east-1")
        unhealthy = request(f"{standby.url}/healthz", timeout=10)
        assert unhealthy.status == 503
        assert "standby in recovery" in unhealthy.body
        assert request(f"{standby.url}/livez", timeout=10).status == 200


def test_transfer_is_acknowledged_after_commit(pair: PostgresPair) -> None:
    with LedgerServer(pair.primary.host, 0, pair.dsn("us-east-1"), "us-east-1") as app:
        status, body = post_transfer(app.url, "12.50", 900001)
        assert status == 201
        assert body["region"] == "us-east-1" and body["ack_seq"] == 900001
        with psycopg.connect(pair.dsn("us-east-1"), connect_timeout=5) as conn:
            row = conn.execute("SELECT amount::text, ack_seq, region FROM transfers WHERE id = %s::bigint",
                               (body["id"],)).fetchone()
        assert row == ("12.50", 900001, "us-east-1")
        assert present_ack_seqs(pair.dsn("us-east-1"), [900001, 900002]) == {900001}
        summary = request(f"{app.url}/transfers/summary", timeout=10)
        assert json.loads(summary.body)["count"] >= 1

        bad, _ = post_transfer(app.url, "not money", 1)
        assert bad == 400


def test_writes_to_the_standby_are_refused(pair: PostgresPair) -> None:
    with LedgerServer(pair.standby.host, 0, pair.dsn("us-west-2"), "us-west-2") as app:
        status, body = post_transfer(app.url, "1.00", 900100)
        assert status == 503
        assert "read-only" in str(body["error"])


def test_unreachable_database_is_unhealthy(pair: PostgresPair) -> None:
    host = pair.primary.host
    dsn = f"postgresql://postgres@{host}:{free_port(host)}/ledger"
    with LedgerServer(host, 0, dsn, "us-east-1") as app:
        answer = request(f"{app.url}/healthz", timeout=10)
        assert answer.status == 503
        assert "database unavailable" in answer.body


def test_frozen_database_is_unhealthy_within_the_bound(pair: PostgresPair) -> None:
    with LedgerServer(pair.standby.host, 0, pair.dsn("us-west-2"), "us-west-2", db_timeout=0.5) as app:
        assert pair.signal_node("us-west-2", signal.SIGSTOP)
        try:
            answer = request(f"{app.url}/healthz", timeout=15)
        finally:
            pair.signal_node("us-west-2", signal.SIGCONT)
        assert answer.status == 503
        assert "database" in answer.body


def test_app_as_its_own_process(pair: PostgresPair, tmp_path: Path) -> None:
    host = pair.primary.host
    app = LedgerProcess(host, free_port(host), pair.dsn("us-east-1"), "us-east-1", log_file=tmp_path / "app.log")
    app.start()
    try:
        pid = app.pid
        assert pid is not None and app.ready()
        assert request(f"{app.url}/healthz", timeout=10).status == 200
        status, body = post_transfer(app.url, "3.00", 900200)
        assert status == 201 and body["region"] == "us-east-1"
    finally:
        app.stop()
    assert app.pid is None
    assert not app.ready()


def test_schema_creation_is_idempotent(pair: PostgresPair) -> None:
    ensure_schema(pair.dsn("us-east-1"))
    ensure_schema(pair.dsn("us-east-1"))
    with psycopg.connect(pair.dsn("us-east-1"), connect_timeout=5) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'transfers' "
            "ORDER BY ordinal_position"
        ).fetchall()]
    assert columns == ["id", "amount", "ack_seq", "region", "created_at"]


def test_recorded_app_can_be_stopped_from_elsewhere(pair: PostgresPair) -> None:
    host = pair.primary.host
    app = LedgerProcess(host, free_port(host), pair.dsn("us-east-1"), "us-east-1")
    app.start()
    try:
        state = app.to_dict()
        assert "postgresql://" not in str(state)
        attached = LedgerProcess.from_dict(state)
        assert attached.pid == app.pid and attached.ready()
        attached.stop()
        assert attached.pid is None
        assert not app.ready()
    finally:
        app.stop()
    assert app.pid is None
