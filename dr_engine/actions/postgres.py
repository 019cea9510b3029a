"""PostgreSQL failover actions: lag gate, fence, promote, verify, reconcile.

The decisions live here; :mod:`dr_engine.providers.postgres.client` does the I/O. Every action
observes first and is idempotent, so a failover interrupted half-way is safe to re-run:
a fenced primary stays fenced, a promoted standby is left alone.

The dataset of every action is its ``cluster`` parameter, which is how the planner pairs
``postgres.fence`` with ``postgres.promote``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, RpoObservation, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.capabilities.data import rpo_gate
from dr_engine.errors import (
    DrError,
    FencingFailed,
    PreconditionFailed,
    StepTimeout,
    TransientError,
    VerificationFailed,
)
from dr_engine.model import DrillBehaviour
from dr_engine.model.units import Duration

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


def parse_lsn(text: str | None) -> int | None:
    """``'16/B374D848'`` -> absolute byte position (None stays None)."""
    if not text:
        return None
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class PgParams(ActionParams):
    """Connection parameters shared by the postgres actions."""

    dsn: str = Field(description="libpq DSN of the server this step works on (no password in it)")
    password: SecretStr | None = Field(default=None, description="e.g. ${target.secrets.pg_password}")
    cluster: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] = Field(
        default="postgres", description="Dataset name; pairs fence and promote of the same cluster")


class _PgAction(Action[Any]):
    """Shared behaviour: the dataset is the cluster name; describe shows the endpoint."""

    def dataset(self, params: Any) -> str | None:
        """The cluster name: the planner pairs fence and promote by it."""
        return str(params.cluster)

    def describe(self, params: Any) -> str:
        """Show the cluster and the server's address (never a password)."""
        from dr_engine.providers.postgres.client import endpoint

        try:
            where = str(endpoint(params.dsn))
        except DrError:
            where = "?"
        return f"cluster={params.cluster} at {where}"

    def preflight(self, params: Any, ctx: StepContext) -> list[PreflightCheck]:
        """Is the server reachable?"""
        from dr_engine.providers.postgres.client import endpoint, responsive

        ok = responsive(params.dsn, ctx.deadline.remaining(2.0))
        return [PreflightCheck(f"postgres {params.cluster} reachable", ok, str(endpoint(params.dsn)))]


# ------------------------------------------------------------------------- check_lag
class CheckLagParams(PgParams):
    """Parameters of ``postgres.check_lag``."""

    source_dsn: str | None = Field(default=None, description="The primary's DSN; measured there when it answers")
    source_password: SecretStr | None = None
    synchronous: bool = Field(
        default=False,
        description="The source commits only after this standby flushes (synchronous_standby_names). "
        "Used when the source cannot be asked: acknowledged commits are then on the standby.")
    probe_timeout: Duration = Field(default=timedelta(seconds=1),
                                    description="How long to wait for the source to answer")


