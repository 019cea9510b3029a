"""Terraform actions: ``terraform.check_state``, ``terraform.plan`` and ``terraform.apply``.

All three work on one stack directory in the TARGET region's scope: its state lives in an S3
bucket in the target region (on the region's ``aws.endpoint_url`` when set, e.g. moto), one
state key per region (``<stack>/<region>/terraform.tfstate`` by default) and optionally a
workspace. State that lives only in the source region is lost with it, exactly when the
failover needs it; per-region state in the region being activated has no such dependency.

Every stack receives, as ``TF_VAR_*`` environment variables that a stack may declare or
ignore: ``dr_region`` (target region name), ``dr_aws_region``, ``dr_run_id``, ``dr_mode``.
``vars:`` are written to a private JSON var file; ``secret_vars:`` (variable -> target
region secret name) go through the environment only and are masked in the step log.

In a drill, the state goes to the workspace ``drill_workspace`` (default ``dr-drill``) so a
drill never touches the target region's real state; drill cleanup destroys what the drill
applied there and deletes the workspace (:mod:`dr_engine.drill.variants.terraform`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.clock import Deadline
from dr_engine.errors import DrError, PreconditionFailed
from dr_engine.evidence.statedir import StateDir
from dr_engine.model.units import Duration

if TYPE_CHECKING:
    from dr_engine.providers.terraform.cli import PlanSummary, Terraform

_NAME = r"^[A-Za-z0-9_.-]+$"
#: IAM actions on the state backend (the stack's own resources need their own permissions).
STATE_PERMISSIONS = (
    "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
    "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
)


class BackendParams(ActionParams):
    """Where the stack's state lives. Unset fields default from the target region."""

    bucket: str | None = Field(default=None, description="State bucket (default dr-tfstate-<target region>)")
    key: str | None = Field(default=None, description="State key (default <stack>/<target region>/terraform.tfstate)")
    region: str | None = Field(default=None, description="Bucket region (default: the target's aws.region)")
    endpoint: str | None = Field(default=None, description="S3/DynamoDB endpoint (default: target's aws.endpoint_url)")
    dynamodb_table: str | None = Field(default=None, description="DynamoDB lock table (else use_lockfile)")
    use_lockfile: bool | None = Field(default=None, description="S3-native locking (default: when no table)")


class StackParams(ActionParams):
    """Parameters shared by the terraform actions."""

    stack: str = Field(description="Stack directory (relative to the directory dr runs in, the repo root)")
    workspace: Annotated[str | None, Field(pattern=_NAME, description="Workspace in the target's state")] = None
    drill_workspace: Annotated[str, Field(pattern=_NAME, description="Workspace used by drills")] = "dr-drill"
    backend: BackendParams = Field(default_factory=BackendParams)
    vars: dict[str, Any] = Field(default_factory=dict, description="Terraform variables")
    secret_vars: dict[str, str] = Field(default_factory=dict, description="variable -> target region secret name")
    var_files: list[str] = Field(default_factory=list, description="Extra -var-file paths (relative to the stack)")
    timeout: Duration | None = Field(default=None, description="Budget for all terraform commands of the step")
    lock_timeout: Duration = Field(default=timedelta(seconds=5), description="How long to wait for a held lock")
    terraform_bin: str | None = Field(default=None, description="terraform CLI (default: $DR_TERRAFORM_BIN, PATH)")


class PlanParams(StackParams):
    """Parameters of ``terraform.plan``."""

    fail_on_changes: bool = Field(default=False, description="Fail the step when the stack drifted from code")


class CheckStateParams(StackParams):
    """Parameters of ``terraform.check_state``."""

    stale_after: Duration = Field(default=timedelta(minutes=10), description="A lock older than this is stale")
    break_stale_lock: bool = Field(default=False, description="force-unlock a stale lock (recorded)")
    create_missing: bool = Field(default=False, description="Create a missing state bucket/lock table")


