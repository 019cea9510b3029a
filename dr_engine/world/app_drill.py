"""The embedded world's drill copies: a ledger app on the promoted Postgres clone.

When a drill clones the target region's database (:mod:`dr_engine.drill.variants.postgres`),
this copy hook starts a second ledger app on the target's drill address (same port as the
target's app) connected to the clone, so ``http.verify`` of the target app and of the drill DNS
name checks a real application on the drill copy, never production. The app is recorded as a
drill copy before it starts and stopped by PID at cleanup.

The hook only acts when the target region describes an embedded world (its ``pg_data_dir``
lies in a world whose state file lists an app at the region's ``app_url``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from dr_engine.actions.base import StepContext
from dr_engine.drill.session import COPY_HOOKS, DrillResource, DrillSession, drill_cleaner
from dr_engine.world.core import read_state

APP = "world-app"
_STARTED: dict[str, Any] = {}
_STARTED_LOCK = threading.Lock()


def _world_app(session: DrillSession) -> tuple[str, int] | None:
    """(address, port) of the target region's world app, or None when the target is not a world."""
    params = session.target.params
    data_dir, app_url = params.get("pg_data_dir"), params.get("app_url")
    if not data_dir or not app_url:
        return None
    path = Path(str(data_dir))
    if len(path.parents) < 3:
        return None
    state = read_state(path.parents[2])
    if state is None:
        return None
    app = (state.get("apps") or {}).get(session.target.name)
    if not app or str(app.get("url", "")).rstrip("/") != str(app_url).rstrip("/"):
        return None
    split = urlsplit(str(app_url))
    if split.hostname is None or split.port is None:
        return None
    return split.hostname, split.port


def start_drill_app(session: DrillSession, kind: str, info: dict[str, Any], ctx: StepContext) -> None:
    """Copy hook: on a Postgres clone, start the ledger app on it at the drill address."""
    from dr_engine.world.ledger_app import PROCESS_MARKER, LedgerProcess

    if kind != "postgres":
        return
    found = _world_app(session)
    if found is None:
        return
    _, port = found
    addr = session.drill_addr()
    resource_id = f"{APP}:{session.target.name}"
    existing = session.active(resource_id)
    if existing is not None and existing.spec.get("pid"):
        from dr_engine.world.processes import is_ours

        if is_ours(int(existing.spec["pid"]), PROCESS_MARKER):
            return
    log_file = session.work_dir("ledger-app.log")
    spec: dict[str, Any] = {"address": addr, "port": port, "marker": PROCESS_MARKER, "endpoint": f"{addr}:{port}"}
    session.add_resource(DrillResource(kind=APP, id=resource_id, spec=spec,
                                       description=f"ledger app on the drill clone at {addr}:{port}"))
    dsn = str(info["dsn"])
    password = info.get("password")
    if isinstance(password, SecretStr):
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(dsn, password=password.get_secret_value())
    app = LedgerProcess(addr, port, dsn, f"{session.target.name}-drill", log_file=log_file)
    app.start(timeout=ctx.deadline.remaining(20.0))
    with _STARTED_LOCK:
        _STARTED[f"{session.run_id}/{resource_id}"] = app
    session.add_resource(DrillResource(kind=APP, id=resource_id, spec={**spec, "pid": app.pid},
                                       description=f"ledger app on the drill clone at {addr}:{port} (pid {app.pid})"))
    ctx.log.info("drill: ledger app on the clone listens at %s:%d", addr, port)


@drill_cleaner(APP)
def stop_drill_app(spec: dict[str, Any], session: DrillSession, timeout: float) -> str:
    """Stop the drill app by its PID (checked against its command line)."""
    from dr_engine.world.processes import is_ours, stop_pid

    with _STARTED_LOCK:
        app = _STARTED.pop(f"{session.run_id}/{APP}:{session.target.name}", None)
    if app is not None:  # started by this process: stop and reap it
        pid = app.pid
        app.stop(timeout=min(timeout, 5.0))
        return f"stopped ledger app pid {pid}"
    pid = spec.get("pid")
    if not pid:
        return "no process was started"
    marker = f"--listen {spec['address']}:{spec['port']}"
    if not is_ours(int(pid), marker):
        return f"pid {pid} already gone"
    stop_pid(int(pid), marker, timeout=min(timeout, 5.0))
    if is_ours(int(pid), marker):
        raise RuntimeError(f"ledger app pid {pid} still runs")
    return f"stopped ledger app pid {pid}"


if start_drill_app not in COPY_HOOKS:
    COPY_HOOKS.append(start_drill_app)

__all__ = ["start_drill_app", "stop_drill_app"]
