"""Live progress of a run: callbacks the engine calls as the run advances.

Subclass :class:`Progress` and override what you need (the CLI renders a rich live table).
The engine calls these under its state lock, one at a time, possibly from worker threads; keep
them fast and never raise from them (exceptions are logged and ignored).
"""

from __future__ import annotations

from dr_engine.evidence.record import RunRecord, StepError, StepRecord


class Progress:
    """No-op base class of progress listeners."""

    def run_started(self, record: RunRecord) -> None:
        """The run (or a resume of it) began; ``record.steps`` lists every step."""

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        """``step`` started its first attempt."""

    def step_retrying(self, record: RunRecord, step: StepRecord, attempt: int, error: StepError,
                      wait_seconds: float) -> None:
        """Attempt ``attempt`` of ``step`` failed transiently; the next one starts after the wait."""

    def step_finished(self, record: RunRecord, step: StepRecord) -> None:
        """``step`` succeeded, failed or was skipped (see ``step.status``)."""

    def run_interrupted(self, record: RunRecord) -> None:
        """A stop signal arrived: no new step starts; running ones finish within the grace."""

    def run_finished(self, record: RunRecord) -> None:
        """The run stopped; ``record.status`` says how."""


class RecordingProgress(Progress):
    """Keeps ``(event, step id)`` pairs; handy in tests and for simple logging."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []

    def run_started(self, record: RunRecord) -> None:
        """Record it."""
        self.events.append(("run_started", None))

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        """Record it."""
        self.events.append(("step_started", step.id))

    def step_retrying(self, record: RunRecord, step: StepRecord, attempt: int, error: StepError,
                      wait_seconds: float) -> None:
        """Record it."""
        self.events.append(("step_retrying", step.id))

    def step_finished(self, record: RunRecord, step: StepRecord) -> None:
        """Record it."""
        self.events.append((f"step_{step.status.value}", step.id))

    def run_interrupted(self, record: RunRecord) -> None:
        """Record it."""
        self.events.append(("run_interrupted", None))

    def run_finished(self, record: RunRecord) -> None:
        """Record it."""
        self.events.append((f"run_{record.status.value}", None))


__all__ = ["Progress", "RecordingProgress"]
