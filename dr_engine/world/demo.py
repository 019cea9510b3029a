"""The demo scenario: a real failover of the core-banking ledger inside the embedded world.

1. start the world (PostgreSQL pair, ledger apps, BIND, moto seeded with the AWS half and
   the Terraform state buckets) and warm up the run engine;
2. write transfers continuously through the public name;
3. (async replication only) cut the replication link, so the standby falls behind;
4. freeze the source region (SIGSTOP): the incident starts;
5. run ``runbooks/core-banking.yaml`` through the given runner (the CLI passes the real
   Prefect flow with live progress): data, the Terraform stack and pilot-light capacity in the
   target region, DNS, health;
6. keep writing for a moment (the load follows DNS to the recovery region), then count the
   acknowledged writes missing on the new primary independently of the runbook;
7. tear the world down unless asked to keep it.

The scenario is written once here; ``dr demo`` and ``bench/demo.py`` only render it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dr_engine.evidence.statedir import StateDir
from dr_engine.world.core import DEFAULT_ROOT, World, WorldConfig, require_moto

#: Providers the world serves without moto; any other action (AWS, Terraform's S3 state) needs it.
LOCAL_PROVIDERS = frozenset({"postgres", "http", "dns", "control", "shell"})

#: ``runner(plan, options) -> exit code``; it fills ``options.run_id``.
Runner = Callable[[Any, Any], int]


@dataclass
class DemoSettings:
    """What the demo does."""

    state_dir: StateDir = field(default_factory=lambda: StateDir(".dr"))
    root: Path = DEFAULT_ROOT
    runbook: Path = Path("runbooks/core-banking.yaml")
    synchronous: bool = True
    allow_data_loss: bool = False
    keep: bool = False
    #: Fresh loopback addresses and free ports instead of the fixed demo ones (tests).
    auto_ports: bool = False
    moto: bool = True
    load_before: float = 1.5
    load_after: float = 1.0

    def __post_init__(self) -> None:
        self.state_dir = StateDir.of(self.state_dir)  # a path from a script or a test is accepted


@dataclass
class DemoOutcome:
    """What happened, for rendering and benchmarks."""

    exit_code: int
    record: Any = None
    world_start_seconds: float = 0.0
    warmup_seconds: float = 0.0
    acked_before_outage: int = 0
    acked_by_region: dict[str, int] = field(default_factory=dict)
    lost_independent: int | None = None
    reports: list[Path] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)


def run_demo(settings: DemoSettings, runner: Runner, say: Callable[[str], None],
             warm_up: Callable[[], float] | None = None) -> DemoOutcome:
    """Run the scenario; ``say`` narrates, ``runner`` executes the plan."""
    from dr_engine.config.loader import load_runbook
    from dr_engine.engine.run import RunOptions
    from dr_engine.planning.plan import build_plan
    from dr_engine.world.ledger_app import present_ack_seqs

    plan_check = build_plan(load_runbook(settings.runbook))  # fail fast on a broken runbook
    needs_aws = sorted({s.step.action for s in plan_check.steps if s.step.action.split(".")[0] not in LOCAL_PROVIDERS})
    if needs_aws and not settings.moto:
        from dr_engine.world.core import WorldError

        raise WorldError(f"{settings.runbook} has steps that need the local AWS endpoint ({', '.join(needs_aws)})",
                         hint="run the demo without --no-moto")
    del plan_check
    if settings.moto:  # before the narration: nothing starts without the world extra
        require_moto(offer_no_moto=not needs_aws)
    config = (WorldConfig.for_tests(synchronous=settings.synchronous, moto=settings.moto) if settings.auto_ports
              else WorldConfig(synchronous=settings.synchronous, moto=settings.moto))
    world = World(config, root=settings.root, keep_root=settings.keep)
    src, dst = config.source, config.target
    mode = "synchronous" if config.synchronous else "ASYNCHRONOUS"
    say(f"Starting the embedded world: {src} on {config.source_addr}, {dst} on {config.target_addr}, "
        f"{mode} replication ...")
    started = time.monotonic()
    world.start()
    outcome = DemoOutcome(exit_code=1, world_start_seconds=time.monotonic() - started,
                          endpoints=world.endpoints().to_dict())
    try:
        ends = world.endpoints()
        say(f"  world ready in {outcome.world_start_seconds:.1f}s: PostgreSQL {ends.regions[src].pg_dsn} -> "
            f"{ends.regions[dst].pg_dsn}; {ends.public_name} -> {config.source_addr} at DNS {ends.dns_server}")
        if world.moto_endpoint_url is not None:
            say(f"  AWS (moto) at {world.moto_endpoint_url}: pilot-light group "
                f"{world.aws_resources.get('group', '-')} at 0 in {dst}, Terraform state in "
                f"s3://{world.aws_resources.get(f'state_bucket_{dst}', '-')}")
        if warm_up is not None:
            outcome.warmup_seconds = warm_up()
            say(f"  run engine ready in {outcome.warmup_seconds:.1f}s (before the outage, not part of the RTO)")
        load = world.start_load()
        say(f"Writing transfers through http://{ends.public_name}:{config.app_port} ...")
        _wait_for(lambda: len(load.acked_seqs()) >= 10, 30, "the first acknowledged transfers")
        time.sleep(settings.load_before)
        if not config.synchronous:
            assert world.pg is not None
            world.pg.cut_replication()
            say(f"  the replication link to {dst} fails; the primary keeps acknowledging writes ...")
            time.sleep(settings.load_before)
        outcome.acked_before_outage = len(load.acked_seqs())
        pids = world.fail_region(src)
        incident = datetime.now(UTC)
        say(f"OUTAGE: region {src} frozen (SIGSTOP of {len(pids)} processes) after "
            f"{outcome.acked_before_outage} acknowledged transfers")

        plan = build_plan(load_runbook(settings.runbook, regions_dir=world.regions_dir))
        options = RunOptions(state_dir=settings.state_dir, incident_start=incident,
                             allow_data_loss=settings.allow_data_loss, reason="dr demo: region outage",
                             triggered_by="dr demo")
        say(f"Failing over with runbook {settings.runbook} ...")
        outcome.exit_code = runner(plan, options)
        if options.run_id is not None:
            outcome.record = settings.state_dir.load(options.run_id)
        time.sleep(settings.load_after)
        stats = load.stop()
        outcome.acked_by_region = dict(stats.by_region)
        record = outcome.record
        if record is not None and record.status.value == "succeeded":
            acked = [a.seq for a in load.acks() if a.region == src]
            present = present_ack_seqs(ends.dsn(dst), acked)
            outcome.lost_independent = len(set(acked) - present)
        if record is not None:
            outcome.reports = _reports(settings.state_dir.run_dir(record.run_id))
    finally:
        world.stop_load()
        if settings.keep:
            say(f"World kept running in {world.root} (stop it with `dr world down`)")
        else:
            world.stop()
    return outcome


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    from dr_engine.world.core import WorldError

    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise WorldError(f"timed out waiting for {what}", hint="see the logs under the world's root")
        time.sleep(0.05)


def _reports(run_dir: Path) -> list[Path]:
    """The full compliance report of the demo run: HTML and PDF for people, Markdown and JSON."""
    from dr_engine.report.publish import write_run_reports  # lazy: the renderers pull in matplotlib

    return write_run_reports(run_dir, ("html", "pdf", "md", "json"))


__all__ = ["LOCAL_PROVIDERS", "DemoOutcome", "DemoSettings", "Runner", "run_demo"]
