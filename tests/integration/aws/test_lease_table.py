"""The DynamoDB failover lock against a real moto server over HTTP (conditional writes)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from dr_engine.errors import LockHeld
from dr_engine.lock.backends import LeaseLock, LockSettings, lock_for
from dr_engine.lock.base import Lease
from dr_engine.model import Region
from dr_engine.providers.aws.lease_table import DynamoDbLeaseStore
from dr_engine.providers.aws.session import AwsTarget
from dr_engine.testing.leases import check_lock_contract
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration


def store(moto: MotoServer, table: str = "dr-engine-locks") -> DynamoDbLeaseStore:
    return DynamoDbLeaseStore(AwsTarget("us-west-2", moto.endpoint_url), table)


def test_dynamodb_lock_meets_the_contract(moto: MotoServer) -> None:
    leases = store(moto)
    lock = LeaseLock(leases)

    def plant(lease: Lease) -> None:
        assert leases.put(lease, expected_token=lease.fencing_token)

    check_lock_contract(lock, plant)


def test_the_table_is_created_in_the_target_region(moto: MotoServer, boto: Any) -> None:
    region = Region.model_validate({"name": "us-west-2", "aws": {"region": "us-west-2",
                                                                 "endpoint_url": moto.endpoint_url},
                                    "params": {"lock_backend": "dynamodb", "lock_table": "team-locks"}})
    lock = lock_for(region, Path("/nonexistent"), settings=LockSettings.of(region))
    lease = lock.acquire("core-banking", "run-1")
    item = boto("dynamodb", "us-west-2").get_item(TableName="team-locks", Key={"lock_key": {"S": "core-banking"}})
    assert item["Item"]["run_id"]["S"] == "run-1" and item["Item"]["fencing_token"]["N"] == "1"
    tables = boto("dynamodb", "us-east-1").list_tables()["TableNames"]
    assert "team-locks" not in tables  # the lease lives in the target region only
    lock.release(lease)


def test_concurrent_acquirers_one_wins(moto: MotoServer) -> None:
    store(moto).ensure_table()
    winners: list[str] = []
    losers: list[str | None] = []
    barrier = threading.Barrier(8)

    def contend(n: int) -> None:
        lock = LeaseLock(store(moto))
        barrier.wait()
        try:
            winners.append(lock.acquire("app", f"run-{n}").run_id)
        except LockHeld as exc:
            losers.append(exc.holder_run_id)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(winners) == 1 and len(losers) == 7
    assert set(losers) == set(winners)
    final = store(moto).read("app")
    assert final is not None and final.run_id == winners[0] and final.fencing_token == 1
