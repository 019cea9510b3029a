"""The per-run report shows each approver's name beside who the OS says answered."""

from __future__ import annotations

import json
from pathlib import Path

import dr_engine.testing.actions  # noqa: F401  (registers the fake.* actions)
from dr_engine.actions.base import StepContext
from dr_engine.actions.control import ApproveParams
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.evidence.identity import ApprovalAnswer, OsIdentity
from dr_engine.evidence.record import RunStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import NullLock
from dr_engine.report.publish import render_run_files, run_report
from dr_engine.testing.runbooks import plan_from_steps

STEPS = """
- id: approve-cutover
  action: control.approve
  with: {prompt: "Go?"}
- id: approve-dns
  action: control.approve
  with: {prompt: "Shift DNS?"}
  after: [approve-cutover]
- id: healthy
  action: fake.check_health
  after: [approve-dns]
"""
BOB = OsIdentity(user="bob", uid=4242, host="bastion-1")


class TwoAnswers:
    """The first step is approved by an authenticated OS user, the second through an unproven answer."""

    def request(self, ctx: StepContext, params: ApproveParams) -> ApprovalAnswer | tuple[bool, str, str]:
        """Answer at once."""
        del params
        if ctx.step_id == "approve-cutover":
            return ApprovalAnswer(approved=True, approver="Bob B.", comment="CHG-1", identity=BOB, via="dr approve")
        return True, "carol", "from the UI"


def test_report_shows_the_name_given_beside_the_os_identity(tmp_path: Path) -> None:
    plan = plan_from_steps(tmp_path, STEPS, name="report-approvers")
    state = tmp_path / "state"
    record = start_run(plan, RunOptions(state_dir=state, concurrency=1, lock=NullLock(),
                                        approval_gate=TwoAnswers()))
    assert record.status is RunStatus.SUCCEEDED
    report = run_report(StateDir(state).run_dir(record.run_id))
    shown = {a.step_id: (a.by, a.identity, a.authenticated) for a in report.approvals}
    assert shown == {"approve-cutover": ("Bob B.", "bob@bastion-1 (uid 4242)", True),
                     "approve-dns": ("carol", "not authenticated", False)}
    files = render_run_files(report, ["md", "html", "json"])
    markdown = files["report.md"].decode()
    assert "| `approve-cutover` | granted | Bob B. | bob@bastion-1 (uid 4242) |" in markdown
    assert "| Name given | OS identity |" in markdown
    html = files["report.html"].decode()
    assert "<td>Bob B.</td><td class=\"\">bob@bastion-1 (uid 4242)</td>" in html
    assert "<td>carol</td><td class=\"unproven\">" in html
    data = json.loads(files["report.json"])
    assert data["approvals"][0]["identity"] == "bob@bastion-1 (uid 4242)"
