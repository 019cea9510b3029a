"""Drill variants of the postgres actions: promote a clone of the standby, never the standby.

``postgres.promote`` in a drill clones the target standby (``pg_basebackup -R`` from the
standby itself: a cascading standby, the production primary is not touched) onto the target's
drill address with the same port, waits until the clone has replayed everything the standby
had received when the drill's cutover point was taken, then promotes the *clone*. From then
on every parameter naming the target address means the drill address (a recorded rewrite), so
``postgres.verify_writable`` and ``postgres.reconcile`` check the clone.

The cutover point: just before the clone stops following the standby, the acknowledgement
files of the cluster's reconcile steps are frozen (copied into the run directory) and the
reconcile step reads that copy, so the drill's RPO in rows is measured exactly like a real
failover's: acknowledged writes missing on the promoted copy.

``postgres.fence`` has no variant: its ``drill_default`` is ``skip`` (the production primary
keeps running).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dr_engine.actions.base import StepContext
from dr_engine.actions.postgres import PromoteParams, ReconcileParams, parse_lsn
from dr_engine.drill.session import DrillResource, DrillSession, drill_cleaner, drill_variant
from dr_engine.errors import PreconditionFailed

CLONE = "postgres-clone"


def _dsn_parts(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}


def _with_host(dsn: str, host: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, host=host)


def _freeze_acknowledgements(session: DrillSession, cluster: str) -> list[str]:
    """Copy the acknowledgement files of ``cluster``'s reconcile steps; record path rewrites."""
    frozen: list[str] = []
    loaded = session.plan.loaded
    for step in session.plan.steps:
        params = loaded.params.get(step.id)
        if not isinstance(params, ReconcileParams) or params.cluster != cluster:
            continue
        source = Path(params.acknowledged_file)
        if not source.is_file():
            continue
        copy = session.run_dir / "drill" / f"{step.id}-{source.name}.at-cutover"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        session.add_rewrite(str(source), str(copy))
        frozen.append(str(source))
    return frozen


def _wait_caught_up(standby_dsn: str, clone_dsn: str, ctx: StepContext, password: Any) -> dict[str, Any]:
    from dr_engine.providers.postgres import client as pg

    with pg.connect(standby_dsn, ctx.deadline, password=password) as conn:
        row = pg.fetch_one(conn, "SELECT coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text")
    wanted = parse_lsn(row[0] if row else None) or 0
    with pg.connect(clone_dsn, ctx.deadline, password=password) as conn:
        while True:
            got = pg.fetch_one(conn, "SELECT pg_last_wal_replay_lsn()::text")
            replayed = parse_lsn(got[0] if got else None) or 0
            if replayed >= wanted:
                return {"standby_lsn": row[0] if row else None, "clone_lsn": got[0] if got else None}
            ctx.deadline.check("waiting for the drill clone to replay up to the cutover point")
            ctx.clock.sleep(0.02)


@drill_variant("postgres.promote")
def promote_a_clone(params: PromoteParams, ctx: StepContext, session: DrillSession) -> PromoteParams:
    """Clone the standby onto the drill address (once per run) and return params that promote the clone."""
    from dr_engine.providers.postgres import admin
    from dr_engine.providers.postgres import client as pg

    where = pg.endpoint(params.dsn)
    if where.is_socket:
        raise PreconditionFailed(f"cannot clone {params.cluster} for a drill through a unix socket",
                                 hint="give the standby's DSN with a TCP host")
    drill_addr = session.drill_addr()
    resource_id = f"{CLONE}:{params.cluster}"
    clone_dsn = _with_host(params.dsn, drill_addr)
    existing = session.active(resource_id)
    if existing is not None and admin.is_running(Path(existing.spec["data_dir"])):
        ctx.log.info("drill clone of %s already runs at %s:%d", params.cluster, drill_addr, where.port)
    else:
        base = session.work_dir(f"{params.cluster}-clone")
        spec = {"data_dir": str(base / "data"), "socket_dir": str(base / "run"), "log_file": str(base / "server.log"),
                "root": str(base), "endpoint": f"{drill_addr}:{where.port}", "standby": str(where)}
        session.add_resource(DrillResource(kind=CLONE, id=resource_id, spec=spec,
                                           description=f"PostgreSQL clone of {params.cluster} at {drill_addr}:"
                                                       f"{where.port}"))
        admin.owned_dir(base, 0o755)
        admin.owned_dir(Path(spec["socket_dir"]), 0o755)
        user = _dsn_parts(params.dsn).get("user", "postgres")
        admin.base_backup(where.host, where.port, user, Path(spec["data_dir"]),
                          timeout=ctx.deadline.remaining())
        admin.append_settings(Path(spec["data_dir"]), {
            "listen_addresses": f"'{drill_addr}'", "port": str(where.port),
            "unix_socket_directories": f"'{spec['socket_dir']}'", "cluster_name": f"'{params.cluster}-drill'",
            # The clone is alone in the drill network: no synchronous standby will ever attach.
            "synchronous_standby_names": "''", "archive_mode": "off",
        }, "dr-engine drill clone: its own address, no synchronous standby")
        admin.start(Path(spec["data_dir"]), Path(spec["log_file"]), timeout=ctx.deadline.remaining(60.0))
    frozen = _freeze_acknowledgements(session, params.cluster)
    caught_up = _wait_caught_up(params.dsn, clone_dsn, ctx, params.password)
    ctx.log.info("drill clone of %s caught up with the standby at %s", params.cluster, caught_up["standby_lsn"])
    session.add_rewrite(str(where), f"{drill_addr}:{where.port}")
    target_addr = str(session.target.params.get("addr") or "")
    if target_addr and target_addr != drill_addr:
        session.add_rewrite(target_addr, drill_addr)
    session.copied("postgres", {"cluster": params.cluster, "production_dsn": params.dsn, "dsn": clone_dsn,
                                "password": params.password, "frozen": frozen, **caught_up}, ctx)
    return params.model_copy(update={"dsn": clone_dsn})


@drill_cleaner(CLONE)
def remove_clone(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """Stop the clone (immediate: its data is disposable) and delete its files."""
    from dr_engine.providers.postgres import admin

    data_dir = Path(spec["data_dir"])
    stopped = admin.stop(data_dir, timeout=min(timeout, 10.0), mode="immediate")
    if admin.is_running(data_dir):
        raise RuntimeError(f"the clone in {data_dir} still runs")
    log = Path(spec["log_file"])
    if log.is_file() and log.stat().st_size:  # the clone's server log is evidence of the drill: keep it
        kept = session.run_dir / "drill-logs"
        kept.mkdir(exist_ok=True)
        shutil.copyfile(log, kept / f"{Path(spec['root']).name}-{log.name}")
    admin.remove_tree(Path(spec["root"]))
    if Path(spec["root"]).exists():
        raise RuntimeError(f"could not remove {spec['root']}")
    return f"{'stopped' if stopped else 'was not running'}; removed {spec['root']}"


__all__ = ["promote_a_clone", "remove_clone"]
