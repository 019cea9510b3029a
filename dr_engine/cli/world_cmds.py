"""``dr world up/down/status/fail/restore`` and ``dr demo``: the embedded two-region world."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import typer

from dr_engine.cli.common import EXIT_OK, Output, err, handle_errors, out, print_json, state_dir_option
from dr_engine.evidence.statedir import StateDir
from dr_engine.world.core import DEFAULT_ROOT, World, WorldConfig, WorldError, down, signal_region, status

world_app = typer.Typer(help="Start, inspect and stop the embedded local two-region world.", no_args_is_help=True)


#: Shared by every world command (an OptionInfo can be reused as a default).
ROOT_OPTION: Any = typer.Option(DEFAULT_ROOT, "--root", envvar="DR_WORLD_ROOT", help="Where the world lives.")


@world_app.command("up")
@handle_errors
def up_cmd(
    async_replication: bool = typer.Option(False, "--async-replication", help="Asynchronous streaming replication."),
    no_moto: bool = typer.Option(False, "--no-moto", help="Do not start the local AWS endpoint."),
    auto_ports: bool = typer.Option(False, "--auto-ports", hidden=True,
                                    help="Own loopback addresses and free ports (for tests next to a demo)."),
    root: Path = ROOT_OPTION,
) -> None:
    """Start the world in the background (processes keep running; stop with `dr world down`)."""
    config = (WorldConfig.for_tests(synchronous=not async_replication, moto=not no_moto) if auto_ports
              else WorldConfig(synchronous=not async_replication, moto=not no_moto))
    world = World(config, root=root, keep_root=True)
    world.start()
    ends = world.endpoints()
    console = out()
    console.print(f"world up in {root}", markup=False)
    for name, region in ends.regions.items():
        console.print(f"  {name:<10} {region.addr:<10} postgres {region.pg_dsn}  app {region.app_url}", markup=False)
    console.print(f"  dns        {ends.dns_server}  zone {ends.zone}  {ends.public_name} (TSIG key "
                  f"{ends.tsig_key_name}, secret in {root / 'tsig.key'})", markup=False)
    if world.config.moto:
        seeded = world.aws_resources
        state = ", ".join(v for k, v in sorted(seeded.items()) if k.startswith("state_bucket_"))
        console.print(f"  aws        {ends.moto_endpoint_url}  (moto: zone bank.example, pilot-light group "
                      f"{seeded.get('group', '-')}, alarms, buckets, table, secret, RDS replica; "
                      f"Terraform state buckets {state or '-'})", markup=False)
    console.print(f"  regions    {ends.regions_dir}", markup=False)
    if root == DEFAULT_ROOT and not auto_ports:  # the shipped regions/*.yaml describe exactly this world
        console.print("try: dr world fail us-east-1 && dr failover core-banking --yes "
                      "&& dr failover core-banking-aws --yes", markup=False)


@world_app.command("down")
@handle_errors
def down_cmd(root: Path = ROOT_OPTION) -> None:
    """Stop every process of the world by its recorded PID and remove its directory."""
    stopped = down(root)
    out().print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", markup=False)


@world_app.command("status")
@handle_errors
def status_cmd(root: Path = ROOT_OPTION,
               output: Output = typer.Option(Output.TEXT, "--output", "-o", help="text or json")) -> None:
    """Show what runs in the world. Exit 1 when nothing runs."""
    info = status(root)
    if output is Output.JSON:
        print_json(info)
    else:
        console = out()
        if not info.get("parts"):
            console.print(f"no world in {root}", markup=False)
        for name, part in (info.get("parts") or {}).items():
            state = "up" if part["alive"] else "DOWN"
            console.print(f"  {name:<22} {state:<5} pid {part['pid'] or '-':<8} {part['address'] or ''}",
                          markup=False)
        if info.get("failed_regions"):
            console.print(f"  failed (frozen) regions: {', '.join(info['failed_regions'])}", markup=False)
    if not info.get("running"):
        raise typer.Exit(1)


@world_app.command("fail")
@handle_errors
def fail_cmd(region: str = typer.Argument(..., help="Region to take down (e.g. us-east-1)."),
             root: Path = ROOT_OPTION) -> None:
    """Simulate a region outage: freeze (SIGSTOP) the region's processes."""
    pids = signal_region(root, region, signal.SIGSTOP)
    out().print(f"region {region} frozen ({len(pids)} processes)", markup=False)


