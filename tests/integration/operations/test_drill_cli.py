"""`dr drill` as a real process, stopped with SIGTERM mid-drill: cleanup still runs and is audited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.flows.settings import EMBEDDED_SETTINGS
from dr_engine.providers.postgres.client import responsive
from dr_engine.world import World

pytestmark = pytest.mark.integration

WorldFactory = Callable[..., World]

RUNBOOK = Path(__file__).resolve().parents[3] / "runbooks" / "core-banking.yaml"


def test_sigterm_during_a_drill_cleans_up_and_records_it(make_world: WorldFactory, tmp_path: Path) -> None:
    world = make_world()
    runbooks = world.root / "runbooks"
    runbooks.mkdir()
    # Slow the drill down after the clone exists, so SIGTERM lands mid-drill.
    text = RUNBOOK.read_text().replace("  - id: verify-app-target\n", "  - id: pause\n    action: control.wait\n"
                                       "    with: {duration: 8s}\n    after: [verify-db]\n    timeout: 60s\n\n"
                                       "  - id: verify-app-target\n", 1)
    text = text.replace("    after: [verify-db, apply-stack]\n    timeout: 60s\n\n  - id: verify-alarms",
                        "    after: [pause, apply-stack]\n    timeout: 60s\n\n  - id: verify-alarms", 1)
    assert "after: [pause, apply-stack]" in text
    (runbooks / "core-banking.yaml").write_text(text)
    (world.root / "stacks").symlink_to(RUNBOOK.parents[1] / "stacks")  # the runbook's repository root
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DR_STATE_DIR"}
    env.update({**EMBEDDED_SETTINGS, "PREFECT_HOME": str(tmp_path / "prefect-home"), "NO_COLOR": "1"})
    dr = str(Path(sys.executable).parent / "dr")
    proc = subprocess.Popen([dr, "drill", str(runbooks / "core-banking.yaml"), "--state-dir", str(state)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 180
        run_id = None
        while time.monotonic() < end:
            ids = StateDir(state).run_ids()
            if ids and any(e["type"] == "step.started" and e["data"]["step"] == "pause"
                           for e in read_events(StateDir(state).audit_file(ids[0]))):
                run_id = ids[0]
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert run_id is not None, "the drill did not reach its pause step"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    record = StateDir(state).load(run_id)
    assert record.mode == "drill" and record.status is RunStatus.CANCELLED
    drill = (record.model_extra or {})["drill"]
    assert {r["id"] for r in drill["resources"]} == {c["id"] for c in drill["cleaned"] if c["ok"]}
    assert drill["cleanup"]["failed"] == []
    assert "postgres-clone:ledger" in drill["cleanup"]["cleaned"]
    assert verify(StateDir(state).audit_file(run_id)).ok
    drill_addr = world.config.target_addr.rsplit(".", 1)[0] + ".20" + world.config.target_addr.rsplit(".", 1)[1]
    assert not responsive(f"postgresql://postgres@{drill_addr}:{world.config.pg_port}/ledger", 0.5)
    assert not responsive(f"postgresql://postgres@{drill_addr}:{world.config.app_port}/x", 0.5)
