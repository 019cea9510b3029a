"""Predicted recovery times from history: p50 and p95 of past drills and failovers.

Every run record in the state dir that reached its RTO stop point (drills and failovers; a
failback measures the way home, which is another path) gives one RTO sample for its runbook and
one duration sample for each step that succeeded. The RTO sample is the run's own part: from the
run's start to healthy, without the time between the incident and the run's start (in an
evacuation that is the wait for the applications before it, which the critical path adds). A
prediction is the nearest-rank p50 and p95 of those samples; with no sample it is *unknown*, which
``dr plan`` says rather than guess.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dr_engine.evidence.record import RunRecord, RunStatus, StepStatus
from dr_engine.evidence.statedir import StateDir

#: Modes whose runs measure the way a failover goes (source -> target).
PREDICTING_MODES = frozenset({"failover", "drill"})


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of non-empty ``samples``."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Prediction:
    """p50/p95 of ``samples`` past measurements (both None when there is none)."""

    samples: int = 0
    p50: float | None = None
    p95: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Prediction:
        """The prediction of these measurements."""
        if not values:
            return cls()
        return cls(len(values), round(percentile(values, 0.5), 3), round(percentile(values, 0.95), 3))

    @property
    def known(self) -> bool:
        """True when at least one past run measured it."""
        return self.samples > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"samples": self.samples, "p50_seconds": self.p50, "p95_seconds": self.p95}


@dataclass
class RunbookHistory:
    """What past runs of one runbook measured: its RTO and each step's duration."""

    rto: Prediction = field(default_factory=Prediction)
    steps: dict[str, Prediction] = field(default_factory=dict)

    def exceeds(self, objective_seconds: float) -> bool:
        """True when the p95 prediction is over ``objective_seconds`` (unknown: False, said apart)."""
        return self.rto.p95 is not None and self.rto.p95 > objective_seconds


def _usable(record: RunRecord) -> bool:
    return (record.mode in PREDICTING_MODES and record.status is RunStatus.SUCCEEDED
            and record.rto_seconds is not None)


def history_by_runbook(state: StateDir) -> dict[str, RunbookHistory]:
    """Every runbook's :class:`RunbookHistory` from the runs recorded in ``state``."""
    rto: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in state.list_runs():
        if not _usable(record):
            continue
        before = record.rto_breakdown.before_run_seconds if record.rto_breakdown else 0.0
        rto[record.runbook].append(max(0.0, float(record.rto_seconds or 0.0) - before))
        for step in record.steps:
            if step.status is StepStatus.SUCCEEDED and step.duration_seconds is not None:
                steps[record.runbook][step.id].append(step.duration_seconds)
    return {name: RunbookHistory(Prediction.of(values), {s: Prediction.of(v) for s, v in steps[name].items()})
            for name, values in rto.items()}


__all__ = ["PREDICTING_MODES", "Prediction", "RunbookHistory", "history_by_runbook", "percentile"]
