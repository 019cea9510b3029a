"""The planner: dependency graph -> parallel waves, after checking the safety invariants.

Invariants (each failure is a located :class:`PlanError`):

1. step ids are unique; every ``after:`` names an existing step; there are no cycles;
2. every ``${steps.ID.OUTPUT}`` reference names an ancestor of the step using it;
3. every traffic shift comes after a health verification of the target (an ancestor);
4. every promote comes after a fence of the same dataset (an ancestor), unless the runbook
   says ``fencing: best-effort`` with a reason (then it is recorded as an override);
5. the plan ends on a health verification: some health check depends on every promote and
   every traffic shift. The last such check is the RTO stop point.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from dr_engine.capabilities import Capability
from dr_engine.config.gcpause import gc_paused
from dr_engine.config.loader import LoadedRunbook
from dr_engine.config.yamlsafe import parse_path
from dr_engine.errors import PlanError, Problem
from dr_engine.model import Fencing, Step
from dr_engine.model.substitution import find_references, parse_reference

#: Timeout applied to a step that declares none. Generous: it bounds a hung call, nothing more.
DEFAULT_STEP_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class PlannedStep:
    """A step with everything the engine needs to run it."""

    step: Step
    action: str
    capability: Capability
    #: 1 for the first wave, as ``dr plan``, the run record and reports number them.
    wave: int
    timeout: timedelta
    summary: str = ""
    graph: StepGraph | None = field(default=None, repr=False, compare=False)

    @cached_property
    def ancestors(self) -> frozenset[str]:
        """Ids of every step this one transitively waits for (computed on first use).

        Lazy because the sets of all steps together are O(steps x depth): 50 million ids for
        a 10,000-step chain. The invariants use :class:`Ancestry` instead.
        """
        return frozenset() if self.graph is None else self.graph.ancestors(self.id)

    @property
    def id(self) -> str:
        """The step id."""
        return self.step.id


@dataclass(frozen=True)
class InvariantCheck:
    """The outcome of one safety invariant, shown by ``dr plan``."""

    name: str
    ok: bool
    detail: str


@dataclass
class ExecutionPlan:
    """An ordered, checked plan: waves of steps that may run concurrently."""

    loaded: LoadedRunbook
    waves: list[list[PlannedStep]]
    checks: list[InvariantCheck]
    rto_stop: str
    overrides: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[PlannedStep]:
        """Every step in execution order."""
        return [s for wave in self.waves for s in wave]

    def get(self, step_id: str) -> PlannedStep:
        """The planned step with ``step_id``."""
        return next(s for s in self.steps if s.id == step_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``dr plan --output json``)."""
        rb = self.loaded.runbook
        return {
            "runbook": rb.runbook,
            "file": self.loaded.file,
            "sha256": self.loaded.sha256,
            "source": rb.source,
            "target": rb.target,
            "objectives": {"rto_seconds": rb.objectives.rto.total_seconds(),
                           "rpo_seconds": rb.objectives.rpo.total_seconds()},
            "rto_stop": self.rto_stop,
            "waves": [
                [{"id": s.id, "action": s.action, "capability": s.capability.value,
                  "after": list(s.step.after), "timeout_seconds": s.timeout.total_seconds(),
                  "summary": s.summary} for s in wave]
                for wave in self.waves
            ],
            "invariants": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "overrides": self.overrides,
        }


def _graph_problems(loaded: LoadedRunbook) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, step in enumerate(loaded.runbook.steps):
        if step.id in seen:
            problems.append(loaded.problem(("steps", index, "id"), f"duplicate step id '{step.id}'",
                                           f"already used by steps[{seen[step.id]}]; ids must be unique"))
        else:
            seen[step.id] = index
    for index, step in enumerate(loaded.runbook.steps):
        for j, dep in enumerate(step.after):
            if dep == step.id:
                problems.append(loaded.problem(("steps", index, "after", j), f"step '{step.id}' waits for itself",
                                               "remove it from its own `after:`"))
            elif dep not in seen:
                close = difflib.get_close_matches(dep, list(seen), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "list ids of steps in this runbook"
                problems.append(loaded.problem(("steps", index, "after", j), f"unknown step '{dep}'", hint))
    return problems


class StepGraph:
    """The ``after:`` edges of a checked runbook, to list a step's ancestors on demand."""

    def __init__(self, loaded: LoadedRunbook) -> None:
        self.index = loaded.step_ids
        self.steps = loaded.runbook.steps

    def ancestors(self, step_id: str) -> frozenset[str]:
        """Ids of every step ``step_id`` transitively waits for: a walk of its ancestors only."""
        seen: set[str] = set()
        todo = list(self.steps[self.index[step_id]].after)
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.steps[self.index[dep]].after)
        return frozenset(seen)


