"""Running one terraform command: a bounded, killable subprocess in a controlled environment.

This is the swappable part of the Terraform adapter. :class:`CommandRunner` is the protocol;
:class:`SubprocessRunner` is the default. Each command runs in its own process group so
that a timeout stops terraform *and* what it spawned (``local-exec`` provisioners, provider
plugins): first SIGINT, which terraform handles by stopping cleanly and releasing the state
lock, then SIGKILL after a short grace period.

Why not python-terraform's own runner: ``Terraform.cmd`` has no timeout; its
``synchronous=False`` escape hatch also appends a bogus ``-synchronous=false`` flag to the
command line (measured with python-terraform 0.10.1), it cannot be given an environment
other than ``os.environ``, and it does not start a new process group. So we use
python-terraform to build command lines and run them here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dr_engine.providers import children

#: Seconds terraform gets after SIGINT to stop cleanly (and release its lock) before SIGKILL.
INTERRUPT_GRACE = 5.0

MASK = "***"
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)(@)")


@dataclass(frozen=True)
class CommandResult:
    """What one finished command returned (output already decoded)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """stderr and stdout together, stderr first (terraform writes diagnostics there)."""
        return "\n".join(part for part in (self.stderr.strip(), self.stdout.strip()) if part)


class CommandTimedOut(Exception):
    """A command ran past its timeout and was stopped (interrupted, then killed)."""

    def __init__(self, argv: Sequence[str], timeout: float, output: str, killed: bool) -> None:
        super().__init__(f"{' '.join(argv[:2])} exceeded {timeout:.1f}s")
        self.argv = tuple(argv)
        self.timeout = timeout
        self.output = output
        #: True when SIGINT was not enough and the process group had to be killed.
        self.killed = killed


class CommandRunner(Protocol):
    """Runs one command to completion within ``timeout`` seconds or raises CommandTimedOut."""

    def __call__(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
    ) -> CommandResult:
        """Run ``argv`` in ``cwd`` with exactly ``env``."""
        ...


class SubprocessRunner:
    """The default runner: ``subprocess.Popen`` in a new session, bounded by ``timeout``."""

    def __init__(self, grace: float = INTERRUPT_GRACE) -> None:
        self.grace = grace

    def __call__(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
    ) -> CommandResult:
        """Run the command; on timeout interrupt then kill its whole process group."""
        started = time.monotonic()
        proc: subprocess.Popen[bytes] = children.spawn(  # argv list built by us, no shell
            argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        # Tracked: an abandoned run SIGINTs it, and terraform then releases its state lock.
        with children.tracked(proc):
            try:
                out, err = proc.communicate(timeout=max(timeout, 0.001))
            except subprocess.TimeoutExpired:
                out, err, killed = self._stop(proc)
                raise CommandTimedOut(argv, timeout, _decode(err) + "\n" + _decode(out), killed) from None
        return CommandResult(tuple(argv), proc.returncode, _decode(out), _decode(err), time.monotonic() - started)

    def _stop(self, proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes, bool]:
        """SIGINT the group (terraform then releases its lock), SIGKILL it if still alive."""
        _signal_group(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=self.grace)
            return out or b"", err or b"", False
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return out or b"", err or b"", True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The group id is the pid because of start_new_session; it may already be gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


class Redactor:
    """Masks known secret values and URL passwords in text bound for logs and messages."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Very short values would mask innocent text everywhere; they are not credentials.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
