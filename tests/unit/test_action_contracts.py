"""The action contract suite (dr_engine.testing.contracts) on the shipped fakes and on a user-style action."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import dr_engine.testing.actions as fakes
from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext, StepResult
from dr_engine.actions.registry import all_actions
from dr_engine.capabilities import Capability
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.contracts import ActionContract
from dr_engine.testing.step_context import step_context

FAKES = sorted(name for name in all_actions() if name.startswith("fake."))


def _context(tmp_path: Path) -> Any:
    return lambda: step_context(state_dir=tmp_path, clock=FakeClock())


def _calls() -> Counter[tuple[str, str]]:
    return Counter(fakes.CALLS)


def test_the_fakes_are_registered() -> None:
    assert {"fake.noop", "fake.fence_data", "fake.check_health"} <= set(FAKES)


@pytest.mark.parametrize("name", FAKES)
def test_fake_params_refuse_unknown_keys_and_preflight_changes_nothing(name: str, tmp_path: Path) -> None:
    cls = all_actions()[name]
    contract = ActionContract(cls, yaml.safe_load(cls.example).get("with") or {}, context=_context(tmp_path),
                              observe=_calls)
    contract.check_params_refuse_unknown_keys()
    assert contract.check_preflight_has_no_side_effects() == []


@pytest.mark.parametrize(("name", "params"), [("fake.check_health", {}), ("fake.noop", {"changed": False})])
def test_fakes_that_change_nothing_pass_the_rerun_rule(name: str, params: dict[str, Any], tmp_path: Path) -> None:
    first, again = ActionContract(all_actions()[name], params, context=_context(tmp_path),
                                  observe=lambda: None).check_rerun_changes_nothing()
    assert first.changed is False and again.changed is False


class MarkerParams(ActionParams):
    """Params of the user-style action below."""

    path: str
    content: str = "promoted"


class WriteMarker(Action[MarkerParams]):
    """Write a marker file: observes first, so a re-run is a no-op (what a user's action looks like)."""

    name = "user.write_marker"
    capability = Capability.EXEC_RUN
    Params = MarkerParams
    example = "id: mark\naction: user.write_marker\nwith: {path: /tmp/marker}\n"

    def run(self, params: MarkerParams, ctx: StepContext) -> StepResult:
        """Write ``content`` unless the file already holds it."""
        path = Path(params.path)
        if path.exists() and path.read_text(encoding="utf-8") == params.content:
            return StepResult(summary="already written", changed=False)
        path.write_text(params.content, encoding="utf-8")
        return StepResult(summary="written")

    def preflight(self, params: MarkerParams, ctx: StepContext) -> list[PreflightCheck]:
        """The marker's folder exists (read-only)."""
        parent = Path(params.path).parent
        return [PreflightCheck("marker folder exists", parent.is_dir(), str(parent))]


def _marker_contract(tmp_path: Path, action: type[Action[Any]] = WriteMarker) -> ActionContract:
    marker = tmp_path / "marker"
    return ActionContract(action, {"path": str(marker)}, context=_context(tmp_path),
                          observe=lambda: marker.read_text(encoding="utf-8") if marker.exists() else None)


def test_an_idempotent_action_passes_every_rule(tmp_path: Path) -> None:
    contract = _marker_contract(tmp_path)
    contract.check_all()
    assert (tmp_path / "marker").read_text(encoding="utf-8") == "promoted"
    first, again = _marker_contract(tmp_path).check_rerun_changes_nothing()
    assert (first.changed, again.changed) == (False, False)  # already done by check_all


# The rules have teeth: each catches the action that breaks it.

def test_the_rerun_rule_catches_an_action_that_always_reports_a_change(tmp_path: Path) -> None:
    contract = ActionContract(all_actions()["fake.fence_data"], {"dataset": "main"}, context=_context(tmp_path),
                              observe=lambda: None)
    with pytest.raises(AssertionError, match="re-running against the state it produced reported changed=True"):
        contract.check_rerun_changes_nothing()


class _Appends(WriteMarker):
    """Appends on every run, and says it changed nothing."""

    def run(self, params: MarkerParams, ctx: StepContext) -> StepResult:
        """Not idempotent."""
        with Path(params.path).open("a", encoding="utf-8") as marker:
            marker.write(params.content)
        return StepResult(changed=False)


def test_the_rerun_rule_catches_a_second_change_reported_as_none(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="re-running changed the state again"):
        _marker_contract(tmp_path, _Appends).check_rerun_changes_nothing()


class _PreflightWrites(WriteMarker):
    """Writes during pre-flight."""

    def preflight(self, params: MarkerParams, ctx: StepContext) -> list[PreflightCheck]:
        """Not read-only."""
        Path(params.path).write_text("oops", encoding="utf-8")
        return []


def test_the_preflight_rule_catches_a_side_effect(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="preflight changed the state: None -> 'oops'"):
        _marker_contract(tmp_path, _PreflightWrites).check_preflight_has_no_side_effects()


class _LooseParams(ActionParams, extra="ignore"):
    """Params that silently drop unknown keys."""

    path: str = ""


class _Loose(WriteMarker):
    """Takes any key."""

    Params = _LooseParams


def test_the_params_rule_catches_params_that_ignore_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="accepted the unknown key"):
        _marker_contract(tmp_path, _Loose).check_params_refuse_unknown_keys()


def test_checks_that_run_the_action_need_context_and_observe() -> None:
    with pytest.raises(TypeError, match="needs `context` and `observe`"):
        ActionContract(WriteMarker, {"path": "/nonexistent/marker"}).check_preflight_has_no_side_effects()