class Ancestry:
    """Which *tracked* steps each step transitively waits for, as bit masks.

    Only the steps the invariants ask about are tracked (health checks, traffic shifts,
    promotes, fences and steps whose outputs are referenced): bit i = the i-th tracked step.
    Masks over every step cost O(steps^2 / 64) time and memory on long chains; these stay a
    few bits wide, so planning is linear. Any other ancestor is answered by a graph walk.
    """

    def __init__(self, loaded: LoadedRunbook, order: list[str], tracked: Iterable[str]) -> None:
        self.index = loaded.step_ids
        self.graph = StepGraph(loaded)
        steps = loaded.runbook.steps
        self.bit = {step_id: i for i, step_id in enumerate(sorted(set(tracked), key=loaded.step_index))}
        self.masks: dict[str, int] = {}
        for step_id in order:
            mask = 0
            for dep in steps[self.index[step_id]].after:
                mask |= self.masks[dep]
                if dep in self.bit:
                    mask |= 1 << self.bit[dep]
            self.masks[step_id] = mask

    def mask_of(self, ids: set[str]) -> int:
        """The bit mask of a set of tracked step ids."""
        mask = 0
        for step_id in ids:
            mask |= 1 << self.bit[step_id]
        return mask

    def has(self, step_id: str, ancestor: str) -> bool:
        """True when ``ancestor`` runs (transitively) before ``step_id``."""
        if ancestor in self.bit:
            return bool(self.masks[step_id] >> self.bit[ancestor] & 1)
        return ancestor in self.graph.ancestors(step_id)

    def any_of(self, step_id: str, mask: int) -> bool:
        """True when some step of ``mask`` is an ancestor of ``step_id``."""
        return bool(self.masks[step_id] & mask)

    def covers(self, step_id: str, mask: int) -> bool:
        """True when every step of ``mask`` is an ancestor of ``step_id``."""
        return mask & ~self.masks[step_id] == 0


def _cycle(loaded: LoadedRunbook, exc: graphlib.CycleError) -> Problem:
    cycle = list(exc.args[1])
    first = cycle[0]
    index = loaded.step_index(first)
    return loaded.problem(("steps", index, "after"), "dependency cycle: " + " -> ".join(cycle),
                          "remove one of these `after:` entries")


def build_plan(loaded: LoadedRunbook) -> ExecutionPlan:
    """Check the invariants and order the steps into waves; raise PlanError when unsafe."""
    # Planning a large runbook builds many long-lived, acyclic objects: see dr_engine.config.gcpause.
    with gc_paused():
        return _build_plan(loaded)


def _build_plan(loaded: LoadedRunbook) -> ExecutionPlan:
    steps = loaded.runbook.steps
    problems = _graph_problems(loaded)
    if problems:
        raise PlanError(problems)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for step in steps:
        sorter.add(step.id, *step.after)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise PlanError(_cycle(loaded, exc)) from exc
    wave_ids: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=loaded.step_index)
        wave_ids.append(ready)
        sorter.done(*ready)
    order = [s for wave in wave_ids for s in wave]
    references = _step_references(loaded)
    tracked = {ref for _, _, _, ref in references if ref in loaded.step_ids}
    tracked.update(s.id for s in steps if loaded.actions[s.id].capability in _TRACKED)
    ancestry = Ancestry(loaded, order, tracked)
    checks, overrides, problems = _invariants(loaded, ancestry, references)
    if problems:
        raise PlanError(problems)
    stop = _rto_stop(loaded, order, ancestry)
    waves = []
    for number, ids in enumerate(wave_ids, start=1):
        wave = []
        for step_id in ids:
            step = steps[loaded.step_index(step_id)]
            action = loaded.actions[step_id]
            params = loaded.params.get(step_id)
            summary = action().describe(params) if params is not None else ""
            wave.append(PlannedStep(step=step, action=step.action, capability=action.capability,
                                    wave=number, timeout=step.timeout or DEFAULT_STEP_TIMEOUT,
                                    summary=summary, graph=ancestry.graph))
        waves.append(wave)
    return ExecutionPlan(loaded=loaded, waves=waves, checks=checks, rto_stop=stop, overrides=overrides)


#: Capabilities whose steps the invariants look for among ancestors (see Ancestry).
_TRACKED = frozenset({Capability.HEALTH_VERIFY, Capability.TRAFFIC_SHIFT, Capability.DATA_PROMOTE,
                      Capability.DATA_FENCE})

#: (file index of the using step, field path, reference text, id of the referenced step).
StepReference = tuple[int, str, str, str]


def _step_references(loaded: LoadedRunbook) -> list[StepReference]:
    found: list[StepReference] = []
    for index, step in enumerate(loaded.runbook.steps):
        for field_path, text in find_references(step.with_):
            ref = parse_reference(text)
            if ref is not None and ref.scope == "step" and ref.step is not None:
                found.append((index, field_path, text, ref.step))
    return found


