"""Bad input at scale, for what tests/unit/test_fuzz_loader.py does not cover: region files, and
the arguments of the run-time commands (failover, resume, show, runs, audit, report, evidence...).

Whatever the input: never a traceback; a region refused with a ConfigError whose problems name
the file and a line; a command exits 0, 1 or 2, and a usage/validation error (2) says what is
wrong. No run can start here: the runbooks offered are malformed or unknown and the state dir
holds no run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_kit import REPO
from typer.testing import CliRunner

from dr_engine.cli import build_app
from dr_engine.config.loader import load_region, load_regions
from dr_engine.errors import ConfigError

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=12)
REGION = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["us-east-1", "east", "", "Bad Name", "x" * 80]) | SCALARS,
        "description": SCALARS,
        "aws": st.fixed_dictionaries({}, optional={
            "region": st.sampled_from(["us-east-1", "mars-1", ""]) | SCALARS,
            "endpoint_url": st.sampled_from(["http://127.0.0.1:1", "not a url", "ftp://x"]) | SCALARS,
            "profile": SCALARS, "extra": SCALARS}) | VALUES,
        "params": st.dictionaries(st.sampled_from(["addr", "pg_dsn", "Bad Key", "", "a.b", "port"]),
                                  VALUES, max_size=4) | VALUES,
        "secrets": st.dictionaries(st.sampled_from(["tsig_key", "pg_password", "Bad-Name", ""]),
                                   st.fixed_dictionaries({}, optional={"env": SCALARS, "file": SCALARS,
                                                                       "vault": SCALARS}) | VALUES,
                                   max_size=3) | VALUES,
        "unknown": VALUES,
    },
)


def _load(text: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "region.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_region(path)
            load_regions(Path(tmp))
        except ConfigError as exc:
            assert exc.problems and all(p.message for p in exc.problems)
            assert all(p.file and "region.yaml" in str(p.file) for p in exc.problems), exc.problems
            return "config"
    return "ok"


@FUZZ
@given(REGION)
def test_region_shaped_documents_only_raise_located_config_errors(data: dict[str, Any]) -> None:
    assert _load(yaml.safe_dump(data, sort_keys=False, allow_unicode=True)) in ("ok", "config")


@FUZZ
@given(st.lists(st.sampled_from(["name: east\n", "params:\n", "  addr: 1\n", "  x: {a: 1}\n", "secrets:\n",
                                 "  k: {env: X, file: /y}\n", "aws: {region: us-east-1}\n", "- ", ": ", "&a ",
                                 "*a ", "!!python/object:os.system ", "\t", "{", "[", "\x00", "\ufeff"])
                | st.text(max_size=15), max_size=20).map("".join))
def test_random_region_text_only_raises_config_errors(text: str) -> None:
    assert _load(text) in ("ok", "config")


MALFORMED = REPO / "tests" / "corpus" / "malformed"
WORDS = st.sampled_from([
    "failover", "resume", "show", "runs", "audit", "verify", "report", "evidence", "note", "skip", "cancel",
    "approve", "lock", "--yes", "--reason", "--incident-start", "2026-01-31T02:15:00Z", "yesterday",
    "2999-01-01T00:00:00Z", "not-a-time", "--concurrency", "0", "-3", "many", "--allow-data-loss",
    "--take-over-lock", "--force",
    "--output", "json", "xml", "--rebuild", "-f", "md", "docx", "--since", "2026-02-30", "--until", "--out",
    "-o", "latest", "20260131T021915Z-3fa9c2", "nope", "sample-noop-typo", str(MALFORMED / "cycle.yaml"),
    str(MALFORMED / "python-tag.yaml"), str(MALFORMED / "empty-file.yaml"), "/nonexistent/x.yaml", "--", "",
]) | st.text(max_size=10)


@pytest.fixture(scope="module")
def empty_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dir with no run in it."""
    return tmp_path_factory.mktemp("fuzz-state")


@FUZZ
@given(st.lists(WORDS, min_size=1, max_size=6))
def test_run_command_arguments_never_crash(empty_state: Path, args: list[str]) -> None:
    if args[0] not in ("failover", "resume", "show", "runs", "audit", "report", "evidence", "note", "skip",
                       "cancel", "approve", "lock"):
        args = ["failover", *args]
    env = {"DR_STATE_DIR": str(empty_state), "DR_RUNBOOKS_DIR": str(MALFORMED),
           "DR_REGIONS_DIR": str(REPO / "tests" / "corpus" / "regions"), "NO_COLOR": "1"}
    result = CliRunner().invoke(build_app(), args, env=env)
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.strip(), args  # a usage or validation error always says what is wrong
    # Nothing was started: the state dir still holds no run.
    assert not (empty_state / "runs").is_dir() or not any((empty_state / "runs").iterdir())
