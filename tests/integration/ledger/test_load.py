"""The load generator: acknowledged writes recorded, DNS followed across a shift, bounded."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr_engine.actions.postgres import Reconcile, ReconcileParams
from dr_engine.providers.dns.client import replace_record
from dr_engine.testing.step_context import step_context
from dr_engine.world.dns import BindServer
from dr_engine.world.ledger_app import LedgerServer, present_ack_seqs
from dr_engine.world.load import LoadGenerator, read_ack_log
from dr_engine.world.loopback import free_port, free_udp_tcp_port
from dr_engine.world.postgres import PostgresPair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bind(pair: PostgresPair) -> Iterator[BindServer]:
    root = Path(tempfile.mkdtemp(prefix="dr-test-load-dns-"))
    root.chmod(0o755)
    server = BindServer(root / "named", port=free_udp_tcp_port(), records={"ledger": pair.primary.host})
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def wait_for(condition: object, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def test_load_follows_the_dns_shift_and_loses_nothing(pair: PostgresPair, bind: BindServer, tmp_path: Path) -> None:
    src, dst = pair.primary.host, pair.standby.host
    port = free_port(src)
    # Both apps write to the primary: this test is about following the name, not about promotion.
    east = LedgerServer(src, port, pair.dsn("us-east-1"), "us-east-1")
    west = LedgerServer(dst, port, pair.dsn("us-east-1"), "us-west-2")
    acks, log = tmp_path / "acked.keys", tmp_path / "acked.jsonl"
    load = LoadGenerator(f"http://ledger.bank.test:{port}/transfer", resolve_via=bind.server, ack_file=acks,
                         ack_log=log, interval=0.005, max_duration=60)
    with east, west:
        load.start()
        wait_for(lambda: load.stats().by_region.get("us-east-1", 0) >= 5)
        replace_record(bind.server, bind.zone, "ledger", "A", dst, 5, bind.tsig_key)
        wait_for(lambda: load.stats().by_region.get("us-west-2", 0) >= 5)
        stats = load.stop()
    assert not load.running
    assert stats.failed == 0, stats.last_error
    assert stats.acked == stats.sent == len(load.acks())
    seqs = load.acked_seqs()
    assert acks.read_text().split() == [str(s) for s in seqs]
    assert [a.seq for a in read_ack_log(log)] == seqs
    assert {a.region for a in load.acks()} == {"us-east-1", "us-west-2"}
    assert load.lost(present_ack_seqs(pair.dsn("us-east-1"), seqs)) == []

    # The file is what postgres.reconcile reads: nothing acknowledged is missing.
    result = Reconcile().run(
        ReconcileParams.model_validate({"dsn": pair.dsn("us-east-1"), "table": "transfers", "key": "ack_seq",
                                        "acknowledged_file": str(acks)}),
        step_context(state_dir=tmp_path),
    )
    assert result.rpo is not None and result.rpo.rows_lost == 0
    assert result.facts["acknowledged"] == len(seqs)


def test_load_counts_failures_and_stops_by_itself(pair: PostgresPair) -> None:
    host = pair.standby.host
    with LedgerServer(host, 0, pair.dsn("us-west-2"), "us-west-2") as standby_app:
        load = LoadGenerator(f"{standby_app.url}/transfer", interval=0.01, max_duration=0.3)
        load.start()
        wait_for(lambda: not load.running)
    stats = load.stats()
    assert stats.acked == 0 and stats.failed >= 1
    assert stats.last_error is not None and "read-only" in stats.last_error
    assert load.lost(set()) == []


def test_load_can_be_retargeted(pair: PostgresPair) -> None:
    primary = LedgerServer(pair.primary.host, 0, pair.dsn("us-east-1"), "us-east-1")
    with primary:
        load = LoadGenerator("http://127.0.0.1:1/transfer", interval=0.005, request_timeout=0.5, max_duration=60)
        load.start()
        wait_for(lambda: load.stats().failed >= 1)
        load.retarget(f"{primary.url}/transfer")
        wait_for(lambda: load.stats().acked >= 3)
        load.stop()
    assert load.url == f"{primary.url}/transfer"
    assert all(a.region == "us-east-1" for a in load.acks())
