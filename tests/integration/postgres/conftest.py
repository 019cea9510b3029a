"""Fixtures: fresh PostgreSQL primary/standby pairs on this test run's own addresses and ports."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from dr_engine.testing.loopback import free_port, region_addresses
from dr_engine.world.postgres import NodeSpec, PostgresPair

PairFactory = Callable[..., PostgresPair]


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


class AckedWriter:
    """Inserts rows one commit at a time, appending each id to a file once the commit returned."""

    def __init__(self, dsn: str, ack_file: Path, start: int = 1) -> None:
        self.dsn, self.ack_file, self.next_id = dsn, ack_file, start
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def write(self, count: int) -> None:
        """Write ``count`` rows synchronously."""
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn, self.ack_file.open("a") as acks:
            for _ in range(count):
                conn.execute("INSERT INTO transfers VALUES (%s::bigint, 1)", (self.next_id,))
                acks.write(f"{self.next_id}\n")
                acks.flush()
                self.next_id += 1

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn, \
                    self.ack_file.open("a") as acks:
                while not self.stop.is_set():
                    conn.execute("INSERT INTO transfers VALUES (%s::bigint, 1)", (self.next_id,))
                    acks.write(f"{self.next_id}\n")
                    acks.flush()
                    self.next_id += 1
        except psycopg.Error as exc:  # the server died under us: expected at the outage
            self.error = exc


def fail_region(pair: PostgresPair, region: str) -> None:
    """Simulate the region's host freezing: SIGSTOP its whole postmaster process group."""
    assert pair.signal_node(region, signal.SIGSTOP)
