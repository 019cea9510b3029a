"""What a failed PostgreSQL start or pg_rewind reports: the cause, not the last line."""

from __future__ import annotations

from dr_engine.providers.postgres.admin import essence

FAILED_START = """\
2026-11-29 02:09:37.001 UTC [1282] LOG:  starting PostgreSQL 15.8 on x86_64-pc-linux-gnu
2026-11-29 02:09:37.002 UTC [1282] FATAL:  lock file "/tmp/w/run/us-east-1/.s.PGSQL.15432.lock" already exists
2026-11-29 02:09:37.002 UTC [1282] HINT:  Is another postmaster (PID 991) using socket file "/tmp/w/.s.PGSQL.15432"?
2026-11-29 02:09:37.003 UTC [1282] LOG:  database system is shut down
"""


def test_the_fatal_line_survives_and_the_shutdown_line_does_not_hide_it() -> None:
    text = essence(FAILED_START)
    assert "FATAL:  lock file" in text and "PID 991" in text
    assert "database system is shut down" not in text
    assert "starting PostgreSQL" not in text


def test_output_without_a_recognisable_cause_keeps_its_end_and_is_bounded() -> None:
    text = essence("x" * 1000 + "the end", limit=50)
    assert text.endswith("the end") and len(text) == 50


def test_passwords_in_the_output_are_redacted() -> None:
    text = essence('pg_rewind: error: connection to "postgresql://app:hunter2@db:5432/x" failed')
    assert "hunter2" not in text and "error:" in text
