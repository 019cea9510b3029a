"""Fixtures: fresh PostgreSQL primary/standby pairs on this test run's own addresses and ports."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_pairs import PairFactory

from dr_engine.world.loopback import free_port, region_addresses
from dr_engine.world.postgres import NodeSpec, PostgresPair


@pytest.fixture(scope="session")
def make_pair() -> Iterator[PairFactory]:
    """Start pairs on demand (each test may destroy its pair); stop every one at session end."""
    pairs: list[PostgresPair] = []

    def make(*, synchronous: bool = True, password: str | None = None) -> PostgresPair:
        src, dst = region_addresses()
        root = Path(tempfile.mkdtemp(prefix="dr-test-pg-"))
        pair = PostgresPair(root, NodeSpec("us-east-1", src, free_port(src)),
                            NodeSpec("us-west-2", dst, free_port(dst)),
                            synchronous=synchronous, password=password)
        pairs.append(pair)
        pair.start()
        with psycopg.connect(pair.dsn("us-east-1"), autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE transfers (id bigint PRIMARY KEY, amount bigint NOT NULL)")
        end = time.monotonic() + 20
        with psycopg.connect(pair.dsn("us-west-2"), autocommit=True, connect_timeout=5) as conn:
            while conn.execute("SELECT to_regclass('transfers')").fetchone() == (None,):
                assert time.monotonic() < end, "the standby did not replay CREATE TABLE"
                time.sleep(0.02)
        return pair

    yield make
    for pair in pairs:
        pair.stop()
        pair.remove()
