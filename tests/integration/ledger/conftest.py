"""Fixtures: a real PostgreSQL primary/standby pair with the ledger schema, on this run's addresses."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dr_engine.world.ledger_app import ensure_schema
from dr_engine.world.loopback import free_port, region_addresses
from dr_engine.world.postgres import NodeSpec, PostgresPair


@pytest.fixture(scope="session")
def pair() -> Iterator[PostgresPair]:
    """Primary (us-east-1) + async hot standby (us-west-2), ledger schema replicated to both."""
    src, dst = region_addresses()
    root = Path(tempfile.mkdtemp(prefix="dr-test-ledger-"))
    pg = PostgresPair(root, NodeSpec("us-east-1", src, free_port(src)), NodeSpec("us-west-2", dst, free_port(dst)),
                      synchronous=False)
    try:
        pg.start()
        ensure_schema(pg.dsn("us-east-1"))
        end = time.monotonic() + 20
        with psycopg.connect(pg.dsn("us-west-2"), autocommit=True, connect_timeout=5) as conn:
            while conn.execute("SELECT to_regclass('ledger_health')").fetchone() == (None,):
                assert time.monotonic() < end, "the standby did not replay the ledger schema"
                time.sleep(0.02)
        yield pg
    finally:
        pg.stop()
        pg.remove()
