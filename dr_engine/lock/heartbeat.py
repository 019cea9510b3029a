"""Keeps a run's failover lease alive for as long as the run holds it.

The engine renews its lease when a wave starts, but one wave can outlast the lease TTL (an
overnight approval, a long restore). Without a heartbeat the lease would expire while its
holder is alive, and ``--take-over-lock`` would then let a second failover run at the same
time. :class:`LeaseHeartbeat` renews the lease from a daemon thread every quarter of the TTL
until the run releases it, so only a dead (or cut-off) holder's lease ever expires.

A renewal that fails because the backend is unreachable is logged and retried at the next
beat (the lease is still valid until it expires). A renewal refused with
:class:`~dr_engine.errors.LockHeld` means another run took the lease over: the heartbeat stops
and keeps the error in :attr:`LeaseHeartbeat.lost`, and the engine halts before its next step.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from dr_engine.clock import parse_utc
from dr_engine.errors import LockHeld
from dr_engine.lock.backends import HeldLock
from dr_engine.lock.base import Lease, Lock

log = logging.getLogger("dr_engine.lock.heartbeat")

#: Bounds of the renewal interval (seconds): not a busy loop for tiny TTLs, and never so rare
#: that a single missed beat (an unreachable backend) lets a long TTL run out.
MIN_INTERVAL = 0.05
MAX_INTERVAL = 600.0


def lease_ttl(lock: Lock, lease: Lease) -> timedelta | None:
    """The TTL ``lock`` gives its leases (None when its leases never expire, e.g. NullLock)."""
    if not lease.fencing_token:
        return None  # NullLock (and "none" backends): nothing to keep alive
    inner = lock.inner if isinstance(lock, HeldLock) else lock
    ttl = getattr(inner, "ttl", None)
    if isinstance(ttl, timedelta):
        return ttl
    # A custom backend without a ``ttl`` attribute: its lease says how long it lasts.
    span = parse_utc(lease.expires_at) - parse_utc(lease.acquired_at)
    return span if span > timedelta(0) else None


def heartbeat_interval(ttl: timedelta) -> float:
    """Seconds between renewals: a quarter of the TTL, bounded by MIN_INTERVAL/MAX_INTERVAL."""
    return min(max(ttl.total_seconds() / 4, MIN_INTERVAL), MAX_INTERVAL)


class LeaseHeartbeat:
    """Renews one lease until :meth:`stop`; thread-safe (the engine also calls :meth:`beat`)."""

    def __init__(self, lock: Lock, lease: Lease, *, interval: float | None) -> None:
        self._lock = lock
        self._lease = lease
        self.interval = interval
        #: The refusal of a renewal: another run holds the lease now. None while it is ours.
        self.lost: LockHeld | None = None
        self._mutex = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease:
        """The latest renewed lease (its token is what release needs)."""
        with self._mutex:
            return self._lease

    def beat(self) -> None:
        """Renew the lease now; record a loss in :attr:`lost`, log any other failure."""
        with self._mutex:
            if self.lost is not None:
                return
            try:
                self._lease = self._lock.renew(self._lease)
            except LockHeld as exc:
                self.lost = exc
                self._stopped.set()
                log.error("failover lock '%s' lost: %s", self._lease.key, exc.message)
            except Exception:  # an unreachable backend: the lease is valid until it expires
                log.warning("renewing failover lock '%s' failed; retrying at the next beat",
                            self._lease.key, exc_info=True)

    def start(self) -> None:
        """Start the daemon thread (no-op without an interval, i.e. for leases that never expire)."""
        if self.interval is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=f"lease-heartbeat-{self._lease.key}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self.interval is not None
        # Real time on purpose: the lease expiry is wall-clock time in a shared store.
        while not self._stopped.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop renewing (before the lease is released); waits for a beat in progress."""
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def start_heartbeat(lock: Lock, lease: Lease) -> LeaseHeartbeat:
    """A started heartbeat for ``lease`` (renewing every quarter of the lock's TTL)."""
    ttl = lease_ttl(lock, lease)
    heartbeat = LeaseHeartbeat(lock, lease, interval=heartbeat_interval(ttl) if ttl is not None else None)
    heartbeat.start()
    return heartbeat


__all__ = ["LeaseHeartbeat", "heartbeat_interval", "lease_ttl", "start_heartbeat"]
