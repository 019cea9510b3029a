"""Bad input gets a clear, located error from the real `dr` (exit code + message, no traceback).

Each case was seen: an unclosed ``${`` passed validation, a directory given as a runbook was
skipped or reported without its path, a region file that is a directory was "unknown ... did
you mean" itself, an event appended after the seal was called truncation, waves counted from 0
in run.json but from 1 in `dr plan`, and a state dir that is a file was an internal error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.cli import build_app
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import ConfigError
from dr_engine.evidence.audit import canonical, event_hash, read_events
from dr_engine.evidence.record import RunRecord, load_record
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.model.substitution import find_unclosed
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps

REPO = Path(__file__).resolve().parents[2]
DR = Path(sys.executable).with_name("dr")
REGIONS = REPO / "tests" / "corpus" / "regions"

RUNBOOK = """runbook: x
source: east
target: west
objectives: {rto: 5m, rpo: 0s}
steps:
  - id: announce
    action: shell.run
    with: {command: [echo, "COMMAND"]}
  - id: verify-target
    action: shell.verify
    with: {command: ["true"]}
    after: [announce]
"""


def dr(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; the output is what an operator reads."""
    full = {k: v for k, v in os.environ.items() if k not in ("DR_REGIONS_DIR", "DR_STATE_DIR", "DR_RUNBOOKS_DIR")}
    return subprocess.run([str(DR), *args], cwd=cwd, env={**full, "NO_COLOR": "1", **env}, capture_output=True,
                          text=True, timeout=120, check=False)


def said(done: subprocess.CompletedProcess[str]) -> str:
    text = done.stdout + done.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    return text


# ------------------------------------------------------------------ (a) unclosed ${

def test_an_unclosed_reference_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK.replace("COMMAND", "${target.addr"))
    done = dr("validate", str(path), DR_REGIONS_DIR=str(REGIONS))
    text = said(done)
    assert done.returncode == 2, text
    assert f"{path}:8: steps[0].with.command[1]: unclosed reference '${{target.addr'" in text


def test_find_unclosed() -> None:
    assert find_unclosed({"a": ["x ${target.addr", "${ok}", "$${literal", "${a} and ${b"]}) == [
        ("a[0]", "${target.addr"), ("a[3]", "${b")]
    assert find_unclosed("${source.addr}:${target.port}") == []


# ------------------------------------------------------------------ (b) a directory as a runbook

def test_a_directory_without_yaml_is_an_error_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    good = tmp_path / "rb.yaml"
    good.write_text(RUNBOOK.replace("COMMAND", "hi"))
    alone = dr("validate", str(empty), DR_REGIONS_DIR=str(REGIONS))
    assert alone.returncode == 2 and f"{empty}: is a directory with no YAML files" in said(alone)
    # Beside a valid file it is not skipped silently.
    mixed = dr("validate", str(good), str(empty), DR_REGIONS_DIR=str(REGIONS))
    text = said(mixed)
    assert mixed.returncode == 2, text
    assert f"ok       {good}" in text and f"INVALID  {empty}" in text
    assert f"{empty}: is a directory with no YAML files" in text


def test_a_directory_given_to_plan_is_named_as_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "core-banking.yaml"
    folder.mkdir()
    done = dr("plan", str(folder), DR_REGIONS_DIR=str(REGIONS))
    text = said(done)
    assert done.returncode == 2, text
    assert f"{folder}: is a directory, not a runbook file" in text
    # By name too: runbooks/NAME.yaml is a directory.
    (tmp_path / "runbooks" / "ledger.yaml").mkdir(parents=True)
    by_name = dr("plan", "ledger", cwd=tmp_path, DR_REGIONS_DIR=str(REGIONS))
    text = said(by_name)
    assert by_name.returncode == 2, text
    assert "runbooks/ledger.yaml: is a directory, not a runbook file" in text
    assert "did you mean" not in text


# ------------------------------------------------------------------ (c) a region file that is a directory

def test_a_region_file_that_is_a_directory_is_named(tmp_path: Path) -> None:
    regions = tmp_path / "regions"
    regions.mkdir()
    shutil.copy(REGIONS / "east.yaml", regions)
    (regions / "west.yaml").mkdir()
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK.replace("COMMAND", "hi"))
    done = dr("validate", str(path), DR_REGIONS_DIR=str(regions))
    text = said(done)
    assert done.returncode == 2, text
    assert f"{path}:3: target: region file {regions}/west.yaml is a directory, not a file" in text
    assert "unknown region" not in text and "did you mean" not in text


