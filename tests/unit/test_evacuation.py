"""Evacuation plans: loading, composing, running in dependency order, failure policies, resume.

The applications run the fake actions of dr_engine.testing.actions through the engine's real
entry point (own lock, own run record), in threads of this process.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.config.evacuation import is_evacuation_file, load_evacuation
from dr_engine.engine.evacuation import EvacuationOptions, resume_evacuation, start_evacuation
from dr_engine.errors import ConfigError, PlanError
from dr_engine.evidence.audit import read_events, verify
from dr_engine.evidence.evacuation_record import AppStatus, load_evacuation_record
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.planning.evacuation import build_evacuation_plan
from dr_engine.planning.prediction import history_by_runbook, percentile
from dr_engine.testing.runbooks import write_runbook

OK_STEPS = """
- id: ready
  action: fake.check_health
- id: shift
  action: fake.shift_traffic
  after: [ready]
- id: health
  action: fake.check_health
  after: [shift]
"""

FAILING_STEPS = """
- id: broken
  action: fake.fail
- id: health
  action: fake.check_health
  after: [broken]
"""


def _plan_file(folder: Path, body: str, *, name: str = "evacuate-east", rto: str = "30m") -> Path:
    path = folder / "runbooks" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"kind: evacuation\nevacuation: {name}\nsource: east\ntarget: west\n"
                    f"objectives: {{rto: {rto}}}\n" + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def _world(folder: Path, failing: tuple[str, ...] = ()) -> None:
    for name in ("core", "payments", "cards", "reports"):
        write_runbook(folder, FAILING_STEPS if name in failing else OK_STEPS, name=name)


PLAN = """
applications:
  - {name: core, runbook: core, tier: 0}
  - {name: payments, runbook: payments, tier: 1}
  - name: cards
    runbook: cards
    tier: 1
    after: [payments]
  - name: reports
    runbook: reports
    tier: 2
    after:
      - {application: cards, on_failure: continue}
