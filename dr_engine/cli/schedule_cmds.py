"""``dr readiness``, ``dr lock show``, ``dr schedule serve`` and ``dr schedule server``."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.table import Table

from dr_engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Output,
    err,
    handle_errors,
    out,
    print_json,
    state_dir_option,
)
from dr_engine.clock import SystemClock, parse_utc
from dr_engine.config.loader import load_runbook
from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.readiness import Readiness, latest, run_readiness
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.settings import server_mode
from dr_engine.lock.backends import LockSettings, last_lease, lock_for
from dr_engine.model import format_duration, parse_duration


def _render(results: list[Readiness]) -> None:
    console = out()
    table = Table(box=None, pad_edge=False)
    for column in ("runbook", "ready", "checked at", "failed", "last test", "drill due"):
        table.add_column(column)
    for r in results:
        due = "" if r.drill_overdue is None else ("OVERDUE" if r.drill_overdue else "ok")
        table.add_row(r.runbook, "yes" if r.ready else "NO", r.checked_at, str(len(r.failures)),
                      r.last_test_run or "-", due)
    console.print(table)
    for r in results:
        for c in r.failures:
            console.print(f"  {r.runbook}: {c.step}: {c.name}: {c.detail}", markup=False)


@handle_errors
def readiness_cmd(
    runbook: str = typer.Argument(None, help="One runbook (name or path); default: every runbook."),
    run: bool = typer.Option(False, "--run", help="Run the read-only checks now (and store the result)."),
    notify: bool = typer.Option(True, "--notify/--no-notify", help="With --run: send readiness notifications."),
    runbooks_dir: Path = typer.Option(None, "--runbooks-dir", envvar="DR_RUNBOOKS_DIR",
                                      help="Where runbooks live (default ./runbooks)."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Would each runbook succeed now? Shows the latest readiness result (exit 1 when one is not ready)."""
    if run:
        results = run_readiness(state_dir, folder=runbooks_dir, only=runbook, send=notify)
    else:
        name = resolve_runbook(runbook).stem if runbook and (runbook.endswith((".yaml", ".yml"))) else runbook
        results = latest(state_dir, name)
    if output is Output.JSON:
        print_json([r.to_json() for r in results])
    elif not results:
        err().print("no readiness results yet; run `dr readiness --run` or serve the readiness flow "
                    "(`dr schedule serve`)", markup=False)
    else:
        _render(results)
    raise typer.Exit(EXIT_FAILED if any(not r.ready for r in results) else EXIT_OK)


