"""The planner: waves from the dependency graph and every safety invariant."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from runbook_fixtures import LoadRunbook

from dr_engine.capabilities import Capability
from dr_engine.errors import PlanError
from dr_engine.planning.plan import DEFAULT_STEP_TIMEOUT, build_plan

pytestmark = pytest.mark.usefixtures("fake_actions")


def step(step_id: str, action: str, after: list[str] | None = None, **with_: str) -> str:
    params = ", ".join(f"{k}: {v}" for k, v in with_.items())
    text = f"  - id: {step_id}\n    action: {action}\n    with: {{{params}}}\n"
    if after:
        text += f"    after: [{', '.join(after)}]\n"
    return text


def health(step_id: str, after: list[str] | None = None) -> str:
    return step(step_id, "fake.health", after)


SAFE = (
    step("fence-db", "fake.fence", dataset="ledger")
    + step("promote-db", "fake.promote", ["fence-db"], dataset="ledger")
    + health("target-healthy", ["promote-db"])
    + step("shift", "fake.shift", ["target-healthy"])
    + health("verify-after-shift", ["shift"])
)


def problems_of(exc: pytest.ExceptionInfo[PlanError]) -> list[tuple[str, int | None, str]]:
    return [(p.path, p.line, p.message) for p in exc.value.problems]


def test_safe_plan_orders_waves_and_picks_the_rto_stop(load: LoadRunbook) -> None:
    plan = build_plan(load(SAFE))
    assert [[s.id for s in wave] for wave in plan.waves] == [
        ["fence-db"], ["promote-db"], ["target-healthy"], ["shift"], ["verify-after-shift"]]
    assert plan.rto_stop == "verify-after-shift"
    assert all(check.ok for check in plan.checks)
    assert len(plan.checks) == 5
    assert plan.overrides == []
    assert plan.get("shift").capability is Capability.TRAFFIC_SHIFT
    assert plan.get("shift").ancestors == {"fence-db", "promote-db", "target-healthy"}
    assert plan.get("shift").timeout == DEFAULT_STEP_TIMEOUT
    data = plan.to_dict()
    assert json.loads(json.dumps(data))["rto_stop"] == "verify-after-shift"
    assert [w[0]["id"] for w in data["waves"]] == ["fence-db", "promote-db", "target-healthy", "shift",
                                                   "verify-after-shift"]


def test_independent_steps_share_a_wave_in_file_order(load: LoadRunbook) -> None:
    steps = (step("z-first", "fake.emit") + step("a-second", "fake.emit") + step("m-third", "fake.emit", ["z-first"])
             + health("done", ["a-second", "m-third"]))
    plan = build_plan(load(steps))
    assert [[s.id for s in wave] for wave in plan.waves] == [["z-first", "a-second"], ["m-third"], ["done"]]
    assert [s.wave for s in plan.steps] == [1, 1, 2, 3]  # numbered from 1, as `dr plan` shows them
    assert plan.rto_stop == "done"


def test_step_timeout_is_used(load: LoadRunbook) -> None:
    plan = build_plan(load(health("h") + "    timeout: 45s\n"))
    assert plan.get("h").timeout == timedelta(seconds=45)


def test_duplicate_ids_are_located(load: LoadRunbook) -> None:
    with pytest.raises(PlanError) as exc:
        build_plan(load(health("a") + health("a")))
    assert problems_of(exc) == [("steps[1].id", 9, "duplicate step id 'a'")]


def test_unknown_and_self_after(load: LoadRunbook) -> None:
    with pytest.raises(PlanError) as exc:
        build_plan(load(step("fence", "fake.emit") + health("h", ["fenc", "h"])))
    found = problems_of(exc)
    assert found[0] == ("steps[1].after[0]", 12, "unknown step 'fenc'")
    assert exc.value.problems[0].hint == "did you mean 'fence'?"
    assert found[1] == ("steps[1].after[1]", 12, "step 'h' waits for itself")


def test_cycles_are_named(load: LoadRunbook) -> None:
    steps = step("a", "fake.emit", ["c"]) + step("b", "fake.emit", ["a"]) + step("c", "fake.emit", ["b"]) + health("h")
    with pytest.raises(PlanError) as exc:
        build_plan(load(steps))
    (path, _line, message), = problems_of(exc)
    assert message.startswith("dependency cycle: ")
    cycle = message.removeprefix("dependency cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert path.startswith("steps[") and path.endswith("].after")


def test_step_outputs_must_come_from_ancestors(load: LoadRunbook) -> None:
    sibling = step("a", "fake.emit") + step("b", "fake.emit", value='"${steps.a.token}"') + health("h", ["a", "b"])
    with pytest.raises(PlanError) as exc:
        build_plan(load(sibling))
    (path, line, message), = problems_of(exc)
    assert (path, line) == ("steps[1].with.value", 11)
    assert "uses step 'a', which does not run before 'b'" in message
    # A transitive ancestor is fine.
    chain = (step("a", "fake.emit") + step("m", "fake.emit", ["a"])
             + step("b", "fake.emit", ["m"], value='"x-${steps.a.token}"') + health("h", ["b"]))
    assert build_plan(load(chain)).checks[1].ok


def test_shift_needs_a_prior_health_check(load: LoadRunbook) -> None:
    steps = step("shift", "fake.shift") + health("h", ["shift"])
    with pytest.raises(PlanError) as exc:
        build_plan(load(steps))
    (path, _, message), = problems_of(exc)
    assert path == "steps[0].after"
    assert "traffic shift 'shift' does not wait for a health verification" in message
    # A health check that is not an ancestor (a sibling) does not count either.
    with pytest.raises(PlanError):
        build_plan(load(health("early") + step("shift", "fake.shift") + health("h", ["shift", "early"])))


def test_promote_needs_a_fence_of_the_same_dataset(load: LoadRunbook) -> None:
    unfenced = step("promote", "fake.promote", dataset="ledger") + health("h", ["promote"])
    with pytest.raises(PlanError) as exc:
        build_plan(load(unfenced))
    assert "promote 'promote' (dataset 'ledger') is not preceded by a fence" in problems_of(exc)[0][2]
    other = (step("fence", "fake.fence", dataset="audit") + step("promote", "fake.promote", ["fence"], dataset="ledger")
             + health("h", ["promote"]))
    with pytest.raises(PlanError):
        build_plan(load(other))
    parallel = (step("fence", "fake.fence", dataset="ledger") + step("promote", "fake.promote", dataset="ledger")
                + health("h", ["promote", "fence"]))
    with pytest.raises(PlanError):
        build_plan(load(parallel))


def test_best_effort_fencing_is_an_audited_override(load: LoadRunbook) -> None:
    unfenced = step("promote", "fake.promote", dataset="ledger") + health("h", ["promote"])
    extra = "fencing: best-effort\nfencing_reason: source region is gone; nothing left to fence\n"
    plan = build_plan(load(unfenced, extra=extra))
    assert plan.overrides == ["fencing: best-effort (source region is gone; nothing left to fence); "
                              "unfenced promote(s): promote"]
    check = next(c for c in plan.checks if c.name.startswith("promote only after fencing"))
    assert check.ok and check.detail.startswith("OVERRIDDEN")
    # A fully fenced runbook records no override even in best-effort mode.
    assert build_plan(load(SAFE, extra=extra)).overrides == []


def test_plan_must_end_on_a_health_check(load: LoadRunbook) -> None:
    with pytest.raises(PlanError) as exc:
        build_plan(load(step("only", "fake.emit")))
    assert problems_of(exc)[0][2] == "the plan does not end on a health verification"
    before_only = health("h") + step("shift", "fake.shift", ["h"])
    with pytest.raises(PlanError) as exc2:
        build_plan(load(before_only))
    assert "covering every promote and traffic shift" in problems_of(exc2)[0][2]


def test_rto_stop_is_the_first_check_covering_every_critical_step(load: LoadRunbook) -> None:
    steps = SAFE + health("late-extra", ["verify-after-shift"])
    plan = build_plan(load(steps))
    assert plan.rto_stop == "verify-after-shift"
    no_critical = step("a", "fake.emit") + health("h1", ["a"]) + health("h2", ["h1"])
    assert build_plan(load(no_critical)).rto_stop == "h1"


def test_ancestors_are_the_transitive_after_closure_computed_on_use(load: LoadRunbook) -> None:
    # Two chains and a diamond: the invariants only track health/critical steps, but the
    # public `ancestors` must still list every transitive dependency.
    steps = (step("a", "fake.emit") + step("b", "fake.emit", ["a"]) + step("c", "fake.emit", ["a"])
             + step("d", "fake.emit", ["b", "c"]) + step("x", "fake.emit")
             + health("h", ["d", "x"]))
    plan = build_plan(load(steps))
    assert "ancestors" not in vars(plan.get("h"))
    assert plan.get("h").ancestors == {"a", "b", "c", "d", "x"}
    assert plan.get("d").ancestors == {"a", "b", "c"}
    assert plan.get("a").ancestors == frozenset()
    assert "ancestors" in vars(plan.get("h"))


def test_output_of_an_untracked_transitive_ancestor_is_accepted(load: LoadRunbook) -> None:
    # `m` is neither referenced nor a checked capability: `b` reaches `a` through it.
    chain = (step("a", "fake.emit") + step("m", "fake.emit", ["a"]) + step("n", "fake.emit", ["m"])
             + step("b", "fake.emit", ["n"], value='"${steps.a.token}"') + health("h", ["b"]))
    plan = build_plan(load(chain))
    assert plan.checks[1].ok
    assert plan.get("b").ancestors == {"a", "m", "n"}