@register
class CheckLag(_PgAction):
    """Gate: measure how far the standby is behind; refuse when that exceeds the RPO.

    Measured on the source when it answers (``pg_current_wal_lsn`` vs the standby's flushed
    position, and the standby's ``sync_state``); otherwise from the standby alone (what the
    primary last told its WAL receiver, and how long ago). Unknown lag counts as over the RPO.
    ``--allow-data-loss`` lets the run proceed anyway; the override is recorded in the audit log.
    The decision is the shared RPO gate (:func:`dr_engine.capabilities.data.rpo_gate`).
    """

    name = "postgres.check_lag"
    capability = Capability.DATA_CHECK
    Params = CheckLagParams
    safety_critical = True
    example = ('id: check-lag\naction: postgres.check_lag\nwith: {dsn: "postgresql://postgres@127.0.2.1:15432/ledger",'
               ' source_dsn: "postgresql://postgres@127.0.1.1:15432/ledger", cluster: ledger}\n')

    def run(self, params: CheckLagParams, ctx: StepContext) -> StepResult:
        """Measure the lag and apply the RPO gate."""
        from dr_engine.providers.postgres import client as pg

        with pg.connect(params.dsn, ctx.deadline, password=params.password) as conn:
            row = pg.fetch_one(conn, "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, "
                                     "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, "
                                     "current_setting('cluster_name')")
            assert row is not None
            in_recovery, receive_lsn, replay_age, standby_name = row
            if not in_recovery:
                ctx.log.info("target %s is already a primary: nothing left to gate", params.cluster)
                return StepResult(summary="target already promoted; lag gate not applicable", changed=False,
                                  facts={"already_promoted": True}, outputs={"mode": "already-promoted"})
            receiver = pg.fetch_one(conn, "SELECT status, flushed_lsn::text, latest_end_lsn::text, "
                                          "extract(epoch FROM now() - last_msg_receipt_time)::float8 "
                                          "FROM pg_stat_wal_receiver")
        source_up = params.source_dsn is not None and pg.responsive(
            params.source_dsn, ctx.deadline.remaining(params.probe_timeout.total_seconds()))
        facts: dict[str, Any] = {"receive_lsn": receive_lsn, "source_reachable": source_up}
        if source_up:
            assert params.source_dsn is not None
            with pg.connect(params.source_dsn, ctx.deadline, password=params.source_password, probe=False) as src:
                current = pg.fetch_one(src, "SELECT pg_current_wal_lsn()::text")
                rows = pg.fetch_all(src, "SELECT application_name, state, sync_state, "
                                         "extract(epoch FROM coalesce(flush_lag, '0'::interval))::float8 "
                                         "FROM pg_stat_replication")
            assert current is not None
            lag_bytes: int | None = max(0, (parse_lsn(current[0]) or 0) - (parse_lsn(receive_lsn) or 0))
            mine = [r for r in rows if r[0] == standby_name] or (rows if len(rows) == 1 else [])
            streaming = bool(mine) and mine[0][1] == "streaming"
            # Only a "sync" standby holds every acknowledged commit; a "quorum" (ANY n) one may not:
            # the quorum can be met by other standbys. Those go through the lag rules.
            sync = streaming and mine[0][2] == "sync"
            lag_seconds = float(mine[0][3]) if streaming else (float(replay_age) if replay_age is not None else None)
            facts.update(current_lsn=current[0], measured_on="source",
                         sync_state=mine[0][2] if mine else "disconnected")
            # Measured on the source, the byte count is exact: 0 proves nothing is missing.
            gated = RpoObservation(lag_bytes=lag_bytes, lag_seconds=lag_seconds)
        else:
            # The source is gone: all we know is what it last told the standby, and when.
            sync = params.synchronous
            if receiver is not None:
                flushed, latest = parse_lsn(receiver[1]), parse_lsn(receiver[2])
                lag_bytes = max(0, latest - flushed) if flushed is not None and latest is not None else None
                lag_seconds = float(receiver[3]) if receiver[3] is not None else None
                facts["receiver_status"] = receiver[0]
            else:
                lag_bytes = None
                lag_seconds = float(replay_age) if replay_age is not None else None
                facts["receiver_status"] = "disconnected"
            facts["measured_on"] = "standby"
            # The source may have written more since it last reported: the byte count is a lower
            # bound, never proof of no loss, so the gate gets 0 as unknown and decides on the age.
            gated = RpoObservation(lag_bytes=lag_bytes or None, lag_seconds=lag_seconds)
        facts.update(lag_bytes=lag_bytes, lag_seconds=lag_seconds, synchronous=sync)
        shown = (f"{'?' if lag_bytes is None else lag_bytes} bytes, "
                 f"{'?' if lag_seconds is None else format(lag_seconds, '.3f')} s")
        outputs = {"lag_bytes": "" if lag_bytes is None else str(lag_bytes),
                   "lag_seconds": "" if lag_seconds is None else f"{lag_seconds:.3f}",
                   "synchronous": str(sync).lower()}
        if sync:
            # Acknowledged commits waited for this standby's flush: none can be lost.
            ctx.log.info("standby of %s is synchronous (%s behind in flight): acknowledged lag 0",
                         params.cluster, shown)
            zero = RpoObservation(lag_bytes=0, lag_seconds=0.0)
            verdict = rpo_gate(zero, ctx.objectives.rpo, ctx, subject=f"standby of {params.cluster}")
            return StepResult(summary=f"synchronous standby: acknowledged lag 0 (measured on the "
                                      f"{facts['measured_on']}: {shown})",
                              changed=False, facts={**facts, **verdict.facts()}, outputs=outputs, rpo=zero)
        rpo_obs = RpoObservation(lag_bytes=lag_bytes, lag_seconds=lag_seconds)
        verdict = rpo_gate(gated, ctx.objectives.rpo, ctx, subject=f"standby of {params.cluster}",
                           where=f"measured on the {facts['measured_on']}", shown=shown)
        facts.update(verdict.facts())
        if verdict.overridden:
            return StepResult(summary=f"lag {shown} {verdict.standing.value}: proceeding (allow-data-loss)",
                              changed=False, facts=facts, outputs=outputs, rpo=rpo_obs)
        return StepResult(summary=f"lag {shown}: within the RPO", changed=False, facts=facts, outputs=outputs,
                          rpo=rpo_obs)