@handle_errors
def lock_show_cmd(
    runbook: str = typer.Argument(..., help="Runbook name or path."),
    output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json"),
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Show the failover lock of a runbook's application: backend, holder, age, token, minimum interval."""
    loaded = load_runbook(resolve_runbook(runbook))
    settings = LockSettings.of(loaded.target)
    lock = lock_for(loaded.target, state_dir, settings=settings)
    key = loaded.runbook.lock_key  # one lock per application (runbook `application:`)
    current = lock.inspect(key)
    last = last_lease(lock, key)
    now = SystemClock().now()
    data: dict[str, Any] = {"runbook": loaded.runbook.runbook, "application": key, "backend": settings.backend,
                            "held": current is not None,
                            "min_run_interval": format_duration(settings.min_interval),
                            "ttl": format_duration(settings.ttl), "lease": None}
    if last is not None:
        data["lease"] = {**last.__dict__, "age_seconds": round((now - parse_utc(last.acquired_at)).total_seconds())}
    if output is Output.JSON:
        print_json(data)
        return
    console = out()
    console.print(f"lock '{key}' ({settings.backend} backend, lease TTL {data['ttl']}, minimum interval between "
                  f"automatic runs {data['min_run_interval']})", markup=False)
    if last is None:
        console.print("  never taken", markup=False)
    else:
        state = "HELD" if current is not None else "free"
        console.print(f"  {state}: last taken by run {last.run_id} of {last.holder} (pid {last.pid} on {last.host}) "
                      f"{data['lease']['age_seconds']}s ago, fencing token {last.fencing_token}, expires "
                      f"{last.expires_at}", markup=False)


def _serve_args(runbook: str, state_dir: StateDir, drill_cron: str, readiness_every: str,
                min_interval: str | None) -> list[str]:
    args = ["--runbook", str(resolve_runbook(runbook).resolve()), "--state-dir", str(state_dir.root.resolve()),
            "--drill-cron", drill_cron, "--readiness-every", readiness_every]
    return [*args, "--min-interval", min_interval] if min_interval else args


DRILL_CRON = typer.Option("0 3 * * 1", "--drill-cron", help="Cron of the drill (UTC); '' for none.")
READINESS_EVERY = typer.Option("30m", "--readiness-every", help="Readiness interval; 0 for none.")
MIN_INTERVAL = typer.Option(None, "--min-interval", help="Minimum time between automatic runs (e.g. 6h).")


@handle_errors
def schedule_serve_cmd(
    runbook: str = typer.Option(..., "--runbook", help="Runbook name or path."),
    drill_cron: str = DRILL_CRON,
    readiness_every: str = READINESS_EVERY,
    min_interval: str = MIN_INTERVAL,
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Register drill/failover/failback/readiness deployments on PREFECT_API_URL and serve them."""
    if not server_mode():
        err().print("error: PREFECT_API_URL is not set; schedules only fire on a Prefect server\n"
                    "  hint: `dr schedule server` (or `make drill-server`) starts one locally", markup=False)
        raise typer.Exit(EXIT_USAGE)
    parse_duration(readiness_every)
    from dr_engine.flows.deployments import main as serve_main

    serve_main(["serve", *_serve_args(runbook, state_dir, drill_cron, readiness_every, min_interval)])


@handle_errors
def schedule_server_cmd(
    runbook: str = typer.Option(..., "--runbook", help="Runbook name or path."),
    port: int = typer.Option(4200, "--port", help="Port of the Prefect server (127.0.0.1)."),
    home: Path = typer.Option(None, "--prefect-home",
                              help="PREFECT_HOME of the server (default <state-dir>/prefect-server)."),
    drill_cron: str = DRILL_CRON,
    readiness_every: str = READINESS_EVERY,
    min_interval: str = MIN_INTERVAL,
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Start a local `prefect server` and a serve runner with a cron-scheduled drill; Ctrl-C stops both."""
    from dr_engine.flows.server import PrefectServer, ServeRunner

    server_home = home or state_dir.root / "prefect-server"
    server = PrefectServer(server_home, port=port)
    runner = ServeRunner("", _serve_args(runbook, state_dir, drill_cron, readiness_every, min_interval),
                         log_path=server_home / "runner.log")
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        stopping.append(signum)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        console = err()
        console.print(f"starting prefect server on 127.0.0.1:{port} (home {server_home}) ...", markup=False)
        api = server.start()
        runner.api_url = api
        runner.start()
        console.print(f"Prefect API {api} (UI: http://127.0.0.1:{port}); drill cron '{drill_cron}', readiness "
                      f"every {readiness_every}; runner log {runner.log_path}. Ctrl-C stops both.", markup=False)
        console.print(f"trigger a drill now: PREFECT_API_URL={api} prefect deployment run "
                      f"'dr-scheduled-run/{resolve_runbook(runbook).stem}-drill'", markup=False)
        while not stopping and runner.process is not None and runner.process.poll() is None:
            time.sleep(0.5)
        if runner.process is not None and runner.process.poll() not in (None, 0) and not stopping:
            console.print(f"the serve runner exited ({runner.process.returncode}); see {runner.log_path}",
                          markup=False)
            raise typer.Exit(EXIT_FAILED)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        server.stop()
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("readiness")(readiness_cmd)
    lock_app = typer.Typer(help="The failover lock.", no_args_is_help=True)
    lock_app.command("show")(lock_show_cmd)
    app.add_typer(lock_app, name="lock")
    schedule_app = typer.Typer(help="Scheduled drills and readiness on a Prefect server.", no_args_is_help=True)
    schedule_app.command("serve")(schedule_serve_cmd)
    schedule_app.command("server")(schedule_server_cmd)
    app.add_typer(schedule_app, name="schedule")


__all__ = ["register"]
