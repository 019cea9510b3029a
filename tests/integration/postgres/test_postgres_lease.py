"""The PostgreSQL failover lock (lease table, compare-and-swap on the token) on a real server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from dr_engine.errors import DrError, LockHeld
from dr_engine.lock.backends import LeaseLock
from dr_engine.lock.base import Lease
from dr_engine.providers.postgres.lease import PostgresLeaseStore
from dr_engine.testing.leases import check_lock_contract
from dr_engine.world.postgres import PostgresPair

pytestmark = pytest.mark.integration
PASSWORD = "canary-lock-pw-3141"
PairFactory = Callable[..., PostgresPair]


def test_postgres_lock_meets_the_contract_and_races_safely(make_pair: PairFactory) -> None:
    pair = make_pair(password=PASSWORD)
    leases = PostgresLeaseStore(pair.dsn("us-east-1"), "dr_engine_locks")

    def plant(lease: Lease) -> None:
        assert leases.put(lease, expected_token=lease.fencing_token)

    check_lock_contract(LeaseLock(leases), plant)

    winners: list[str] = []
    losers: list[str | None] = []
    barrier = threading.Barrier(6)

    def contend(n: int) -> None:
        lock = LeaseLock(PostgresLeaseStore(pair.dsn("us-east-1")))
        barrier.wait()
        try:
            winners.append(lock.acquire("race", f"run-{n}").run_id)
        except LockHeld as exc:
            losers.append(exc.holder_run_id)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(winners) == 1 and len(losers) == 5 and set(losers) == set(winners)


def test_a_read_only_standby_is_refused_without_leaking_the_password(make_pair: PairFactory) -> None:
    pair = make_pair(password=PASSWORD)
    standby = PostgresLeaseStore(pair.dsn("us-west-2"))
    with pytest.raises(DrError) as info:
        LeaseLock(standby).acquire("app", "run-1")
    assert "read-only" in str(info.value)
    assert PASSWORD not in str(info.value)
