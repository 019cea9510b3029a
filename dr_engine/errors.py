"""The whole dr-engine error taxonomy.

Every error dr-engine raises on purpose is a :class:`DrError`. A message says what failed,
where, and what to do next; the CLI prints it without a traceback (``--debug`` shows the
chained cause) and maps the class to an exit code.

```
DrError
├── ConfigError            load/validate time; file + line + field path; never retried
│   └── UnknownAction      lists the registered names
├── PlanError              cycle, dangling `after`, broken safety invariant
├── StepFailed             .step_id .action .attempts; always `raise ... from cause`
│   ├── PreconditionFailed  lag > RPO, target unhealthy, missing permission
│   ├── TransientError      the ONLY retryable class (throttling, 5xx, timeouts, resets)
│   ├── StepTimeout         deadline reached after retries
│   ├── ProviderError       permanent vendor failure (AccessDenied, terraform error)
│   ├── FencingFailed       the old primary could not be fenced -> halt
│   └── VerificationFailed  health not reached
├── LockHeld               another run holds the failover lock (names the holder)
└── RunStateError          a run id that does not exist or cannot be resumed/changed
```

Actions raise :class:`StepFailed` subclasses without knowing their step id; the engine fills
``step_id``/``action``/``attempts`` in when it records the failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation (model is the floor below; no import circle)
    from dr_engine.model.outcome import RpoObservation


class DrError(Exception):
    """Base class of every error dr-engine raises deliberately.

    ``hint`` tells the operator what to do next; it is printed under the message.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


@dataclass(frozen=True)
class Problem:
    """One located problem in a configuration file.

    ``line`` is 1-based and ``None`` when YAML gives no position (e.g. a missing key in an
    empty document). ``path`` is a field path such as ``steps[2].after[0]``.
    """

    file: str
    line: int | None
    path: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        """Return ``file:line: path: message`` (plus the hint on its own line)."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [part for part in (where, self.path) if part]
        head = ": ".join([*parts, self.message])
        return f"{head}\n  hint: {self.hint}" if self.hint else head


class ConfigError(DrError):
    """A runbook or region file is invalid. Never retried; exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, *, hint: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, path="", message=problems, hint=hint)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(p.render() for p in problems))

    def __str__(self) -> str:
        return self.message


class UnknownAction(ConfigError):
    """A step names an action that is not registered; the message lists close matches."""


class PlanError(DrError):
    """The runbook is well-formed but cannot be planned safely (cycle, invariant). Exit 2.

    Like :class:`ConfigError` it carries located ``problems`` (a plain message becomes one
    problem without a file), so every front end can print ``file:line: path: message``.
    """

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, *, hint: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, path="", message=problems, hint=hint)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(p.render() for p in problems))

    def __str__(self) -> str:
        return self.message


class StepFailed(DrError):
    """A step did not succeed. Always raised ``from`` the underlying cause."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        step_id: str | None = None,
        action: str | None = None,
        attempts: int = 0,
        rpo: RpoObservation | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.step_id = step_id
        self.action = action
        self.attempts = attempts
        #: What the step measured about data loss before failing (e.g. rows found missing): the
        #: run's RPO must include it even though the step did not succeed.
        self.rpo = rpo

    @property
    def kind(self) -> str:
        """The taxonomy name used in run records and reports (e.g. ``TransientError``)."""
        return type(self).__name__


class PreconditionFailed(StepFailed):
    """A gate refused to proceed: lag over the RPO, target unhealthy, permission missing."""


class TransientError(StepFailed):
    """Throttling, 5xx, timeouts, connection resets: the only class that is retried."""


class StepTimeout(StepFailed):
    """The step deadline was reached (after any retries)."""


class ProviderError(StepFailed):
    """A permanent failure reported by a vendor API or tool (AccessDenied, bad config)."""


class FencingFailed(StepFailed):
    """The old primary could not be fenced; promotion must not happen. The run halts."""


class VerificationFailed(StepFailed):
    """Health, DNS or data verification did not reach the expected state in time."""


class LockHeld(DrError):
    """Another run of the same application holds the failover lock."""

    def __init__(
        self,
        message: str,
        *,
        holder_run_id: str | None = None,
        holder: str | None = None,
        age_seconds: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.holder_run_id = holder_run_id
        self.holder = holder
        self.age_seconds = age_seconds


class RunStateError(DrError):
    """A run id that does not exist, or a run in a state that forbids the operation."""


__all__ = [
    "ConfigError",
    "DrError",
    "FencingFailed",
    "LockHeld",
    "PlanError",
    "PreconditionFailed",
    "Problem",
    "ProviderError",
    "RunStateError",
    "StepFailed",
    "StepTimeout",
    "TransientError",
    "UnknownAction",
    "VerificationFailed",
]
