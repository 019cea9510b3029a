"""Every file in tests/corpus/malformed/ is refused by the real CLI with a located message and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dr_engine.cli import build_app
from dr_engine.config.yamlsafe import MAX_BYTES

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "malformed"
REGIONS = REPO / "tests" / "corpus" / "regions"
# Kept beside the folder (not in it) so that `dr validate tests/corpus/malformed` sees only corpus files.
EXPECTATIONS: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS.parent / "malformed-expectations.yaml").read_text())


def corpus_files() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.y*ml"))


def run_cli(*args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(build_app(), list(args), env={"DR_REGIONS_DIR": str(REGIONS), "NO_COLOR": "1"})


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages name files relative to the working directory.
    monkeypatch.chdir(REPO)


def test_corpus_is_complete() -> None:
    files = corpus_files()
    assert len(files) >= 35
    assert sorted(EXPECTATIONS) == files, "every corpus file needs an expectation and vice versa"


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_validate_refuses_with_a_located_message(name: str) -> None:
    expected = EXPECTATIONS[name]
    file = f"tests/corpus/malformed/{name}"
    result = run_cli("validate", file)
    text = result.stdout + result.stderr
    assert result.exit_code == 2, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    where = file if expected["line"] is None else f"{file}:{expected['line']}"
    head = f"{where}: {expected['path']}: " if expected["path"] else f"{where}: "
    lines = [line.strip() for line in text.splitlines()]
    matching = [line for line in lines if line.startswith(head) and expected["message"] in line]
    assert matching, f"no line starting {head!r} containing {expected['message']!r} in:\n{text}"
    assert any(line.startswith("hint: ") for line in lines), "every problem comes with a hint"

    # The same problem, as data.
    data = json.loads(run_cli("validate", "--output", "json", file).stdout)
    assert data["ok"] is False
    errors = data["files"][0]["errors"]
    found = [e for e in errors if e["path"] == expected["path"] and e["line"] == expected["line"]
             and expected["message"] in e["message"]]
    assert found, errors
    assert all(e["hint"] for e in errors)
    if "hint" in expected:
        assert expected["hint"] in found[0]["hint"]


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTATIONS) if not n.startswith("regions/")])
def test_plan_refuses_the_same_runbooks(name: str) -> None:
    result = run_cli("plan", f"tests/corpus/malformed/{name}")
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    assert EXPECTATIONS[name]["message"] in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: costs no disk
    result = run_cli("validate", str(huge))
    assert result.exit_code == 2
    assert f"{huge}: file is {MAX_BYTES + 1:,} bytes; the limit is {MAX_BYTES:,}" in result.stdout


def test_too_many_steps(tmp_path: Path) -> None:
    from dr_engine.model.runbook import MAX_STEPS

    path = tmp_path / "many.yaml"
    steps = "".join(f"  - {{id: s{i}, action: control.wait, with: {{duration: 1s}}}}\n" for i in range(MAX_STEPS + 1))
    path.write_text("runbook: many\nsource: east\ntarget: west\nobjectives: {rto: 5m, rpo: 0s}\nsteps:\n" + steps)
    result = run_cli("validate", str(path))
    assert result.exit_code == 2
    assert f"{path}:5: steps: has {MAX_STEPS + 1} items; the limit is {MAX_STEPS}" in result.stdout


def test_real_console_script_on_the_whole_corpus() -> None:
    """One real `dr` process over the folder: exit 2, every file reported, no traceback."""
    dr = Path(sys.executable).with_name("dr")
    env = {**os.environ, "DR_REGIONS_DIR": str(REGIONS), "NO_COLOR": "1"}
    done = subprocess.run([str(dr), "validate", "tests/corpus/malformed"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr == ""
    assert done.stdout.count("INVALID  ") == len(EXPECTATIONS)
    assert done.stdout.rstrip().endswith(f"0 valid, {len(EXPECTATIONS)} invalid")
