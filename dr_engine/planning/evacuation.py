"""The composed plan of an evacuation: applications in waves, each with its own checked plan.

Built from a :class:`~dr_engine.config.evacuation.LoadedEvacuation`:

- every application's runbook is planned on its own (:func:`~dr_engine.planning.plan.build_plan`),
  so each keeps every safety invariant of a single failover;
- the application graph holds the explicit ``after:`` dependencies and the implicit ones of the
  tiers (each application waits for every application of the nearest lower tier, with the plan's
  ``tier_failure`` policy); a circle is a located :class:`~dr_engine.errors.PlanError`;
- the *waves* are the graph's levels (what can run at the same time if nothing else limits it);
- the *critical path* is the longest chain of applications, weighed by each application's p50
  from history when every one has some, else by each runbook's RTO objective (its budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dr_engine.config.evacuation import LoadedEvacuation
from dr_engine.errors import ConfigError, PlanError, Problem
from dr_engine.model.evacuation import Application, FailurePolicy
from dr_engine.planning.plan import ExecutionPlan, build_plan
from dr_engine.planning.prediction import RunbookHistory


@dataclass(frozen=True)
class Edge:
    """``application`` waits for ``waits_for``; ``policy`` says what its failure means."""

    application: str
    waits_for: str
    policy: FailurePolicy
    implicit: bool = False  # from the tiers, not written in `after:`


@dataclass
class EvacuationPlan:
    """A checked evacuation: per-application plans, the dependency graph, waves, critical path."""

    loaded: LoadedEvacuation
    plans: dict[str, ExecutionPlan]
    edges: list[Edge]
    waves: list[list[str]]
    critical_path: list[str] = field(default_factory=list)
    #: What weighed the critical path: "history p50" or "runbook RTO objectives".
    critical_basis: str = ""
    critical_seconds: float = 0.0

    @property
    def name(self) -> str:
        """The plan's name."""
        return self.loaded.plan.evacuation

    @property
    def applications(self) -> list[Application]:
        """The applications in file order."""
        return list(self.loaded.plan.applications)

    def waits_for(self, application: str) -> list[Edge]:
        """The edges from ``application`` to what it waits for."""
        return [e for e in self.edges if e.application == application]

    def dependents(self, application: str) -> list[Edge]:
        """The edges of the applications that wait for ``application``."""
        return [e for e in self.edges if e.waits_for == application]

    def wave_of(self, application: str) -> int:
        """1-based wave number of ``application``."""
        return next(i for i, wave in enumerate(self.waves, 1) if application in wave)

    def predicted(self, history: dict[str, RunbookHistory]) -> dict[str, Any]:
        """Predicted RTO of every application and of the evacuation (longest path of p50 / p95)."""
        apps = {app.name: history.get(self.plans[app.name].loaded.runbook.runbook, RunbookHistory()).rto
                for app in self.applications}
        result: dict[str, Any] = {"applications": {n: p.to_dict() for n, p in apps.items()}}
        for key in ("p50", "p95"):
            values = {n: getattr(p, key) for n, p in apps.items()}
            if any(v is None for v in values.values()):
                result[f"{key}_seconds"] = None  # one unknown application makes the whole unknown
            else:
                result[f"{key}_seconds"] = round(_longest(self, {n: float(v) for n, v in values.items()})[0], 3)
        objective = self.loaded.plan.objectives.rto.total_seconds()
        result["objective_seconds"] = objective
        p95 = result["p95_seconds"]
        result["exceeds_objective"] = None if p95 is None else p95 > objective
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``dr plan --output json`` of a plan)."""
        plan = self.loaded.plan
        return {
            "kind": "evacuation", "evacuation": plan.evacuation, "file": self.loaded.file,
            "sha256": self.loaded.sha256, "source": plan.source, "target": plan.target,
            "objectives": {"rto_seconds": plan.objectives.rto.total_seconds()},
            "applications": [{"name": a.name, "runbook": self.plans[a.name].loaded.runbook.runbook,
                              "tier": a.tier, "wave": self.wave_of(a.name),
                              "after": [{"application": e.waits_for, "on_failure": e.policy.value,
                                         "implicit": e.implicit} for e in self.waits_for(a.name)],
                              "steps": len(self.plans[a.name].steps),
                              "rto_objective_seconds": self.plans[a.name].loaded.runbook.objectives.rto.total_seconds()}
                             for a in self.applications],
            "waves": self.waves,
            "critical_path": {"applications": self.critical_path, "basis": self.critical_basis,
                              "seconds": self.critical_seconds},
        }


def _edges(loaded: LoadedEvacuation) -> list[Edge]:
    plan = loaded.plan
    tiers = sorted({a.tier for a in plan.applications})
    edges: dict[tuple[str, str], Edge] = {}
    for app in plan.applications:
        for dependency in app.dependencies():
            edges[(app.name, dependency.application)] = Edge(app.name, dependency.application, dependency.on_failure)
        lower = [t for t in tiers if t < app.tier]
        if lower:
            for other in plan.applications:
                if other.tier == lower[-1]:  # an explicit edge to the same application wins
                    edges.setdefault((app.name, other.name), Edge(app.name, other.name, plan.tier_failure, True))
    return list(edges.values())


def _levels(names: list[str], edges: list[Edge]) -> list[list[str]] | list[str]:
    """Waves by level; when a circle remains, the names on it (as a flat list)."""
    waiting = {n: {e.waits_for for e in edges if e.application == n} for n in names}
    done: set[str] = set()
    waves: list[list[str]] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and waiting[n] <= done]
        if not ready:
            return [n for n in names if n not in done]
        waves.append(ready)
        done.update(ready)
    return waves


def _longest(plan: EvacuationPlan, weight: dict[str, float]) -> tuple[float, list[str]]:
    """Length and applications of the heaviest chain (waves give a topological order)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for wave in plan.waves:
        for name in wave:
            before = max((best[e.waits_for] for e in plan.waits_for(name)), default=(0.0, []), key=lambda b: b[0])
            best[name] = (before[0] + weight[name], [*before[1], name])
    return max(best.values(), key=lambda b: b[0], default=(0.0, []))


