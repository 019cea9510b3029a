"""The state directory (``--state-dir``, env ``DR_STATE_DIR``, default ``.dr``).

Layout::

    <state-dir>/
      runs/<run-id>/run.json       the run record (dr_engine.evidence.record)
      runs/<run-id>/audit.jsonl    the hash-chained audit log (dr_engine.evidence.audit)
      locks/<runbook>.lock         failover lock leases (dr_engine.lock.base)
      evacuations/<id>/            an evacuation's audit log and record (dr_engine.engine.evacuation)
      readiness/                   the latest readiness result per runbook (dr_engine.engine.readiness)
      terraform/                   terraform home, plugin cache and data dirs (dr_engine.actions.terraform)
      prefect-home/                PREFECT_HOME for embedded runs (dr_engine.flows.settings)

Run ids sort by start time: ``20261128T231500Z-ab12cd`` (UTC second + random suffix).
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime
from pathlib import Path

from dr_engine.clock import Clock, SystemClock
from dr_engine.errors import ConfigError, RunStateError
from dr_engine.evidence.record import AUDIT_FILE, RUN_FILE, RunRecord, load_record

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def default_state_dir() -> Path:
    """``$DR_STATE_DIR`` or ``.dr``."""
    return Path(os.environ.get("DR_STATE_DIR") or ".dr")


#: What to do when a state dir cannot be one.
STATE_DIR_HINT = "pass --state-dir (or set DR_STATE_DIR to) a directory; it is created when missing"


def check_state_dir(root: Path) -> Path:
    """Return ``root``, or raise :class:`ConfigError` (exit 2) when it cannot be a state dir.

    It cannot when it, or the nearest existing folder above it, is not a directory (e.g.
    ``--state-dir /etc/passwd``): every command would otherwise fail later, deep in some
    ``mkdir`` or ``open``, with an OS error that does not say which option was wrong.
    """
    for candidate in (root, *root.parents):
        if not candidate.exists():
            continue  # created when needed
        if candidate.is_dir():
            return root
        what = "a file" if candidate.is_file() else "a special file"
        if candidate == root:
            raise ConfigError(f"state dir {root} is {what}, not a directory", hint=STATE_DIR_HINT)
        raise ConfigError(f"state dir {root} cannot be created: {candidate} is {what}, not a directory",
                          hint=STATE_DIR_HINT)
    return root


def format_run_id(moment: datetime, suffix: str) -> str:
    """Compose a run id from a UTC time and a 6-hex-digit suffix."""
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{suffix}"


class StateDir:
    """Access to runs, locks and the embedded Prefect home under one root.

    Made once where a state dir enters (the CLI's ``--state-dir``, a flow's parameter, a caller's
    :class:`~dr_engine.engine.options.RunOptions`) and passed down as this object, so the path is
    checked once and every layout rule lives here.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = check_state_dir(Path(root) if root is not None else default_state_dir())

    @classmethod
    def of(cls, value: StateDir | Path | str | None) -> StateDir:
        """``value`` itself when it is a StateDir, else a StateDir at that path (None: the default)."""
        return value if isinstance(value, StateDir) else cls(value)

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateDir) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def runs_dir(self) -> Path:
        """``<root>/runs``."""
        return self.root / "runs"

    @property
    def locks_dir(self) -> Path:
        """``<root>/locks``."""
        return self.root / "locks"

    @property
    def evacuations_dir(self) -> Path:
        """``<root>/evacuations``: one folder per evacuation (its audit log and record)."""
        return self.root / "evacuations"

    def evacuation_dir(self, evacuation_id: str) -> Path:
        """The folder of ``evacuation_id`` (not created)."""
        if not RUN_ID_PATTERN.match(evacuation_id):
            raise RunStateError(f"invalid evacuation id {evacuation_id!r}", hint="list them with `dr evacuations`")
        return self.evacuations_dir / evacuation_id

    def create_evacuation_dir(self, evacuation_id: str) -> Path:
        """Create the folder of a new evacuation (refuses to reuse one)."""
        path = self.evacuation_dir(evacuation_id)
        path.mkdir(parents=True, exist_ok=False)
        return path

    def evacuation_ids(self) -> list[str]:
        """Ids of every recorded evacuation, oldest first."""
        if not self.evacuations_dir.is_dir():
            return []
        return sorted(p.name for p in self.evacuations_dir.iterdir() if (p / AUDIT_FILE).is_file())

    def resolve_evacuation_id(self, evacuation_id: str) -> str:
        """Expand a unique prefix (or ``latest``) to a full evacuation id."""
        known = self.evacuation_ids()
        if evacuation_id == "latest" and known:
            return known[-1]
        matches = [e for e in known if e.startswith(evacuation_id)]
        if evacuation_id in known:
            return evacuation_id
        if len(matches) == 1:
            return matches[0]
        hint = ("ambiguous prefix: " + ", ".join(matches)) if matches else (
            f"latest evacuations: {', '.join(known[-3:])}" if known else f"no evacuations in {self.evacuations_dir}")
        raise RunStateError(f"no evacuation {evacuation_id!r} in {self.evacuations_dir}", hint=hint)

    def names_evacuation(self, identifier: str) -> bool:
        """True when ``identifier`` is an evacuation id (exact, or a prefix no run id shares)."""
        known = self.evacuation_ids()
        if identifier in known:
            return True
        if identifier == "latest" or any(r.startswith(identifier) for r in self.run_ids()):
            return False
        return sum(1 for e in known if e.startswith(identifier)) == 1

    @property
    def readiness_dir(self) -> Path:
        """``<root>/readiness``: the latest readiness result of each runbook."""
        return self.root / "readiness"

    @property
    def terraform_dir(self) -> Path:
        """``<root>/terraform`` (absolute): terraform's home, plugin cache and per-step data dirs."""
        return self.root.resolve() / "terraform"

    @property
    def prefect_home(self) -> Path:
        """``<root>/prefect-home``: PREFECT_HOME for embedded (no PREFECT_API_URL) runs."""
        return self.root / "prefect-home"

    def run_dir(self, run_id: str) -> Path:
        """The directory of ``run_id`` (not created; see :meth:`create_run_dir`)."""
        if not RUN_ID_PATTERN.match(run_id) and (os.sep in run_id or run_id in ("", ".", "..")):
            raise RunStateError(f"invalid run id {run_id!r}", hint="list runs with `dr runs`")
        return self.runs_dir / run_id

    def create_run_dir(self, run_id: str) -> Path:
        """Create and return the directory of a new run (refuses to reuse one)."""
        path = self.run_dir(run_id)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise RunStateError(f"run {run_id} already exists in {self.runs_dir}",
                                hint="pick another run id or let dr-engine generate one") from exc
        return path

    def run_file(self, run_id: str) -> Path:
        """``runs/<run-id>/run.json``."""
        return self.run_dir(run_id) / RUN_FILE

    def audit_file(self, run_id: str) -> Path:
        """``runs/<run-id>/audit.jsonl``."""
        return self.run_dir(run_id) / AUDIT_FILE

    def relative(self, path: Path) -> str:
        """``path`` relative to the state dir (as recorded in ``run.json`` artifacts)."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    @staticmethod
    def new_run_id(clock: Clock | None = None) -> str:
        """A new sortable run id, e.g. ``20261128T231500Z-ab12cd``."""
        return format_run_id((clock or SystemClock()).now(), secrets.token_hex(3))

    def exists(self, run_id: str) -> bool:
        """True when ``run_id`` has a directory with a run record."""
        return self.run_file(run_id).is_file()

    def load(self, run_id: str) -> RunRecord:
        """The record of ``run_id``; RunStateError with close matches when unknown."""
        if not self.run_dir(run_id).is_dir():
            known = self.run_ids()
            prefix = [r for r in known if r.startswith(run_id)]
            if len(prefix) == 1:
                return load_record(self.run_dir(prefix[0]))
            hint = ("ambiguous prefix: " + ", ".join(prefix)) if prefix else (
                f"latest runs: {', '.join(known[-3:])}" if known else f"no runs in {self.runs_dir}")
            raise RunStateError(f"no run {run_id!r} in {self.runs_dir}", hint=hint)
        return load_record(self.run_dir(run_id))

    def resolve_run_id(self, run_id: str) -> str:
        """Expand a unique prefix (or ``latest``) to a full run id."""
        known = self.run_ids()
        if run_id == "latest" and known:
            return known[-1]
        if run_id in known:
            return run_id
        prefix = [r for r in known if r.startswith(run_id)]
        if len(prefix) == 1:
            return prefix[0]
        hint = ("ambiguous prefix: " + ", ".join(prefix)) if prefix else (
            f"latest runs: {', '.join(known[-3:])}" if known else f"no runs in {self.runs_dir}")
        raise RunStateError(f"no run {run_id!r} in {self.runs_dir}", hint=hint)

    def run_ids(self) -> list[str]:
        """Ids of every run with a record, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / RUN_FILE).is_file())

    def list_runs(self) -> list[RunRecord]:
        """Every readable run record, oldest first (unreadable records are skipped)."""
        records: list[RunRecord] = []
        for run_id in self.run_ids():
            try:
                records.append(load_record(self.run_dir(run_id)))
            except RunStateError:
                continue
        return records


__all__ = ["RUN_ID_PATTERN", "StateDir", "default_state_dir", "format_run_id"]