@world_app.command("restore")
@handle_errors
def restore_cmd(region: str = typer.Argument(..., help="Region to bring back."), root: Path = ROOT_OPTION) -> None:
    """Continue (SIGCONT) the processes of a region frozen by `dr world fail`."""
    pids = signal_region(root, region, signal.SIGCONT)
    out().print(f"region {region} continued ({len(pids)} processes)", markup=False)


@handle_errors
def demo_cmd(
    keep: bool = typer.Option(False, "--keep", help="Leave the world running afterwards (`dr world down` stops it)."),
    async_replication: bool = typer.Option(False, "--async-replication",
                                           help="Asynchronous replication: the lag gate refuses (RPO 0) "
                                                "unless --allow-data-loss; then a non-zero RPO is measured."),
    allow_data_loss: bool = typer.Option(False, "--allow-data-loss", help="Let the failover proceed over the RPO "
                                                                          "(recorded in the audit log)."),
    auto_ports: bool = typer.Option(False, "--auto-ports", hidden=True,
                                    help="Own loopback addresses and free ports (for tests next to a demo)."),
    no_moto: bool = typer.Option(False, "--no-moto",
                                 help="Do not start the local AWS endpoint (the core-banking runbook needs it)."),
    root: Path = ROOT_OPTION,
    state_dir: StateDir = state_dir_option(),
) -> None:
    """Fail a core-banking ledger over for real: world up, load, region outage, runbook, RTO/RPO."""
    from dr_engine.cli.run_cmds import execute_and_render
    from dr_engine.config.runbooks import resolve_runbook
    from dr_engine.flows.settings import configure
    from dr_engine.world.demo import DemoSettings, run_demo

    console = err()

    def say(text: str) -> None:
        console.print(text, markup=False)

    def warm() -> float:
        configure(state_dir, quiet_console=True)
        from dr_engine.flows.warmup import warm_up

        seconds = warm_up()
        import dr_engine.flows.failover  # noqa: F401 - imported now so the failover pays no import time
        return seconds

    if auto_ports and root == DEFAULT_ROOT:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="dr-demo-"))
    settings = DemoSettings(state_dir=state_dir, root=root, runbook=resolve_runbook("core-banking"),
                            synchronous=not async_replication, allow_data_loss=allow_data_loss, keep=keep,
                            auto_ports=auto_ports, moto=not no_moto)
    outcome = run_demo(settings, execute_and_render, say, warm_up=warm)
    record = outcome.record
    console.print("", markup=False)
    by_region = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.acked_by_region.items())) or "none"
    say(f"Load: {sum(outcome.acked_by_region.values())} transfers acknowledged ({by_region}); "
        f"{outcome.acked_before_outage} before the outage")
    if outcome.lost_independent is not None:
        say(f"Independent check: {outcome.lost_independent} acknowledged transfer(s) of the old primary missing "
            "on the new one")
    if record is not None and record.status.value == "halted" and record.halted_at_step == "check-lag":
        say("The lag gate refused to promote a standby that is behind: nothing was changed.\n"
            "  To fail over anyway and accept the loss (audited): dr demo --async-replication --allow-data-loss")
    for path in outcome.reports:
        say(f"  report: {path}")
    if record is not None and outcome.exit_code == EXIT_OK:
        summary = {"run_id": record.run_id, "rto_seconds": record.rto_seconds, "rows_lost": record.rows_lost}
        say("summary: " + json.dumps(summary))
    raise typer.Exit(outcome.exit_code)


def register(app: typer.Typer) -> None:
    """Add ``dr world ...`` and ``dr demo``."""
    app.add_typer(world_app, name="world")
    app.command("demo")(demo_cmd)


__all__ = ["WorldError", "register"]
