"""Identities come from the OS, never from what someone typed; approval answers prove their author."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.engine.approval import (
    APPROVALS_DIR,
    open_approvals_dir,
    read_approval_token,
    write_approval_token,
)
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import default_actor
from dr_engine.evidence.identity import PREFECT_UI_UNAUTHENTICATED, OsIdentity, TwoPersonRule
from dr_engine.evidence.journal import rebuild_record
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.testing.runbooks import plan_from_steps

REQUEST = "0123456789abcdef"
#: A uid nobody on this machine has: what another operator's answer file looks like.
OTHER_UID = 4242


def test_default_actor_ignores_user_and_logname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("LNAME", "mallory")
    monkeypatch.setenv("USERNAME", "mallory")
    expected = f"{pwd.getpwuid(os.geteuid()).pw_name}@{socket.gethostname()}"
    assert default_actor() == expected
    assert OsIdentity.current() == OsIdentity(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), socket.gethostname())


def test_the_record_keeps_the_initiators_os_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "mallory")
    plan = plan_from_steps(tmp_path, "- id: healthy\n  action: fake.check_health\n", name="who")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock(), triggered_by="schedule"))
    me = OsIdentity.current()
    assert record.triggered_by == "schedule"  # a label chosen by the caller
    assert record.initiator is not None
    assert (record.initiator.user, record.initiator.uid, record.initiator.host) == (me.user, me.uid, me.host)
    from dr_engine.evidence.audit import read_events

    assert rebuild_record(read_events(StateDir(state).audit_file(record.run_id))).initiator == record.initiator


@pytest.mark.parametrize(("approver", "allowed"), [
    (OsIdentity("alice", 1000, "bastion"), False),  # the initiator herself
    (OsIdentity("alice", 1777, "laptop"), False),   # the same account name elsewhere: the same person
    (OsIdentity("alice2", 1000, "bastion"), False),  # the same uid on the same host: the same account
    (OsIdentity("bob", 1001, "bastion"), True),
    (OsIdentity("bob", 1000, "laptop"), True),      # uid 1000 elsewhere is another account
])
def test_two_person_rule_compares_os_identities(approver: OsIdentity, allowed: bool) -> None:
    rule = TwoPersonRule(initiator=OsIdentity("alice", 1000, "bastion"))
    refusal = rule.refusal(approver)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert "different person than the initiator alice@bastion" in refusal[0]
        assert "allow_self_approval" in refusal[1]
    relaxed = TwoPersonRule(initiator=OsIdentity("alice", 1000, "bastion"), allow_self_approval=True, reason="x")
    assert relaxed.refusal(approver) is None


def test_two_person_rule_fails_closed() -> None:
    rule = TwoPersonRule(initiator=OsIdentity("alice", 1000, "bastion"), allow_self_approval=True, reason="x")
    unproven = rule.refusal(None, "prefect-ui")
    assert unproven is not None and PREFECT_UI_UNAUTHENTICATED in unproven[0]
    unknown_initiator = TwoPersonRule(initiator=None).refusal(OsIdentity("bob", 1001, "bastion"))
    assert unknown_initiator is not None and "no recorded OS identity" in unknown_initiator[0]
    assert TwoPersonRule.from_dict(rule.as_dict()) == rule


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    open_approvals_dir(run_dir)
    return run_dir


def test_approvals_folder_lets_group_members_add_but_not_remove_answers(tmp_path: Path) -> None:
    folder = open_approvals_dir(_run_dir(tmp_path))
    assert folder.stat().st_mode & 0o7777 == 0o3770


def test_an_answer_file_proves_its_author_by_its_owner(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    token = write_approval_token(run_dir, run_id="r1", request_id=REQUEST, step="allow-data-loss",
                                 approver="alice", approve=True, comment="CHG-1")
    path = run_dir / APPROVALS_DIR / token.name
    assert path.stat().st_mode & 0o777 == 0o640
    read = read_approval_token(run_dir, token.name, request_id=REQUEST)
    assert read.identity == OsIdentity.current() and (read.approver, read.approve, read.comment) == \
        ("alice", True, "CHG-1")
    # Written by someone else (here: made theirs with chown), the claimed uid inside must match the owner.
    os.chown(path, OTHER_UID, -1)
    with pytest.raises(RunStateError, match=f"claims uid {os.geteuid()} but belongs to uid {OTHER_UID}"):
        read_approval_token(run_dir, token.name, request_id=REQUEST)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "uid": OTHER_UID}))
    theirs = read_approval_token(run_dir, token.name, request_id=REQUEST)
    assert theirs.identity.uid == OTHER_UID and theirs.identity.user == f"uid{OTHER_UID}"


def test_an_answer_file_for_another_request_or_by_another_path_is_refused(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    token = write_approval_token(run_dir, run_id="r1", request_id=REQUEST, step="s", approver="a", approve=True,
                                 comment="")
    with pytest.raises(RunStateError, match="not this one"):
        read_approval_token(run_dir, token.name, request_id="fedcba9876543210")
    with pytest.raises(RunStateError, match="not the name of an answer file"):
        read_approval_token(run_dir, f"../{token.name}", request_id=REQUEST)
    link = f"{REQUEST}-0-0000abcd.json"
    (run_dir / APPROVALS_DIR / link).symlink_to(run_dir / APPROVALS_DIR / token.name)
    with pytest.raises(RunStateError, match="cannot read the answer file"):
        read_approval_token(run_dir, link, request_id=REQUEST)


def test_answering_a_run_without_an_approvals_folder_says_why(tmp_path: Path) -> None:
    run_dir = tmp_path / "older-run"
    run_dir.mkdir()
    with pytest.raises(RunStateError, match=r"has no .*approvals folder"):
        write_approval_token(run_dir, run_id="r1", request_id=REQUEST, step="s", approver="a", approve=True,
                             comment="")