# ------------------------------------------------------------------------- fence
class FenceParams(PgParams):
    """Parameters of ``postgres.fence`` (``dsn`` is the old primary)."""

    data_dir: str | None = Field(default=None, description="Old primary's data dir (when on this host)")
    pid_file: str | None = Field(default=None, description="postmaster.pid path (default: data_dir's)")
    fence_command: list[str] | None = Field(
        default=None, description="STONITH command (argv) that powers off/isolates the old primary's host")
    stop_timeout: Duration = Field(default=timedelta(seconds=5), description="Budget for pg_ctl -m fast")
    probe_timeout: Duration = Field(default=timedelta(seconds=1), description="How long an answer may take")
    bin_dir: str | None = Field(default=None, description="PostgreSQL binaries (default: DR_PG_BIN)")


@register
class Fence(_PgAction):
    """Stop the old primary so it can never accept another write, and prove it.

    A reachable primary is stopped with ``pg_ctl -m fast`` (bounded), then ``-m immediate``;
    an unreachable one (host hung, processes stopped) is killed through its PID file or the
    ``fence_command``. The step fails with FencingFailed when the primary still answers:
    promotion must then not happen. Already stopped: returns early.
    """

    name = "postgres.fence"
    capability = Capability.DATA_FENCE
    Params = FenceParams
    safety_critical = True
    drill_default = DrillBehaviour.SKIP
    example = ('id: fence-primary\naction: postgres.fence\nwith: {dsn: "postgresql://postgres@127.0.1.1:15432/ledger",'
               ' data_dir: /var/lib/postgresql/15/main, cluster: ledger}\n')

    def run(self, params: FenceParams, ctx: StepContext) -> StepResult:
        """Observe, stop by the strongest means needed, verify."""
        from dr_engine.providers.postgres import client as pg

        probe = params.probe_timeout.total_seconds()
        pid_file = Path(params.pid_file) if params.pid_file else (
            Path(params.data_dir) / "postmaster.pid" if params.data_dir else None)
        bin_dir = Path(params.bin_dir) if params.bin_dir else pg.DEFAULT_BIN
        pid = pg.postmaster_pid(pid_file) if pid_file else None
        # A frozen (SIGSTOPped) postmaster cannot answer, and no signal but SIGKILL reaches it.
        frozen = pid is not None and pg.process_state(pid) == "stopped"
        answers = not frozen and pg.responsive(params.dsn, ctx.deadline.remaining(probe))
        where = str(pg.endpoint(params.dsn))
        if not answers and pid_file is not None and pid is None:
            return StepResult(summary=f"old primary {where} already stopped", changed=False,
                              facts={"method": "already-stopped"})
        steps: list[str] = []
        if answers and params.data_dir:
            stopped, detail = pg.pg_ctl_stop(Path(params.data_dir), "fast",
                                             ctx.deadline.remaining(params.stop_timeout.total_seconds()), bin_dir)
            steps.append(f"pg_ctl -m fast: {'ok' if stopped else detail}")
            if not stopped:
                stopped, detail = pg.pg_ctl_stop(Path(params.data_dir), "immediate", ctx.deadline.remaining(5.0),
                                                 bin_dir)
                steps.append(f"pg_ctl -m immediate: {'ok' if stopped else detail}")
        local_alive = pid_file is not None and pg.postmaster_pid(pid_file) is not None
        if params.fence_command and (pid_file is None or local_alive):
            # Without a PID file we cannot tell a dead host from a hung one: always fence it.
            ok, detail = pg.run_fence_command(params.fence_command, ctx.deadline.remaining())
            steps.append(f"fence command: {'ok' if ok else detail}")
            if not ok and pid_file is None:
                # Without a PID file only a successful fence command proves the old primary is
                # gone: "does not answer" may just be a hung host that wakes up and takes writes.
                raise FencingFailed(
                    f"fence command for old primary {where} failed ({detail}); it "
                    f"{'still answers' if answers else 'does not answer, but that does not prove it is down'}",
                    hint="fix the fence command, or fence the old primary by hand and then "
                    "`dr skip RUN_ID STEP --force --reason ...` (audited)")
        if pid_file is not None:
            pid = pg.postmaster_pid(pid_file)
            if pid is not None:
                ctx.log.info("old primary %s is frozen, does not answer or did not stop: killing postmaster "
                             "%d and its children", where, pid)
                from dr_engine.providers.postgres.processes import kill_server

                killed = kill_server(pid, pid_file.parent)
                steps.append(f"SIGKILL postmaster {pid} and {len(killed) - 1} children")
                ctx.clock.sleep(0.05)
        if not steps:
            state = "still answers" if answers else "does not answer, but that does not prove it is down"
            raise FencingFailed(
                f"old primary {where} {state} and there is no way to stop it from here",
                hint="give `data_dir:`/`pid_file:` (same host) or a `fence_command:` (STONITH), "
                "or use `fencing: best-effort` with a reason")
        self._verify(params, ctx, pid_file, where, steps)
        return StepResult(summary=f"old primary {where} fenced ({steps[-1]})", facts={"method": steps})

    @staticmethod
    def _verify(params: FenceParams, ctx: StepContext, pid_file: Path | None, where: str, steps: list[str]) -> None:
        from dr_engine.providers.postgres import client as pg
        from dr_engine.providers.postgres.processes import kill_server, server_pids

        while True:
            # Orphaned backends of a dead postmaster count (one mid-commit could still ack a write),
            # and they are killed: nothing of the old primary may keep running.
            postmaster = pg.postmaster_pid(pid_file) if pid_file is not None else None
            orphans = server_pids(pid_file.parent) if pid_file is not None and postmaster is None else []
            if orphans:
                kill_server(None, pid_file.parent if pid_file is not None else None)
            alive = postmaster is not None or bool(orphans)
            answers = pg.responsive(params.dsn, ctx.deadline.remaining(params.probe_timeout.total_seconds()))
            if not alive and not answers:
                return
            if ctx.deadline.remaining() <= 0.1:
                raise FencingFailed(
                    f"old primary {where} is still {'answering' if answers else 'running'} after: {'; '.join(steps)}",
                    hint="stop it by hand (or power off its host) before promoting; the run halted")
            ctx.clock.sleep(0.05)


