"""CLI time to first step: a cold `dr failover` process until its first step starts.

Measured from process spawn until the run's audit log holds the first ``step.started`` event,
for Prefect in embedded mode (a fresh ``PREFECT_HOME``: database migrations included; and a
home migrated before) and against a running ``prefect server`` started here on a free port.
The comparison, in the same modes: a cold Python process running a bare Prefect flow until its
first task starts. ``--quick``: one cold `dr failover` with a fresh home, no comparison. Writes
bench/out/cli.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "cli.json"
sys.path.insert(0, str(ROOT))

from dr_engine.flows.settings import EMBEDDED_SETTINGS  # noqa: E402

RUNBOOK = """runbook: first-step
source: us-east-1
target: us-west-2
objectives: {rto: 5m, rpo: 0s}
steps:
  - id: first
    action: shell.run
    with: {command: ["true"]}
  - id: healthy
    action: shell.verify
    with: {command: ["true"]}
    after: [first]
"""
BARE = """
import pathlib, sys
from prefect import flow, task
@task(persist_result=False)
def first() -> None:
    pathlib.Path(sys.argv[1]).write_text("started")
@flow(persist_result=False)
def bare() -> None:
    first()
bare()
"""
MIGRATE = "from prefect import flow\n@flow(persist_result=False)\ndef w() -> int:\n    return 1\nw()\n"
GUARD = 300.0


def _env(home: Path, api: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DR_STATE_DIR"}
    env.update(EMBEDDED_SETTINGS)
    env.update({"PREFECT_HOME": str(home), "NO_COLOR": "1", "PREFECT_LOGGING_LEVEL": "WARNING"})
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _until(argv: list[str], env: dict[str, str], cwd: Path, started: Any) -> float:
    """Seconds from spawning ``argv`` until ``started()``; then let the process finish."""
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not started():
            if proc.poll() is not None and not started():
                raise RuntimeError(f"{argv[:3]} exited {proc.returncode} before its first step")
            if time.perf_counter() - begin > GUARD:
                raise RuntimeError(f"{argv[:3]}: no first step within {GUARD}s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - begin
        proc.wait(GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return round(elapsed, 3)


def _dr_first_step(work: Path, env: dict[str, str]) -> float:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))

    def started() -> bool:
        return any("\"step.started\"" in p.read_text() for p in state.glob("runs/*/audit.jsonl"))

    dr = str(Path(sys.executable).parent / "dr")
    return _until([dr, "failover", str(work / "runbooks" / "first-step.yaml"), "--yes", "--state-dir", str(state)],
                  env, work, started)


def _bare_first_task(work: Path, env: dict[str, str]) -> float:
    marker = Path(tempfile.mkdtemp(prefix="bare-", dir=work)) / "started"
    return _until([sys.executable, "-c", BARE, str(marker)], env, work, marker.exists)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    end = time.monotonic() + GUARD
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("prefect server did not start")


def main(quick: bool = False) -> dict[str, Any]:
    """Measure every mode (quick: embedded with a migrated home); write bench/out/cli.json."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dr-bench-cli-") as tmp:
        work = Path(tmp)
        (work / "runbooks").mkdir()
        (work / "runbooks" / "first-step.yaml").write_text(RUNBOOK)
        (work / "regions").mkdir()
        for name in ("us-east-1", "us-west-2"):
            (work / "regions" / f"{name}.yaml").write_text(f"name: {name}\n")
        if quick:  # one cold process (fresh home) proves the measurement works; no comparison
            results["embedded_fresh_home"] = {"dr_failover_s": _dr_first_step(work, _env(work / "fresh-dr"))}
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=2) + "\n")
            return results
        migrated = work / "home-migrated"
        subprocess.run([sys.executable, "-c", MIGRATE], env=_env(migrated), check=True, capture_output=True,
                       timeout=GUARD)

        def copy(name: str) -> Path:
            home = work / name
            shutil.copytree(migrated, home)
            return home

        results["embedded_fresh_home"] = {"dr_failover_s": _dr_first_step(work, _env(work / "fresh-dr")),
                                          "bare_prefect_s": _bare_first_task(work, _env(work / "fresh-bare"))}
        results["embedded_migrated_home"] = {"dr_failover_s": _dr_first_step(work, _env(copy("warm-dr"))),
                                             "bare_prefect_s": _bare_first_task(work, _env(copy("warm-bare")))}
        proc, api = _server(copy("server-home"))
        try:
            _bare_first_task(work, _env(copy("client-warmup"), api))  # first client call: not timed
            results["prefect_server"] = {"dr_failover_s": _dr_first_step(work, _env(copy("client-dr"), api)),
                                         "bare_prefect_s": _bare_first_task(work, _env(copy("client-bare"), api))}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