def build_evacuation_plan(loaded: LoadedEvacuation, history: dict[str, RunbookHistory] | None = None
                          ) -> EvacuationPlan:
    """Plan every application and compose them; raise PlanError/ConfigError listing every problem."""
    problems: list[Problem] = []
    plans: dict[str, ExecutionPlan] = {}
    for app in loaded.plan.applications:
        try:
            plans[app.name] = build_plan(loaded.runbooks[app.name])
        except (PlanError, ConfigError) as exc:  # the runbook's own invariants, in its own file
            problems.extend(exc.problems)
    edges = _edges(loaded)
    names = [a.name for a in loaded.plan.applications]
    levels = _levels(names, edges)
    if levels and isinstance(levels[0], str):
        stuck = [str(n) for n in levels]
        index = names.index(stuck[0])
        problems.append(loaded.problem(("applications", index, "after"),
                                       f"applications wait for each other in a circle: {', '.join(stuck)}",
                                       "remove one dependency of the circle (tiers count: a tier waits for the "
                                       "tier below)"))
    if problems:
        raise PlanError(problems)
    waves = [list(w) for w in levels if isinstance(w, list)]
    composed = EvacuationPlan(loaded=loaded, plans=plans, edges=edges, waves=waves)
    rto_of = {a.name: history.get(plans[a.name].loaded.runbook.runbook) if history else None
              for a in loaded.plan.applications}
    if all(h is not None and h.rto.p50 is not None for h in rto_of.values()):
        weight = {n: float(h.rto.p50 or 0.0) for n, h in rto_of.items() if h is not None}
        composed.critical_basis = "history p50"
    else:
        weight = {n: plans[n].loaded.runbook.objectives.rto.total_seconds() for n in names}
        composed.critical_basis = "runbook RTO objectives"
    composed.critical_seconds, composed.critical_path = _longest(composed, weight)
    return composed


__all__ = ["Edge", "EvacuationPlan", "build_evacuation_plan"]
