"""Engine overhead per step and parallel efficiency, next to the same work as a bare Prefect flow.

Figures (seconds unless named otherwise):

- ``overhead_per_step``: 100 sequential no-op steps; (wall time - sum of step durations) / 100.
  Measured for the engine alone (in-process executor), the engine on Prefect (the real
  failover flow, one task per step) and a bare Prefect flow of 100 no-op tasks. The engine's
  cost includes two fsync'd audit events and two atomic run.json rewrites per step.
- ``parallel``: 50 independent 0.2 s steps at concurrency 10; ``efficiency`` = wall / ideal
  (ideal = 50 * 0.2 / 10 = 1.0 s; 1.0 is perfect).

Prefect's embedded server is started (and warmed up) before anything is timed. Writes
bench/out/engine.json. ``--quick`` uses 20 steps / 20 parallel steps.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "engine.json"
sys.path.insert(0, str(ROOT))

from dr_engine.flows.settings import configure  # noqa: E402 - must run before Prefect is imported


def _chain(count: int) -> str:
    steps = ["- id: s0\n  action: fake.noop"]
    steps += [f"- id: s{i}\n  action: fake.noop\n  after: [s{i - 1}]" for i in range(1, count)]
    steps.append(f"- id: healthy\n  action: fake.check_health\n  after: [s{count - 1}]")
    return "\n".join(steps)


def _fan(count: int, seconds: float) -> str:
    steps = [f"- id: p{i}\n  action: fake.noop\n  with: {{seconds: {seconds}}}" for i in range(count)]
    steps.append("- id: healthy\n  action: fake.check_health\n  after: [" + ", ".join(f"p{i}" for i in range(count))
                 + "]")
    return "\n".join(steps)


def _overhead(record: Any, wall: float) -> float:
    durations = sum(s.duration_seconds or 0.0 for s in record.steps)
    return (wall - durations) / len(record.steps)


def _engine_figures(folder: Path, steps: int, fan: int, quick: bool) -> dict[str, Any]:
    import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
    from dr_engine.engine.run import RunOptions, start_run
    from dr_engine.flows.failover import launch
    from dr_engine.lock.base import NullLock
    from dr_engine.testing.runbooks import plan_from_steps

    chain = plan_from_steps(folder / "chain", _chain(steps - 1), name="bench-chain")
    fan_plan = plan_from_steps(folder / "fan", _fan(fan, 0.2), name="bench-fan")
    state = folder / "state"
    launch(plan_from_steps(folder / "warm", "- id: healthy\n  action: fake.check_health", name="warm"),
           RunOptions(state_dir=state))  # starts the embedded server; not timed

    start = time.perf_counter()
    inline = start_run(chain, RunOptions(state_dir=state, concurrency=1, lock=NullLock()))
    inline_wall = time.perf_counter() - start

    start = time.perf_counter()
    prefect_chain = launch(chain, RunOptions(state_dir=state, concurrency=1))
    prefect_wall = time.perf_counter() - start

    start = time.perf_counter()
    fanned = launch(fan_plan, RunOptions(state_dir=state, concurrency=10))
    fan_wall = time.perf_counter() - start
    ideal = fan * 0.2 / 10
    return {
        "engine_inline": {"steps": len(inline.steps), "wall": inline_wall,
                          "overhead_per_step": _overhead(inline, inline_wall)},
        "engine_prefect": {"steps": len(prefect_chain.steps), "wall": prefect_wall,
                           "overhead_per_step": _overhead(prefect_chain, prefect_wall)},
        "engine_parallel": {"steps": fan, "concurrency": 10, "wall": fan_wall, "ideal": ideal,
                            "efficiency": fan_wall / ideal, "status": fanned.status.value},
    }


def _bare_prefect(steps: int, fan: int) -> dict[str, Any]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    durations: list[float] = []

    @task(cache_policy=NO_CACHE, persist_result=False)
    def noop() -> None:
        start = time.perf_counter()
        durations.append(time.perf_counter() - start)

    @task(cache_policy=NO_CACHE, persist_result=False)
    def sleep_02() -> None:
        time.sleep(0.2)

    @flow(persist_result=False)
    def chain() -> None:
        for _ in range(steps):
            noop.submit().result()

    @flow(persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=10))
    def fanned() -> None:
        futures = [sleep_02.submit() for _ in range(fan)]
        for future in futures:
            future.result()

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        chain()
        chain_wall = time.perf_counter() - start
        start = time.perf_counter()
        fanned()
        fan_wall = time.perf_counter() - start
    ideal = fan * 0.2 / 10
    return {
        "bare_prefect": {"steps": steps, "wall": chain_wall,
                         "overhead_per_step": (chain_wall - sum(durations)) / steps},
        "bare_prefect_parallel": {"steps": fan, "concurrency": 10, "wall": fan_wall, "ideal": ideal,
                                  "efficiency": fan_wall / ideal},
    }


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; return the figures and write bench/out/engine.json."""
    steps, fan = (20, 20) if quick else (100, 50)
    with tempfile.TemporaryDirectory(prefix="dr-bench-engine-") as tmp:
        folder = Path(tmp)
        configure(folder / "state", quiet_console=True)
        results: dict[str, Any] = {"quick": quick}
        results.update(_engine_figures(folder, steps, fan, quick))
        results.update(_bare_prefect(steps, fan))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
