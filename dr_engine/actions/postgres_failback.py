"""Failback actions: rejoin the old primary as a standby, then a planned zero-data-loss switchover.

``postgres.rejoin`` turns a stopped (fenced) old primary into a standby of the current primary:
``pg_rewind`` when possible (needs ``wal_log_hints`` or checksums; a ``CHECKPOINT`` is issued on
the current primary first so pg_rewind sees its new timeline), a fresh ``pg_basebackup`` when
pg_rewind fails (the old data directory is moved aside, never deleted: it may hold writes that
never replicated). pg_rewind's exit code is checked before anything starts, and the node only
ever starts with ``standby.signal`` in place: it can never come up as a second writable primary.
A node found running as a primary is stopped first.

``postgres.switchover`` promotes a standby after the current primary was stopped *cleanly*
(``postgres.fence`` stops with ``-m fast`` first): it reads the stopped primary's shutdown
checkpoint with ``pg_controldata`` and promotes only once the standby has received WAL past it,
which proves zero data loss (RPO 0 bytes); a primary that was not shut down cleanly cannot give
that proof and the step refuses (unless the run allows data loss).
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from dr_engine.actions.base import RpoObservation, StepContext, StepResult
from dr_engine.actions.postgres import PgParams, _PgAction, parse_lsn
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError, VerificationFailed
from dr_engine.model import DrillBehaviour
from dr_engine.model.units import Duration

_CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")


class RejoinParams(PgParams):
    """Parameters of ``postgres.rejoin`` (``dsn`` is the node to turn into a standby)."""

    data_dir: str = Field(description="Data directory of the node to rejoin (on this host)")
    primary_dsn: str = Field(description="The current primary to follow (and rewind from)")
    method: str = Field(default="auto", pattern=r"^(auto|rewind|basebackup)$",
                        description="auto: pg_rewind, fresh base backup if that fails")
    catch_up: Duration = Field(default=timedelta(seconds=30),
                               description="How long to wait for the rejoined standby to stream")
    bin_dir: str | None = Field(default=None, description="PostgreSQL binaries (default: DR_PG_BIN)")


def _conninfo(dsn: str, application_name: str) -> tuple[str, str, int, str]:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    host = str(parts.get("host") or "localhost")
    port = int(str(parts.get("port") or 5432))
    user = str(parts.get("user") or "postgres")
    text = f"host={host} port={port} user={user} application_name={application_name}"
    return text, host, port, user


@register
class Rejoin(_PgAction):
    """Make the old primary a streaming standby of the current primary (pg_rewind, else base backup)."""

    name = "postgres.rejoin"
    capability = Capability.DATA_SYNC
    Params = RejoinParams
    drill_default = DrillBehaviour.SKIP
    example = ('id: rejoin-old-primary\naction: postgres.rejoin\nwith: {dsn: "postgresql://postgres@127.0.1.1:15432/'
               'ledger", data_dir: /var/lib/postgresql/15/main, primary_dsn: "postgresql://postgres@127.0.2.1:15432/'
               'ledger", cluster: ledger}\n')

    def run(self, params: RejoinParams, ctx: StepContext) -> StepResult:
        """Observe; stop a stray primary; rewind or re-clone; start as standby; verify streaming."""
        from dr_engine.providers.postgres import admin
        from dr_engine.providers.postgres import client as pg

        data_dir = Path(params.data_dir)
        bin_dir = Path(params.bin_dir) if params.bin_dir else pg.DEFAULT_BIN
        facts: dict[str, Any] = {}
        if admin.is_running(data_dir):
            role = self._role(params, ctx)
            if role == "standby" and self._streaming(params, ctx):
                return StepResult(summary="already a streaming standby", changed=False, facts={"method": "already"})
            ctx.log.warning("%s runs as a %s: stopping it before it rejoins", params.cluster, role)
            admin.stop(data_dir, timeout=ctx.deadline.remaining(10.0), mode="fast", bin_dir=bin_dir)
            facts["stopped_running_node_as"] = role
        stale = admin.clear_stale_locks(data_dir)  # left by a fenced (SIGKILLed) postmaster nobody reaped yet
        if stale:
            ctx.log.info("removed lock files of a server that no longer runs: %s", ", ".join(map(str, stale)))
            facts["stale_locks_removed"] = [str(path) for path in stale]
        with pg.connect(params.primary_dsn, ctx.deadline, password=params.password) as conn:
            row = pg.fetch_one(conn, "SELECT pg_is_in_recovery(), current_setting('cluster_name')")
            if row is None or row[0]:
                raise PreconditionFailed(f"{pg.endpoint(params.primary_dsn)} is not a primary: nothing to follow",
                                         hint="fail over first; rejoin follows the current primary")
            pg.fetch_one(conn, "CHECKPOINT")  # pg_rewind reads the new timeline from the control file
        own = _own_name(data_dir) or params.cluster
        conninfo, host, port, user = _conninfo(params.primary_dsn, own)
        saved = self._save_config(data_dir, ctx)
        method, detail = "rewind", ""
        ok = False
        if params.method in ("auto", "rewind"):
            ok, detail = admin.rewind(data_dir, conninfo.replace(f" application_name={own}", "") + " dbname=postgres",
                                      timeout=ctx.deadline.remaining(), bin_dir=bin_dir, password=params.password)
            facts["pg_rewind"] = "ok" if ok else detail[:300]
            if not ok and params.method == "rewind":
                raise ProviderError(f"pg_rewind of {params.cluster} failed: {detail[:300]}",
                                    hint="use method: auto (fresh base backup) or rebuild the node by hand")
        if not ok:
            method = "basebackup"
            self._reclone(params, ctx, host, port, user, facts, reason=f"pg_rewind failed ({detail[:200]})")
        self._restore_config(data_dir, saved)
        admin.set_standby(data_dir, conninfo)  # standby.signal BEFORE start: never a second primary
        log_file = data_dir.parent / f"{data_dir.name}.rejoin.log"
        try:
            admin.start(data_dir, log_file, timeout=ctx.deadline.remaining(60.0), bin_dir=bin_dir)
        except ProviderError as exc:
            if method != "rewind" or params.method != "auto":
                raise
            # A rewound node that cannot start (e.g. its WAL does not reach the new timeline's
            # history) is a failed rewind: auto falls back to a fresh copy, as documented.
            facts["rewound_node_did_not_start"] = exc.message[-300:]
            admin.stop(data_dir, timeout=5.0, mode="immediate", bin_dir=bin_dir)
            method = "basebackup"
            self._reclone(params, ctx, host, port, user, facts, reason="the rewound node did not start")
            self._restore_config(data_dir, saved)
            admin.set_standby(data_dir, conninfo)
            admin.start(data_dir, log_file, timeout=ctx.deadline.remaining(60.0), bin_dir=bin_dir)
        if self._role(params, ctx) != "standby":
            admin.stop(data_dir, timeout=5.0, mode="immediate", bin_dir=bin_dir)
            raise VerificationFailed(f"{params.cluster} came up as a primary after rejoin; stopped it",
                                     hint="check standby.signal and primary_conninfo in its data directory")
        self._wait_streaming(params, ctx)
        facts["method"] = method
        return StepResult(summary=f"rejoined as a standby of {pg.endpoint(params.primary_dsn)} ({method})",
                          facts=facts, outputs={"method": method})

    @staticmethod
    def _reclone(params: RejoinParams, ctx: StepContext, host: str, port: int, user: str,
                 facts: dict[str, Any], *, reason: str) -> None:
        """Move the old data aside (never deleted: it may hold unreplicated writes) and base-backup."""
        from dr_engine.providers.postgres import admin
        from dr_engine.providers.postgres import client as pg

        data_dir = Path(params.data_dir)
        bin_dir = Path(params.bin_dir) if params.bin_dir else pg.DEFAULT_BIN
        aside = admin.move_aside(data_dir, f".before-rejoin-{ctx.run_id}")
        facts["moved_aside"] = str(aside)
        ctx.log.warning("%s; re-cloning %s, old data kept in %s", reason, params.cluster, aside)
        admin.base_backup(host, port, user, data_dir, timeout=ctx.deadline.remaining(), bin_dir=bin_dir)
        (data_dir / "standby.signal").unlink(missing_ok=True)

    @staticmethod
    def _role(params: RejoinParams, ctx: StepContext) -> str:
        from dr_engine.providers.postgres import client as pg

        try:
            with pg.connect(params.dsn, ctx.deadline, password=params.password, cap=5.0) as conn:
                row = pg.fetch_one(conn, "SELECT pg_is_in_recovery()")
        except TransientError:
            return "unreachable"
        return "standby" if row and row[0] else "primary"

    @staticmethod
    def _streaming(params: RejoinParams, ctx: StepContext) -> bool:
        from dr_engine.providers.postgres import client as pg

        with pg.connect(params.dsn, ctx.deadline, password=params.password, cap=5.0) as conn:
            row = pg.fetch_one(conn, "SELECT status FROM pg_stat_wal_receiver")
        return bool(row and row[0] == "streaming")

    def _wait_streaming(self, params: RejoinParams, ctx: StepContext) -> None:
        end = ctx.clock.monotonic() + min(params.catch_up.total_seconds(), ctx.deadline.remaining())
        while not self._streaming(params, ctx):
            if ctx.clock.monotonic() >= end:
                raise VerificationFailed(f"{params.cluster} started as a standby but does not stream",
                                         hint="see the node's server log")
            ctx.clock.sleep(0.05)

    @staticmethod
    def _save_config(data_dir: Path, ctx: StepContext) -> dict[str, bytes]:
        # pg_rewind and pg_basebackup copy the primary's configuration: the node keeps its own
        # identity (address, port, socket directory, name).
        saved = {name: (data_dir / name).read_bytes() for name in _CONFIG_FILES if (data_dir / name).is_file()}
        if "postgresql.conf" not in saved:
            raise PreconditionFailed(f"{data_dir} holds no postgresql.conf", hint="check data_dir")
        del ctx
        return saved

    @staticmethod
    def _restore_config(data_dir: Path, saved: dict[str, bytes]) -> None:
        for name, content in saved.items():
            path = data_dir / name
            owner = data_dir.stat()
            path.write_bytes(content)
            shutil.chown(path, owner.st_uid, owner.st_gid)


def _own_name(data_dir: Path) -> str | None:
    found: str | None = None
    for name in ("postgresql.conf", "postgresql.auto.conf"):
        path = data_dir / name
        if path.is_file():
            for match in re.finditer(r"^\s*cluster_name\s*=\s*'([^']*)'", path.read_text(errors="replace"), re.M):
                found = match.group(1)
    return found


class SwitchoverParams(PgParams):
    """Parameters of ``postgres.switchover`` (``dsn`` is the standby to promote)."""

    old_primary_data_dir: str = Field(description="Data directory of the primary stopped by the fence step")
    bin_dir: str | None = Field(default=None, description="PostgreSQL binaries (default: DR_PG_BIN)")


@register
class Switchover(_PgAction):
    """Planned promotion with proof of zero data loss (after a clean stop of the primary)."""

    name = "postgres.switchover"
    capability = Capability.DATA_PROMOTE
    Params = SwitchoverParams
    drill_default = DrillBehaviour.SKIP
    example = ('id: switchover\naction: postgres.switchover\nwith: {dsn: "postgresql://postgres@127.0.1.1:15432/'
               'ledger", old_primary_data_dir: /var/lib/postgresql/15/main, cluster: ledger}\n')

    def run(self, params: SwitchoverParams, ctx: StepContext) -> StepResult:
        """Prove the standby has all WAL of the stopped primary, then promote it."""
        from dr_engine.providers.postgres import admin
        from dr_engine.providers.postgres import client as pg

        old = Path(params.old_primary_data_dir)
        bin_dir = Path(params.bin_dir) if params.bin_dir else pg.DEFAULT_BIN
        with pg.connect(params.dsn, ctx.deadline, password=params.password) as conn:
            row = pg.fetch_one(conn, "SELECT pg_is_in_recovery()")
            if row is not None and not row[0]:
                return StepResult(summary="already the primary", changed=False, facts={"already_primary": True},
                                  rpo=RpoObservation(lag_bytes=0, lag_seconds=0.0))
            if admin.is_running(old):
                raise PreconditionFailed(f"the current primary ({old}) still runs: a switchover needs it stopped",
                                         hint="run the fence step (clean stop) before the switchover")
            state, checkpoint = _control_data(old, bin_dir, ctx)
            if state != "shut down" and not ctx.allow_data_loss:
                raise PreconditionFailed(f"the old primary was not shut down cleanly ({state}): zero data loss "
                                         "cannot be proven", hint="use failover (with its lag gate) instead")
            wanted = parse_lsn(checkpoint) or 0
            while True:
                got = pg.fetch_one(conn, "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text")
                received = max(parse_lsn(got[0]) or 0, parse_lsn(got[1]) or 0) if got else 0
                if received >= wanted:
                    break
                if ctx.deadline.remaining() < 0.5:
                    raise VerificationFailed(f"the standby received up to {got[0] if got else '?'}, short of the "
                                             f"old primary's shutdown checkpoint {checkpoint}",
                                             hint="check replication; the old primary holds the missing WAL")
                ctx.clock.sleep(0.05)
            wait = max(1, int(ctx.deadline.remaining(60.0)))
            done = pg.fetch_one(conn, "SELECT pg_promote(true, %s::int)", (wait,))
            if not done or not done[0]:
                raise TransientError(f"pg_promote did not finish within {wait}s")
            lsn = pg.fetch_one(conn, "SELECT pg_current_wal_lsn()::text")
        facts = {"old_primary_state": state, "shutdown_checkpoint": checkpoint, "lsn": lsn[0] if lsn else None}
        return StepResult(summary=f"switched over with 0 bytes lost (standby had WAL past the shutdown checkpoint "
                                  f"{checkpoint})", facts=facts,
                          outputs={"lsn": lsn[0] if lsn else ""}, rpo=RpoObservation(lag_bytes=0, lag_seconds=0.0))


def _control_data(data_dir: Path, bin_dir: Path, ctx: StepContext) -> tuple[str, str]:
    from dr_engine.providers.postgres import admin

    done = admin.run_tool("pg_controldata", ["-D", str(data_dir)], timeout=ctx.deadline.remaining(10.0),
                          owner_of=data_dir, bin_dir=bin_dir)
    if done.returncode != 0:
        raise ProviderError(f"pg_controldata {data_dir} failed: {done.stderr.strip()[-300:]}")
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    state = fields.get("Database cluster state", "").strip()
    checkpoint = fields.get("Latest checkpoint location", "").strip()
    return state, checkpoint


__all__ = ["Rejoin", "RejoinParams", "Switchover", "SwitchoverParams"]