# ------------------------------------------------------------------ (d) an event after the seal

def _finished_run(tmp_path: Path) -> tuple[Path, Path]:
    plan = plan_from_steps(tmp_path, """
- id: a
  action: fake.noop
- id: ok
  action: fake.check_health
  after: [a]
""")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, clock=FakeClock(), concurrency=1, lock=NullLock()))
    return state, state / "runs" / record.run_id


def test_an_event_after_the_seal_is_named_as_such(tmp_path: Path) -> None:
    state, run_dir = _finished_run(tmp_path)
    path = run_dir / "audit.jsonl"
    last = read_events(path)[-1]
    assert last["type"] == "run.finished"
    # Chained correctly, written by hand: the seal is what gives it away.
    event = {"seq": last["seq"] + 1, "ts": last["ts"], "type": "step.succeeded", "actor": "x",
             "run_id": last["run_id"], "data": {"step": "a", "summary": "late"}, "prev": last["hash"]}
    event["hash"] = event_hash(event)
    with path.open("ab") as handle:
        handle.write(canonical(event) + b"\n")
    done = dr("audit", "verify", last["run_id"], "--state-dir", str(state))
    text = said(done)
    assert done.returncode == 1, text
    assert f"BROKEN at line {event['seq']}: event after the seal" in text
    assert f"follows the run.finished that sealed the log at line {last['seq']}" in text
    assert "truncated" not in text


# ------------------------------------------------------------------ (e) waves count from 1 everywhere

def test_run_json_numbers_waves_as_dr_plan_does(tmp_path: Path) -> None:
    state, run_dir = _finished_run(tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    assert [(s["id"], s["wave"]) for s in record["steps"]] == [("a", 1), ("ok", 2)]
    plan = CliRunner().invoke(build_app(), ["plan", str(next((tmp_path / "runbooks").glob("*.yaml")))],
                              env={"DR_REGIONS_DIR": str(tmp_path / "regions"), "NO_COLOR": "1"})
    rows = [line.split() for line in plan.stdout.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [(r[1], int(r[0])) for r in rows] == [("a", 1), ("ok", 2)], plan.stdout
    # The rebuilt record (from the audit log) agrees.
    shown = dr("show", record["run_id"], "--state-dir", str(state), "--rebuild", "--output", "json")
    assert [(s["id"], s["wave"]) for s in json.loads(shown.stdout)["steps"]] == [("a", 1), ("ok", 2)], shown.stderr


def test_an_old_record_with_waves_from_0_reads_from_1(tmp_path: Path) -> None:
    _, run_dir = _finished_run(tmp_path)
    data = json.loads((run_dir / "run.json").read_text())
    del data["waves_from"]  # as records were written before it
    for step in data["steps"]:
        step["wave"] -= 1
    (run_dir / "run.json").write_text(json.dumps(data))
    old = load_record(run_dir)
    assert [s.wave for s in old.steps] == [1, 2] and old.waves_from == 1
    # Written back and read again, it is not renumbered twice.
    again = RunRecord.model_validate_json(old.to_json())
    assert [s.wave for s in again.steps] == [1, 2]


# ------------------------------------------------------------------ (f) a state dir that is not a directory

@pytest.mark.parametrize("state", ["/etc/passwd", "/etc/passwd/below"])
def test_a_state_dir_that_is_a_file_is_a_usage_error(state: str) -> None:
    for command in (["drill", "runbooks/sample-noop.yaml"], ["runs"], ["audit", "verify"]):
        done = dr(*command, "--state-dir", state)
        text = said(done)
        assert done.returncode == 2, (command, text)
        assert "/etc/passwd is a file, not a directory" in text, (command, text)
        assert "--state-dir" in text


def test_the_state_dir_object_refuses_a_file_for_every_caller(tmp_path: Path) -> None:
    # The root of the CLI check: code that opens a state dir without the CLI gets it too.
    afile = tmp_path / "state"
    afile.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"state dir .*/state is a file, not a directory"):
        StateDir(afile)
    with pytest.raises(ConfigError, match=r"cannot be created: .*/state is a file"):
        StateDir(afile / "below")
    assert StateDir(tmp_path / "new" / "dir").root == tmp_path / "new" / "dir"  # missing: created when needed
