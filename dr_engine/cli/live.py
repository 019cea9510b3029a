"""Live rendering of a run for the terminal: a rich table on a TTY, one line per event otherwise."""

from __future__ import annotations

import threading
import time

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from dr_engine.engine.progress import Progress
from dr_engine.evidence.record import RunRecord, StepError, StepRecord, StepStatus
from dr_engine.evidence.summary import fmt_seconds

_MARKS = {StepStatus.PENDING: "·", StepStatus.RUNNING: "…", StepStatus.SUCCEEDED: "ok",
          StepStatus.FAILED: "FAILED", StepStatus.SKIPPED: "skipped", StepStatus.ABANDONED: "ABANDONED"}


class LiveProgress(Progress):
    """Shows per-step state and elapsed time while a run executes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._steps: dict[str, StepRecord] = {}
        self._started: dict[str, float] = {}
        self._notes: dict[str, str] = {}
        self._t0 = time.monotonic()
        self._live: Live | None = None

    # ------------------------------------------------------------- Progress

    def run_started(self, record: RunRecord) -> None:
        """Open the live table (TTY) or print a header line."""
        with self._lock:
            self._steps = {s.id: s.model_copy() for s in record.steps}
            self._t0 = time.monotonic()
        self._line(f"run {record.run_id}: {record.mode} of {record.runbook} ({record.source} -> {record.target}), "
                   f"{len(record.steps)} steps")
        if self.console.is_terminal:
            self._live = Live(self, console=self.console, refresh_per_second=8, transient=False)
            self._live.start()

    def step_started(self, record: RunRecord, step: StepRecord) -> None:
        """Mark a step running."""
        with self._lock:
            self._steps[step.id] = step.model_copy()
            self._started[step.id] = time.monotonic()
        self._line(f"started  {step.id} ({step.action})")

    def step_retrying(self, record: RunRecord, step: StepRecord, attempt: int, error: StepError,
                      wait_seconds: float) -> None:
        """Show a transient failure and the wait before the next attempt."""
        with self._lock:
            self._notes[step.id] = f"attempt {attempt} failed ({error.kind}), retrying in {wait_seconds:.1f}s"
        self._line(f"retrying {step.id}: attempt {attempt} failed: {error.message}")

    def step_finished(self, record: RunRecord, step: StepRecord) -> None:
        """Show the outcome of a step."""
        with self._lock:
            self._steps[step.id] = step.model_copy()
            self._notes.pop(step.id, None)
        detail = step.error.message if step.error else step.summary
        self._line(f"{step.status.value:<10}{step.id} in {fmt_seconds(step.duration_seconds)}: {detail}")

    def run_finished(self, record: RunRecord) -> None:
        """Close the live table."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # ------------------------------------------------------------- rendering

    def _line(self, text: str) -> None:
        if not self.console.is_terminal:
            self.console.print(f"[{time.monotonic() - self._t0:7.1f}s] {text}", markup=False, highlight=False)

    def __rich__(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, show_header=True)
        for column in ("wave", "step", "action", "state", "elapsed", "tries", "detail"):
            table.add_column(column)
        now = time.monotonic()
        with self._lock:
            for step in self._steps.values():
                if step.status is StepStatus.RUNNING:
                    elapsed = fmt_seconds(now - self._started.get(step.id, now))
                else:
                    elapsed = fmt_seconds(step.duration_seconds)
                detail = self._notes.get(step.id) or (step.error.message if step.error else step.summary)
                table.add_row(str(step.wave), step.id, step.action, _MARKS[step.status], elapsed,
                              str(step.attempts or ""), detail[:70])
        return table


__all__ = ["LiveProgress"]
