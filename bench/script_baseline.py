"""Baseline: the demo failover's operations done by a plain sequential script, no engine.

The same world and outage as ``bench/demo.py`` (real PostgreSQL pair with synchronous
replication, ledger apps, BIND, moto, a load generator, the source region frozen with SIGSTOP),
then the operations of ``runbooks/core-banking.yaml`` called one after another from a plain
loop, as a hand-written script would: the same action code (lag check, stop, promote, writable
check, terraform apply, ASG scale, alarms, HTTP probes, RFC 2136 update, DNS check, reconcile),
but no Prefect, no audit log, no run record, no lock, no retries and no parallelism.

``rto_s`` is outage -> public health verified (the runbook's RTO stop point), comparable with
``demo.median.rto_s``. Writes bench/out/script_baseline.json. ``--quick`` runs once, the full
run three times (median reported).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "script_baseline.json"
sys.path.insert(0, str(REPO))


def run_once() -> dict[str, Any]:
    """One scripted failover on a fresh world; returns its timings."""
    from dr_engine.actions.base import StepContext
    from dr_engine.clock import Deadline, SystemClock
    from dr_engine.config.bindings import Bindings, bind_params, read_secret
    from dr_engine.config.loader import load_runbook
    from dr_engine.model import RunMode
    from dr_engine.model.location import RunbookLocation
    from dr_engine.planning.plan import build_plan
    from dr_engine.world import World, WorldConfig

    root = Path(tempfile.mkdtemp(prefix="dr-bench-script-"))
    root.chmod(0o755)
    world = World(WorldConfig.for_tests(), root=root)
    world.start()
    try:
        load = world.start_load()
        end = time.monotonic() + 30
        while len(load.acked_seqs()) < 10 and time.monotonic() < end:
            time.sleep(0.02)
        loaded = load_runbook(REPO / "runbooks" / "core-banking.yaml", regions_dir=world.regions_dir)
        stop_point = build_plan(loaded).rto_stop
        clock = SystemClock()
        world.fail_region(world.config.source)
        incident = time.perf_counter()
        outputs: dict[str, dict[str, str]] = {}
        steps: dict[str, float] = {}
        rto = None
        # File order is a valid order for this runbook: every `after:` names an earlier step.
        for step in loaded.runbook.steps:
            action_cls = loaded.actions[step.id]
            bindings = Bindings(loaded.source, loaded.target, loaded.runbook.runbook, "script", RunMode.FAILOVER,
                                outputs)
            params = bind_params(action_cls.Params, step.with_, bindings, step.id)
            timeout = step.timeout.total_seconds() if step.timeout else 600.0
            ctx = StepContext(run_id="script", step_id=step.id, mode=RunMode.FAILOVER, source=loaded.source,
                              target=loaded.target, objectives=loaded.runbook.objectives,
                              deadline=Deadline(clock, timeout), clock=clock,
                              log=logging.getLogger(f"bench.script.{step.id}"), state_dir=root / "state",
                              allow_data_loss=False, attempt=1, outputs=outputs, secret_resolver=read_secret,
                              runbook_location=RunbookLocation(repo_root=REPO), run_dir=root / "state")
            start = time.perf_counter()
            result = action_cls().run(params, ctx)
            steps[step.id] = round(time.perf_counter() - start, 4)
            outputs[step.id] = dict(result.outputs)
            if step.id == stop_point:
                rto = time.perf_counter() - incident
        total = time.perf_counter() - incident
    finally:
        world.stop_load()
        world.stop()
    assert rto is not None
    return {"rto_s": round(rto, 4), "total_s": round(total, 4), "steps_sum_s": round(sum(steps.values()), 4),
            "steps": steps}


def main(quick: bool = False) -> dict[str, Any]:
    """Run the scripted failover once (quick) or three times; write bench/out/script_baseline.json."""
    runs = [run_once() for _ in range(1 if quick else 3)]
    result: dict[str, Any] = {
        "runs": len(runs),
        "median": {k: round(statistics.median(r[k] for r in runs), 4) for k in ("rto_s", "total_s", "steps_sum_s")},
        "each": runs,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
