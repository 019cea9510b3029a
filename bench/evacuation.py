"""A synthetic region evacuation: 50 applications x 12 steps, wall time vs the critical-path ideal.

Five tiers of ten applications (each tier waits for the one below); every application is a
chain of 11 fake steps of ``STEP_S`` plus a final health check, so one application's ideal time
is ``11 * STEP_S`` and the evacuation's ideal (its critical path, with ten applications at a
time) is ``tiers * 11 * STEP_S``. Measured twice: the evacuation engine alone (each application a
run in this process) and through embedded Prefect (one parent flow run, a child flow run per
application; the embedded server is started before the clock starts). ``overhead`` = wall / ideal.
Writes bench/out/evacuation.json. ``--quick``: 2 tiers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "evacuation.json"
sys.path.insert(0, str(ROOT))

from dr_engine.flows.settings import configure  # noqa: E402 - must run before Prefect is imported

PER_TIER = 10
STEPS = 11
STEP_S = 0.05


def _write(folder: Path, tiers: int) -> Path:
    from dr_engine.testing.runbooks import write_runbook

    chain = [f"- id: s{i}\n  action: fake.noop\n  with: {{seconds: {STEP_S}}}" + (f"\n  after: [s{i - 1}]" if i else "")
             for i in range(STEPS)]
    chain.append(f"- id: healthy\n  action: fake.check_health\n  after: [s{STEPS - 1}]")
    apps = []
    for tier in range(tiers):
        for n in range(PER_TIER):
            name = f"app-{tier}-{n}"
            write_runbook(folder, "\n".join(chain), name=name)
            apps.append(f"  - {{name: {name}, runbook: {name}, tier: {tier}}}")
    plan = folder / "runbooks" / "evacuate-bench.yaml"
    plan.write_text("kind: evacuation\nevacuation: evacuate-bench\nsource: east\ntarget: west\n"
                    f"objectives: {{rto: 1h}}\nconcurrency: {PER_TIER}\napplications:\n" + "\n".join(apps) + "\n")
    return plan


def _figures(record: Any, wall: float, tiers: int) -> dict[str, Any]:
    ideal = tiers * STEPS * STEP_S
    own = [a.rto_seconds for a in record.applications if a.rto_seconds is not None]
    return {"status": record.status, "applications": len(record.applications), "wall_s": round(wall, 3),
            "ideal_s": round(ideal, 3), "overhead": round(wall / ideal, 3),
            "evacuation_rto_s": record.rto_seconds, "slowest_application_rto_s": max(own) if own else None}


def main(quick: bool = False) -> dict[str, Any]:
    """Run the synthetic evacuation in-process and on embedded Prefect; return the figures."""
    import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
    from dr_engine.config.evacuation import load_evacuation
    from dr_engine.engine.evacuation import EvacuationOptions, start_evacuation
    from dr_engine.planning.evacuation import build_evacuation_plan

    tiers = 2 if quick else 5
    results: dict[str, Any] = {"tiers": tiers, "per_tier": PER_TIER, "steps_per_application": STEPS + 1,
                               "step_s": STEP_S}
    with tempfile.TemporaryDirectory(prefix="dr-bench-evacuation-") as tmp:
        folder = Path(tmp)
        path = _write(folder, tiers)
        plan = build_evacuation_plan(load_evacuation(path, regions_dir=folder / "regions"))
        start = time.perf_counter()
        record = start_evacuation(plan, EvacuationOptions(state_dir=folder / "state-engine"))
        results["engine"] = _figures(record, time.perf_counter() - start, tiers)

        configure(folder / "state-prefect", quiet_console=True)
        from dr_engine.flows.evacuation import launch_evacuation
        from dr_engine.flows.warmup import warm_up

        results["embedded_server_start_s"] = round(warm_up(), 3)  # not in the timed part

        plan = build_evacuation_plan(load_evacuation(path, regions_dir=folder / "regions"))
        start = time.perf_counter()
        record = launch_evacuation(plan, EvacuationOptions(state_dir=folder / "state-prefect"))
        results["embedded_prefect"] = _figures(record, time.perf_counter() - start, tiers)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
