"""The action contract suite: what every action promises, checkable against any target.

Any action, ours or a user's, can be held to the rules the engine relies on, in the author's
own tests and against the author's own (real or fake) system::

    contract = ActionContract(
        MyShift,
        {"name": "ledger", "value": "127.0.2.1"},
        context=lambda: step_context(state_dir=tmp_path),
        observe=lambda: my_dns.answer("ledger"),
    )
    contract.check_all()

The rules:

- ``Params`` refuse unknown keys (a typo in a runbook is an error, never silently ignored);
- ``preflight`` has no side effects: the state ``observe()`` returns is equal before and after;
- re-running a mutating action against the state it produced returns ``changed=False`` and
  changes nothing more (a crash mid-failover must be safe to re-run; resume = re-run).

``observe`` returns whatever shows the state the action may touch (a record's answer, a
file's content, a row count), compared with ``==``. ``context`` builds a fresh
:class:`~dr_engine.actions.base.StepContext` per call, so every call gets a full deadline
(see :func:`dr_engine.testing.step_context.step_context`). Each check raises AssertionError
saying which rule broke, like :func:`dr_engine.testing.leases.check_lock_contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dr_engine.actions.base import Action, ActionParams, PreflightCheck, StepContext, StepResult

#: The key planted to check that ``Params`` refuse unknown keys (no real action has it).
UNKNOWN_KEY = "surely_not_a_parameter"


@dataclass(frozen=True)
class ActionContract:
    """One action with one ``with:`` block, and how to run it and see what it changed.

    ``context`` and ``observe`` are needed by the checks that run the action; checking
    ``Params`` alone needs neither.
    """

    action: type[Action[Any]]
    params: Mapping[str, Any]
    context: Callable[[], StepContext] | None = None
    observe: Callable[[], object] | None = None

    def parsed(self) -> ActionParams:
        """The ``with:`` block validated by the action's ``Params``."""
        return self.action.Params.model_validate(dict(self.params))

    def check_params_refuse_unknown_keys(self) -> None:
        """``Params`` reject a key they do not declare, naming it."""
        try:
            self.action.Params.model_validate({**self.params, UNKNOWN_KEY: "x"})
        except ValidationError as exc:
            refused = [e for e in exc.errors() if e["type"] == "extra_forbidden" and tuple(e["loc"]) == (UNKNOWN_KEY,)]
            assert refused, f"{self.action.name}: Params did not refuse {UNKNOWN_KEY!r}: {exc.errors()}"
        else:
            raise AssertionError(f"{self.action.name}: Params accepted the unknown key {UNKNOWN_KEY!r}")

    def check_preflight_has_no_side_effects(self) -> list[PreflightCheck]:
        """Run ``preflight``; the observed state must be the same afterwards. Returns the checks."""
        context, observe = self._needs("the pre-flight check")
        params = self.parsed()
        before = observe()
        checks = self.action().preflight(params, context())
        after = observe()
        assert after == before, f"{self.action.name}: preflight changed the state: {before!r} -> {after!r}"
        assert all(isinstance(c, PreflightCheck) for c in checks), checks
        return checks

    def check_rerun_changes_nothing(self) -> tuple[StepResult, StepResult]:
        """Run twice: the second run reports ``changed=False`` and leaves the state as the first left it.

        Returns both results, so a test can assert more (e.g. that the first one did change).
        """
        context, observe = self._needs("the re-run check")
        params = self.parsed()
        first = self.action().run(params, context())
        done = observe()
        again = self.action().run(params, context())
        assert again.changed is False, (
            f"{self.action.name}: re-running against the state it produced reported changed=True "
            f"({again.summary!r}); a mutation must observe first and return early when done")
        after = observe()
        assert after == done, f"{self.action.name}: re-running changed the state again: {done!r} -> {after!r}"
        return first, again

    def check_all(self) -> None:
        """Every rule: Params, pre-flight without side effects, then re-run changes nothing."""
        self.check_params_refuse_unknown_keys()
        self.check_preflight_has_no_side_effects()
        self.check_rerun_changes_nothing()

    def _needs(self, what: str) -> tuple[Callable[[], StepContext], Callable[[], object]]:
        if self.context is None or self.observe is None:
            raise TypeError(f"{what} of {self.action.name} needs `context` and `observe`")
        return self.context, self.observe


__all__ = ["UNKNOWN_KEY", "ActionContract"]
