"""Property tests: whatever the input, loading and planning fail only with ConfigError/PlanError,
and the CLI only exits 0, 1 or 2 without a traceback."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dr_engine.actions.registry import register, unregister
from dr_engine.cli import build_app
from dr_engine.config.loader import load_runbook
from dr_engine.errors import ConfigError, PlanError
from dr_engine.planning.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
REGIONS = REPO / "tests" / "corpus" / "regions"
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _fakes() -> Iterator[None]:
    # Fence/promote/shift/health fakes make random runbooks reach every planner invariant.
    from fake_actions import FAKES

    for cls in FAKES:
        register(cls)
    yield
    for cls in FAKES:
        unregister(cls.name)


def load_and_plan(text: str) -> str:
    """Load and plan ``text``; return 'ok', 'config' or 'plan'. Anything else propagates."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            build_plan(load_runbook(path, regions_dir=REGIONS))
        except ConfigError as exc:
            assert exc.problems and all(p.message for p in exc.problems)
            return "config"
        except PlanError as exc:
            assert exc.problems and all(p.line is not None for p in exc.problems)
            return "plan"
    return "ok"


YAML_BITS = st.sampled_from([
    "runbook: x\n", "source: east\n", "target: west\n", "objectives: {rto: 5m, rpo: 0s}\n", "steps:\n",
    "  - id: a\n", "    action: shell.run\n", "    with: {command: [echo]}\n", "    after: [a]\n", "- ", ": ",
    "[", "]", "{", "}", "&a ", "*a ", "<<: *a\n", "!!python/object:os.system ", "!Ref ", "? ", "---\n",
    "\t", "'", '"', "#", "${target.addr}", "${", "\n", "  ", "%YAML 1.1\n", "|\n", ">-\n", "!!binary ", "0x1F",
    "1e309", "~", "null", ".inf", "2024-01-01", "\x00", "\ufeff", "é",
])


@FUZZ
@given(st.lists(YAML_BITS | st.text(max_size=20), max_size=30).map("".join))
def test_random_text_only_raises_config_errors(text: str) -> None:
    assert load_and_plan(text) in ("ok", "config", "plan")


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(json_like)
def test_random_documents_only_raise_config_errors(data: Any) -> None:
    assert load_and_plan(yaml.safe_dump(data, allow_unicode=True)) in ("config", "plan")


IDS = ["a", "b", "c", "fence", "promote", "check", "Bad_Id", ""]
ACTIONS = ["shell.run", "shell.verify", "control.wait", "control.approve", "fake.fence", "fake.promote",
           "fake.shift", "fake.health", "fake.emit", "shell.rnu", "nope", "a.b.c"]
DURATIONS = st.sampled_from(["0s", "1s", "250ms", "5m", "1h30m", "-5s", "5 minutes", "8d", 0, 30, True, None, "0"])
PARAMS = st.dictionaries(
    st.sampled_from(["command", "dataset", "value", "duration", "prompt", "consecutive", "interval", "x"]),
    st.sampled_from([["echo", "hi"], ["true"], "ledger", "${target.addr}", "${steps.a.token}", "${target.nope}",
                     "${source.secrets.db_password}", "${bad ref}", "1s", 3, 0, [], {}, None]),
    max_size=3,
)
STEP = st.fixed_dictionaries(
    {"id": st.sampled_from(IDS), "action": st.sampled_from(ACTIONS)},
    optional={"with": PARAMS, "after": st.lists(st.sampled_from(IDS), max_size=3), "timeout": DURATIONS,
              "retry": st.fixed_dictionaries({}, optional={"attempts": st.integers(-1, 200), "backoff": DURATIONS}),
              "drill": st.sampled_from(["run", "skip", "default", "maybe"]), "extra": st.just(1)},
)
RUNBOOK = st.fixed_dictionaries(
    {"runbook": st.sampled_from(["ok", "Bad Name", ""]), "source": st.sampled_from(["east", "west", "mars"]),
     "target": st.sampled_from(["east", "west", "mars"]),
     "objectives": st.fixed_dictionaries({"rto": DURATIONS, "rpo": DURATIONS}),
     "steps": st.lists(STEP, max_size=6)},
    optional={"fencing": st.sampled_from(["strict", "best-effort", "none"]),
              "fencing_reason": st.sampled_from(["", "source gone"]), "owner": st.text(max_size=5)},
)


@FUZZ
@given(RUNBOOK)
def test_runbook_shaped_documents_only_raise_config_or_plan_errors(data: dict[str, Any]) -> None:
    assert load_and_plan(yaml.safe_dump(data, sort_keys=False)) in ("ok", "config", "plan")


ARGS = st.lists(
    st.sampled_from([
        "validate", "plan", "actions", "schema", "--output", "-o", "json", "text", "yaml", "--kind", "region",
        "runbook", "--help", "--debug", "sample-noop", "nope", "shell.run", "tests/corpus/malformed/cycle.yaml",
        "tests/corpus/malformed/empty-file.yaml", "tests/corpus/regions/east.yaml", "runbooks", "/nonexistent",
        "tests/corpus/malformed/python-tag.yaml", "--", "-x", "",
    ]) | st.text(max_size=10),
    max_size=5,
)


@FUZZ
@given(ARGS)
def test_cli_arguments_never_crash(args: list[str]) -> None:
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]  # --debug deliberately shows tracebacks
    args = [str(REPO / a) if a.startswith("tests/") else a for a in args]
    env = {"DR_REGIONS_DIR": str(REGIONS), "DR_RUNBOOKS_DIR": str(REPO / "runbooks"), "NO_COLOR": "1"}
    result = CliRunner().invoke(build_app(), args, env=env)
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "Traceback" not in result.output
