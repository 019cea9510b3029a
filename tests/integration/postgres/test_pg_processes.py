"""Server processes and stale locks of a real PostgreSQL data directory.

The zombie case is the one behind "lock file postmaster.pid already exists" after a fence: a
SIGKILLed postmaster that nobody has reaped yet still passes PostgreSQL's ``kill(pid, 0)`` check.
Here the test process itself is the parent that does not reap, which makes the zombie certain.
"""

from __future__ import annotations

import os
import signal

import psycopg
import pytest
from pg_pairs import PairFactory, wait_for, zombie_postmaster

from dr_engine.providers.postgres import admin
from dr_engine.providers.postgres.client import postmaster_pid, process_state
from dr_engine.providers.postgres.processes import clear_stale_locks, kill_server, server_pids, signal_server
from dr_engine.world.postgres import PostgresPair

pytestmark = pytest.mark.integration


def test_locks_of_a_zombie_postmaster_are_cleared_and_the_node_starts(make_pair: PairFactory) -> None:
    pair: PostgresPair = make_pair()
    node = pair.primary
    child = zombie_postmaster(node)
    try:
        socket_lock = node.socket_dir / f".s.PGSQL.{node.port}.lock"
        assert socket_lock.exists() and (node.data_dir / "postmaster.pid").exists()
        # The premise: PostgreSQL itself refuses, as pg_rewind's single-user run did.
        refused = admin.run_tool("postgres", ["--single", "-F", "-D", str(node.data_dir), "template1"], timeout=30,
                                 owner_of=node.data_dir)
        assert refused.returncode != 0 and "lock file" in refused.stderr, refused.stderr

        removed = clear_stale_locks(node.data_dir)

        assert node.data_dir / "postmaster.pid" in removed and socket_lock in removed
        admin.start(node.data_dir, node.log_file.with_suffix(".restart.log"), timeout=30)
        with psycopg.connect(pair.dsn(node.region), autocommit=True, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        child.wait(timeout=5)  # reap it now


def test_locks_of_a_running_server_are_never_touched(make_pair: PairFactory) -> None:
    pair: PostgresPair = make_pair()
    node = pair.standby
    assert clear_stale_locks(node.data_dir) == []
    assert (node.data_dir / "postmaster.pid").exists() and node.pid() is not None


def test_freeze_reaches_every_process_and_kill_leaves_no_orphan(make_pair: PairFactory) -> None:
    pair: PostgresPair = make_pair()
    node = pair.primary
    postmaster = node.pid()
    assert postmaster is not None
    processes = server_pids(node.data_dir)
    assert postmaster in processes and len(processes) >= 4  # checkpointer, writers, walsender...

    frozen = signal_server(postmaster, node.data_dir, signal.SIGSTOP)
    try:
        assert set(processes) <= set(frozen)
        assert process_state(postmaster) == "stopped"
        assert {process_state(pid) for pid in processes} <= {"stopped", "gone"}
        # What a fence finds on a frozen host: the postmaster alone is killed first, its frozen
        # children stay behind as orphans; kill_server must reach them through the data directory.
        os.kill(postmaster, signal.SIGKILL)
        wait_for(lambda: postmaster_pid(node.pid_file) is None, "the postmaster did not die")
        orphans = server_pids(node.data_dir)
        assert orphans and postmaster not in orphans
        kill_server(None, node.data_dir)
        wait_for(lambda: not server_pids(node.data_dir), "orphans survived kill_server")
    finally:
        signal_server(None, node.data_dir, signal.SIGCONT)
    assert node.data_dir / "postmaster.pid" in clear_stale_locks(node.data_dir)
