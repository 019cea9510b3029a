"""What each kind of step promises, in the terms the safety invariants read.

Every action declares one :class:`Capability`. The planner (:mod:`dr_engine.planning.plan`)
checks a runbook's order against them before anything runs, the engine and the controls read
them while it runs, and the record measures RTO from them. Each member's comment says what
"done" means for a step of that kind and which rule reads it. The RPO gate every ``data.check``
step decides through is written once, in :mod:`dr_engine.capabilities.data`.

This package sits just above the model: it imports only the error taxonomy and the model.
"""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """What an action does; the planner's safety invariants are written against these."""

    #: Done: the copy about to become the primary was measured within the RPO (the RPO gate).
    #: Read by: the RPO gate; approvals re-run it after a wait; ``dr skip`` needs ``--force``.
    DATA_CHECK = "data.check"
    #: Done: the old primary can no longer accept writes (stopped, demoted or cut off).
    #: Read by: the planner (every promote of a dataset waits for a fence of the same dataset).
    DATA_FENCE = "data.fence"
    #: Done: the target copy accepts writes. Read by: the planner (fenced first; shifts after
    #: promotes are verified), the RTO stop point.
    DATA_PROMOTE = "data.promote"
    #: Done: the data was read back and is what the runbook expects. Read by: ``dr skip`` (a gate).
    DATA_VERIFY = "data.verify"
    #: Done: a copy was brought up to date (e.g. a failback resync). No invariant reads it.
    DATA_SYNC = "data.sync"
    #: Done: writes that diverged on the old primary were found and set aside for a person.
    DATA_RECONCILE = "data.reconcile"
    #: Done: the target's infrastructure was inspected without change. Re-run after an approval.
    STACK_CHECK = "stack.check"
    #: Done: the infrastructure stack exists in the target region as declared (idempotent apply).
    STACK_APPLY = "stack.apply"
    #: Done: the target runs the capacity the runbook asks for; drills restore it afterwards.
    CAPACITY_SCALE = "capacity.scale"
    #: Done: clients are sent to the target (DNS, weights). Read by: the planner (only after a
    #: health verification of the target), the RTO stop point.
    TRAFFIC_SHIFT = "traffic.shift"
    #: Done: clients were observed reaching the target. Read by: ``dr skip`` (a gate).
    TRAFFIC_VERIFY = "traffic.verify"
    #: Done: the target answered as healthy. Read by: the planner (shifts wait for one), the RTO
    #: (recovered when the last health verification succeeds), ``dr skip`` (a gate).
    HEALTH_VERIFY = "health.verify"
    #: Done: a person other than the operator approved (the two-person rule). Read by: the
    #: engine (an interrupt gives the wait up at once; time waiting is people's time in the RTO).
    CONTROL_APPROVE = "control.approve"
    #: Done: the stated time passed. No invariant reads it.
    CONTROL_WAIT = "control.wait"
    #: Done: a command exited as expected. No invariant reads it: say what it does in a runbook.
    EXEC_RUN = "exec.run"


__all__ = ["Capability"]
