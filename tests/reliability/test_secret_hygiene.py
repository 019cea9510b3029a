"""Secret hygiene: canaries planted as passwords, TSIG keys, AWS secret keys and DSN passwords.

They must never appear in captured stdout/stderr, Python logging, Prefect's database (run
logs, artifacts, parameters), run records, audit logs, reports or evidence packs.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from reliability_kit import REPO, quiet_env

from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.testing.runbooks import plan_from_steps
from dr_engine.world.loopback import free_port

pytestmark = pytest.mark.integration

DR = str(Path(sys.executable).parent / "dr")
PG_CANARY = "PgCanary7f3a9e1dPw"
AWS_CANARY = "AwsCanarySecretKey0b5c9d2e8f"
TOKEN_CANARY = "TokenCanary4c1e77"


def _leaks(canaries: dict[str, str], root: Path) -> list[str]:
    """Every file under ``root`` (zip members included) that holds a canary, as 'file: which'."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [(str(path), path.read_bytes())]
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as pack:
                blobs += [(f"{path}!{name}", pack.read(name)) for name in pack.namelist()]
        for where, blob in blobs:
            for what, value in canaries.items():
                if value.encode() in blob:
                    found.append(f"{where}: {what}")
    return found


def _text_leaks(canaries: dict[str, str], where: str, text: str) -> list[str]:
    return [f"{where}: {what}" for what, value in canaries.items() if value in text]


def test_no_canary_anywhere_after_a_real_failover(tmp_path: Path, migrated_home: Path) -> None:
    from world_kit import started_world

    with started_world(pg_password=PG_CANARY) as world:
        ends = world.endpoints()
        assert ends.tsig_secret is not None
        canaries = {"pg password": PG_CANARY, "TSIG key": ends.tsig_secret.get_secret_value(),
                    "AWS secret key": AWS_CANARY}
        # A DSN password too: the source's DSN carries the password inline (the source is frozen,
        # so the lag check and the fence report on that DSN).
        source_yaml = world.regions_dir / f"{world.config.source}.yaml"
        region = yaml.safe_load(source_yaml.read_text())
        region["params"]["pg_dsn"] = region["params"]["pg_dsn"].replace("postgres@", f"postgres:{PG_CANARY}@")
        source_yaml.write_text(yaml.safe_dump(region, sort_keys=False))

        work = tmp_path / "work"
        (work / "runbooks").mkdir(parents=True)
        (work / "stacks").symlink_to(REPO / "stacks")
        shutil.copy(REPO / "runbooks" / "core-banking.yaml", work / "runbooks")
        home = tmp_path / "prefect-home"
        shutil.copytree(migrated_home, home)
        state = tmp_path / "state"
        env = {**quiet_env(home), "DR_REGIONS_DIR": str(world.regions_dir), "PREFECT_LOGGING_LEVEL": "DEBUG",
               "AWS_ACCESS_KEY_ID": "AKIACANARYACCESSKEY1", "AWS_SECRET_ACCESS_KEY": AWS_CANARY,
               "DR_STATE_DIR": str(state)}
        world.start_load()
        world.fail_region(world.config.source)

        def dr(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([DR, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL, check=False)

        outputs = [dr("failover", "core-banking", "--yes", "--reason", "hygiene")]
        assert outputs[0].returncode == 0, outputs[0].stdout + outputs[0].stderr
        (run_dir,) = list((state / "runs").iterdir())
        outputs += [dr("show", run_dir.name), dr("show", run_dir.name, "--output", "json"),
                    dr("show", run_dir.name, "--rebuild"), dr("runs", "--output", "json"),
                    dr("report", run_dir.name, "-f", "md", "-f", "json", "-f", "html"),
                    dr("evidence", run_dir.name, "-o", str(state / "evidence.zip")),
                    dr("audit", "verify", run_dir.name)]
        for done in outputs:
            assert done.returncode == 0, [*done.args, done.stdout, done.stderr]
        assert (state / "evidence.zip").is_file()
        problems = _leaks(canaries, state) + _leaks(canaries, home)
        for n, done in enumerate(outputs):
            problems += _text_leaks(canaries, f"{done.args[1]}#{n} stdout", done.stdout)
            problems += _text_leaks(canaries, f"{done.args[1]}#{n} stderr", done.stderr)
        assert problems == []
        # The canaries really were in play: the run used the password and the TSIG key.
        assert (state / "runs" / run_dir.name / "run.json").read_text().count('"succeeded"') >= 13


def test_secrets_in_failing_steps_stay_out_of_messages_logs_and_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A secret handed to a command (which echoes it back), and a DSN password in a failing step, never surface."""
    monkeypatch.setenv("DR_TEST_WEST_TOKEN", TOKEN_CANARY)
    port = free_port("127.0.0.1")  # nothing listens: the connection is refused
    canaries = {"DSN password": PG_CANARY, "token": TOKEN_CANARY}
    steps = f"""
- id: leaky-command
  action: shell.run
  with:
    command: [sh, -c, 'echo "login failed with token $TOKEN" >&2; exit 75']
    env: {{TOKEN: "${{target.secrets.token}}"}}
    transient_exit_codes: [75]
  retry: {{attempts: 2, backoff: 10ms}}
- id: db
  action: postgres.verify_writable
  with: {{dsn: "postgresql://postgres:{PG_CANARY}@127.0.0.1:{port}/ledger", interval: 50ms}}
  after: [leaky-command]
  timeout: 1s
"""
    caplog.set_level(logging.DEBUG)
    plan = plan_from_steps(tmp_path / "rb", steps + "- id: healthy\n  action: shell.verify\n"
                           "  with: {command: ['true']}\n  after: [db]\n", name="hygiene")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1))
    # The command gets the secret in its environment, fails quoting it (twice: one retry), and
    # the record says so with the value masked.
    assert record.status is RunStatus.FAILED and record.halted_at_step == "leaky-command"
    assert record.error is not None and "login failed with token ***" in record.error.message
    assert record.step("leaky-command").attempts == 2
    problems = _leaks(canaries, state) + _text_leaks(canaries, "logging", caplog.text)
    problems += _text_leaks(canaries, "error", record.error.message + (record.error.hint or ""))

    # The DSN password: the same runbook with the command fixed, so the database step runs and fails.
    fixed = steps.replace('    env: {TOKEN: "${target.secrets.token}"}\n', "")
    plan2 = plan_from_steps(tmp_path / "rb2", fixed.replace("exit 75", "exit 0") + "- id: healthy\n"
                            "  action: shell.verify\n  with: {command: ['true']}\n  after: [db]\n", name="hygiene2")
    record2 = start_run(plan2, RunOptions(state_dir=state, concurrency=1))
    assert record2.halted_at_step == "db" and record2.error is not None
    problems += _leaks(canaries, state) + _text_leaks(canaries, "logging", caplog.text)
    problems += _text_leaks(canaries, "error", record2.error.message + (record2.error.hint or ""))
    assert problems == []