@dataclass
class _Stack:
    """A prepared terraform working context for one step."""

    tf: Terraform
    params: StackParams
    bucket: str
    key: str
    region: str
    endpoint: str | None
    workspace: str | None
    lockfile: bool
    var_file: Path

    @property
    def where(self) -> str:
        ws = f" workspace {self.workspace}" if self.workspace else ""
        return f"s3://{self.bucket}/{self.key}{ws} ({self.region})"

    def facts(self) -> dict[str, Any]:
        return {"stack": self.params.stack, "state": self.where, "terraform": self.tf.version_text(),
                "locking": "s3-lockfile" if self.lockfile else f"dynamodb:{self.params.backend.dynamodb_table}"}


def resolve_stack_dir(params: StackParams, ctx: StepContext) -> Path:
    """Resolve ``stack:``: absolute; else against the runbook's repository root (``ctx.runbook_location``), the cwd."""
    candidates = [Path(params.stack)]
    if not candidates[0].is_absolute():
        candidates = [base / params.stack for base in [*ctx.runbook_location.bases(), Path.cwd()]]
    for path in candidates:
        if path.is_dir() and any(path.glob("*.tf")):
            return path.resolve()
    raise PreconditionFailed(f"terraform stack {params.stack!r} not found (no *.tf files in "
                             f"{', '.join(str(p) for p in dict.fromkeys(candidates))})",
                             hint="`stack:` is relative to the repository root (the directory dr runs in)")


def _work_root(ctx: StepContext) -> Path:
    """Where terraform's data dirs live: the run's state dir (pre-flight: the default state dir)."""
    if ctx.preflight:
        # dr plan's contexts point state_dir at the runbook folder, which must stay clean.
        return StateDir().terraform_dir
    return ctx.state_dir.terraform_dir


def _budget(params: StackParams, ctx: StepContext) -> Deadline:
    return Deadline(ctx.clock, params.timeout.total_seconds() if params.timeout else None)


def _open(params: StackParams, ctx: StepContext, *, init: bool = True) -> _Stack:
    """Find the CLI, check its version, ``init`` against the target region's backend."""
    from dr_engine.providers.terraform.cli import (
        LOCKFILE_VERSION,
        MIN_VERSION,
        Terraform,
        TerraformEnv,
        find_terraform,
    )
    from dr_engine.providers.terraform.process import Redactor

    stack_dir = resolve_stack_dir(params, ctx)
    backend = params.backend
    aws = ctx.target.aws
    region = backend.region or (aws.region if aws else None)
    if region is None:
        raise PreconditionFailed(f"no AWS region for the state of {params.stack} in {ctx.target.name}",
                                 hint=f"set aws.region in regions/{ctx.target.name}.yaml or backend.region")
    endpoint = backend.endpoint or (aws.endpoint_url if aws else None)
    workspace = params.drill_workspace if ctx.drill else params.workspace
    lockfile = backend.use_lockfile if backend.use_lockfile is not None else backend.dynamodb_table is None
    secrets = {name: ctx.secret(ctx.target, secret).get_secret_value() for name, secret in params.secret_vars.items()}
    extra_env = {"TF_VAR_dr_region": ctx.target.name, "TF_VAR_dr_aws_region": region,
                 "TF_VAR_dr_run_id": ctx.run_id, "TF_VAR_dr_mode": ctx.mode.value}
    extra_env.update({f"TF_VAR_{name}": value for name, value in secrets.items()})
    if aws is not None and aws.profile:
        extra_env["AWS_PROFILE"] = aws.profile
    budget = _budget(params, ctx)
    scope = ctx.target.name + (f"-{workspace}" if workspace else "")
    root = _work_root(ctx)
    step = ctx.step_id
    tf = Terraform(
        binary=find_terraform(params.terraform_bin),
        tf_env=TerraformEnv(root, stack_dir, scope, ("preflight-" if ctx.preflight else "") + step),
        remaining=lambda: min(ctx.deadline.remaining(), budget.remaining()), now=ctx.clock.now, log=ctx.log,
        extra_env=extra_env, local_endpoint=endpoint is not None, redact=Redactor(secrets.values()),
    )
    tf.require(MIN_VERSION, "the S3 state backend settings dr-engine uses")
    if lockfile:
        tf.require(LOCKFILE_VERSION, "S3-native state locking (or set backend.dynamodb_table)")
    stack = _Stack(tf=tf, params=params, bucket=backend.bucket or f"dr-tfstate-{ctx.target.name}",
                   key=backend.key or f"{stack_dir.name}/{ctx.target.name}/terraform.tfstate", region=region,
                   endpoint=endpoint, workspace=workspace, lockfile=lockfile,
                   var_file=tf.tf_env.data_dir / "dr.tfvars.json")
    if init:
        _init(stack)
    return stack


