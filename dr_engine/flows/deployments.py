"""Prefect deployments of dr-engine: scheduled drills, on-demand failover/failback, readiness.

``python -m dr_engine.flows.deployments serve --runbook NAME [--drill-cron CRON] [--readiness-every 30m]``
registers, for one runbook, the deployments

- ``NAME-drill``     the runbook in drill mode, on the cron schedule (default Mondays 03:00 UTC);
- ``NAME-failover``  and ``NAME-failback``: no schedule; started from the UI, the API or an
  automation (no typed confirmation: whoever may run a deployment may fail over);
- ``readiness``      the readiness flow over every runbook, every N minutes (default 30);

and serves them from this process (``flow.serve``-style runner) until stopped. Against an
existing Prefect deployment with work pools, use ``prefect.yaml`` instead (see the docs).

Runs started here are *automatic*: they honour the minimum interval between runs
(:mod:`dr_engine.engine.automatic`) and, like every run, the failover lock. A run skipped for either
reason ends Cancelled, naming the holder; a run that did not succeed ends Failed.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, serve
from prefect.client.schemas.objects import State
from prefect.runtime import deployment as current_deployment
from prefect.states import Cancelled, Completed, Failed

from dr_engine.config.runbooks import resolve_runbook
from dr_engine.engine.automatic import prepare_automatic_run
from dr_engine.errors import DrError, LockHeld
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.failover import launch
from dr_engine.flows.readiness import readiness_flow
from dr_engine.model import RunMode, parse_duration

DEFAULT_DRILL_CRON = "0 3 * * 1"


def _triggered_by() -> str:
    name = current_deployment.name
    return f"prefect-deployment:{name}" if name else "prefect-flow"


@flow(name="dr-scheduled-run", persist_result=False, log_prints=False, validate_parameters=False)
def scheduled_run_flow(runbook: str, mode: str = "drill", state_dir: str = ".dr", regions_dir: str | None = None,
                       min_interval: str | None = None, reason: str = "") -> State[Any]:
    """Start an automatic drill, failover or failback of ``runbook`` (a subflow runs the steps)."""
    try:
        plan, options = prepare_automatic_run(runbook, mode=RunMode(mode), state_dir=Path(state_dir),
                                              regions_dir=Path(regions_dir) if regions_dir else None,
                                              min_interval=min_interval, triggered_by=_triggered_by(),
                                              reason=reason or f"scheduled {mode}")
        record = launch(plan, options)
    except LockHeld as exc:
        return Cancelled(message=f"skipped: {exc}")
    except DrError as exc:
        return Failed(message=str(exc))
    data = {"run_id": record.run_id, "status": record.status.value, "state_dir": str(StateDir.of(state_dir).root)}
    if record.status is RunStatus.SUCCEEDED:
        return Completed(message=f"{mode} run {record.run_id} succeeded", data=data)
    return Failed(message=f"{mode} run {record.run_id} {record.status.value}", data=data)


def build_deployments(runbook: str, *, state_dir: str, regions_dir: str | None = None,
                      drill_cron: str | None = DEFAULT_DRILL_CRON, readiness_every: timedelta | None = None,
                      runbooks_dir: str = "runbooks", min_interval: str | None = None) -> list[Any]:
    """The runner deployments of ``runbook`` (plus readiness when ``readiness_every`` is set)."""
    name = Path(runbook).stem
    common = {"runbook": runbook, "state_dir": state_dir, "regions_dir": regions_dir, "min_interval": min_interval}
    tags = ["dr-engine", name]
    deployments = [
        scheduled_run_flow.to_deployment(name=f"{name}-drill", parameters={**common, "mode": "drill"},
                                         cron=drill_cron, tags=[*tags, "drill"],
                                         description=f"Scheduled DR drill of {name}"),
        scheduled_run_flow.to_deployment(name=f"{name}-failover", parameters={**common, "mode": "failover"},
                                         tags=[*tags, "failover"], description=f"Fail {name} over (no schedule)"),
        scheduled_run_flow.to_deployment(name=f"{name}-failback", parameters={**common, "mode": "failback"},
                                         tags=[*tags, "failback"], description=f"Fail {name} back (no schedule)"),
    ]
    if readiness_every is not None:
        deployments.append(readiness_flow.to_deployment(
            name="readiness", interval=readiness_every, tags=["dr-engine", "readiness"],
            parameters={"state_dir": state_dir, "runbooks_dir": runbooks_dir, "regions_dir": regions_dir},
            description="Read-only pre-flight of every runbook"))
    return deployments


def main(argv: list[str] | None = None) -> None:
    """``python -m dr_engine.flows.deployments serve ...``."""
    parser = argparse.ArgumentParser(prog="python -m dr_engine.flows.deployments")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("serve", help="register the deployments of a runbook and serve them")
    cmd.add_argument("--runbook", required=True, help="runbook name (runbooks/NAME.yaml) or path")
    cmd.add_argument("--state-dir", default=".dr")
    cmd.add_argument("--regions-dir", default=None)
    cmd.add_argument("--runbooks-dir", default="runbooks")
    cmd.add_argument("--drill-cron", default=DEFAULT_DRILL_CRON, help="cron of the drill ('' for none)")
    cmd.add_argument("--readiness-every", default="30m", help="readiness interval ('0' for none)")
    cmd.add_argument("--min-interval", default=None, help="minimum time between automatic runs, e.g. 6h")
    args = parser.parse_args(argv)
    every = parse_duration(args.readiness_every)
    # Absolute paths: flow runs may start in another working directory.
    regions = str(Path(args.regions_dir).resolve()) if args.regions_dir else None
    deployments = build_deployments(
        str(resolve_runbook(args.runbook).resolve()), state_dir=str(Path(args.state_dir).resolve()),
        regions_dir=regions,
        drill_cron=args.drill_cron or None, readiness_every=every if every > timedelta(0) else None,
        runbooks_dir=str(Path(args.runbooks_dir).resolve()), min_interval=args.min_interval)
    serve(*deployments, print_starting_message=True)


if __name__ == "__main__":
    main()
