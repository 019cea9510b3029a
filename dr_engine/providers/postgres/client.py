"""Thin PostgreSQL adapter (psycopg 3 and ``pg_ctl``): the only place the postgres actions do I/O.

Every call is bounded by the caller's :class:`~dr_engine.clock.Deadline`: ``connect_timeout``
and ``statement_timeout`` come from its remaining time, and a raw-socket probe with an exact
timeout runs first, because libpq rounds connect timeouts below 2 s up and a SIGSTOPped
server accepts TCP connections (the kernel completes the handshake) but never answers.

Errors are translated into the taxonomy here: unreachable -> :class:`TransientError`, a
refused statement -> :class:`ProviderError`. DSN passwords never appear in messages.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dr_engine.clock import Deadline
from dr_engine.errors import ProviderError, StepTimeout, TransientError
from dr_engine.providers import children

#: Where Debian installs the PostgreSQL 15 binaries (override with DR_PG_BIN).
DEFAULT_BIN = Path(os.environ.get("DR_PG_BIN", "/usr/lib/postgresql/15/bin"))

_PASSWORD_IN_URI = re.compile(r"(postgres(?:ql)?://[^:/@]*:)[^@]*@")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace any DSN password in ``text`` by ``***``."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URI.sub(r"\1***@", text))


@dataclass(frozen=True)
class Endpoint:
    """Where a DSN points: TCP host/port or a unix socket directory."""

    host: str
    port: int

    @property
    def is_socket(self) -> bool:
        """True for a unix-socket directory."""
        return self.host.startswith("/")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint(dsn: str) -> Endpoint:
    """Parse host and port out of a DSN (defaults: localhost, 5432)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg raises ProgrammingError with the DSN in the message
        raise ProviderError("invalid PostgreSQL DSN " + redact(dsn),
                            hint="write it as postgresql://user@host:port/db") from exc
    host = str(parts.get("host") or "localhost").split(",")[0]
    return Endpoint(host=host, port=int(str(parts.get("port") or 5432).split(",")[0]))


def responsive(dsn: str, timeout: float) -> bool:
    """True when a server answers the PostgreSQL SSLRequest at ``dsn`` within ``timeout`` seconds.

    Cheaper and more exact than a libpq connect: a stopped or partitioned server is detected
    in ``timeout`` seconds instead of libpq's minimum of two.
    """
    where = endpoint(dsn)
    family, address = ((socket.AF_UNIX, f"{where.host}/.s.PGSQL.{where.port}") if where.is_socket
                       else (socket.AF_INET, (where.host, where.port)))
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(timeout, 0.01))
            sock.connect(address)
            sock.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


@contextlib.contextmanager
def connect(dsn: str, deadline: Deadline, *, password: SecretStr | None = None,
            cap: float | None = None, probe: bool = True) -> Iterator[Any]:
    """An autocommit psycopg connection bounded by ``deadline`` (optionally capped).

    Raises :class:`TransientError` when the server does not answer in time.
    """
    import psycopg

    budget = deadline.remaining(cap)
    where = endpoint(dsn)
    if probe and not responsive(dsn, budget):
        raise TransientError(f"PostgreSQL at {where} does not answer (waited {budget:.2f}s)",
                             hint="the server is down, stopped or unreachable")
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": max(2, math.ceil(deadline.remaining(cap))),
        "options": f"-c statement_timeout={max(1, int(deadline.remaining(cap) * 1000))}",
    }
    if password is not None:
        kwargs["password"] = password.get_secret_value()
    try:
        conn = psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to PostgreSQL at {where}: {redact(str(exc)).strip()[:300]}",
                             hint="check the server is running and the DSN/password are right") from exc
    try:
        yield conn
    finally:
        conn.close()


def fetch_one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Run ``sql`` and return its first row, translating errors into the taxonomy."""
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else None


def fetch_all(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` and return all rows (empty for statements without a result)."""
    import psycopg

    try:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    except psycopg.errors.QueryCanceled as exc:
        raise StepTimeout(f"statement exceeded the step deadline: {sql.split()[0]}",
                          hint="raise the step timeout") from exc
    except psycopg.OperationalError as exc:
        raise TransientError(f"connection lost: {redact(str(exc)).strip()[:300]}") from exc
    except psycopg.Error as exc:
        raise ProviderError(f"PostgreSQL refused {sql.split()[0]}: {redact(str(exc)).strip()[:300]}") from exc


# ---------------------------------------------------------------------- server processes
def lock_file_pid(path: Path) -> int | None:
    """The PID on the first line of a PostgreSQL lock file (``postmaster.pid``, a socket's
    ``.lock``), alive or not; None when the file is missing or unreadable."""
    try:
        return int(path.read_text().splitlines()[0].strip())
    except (OSError, ValueError, IndexError):
        return None


def postmaster_pid(pid_file: Path) -> int | None:
    """The PID recorded in a ``postmaster.pid`` file when that process still exists."""
    pid = lock_file_pid(pid_file)
    return pid if pid is not None and process_state(pid) not in ("gone", "zombie") else None


def process_state(pid: int) -> str:
    """``running``, ``stopped`` (SIGSTOP/traced), ``zombie`` or ``gone``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    state = stat.rsplit(")", 1)[1].split()[0]
    return {"T": "stopped", "t": "stopped", "Z": "zombie", "X": "gone"}.get(state, "running")


def _as_owner(path: Path) -> dict[str, Any]:
    # pg_ctl refuses to run as root: run it as the data directory's owner.
    if os.geteuid() != 0:
        return {}
    info = path.stat()
    return {"user": info.st_uid, "group": info.st_gid, "extra_groups": []}


def pg_ctl_stop(data_dir: Path, mode: str, timeout: float, bin_dir: Path = DEFAULT_BIN) -> tuple[bool, str]:
    """``pg_ctl stop -m MODE`` bounded by ``timeout``; returns (stopped, output tail)."""
    wait = max(1, int(timeout))
    argv = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "-t", str(wait), "stop"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    try:
        done = children.run(argv, timeout=timeout + 1, env=env, cwd="/", **_as_owner(data_dir))
    except subprocess.TimeoutExpired:
        return False, f"pg_ctl stop -m {mode} did not finish in {timeout:.1f}s"
    except FileNotFoundError as exc:
        raise ProviderError(f"pg_ctl not found in {bin_dir}", hint="set `bin_dir:` or DR_PG_BIN") from exc
    return done.returncode == 0, (done.stderr or done.stdout).strip()[-300:]


def run_fence_command(argv: list[str], timeout: float) -> tuple[bool, str]:
    """Run an operator-supplied fence (STONITH) command; returns (exit 0, output tail)."""
    try:
        done = children.run(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"fence command did not finish in {timeout:.1f}s"
    except FileNotFoundError as exc:
        raise ProviderError(f"fence command not found: {argv[0]!r}", hint="fix `fence_command:`") from exc
    return done.returncode == 0, (done.stderr or done.stdout).strip()[-300:]
