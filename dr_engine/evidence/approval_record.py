"""How answers to approval requests show in the run record (``RunRecord.approvals``).

:func:`dr_engine.evidence.journal.apply_event` hands every answer event here, so ``run.json`` and a
record rebuilt from the audit log agree. Each answer keeps the name the person gave (a claim)
beside the OS identity that proves who gave it (see :mod:`dr_engine.evidence.identity`).

Event data of the answer events (``step`` and ``approver`` on all of them):

- ``approval.granted`` / ``approval.rejected``: ``decision``, ``comment``, ``waited_seconds``,
  ``identity`` (``{user, uid, host}`` or null), ``authenticated``, ``via``, ``note``, ``token``;
- ``approval.refused``: an answer the run did not accept (a self-approval under the two-person
  rule, an unauthenticated answer where one must be authenticated, a token that does not
  check out); ``reason`` and ``hint`` say why; the request stays open;
- ``approval.claimed``: ``--approved-by NAME`` at ``dr failover`` time: a name typed by the
  initiator, recorded with the initiator's identity; not an approval by itself unless the
  runbook allows self-approval.
"""

from __future__ import annotations

from typing import Any

from dr_engine.evidence.record import ApprovalRecord, OsUser, RunRecord

APPROVAL_GRANTED = "approval.granted"
APPROVAL_REJECTED = "approval.rejected"
#: An answer the run did not accept; the request stays open.
APPROVAL_REFUSED = "approval.refused"
#: ``--approved-by NAME``: recorded as a claim.
APPROVAL_CLAIMED = "approval.claimed"

#: The events folded into ``RunRecord.approvals``, and the decision each records.
ANSWER_EVENTS = {APPROVAL_GRANTED: "granted", APPROVAL_REJECTED: "rejected", APPROVAL_REFUSED: "refused",
                 APPROVAL_CLAIMED: "claimed"}


def os_user(data: Any) -> OsUser | None:
    """The ``identity`` of an event, when it is a complete one."""
    if not isinstance(data, dict):
        return None
    user, uid, host = data.get("user"), data.get("uid"), data.get("host")
    if not isinstance(user, str) or isinstance(uid, bool) or not isinstance(uid, int) or not isinstance(host, str):
        return None
    return OsUser(user=user, uid=uid, host=host)


def apply_approval_event(record: RunRecord, event: dict[str, Any], at: str) -> None:
    """Append the answer ``event`` carries to ``record.approvals`` (in place)."""
    data: dict[str, Any] = dict(event.get("data") or {})
    record.approvals.append(ApprovalRecord(
        step=str(data.get("step") or ""), decision=ANSWER_EVENTS[str(event["type"])],
        approver=str(data.get("approver") or ""), identity=os_user(data.get("identity")),
        via=str(data.get("via") or ""), note=str(data.get("note") or ""), comment=str(data.get("comment") or ""),
        reason=str(data.get("reason") or data.get("refused") or ""), at=at))


__all__ = ["ANSWER_EVENTS", "APPROVAL_CLAIMED", "APPROVAL_REFUSED", "apply_approval_event", "os_user"]
