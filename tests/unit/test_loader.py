"""The loader: safe YAML with line numbers, two validation passes, located problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from runbook_fixtures import CORPUS_REGIONS, LoadRunbook, WriteRunbook

from dr_engine.config.loader import SECRET_PLACEHOLDER, default_regions_dir, display_path, load_region, load_regions
from dr_engine.config.yamlsafe import MAX_BYTES, format_path, line_for, parse_path, parse_yaml, read_yaml
from dr_engine.errors import ConfigError, UnknownAction
from dr_engine.model.substitution import SecretText

OK = """  - id: announce
    action: shell.run
    with: {command: [echo, "${target.addr}"]}
  - id: verify
    action: shell.verify
    with:
      command: ["true"]
      consecutive: 2
    after: [announce]
"""


def test_line_map_records_every_key_and_item() -> None:
    data, lines = parse_yaml("a: 1\nsteps:\n  - id: x\n    with:\n      k: [1, 2]\n  - id: y\n", "f.yaml")
    assert data == {"a": 1, "steps": [{"id": "x", "with": {"k": [1, 2]}}, {"id": "y"}]}
    assert lines[("a",)] == 1
    assert lines[("steps",)] == 2
    assert lines[("steps", 0)] == 3
    assert lines[("steps", 0, "with", "k")] == 5
    assert lines[("steps", 1, "id")] == 6
    # A path that does not exist falls back to its nearest ancestor.
    assert line_for(lines, ("steps", 0, "with", "missing")) == 4
    assert line_for(lines, ("nothing",)) == 1


@pytest.mark.parametrize("text", ["steps[2].after[0]", "a", "with.command[1]", "a.b.c", "x[0][3]"])
def test_path_round_trip(text: str) -> None:
    assert format_path(parse_path(text)) == text


def test_scalars_keep_yaml_types_and_dates_stay_text() -> None:
    data, _ = parse_yaml("i: 3\nf: 1.5\nb: true\nn: null\nd: 2024-01-02\ns: '3'\n", "f")
    assert data == {"i": 3, "f": 1.5, "b": True, "n": None, "d": "2024-01-02", "s": "3"}


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a' (first defined on line 1)", 2),
        ("a: !!python/object/apply:os.system [ls]\n", "is not allowed", 1),
        ("a: !Custom x\n", "YAML tag '!Custom' is not allowed", 1),
        ("b: &x {k: 1}\na:\n  <<: *x\n", "merge keys", 3),
        ("a: [1, 2\n", "YAML syntax error", 2),
        ("a: 1\n---\nb: 2\n", "single document", 2),
        ("# only a comment\n", "file is empty", None),
        ("? [a]\n: 1\n", "mapping keys must be plain scalars", 1),
    ],
)
def test_unsafe_or_broken_yaml_is_a_located_config_error(text: str, fragment: str, line: int | None) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, "f.yaml")
    problem = exc.value.problems[0]
    assert fragment in problem.message
    assert problem.line == line
    assert problem.hint


def test_billion_laughs_and_deep_nesting_are_bounded() -> None:
    laughs = "a: &a [" + ",".join(["x"] * 10) + "]\n"
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        laughs += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]\n"
    with pytest.raises(ConfigError, match="document too large"):
        parse_yaml(laughs, "f")
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        parse_yaml("a: " + "[" * 200 + "]" * 200 + "\n", "f")
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "f")


def test_huge_and_unreadable_files(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:  # sparse: no need to write the bytes
        fh.truncate(MAX_BYTES + 1)
    with pytest.raises(ConfigError, match="the limit is"):
        read_yaml(huge)
    with pytest.raises(ConfigError, match="file not found"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_yaml(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml(latin)


def test_load_runbook_resolves_regions_and_params(load: LoadRunbook) -> None:
    loaded = load(OK)
    assert loaded.source.name == "east" and loaded.target.name == "west"
    assert loaded.file.endswith("rb.yaml") and len(loaded.sha256) == 64
    params = loaded.params["announce"]
    assert params is not None and params.model_dump()["command"] == ["echo", "127.0.2.1"]
    assert loaded.actions["verify"].name == "shell.verify"
    assert loaded.locate(("steps", 1, "with", "consecutive")) == 13
    assert loaded.step_index("verify") == 1


def test_secrets_and_step_outputs_are_not_resolved_at_load(load: LoadRunbook) -> None:
    steps = OK.replace('"${target.addr}"', '"${target.secrets.db_password}", "${steps.verify.out}"')
    loaded = load(steps)
    params = loaded.params["announce"]
    assert params is not None
    command = params.model_dump()["command"]
    assert command[0] == "echo" and command[2] == "${steps.verify.out}"
    # A placeholder secret, validated as a secret: the same type a run binds.
    assert isinstance(command[1], SecretText) and command[1].get_secret_value() == SECRET_PLACEHOLDER
    assert command[1].shown() == "${target.secrets.db_password}"


def test_a_secret_in_a_field_that_takes_none_is_refused_at_load_located(load: LoadRunbook) -> None:
    # `cwd` is plain text: a run could never bind a secret there, so validation says so up front.
    steps = OK.replace('with: {command: [echo, "${target.addr}"]}',
                       'with: {command: [echo], cwd: "/srv/${target.secrets.db_password}"}')
    with pytest.raises(ConfigError) as exc:
        load(steps)
    (problem,) = exc.value.problems
    assert problem.path == "steps[0].with.cwd" and problem.line == 8
    assert "does not take a secret" in problem.message and "dr actions shell.run" in (problem.hint or "")


def test_load_and_run_bind_secrets_through_one_path(load: LoadRunbook, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `dr validate` accepts, a run binds: secrets in shell.run's command and env."""
    from dr_engine.config.bindings import Bindings, bind_params
    from dr_engine.model import RunMode

    monkeypatch.setenv("TEST_WEST_DB_PASSWORD", "BindCanary-1d7e")
    steps = OK.replace('with: {command: [echo, "${target.addr}"]}',
                       'with: {command: [sh, -c, \'x="${target.secrets.db_password}"\'], '
                       'env: {PW: "${target.secrets.db_password}"}}')
    loaded = load(steps)
    bindings = Bindings(loaded.source, loaded.target, "t", "run-1", RunMode.FAILOVER, {})
    step = loaded.runbook.steps[0]
    params = bind_params(loaded.actions[step.id].Params, step.with_, bindings, step.id)
    command, env = params.model_dump()["command"], params.model_dump()["env"]
    assert isinstance(command[2], SecretText) and command[2].get_secret_value() == 'x="BindCanary-1d7e"'
    assert isinstance(env["PW"], SecretText) and env["PW"].get_secret_value() == "BindCanary-1d7e"
    assert "BindCanary" not in str(params) + repr(params)