def _by_capability(loaded: LoadedRunbook, capability: Capability) -> list[Step]:
    return [s for s in loaded.runbook.steps if loaded.actions[s.id].capability is capability]


def _dataset(loaded: LoadedRunbook, step: Step) -> str | None:
    params = loaded.params.get(step.id)
    return None if params is None else loaded.actions[step.id]().dataset(params)


def _invariants(
    loaded: LoadedRunbook, ancestry: Ancestry, references: list[StepReference]
) -> tuple[list[InvariantCheck], list[str], list[Problem]]:
    checks: list[InvariantCheck] = []
    problems: list[Problem] = []
    overrides: list[str] = []
    rb = loaded.runbook
    checks.append(InvariantCheck("unique ids, known `after`, no cycles", True, f"{len(rb.steps)} steps"))

    # Step-output references must point at ancestors, or the value may not exist yet.
    bad_refs = 0
    for index, field_path, text, used in references:
        step = rb.steps[index]
        if used not in ancestry.index or not ancestry.has(step.id, used):
            bad_refs += 1
            problems.append(loaded.problem(("steps", index, "with", *parse_path(field_path)),
                                           f"'${{{text}}}' uses step '{used}', which does not run before "
                                           f"'{step.id}'", f"add '{used}' to this step's `after:`"))
    checks.append(InvariantCheck("step outputs used only after they exist", bad_refs == 0, ""))

    health = {s.id for s in _by_capability(loaded, Capability.HEALTH_VERIFY)}
    health_mask = ancestry.mask_of(health)
    shifts = _by_capability(loaded, Capability.TRAFFIC_SHIFT)
    for step in shifts:
        if not ancestry.any_of(step.id, health_mask):
            problems.append(loaded.problem(("steps", loaded.step_index(step.id), "after"),
                                           f"traffic shift '{step.id}' does not wait for a health verification "
                                           "of the target", "add a health check step (e.g. http.verify of the "
                                           "target) to its `after:`; never shift traffic to an unverified region"))
    checks.append(InvariantCheck("traffic shifted only after the target is verified healthy",
                                 all(ancestry.any_of(s.id, health_mask) for s in shifts), f"{len(shifts)} shift(s)"))

    fences = _by_capability(loaded, Capability.DATA_FENCE)
    promotes = _by_capability(loaded, Capability.DATA_PROMOTE)
    unfenced = []
    for step in promotes:
        dataset = _dataset(loaded, step)
        ok = any(ancestry.has(step.id, f.id) and _dataset(loaded, f) == dataset for f in fences)
        if not ok:
            unfenced.append(step)
    if unfenced and rb.fencing is Fencing.BEST_EFFORT:
        overrides.append(f"fencing: best-effort ({rb.fencing_reason}); unfenced promote(s): "
                         + ", ".join(s.id for s in unfenced))
        checks.append(InvariantCheck("promote only after fencing the same dataset", True,
                                     "OVERRIDDEN: fencing best-effort: " + (rb.fencing_reason or "")))
    else:
        for step in unfenced:
            problems.append(loaded.problem(("steps", loaded.step_index(step.id)),
                                           f"promote '{step.id}' (dataset '{_dataset(loaded, step)}') is not "
                                           "preceded by a fence of the same dataset",
                                           "add a fence step to its `after:`, or set `fencing: best-effort` "
                                           "with a `fencing_reason:` (audited)"))
        checks.append(InvariantCheck("promote only after fencing the same dataset", not unfenced,
                                     f"{len(promotes)} promote(s)"))

    critical = {s.id for s in shifts} | {s.id for s in promotes}
    critical_mask = ancestry.mask_of(critical)
    stops = [h for h in health if ancestry.covers(h, critical_mask)]
    if not stops:
        what = " covering every promote and traffic shift" if critical else ""
        problems.append(loaded.problem(("steps",), f"the plan does not end on a health verification{what}",
                                       "add a final health check (e.g. http.verify) whose `after:` covers "
                                       "the shifts and promotes: it is the RTO stop point"))
    checks.append(InvariantCheck("ends on a health verification (RTO stop point)", bool(stops), ""))
    return checks, overrides, problems


def _rto_stop(loaded: LoadedRunbook, order: list[str], ancestry: Ancestry) -> str:
    health = {s.id for s in _by_capability(loaded, Capability.HEALTH_VERIFY)}
    critical = {s.id for s in loaded.runbook.steps
                if loaded.actions[s.id].capability in (Capability.TRAFFIC_SHIFT, Capability.DATA_PROMOTE)}
    critical_mask = ancestry.mask_of(critical)
    candidates = [s for s in order if s in health and ancestry.covers(s, critical_mask)]
    # The earliest check covering every critical step: RTO stops when service is verified back.
    return candidates[0]
