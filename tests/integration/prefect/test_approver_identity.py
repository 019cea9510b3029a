"""The two-person rule with real processes and real OS users.

`dr failover --allow-data-loss` runs as one OS user (root, the initiator) and pauses for an
approval; `dr approve` runs as that same user (refused) and as a second OS user created for the
test (accepted). The second operator reaches the run the documented way: the state dir belongs
to a group both are in, with the setgid bit, and runs start with umask 0027.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect_kit import DR, REPO, quiet_env

from dr_engine.evidence.audit import AuditLog, read_events, verify
from dr_engine.evidence.statedir import StateDir

pytestmark = pytest.mark.integration

REASON = "primary region lost; the business accepts losing in-flight transfers"
SELF_APPROVAL = 'approvals: {allow_self_approval: true, reason: "one on-call engineer at night"}\n'


@dataclass
class Operator:
    """A throw-away OS user in a throw-away group, with a home of its own."""

    user: str
    uid: int
    group: str
    gid: int
    home: Path


@dataclass
class Shared:
    """A working folder (runbooks, regions) and a state dir shared with the operators' group."""

    work: Path
    state: Path


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture
def operator() -> Iterator[Operator]:
    """A second OS user (root creates it; the test runs as root, as CI does)."""
    assert os.geteuid() == 0, "this test creates an OS user: run it as root (CI does)"
    suffix = secrets.token_hex(3)
    group, user = f"drops{suffix}", f"drappr{suffix}"
    home = Path(tempfile.mkdtemp(prefix=f"{user}-"))
    _run("groupadd", group)
    try:
        _run("useradd", "--no-create-home", "--no-user-group", "--gid", group, "--home-dir", str(home),
             "--shell", "/usr/sbin/nologin", user)
        try:
            import grp
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            yield Operator(user=user, uid=entry.pw_uid, group=group, gid=grp.getgrnam(group).gr_gid, home=home)
        finally:
            _run("userdel", user)
    finally:
        _run("groupdel", group)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def shared(operator: Operator) -> Iterator[Shared]:
    """Runbooks and regions, and a state dir of the operators' group (setgid: new folders inherit it)."""
    base = Path(tempfile.mkdtemp(prefix="dr-two-person-"))
    try:
        base.chmod(0o755)  # mkdtemp is 0700: the operator must reach the state dir inside
        work = base / "work"
        (work / "runbooks").mkdir(parents=True)
        shutil.copytree(REPO / "regions", work / "regions")
        state = base / "state"
        state.mkdir()
        os.chown(state, 0, operator.gid)
        state.chmod(0o2770)
        yield Shared(work=work, state=state)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _runbook(shared: Shared, name: str, extra: str = "") -> str:
    text = (REPO / "runbooks" / "sample-noop.yaml").read_text().replace("runbook: sample-noop", f"runbook: {name}")
    text = text.replace("steps:\n", f"{extra}steps:\n", 1)
    (shared.work / "runbooks" / f"{name}.yaml").write_text(text)
    return name


def _start_failover(shared: Shared, home: Path, runbook: str) -> subprocess.Popen[str]:
    """`dr failover --allow-data-loss` as root with umask 0027 (group-readable run folders)."""
    return subprocess.Popen([DR, "failover", runbook, "--yes", "--allow-data-loss", "--reason", REASON,
                             "--state-dir", str(shared.state)], cwd=shared.work, env=quiet_env(home),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            umask=0o027)


def _wait_for_request(state: Path, process: subprocess.Popen[str]) -> str:
    end = time.monotonic() + 180
    while time.monotonic() < end:
        for run_id in StateDir(state).run_ids():
            if any(e["type"] == "approval.requested" for e in read_events(StateDir(state).audit_file(run_id))):
                return run_id
        if process.poll() is not None:
            raise AssertionError(f"the run ended before asking: {process.communicate()}")
        time.sleep(0.2)
    raise AssertionError("no approval was requested")


