"""A fake lease store and the contract every failover lock backend must meet.

:class:`MemoryLeaseStore` is a :class:`~dr_engine.lock.backends.LeaseStore` in a dict, with an
optional ``before_put`` hook that lets a test slip a competing write in between a read and a
write (a lost race). :func:`check_lock_contract` runs the behaviour the engine relies on against
any :class:`~dr_engine.lock.base.Lock`; our tests run it on the lock file, DynamoDB (moto server)
and PostgreSQL, and a custom backend can run it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from dr_engine.errors import LockHeld
from dr_engine.lock.base import Lease, Lock


class MemoryLeaseStore:
    """Leases in memory; compare-and-swap on the fencing token like the real stores."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self.before_put: Callable[[Lease], None] | None = None
        self._lock = threading.Lock()

    def read(self, key: str) -> Lease | None:
        """The stored lease of ``key``."""
        with self._lock:
            return self.leases.get(key)

    def put(self, lease: Lease, *, expected_token: int | None) -> bool:
        """Store iff the stored token is ``expected_token``."""
        hook, self.before_put = self.before_put, None
        if hook is not None:
            hook(lease)
        with self._lock:
            current = self.leases.get(lease.key)
            if (current.fencing_token if current else None) != expected_token:
                return False
            self.leases[lease.key] = lease
            return True


def expire(lease: Lease) -> Lease:
    """A copy of ``lease`` that expired long ago (to plant a stale lease)."""
    return replace(lease, expires_at="2000-01-01T00:00:00Z")


def check_lock_contract(lock: Lock, plant: Callable[[Lease], None], key: str = "contract-app") -> None:
    """Assert the failover lock rules on ``lock``; ``plant(lease)`` overwrites the stored lease.

    One holder at a time (LockHeld names run id, user and age); release lets the next run in
    with a higher fencing token; a stale lease is taken over only explicitly, and the displaced
    holder can neither renew nor release any more.
    """
    first = lock.acquire(key, "run-1")
    assert first.fencing_token >= 1 and first.run_id == "run-1"
    try:
        lock.acquire(key, "run-2")
    except LockHeld as exc:
        assert exc.holder_run_id == "run-1" and exc.holder == first.holder and exc.age_seconds is not None
    else:
        raise AssertionError("a second run got a held lock")
    current = lock.inspect(key)
    assert current is not None and current.run_id == "run-1"
    renewed = lock.renew(first)
    assert renewed.fencing_token == first.fencing_token
    lock.release(renewed)
    assert lock.inspect(key) is None
    second = lock.acquire(key, "run-2")
    assert second.fencing_token > first.fencing_token and second.taken_over_from is None
    plant(expire(second))
    try:
        lock.acquire(key, "run-3")
    except LockHeld as exc:
        assert "stale" in exc.message
    else:
        raise AssertionError("a stale lease was taken without take_over")
    third = lock.acquire(key, "run-3", take_over=True)
    assert third.fencing_token > second.fencing_token
    assert third.taken_over_from is not None and "run-2" in third.taken_over_from
    try:
        lock.renew(second)
    except LockHeld:
        pass
    else:
        raise AssertionError("a displaced holder renewed its lease")
    lock.release(second)  # not ours any more: must not free run-3's lock
    held = lock.inspect(key)
    assert held is not None and held.run_id == "run-3"
    lock.release(third)


__all__ = ["MemoryLeaseStore", "check_lock_contract", "expire"]
