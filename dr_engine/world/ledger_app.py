"""The embedded world's ledger app: one small HTTP service per region, backed by its region's DB.

Endpoints:

- ``GET /livez``: 200 while the process serves requests (process readiness).
- ``GET /healthz``: 200 ``ok`` only when the region's database is reachable AND writable
  (not a standby in recovery, and a real write commits); 503 with the reason otherwise.
- ``POST /transfer`` (JSON ``{"amount": "12.50", "ack_seq": 7}``): inserts one row into
  ``transfers`` and answers 201 ``{"id": ..., "ack_seq": ..., "region": ...}`` only after the
  commit returned, so every acknowledged id is a durably committed row (what the RPO
  measurement counts).
- ``GET /transfers/summary``: ``{"count": ..., "max_id": ..., "max_ack_seq": ...}``.

Every database call is bounded twice: libpq's ``connect_timeout`` plus ``statement_timeout``
on the server, and a client-side watchdog, because a frozen server (SIGSTOP in the outage
simulation) never fires its own statement timeout.

Run it in-process (:class:`LedgerServer`, a thread) or as its own process so an outage can
freeze it (:class:`LedgerProcess`, ``python -m dr_engine.world.ledger_app --listen ADDR:PORT``
with the DSN in ``DR_LEDGER_DSN`` so the password does not show in ``ps``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg

from dr_engine.world.pids import pid_runs, stop_pid

DSN_ENV = "DR_LEDGER_DSN"
#: Part of the app's command line, checked before signalling a recorded PID (PIDs get reused).
PROCESS_MARKER = "dr_engine.world.ledger_app"

#: The ledger schema. ``ack_seq`` is the writer's own sequence number: it survives a failover
#: unchanged (unlike ids drawn from a sequence), so acknowledged writes can be matched exactly.
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS transfers (
    id          bigserial PRIMARY KEY,
    amount      numeric(18, 2) NOT NULL,
    ack_seq     bigint,
    region      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transfers_ack_seq ON transfers (ack_seq);
CREATE TABLE IF NOT EXISTS ledger_health (
    region      text PRIMARY KEY,
    checked_at  timestamptz NOT NULL
);
"""

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database did not answer, refused, or is read-only (message = reason for people)."""


def ensure_schema(dsn: str, timeout: float = 10.0) -> None:
    """Create the ledger tables if they do not exist (run once on the primary)."""
    with psycopg.connect(dsn, connect_timeout=max(2, int(timeout)), autocommit=True,
                         options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
        conn.execute(LEDGER_DDL.encode())


def present_ack_seqs(dsn: str, seqs: Sequence[int], timeout: float = 10.0) -> set[int]:
    """Which of ``seqs`` exist as rows in ``transfers`` at ``dsn`` (for counting lost writes)."""
    if not seqs:
        return set()
    with psycopg.connect(dsn, connect_timeout=max(2, int(timeout)), autocommit=True,
                         options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
        rows = conn.execute("SELECT ack_seq FROM transfers WHERE ack_seq = ANY(%s::bigint[])",
                            (list(seqs),)).fetchall()
    return {int(r[0]) for r in rows}


def _bounded(work: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``work`` on a daemon thread and give up after ``timeout`` (a frozen peer never answers)."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def target() -> None:
        try:
            box.put((True, work()))
        except BaseException as exc:  # handed to the caller's thread
            box.put((False, exc))

    threading.Thread(target=target, name=f"ledger-db-{what}", daemon=True).start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise DatabaseUnavailable(f"database did not answer {what} within {timeout:g}s") from None
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


class Ledger:
    """The app's database logic for one region (no HTTP)."""

    def __init__(self, dsn: str, region: str, *, timeout: float = 2.0) -> None:
        self.dsn = dsn
        self.region = region
        self.timeout = timeout

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            self.dsn,
            connect_timeout=max(2, int(self.timeout + 0.999)),
            options=f"-c statement_timeout={int(self.timeout * 1000)}",
            application_name=f"ledger-{self.region}",
        )

    def _guard(self, work: Callable[[], T], what: str) -> T:
        try:
            return _bounded(work, self.timeout + 1.0, what)
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise DatabaseUnavailable(f"database is read-only: {_first_line(exc)}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise DatabaseUnavailable("ledger schema missing (run ensure_schema on the primary)") from exc
        except psycopg.errors.QueryCanceled as exc:
            raise DatabaseUnavailable(f"database too slow: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc

    def health(self) -> str:
        """Return ``ok`` when reachable and writable, else raise :class:`DatabaseUnavailable`."""

        def check() -> str:
            with self._connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is None or row[0]:
                    raise DatabaseUnavailable("database is a standby in recovery (read-only)")
                # A real write proves writability; local commit keeps health independent of the
                # standby (a transfer still waits for synchronous replication).
                conn.execute("SET LOCAL synchronous_commit = local")
                conn.execute(
                    "INSERT INTO ledger_health (region, checked_at) VALUES (%s, now()) "
                    "ON CONFLICT (region) DO UPDATE SET checked_at = excluded.checked_at",
                    (self.region,),
                )
                conn.commit()
            return "ok"

        return self._guard(check, "the health check")

    def transfer(self, amount: Decimal, ack_seq: int | None) -> int:
        """Insert one transfer and return its id once committed."""

        def write() -> int:
            with self._connect() as conn:
                row = conn.execute(
                    "INSERT INTO transfers (amount, ack_seq, region) VALUES (%s, %s::bigint, %s) RETURNING id",
                    (amount, ack_seq, self.region),
                ).fetchone()
                conn.commit()  # the id is only returned (acknowledged) after this returns
            if row is None:
                raise DatabaseUnavailable("insert returned no id")
            return int(row[0])

        return self._guard(write, "the transfer")

    def summary(self) -> dict[str, int | None]:
        """Row count, highest id and highest ack_seq."""

        def read() -> dict[str, int | None]:
            with self._connect() as conn:
                row = conn.execute("SELECT count(*), max(id), max(ack_seq) FROM transfers").fetchone()
            assert row is not None  # an aggregate always returns one row
            return {"count": int(row[0]), "max_id": row[1], "max_ack_seq": row[2]}

        return self._guard(read, "the summary")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class _Handler(BaseHTTPRequestHandler):
    server: _LedgerHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a probe every few ms would flood the output."""

    def _send(self, status: int, payload: dict[str, Any] | str) -> None:
        if isinstance(payload, str):
            body, kind = (payload + "\n").encode(), "text/plain; charset=utf-8"
        else:
            body, kind = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        """Same as GET without a body."""
        self.do_GET()

    def do_GET(self) -> None:
        """/livez, /healthz, /transfers/summary."""
        ledger = self.server.ledger
        path = urlsplit(self.path).path
        if path == "/livez":
            self._send(200, f"alive region={ledger.region}")
        elif path == "/healthz":
            try:
                self._send(200, f"{ledger.health()} region={ledger.region}")
            except DatabaseUnavailable as exc:
                self._send(503, f"unhealthy region={ledger.region}: {exc}")
        elif path == "/transfers/summary":
            try:
                self._send(200, {"region": ledger.region, **ledger.summary()})
            except DatabaseUnavailable as exc:
                self._send(503, {"error": str(exc), "region": ledger.region})
        else:
            self._send(404, "not found")

    def do_POST(self) -> None:
        """/transfer."""
        ledger = self.server.ledger
        if urlsplit(self.path).path != "/transfer":
            self._send(404, "not found")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(min(length, 64 * 1024)) or b"{}")
            amount = Decimal(str(data.get("amount", "1.00")))
            ack_seq = data.get("ack_seq")
            if ack_seq is not None and (isinstance(ack_seq, bool) or not isinstance(ack_seq, int)):
                raise ValueError("ack_seq must be an integer")
        except (ValueError, InvalidOperation, AttributeError) as exc:
            self._send(400, {"error": f"bad request: {exc}"})
            return
        try:
            row_id = ledger.transfer(amount, ack_seq)
        except DatabaseUnavailable as exc:
            self._send(503, {"error": str(exc), "region": ledger.region})
            return
        self._send(201, {"id": row_id, "ack_seq": ack_seq, "region": ledger.region})


class _LedgerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ledger: Ledger) -> None:
        super().__init__(address, _Handler)
        self.ledger = ledger


class LedgerServer:
    """The ledger app served from a thread of this process (tests, simple embedding).

    ``port=0`` picks a free port; :attr:`port` tells which one after :meth:`start`.
    """

    def __init__(self, address: str, port: int, dsn: str, region: str, *, db_timeout: float = 2.0) -> None:
        self.address = address
        self._requested_port = port
        self._port = port
        self.ledger = Ledger(dsn, region, timeout=db_timeout)
        self._httpd: _LedgerHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (the requested one before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.1.1:18080``."""
        return f"http://{self.address}:{self.port}"

    def start(self) -> None:
        """Bind and serve on a daemon thread."""
        self._httpd = _LedgerHTTPServer((self.address, self._requested_port), self.ledger)
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ledger-{self.ledger.region}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> LedgerServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LedgerProcess:
    """The ledger app as its own process (so a region outage can SIGSTOP it). Stopped by PID."""

    def __init__(self, address: str, port: int, dsn: str, region: str, *, log_file: Path | None = None,
                 db_timeout: float = 2.0) -> None:
        self.address = address
        self.port = port
        self.region = region
        self._dsn = dsn
        self._db_timeout = db_timeout
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None  # started by another process (from_dict)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.1.1:18080``."""
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running app, or None."""
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        if self._adopted_pid is not None and pid_runs(self._adopted_pid, PROCESS_MARKER):
            return self._adopted_pid
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for a state file (no DSN: it may hold a password)."""
        return {"address": self.address, "port": self.port, "region": self.region, "pid": self.pid,
                "log_file": str(self.log_file) if self.log_file else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], dsn: str = "") -> LedgerProcess:
        """Re-attach to an app described by :meth:`to_dict` (to stop it or ask it, not to restart it)."""
        app = cls(data["address"], int(data["port"]), dsn, data["region"],
                  log_file=Path(data["log_file"]) if data.get("log_file") else None)
        app._adopted_pid = int(data["pid"]) if data.get("pid") else None
        return app

    def start(self, timeout: float = 10.0) -> None:
        """Start ``python -m dr_engine.world.ledger_app`` and wait until ``/livez`` answers."""
        if self.pid is not None:
            return
        env = {**os.environ, DSN_ENV: self._dsn}
        argv = [sys.executable, "-m", PROCESS_MARKER, "--listen", f"{self.address}:{self.port}",
                "--region", self.region, "--db-timeout", str(self._db_timeout)]
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(self.log_file.open("ab")) if self.log_file else subprocess.DEVNULL
            self._process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._process.poll() is not None:
                raise RuntimeError(f"ledger app for {self.region} exited with code {self._process.returncode}"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            if self.ready():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"ledger app for {self.region} did not answer on {self.url} within {timeout:g}s")

    def ready(self) -> bool:
        """True when ``/livez`` answers 200 (the process serves; says nothing about the DB)."""
        from dr_engine.providers.http import request

        return request(f"{self.url}/livez", timeout=0.5).status == 200

    def stop(self, timeout: float = 5.0) -> None:
        """SIGCONT (in case it was frozen), SIGTERM, then SIGKILL; by PID only."""
        if self._adopted_pid is not None:
            stop_pid(self._adopted_pid, PROCESS_MARKER, timeout)
            self._adopted_pid = None
        process = self._process
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dr_engine.world.ledger_app``."""
    parser = argparse.ArgumentParser(prog="python -m dr_engine.world.ledger_app", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT to serve on")
    parser.add_argument("--region", required=True, help="region name reported by the app")
    parser.add_argument("--dsn", default=None, help=f"database DSN (default: ${DSN_ENV}; prefer the env var)")
    parser.add_argument("--db-timeout", type=float, default=2.0, help="bound of each database call, seconds")
    parser.add_argument("--init-schema", action="store_true", help="create the ledger tables first")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        parser.error(f"give --dsn or set {DSN_ENV}")
    address, _, port = args.listen.rpartition(":")
    if args.init_schema:
        ensure_schema(dsn)
    httpd = _LedgerHTTPServer((address, int(port)), Ledger(dsn, args.region, timeout=args.db_timeout))

    def on_term(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns, so it must not run on the serving thread.
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    try:
        httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