def test_runbook_name_is_known_at_load(load: LoadRunbook) -> None:
    loaded = load(OK.replace("${target.addr}", "${runbook.name}"), name="ledger")
    params = loaded.params["announce"]
    assert params is not None and params.model_dump()["command"] == ["echo", "ledger"]


def test_all_problems_are_reported_together(load: LoadRunbook) -> None:
    steps = OK.replace("${target.addr}", "${target.nope}").replace("consecutive: 2", "consecutive: 0")
    with pytest.raises(ConfigError) as exc:
        load(steps)
    paths = [p.path for p in exc.value.problems]
    assert paths == ["steps[0].with.command[1]", "steps[1].with.consecutive"]
    assert [p.line for p in exc.value.problems] == [8, 13]


def test_unknown_action_lists_close_matches(load: LoadRunbook) -> None:
    with pytest.raises(UnknownAction) as exc:
        load(OK.replace("shell.verify", "shell.verfy"))
    problem = exc.value.problems[0]
    assert problem.path == "steps[1].action" and problem.line == 10
    assert problem.hint is not None and "'shell.verify'" in problem.hint


def test_params_fields_holding_step_outputs_are_checked_at_run_time(load: LoadRunbook) -> None:
    # `consecutive` must be an int; a ${steps...} reference can only be checked once it has a value.
    loaded = load(OK.replace("consecutive: 2", 'consecutive: "${steps.announce.n}"'))
    assert loaded.params["verify"] is None


def test_unknown_region_and_bad_region_file(write_runbook: WriteRunbook, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        from dr_engine.config.loader import load_runbook

        load_runbook(write_runbook(OK).with_name("rb.yaml"), regions_dir=tmp_path / "none")
    assert [p.path for p in exc.value.problems] == ["source", "target"]
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "east.yaml").write_text("name: east\nbogus: 1\n")
    with pytest.raises(ConfigError) as exc2:
        load_regions(regions)
    assert exc2.value.problems[0].path == "bogus" and exc2.value.problems[0].line == 2


def test_region_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "east.yaml"
    path.write_text("name: west\n")
    with pytest.raises(ConfigError, match=r"region 'west' is defined in east\.yaml"):
        load_region(path)
    assert set(load_regions(CORPUS_REGIONS)) == {"east", "west"}


def test_default_regions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    (tmp_path / "regions").mkdir()
    (tmp_path / "runbooks").mkdir()
    assert default_regions_dir(tmp_path / "runbooks" / "x.yaml") == (tmp_path / "regions").resolve()
    monkeypatch.setenv("DR_REGIONS_DIR", str(CORPUS_REGIONS))
    assert default_regions_dir(tmp_path / "runbooks" / "x.yaml") == CORPUS_REGIONS


def test_display_path_is_relative_below_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "a" / "b.yaml") == "a/b.yaml"
    assert display_path(Path("/elsewhere/x.yaml")) == "/elsewhere/x.yaml"
