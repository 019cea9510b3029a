"""A PostgreSQL 15 primary/hot-standby pair for the embedded two-region world.

The primary runs in the source region, the standby (``pg_basebackup -R``) in the target
region; each listens on its region's own loopback address. Replication is synchronous by
default (``synchronous_standby_names = '*'`` once the standby streams), asynchronous on
request.

Why things are the way they are (see the platform notes):

- initdb/postgres refuse to run as root: as root every server binary runs as the
  ``postgres`` user and the data directories are chowned to it; as a normal user they run
  directly.
- The socket directory lives outside the data directory (a copied lock file breaks the
  standby), and the standby's own ``port``/``listen_addresses`` are appended to its
  ``postgresql.auto.conf`` (it would inherit the primary's otherwise).
- ``wal_log_hints`` and ``wal_keep_size`` are on so that a later failback can ``pg_rewind``.
- Processes are started with ``pg_ctl`` and stopped by the PID in ``postmaster.pid``, never by
  name. Each child of the postmaster leads its own process group, so a server's processes are
  found by their working directory (:mod:`dr_engine.providers.postgres.processes`).
- Loopback connections trust by default; with a ``password`` they need it (SCRAM), so that
  secret-hygiene tests can plant a canary. Replication connections always trust loopback.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: Where Debian installs the PostgreSQL 15 server binaries (override with DR_PG_BIN).
PG_BIN = Path(os.environ.get("DR_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The user the server binaries run as when we are root.
PG_OS_USER = "postgres"
#: Database superuser created by initdb.
PG_SUPERUSER = "postgres"


class PostgresWorldError(RuntimeError):
    """The embedded PostgreSQL pair could not be set up or driven."""


def running_as_root() -> bool:
    """True when this process is root (server binaries must then run as ``postgres``)."""
    return os.geteuid() == 0


def _owner_ids() -> tuple[int, int] | None:
    if not running_as_root():
        return None
    entry = pwd.getpwnam(PG_OS_USER)
    return entry.pw_uid, entry.pw_gid


def make_owned_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` owned by the user the server runs as (postgres when root)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    ids = _owner_ids()
    if ids is not None:
        os.chown(path, *ids)
    return path


def run_server_tool(argv: list[str], *, cwd: Path, timeout: float,
                    check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary as the server user (postgres when root), bounded by ``timeout``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    ids = _owner_ids()
    kwargs: dict[str, Any] = {}
    if ids is not None:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
        env["HOME"] = str(cwd)
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if check and done.returncode != 0:
        raise PostgresWorldError(
            f"{Path(argv[0]).name} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}"
        )
    return done


@dataclass(frozen=True)
class NodeSpec:
    """Where one region's database listens."""

    region: str
    host: str
    port: int


