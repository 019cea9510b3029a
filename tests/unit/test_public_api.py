"""The curated public API in `dr_engine/__init__.py`: every name resolves, is documented, and is enough to run."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import dr_engine
import dr_engine.testing.actions  # registers the fake.* actions
from dr_engine.testing.runbooks import write_runbook

STEPS = """
- id: hello
  action: fake.noop
- id: flaky
  action: fake.fail
  with: {times: 1}
  after: [hello]
- id: verify
  action: fake.check_health
  after: [flaky]
"""


@pytest.mark.parametrize("name", dr_engine.__all__)
def test_every_public_name_resolves_and_has_a_docstring(name: str) -> None:
    value = getattr(dr_engine, name)
    assert value.__name__ == name
    assert (inspect.getdoc(value) or "").strip(), f"dr_engine.{name} has no docstring"


def test_all_is_sorted_unique_and_matches_the_lazy_table() -> None:
    assert dr_engine.__all__ == sorted(set(dr_engine.__all__))
    assert set(dr_engine.__all__) == set(dr_engine._EXPORTS)
    assert set(dr_engine.__all__) <= set(dir(dr_engine))


def test_the_error_taxonomy_is_public() -> None:
    errors = {name for name in dr_engine.__all__ if isinstance(getattr(dr_engine, name), type)
              and issubclass(getattr(dr_engine, name), dr_engine.DrError)}
    drawn = {name for name, cls in vars(sys.modules["dr_engine.errors"]).items()
             if isinstance(cls, type) and issubclass(cls, dr_engine.DrError) and not name.startswith("_")}
    assert drawn <= errors, f"errors.py classes missing from dr_engine.__all__: {sorted(drawn - errors)}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = dr_engine.nope  # type: ignore[attr-defined]
    assert not hasattr(dr_engine, "nope")


def test_import_dr_engine_loads_nothing_heavy() -> None:
    # Every `import dr_engine.<module>` runs the package's __init__ first: it must stay free.
    code = ("import sys, dr_engine; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'boto3', 'pydantic', 'yaml'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_and_its_resume_through_the_public_api_only(tmp_path: Path) -> None:
    path = write_runbook(tmp_path, STEPS, name="public-api")
    plan = dr_engine.build_plan(dr_engine.load_runbook(path, regions_dir=tmp_path / "regions"))
    assert isinstance(plan, dr_engine.ExecutionPlan)
    state = tmp_path / "state"

    first = dr_engine.start_run(plan, dr_engine.RunOptions(state_dir=state, lock=dr_engine.NullLock(),
                                                           reason="public API"))
    assert first.status is dr_engine.RunStatus.FAILED
    assert first.halted_at_step == "flaky"

    record = dr_engine.resume_run(state, first.run_id, lock=dr_engine.NullLock())
    assert record.run_id == first.run_id
    assert record.status is dr_engine.RunStatus.SUCCEEDED
    assert [s.status for s in record.steps] == [dr_engine.StepStatus.SUCCEEDED] * 3
    stored = dr_engine.load_record(dr_engine.StateDir(state).run_dir(record.run_id))
    assert isinstance(stored, dr_engine.RunRecord)
    assert stored.status is dr_engine.RunStatus.SUCCEEDED