# ------------------------------------------------------------------------- promote
class PromoteParams(PgParams):
    """Parameters of ``postgres.promote`` (``dsn`` is the standby to promote)."""


def promotion_outcome(was_standby: bool, *, attempt: int, started_before: bool) -> tuple[bool, str]:
    """``(changed, summary)`` of a promote step that found the server a standby or already a primary.

    A primary found on a retry (pg_promote timed out but went on) or on a resumed step (the
    process died after promoting) was most likely promoted by this step: it is reported as a
    change, so the halt report and the audit never say "nothing changed" about a promotion.
    """
    if was_standby:
        return True, "promoted"
    if attempt > 1 or started_before:
        return True, "promoted by an earlier attempt of this step (found already a primary)"
    return False, "already a primary"


@register
class Promote(_PgAction):
    """Promote the standby (``pg_promote(wait => true)``) and wait until it is a writable primary.

    Already a primary: ``changed=False``, unless this is a retry or a resumed step, whose earlier
    attempt most likely promoted it (see :func:`promotion_outcome`).
    """

    name = "postgres.promote"
    capability = Capability.DATA_PROMOTE
    Params = PromoteParams
    drill_default = DrillBehaviour.SKIP
    example = ('id: promote\naction: postgres.promote\nwith: {dsn: "postgresql://postgres@127.0.2.1:15432/ledger",'
               ' cluster: ledger}\n')

    def run(self, params: PromoteParams, ctx: StepContext) -> StepResult:
        """Promote unless already promoted, then wait until out of recovery."""
        from dr_engine.providers.postgres import client as pg

        with pg.connect(params.dsn, ctx.deadline, password=params.password) as conn:
            row = pg.fetch_one(conn, "SELECT pg_is_in_recovery()")
            changed = bool(row and row[0])
            if changed:
                wait = max(1, int(ctx.deadline.remaining(60.0)))
                ctx.log.info("promoting %s (waiting up to %ds)", params.cluster, wait)
                done = pg.fetch_one(conn, "SELECT pg_promote(true, %s::int)", (wait,))
                if not done or not done[0]:
                    raise TransientError(f"pg_promote did not finish within {wait}s",
                                         hint="look at the standby's server log")
            while True:
                state = pg.fetch_one(conn, "SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text, "
                                           "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
                if state is not None and not state[0]:
                    break
                ctx.deadline.check("waiting for the promoted server to leave recovery")
                ctx.clock.sleep(0.02)
        timeline = str(int(state[2], 16))
        already_primary = not changed
        changed, summary = promotion_outcome(changed, attempt=ctx.attempt,
                                             started_before=ctx.started_before)
        return StepResult(summary=f"{summary}: timeline {timeline}, LSN {state[1]}", changed=changed,
                          outputs={"lsn": state[1], "timeline": timeline},
                          facts={"lsn": state[1], "timeline": int(timeline), "already_primary": already_primary})


# ------------------------------------------------------------------------- verify_writable
class VerifyWritableParams(PgParams):
    """Parameters of ``postgres.verify_writable``."""

    interval: Duration = Field(default=timedelta(milliseconds=100), description="Pause between attempts")


@register
class VerifyWritable(_PgAction):
    """Verify the server is a primary that commits: not in recovery, not read-only, commits return.

    A commit that would wait for a synchronous standby that is not there counts as not
    writable (the server would hang every client).
    """

    name = "postgres.verify_writable"
    capability = Capability.DATA_VERIFY
    Params = VerifyWritableParams
    example = ('id: verify-db\naction: postgres.verify_writable\nwith: {dsn: "postgresql://postgres@127.0.2.1:15432/'
               'ledger", cluster: ledger}\n')

    def run(self, params: VerifyWritableParams, ctx: StepContext) -> StepResult:
        """Attempt until writable or the deadline."""
        attempts = 0
        last = ""
        while True:
            attempts += 1
            try:
                xid = self._attempt(params, ctx)
                return StepResult(summary=f"writable (xid {xid}, {attempts} attempt(s))", changed=False,
                                  facts={"attempts": attempts})
            except (TransientError, VerificationFailed, StepTimeout) as exc:
                # A statement cut short by the end of the deadline says less than the previous answer.
                last = last if isinstance(exc, StepTimeout) and last else exc.message
            if ctx.deadline.remaining() <= params.interval.total_seconds():
                raise VerificationFailed(f"{params.cluster} not writable after {attempts} attempt(s): {last}",
                                         hint="check the promote step and the server log")
            ctx.clock.sleep(params.interval.total_seconds())

    @staticmethod
    def _attempt(params: VerifyWritableParams, ctx: StepContext) -> int:
        from dr_engine.providers.postgres import client as pg

        with pg.connect(params.dsn, ctx.deadline, password=params.password, cap=10.0) as conn:
            row = pg.fetch_one(conn, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), "
                                     "current_setting('synchronous_standby_names'), "
                                     "(SELECT count(*) FROM pg_stat_replication "
                                     " WHERE sync_state IN ('sync', 'quorum'))")
            assert row is not None
            if row[0]:
                raise VerificationFailed("still in recovery (a standby)")
            if row[1] == "on":
                raise VerificationFailed("transactions are read-only")
            if row[2] and not row[3]:
                raise VerificationFailed(f"commits would wait for a synchronous standby ({row[2]!r}) "
                                         "that is not connected")
            with conn.transaction():
                xid = pg.fetch_one(conn, "SELECT txid_current()")
        assert xid is not None
        return int(xid[0])


