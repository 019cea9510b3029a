"""Thin adapter for PostgreSQL server administration on this host: base backups, start/stop, pg_rewind.

Used by drills (a promoted clone of the standby) and by failback (rejoin the old primary as a
standby of the new one). PostgreSQL refuses to run its server binaries as root: when this
process is root they run as the owner of the data directory (``postgres`` for new ones, or
``DR_PG_OS_USER``). Every call is bounded by a timeout; passwords never appear in messages.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dr_engine.errors import ProviderError, StepTimeout
from dr_engine.providers import children
from dr_engine.providers.postgres.client import DEFAULT_BIN, postmaster_pid, redact
from dr_engine.providers.postgres.processes import clear_stale_locks, kill_server, signal_server

#: The OS user server binaries run as when dr-engine runs as root.
PG_OS_USER = os.environ.get("DR_PG_OS_USER", "postgres")


def _ids_for(path: Path | None) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    if path is not None and path.exists():
        info = path.stat()
        if info.st_uid != 0:
            return info.st_uid, info.st_gid
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError as exc:
        raise ProviderError(f"running as root but there is no {PG_OS_USER!r} user to run PostgreSQL as",
                            hint="create it or set DR_PG_OS_USER") from exc
    return entry.pw_uid, entry.pw_gid


def owned_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` owned by the server user (when root) with ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    ids = _ids_for(None)
    if ids is not None:
        os.chown(path, *ids)
    return path


def run_tool(name: str, args: list[str], *, timeout: float, owner_of: Path | None = None,
             bin_dir: Path = DEFAULT_BIN, password: SecretStr | None = None) -> subprocess.CompletedProcess[str]:
    """Run PostgreSQL binary ``name`` as the server user; never raises for a non-zero exit.

    A ``password`` goes to the tool through ``PGPASSWORD`` (never on its command line).
    """
    argv = [str(bin_dir / name), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    if password is not None:
        env["PGPASSWORD"] = password.get_secret_value()
    kwargs: dict[str, Any] = {}
    ids = _ids_for(owner_of)
    if ids is not None:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
    try:
        return children.run(argv, timeout=max(timeout, 0.1), env=env, cwd="/", **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise StepTimeout(f"{name} did not finish within {timeout:.1f}s",
                          hint="raise the step timeout or check the server") from exc
    except FileNotFoundError as exc:
        raise ProviderError(f"{name} not found in {bin_dir}", hint="set DR_PG_BIN") from exc


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return redact((done.stderr or done.stdout or "").strip()[-600:])


def essence(text: str, limit: int = 400) -> str:
    """The lines of a server or tool output that say what went wrong (FATAL, PANIC, error...).

    The end of such output is usually "database system is shut down" or the command that
    failed; the cause is earlier, and a message cut to its last characters loses it.
    """
    keys = ("FATAL", "PANIC", "ERROR", "error:", "fatal:", "could not", "HINT")
    picked = [line.strip() for line in text.splitlines() if any(key in line for key in keys)]
    return redact(" | ".join(picked)[:limit] if picked else text.strip()[-limit:])


def base_backup(host: str, port: int, user: str, data_dir: Path, *, timeout: float,
                bin_dir: Path = DEFAULT_BIN) -> None:
    """``pg_basebackup -R -X stream`` of ``host:port`` into a new ``data_dir`` (a standby of it)."""
    owned_dir(data_dir, 0o700)
    done = run_tool("pg_basebackup", ["-h", host, "-p", str(port), "-U", user, "-D", str(data_dir), "-R",
                                      "-X", "stream", "-c", "fast", "--no-sync"],
                    timeout=timeout, owner_of=data_dir, bin_dir=bin_dir)
    if done.returncode != 0:
        raise ProviderError(f"pg_basebackup from {host}:{port} failed (exit {done.returncode}): {_tail(done)}",
                            hint="check the source accepts replication connections (pg_hba, max_wal_senders)")


def append_settings(data_dir: Path, settings: dict[str, str], comment: str) -> None:
    """Append ``settings`` to ``postgresql.auto.conf`` (later lines win over inherited ones)."""
    conf = data_dir / "postgresql.auto.conf"
    with conf.open("a", encoding="utf-8") as handle:
        handle.write(f"# {comment}\n")
        handle.writelines(f"{key} = {value}\n" for key, value in settings.items())


def set_standby(data_dir: Path, primary_conninfo: str) -> None:
    """Make ``data_dir`` start as a standby streaming from ``primary_conninfo``."""
    signal_file = data_dir / "standby.signal"
    signal_file.touch()
    append_settings(data_dir, {"primary_conninfo": "'" + primary_conninfo.replace("'", "''") + "'"},
                    "dr-engine: follow the current primary")
    ids = _ids_for(data_dir)
    if ids is not None:
        os.chown(signal_file, *ids)


def start(data_dir: Path, log_file: Path, *, timeout: float, bin_dir: Path = DEFAULT_BIN) -> None:
    """``pg_ctl start -w`` bounded by ``timeout`` (after removing locks of a dead server)."""
    clear_stale_locks(data_dir)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()
    ids = _ids_for(data_dir)
    if ids is not None:
        os.chown(log_file, *ids)
    wait = max(1, int(timeout))
    done = run_tool("pg_ctl", ["-D", str(data_dir), "-l", str(log_file), "-w", "-t", str(wait), "start"],
                    timeout=timeout + 5, owner_of=data_dir, bin_dir=bin_dir)
    if done.returncode != 0:
        log = log_file.read_text(errors="replace")[-20000:] if log_file.exists() else ""
        raise ProviderError(f"PostgreSQL in {data_dir} did not start (exit {done.returncode}): "
                            f"{essence(log) if log.strip() else _tail(done)}", hint=f"see {log_file}")


def stop(data_dir: Path, *, timeout: float, mode: str = "fast", bin_dir: Path = DEFAULT_BIN) -> bool:
    """Stop the server of ``data_dir`` (``mode``, then SIGKILL of its group); True when it ran."""
    pid = postmaster_pid(data_dir / "postmaster.pid")
    if pid is None:
        return False
    signal_server(pid, data_dir, signal.SIGCONT)  # a frozen server cannot act on pg_ctl's signal
    with contextlib.suppress(StepTimeout):
        run_tool("pg_ctl", ["-D", str(data_dir), "-m", mode, "-w", "-t", str(max(1, int(timeout))), "stop"],
                 timeout=timeout + 2, owner_of=data_dir, bin_dir=bin_dir)
    end = time.monotonic() + 2.0
    while postmaster_pid(data_dir / "postmaster.pid") is not None and time.monotonic() < end:
        time.sleep(0.02)
    if postmaster_pid(data_dir / "postmaster.pid") is not None:
        kill_server(pid, data_dir)
        time.sleep(0.05)
    return True


def is_running(data_dir: Path) -> bool:
    """True when the postmaster of ``data_dir`` runs."""
    return postmaster_pid(data_dir / "postmaster.pid") is not None


def rewind(data_dir: Path, source_dsn: str, *, timeout: float, bin_dir: Path = DEFAULT_BIN,
           password: SecretStr | None = None) -> tuple[bool, str]:
    """``pg_rewind --target-pgdata DATA --source-server DSN``; returns (exit 0, output tail)."""
    clear_stale_locks(data_dir)  # its single-user recovery run refuses a lock held by a zombie
    done = run_tool("pg_rewind", ["--target-pgdata", str(data_dir), "--source-server", source_dsn,
                                  "--no-sync", "--progress"], timeout=timeout, owner_of=data_dir, bin_dir=bin_dir,
                    password=password)
    return done.returncode == 0, essence((done.stdout or "") + "\n" + (done.stderr or ""))


def remove_tree(path: Path) -> bool:
    """Delete ``path`` recursively; True when something was removed."""
    if not path.exists():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def move_aside(path: Path, suffix: str) -> Path:
    """Rename ``path`` to ``path + suffix`` (kept, never deleted: it may hold unreplicated data)."""
    target = path.with_name(path.name + suffix)
    path.rename(target)
    return target


__all__ = ["PG_OS_USER", "append_settings", "base_backup", "clear_stale_locks", "essence", "is_running", "move_aside",
           "owned_dir", "remove_tree", "rewind", "run_tool", "set_standby", "start", "stop"]
