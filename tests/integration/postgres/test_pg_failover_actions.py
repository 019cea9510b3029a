"""postgres.* actions against real PostgreSQL 15 primary/standby pairs."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from pg_pairs import AckedWriter, PairFactory, fail_region
from pydantic import SecretStr

from dr_engine.actions.postgres import CheckLag, Fence, Promote, Reconcile, VerifyWritable
from dr_engine.errors import FencingFailed, PreconditionFailed, VerificationFailed
from dr_engine.evidence.audit import AuditLog, read_events
from dr_engine.testing.step_context import step_context

pytestmark = pytest.mark.integration

SRC, DST = "us-east-1", "us-west-2"


def _rows(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM transfers").fetchone()
    assert row is not None
    return int(row[0])


def _wait_replayed(pair_dsn: str, count: int) -> None:
    end = time.monotonic() + 20
    while _rows(pair_dsn) < count:
        assert time.monotonic() < end, "standby did not replay the rows"
        time.sleep(0.02)


def test_sync_failover_under_load_loses_no_acknowledged_row(make_pair: PairFactory, tmp_path: Path) -> None:
    pair = make_pair(synchronous=True)
    acks = tmp_path / "acked.log"
    writer = AckedWriter(pair.dsn(SRC), acks)
    writer.thread.start()
    time.sleep(0.5)
    # Lag measured on the source while it runs: the standby is the synchronous one.
    lag = CheckLag().run(CheckLag.Params(dsn=pair.dsn(DST), source_dsn=pair.dsn(SRC), cluster="ledger"),
                         step_context(state_dir=tmp_path))
    assert lag.facts["measured_on"] == "source"
    assert lag.facts["sync_state"] == "sync"
    assert lag.rpo is not None and lag.rpo.lag_bytes == 0

    fail_region(pair, SRC)
    acknowledged_before_outage = writer.next_id - 1
    assert acknowledged_before_outage > 10

    # With the source frozen, the gate relies on the declared synchronous replication.
    gate = CheckLag().run(CheckLag.Params(dsn=pair.dsn(DST), source_dsn=pair.dsn(SRC), synchronous=True,
                                          probe_timeout="200ms", cluster="ledger"),
                          step_context(state_dir=tmp_path))
    assert gate.facts["measured_on"] == "standby"
    assert gate.facts["source_reachable"] is False

    fence_params = Fence.Params(dsn=pair.dsn(SRC), data_dir=str(pair.primary.data_dir), probe_timeout="200ms",
                                cluster="ledger")
    fenced = Fence().run(fence_params, step_context(state_dir=tmp_path))
    assert fenced.changed
    assert any("SIGKILL" in m for m in fenced.facts["method"])
    assert pair.primary.pid() is None
    again = Fence().run(fence_params, step_context(state_dir=tmp_path))
    assert again.changed is False
    writer.thread.join(10)
    assert not writer.thread.is_alive()

    promoted = Promote().run(Promote.Params(dsn=pair.dsn(DST), cluster="ledger"), step_context(state_dir=tmp_path))
    assert promoted.changed and int(promoted.outputs["timeline"]) == 2
    twice = Promote().run(Promote.Params(dsn=pair.dsn(DST), cluster="ledger"), step_context(state_dir=tmp_path))
    assert twice.changed is False and twice.outputs["timeline"] == "2"
    # A resumed step (the process died after pg_promote) must still report the promotion.
    resumed = Promote().run(Promote.Params(dsn=pair.dsn(DST), cluster="ledger"),
                            step_context(state_dir=tmp_path, started_before=True))
    assert resumed.changed and "earlier attempt" in resumed.summary and resumed.facts["already_primary"]

    VerifyWritable().run(VerifyWritable.Params(dsn=pair.dsn(DST), cluster="ledger"), step_context(state_dir=tmp_path))
    result = Reconcile().run(Reconcile.Params(dsn=pair.dsn(DST), table="transfers", acknowledged_file=str(acks),
                                              cluster="ledger"), step_context(state_dir=tmp_path))
    assert result.facts["acknowledged"] >= acknowledged_before_outage
    assert result.rpo is not None and result.rpo.rows_lost == 0


def test_async_cut_off_standby_loses_exactly_the_unreplicated_rows(make_pair: PairFactory, tmp_path: Path) -> None:
    pair = make_pair(synchronous=False)
    acks = tmp_path / "acked.log"
    writer = AckedWriter(pair.dsn(SRC), acks)
    writer.write(20)
    _wait_replayed(pair.dsn(DST), 20)
    pair.cut_replication()
    writer.write(7)
    assert _rows(pair.dsn(DST)) == 20

    # The source still answers: lag is measured exactly and the gate refuses at RPO 0.
    params = CheckLag.Params(dsn=pair.dsn(DST), source_dsn=pair.dsn(SRC), probe_timeout="200ms", cluster="ledger")
    with pytest.raises(PreconditionFailed, match="over the RPO") as refused:
        CheckLag().run(params, step_context(state_dir=tmp_path))
    assert "--allow-data-loss" in (refused.value.hint or "")

    fail_region(pair, SRC)
    with pytest.raises(PreconditionFailed, match="measured on the standby"):
        CheckLag().run(params, step_context(state_dir=tmp_path))
    log = AuditLog(tmp_path / "audit.jsonl", "test-run")
    allowed = CheckLag().run(params, step_context(state_dir=tmp_path, allow_data_loss=True,
                                                  emit=log.append))
    assert allowed.facts["override"] == "allow-data-loss" and allowed.facts["rpo_gate"] == "over"
    assert [e["data"]["kind"] for e in read_events(log.path) if e["type"] == "override"] == ["rpo-exceeded"]
    assert allowed.rpo is not None and allowed.rpo.lag_seconds is not None and allowed.rpo.lag_seconds > 0

    # Without a way to stop it (no data dir, no fence command) a frozen primary cannot be fenced.
    with pytest.raises(FencingFailed, match="does not prove it is down"):
        Fence().run(Fence.Params(dsn=pair.dsn(SRC), probe_timeout="200ms", cluster="ledger"),
                    step_context(state_dir=tmp_path, timeout=5))

    Fence().run(Fence.Params(dsn=pair.dsn(SRC), data_dir=str(pair.primary.data_dir), probe_timeout="200ms",
                             cluster="ledger"), step_context(state_dir=tmp_path))
    Promote().run(Promote.Params(dsn=pair.dsn(DST), cluster="ledger"), step_context(state_dir=tmp_path))
    result = Reconcile().run(Reconcile.Params(dsn=pair.dsn(DST), table="transfers", acknowledged_file=str(acks),
                                              cluster="ledger"), step_context(state_dir=tmp_path))
    assert result.rpo is not None and result.rpo.rows_lost == 7
    assert result.facts["lost_keys_sample"] == [str(i) for i in range(21, 28)]
    # Failing on the loss still reports it, so the run's RPO counts the lost rows.
    with pytest.raises(VerificationFailed, match="7 of 27") as failed:
        Reconcile().run(Reconcile.Params(dsn=pair.dsn(DST), table="transfers", acknowledged_file=str(acks),
                                         cluster="ledger", fail_on_loss=True), step_context(state_dir=tmp_path))
    assert failed.value.rpo is not None and failed.value.rpo.rows_lost == 7


def test_async_lag_within_rpo_passes_and_fence_stops_a_reachable_primary(
        make_pair: PairFactory, tmp_path: Path) -> None:
    pair = make_pair(synchronous=False)
    AckedWriter(pair.dsn(SRC), tmp_path / "acked.log").write(5)
    _wait_replayed(pair.dsn(DST), 5)
    params = CheckLag.Params(dsn=pair.dsn(DST), source_dsn=pair.dsn(SRC), cluster="ledger")
    end = time.monotonic() + 10
    while True:  # the standby's flush position catches up with the primary's WAL end
        result = CheckLag().run(params, step_context(state_dir=tmp_path, rpo="1s"))
        if result.facts["lag_bytes"] == 0 or time.monotonic() > end:
            break
    assert result.facts["lag_bytes"] == 0
    assert result.facts["sync_state"] == "async"

    with pytest.raises(VerificationFailed, match="recovery"):
        VerifyWritable().run(VerifyWritable.Params(dsn=pair.dsn(DST)), step_context(state_dir=tmp_path, timeout=1))

    fenced = Fence().run(Fence.Params(dsn=pair.dsn(SRC), data_dir=str(pair.primary.data_dir), cluster="ledger"),
                         step_context(state_dir=tmp_path))
    assert fenced.facts["method"] == ["pg_ctl -m fast: ok"]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pair.dsn(SRC), connect_timeout=2)


def test_password_is_used_and_never_shown(make_pair: PairFactory, tmp_path: Path) -> None:
    canary = "canary-Zq9xW2-pg-password"
    pair = make_pair(synchronous=True, password=canary)
    bare = pair.dsn(DST, with_password=False)
    ok = VerifyWritable().run(VerifyWritable.Params(dsn=pair.dsn(SRC, with_password=False),
                                                    password=SecretStr(canary)),
                              step_context(state_dir=tmp_path))
    assert "xid" in ok.summary
    with pytest.raises(VerificationFailed) as failed:
        VerifyWritable().run(VerifyWritable.Params(dsn=bare, password=SecretStr("wrong-" + canary)),
                             step_context(state_dir=tmp_path, timeout=1))
    assert canary not in str(failed.value)
    # A password written into the DSN itself is redacted from messages too.
    with pytest.raises(VerificationFailed) as in_dsn:
        VerifyWritable().run(VerifyWritable.Params(dsn=pair.dsn(DST)), step_context(state_dir=tmp_path, timeout=1))
    assert canary not in str(in_dsn.value)
    assert "recovery" in str(in_dsn.value)


def test_quorum_standby_is_not_treated_as_synchronous(make_pair: PairFactory, tmp_path: Path) -> None:
    import os
    import signal

    pair = make_pair(synchronous=True)
    with psycopg.connect(pair.dsn(SRC), autocommit=True, connect_timeout=5) as conn:
        # ANY 1 of two: the quorum may be met by the other standby, so this one may miss commits.
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (\"us-west-2\", elsewhere)'")
        conn.execute("SELECT pg_reload_conf()")
        end = time.monotonic() + 20
        while conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone() != ("quorum",):
            assert time.monotonic() < end, "the standby did not become a quorum standby"
            time.sleep(0.05)
    with psycopg.connect(pair.dsn(DST), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pid FROM pg_stat_wal_receiver").fetchone()
    assert row is not None
    receiver = int(row[0])
    os.kill(receiver, signal.SIGSTOP)  # the standby stops receiving but still shows as streaming
    try:
        with psycopg.connect(pair.dsn(SRC), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET synchronous_commit = local")  # acknowledged without this standby
            conn.execute("INSERT INTO transfers SELECT g, 1 FROM generate_series(1, 100) g")
        params = CheckLag.Params(dsn=pair.dsn(DST), source_dsn=pair.dsn(SRC), cluster="ledger")
        with pytest.raises(PreconditionFailed, match="over the RPO"):
            CheckLag().run(params, step_context(state_dir=tmp_path))
        log = AuditLog(tmp_path / "audit.jsonl", "test-run")
        allowed = CheckLag().run(params, step_context(state_dir=tmp_path, allow_data_loss=True,
                                                      emit=log.append))
        assert [e["type"] for e in read_events(log.path)] == ["override"]
        assert allowed.facts["sync_state"] == "quorum"
        assert allowed.facts["synchronous"] is False
        assert allowed.rpo is not None and (allowed.rpo.lag_bytes or 0) > 0
    finally:
        os.kill(receiver, signal.SIGCONT)