# ------------------------------------------------------------------------- reconcile
class ReconcileParams(PgParams):
    """Parameters of ``postgres.reconcile`` (``dsn`` is the new primary)."""

    table: Annotated[str, Field(pattern=_IDENTIFIER, description="Table the application writes")]
    key: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "id"
    acknowledged_file: str = Field(
        description="File with one key per line, appended after each commit was acknowledged to the client")
    fail_on_loss: bool = Field(default=False, description="Fail the step when acknowledged rows are missing")


@register
class Reconcile(_PgAction):
    """Count acknowledged writes missing on the new primary: the measured RPO in rows."""

    name = "postgres.reconcile"
    capability = Capability.DATA_RECONCILE
    Params = ReconcileParams
    example = ('id: reconcile\naction: postgres.reconcile\nwith: {dsn: "postgresql://postgres@127.0.2.1:15432/'
               'ledger", table: transfers, acknowledged_file: /tmp/acked.log, cluster: ledger}\n')

    def run(self, params: ReconcileParams, ctx: StepContext) -> StepResult:
        """Compare the acknowledged keys with the rows present."""
        from dr_engine.providers.postgres import client as pg

        acked = read_acknowledged(Path(params.acknowledged_file))
        present: set[str] = set()
        table = ".".join(f'"{part}"' for part in params.table.split("."))
        keys = sorted(acked)
        with pg.connect(params.dsn, ctx.deadline, password=params.password) as conn:
            for start in range(0, len(keys), 5000):
                chunk = keys[start:start + 5000]
                rows = pg.fetch_all(conn, f'SELECT "{params.key}"::text FROM {table} '
                                          f'WHERE "{params.key}"::text = ANY(%s::text[])', (chunk,))
                present.update(str(r[0]) for r in rows)
        lost = sorted(acked - present, key=_natural)
        facts: dict[str, Any] = {"acknowledged": len(acked), "present": len(present), "rows_lost": len(lost),
                                 "lost_keys_sample": lost[:20]}
        summary = (f"{len(lost)} of {len(acked)} acknowledged row(s) missing on the new primary" if lost
                   else f"all {len(acked)} acknowledged row(s) present")
        if lost and params.fail_on_loss:
            raise VerificationFailed(f"{summary} (first: {', '.join(lost[:5])})",
                                     hint="compare the acknowledged-writes file with the table",
                                     rpo=RpoObservation(rows_lost=len(lost)))
        return StepResult(summary=summary, changed=False, facts=facts, outputs={"rows_lost": str(len(lost))},
                          rpo=RpoObservation(rows_lost=len(lost)))


def read_acknowledged(path: Path) -> set[str]:
    """Keys from an acknowledgement file; a last line without newline (torn write) is ignored."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PreconditionFailed(f"cannot read acknowledged writes from {path}: {exc.strerror}",
                         hint="point `acknowledged_file:` at the file the application/load generator writes") from exc
    lines = text.split("\n")[:-1]
    return {line.strip() for line in lines if line.strip()}


def _natural(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if re.fullmatch(r"-?\d+", key) else (1, key)
