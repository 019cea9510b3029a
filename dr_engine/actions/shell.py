"""Provider-free command actions: ``shell.run`` (a mutation) and ``shell.verify`` (a health check).

Commands are argument lists run without a shell, so runbook values cannot inject shell
syntax. Every command is bounded by the step deadline.

Secrets (``${target.secrets.NAME}``) are accepted in ``command`` and ``env`` and reach the
child through its environment only, never its arguments (``/proc/PID/cmdline`` is readable by
every local user; ``/proc/PID/environ`` only by the owner): in ``env`` the variable holds the
value; in ``command`` the reference is replaced by ``$DR_SECRET_<SOURCE|TARGET>_<NAME>`` and
that variable is set, for a shell (``sh -c '...'``) or the program itself to read.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr

from dr_engine.actions.base import Action, ActionParams, StepContext, StepResult
from dr_engine.actions.registry import register
from dr_engine.capabilities import Capability
from dr_engine.errors import ProviderError, StepTimeout, TransientError, VerificationFailed
from dr_engine.model.substitution import SecretText, shown
from dr_engine.model.units import Duration
from dr_engine.providers import children

#: A command argument: text, or text holding secrets (passed as environment variables).
Argument = str | SecretStr


class RunParams(ActionParams):
    """Parameters of ``shell.run``."""

    command: Annotated[list[Argument], Field(
        min_length=1, description="argv, run without a shell; a secret reference becomes $DR_SECRET_<REGION>_<NAME>")]
    cwd: str | None = None
    env: dict[str, str | SecretStr] = Field(
        default_factory=dict, description="extra environment variables; values may be secrets")
    expect_exit: int = 0
    transient_exit_codes: list[int] = Field(
        default_factory=list, description="Exit codes that mean 'try again' (retried)"
    )


def child_command(params: RunParams) -> tuple[list[str], dict[str, str]]:
    """The argv and the extra environment of the child: every secret is in the environment only."""
    env: dict[str, str] = {}
    for key, value in params.env.items():
        env[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    argv: list[str] = []
    for arg in params.command:
        if isinstance(arg, SecretText):
            text, secrets = arg.template()
            argv.append(text)
            env.update(secrets)
        elif isinstance(arg, SecretStr):  # a secret built without its reference: still never in argv
            name = f"DR_SECRET_ARG_{len(argv)}"
            env[name] = arg.get_secret_value()
            argv.append("$" + name)
        else:
            argv.append(arg)
    return argv, env


def _execute(params: RunParams, ctx: StepContext) -> subprocess.CompletedProcess[str]:
    import os

    argv, extra = child_command(params)
    env = {**os.environ, **extra}
    try:
        # Its own session: the operator's first Ctrl-C must not kill it (dr_engine.providers.children).
        return children.run(argv, cwd=params.cwd, env=env, timeout=ctx.deadline.remaining())
    except subprocess.TimeoutExpired as exc:
        raise StepTimeout(
            f"command {shown(params.command[0])!r} exceeded the step deadline and was killed",
            hint="raise the step timeout or make the command faster",
        ) from exc
    except FileNotFoundError as exc:
        raise ProviderError(
            f"command not found: {shown(params.command[0])!r}", hint="install it or fix `command:`"
        ) from exc


@register
class Run(Action[RunParams]):
    """Run a command; a non-expected exit code fails the step.

    Secrets go in through the environment, never the arguments: in ``env`` the variable holds
    the secret; in ``command`` the reference becomes ``$DR_SECRET_<SOURCE|TARGET>_<NAME>`` (expand
    it with ``sh -c``). Records, logs and output show the secret masked.
    """

    name = "shell.run"
    capability = Capability.EXEC_RUN
    Params = RunParams
    example = "id: say-hello\naction: shell.run\nwith: {command: [echo, hello]}\n"

    def run(self, params: RunParams, ctx: StepContext) -> StepResult:
        """Run the command once; classify its exit code."""
        done = _execute(params, ctx)
        tail = (done.stderr or done.stdout).strip()[-500:]
        if done.returncode in params.transient_exit_codes:
            raise TransientError(f"command exited {done.returncode} (declared transient): {tail}")
        if done.returncode != params.expect_exit:
            raise ProviderError(
                f"command {shown(params.command[0])!r} exited {done.returncode}, expected {params.expect_exit}: {tail}",
                hint="see the step log for the full output",
            )
        return StepResult(summary=f"{shown(params.command[0])} exited {done.returncode}", facts={"exit": 0})

    def describe(self, params: RunParams) -> str:
        """Show the command line."""
        return " ".join(shown(arg) for arg in params.command)[:80]


class VerifyParams(ActionParams):
    """Parameters of ``shell.verify``."""

    command: Annotated[list[Argument], Field(
        min_length=1, description="argv; exit 0 means healthy; a secret reference becomes $DR_SECRET_<REGION>_<NAME>")]
    consecutive: Annotated[int, Field(ge=1, le=100)] = 1
    interval: Duration = Field(default=timedelta(seconds=1))


@register
class Verify(Action[VerifyParams]):
    """Health check by command: healthy once it exits 0 ``consecutive`` times in a row."""

    name = "shell.verify"
    capability = Capability.HEALTH_VERIFY
    Params = VerifyParams
    example = "id: app-healthy\naction: shell.verify\nwith: {command: [\"true\"], consecutive: 2, interval: 10ms}\n"

    def run(self, params: VerifyParams, ctx: StepContext) -> StepResult:
        """Probe until enough consecutive successes or the deadline."""
        streak = probes = 0
        last = ""
        while True:
            ctx.deadline.check(f"waiting for {params.consecutive} consecutive healthy probes")
            probes += 1
            try:
                done = _execute(RunParams(command=params.command), ctx)
                ok, last = done.returncode == 0, (done.stderr or done.stdout).strip()[-200:]
            except StepTimeout:
                # Keep the previous probe's output: a last probe cut short by the deadline must not
                # hide the real cause (e.g. "connection refused") from the error message.
                ok, last = False, f"probe timed out; previous: {last}" if last else "probe timed out"
            streak = streak + 1 if ok else 0
            if streak >= params.consecutive:
                return StepResult(
                    summary=f"{streak}/{params.consecutive} consecutive probes ok",
                    changed=False,
                    facts={"probes": probes},
                )
            if ctx.deadline.remaining() <= params.interval.total_seconds():
                raise VerificationFailed(
                    f"not healthy: {streak}/{params.consecutive} consecutive ok after {probes} probes; last: {last}",
                    hint="check the target service before shifting traffic",
                )
            ctx.clock.sleep(params.interval.total_seconds())

    def describe(self, params: VerifyParams) -> str:
        """Show the probe command."""
        return " ".join(shown(arg) for arg in params.command)[:80]