"""


def _load(folder: Path, body: str = PLAN):  # type: ignore[no-untyped-def]
    return build_evacuation_plan(load_evacuation(_plan_file(folder, body), regions_dir=folder / "regions"))


def test_the_plan_composes_waves_tiers_and_a_critical_path(tmp_path: Path) -> None:
    _world(tmp_path)
    plan = _load(tmp_path)
    assert plan.waves == [["core"], ["payments"], ["cards"], ["reports"]]
    # Tier 1 waits for tier 0 implicitly; tier 2 for every application of tier 1.
    assert {(e.application, e.waits_for, e.implicit) for e in plan.edges} == {
        ("payments", "core", True), ("cards", "payments", False), ("cards", "core", True),
        ("reports", "cards", False), ("reports", "payments", True)}
    assert plan.critical_path == ["core", "payments", "cards", "reports"]
    assert plan.critical_basis == "runbook RTO objectives" and plan.critical_seconds == 4 * 300
    described = plan.to_dict()
    assert described["kind"] == "evacuation" and [a["wave"] for a in described["applications"]] == [1, 2, 3, 4]
    assert is_evacuation_file(plan.loaded.path)


@pytest.mark.parametrize(("body", "message"), [
    ("applications:\n  - {name: core, runbook: core}\n  - {name: core, runbook: payments}\n", "listed twice"),
    ("applications:\n  - {name: core, runbook: core, after: [nobody]}\n", "'nobody' is not an application"),
    ("applications:\n  - {name: core, runbook: core, after: [core]}\n", "waits for itself"),
    ("applications:\n  - {name: core, runbook: missing}\n", "not found"),
    ("applications:\n  - {name: core, runbook: core, tier: -1}\n", "must be >= 0"),
    ("applications:\n  - {name: core, runbook: core, colour: red}\n", "colour"),
])
def test_bad_plans_are_refused_with_a_located_problem(tmp_path: Path, body: str, message: str) -> None:
    _world(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_evacuation(_plan_file(tmp_path, body), regions_dir=tmp_path / "regions")
    rendered = "\n".join(p.render() for p in caught.value.problems)
    assert message in rendered and "evacuate-east.yaml:" in rendered
    assert "dr actions" not in rendered  # no hint about actions for a plan's own fields


def test_a_runbook_of_another_region_pair_or_a_second_entry_for_one_application_is_refused(tmp_path: Path) -> None:
    _world(tmp_path)
    back = tmp_path / "runbooks" / "back.yaml"
    back.write_text("runbook: back\nsource: west\ntarget: east\nobjectives: {rto: 5m, rpo: 0s}\n"
                    "steps:\n  - {id: health, action: fake.check_health}\n", encoding="utf-8")
    body = ("applications:\n  - {name: core, runbook: core}\n  - {name: again, runbook: core}\n"
            "  - {name: back, runbook: back}\n")
    with pytest.raises(ConfigError) as caught:
        load_evacuation(_plan_file(tmp_path, body), regions_dir=tmp_path / "regions")
    messages = [p.message for p in caught.value.problems]
    assert any("both move 'core'" in m for m in messages)
    assert any("goes west -> east, the plan east -> west" in m for m in messages)


def test_a_circle_across_applications_is_a_plan_error(tmp_path: Path) -> None:
    _world(tmp_path)
    body = ("applications:\n  - {name: core, runbook: core, after: [cards]}\n"
            "  - {name: payments, runbook: payments, after: [core]}\n"
            "  - {name: cards, runbook: cards, after: [payments]}\n")
    with pytest.raises(PlanError) as caught:
        _load(tmp_path, body)
    assert "in a circle: core, payments, cards" in caught.value.problems[0].message


def test_an_evacuation_runs_every_application_as_its_own_run_and_links_them(tmp_path: Path) -> None:
    _world(tmp_path)
    plan = _load(tmp_path)
    state = StateDir(tmp_path / "state")
    seen: list[str] = []
    record = start_evacuation(plan, EvacuationOptions(state_dir=state, on_change=lambda r: seen.append(r.status)))
    assert record.status == "succeeded"
    assert [a.status for a in record.applications] == [AppStatus.SUCCEEDED] * 4
    assert record.rto_seconds is not None and record.rto_met is True
    for entry in record.applications:  # each application is a run with its own verified log
        assert entry.run_id is not None and state.load(entry.run_id).status is RunStatus.SUCCEEDED
        assert verify(state.audit_file(entry.run_id)).ok and entry.recovered_at is not None
    directory = state.evacuation_dir(record.evacuation_id)
    check = verify(directory / "audit.jsonl")
    assert check.ok and check.sealed
    # Dependencies were honoured: nobody started before what it waits for had finished.
    events = read_events(directory / "audit.jsonl")
    order = [e["data"]["application"] for e in events if e["type"] == "evacuation.application_started"]
    finished = [e["data"]["application"] for e in events if e["type"] == "evacuation.application_finished"]
    assert order == finished == ["core", "payments", "cards", "reports"]
    # evacuation.json is the fold of the log, as written to disk.
    on_disk = json.loads((directory / "evacuation.json").read_text())
    assert on_disk == json.loads(load_evacuation_record(directory).to_json())
    assert seen and seen[-1] == "succeeded"


def test_a_failed_application_halts_only_its_dependents_and_continue_is_reported(tmp_path: Path) -> None:
    _world(tmp_path, failing=("payments",))
    body = """
    applications:
      - {name: core, runbook: core}
      - {name: payments, runbook: payments}
      - {name: cards, runbook: cards, after: [payments]}
      - name: reports
        runbook: reports
        after: [{application: payments, on_failure: continue}]
    """
    plan = _load(tmp_path, body)
    state = StateDir(tmp_path / "state")
    record = start_evacuation(plan, EvacuationOptions(state_dir=state))
    statuses = {a.name: a.status for a in record.applications}
    assert statuses == {"core": AppStatus.SUCCEEDED, "payments": AppStatus.FAILED, "cards": AppStatus.SKIPPED,
                        "reports": AppStatus.SUCCEEDED}
    assert record.app("cards").skipped_because == "payments" and record.app("cards").run_id is None
    assert record.app("reports").continued_despite == ["payments"]
    assert record.status == "failed" and record.rto_seconds is None and record.rto_met is False


def test_resume_continues_only_what_did_not_succeed(tmp_path: Path) -> None:
    _world(tmp_path)
    # payments fails once (what broke is fixed outside the runbook, which must not change).
    write_runbook(tmp_path, FAILING_STEPS.replace("action: fake.fail", "action: fake.fail\n  with: {times: 1}"),
                  name="payments")
    body = "applications:\n  - {name: core, runbook: core}\n  - {name: payments, runbook: payments}\n" \
           "  - {name: cards, runbook: cards, after: [payments]}\n"
    plan = _load(tmp_path, body)
    state = StateDir(tmp_path / "state")
    first = start_evacuation(plan, EvacuationOptions(state_dir=state))
    failed_run = first.app("payments").run_id
    assert first.status == "failed" and failed_run is not None
    assert first.app("cards").status is AppStatus.SKIPPED
    second = resume_evacuation(plan, first.evacuation_id, EvacuationOptions(state_dir=state))
    assert second.status == "succeeded" and second.resumes == 1
    assert second.app("core").run_id == first.app("core").run_id  # not run again
    assert second.app("payments").run_id == failed_run  # the same run, resumed
    assert state.load(failed_run).status is RunStatus.SUCCEEDED and state.load(failed_run).resumes == 1
    assert second.app("cards").status is AppStatus.SUCCEEDED
    assert verify(state.evacuation_dir(first.evacuation_id) / "audit.jsonl").ok
    with pytest.raises(Exception, match="already succeeded"):
        resume_evacuation(plan, first.evacuation_id, EvacuationOptions(state_dir=state))


def test_predictions_come_from_past_runs(tmp_path: Path) -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0 and percentile([1.0, 2.0], 0.95) == 2.0
    _world(tmp_path)
    plan = _load(tmp_path)
    state = StateDir(tmp_path / "state")
    assert plan.predicted(history_by_runbook(state))["p50_seconds"] is None  # no history: unknown
    start_evacuation(plan, EvacuationOptions(state_dir=state))
    history = history_by_runbook(state)
    assert set(history) == {"core", "payments", "cards", "reports"}
    assert history["core"].rto.samples == 1 and history["core"].steps["health"].samples == 1
    predicted = plan.predicted(history)
    assert predicted["p50_seconds"] is not None and predicted["exceeds_objective"] is False
    recomposed = build_evacuation_plan(plan.loaded, history)
    assert recomposed.critical_basis == "history p50"


SLOW_STEPS = """
- id: work
  action: control.wait
  with: {duration: 1500ms}