def _as_operator(operator: Operator, argv: list[str]) -> list[str]:
    """``argv`` run as ``operator`` (its own uid and groups only).

    The venv's interpreter may live under a folder other users cannot traverse (on CI images:
    /root/.pyenv, /root being 0700). Then the command runs in a private mount namespace where
    /root is a 0755 tmpfs with only that interpreter tree bound back in; nothing else is exposed
    and no permission on the host changes.
    """
    interpreter = Path(os.path.realpath(Path(DR).parent / "python"))
    hidden = next((p for p in reversed(interpreter.parents) if p != Path("/") and not p.stat().st_mode & 0o001),
                  None)
    become = ["setpriv", f"--reuid={operator.uid}", f"--regid={operator.gid}", "--init-groups", "--"]
    if hidden is None:
        return [*become, *argv]
    keep = interpreter.parents[len(interpreter.parents) - len(hidden.parents) - 2]  # e.g. /root/.pyenv
    stash = operator.home / "interpreter"  # a mount point inside the namespace only; removed with the home
    stash.mkdir(exist_ok=True)
    script = (f"set -e; mount --bind {keep} {stash}; mount -t tmpfs -o mode=0755,size=1m tmpfs {hidden}; "
              f"mkdir -p {keep}; mount --bind {stash} {keep}; exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *become, *argv]


def _approve(shared: Shared, home: Path, run_id: str, name: str, *, operator: Operator | None = None,
             comment: str = "") -> subprocess.CompletedProcess[str]:
    argv = [DR, "approve", run_id, "--as", name, "--comment", comment, "--state-dir", str(shared.state)]
    env = quiet_env(home)
    if operator is not None:
        argv = _as_operator(operator, argv)
        env = {**env, "HOME": str(operator.home), "PREFECT_HOME": str(operator.home / "prefect")}
    return subprocess.run(argv, cwd=shared.work, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, check=False)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def _record(shared: Shared, run_id: str) -> dict[str, Any]:
    audit = StateDir(shared.state).audit_file(run_id)
    assert verify(audit).ok
    data: dict[str, Any] = json.loads(StateDir(shared.state).run_file(run_id).read_text())
    return data


def test_the_initiator_cannot_approve_and_another_os_user_can(prefect_home_copy: Path, shared: Shared,
                                                              operator: Operator) -> None:
    host = socket.gethostname()
    failover = _start_failover(shared, prefect_home_copy, _runbook(shared, "two-person"))
    try:
        run_id = _wait_for_request(shared.state, failover)

        mine = _approve(shared, prefect_home_copy, run_id, "alice")
        assert mine.returncode == 1, mine.stdout + mine.stderr
        assert f"the approver must be a different person than the initiator root@{host}" in mine.stderr
        assert "allow_self_approval: true" in mine.stderr and "Traceback" not in mine.stderr
        time.sleep(2)  # the run polls its pause every second: it must still be waiting
        assert failover.poll() is None
        types = [e["type"] for e in read_events(StateDir(shared.state).audit_file(run_id))]
        assert "approval.granted" not in types and "step.started" not in types

        theirs = _approve(shared, prefect_home_copy, run_id, "bob", operator=operator, comment="CHG-9")
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        assert f"as bob (OS user {operator.user}@{host})" in theirs.stdout
    finally:
        code, out, err = _finish(failover)
    assert code == 0, out + err
    record = _record(shared, run_id)
    assert record["status"] == "succeeded"
    assert record["initiator"] == {"user": "root", "uid": 0, "host": host}
    [granted] = [a for a in record["approvals"] if a["decision"] == "granted"]
    assert granted["approver"] == "bob" and granted["via"] == "dr approve" and granted["comment"] == "CHG-9"
    assert granted["identity"] == {"user": operator.user, "uid": operator.uid, "host": host}
    [override] = [o for o in record["overrides"] if o["kind"] == "allow-data-loss-approved"]
    assert override["approver"] == "bob" and override["identity"]["uid"] == operator.uid
    assert override["actor"] == f"{operator.user}@{host}"
    assert not [o for o in record["overrides"] if o["kind"] == "self-approval"]
    answers = list((StateDir(shared.state).run_dir(run_id) / "approvals").iterdir())
    assert [p.stat().st_uid for p in answers] == [operator.uid]  # the proof stays with the run
    show = subprocess.run([DR, "show", run_id, "--state-dir", str(shared.state)], cwd=shared.work,
                          env=quiet_env(prefect_home_copy), capture_output=True, text=True, timeout=120, check=False)
    assert (f"approval (allow-data-loss): granted by bob [OS user {operator.user}@{host} (uid {operator.uid})] "
            "via dr approve") in show.stdout, show.stdout + show.stderr


def test_self_approval_allowed_by_the_runbook_is_audited(prefect_home_copy: Path, shared: Shared) -> None:
    host = socket.gethostname()
    failover = _start_failover(shared, prefect_home_copy, _runbook(shared, "self-approved", SELF_APPROVAL))
    try:
        run_id = _wait_for_request(shared.state, failover)
        mine = _approve(shared, prefect_home_copy, run_id, "alice", comment="alone tonight")
        assert mine.returncode == 0, mine.stdout + mine.stderr
    finally:
        code, out, err = _finish(failover)
    assert code == 0, out + err
    assert "OVERRIDE" in out and "self-approval" in out  # a success reached by relaxing a rule says so
    record = _record(shared, run_id)
    [granted] = [a for a in record["approvals"] if a["decision"] == "granted"]
    assert granted["approver"] == "alice" and granted["identity"] == {"user": "root", "uid": 0, "host": host}
    [override] = [o for o in record["overrides"] if o["kind"] == "self-approval"]
    assert "one on-call engineer at night" in override["detail"] and override["identity"]["uid"] == 0


def _waiting_run(state: Path) -> str:
    """A run folder whose audit log asks for the --allow-data-loss approval (no Prefect needed)."""
    run_id = "20261207T000000Z-abcdef"
    run_dir = StateDir(state).run_dir(run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    AuditLog(run_dir / "audit.jsonl", run_id).append(
        "approval.requested", step="allow-data-loss", request_id="0123456789abcdef",
        two_person={"initiator": {"user": "root", "uid": 0, "host": socket.gethostname()},
                    "allow_self_approval": False, "reason": ""},
        flow_run_id="00000000-0000-0000-0000-000000000000", api_url=None)
    return run_id


def test_an_operator_without_access_is_told_how_to_share_the_state_dir(shared: Shared, operator: Operator,
                                                                       tmp_path: Path) -> None:
    run_id = _waiting_run(shared.state)
    run_dir = StateDir(shared.state).run_dir(run_id)
    (shared.state / "runs").chmod(0o700)  # the state dir is shared, the runs in it are not (umask 077)
    run_dir.chmod(0o750)
    (run_dir / "audit.jsonl").chmod(0o640)
    denied = _approve(shared, tmp_path, run_id, "bob", operator=operator)
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert f"cannot read the runs in {shared.state} as OS user {operator.user}" in denied.stderr
    assert "chgrp -R GROUP" in denied.stderr and "Traceback" not in denied.stderr

    (shared.state / "runs").chmod(0o750)  # readable now, but the approvals folder is not the run's
    (run_dir / "approvals").mkdir(mode=0o750)
    unwritable = _approve(shared, tmp_path, run_id, "bob", operator=operator)
    assert unwritable.returncode == 1, unwritable.stdout + unwritable.stderr
    assert f"cannot record your answer in {StateDir(shared.state).run_dir(run_id) / 'approvals'}" in \
        unwritable.stderr
    assert "permission denied" in unwritable.stderr and "Traceback" not in unwritable.stderr
