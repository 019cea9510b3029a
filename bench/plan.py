"""Benchmark: `dr validate` / `dr plan` on generated runbooks of 10, 1,000 and 10,000 steps.

Measures, per size:
- in-process time of loading+validating (``load_runbook``) and of planning (``build_plan``),
  best and median of several repetitions, with the peak Python memory (tracemalloc);
- a cold CLI process (``dr validate FILE`` and ``dr plan FILE -o json``): wall time and the
  child's peak RSS (``os.wait4`` rusage), i.e. what an operator or CI job really waits for.

Writes bench/out/plan.json and returns the figures. ``--quick`` runs a short version for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from dr_engine.config.loader import load_runbook
from dr_engine.planning.plan import build_plan

OUT = Path(__file__).resolve().parent / "out" / "plan.json"
DR = Path(sys.executable).with_name("dr")
SIZES = (10, 1_000, 10_000)
QUICK_SIZES = (10, 1_000)
LANES = 10

REGION = """name: {name}
aws: {{region: {aws}}}
params:
  addr: {addr}
  health_url: http://{addr}:8080/healthz
"""


def write_regions(directory: Path) -> Path:
    """Two regions the generated runbooks fail over between."""
    regions = directory / "regions"
    regions.mkdir()
    (regions / "src.yaml").write_text(REGION.format(name="src", aws="us-east-1", addr="127.0.1.1"))
    (regions / "dst.yaml").write_text(REGION.format(name="dst", aws="us-west-2", addr="127.0.2.1"))
    return regions


def generate(steps: int) -> str:
    """A runbook of ``steps`` steps in LANES parallel chains joined by one final health check.

    Steps alternate between a wait and a command that references the target region, so that
    substitution and the params pass are part of what is measured.
    """
    lines = ["runbook: generated", "source: src", "target: dst", "objectives: {rto: 15m, rpo: 0s}", "steps:"]
    body = steps - 1
    for i in range(body):
        after = f"\n    after: [s{i - LANES}]" if i >= LANES else ""
        if i % 2:
            lines.append(f"  - id: s{i}\n    action: control.wait\n"
                         f"    with: {{duration: 10ms, reason: step {i}}}{after}")
        else:
            lines.append(f"  - id: s{i}\n    action: shell.run\n    with: {{command: [echo, \"${{target.addr}}\", "
                         f"\"{i}\"]}}\n    timeout: 30s{after}")
    last = [f"s{i}" for i in range(max(0, body - LANES), body)]
    lines.append("  - id: verify-target\n    action: shell.verify\n    with: {command: [\"true\"]}"
                 + (f"\n    after: [{', '.join(last)}]" if last else ""))
    return "\n".join(lines) + "\n"


def _in_process(path: Path, regions: Path, repeat: int) -> dict[str, Any]:
    load_times: list[float] = []
    plan_times: list[float] = []
    waves = 0
    for _ in range(repeat):
        start = time.perf_counter()
        loaded = load_runbook(path, regions_dir=regions)
        middle = time.perf_counter()
        plan = build_plan(loaded)
        end = time.perf_counter()
        load_times.append(middle - start)
        plan_times.append(end - middle)
        waves = len(plan.waves)
    tracemalloc.start()
    build_plan(load_runbook(path, regions_dir=regions))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = [a + b for a, b in zip(load_times, plan_times, strict=True)]
    return {
        "waves": waves,
        "validate_s_best": min(load_times),
        "validate_s_median": statistics.median(load_times),
        "plan_s_best": min(plan_times),
        "plan_s_median": statistics.median(plan_times),
        "validate_plus_plan_s_median": statistics.median(total),
        "peak_python_mib": peak / 2**20,
    }


def _cold(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS MiB and exit code of one fresh `dr` process."""
    start = time.perf_counter()
    with subprocess.Popen([str(DR), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux.
    return wall, usage.ru_maxrss / 1024, proc.returncode


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; return {size: figures} and write bench/out/plan.json."""
    sizes = QUICK_SIZES if quick else SIZES
    results: dict[str, Any] = {"quick": quick, "python": sys.version.split()[0], "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="dr-bench-plan-") as tmp:
        directory = Path(tmp)
        regions = write_regions(directory)
        env = {**os.environ, "DR_REGIONS_DIR": str(regions), "NO_COLOR": "1"}
        for size in sizes:
            path = directory / f"generated-{size}.yaml"
            path.write_text(generate(size))
            repeat = 1 if size >= 10_000 else (3 if quick else 7)
            figures = _in_process(path, regions, repeat)
            figures["file_kib"] = path.stat().st_size / 1024
            for command in (["validate", str(path)], ["plan", str(path), "-o", "json"]):
                wall, rss, code = _cold(command, env)
                if code != 0:
                    raise RuntimeError(f"`dr {' '.join(command)}` exited {code}")
                figures[f"cli_{command[0]}_s"] = wall
                figures[f"cli_{command[0]}_peak_rss_mib"] = rss
            results["sizes"][str(size)] = figures
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (CI)")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