- id: health
  action: fake.check_health
  after: [work]
"""


def test_an_application_whose_lock_is_held_fails_and_only_its_dependents_are_halted(tmp_path: Path) -> None:
    # Another run of `payments` (a second evacuation, an operator) holds its failover lock.
    from dr_engine.lock.base import FileLock

    _world(tmp_path)
    state = StateDir(tmp_path / "state")
    lease = FileLock(state.locks_dir).acquire("payments", "20261207T000000Z-abcdef")
    body = "applications:\n  - {name: core, runbook: core}\n  - {name: payments, runbook: payments}\n" \
           "  - {name: cards, runbook: cards, after: [payments]}\n"
    record = start_evacuation(_load(tmp_path, body), EvacuationOptions(state_dir=state))
    assert record.app("core").status is AppStatus.SUCCEEDED
    assert record.app("payments").status is AppStatus.FAILED
    assert not state.exists(record.app("payments").run_id or "")  # refused before it started
    assert record.app("cards").status is AppStatus.SKIPPED
    finished = [e for e in read_events(state.evacuation_dir(record.evacuation_id) / "audit.jsonl")
                if e["type"] == "evacuation.application_finished" and e["data"]["application"] == "payments"]
    assert "LockHeld" in finished[0]["data"]["error"]
    assert FileLock(state.locks_dir).inspect("payments") == lease  # the holder keeps its lock


def test_a_stop_signal_starts_no_new_application_and_the_evacuation_resumes(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    from dr_engine.engine.interrupts import Interrupts

    _world(tmp_path)
    write_runbook(tmp_path, SLOW_STEPS, name="core")
    plan = _load(tmp_path)
    state = StateDir(tmp_path / "state")
    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt() -> None:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    try:
        threading.Thread(target=interrupt, daemon=True).start()
        interrupts = Interrupts(write=lambda text: None)
        with interrupts.installed():
            record = start_evacuation(plan, EvacuationOptions(state_dir=state, interrupts=interrupts))
    finally:
        signal.signal(signal.SIGINT, saved)
    assert record.status == "cancelled"
    core = record.app("core")
    # The running application let its step finish (the grace) and ended cancelled; nothing else started.
    assert core.status is AppStatus.CANCELLED and state.load(core.run_id or "").interrupted_by == ["SIGINT"]
    assert [a.status for a in record.applications[1:]] == [AppStatus.PENDING] * 3
    check = verify(state.evacuation_dir(record.evacuation_id) / "audit.jsonl")
    assert check.ok and check.sealed
    resumed = resume_evacuation(plan, record.evacuation_id, EvacuationOptions(state_dir=state))
    assert resumed.status == "succeeded" and resumed.app("core").run_id == core.run_id
    # After the signal and the resume, every chain verifies and the report rebuilds from them.
    from dr_engine.report.evacuation import evacuation_report

    assert all(verify(state.audit_file(a.run_id or "")).ok for a in resumed.applications)
    rebuilt = evacuation_report(state, record.evacuation_id)
    assert rebuilt.verdict == "PASSED" and "the evacuation was resumed 1 time(s)" in rebuilt.deviations


def test_a_resume_while_a_session_still_runs_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    from dr_engine.errors import LockHeld
    from dr_engine.lock.base import FileLock

    _world(tmp_path, failing=("payments",))
    plan = _load(tmp_path)
    state = StateDir(tmp_path / "state")
    record = start_evacuation(plan, EvacuationOptions(state_dir=state))
    log = state.evacuation_dir(record.evacuation_id) / "audit.jsonl"
    before = log.read_bytes()
    # A live session of this evacuation (this very process holds its lease).
    lease = FileLock(state.locks_dir).acquire(f"evacuation-{record.evacuation_id}", record.evacuation_id)
    with pytest.raises(LockHeld):
        resume_evacuation(plan, record.evacuation_id, EvacuationOptions(state_dir=state))
    assert log.read_bytes() == before  # nothing sealed, nothing resumed
    FileLock(state.locks_dir).release(lease)
    assert resume_evacuation(plan, record.evacuation_id, EvacuationOptions(state_dir=state)).resumes == 1


def test_the_report_shows_tiers_the_timeline_and_deviations_in_every_format(tmp_path: Path) -> None:
    from dr_engine.report.evacuation import evacuation_report, write_evacuation_report

    _world(tmp_path, failing=("payments",))
    state = StateDir(tmp_path / "state")
    record = start_evacuation(_load(tmp_path), EvacuationOptions(state_dir=state))
    report = evacuation_report(state, record.evacuation_id)
    assert report.verdict == "FAILED" and [r.tier for r in report.applications] == [0, 1, 1, 2]
    assert any("cards: not started: 'payments' did not succeed" in d for d in report.deviations)
    assert any("reports: ran although cards failed" in d or "reports: not started" in d for d in report.deviations)
    written = write_evacuation_report(report, tmp_path / "out", ["md", "json", "html", "pdf"])
    assert sorted(p.name for p in written) == ["evacuation-timeline.svg", "evacuation.html", "evacuation.json",
                                                "evacuation.md", "evacuation.pdf"]
    assert (tmp_path / "out" / "evacuation.pdf").read_bytes().startswith(b"%PDF")
    svg = (tmp_path / "out" / "evacuation-timeline.svg").read_text()
    assert 'id="application-core"' in svg and 'id="application-payments"' in svg
    assert "data:image/svg+xml" in (tmp_path / "out" / "evacuation.html").read_text()
    assert json.loads((tmp_path / "out" / "evacuation.json").read_text())["verdict"] == "FAILED"
    # An application whose run record was altered makes the whole report UNVERIFIED.
    run_json = state.run_file(record.app("core").run_id or "")
    run_json.write_text(run_json.read_text().replace('"succeeded"', '"failed"', 1))
    assert evacuation_report(state, record.evacuation_id).verdict == "UNVERIFIED"
