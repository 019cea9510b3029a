"""How to run a plan: the typed options every caller of the engine's entry point fills in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dr_engine.actions.base import ApprovalGate
from dr_engine.clock import Clock, SystemClock
from dr_engine.engine.interrupts import Interrupts
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import Lock
from dr_engine.model import RunMode


@dataclass
class RunOptions:
    """How to run a plan. Only ``mode`` and ``state_dir`` matter for most callers.

    Every flag that changes safety is a typed field (no untyped dict of extras), so a reader sees
    which ones exist and who sets them.
    """

    mode: RunMode = RunMode.FAILOVER
    run_id: str | None = None
    #: Where records, logs and locks live; a path given here becomes a :class:`StateDir` at once.
    state_dir: StateDir | Path = field(default_factory=StateDir)
    incident_start: datetime | None = None
    allow_data_loss: bool = False
    triggered_by: str | None = None
    reason: str = ""
    concurrency: int = 4
    clock: Clock = field(default_factory=SystemClock)
    #: The two-person rule for ``--allow-data-loss``: before the first step a person other than the
    #: initiator must approve (the CLI and runs started from plain parameters set it).
    require_data_loss_approval: bool = False
    #: The name given with ``--approved-by``: a claim, recorded; under the two-person rule it does not
    #: approve ``--allow-data-loss`` by itself (see :meth:`dr_engine.engine.operations.RunHooks.before_steps`).
    data_loss_approved_by: str | None = None
    #: Asks a person (``control.approve`` steps and the data-loss approval); the Prefect flow supplies one.
    approval_gate: ApprovalGate | None = None
    #: Where repository files (stacks, templates) resolve from; None: the folder above ``runbooks/``.
    repo_root: Path | None = None
    #: The failover lock; None means a FileLock under ``<state-dir>/locks``.
    lock: Lock | None = None
    take_over_lock: bool = False
    #: Seed for retry jitter (tests); None = random.
    seed: int | None = None
    #: The stop-signal state of the process (the CLI installs it early); None: the engine makes its
    #: own and handles SIGINT/SIGTERM/SIGHUP while it runs (main thread only).
    interrupts: Interrupts | None = None
    #: Longest grace, in seconds, for running steps after a stop signal (None: DR_INTERRUPT_GRACE or 120).
    grace_cap: float | None = None


    def __post_init__(self) -> None:
        self.state_dir = StateDir.of(self.state_dir)

    @property
    def state(self) -> StateDir:
        """The run's state directory."""
        return StateDir.of(self.state_dir)


__all__ = ["RunOptions"]
