"""Parallel efficiency: 50 and 500 independent steps, the engine on Prefect vs a bare Prefect flow.

Each step sleeps ``STEP_S`` (no CPU); both run at concurrency 10 in the same process, the
embedded Prefect server already warm. ``efficiency`` = wall / ideal, ideal = steps * STEP_S / 10
(1.0 is perfect; the rest is scheduling and, for the engine, two fsync'd audit events and two
atomic run-record rewrites per step). Writes bench/out/parallel.json. ``--quick``: 50 steps only.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "parallel.json"
sys.path.insert(0, str(ROOT))

from dr_engine.flows.settings import configure  # noqa: E402 - must run before Prefect is imported

CONCURRENCY = 10
STEP_S = 0.2


def _fan(count: int) -> str:
    steps = [f"- id: p{i}\n  action: fake.noop\n  with: {{seconds: {STEP_S}}}" for i in range(count)]
    steps.append("- id: healthy\n  action: fake.check_health\n  after: [" + ", ".join(f"p{i}" for i in range(count))
                 + "]")
    return "\n".join(steps)


def _engine(folder: Path, count: int) -> dict[str, Any]:
    import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
    from dr_engine.engine.run import RunOptions
    from dr_engine.flows.failover import launch
    from dr_engine.testing.runbooks import plan_from_steps

    plan = plan_from_steps(folder / f"fan{count}", _fan(count), name=f"bench-fan-{count}")
    start = time.perf_counter()
    record = launch(plan, RunOptions(state_dir=folder / "state", concurrency=CONCURRENCY))
    wall = time.perf_counter() - start
    ideal = count * STEP_S / CONCURRENCY
    return {"wall_s": round(wall, 4), "ideal_s": ideal, "efficiency": round(wall / ideal, 4),
            "status": record.status.value}


def _bare(count: int) -> dict[str, Any]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    @task(cache_policy=NO_CACHE, persist_result=False)
    def sleep_step() -> None:
        time.sleep(STEP_S)

    @flow(persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY))
    def fanned() -> None:
        for future in [sleep_step.submit() for _ in range(count)]:
            future.result()

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        fanned()
        wall = time.perf_counter() - start
    ideal = count * STEP_S / CONCURRENCY
    return {"wall_s": round(wall, 4), "ideal_s": ideal, "efficiency": round(wall / ideal, 4)}


def main(quick: bool = False) -> dict[str, Any]:
    """Run both sizes (quick: 50 only); return the figures and write bench/out/parallel.json."""
    sizes = (50,) if quick else (50, 500)
    results: dict[str, Any] = {"concurrency": CONCURRENCY, "step_s": STEP_S}
    with tempfile.TemporaryDirectory(prefix="dr-bench-parallel-") as tmp:
        folder = Path(tmp)
        configure(folder / "state", quiet_console=True)
        _bare(10)  # starts and warms the embedded server; not timed
        for count in sizes:
            results[f"steps_{count}"] = {"engine_prefect": _engine(folder, count), "bare_prefect": _bare(count)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
