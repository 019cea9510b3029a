"""postgres.rejoin against real PostgreSQL pairs: the old primary after a failover becomes a standby.

Covers the two ways a rejoin can go wrong on a real host: the fenced postmaster is still an
unreaped zombie (its lock files then block pg_rewind's single-user run and every start), and
pg_rewind cannot work at all (the old primary ran without ``wal_log_hints``), where ``auto``
must fall back to a fresh base backup and keep the old data aside.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pg_pairs import PairFactory, wait_for, zombie_postmaster

from dr_engine.actions.postgres import Promote
from dr_engine.actions.postgres_failback import Rejoin, RejoinParams
from dr_engine.errors import ProviderError
from dr_engine.testing.step_context import step_context
from dr_engine.world.postgres import PostgresPair, stop_node

pytestmark = pytest.mark.integration

SRC, DST = "us-east-1", "us-west-2"


def _write(dsn: str, first: int, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        for n in range(first, first + count):
            conn.execute("INSERT INTO transfers VALUES (%s::bigint, 1)", (n,))


def _state(dsn: str) -> tuple[bool, int, str | None]:
    """(in recovery, rows, WAL receiver status) of the server at ``dsn``."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), (SELECT count(*) FROM transfers), "
                           "(SELECT status FROM pg_stat_wal_receiver)").fetchone()
    assert row is not None
    return bool(row[0]), int(row[1]), row[2]


def _fail_over(pair: PostgresPair, tmp_path: Path) -> None:
    Promote().run(Promote.Params(dsn=pair.dsn(DST), cluster="ledger"), step_context(state_dir=tmp_path))
    _write(pair.dsn(DST), 1000, 20)  # the new primary moves on: the old one must follow it


def _params(pair: PostgresPair, method: str = "auto") -> RejoinParams:
    return RejoinParams(dsn=pair.dsn(SRC), data_dir=str(pair.primary.data_dir), primary_dsn=pair.dsn(DST),
                         cluster="ledger", method=method, catch_up="30s")


def _assert_streaming_standby_with_all_rows(pair: PostgresPair) -> None:
    expected = _state(pair.dsn(DST))[1]
    wait_for(lambda: _state(pair.dsn(SRC)) == (True, expected, "streaming"),
             "the rejoined node is not a streaming standby with every row of the new primary")


def test_rejoin_rewinds_a_fenced_primary_that_is_still_an_unreaped_zombie(make_pair: PairFactory,
                                                                          tmp_path: Path) -> None:
    pair = make_pair()
    _write(pair.dsn(SRC), 1, 20)
    child = zombie_postmaster(pair.primary)  # fenced by SIGKILL; nobody has reaped it yet
    try:
        _fail_over(pair, tmp_path)

        result = Rejoin().run(_params(pair), step_context(state_dir=tmp_path))

        assert result.facts["method"] == "rewind", result.facts
        assert str(pair.primary.data_dir / "postmaster.pid") in result.facts["stale_locks_removed"]
        _assert_streaming_standby_with_all_rows(pair)
        again = Rejoin().run(_params(pair), step_context(state_dir=tmp_path))
        assert again.changed is False and again.facts["method"] == "already"
    finally:
        child.wait(timeout=5)


def test_auto_falls_back_to_a_base_backup_when_pg_rewind_cannot_work(make_pair: PairFactory, tmp_path: Path) -> None:
    pair = make_pair()
    with psycopg.connect(pair.dsn(SRC), autocommit=True, connect_timeout=5) as conn:
        conn.execute("ALTER SYSTEM SET wal_log_hints = off")  # recorded in pg_control at the next start
    stop_node(pair.primary, pair.bin_dir, pair.root, timeout=20)
    pair.start_node(SRC)
    _write(pair.dsn(SRC), 1, 20)
    stop_node(pair.primary, pair.bin_dir, pair.root, timeout=20)
    _fail_over(pair, tmp_path)

    with pytest.raises(ProviderError, match="pg_rewind"):
        Rejoin().run(_params(pair, method="rewind"), step_context(state_dir=tmp_path))
    result = Rejoin().run(_params(pair), step_context(state_dir=tmp_path))

    assert result.facts["method"] == "basebackup", result.facts
    assert "wal_log_hints" in result.facts["pg_rewind"]
    aside = Path(result.facts["moved_aside"])
    assert aside.is_dir() and (aside / "PG_VERSION").is_file()  # never deleted: it may hold unreplicated rows
    _assert_streaming_standby_with_all_rows(pair)
