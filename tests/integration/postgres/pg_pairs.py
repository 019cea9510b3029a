"""Helpers of the postgres integration tests (a unique module name: conftest is not importable)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg

from dr_engine.world.postgres import PostgresPair

PairFactory = Callable[..., PostgresPair]


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
