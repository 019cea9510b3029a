"""Helpers of the postgres integration tests (a unique module name: conftest is not importable)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from dr_engine.providers.postgres.client import DEFAULT_BIN, process_state
from dr_engine.providers.postgres.processes import server_pids
from dr_engine.world.postgres import PgNode, PostgresPair, stop_node

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
    """Simulate the region's host freezing: SIGSTOP every process of its server."""
    assert pair.signal_node(region, signal.SIGSTOP)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail the test with ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def zombie_postmaster(node: PgNode) -> subprocess.Popen[bytes]:
    """Restart ``node`` as this process's own child, SIGKILL it and do not reap it.

    That is a fenced primary on a host whose init reaps orphans late: the dead postmaster is a
    zombie, and PostgreSQL's lock-file check (``kill(pid, 0)``) still takes it for a live server.
    The caller reaps it (``wait()``) when done.
    """
    stop_node(node, DEFAULT_BIN, node.data_dir.parent, timeout=20)
    info = node.data_dir.stat()
    owner: dict[str, Any] = ({"user": info.st_uid, "group": info.st_gid, "extra_groups": []}
                             if os.geteuid() == 0 else {})
    child = subprocess.Popen([str(DEFAULT_BIN / "postgres"), "-D", str(node.data_dir)], cwd="/",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **owner)
    wait_for(lambda: len(server_pids(node.data_dir)) >= 3, "the postmaster did not start its children")
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: process_state(child.pid) == "zombie", "the killed postmaster did not become a zombie")
    wait_for(lambda: not server_pids(node.data_dir), "the children did not exit after the postmaster died")
    return child