def _init(stack: _Stack) -> None:
    from dr_engine.providers.terraform.cli import s3_backend_config

    stack.tf.init(s3_backend_config(bucket=stack.bucket, key=stack.key, region=stack.region,
                                    endpoint=stack.endpoint, dynamodb_table=stack.params.backend.dynamodb_table,
                                    use_lockfile=stack.lockfile))
    if stack.workspace:
        stack.tf.select_workspace(stack.workspace)


def _var_files(stack: _Stack) -> list[str]:
    stack.var_file.write_text(json.dumps(stack.params.vars), encoding="utf-8")
    stack.var_file.chmod(0o600)
    return [str(stack.var_file), *stack.params.var_files]


def _lock_wait(params: StackParams, ctx: StepContext) -> float:
    return min(params.lock_timeout.total_seconds(), max(ctx.deadline.remaining() - 1, 0))


def destroy_drill_workspace(params: StackParams, ctx: StepContext) -> str:
    """Destroy everything in the drill workspace of ``params``'s stack, then delete the workspace.

    ``ctx`` must be a drill context (its terraform commands select ``drill_workspace``). Used by
    drill cleanup only; never on a real workspace.
    """
    if not ctx.drill:
        raise PreconditionFailed(f"refusing to destroy {params.stack} outside a drill",
                                 hint="only drill cleanup destroys, and only the drill workspace")
    stack = _open(params, ctx)
    built = stack.tf.has_resources()
    if built:  # a workspace only checked or planned holds nothing (and its variables may be incomplete)
        stack.tf.destroy(var_files=_var_files(stack), lock_timeout=_lock_wait(params, ctx))
    deleted = stack.tf.delete_workspace(params.drill_workspace, then_select=params.workspace or "default")
    return (f"{'destroyed' if built else 'nothing to destroy in'} stack {Path(params.stack).name} at {stack.where}"
            + ("; workspace deleted" if deleted else ""))


def _plan(stack: _Stack, ctx: StepContext) -> PlanSummary:
    params = stack.params
    files = _var_files(stack)
    lock_wait = _lock_wait(params, ctx)
    # Pre-flight plans are read-only: they must not take the state lock (a parallel check_state
    # would report the state as locked, and a real run would have to wait for the check).
    return stack.tf.plan(var_files=files, lock_timeout=lock_wait, out=stack.tf.tf_env.data_dir / "dr.tfplan",
                         lock=not ctx.preflight)


def _failed_check(name: str, exc: DrError) -> PreflightCheck:
    return PreflightCheck(name, False, exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))