@dataclass
class PgNode:
    """One PostgreSQL server of the pair."""

    region: str
    host: str
    port: int
    data_dir: Path
    socket_dir: Path
    log_file: Path

    @property
    def pid_file(self) -> Path:
        """The postmaster's PID file (first line: the postmaster PID)."""
        return self.data_dir / "postmaster.pid"

    def pid(self) -> int | None:
        """The running postmaster's PID, or None when it is not running (zombies count as gone)."""
        from dr_engine.providers.postgres.client import postmaster_pid

        return postmaster_pid(self.pid_file)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for the world's state file)."""
        return {"region": self.region, "host": self.host, "port": self.port,
                "data_dir": str(self.data_dir), "socket_dir": str(self.socket_dir),
                "log_file": str(self.log_file)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PgNode:
        """Inverse of :meth:`to_dict`."""
        return cls(region=data["region"], host=data["host"], port=int(data["port"]),
                   data_dir=Path(data["data_dir"]), socket_dir=Path(data["socket_dir"]),
                   log_file=Path(data["log_file"]))


def build_dsn(host: str, port: int, dbname: str, *, user: str = PG_SUPERUSER,
              password: str | None = None) -> str:
    """A libpq URI for ``host:port/dbname`` (the password, when given, is URL-quoted)."""
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{dbname}"


@dataclass
class PostgresPair:
    """A primary (source region) and hot standby (target region) on loopback.

    ``root`` must be traversable by the ``postgres`` user when running as root; the World
    uses a fresh directory under the system temp dir for that reason.
    """

    root: Path
    primary_spec: NodeSpec
    standby_spec: NodeSpec
    synchronous: bool = True
    password: str | None = None
    database: str = "ledger"
    bin_dir: Path = PG_BIN
    nodes: dict[str, PgNode] = field(default_factory=dict)

    # ----------------------------------------------------------------- layout
    def _node(self, spec: NodeSpec) -> PgNode:
        return PgNode(region=spec.region, host=spec.host, port=spec.port,
                      data_dir=self.root / "data" / spec.region,
                      socket_dir=self.root / "run" / spec.region,
                      log_file=self.root / "log" / f"{spec.region}.log")

    @property
    def primary(self) -> PgNode:
        """The node that started as primary (source region)."""
        return self.nodes[self.primary_spec.region]

    @property
    def standby(self) -> PgNode:
        """The node that started as standby (target region)."""
        return self.nodes[self.standby_spec.region]

    def dsn(self, region: str, *, dbname: str | None = None, with_password: bool = True) -> str:
        """The TCP DSN of ``region``'s server (with the password unless told otherwise)."""
        node = self.nodes[region]
        return build_dsn(node.host, node.port, dbname or self.database,
                         password=self.password if with_password else None)

    def admin_dsn(self, region: str, dbname: str = "postgres") -> str:
        """A DSN over the node's unix socket (always trusted): for world administration."""
        node = self.nodes[region]
        return f"host={node.socket_dir} port={node.port} dbname={dbname} user={PG_SUPERUSER}"

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    # ----------------------------------------------------------------- start
    def start(self, timeout: float = 60.0) -> None:
        """initdb + start the primary, base-backup + start the standby, enable sync replication."""
        if not (self.bin_dir / "initdb").exists():
            raise PostgresWorldError(f"PostgreSQL server binaries not found in {self.bin_dir}; "
                                     "install postgresql-15 or set DR_PG_BIN")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for sub in ("data", "run", "log"):
            make_owned_dir(self.root / sub, 0o755)
        self.nodes = {s.region: self._node(s) for s in (self.primary_spec, self.standby_spec)}
        for node in self.nodes.values():
            make_owned_dir(node.socket_dir, 0o755)
        self._init_primary(timeout)
        self.start_node(self.primary.region, timeout)
        self._create_database()
        self._clone_standby(timeout)
        self.start_node(self.standby.region, timeout)
        if self.synchronous:
            self._enable_sync(timeout)
        else:
            self.wait_streaming(timeout)

    def _init_primary(self, timeout: float) -> None:
        node = self.primary
        argv = [self._tool("initdb"), "-D", str(node.data_dir), "-U", PG_SUPERUSER, "--encoding=UTF8",
                "--no-locale", "--auth-local=trust", "--auth-host=trust", "--no-sync"]
        pwfile: Path | None = None
        if self.password is not None:
            pwfile = self.root / "run" / ".pwfile"
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            ids = _owner_ids()
            if ids is not None:
                os.chown(pwfile, *ids)
            argv.append(f"--pwfile={pwfile}")
        try:
            run_server_tool(argv, cwd=self.root, timeout=timeout)
        finally:
            if pwfile is not None:
                pwfile.unlink(missing_ok=True)
        host_auth = "scram-sha-256" if self.password is not None else "trust"
        (node.data_dir / "pg_hba.conf").write_text(
            "# Written by dr-engine's embedded world.\n"
            "local   all          all                   trust\n"
            f"host    all          all   127.0.0.0/8     {host_auth}\n"
            "host    replication  all   127.0.0.0/8     trust\n"
        )
        settings = {
            "listen_addresses": f"'{node.host}'",
            "port": str(node.port),
            "unix_socket_directories": f"'{node.socket_dir}'",
            "cluster_name": f"'{node.region}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "wal_keep_size": "'256MB'",
            "wal_log_hints": "on",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "synchronous_commit": "on",
            "synchronous_standby_names": "''",
            # The world is disposable: durability against an OS crash is not what it tests.
            "fsync": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "40",
            "wal_sender_timeout": "'10s'",
            "wal_receiver_status_interval": "'1s'",
            "wal_receiver_timeout": "'10s'",
            "wal_retrieve_retry_interval": "'500ms'",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
        }
        with (node.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# dr-engine embedded world\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start_node(self, region: str, timeout: float = 60.0) -> None:
        """Start ``region``'s server with pg_ctl and wait until it accepts connections."""
        from dr_engine.providers.postgres.processes import clear_stale_locks

        node = self.nodes[region]
        clear_stale_locks(node.data_dir)  # a killed postmaster may linger as an unreaped zombie
        run_server_tool([self._tool("pg_ctl"), "-D", str(node.data_dir), "-l", str(node.log_file),
                         "-w", "-t", str(int(timeout)), "start"], cwd=self.root, timeout=timeout + 5)

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn(self.primary.region), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def _clone_standby(self, timeout: float) -> None:
        primary, standby = self.primary, self.standby
        run_server_tool([self._tool("pg_basebackup"), "-h", primary.host, "-p", str(primary.port),
                         "-U", PG_SUPERUSER, "-D", str(standby.data_dir), "-R", "-X", "stream",
                         "-c", "fast", "--no-sync"], cwd=self.root, timeout=timeout)
        overrides = {
            "listen_addresses": f"'{standby.host}'",
            "port": str(standby.port),
            "unix_socket_directories": f"'{standby.socket_dir}'",
            "cluster_name": f"'{standby.region}'",
        }
        with (standby.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("# dr-engine embedded world: this node's own address\n")
            conf.writelines(f"{k} = {v}\n" for k, v in overrides.items())

    def _sql_primary(self, sql: str, timeout: float = 10.0) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.admin_dsn(self.primary.region), autocommit=True,
                             connect_timeout=max(2, int(timeout)),
                             options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
            cur = conn.execute(sql.encode())  # fixed SQL written by this module
            return cur.fetchall() if cur.description else []

    def wait_streaming(self, timeout: float = 30.0, *, sync: bool = False) -> None:
        """Wait until the standby streams from the primary (and is the sync standby when asked)."""
        end = time.monotonic() + timeout
        last: list[tuple[Any, ...]] = []
        while time.monotonic() < end:
            last = self._sql_primary("SELECT state, sync_state FROM pg_stat_replication")
            if any(r[0] == "streaming" and (not sync or r[1] in ("sync", "quorum")) for r in last):
                return
            time.sleep(0.05)
        raise PostgresWorldError(f"standby did not start streaming within {timeout:g}s: {last}")

    def _enable_sync(self, timeout: float) -> None:
        # Only once the standby streams: naming a sync standby before it attaches blocks commits.
        self.wait_streaming(timeout)
        self._sql_primary("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self._sql_primary("SELECT pg_reload_conf()")
        self.wait_streaming(timeout, sync=True)

    # ----------------------------------------------------------------- failure simulation
    def cut_replication(self, timeout: float = 10.0) -> None:
        """Disconnect the standby from the primary (both keep running): async data loss ahead."""
        import psycopg

        with psycopg.connect(self.admin_dsn(self.standby.region), autocommit=True, connect_timeout=5) as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            conn.execute("SELECT pg_reload_conf()")
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                row = conn.execute("SELECT count(*) FROM pg_stat_wal_receiver").fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.05)
        raise PostgresWorldError("the standby's WAL receiver did not stop")

    def signal_node(self, region: str, sig: signal.Signals) -> bool:
        """Send ``sig`` to every process of ``region``'s server; False when it does not run.

        Each PostgreSQL child leads its own process group, so the postmaster's group alone
        would leave the walsender, walreceiver and backends running through a "frozen host".
        """
        from dr_engine.providers.postgres.processes import signal_server

        node = self.nodes[region]
        pid = node.pid()
        if pid is None:
            return False
        return bool(signal_server(pid, node.data_dir, sig))

    def pids(self, region: str) -> list[int]:
        """The postmaster PID of ``region`` (as a list, empty when not running)."""
        pid = self.nodes[region].pid()
        return [] if pid is None else [pid]

    # ----------------------------------------------------------------- stop
    def stop(self, timeout: float = 10.0) -> None:
        """Stop both servers (resuming stopped ones first); immediate mode: the data is disposable."""
        for node in self.nodes.values():
            stop_node(node, self.bin_dir, self.root, timeout)

    def remove(self) -> None:
        """Delete the pair's directory (after :meth:`stop`)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for the world's state file (no password)."""
        return {"root": str(self.root), "synchronous": self.synchronous, "database": self.database,
                "bin_dir": str(self.bin_dir), "primary": self.primary.to_dict(),
                "standby": self.standby.to_dict()}


def stop_node(node: PgNode, bin_dir: Path, cwd: Path, timeout: float = 10.0) -> None:
    """Stop one server by its recorded PID: SIGCONT, pg_ctl -m immediate, SIGKILL as last resort."""
    from dr_engine.providers.postgres.processes import kill_server, server_pids, signal_server

    pid = node.pid()
    if pid is None:
        if server_pids(node.data_dir):  # orphans of a killed postmaster (frozen ones never exit)
            kill_server(None, node.data_dir)
        return
    # A frozen region froze every process of the server: all must run again to obey pg_ctl.
    signal_server(pid, node.data_dir, signal.SIGCONT)
    if node.data_dir.exists():
        with contextlib.suppress(subprocess.TimeoutExpired, PostgresWorldError):
            run_server_tool([str(bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-m", "immediate",
                             "-w", "-t", str(int(timeout)), "stop"], cwd=cwd if cwd.exists() else Path("/"),
                            timeout=timeout + 5, check=False)
    if node.pid() is not None or server_pids(node.data_dir):
        kill_server(node.pid(), node.data_dir)
