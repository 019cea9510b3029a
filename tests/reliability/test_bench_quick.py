"""`bench/run.py --quick` still works: every benchmark module runs and the report is written.

The demo benchmark (bench/demo.py, a full world failover through Prefect) is left to
`make bench-quick`/`make bench`; its scripted twin (bench/script_baseline.py) runs here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_kit import REPO, quiet_env

pytestmark = pytest.mark.integration

QUICK = ["engine", "parallel", "plan", "cli", "script_baseline"]


def test_quick_benchmark_writes_results_with_comparisons(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = quiet_env(tmp_path / "prefect-home")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out), *QUICK],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == [] and results["quick"] is True
    assert sorted(results["benchmarks"]) == sorted(QUICK)
    bench = results["benchmarks"]
    assert bench["parallel"]["steps_50"]["engine_prefect"]["status"] == "succeeded"
    assert bench["parallel"]["steps_50"]["engine_prefect"]["efficiency"] >= 1.0  # wall can never beat ideal
    assert bench["cli"]["embedded_fresh_home"]["dr_failover_s"] > 0
    assert bench["script_baseline"]["median"]["rto_s"] > 0
    text = (out / "results.md").read_text()
    assert "## Headline figures" in text
    for figure in ("overhead per step", "parallel efficiency, 50", "CLI time to first step", "validate + plan"):
        assert figure in text, figure
    # The committed full results are not touched by a quick run.
    assert json.loads((REPO / "bench" / "results.json").read_text()).get("quick") is False
