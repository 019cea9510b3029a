"""Tampering with a real audit log (written by the engine) is detected, and the place is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dr_engine.testing.actions  # noqa: F401 - registers the fake actions
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.audit import AuditLog, AuditSealed, canonical, event_hash, read_events, verify
from dr_engine.lock.base import NullLock
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.runbooks import plan_from_steps


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    plan = plan_from_steps(tmp_path, """
- id: a
  action: fake.noop
- id: b
  action: fake.flaky
  with: {failures: 1}
  retry: {attempts: 2, backoff: 1s}
  after: [a]
- id: ok
  action: fake.check_health
  after: [b]
""")
    record = start_run(plan, RunOptions(state_dir=tmp_path / "state", clock=FakeClock(), concurrency=1,
                                        lock=NullLock()))
    path = tmp_path / "state" / "runs" / record.run_id
    assert verify(path / "audit.jsonl").ok
    return path


def lines(run_dir: Path) -> list[str]:
    return (run_dir / "audit.jsonl").read_text().splitlines(keepends=True)


def write(run_dir: Path, new: list[str]) -> None:
    (run_dir / "audit.jsonl").write_text("".join(new))


def test_an_intact_log_verifies_and_is_sealed(run_dir: Path) -> None:
    result = verify(run_dir / "audit.jsonl")
    assert result.ok and result.sealed and result.count == len(lines(run_dir))
    assert result.head == json.loads(lines(run_dir)[-1])["hash"]
    assert "OK" in result.describe("x")


def test_modifying_an_event_is_detected(run_dir: Path) -> None:
    content = lines(run_dir)
    content[4] = content[4].replace('"step":"b"', '"step":"z"')
    assert content[4] != lines(run_dir)[4]
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 5 and "modified" in result.reason
    assert "line 5" in result.describe("audit.jsonl")


def test_modifying_an_event_and_its_hash_breaks_the_next_link(run_dir: Path) -> None:
    content = lines(run_dir)
    event = json.loads(content[3])
    event["actor"] = "mallory@elsewhere"
    event["hash"] = event_hash(event)
    content[3] = canonical(event).decode() + "\n"
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 5 and "link" in result.reason


def test_deleting_an_event_is_detected(run_dir: Path) -> None:
    content = lines(run_dir)
    del content[6]
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 7 and "sequence" in result.reason


def test_inserting_an_event_is_detected(run_dir: Path) -> None:
    content = lines(run_dir)
    content.insert(3, content[2])
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 4


def test_inserting_a_well_formed_forged_event_is_detected(run_dir: Path) -> None:
    content = lines(run_dir)
    previous = json.loads(content[2])
    forged = {"seq": 4, "ts": previous["ts"], "type": "approval.granted", "actor": "mallory", "run_id":
              previous["run_id"], "data": {}, "prev": previous["hash"]}
    forged["hash"] = event_hash(forged)
    content.insert(3, canonical(forged).decode() + "\n")
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 5


def test_reordering_events_is_detected(run_dir: Path) -> None:
    content = lines(run_dir)
    content[5], content[6] = content[6], content[5]
    write(run_dir, content)
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and result.first_bad_line == 6


def test_truncating_the_tail_is_detected_through_run_json(run_dir: Path) -> None:
    content = lines(run_dir)
    write(run_dir, content[:-3])
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and "truncated" in result.reason
    assert f"{len(content)} events" in result.reason


def test_truncating_the_tail_is_detected_without_run_json(run_dir: Path, tmp_path: Path) -> None:
    # A copy of the log alone: the missing seal (run.finished carrying the count) gives it away.
    copy = tmp_path / "copy" / "audit.jsonl"
    copy.parent.mkdir()
    copy.write_text("".join(lines(run_dir)[:-1]))
    assert verify(copy).ok  # a cut at an event boundary looks like an interrupted run ...
    assert not verify(copy).sealed
    result = verify(copy, expect_sealed=True)  # ... unless the run is known to have ended
    assert not result.ok and "sealing run.finished" in result.reason


def test_a_torn_last_line_is_detected(run_dir: Path) -> None:
    raw = (run_dir / "audit.jsonl").read_bytes()
    (run_dir / "audit.jsonl").write_bytes(raw[:-20])
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok and "incomplete" in result.reason


def test_replacing_the_whole_log_with_a_shorter_valid_chain_is_detected(run_dir: Path, tmp_path: Path) -> None:
    events = read_events(run_dir / "audit.jsonl")
    fake = tmp_path / "forged.jsonl"
    log = AuditLog(fake, events[0]["run_id"])
    log.append("run.started", actor="mallory", record={})
    log.append("run.finished", actor="mallory", status="succeeded")
    shutil.copy(fake, run_dir / "audit.jsonl")
    result = verify(run_dir / "audit.jsonl")
    assert not result.ok  # run.json recorded more events and another head


def test_the_writer_refuses_any_append_after_the_seal(run_dir: Path) -> None:
    path = run_dir / "audit.jsonl"
    before = path.read_bytes()
    run_id = read_events(path)[0]["run_id"]
    with pytest.raises(AuditSealed, match="sealed"):
        AuditLog(path, run_id).append("step.succeeded", step="late", summary="returned after the seal")
    assert path.read_bytes() == before  # nothing written
    assert verify(path).ok


def test_an_amendment_is_written_with_its_own_seal(run_dir: Path) -> None:
    path = run_dir / "audit.jsonl"
    run_id = read_events(path)[0]["run_id"]
    written = AuditLog(path, run_id).amend([("note.added", "ops@host", {"text": "added later"})], status="cancelled")
    assert [e["type"] for e in written] == ["note.added", "run.finished"]
    result = verify(path, expected_count=None, expected_head=None, expect_sealed=True)
    assert result.ok and result.sealed


def test_a_forged_event_after_the_seal_is_detected(run_dir: Path) -> None:
    # Written by hand (bypassing the writer), chained correctly: verify still refuses it.
    path = run_dir / "audit.jsonl"
    last = read_events(path)[-1]
    event = {"seq": last["seq"] + 1, "ts": last["ts"], "type": "note.added", "actor": "x", "run_id": last["run_id"],
             "data": {"text": "added later"}, "prev": last["hash"]}
    event["hash"] = event_hash(event)
    with path.open("ab") as handle:
        handle.write(canonical(event) + b"\n")
    result = verify(path)
    assert not result.ok and "seal" in result.reason


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(path, "r") for _ in range(4)]  # separate writers, as separate processes would be

    def work(log: AuditLog) -> None:
        for i in range(25):
            log.append("note.added", text=str(i))

    threads = [threading.Thread(target=work, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(path)
    assert result.ok and result.count == 100
