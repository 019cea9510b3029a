"""Who is acting, as the operating system proves it, and the two-person rule built on it.

A name typed on a command line (``dr approve --as alice``, ``--approved-by bob``) or into the
Prefect UI's resume form is a *claim*: anyone can type any name. What the operating system
says about a process is an *identity*: :meth:`OsIdentity.current` reads the effective uid
(``pwd.getpwuid(os.geteuid())``, never ``$USER``/``$LOGNAME``, which the caller sets) and the
host name. Another process proves its uid through the owner of a file it created (see
:mod:`dr_engine.engine.approval`: ``dr approve`` writes an approval token the waiting run checks).
Root can create files owned by anyone, so this holds against every user except root.

Open-source Prefect has no user accounts: an answer given through its UI or its resume API
proves nothing about who gave it. Such an answer is recorded with :data:`PREFECT_UI_UNAUTHENTICATED`
and can never satisfy the two-person rule.

:class:`TwoPersonRule`: a run started with ``--allow-data-loss`` must be approved by a
different person than the one who started it (compared by OS identity), unless the runbook
allows self-approval (``approvals: {allow_self_approval: true, reason: ...}``, audited).

Standard library only: the actions layer (the approval gate protocol) imports it.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: What an answer given through Prefect (UI or resume API) without a ``dr approve`` token proves.
PREFECT_UI_UNAUTHENTICATED = "prefect-ui (unauthenticated: no user in open-source Prefect)"

#: How an answer reached the run (``ApprovalAnswer.via``).
VIA_DR_APPROVE = "dr approve"
VIA_PREFECT_UI = "prefect-ui"
VIA_APPROVED_BY = "--approved-by"
VIA_TIMEOUT = "timeout"


def user_name(uid: int) -> str:
    """The account name of ``uid`` (``uid<N>`` when the passwd database has no entry for it)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers): the number is still the kernel's answer
        return f"uid{uid}"


@dataclass(frozen=True)
class OsIdentity:
    """An OS user on a host: ``user`` and ``uid`` from the kernel, ``host`` from ``gethostname``."""

    user: str
    uid: int
    host: str

    @classmethod
    def current(cls) -> OsIdentity:
        """The identity of this process (effective uid; environment variables are not consulted)."""
        uid = os.geteuid()
        return cls(user=user_name(uid), uid=uid, host=socket.gethostname())

    @classmethod
    def from_dict(cls, data: Any) -> OsIdentity | None:
        """Read :meth:`as_dict` output back; None when ``data`` is not a complete identity."""
        if not isinstance(data, Mapping):
            return None
        user, uid, host = data.get("user"), data.get("uid"), data.get("host")
        if not isinstance(user, str) or not user or isinstance(uid, bool) or not isinstance(uid, int) \
                or not isinstance(host, str):
            return None
        return cls(user=user, uid=uid, host=host)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (audit events, the run record)."""
        return {"user": self.user, "uid": self.uid, "host": self.host}

    def same_person(self, other: OsIdentity) -> bool:
        """True when both are the same account: same user name, or the same uid on the same host.

        The user name alone decides across hosts (alice on a laptop and alice on a bastion are
        one person); erring towards "same" is the safe side of a two-person rule.
        """
        return self.user == other.user or (self.host == other.host and self.uid == other.uid)

    def __str__(self) -> str:
        return f"{self.user}@{self.host}"


@dataclass(frozen=True)
class ApprovalAnswer:
    """A decision as an approval gate returns it.

    ``approver`` is the name the person gave (a claim); ``identity`` is who the OS says answered,
    or None when nothing proves it (Prefect UI, a timeout, a gate that cannot tell).
    """

    approved: bool
    approver: str
    comment: str = ""
    identity: OsIdentity | None = None
    via: str = ""

    @property
    def authenticated(self) -> bool:
        """True when the OS proved who answered."""
        return self.identity is not None


def as_answer(result: ApprovalAnswer | tuple[bool, str, str]) -> ApprovalAnswer:
    """Normalise a gate's answer: a plain ``(approved, approver, comment)`` tuple is unauthenticated."""
    if isinstance(result, ApprovalAnswer):
        return result
    approved, approver, comment = result
    return ApprovalAnswer(approved=bool(approved), approver=str(approver), comment=str(comment))


SELF_APPROVAL_HINT = ("or, where one person must be able to accept data loss alone, allow it in the runbook: "
                      "`approvals: {allow_self_approval: true, reason: \"...\"}` (audited as an override)")


@dataclass(frozen=True)
class TwoPersonRule:
    """The ``--allow-data-loss`` approval must come from another person than the run's initiator."""

    initiator: OsIdentity | None
    allow_self_approval: bool = False
    reason: str = ""

    def is_self(self, identity: OsIdentity | None) -> bool:
        """True when ``identity`` is the initiator (an unknown side counts as the same person)."""
        if identity is None or self.initiator is None:
            return True
        return identity.same_person(self.initiator)

    def refusal(self, identity: OsIdentity | None, via: str = VIA_DR_APPROVE) -> tuple[str, str] | None:
        """``(message, hint)`` when an approval by ``identity`` cannot satisfy the rule; None when it can."""
        if identity is None:
            proof = PREFECT_UI_UNAUTHENTICATED if via == VIA_PREFECT_UI else f"{via or 'this answer'}: no OS identity"
            return (f"an unauthenticated approval ({proof}) cannot satisfy the two-person rule for "
                    "--allow-data-loss",
                    "approve with `dr approve RUN_ID --as NAME` as a different OS user than the initiator")
        if self.allow_self_approval:
            return None
        if self.initiator is None:
            return ("the run's initiator has no recorded OS identity (a run started before identities were "
                    "recorded), so no approval can be shown to come from a different person",
                    "start a new run, " + SELF_APPROVAL_HINT)
        if identity.same_person(self.initiator):
            return (f"the approver must be a different person than the initiator {self.initiator}: OS user "
                    f"{identity.user} (uid {identity.uid}) started this run with --allow-data-loss and cannot "
                    "approve it too",
                    "ask another operator (a different OS user with access to the state dir) to run "
                    "`dr approve RUN_ID --as NAME`, " + SELF_APPROVAL_HINT)
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (carried by ``approval.requested`` so that ``dr approve`` can check early)."""
        return {"initiator": self.initiator.as_dict() if self.initiator else None,
                "allow_self_approval": self.allow_self_approval, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Any) -> TwoPersonRule | None:
        """Read :meth:`as_dict` output back (None when ``data`` carries no rule)."""
        if not isinstance(data, Mapping):
            return None
        return cls(initiator=OsIdentity.from_dict(data.get("initiator")),
                   allow_self_approval=data.get("allow_self_approval") is True, reason=str(data.get("reason") or ""))


__all__ = [
    "PREFECT_UI_UNAUTHENTICATED",
    "SELF_APPROVAL_HINT",
    "VIA_APPROVED_BY",
    "VIA_DR_APPROVE",
    "VIA_PREFECT_UI",
    "VIA_TIMEOUT",
    "ApprovalAnswer",
    "OsIdentity",
    "TwoPersonRule",
    "as_answer",
    "user_name",
]
