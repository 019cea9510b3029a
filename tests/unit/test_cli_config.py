"""The `dr` commands that change nothing: output formats, help, colour, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dr_engine.actions.registry import all_actions
from dr_engine.cli import build_app
from dr_engine.cli.common import PIPE_WIDTH

REPO = Path(__file__).resolve().parents[2]
DR = Path(sys.executable).with_name("dr")
COMMANDS = ["validate", "plan", "actions", "schema"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    monkeypatch.delenv("DR_RUNBOOKS_DIR", raising=False)


def invoke(*args: str, **env: str) -> Any:
    return CliRunner().invoke(build_app(), list(args), env=env or None)


def real(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with stdout piped (not a terminal)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "DR_REGIONS_DIR")}
    return subprocess.run([str(DR), *args], cwd=REPO, env={**full_env, **env}, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_everywhere(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: dr" in result.stdout
    if command:
        assert "--output" in result.stdout or command == ["schema"]


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert result.exit_code in (0, 2)
    assert "validate" in result.output and "plan" in result.output


def test_plan_text_is_readable_when_piped() -> None:
    done = real("plan", "sample-noop")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\u2026" not in done.stdout, "nothing is cut with an ellipsis"
    assert "\x1b[" not in done.stdout, "no colour codes in a pipe"
    assert max(len(line) for line in lines) <= PIPE_WIDTH
    row = next(line for line in lines if line.lstrip().startswith("3 ") and "verify-target" in line)
    assert "shell.verify" in row and "health.verify" in row and "30s" in row
    assert "RTO stop: verify-target" in done.stdout
    assert "Nothing was changed." in done.stdout
    assert done.stdout.count("[ok  ]") == 5


def test_narrow_columns_still_show_ids_and_actions_whole() -> None:
    done = real("plan", "sample-noop", COLUMNS="60")
    assert done.returncode == 0
    assert "\u2026" not in done.stdout
    for word in ("verify-target", "shell.verify", "control.wait", "settle-a"):
        assert word in done.stdout


def test_no_color_is_respected_even_when_forced() -> None:
    done = real("plan", "nope", NO_COLOR="1", FORCE_COLOR="1")
    assert done.returncode == 2
    assert "\x1b[" not in done.stderr
    assert done.stderr.startswith("error: ")


def test_plan_json() -> None:
    result = invoke("plan", "sample-noop", "--output", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["runbook"] == "sample-noop"
    assert [[s["id"] for s in wave] for wave in data["waves"]] == [["announce"], ["settle-a", "settle-b"],
                                                                   ["verify-target"]]
    assert data["objectives"] == {"rto_seconds": 300.0, "rpo_seconds": 0.0}
    assert all(check["ok"] for check in data["invariants"])


def test_validate_json_and_text() -> None:
    result = invoke("validate", "-o", "json", "runbooks/sample-noop.yaml", "regions")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert [f["kind"] for f in data["files"]] == ["runbook", "region", "region"]
    text = invoke("validate")
    assert text.exit_code == 0
    assert "ok       runbooks/sample-noop.yaml  (runbook sample-noop, 4 steps, 3 waves)" in text.stdout


def test_validate_mixed_folder_reports_each_file() -> None:
    result = invoke("validate", "runbooks/sample-noop.yaml", "tests/corpus/malformed/cycle.yaml")
    assert result.exit_code == 2
    assert "ok       runbooks/sample-noop.yaml" in result.stdout
    assert "INVALID  tests/corpus/malformed/cycle.yaml" in result.stdout
    assert "1 valid, 1 invalid" in result.stdout


def test_validate_with_nothing_to_validate_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path}: is a directory with no YAML files" in result.output  # named, not just "none found"


def test_actions_list_and_detail() -> None:
    listing = invoke("actions")
    assert listing.exit_code == 0
    for name in all_actions():
        assert name in listing.stdout
    detail = invoke("actions", "control.approve")
    assert detail.exit_code == 0
    assert "prompt" in detail.stdout and "required" in detail.stdout
    assert 'default "30m"' in detail.stdout
    assert "list[string]" in detail.stdout
    assert "example:\n  id: approve-cutover" in detail.stdout
    unknown = invoke("actions", "shell.rnu")
    assert unknown.exit_code == 2
    assert "did you mean shell.run" in unknown.output


def test_actions_detail_shows_which_fields_take_a_secret() -> None:
    detail = invoke("actions", "shell.run").stdout
    assert "list[string | secret]" in detail and "map[string | secret]" in detail
    assert "secret | null" in invoke("actions", "postgres.verify_writable").stdout


def test_actions_json() -> None:
    listing = json.loads(invoke("actions", "--output", "json").stdout)
    assert [a["name"] for a in listing] == list(all_actions())
    one = json.loads(invoke("actions", "shell.run", "-o", "json").stdout)
    assert one["name"] == "shell.run" and one["capability"] == "exec.run"
    assert one["params"]["required"] == ["command"]
    assert one["permissions"] == []


def test_schema_kind_must_be_known() -> None:
    assert invoke("schema", "--kind", "nope").exit_code == 2


def test_plan_unknown_runbook_suggests_names() -> None:
    result = invoke("plan", "sample-nop")
    assert result.exit_code == 2
    assert "no runbook named 'sample-nop'" in result.stderr
    assert "did you mean 'sample-noop'?" in result.stderr