def _string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@register
class Plan(Action[PlanParams]):
    """Plan a stack in the target region (read-only): counts adds/changes/destroys, detects drift."""

    name = "terraform.plan"
    capability = Capability.STACK_CHECK
    Params = PlanParams
    permissions = STATE_PERMISSIONS
    example = ("id: ledger-drift\naction: terraform.plan\n"
               "with: {stack: stacks/ledger, vars: {app_address: 127.0.2.1}, fail_on_changes: true}\n")

    def run(self, params: PlanParams, ctx: StepContext) -> StepResult:
        """init + plan; with ``fail_on_changes`` a drifted stack fails the step."""
        stack = _open(params, ctx)
        summary = _plan(stack, ctx)
        facts = {**stack.facts(), "add": summary.add, "change": summary.change, "destroy": summary.destroy,
                 "changes": summary.changes, "addresses": list(summary.addresses), "drifted": list(summary.drifted)}
        if summary.changes:
            ctx.log.warning("stack %s differs from its code in %s: %s", params.stack, stack.where, summary.describe())
        if summary.changes and params.fail_on_changes:
            raise PreconditionFailed(
                f"stack {params.stack} in {ctx.target.name} drifted from its code: {summary.describe()}"
                + (f" [{', '.join(summary.addresses)}]" if summary.addresses else ""),
                hint="apply the stack (terraform.apply) or bring the code back in line with the infrastructure",
            )
        return StepResult(
            summary=("drift: " if summary.changes else "in sync: ") + summary.describe(),
            changed=False,
            outputs={"add": str(summary.add), "change": str(summary.change), "destroy": str(summary.destroy),
                     "drift": "true" if summary.changes else "false"},
            facts=facts,
        )

    def preflight(self, params: PlanParams, ctx: StepContext) -> list[PreflightCheck]:
        """For ``dr plan``: CLI usable, backend reachable, and no drift in the target region."""
        try:
            stack = _open(params, ctx)
        except DrError as exc:
            return [_failed_check(f"terraform {params.stack}: CLI and state backend", exc)]
        checks = [PreflightCheck(f"terraform {params.stack}: state backend {stack.where}", True,
                                 f"terraform {stack.tf.version_text()}")]
        try:
            summary = _plan(stack, ctx)
        except DrError as exc:
            return [*checks, _failed_check(f"terraform {params.stack}: plan", exc)]
        detail = summary.describe() + (f" [{', '.join(summary.addresses)}]" if summary.addresses else "")
        return [*checks, PreflightCheck(f"terraform {params.stack}: no drift in {ctx.target.name}",
                                        not summary.changes, detail)]

    def describe(self, params: PlanParams) -> str:
        """The stack being planned."""
        return f"plan {params.stack}" + (" (fail on drift)" if params.fail_on_changes else "")


@register
class Apply(Action[StackParams]):
    """Apply a stack in the target region; idempotent. Terraform outputs become step outputs."""

    name = "terraform.apply"
    capability = Capability.STACK_APPLY
    Params = StackParams
    permissions = STATE_PERMISSIONS
    example = ("id: apply-ledger\naction: terraform.apply\n"
               "with: {stack: stacks/ledger, vars: {app_address: 127.0.2.1}, timeout: 5m}\n")

    def run(self, params: StackParams, ctx: StepContext) -> StepResult:
        """Plan first; apply the saved plan only when it has changes; read the outputs."""
        stack = _open(params, ctx)
        summary = _plan(stack, ctx)
        if summary.changes:
            ctx.log.info("applying %s in %s: %s", params.stack, stack.where, summary.describe())
            stack.tf.apply_plan(stack.tf.tf_env.data_dir / "dr.tfplan", lock_timeout=_lock_wait(params, ctx))
        else:
            ctx.log.info("stack %s already matches its code in %s: nothing to apply", params.stack, stack.where)
        raw = stack.tf.outputs()
        outputs = {name: _string(item.get("value")) for name, item in raw.items() if not item.get("sensitive")}
        withheld = sorted(name for name, item in raw.items() if item.get("sensitive"))
        return StepResult(
            summary=(f"applied {summary.describe()}" if summary.changes else "no changes") + f" in {stack.where}",
            changed=summary.changes,
            outputs=outputs,
            facts={**stack.facts(), "add": summary.add, "change": summary.change, "destroy": summary.destroy,
                   "addresses": list(summary.addresses), "outputs": sorted(outputs), "sensitive_outputs": withheld},
        )

    def preflight(self, params: StackParams, ctx: StepContext) -> list[PreflightCheck]:
        """For ``dr plan``: CLI usable, backend reachable/unlocked; shows what apply would do."""
        try:
            stack = _open(params, ctx)
            summary = _plan(stack, ctx)
        except DrError as exc:
            return [_failed_check(f"terraform {params.stack}: CLI, state backend and plan", exc)]
        # Creating what is missing is the apply's job; existing resources that would be changed
        # or destroyed mean the target drifted from the code, which `dr plan` must show.
        drifted = bool(summary.change or summary.destroy or summary.drifted)
        detail = summary.describe() + (f" [{', '.join(summary.addresses)}]" if summary.addresses else "")
        return [PreflightCheck(f"terraform {params.stack}: state backend {stack.where}", True,
                               f"terraform {stack.tf.version_text()}"),
                PreflightCheck(f"terraform {params.stack}: existing resources match the code", not drifted,
                               f"apply would do: {detail}")]

    def describe(self, params: StackParams) -> str:
        """The stack being applied."""
        return f"apply {params.stack}" + (f" workspace {params.workspace}" if params.workspace else "")


