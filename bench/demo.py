"""Benchmark: the demo failover's RTO split into engine overhead vs irreducible work.

Runs the ``dr demo`` scenario (real PostgreSQL pair, ledger apps, BIND, load, SIGSTOP outage)
through the real Prefect flow, on fresh loopback addresses and free ports so it can run next
to a demo, and splits the measured RTO (incident -> public health verified) into:

- ``launch``: incident -> run started (plan already built; Prefect flow-run creation);
- per step, the time inside the action, grouped: ``lag_check``, ``stop`` (fence), ``promote``,
  ``verify_db``, ``stack`` (Terraform state check and apply), ``capacity`` (Auto Scaling),
  ``dns_update``, ``probes`` (HTTP/DNS/alarm checks, including their designed pauses between
  consecutive probes); the irreducible work is the wall time during which at least one action
  ran (steps overlap);
- ``between_steps``: the rest, i.e. the engine's own time between steps (task submission,
  record/audit writes, Prefect task bookkeeping).

Writes bench/out/demo.json and returns the figures. ``--quick`` runs once; the full run three
times and reports each run plus the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "demo.json"
GROUPS = {"postgres.check_lag": "lag_check", "postgres.fence": "stop", "postgres.promote": "promote",
          "postgres.verify_writable": "verify_db", "dns.shift": "dns_update", "http.verify": "probes",
          "dns.verify": "probes", "terraform.check_state": "stack", "terraform.apply": "stack",
          "autoscaling.scale": "capacity", "cloudwatch.verify_alarms": "probes"}


def _seconds(start: str, end: str) -> float:
    from dr_engine.clock import parse_utc

    return (parse_utc(end) - parse_utc(start)).total_seconds()


def _union_seconds(spans: list[tuple[str, str]]) -> float:
    """Total length of the union of ``(start, end)`` UTC time spans."""
    from dr_engine.clock import parse_utc

    total, end = 0.0, None
    for start, finish in sorted((parse_utc(a), parse_utc(b)) for a, b in spans):
        if end is None or start > end:
            total, end = total + (finish - start).total_seconds(), finish
        elif finish > end:
            total, end = total + (finish - end).total_seconds(), finish
    return total


def split(record: Any) -> dict[str, Any]:
    """The RTO of ``record`` split into launch, per-group step time and between-step overhead."""
    steps = {s.id: s for s in record.steps}
    stop = steps[record.rto_stop]
    assert stop.finished_at is not None and record.rto_seconds is not None
    counted = [s for s in record.steps if s.finished_at is not None and s.finished_at <= stop.finished_at]
    work: dict[str, float] = {}
    for step in counted:
        group = GROUPS.get(step.action, "other")
        work[group] = work.get(group, 0.0) + (step.duration_seconds or 0.0)
    launch = _seconds(record.incident_started_at, record.started_at)
    # Steps run in parallel (stack, capacity and promote after the fence): the irreducible work is
    # the wall time during which at least one action ran, not the sum of their durations.
    irreducible = _union_seconds([(s.started_at, s.finished_at) for s in counted if s.started_at])
    between = record.rto_seconds - launch - irreducible
    return {
        "rto_s": record.rto_seconds,
        "launch_s": round(launch, 4),
        "work_s": {k: round(v, 4) for k, v in sorted(work.items())},
        "irreducible_work_s": round(irreducible, 4),
        "between_steps_s": round(between, 4),
        "engine_overhead_s": round(launch + between, 4),
        "engine_overhead_share": round((launch + between) / record.rto_seconds, 4),
        "rows_lost": record.rows_lost,
        "steps": {s.id: s.duration_seconds for s in record.steps},
    }


def run_once(state_dir: Path) -> dict[str, Any]:
    """One demo failover; returns its split."""
    from dr_engine.flows.settings import configure

    configure(state_dir, quiet_console=True)
    from dr_engine.flows.failover import launch
    from dr_engine.flows.warmup import warm_up
    from dr_engine.world.demo import DemoSettings, run_demo

    root = Path(tempfile.mkdtemp(prefix="dr-bench-demo-"))
    root.chmod(0o755)

    def runner(plan: Any, options: Any) -> int:
        record = launch(plan, options)
        return 0 if record.status.value == "succeeded" else 1

    settings = DemoSettings(state_dir=state_dir, root=root, runbook=REPO / "runbooks" / "core-banking.yaml",
                            auto_ports=True, load_after=0.2)
    outcome = run_demo(settings, runner, lambda text: print(text, file=sys.stderr), warm_up=warm_up)
    if outcome.exit_code != 0 or outcome.record is None:
        raise RuntimeError(f"demo failover did not succeed: {outcome.record and outcome.record.error}")
    figures = split(outcome.record)
    figures["world_start_s"] = round(outcome.world_start_seconds, 3)
    figures["prefect_warmup_s"] = round(outcome.warmup_seconds, 3)
    return figures


def main(quick: bool = False) -> dict[str, Any]:
    """Run the demo failover once (quick) or three times; write bench/out/demo.json."""
    os.chdir(REPO)
    state_dir = Path(tempfile.mkdtemp(prefix="dr-bench-demo-state-"))
    try:
        runs = [run_once(state_dir) for _ in range(1 if quick else 3)]
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    keys = ("rto_s", "launch_s", "irreducible_work_s", "between_steps_s", "engine_overhead_s")
    result: dict[str, Any] = {
        "runs": len(runs),
        "median": {k: round(statistics.median(r[k] for r in runs), 4) for k in keys},
        "median_work_s": {g: round(statistics.median(r["work_s"].get(g, 0.0) for r in runs), 4)
                          for g in sorted({g for r in runs for g in r["work_s"]})},
        "each": runs,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(quick=args.quick), indent=2))
