"""Failover lock leases in a PostgreSQL table (for worlds whose target region runs Postgres).

A lease table rather than a session advisory lock: an advisory lock dies with the connection,
but a lease must outlive the process that took it (a crashed run is resumed by taking its lease
over explicitly). One row per lock key; a write succeeds only when the stored ``fencing_token``
is the one the writer read, which PostgreSQL checks atomically in one statement.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from dr_engine.errors import ConfigError, ProviderError, TransientError
from dr_engine.model.lease import Lease
from dr_engine.providers.postgres.client import redact

CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 5000
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresLeaseStore:
    """A :class:`~dr_engine.lock.backends.LeaseStore` on table ``table`` (created when missing)."""

    def __init__(self, dsn: str, table: str = "dr_engine_locks") -> None:
        if not _IDENTIFIER.match(table):
            raise ConfigError(f"invalid lock table name {table!r}", hint="use lowercase letters, digits and _")
        self._dsn = dsn
        self.table = table
        self._ready = False

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[int, list[tuple[Any, ...]]]:
        import psycopg

        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                 options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}") as conn:
                if not self._ready:
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (lock_key text PRIMARY KEY, "
                                 "fencing_token bigint NOT NULL, lease jsonb NOT NULL)")
                    self._ready = True
                cursor = conn.execute(sql.format(table=self.table), params)
                rows = cursor.fetchall() if cursor.description else []
                return cursor.rowcount, rows
        except psycopg.OperationalError as exc:
            raise TransientError(f"lock store {redact(self._dsn)} unreachable: {redact(str(exc))}",
                                 hint="the failover lock lives in the target region's database; check it is up"
                                 ) from exc
        except psycopg.Error as exc:
            raise ProviderError(f"lock store {redact(self._dsn)}: {redact(str(exc))}",
                                hint="check the lock DSN's permissions (CREATE, SELECT, INSERT, UPDATE)") from exc

    def read(self, key: str) -> Lease | None:
        """The stored lease of ``key``, or None."""
        _, rows = self._execute("SELECT lease FROM {table} WHERE lock_key = %s", (key,))
        if not rows:
            return None
        data = rows[0][0]
        return Lease(**(data if isinstance(data, dict) else json.loads(data)))

    def put(self, lease: Lease, *, expected_token: int | None) -> bool:
        """Insert (expected None) or compare-and-swap on the token; True when stored."""
        body = json.dumps(asdict(lease))
        if expected_token is None:
            count, _ = self._execute("INSERT INTO {table} (lock_key, fencing_token, lease) VALUES (%s, %s::bigint, "
                                     "%s::jsonb) ON CONFLICT (lock_key) DO NOTHING",
                                     (lease.key, lease.fencing_token, body))
        else:
            count, _ = self._execute("UPDATE {table} SET fencing_token = %s::bigint, lease = %s::jsonb "
                                     "WHERE lock_key = %s AND fencing_token = %s::bigint",
                                     (lease.fencing_token, body, lease.key, expected_token))
        return count == 1


__all__ = ["PostgresLeaseStore"]
