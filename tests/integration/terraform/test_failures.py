"""Failures with the real CLI: held locks, bad config, timeouts, missing or too-old binaries."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from tf_support import REPO, STACKS, context, region

from dr_engine.actions.terraform import Apply, CheckState, CheckStateParams, StackParams
from dr_engine.errors import PreconditionFailed, ProviderError, StepTimeout
from dr_engine.providers.terraform.backend import ensure_state_backend, read_lock
from dr_engine.providers.terraform.cli import (
    StateLocked,
    TerraformEnv,
    build_env,
    find_terraform,
    s3_backend_config,
)
from dr_engine.testing.step_context import step_context

pytestmark = pytest.mark.integration


def _wait_for(predicate: object, what: str, seconds: float = 60.0) -> None:
    assert callable(predicate)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _holder(moto: str, tmp_path: Path, bucket: str, key: str, table: str) -> subprocess.Popen[bytes]:
    """Another process: a real `terraform apply` of a slow stack that holds the state lock."""
    tf_env = TerraformEnv(tmp_path / "holder", STACKS / "slow", "holder")
    tf_env.prepare()
    env = build_env(tf_env, {"TF_VAR_delay": "120"}, local_endpoint=True)
    config = s3_backend_config(bucket=bucket, key=key, region="us-west-2", endpoint=moto,
                               dynamodb_table=table, use_lockfile=False)
    terraform = str(find_terraform())
    subprocess.run([terraform, "init", "-input=false", "-no-color", "-reconfigure",
                    *[f"-backend-config={k}={v}" for k, v in config.items()]],
                   cwd=STACKS / "slow", env=env, check=True, capture_output=True, timeout=60)
    return subprocess.Popen([terraform, "apply", "-input=false", "-no-color", "-auto-approve"],
                            cwd=STACKS / "slow", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_a_lock_held_by_another_process_is_reported_then_broken_when_stale(moto_endpoint: str,
                                                                           tmp_path: Path) -> None:
    target = region(moto_endpoint)
    bucket, table = f"dr-tfstate-{target.name}", "tf-locks"
    key = f"slow/{target.name}/terraform.tfstate"
    ensure_state_backend(bucket=bucket, region="us-west-2", endpoint=moto_endpoint, dynamodb_table=table)
    backend = {"dynamodb_table": table, "key": key}
    holder = _holder(moto_endpoint, tmp_path, bucket, key, table)
    try:
        _wait_for(lambda: read_lock(bucket=bucket, state_key=key, region="us-west-2", endpoint=moto_endpoint,
                                    dynamodb_table=table) is not None, "the other process to take the lock")

        check = CheckStateParams.model_validate({"stack": str(STACKS / "slow"), "backend": backend})
        with pytest.raises(StateLocked) as live:
            CheckState().run(check, context(tmp_path, target))
        message = str(live.value)
        assert "is locked: held by" in message and "(Apply, terraform" in message
        assert "@" in live.value.lock.who and live.value.lock.id in message
        assert "wait for it" in (live.value.hint or "")
        assert isinstance(live.value, PreconditionFailed) and live.value.kind == "PreconditionFailed"

        # An apply waits at most lock_timeout, then fails with the holder and advice (no hang).
        apply = StackParams.model_validate({"stack": str(STACKS / "slow"), "backend": backend,
                                            "vars": {"delay": 0}, "lock_timeout": "1s"})
        with pytest.raises(StateLocked) as blocked:
            Apply().run(apply, context(tmp_path, target, timeout=60))
        assert blocked.value.lock.id == live.value.lock.id
        assert "force-unlock" in (blocked.value.hint or "")

        checks = CheckState().preflight(check, context(tmp_path, target))
        assert [c.ok for c in checks] == [False] and "locked" in checks[0].detail

        # A pre-flight plan is read-only: it neither waits for nor takes the state lock, so it
        # answers while a run holds the lock (and never makes a parallel check see a lock).
        ctx = step_context(state_dir=tmp_path / "state", target=target, timeout=60,
                           repo_root=REPO, preflight=True)
        planned = Apply().preflight(apply, ctx)
        assert [c.ok for c in planned] == [True, True], [(c.name, c.detail) for c in planned]
        assert planned[1].detail.startswith("apply would do:")
    finally:
        # The holder dies without releasing its lock, like a runner lost with its region.
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)

    stale = CheckStateParams.model_validate({"stack": str(STACKS / "slow"), "backend": backend, "stale_after": "0s"})
    with pytest.raises(StateLocked, match="stale holder") as still:
        CheckState().run(stale, context(tmp_path, target))
    assert "break_stale_lock: true" in (still.value.hint or "")

    breaking = stale.model_copy(update={"break_stale_lock": True})
    result = CheckState().run(breaking, context(tmp_path, target))
    assert result.changed is True and result.facts["lock_broken"] == live.value.lock.id
    assert read_lock(bucket=bucket, state_key=key, region="us-west-2", endpoint=moto_endpoint,
                     dynamodb_table=table) is None


def test_a_command_past_its_deadline_is_killed_and_reported(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    ensure_state_backend(bucket=f"dr-tfstate-{target.name}", region="us-west-2", endpoint=moto_endpoint)
    pidfile = tmp_path / "sleep.pid"
    params = StackParams.model_validate({"stack": str(STACKS / "slow"),
                                         "vars": {"delay": 300, "pidfile": str(pidfile)}})
    ctx = context(tmp_path, target, timeout=8)
    with pytest.raises(StepTimeout) as exc:
        Apply().run(params, ctx)
    assert "did not finish within" in exc.value.message and "terraform apply" in exc.value.message
    assert "check_state" in (exc.value.hint or "")
    # The provisioner's process (same process group) is gone too.
    pid = int(pidfile.read_text().strip())
    _wait_for(lambda: not _alive(pid), "the provisioner process to exit", seconds=20)
    # Interrupted (not killed) terraform released its lock on the way out.
    assert read_lock(bucket=f"dr-tfstate-{target.name}", state_key=f"slow/{target.name}/terraform.tfstate",
                     region="us-west-2", endpoint=moto_endpoint, use_lockfile=True) is None


def test_a_bad_configuration_gives_a_readable_error(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    ensure_state_backend(bucket=f"dr-tfstate-{target.name}", region="us-west-2", endpoint=moto_endpoint)
    with pytest.raises(ProviderError) as exc:
        Apply().run(StackParams(stack=str(STACKS / "broken")), context(tmp_path, target))
    message = str(exc.value)
    assert "Unsupported argument" in message
    assert "main.tf line 10" in message
    assert "Traceback" not in message
    assert "fix the stack's configuration" in (exc.value.hint or "")


def test_a_missing_state_bucket_gives_advice(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    with pytest.raises(ProviderError, match="does not exist") as exc:
        Apply().run(StackParams(stack="stacks/ledger", vars={"app_address": "127.0.2.9"}),
                    context(tmp_path, target))
    assert "TARGET region" in (exc.value.hint or "")


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(PreconditionFailed, match="no terraform CLI found") as exc:
        find_terraform(str(tmp_path / "no-terraform-here"))
    assert "install Terraform" in (exc.value.hint or "")
    with pytest.raises(PreconditionFailed, match="no terraform CLI found"):
        find_terraform(env={"PATH": str(tmp_path), "DR_TERRAFORM_BIN": str(tmp_path / "none")})
    target = region("http://127.0.0.1:9")
    with pytest.raises(PreconditionFailed, match="no terraform CLI found"):
        Apply().run(StackParams(stack="stacks/ledger", terraform_bin=str(tmp_path / "none")),
                    context(tmp_path, target))


def test_a_stack_needing_a_newer_terraform_is_refused_clearly(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    ensure_state_backend(bucket=f"dr-tfstate-{target.name}", region="us-west-2", endpoint=moto_endpoint)
    with pytest.raises(PreconditionFailed) as exc:
        Apply().run(StackParams(stack=str(STACKS / "too-new")), context(tmp_path, target))
    assert "is older than" in exc.value.message and ">= 99.0" in exc.value.message
    assert "install Terraform" in (exc.value.hint or "")


def test_secret_variables_never_reach_the_step_log(moto_endpoint: str, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    target = region(moto_endpoint)
    ensure_state_backend(bucket=f"dr-tfstate-{target.name}", region="us-west-2", endpoint=moto_endpoint)
    canary = "canary-Secret-4711"
    ctx = context(tmp_path, target, secrets={f"{target.name}.db": canary})
    params = StackParams.model_validate({"stack": str(STACKS / "secretive"), "secret_vars": {"db_password": "db"},
                                         "timeout": "2m"})
    with caplog.at_level(logging.INFO, logger="dr_engine.step"):
        result = Apply().run(params, ctx)
    assert result.changed is True
    assert "connect with ***" in caplog.text
    assert canary not in caplog.text
    assert canary not in ctx.state_dir.terraform_dir.joinpath("data").as_posix()
    var_files = list(ctx.state_dir.terraform_dir.rglob("dr.tfvars.json"))
    assert var_files and all(canary not in f.read_text() for f in var_files)
    assert timedelta(minutes=2) == params.timeout