@register
class CheckState(Action[CheckStateParams]):
    """Check the target region's state backend: reachable, and not locked (names holder and age)."""

    name = "terraform.check_state"
    capability = Capability.STACK_CHECK
    Params = CheckStateParams
    permissions = (*STATE_PERMISSIONS, "s3:CreateBucket", "s3:PutBucketVersioning", "dynamodb:CreateTable")
    example = "id: state-ready\naction: terraform.check_state\nwith: {stack: stacks/ledger, stale_after: 15m}\n"

    def run(self, params: CheckStateParams, ctx: StepContext) -> StepResult:
        """Optionally create the backend, init, read the lock; break it only if stale and allowed."""
        stack = _open(params, ctx, init=False)
        created: list[str] = []
        if params.create_missing:
            from dr_engine.providers.terraform.backend import ensure_state_backend

            created = ensure_state_backend(bucket=stack.bucket, region=stack.region, endpoint=stack.endpoint,
                                           dynamodb_table=params.backend.dynamodb_table,
                                           timeout=ctx.deadline.remaining(cap=10))
            for item in created:
                ctx.log.warning("created missing state backend resource %s", item)
        _init(stack)
        broken = self._check_lock(stack, params, ctx)
        facts = {**stack.facts(), "created": created, "lock_broken": broken}
        summary = f"state backend {stack.where} reachable and unlocked"
        if broken:
            summary += f" (stale lock {broken} broken)"
        return StepResult(summary=summary, changed=bool(created or broken), outputs={"locked": "false"}, facts=facts)

    def _check_lock(self, stack: _Stack, params: CheckStateParams, ctx: StepContext, *, may_break: bool = True) -> str:
        from dr_engine.providers.terraform.backend import read_lock, state_object_key
        from dr_engine.providers.terraform.cli import StateLocked

        lock = read_lock(bucket=stack.bucket, state_key=state_object_key(stack.key, stack.workspace),
                         region=stack.region, endpoint=stack.endpoint,
                         dynamodb_table=params.backend.dynamodb_table, use_lockfile=stack.lockfile,
                         timeout=ctx.deadline.remaining(cap=10))
        if lock is None:
            return ""
        now = ctx.clock.now()
        age = lock.age_seconds(now)
        stale = age is not None and age >= params.stale_after.total_seconds()
        if stale and params.break_stale_lock and may_break:
            ctx.log.warning("breaking stale terraform lock of %s: %s", stack.where, lock.describe(now))
            stack.tf.force_unlock(lock.id)
            return lock.id
        limit = f"{params.stale_after.total_seconds():g}s"
        if stale:
            raise StateLocked(
                f"terraform state {stack.where} is locked by a stale holder: {lock.describe(now)} (older than {limit})",
                lock=lock,
                hint=f"make sure {lock.who or 'the holder'} is no longer running, then `terraform force-unlock "
                     f"{lock.id}` or set `break_stale_lock: true` on this step",
            )
        raise StateLocked(
            f"terraform state {stack.where} is locked: {lock.describe(now)}", lock=lock,
            hint=f"another terraform run is using this state; wait for it (the lock counts as stale after {limit})",
        )

    def preflight(self, params: CheckStateParams, ctx: StepContext) -> list[PreflightCheck]:
        """For ``dr plan``: the same checks, changing nothing (no creation, no unlocking)."""
        name = f"terraform {params.stack}: state backend reachable and unlocked"
        try:
            stack = _open(params, ctx)
            self._check_lock(stack, params, ctx, may_break=False)
        except DrError as exc:
            if params.create_missing and "does not exist" in exc.message:
                return [PreflightCheck(name, True, "state backend missing; this step creates it (create_missing)")]
            return [_failed_check(name, exc)]
        return [PreflightCheck(name, True, f"{stack.where}, terraform {stack.tf.version_text()}")]

    def describe(self, params: CheckStateParams) -> str:
        """The stack whose state is checked."""
        return f"state of {params.stack}"
