"""The failover lock: one run per runbook at a time.

:class:`Lock` is the protocol (other backends, e.g. a DynamoDB or etcd lease, implement the same
four methods); :class:`FileLock` keeps a lease per runbook in ``<state-dir>/locks/<key>.lock``.
The file is only ``flock``-ed for the short read-modify-write of the lease, so a lease outlives
the process that took it: a killed run still holds its lock, and ``dr resume`` of that same run
takes its own stale lease back.

A lease is *stale* when its holder process is gone (same host) or its ``expires_at`` has
passed; a stale lease of another run is only taken over when asked explicitly
(``take_over=True``). Each acquisition increments a fencing token stored in the file, so a
resource that remembers the highest token it has seen can refuse a zombie holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from dr_engine.clock import Clock, SystemClock, parse_utc, utc_iso
from dr_engine.errors import LockHeld
from dr_engine.evidence.audit import default_actor
from dr_engine.evidence.record import atomic_write_text
from dr_engine.model.lease import Lease as Lease  # re-exported: the lock's unit of data

#: Default lease duration; the engine renews the lease at every step, so it only has to cover
#: the longest single step (approvals included).
DEFAULT_TTL = timedelta(hours=2)


@runtime_checkable
class Lock(Protocol):
    """A failover lock backend."""

    def acquire(self, key: str, run_id: str, *, take_over: bool = False) -> Lease:
        """Take the lock for ``run_id`` or raise :class:`LockHeld` naming the holder.

        A live lease of another run is never taken. A stale lease of another run is taken only
        with ``take_over``; a lease of the same ``run_id`` whose holder is gone is taken back.
        """
        ...

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease``; raise LockHeld when it has been taken over meanwhile."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the lock up (no-op when it is no longer ours)."""
        ...

    def inspect(self, key: str) -> Lease | None:
        """The current (unreleased) lease of ``key``, or None."""
        ...


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists" for kill(0); treat it as dead.
    try:
        with Path(f"/proc/{pid}/stat").open(encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def may_take(current: Lease, run_id: str, *, stale: bool, take_over: bool) -> bool:
    """Whether ``run_id`` may replace the unreleased lease ``current`` (every backend's rule).

    A live lease of another run: never. A stale lease of another run: only with ``take_over``.
    The run's own lease: when stale (its process died), or with ``take_over`` when it was taken
    on another host, whose process this host cannot see (resuming a crashed run elsewhere).
    """
    if current.run_id != run_id:
        return stale and take_over
    return stale or (take_over and current.host != socket.gethostname())


def describe(lease: Lease) -> str:
    """``run R of user@host (pid P on H, token T)``: who held a lease, for messages and the audit."""
    return f"run {lease.run_id} of {lease.holder} (pid {lease.pid} on {lease.host}, token {lease.fencing_token})"


def lock_held(lease: Lease, age: float, stale: bool) -> LockHeld:
    """The LockHeld error for a lease that stops a run (shared by every backend)."""
    what = "a stale lease (holder gone or expired)" if stale else "the lock"
    hint = (f"if run {lease.run_id} is really dead, take the lock over explicitly (--take-over-lock)"
            if stale else f"wait for run {lease.run_id} to finish, or inspect it with `dr show {lease.run_id}`")
    return LockHeld(f"run {lease.run_id} of {lease.holder} (pid {lease.pid}) holds {what} for "
                    f"'{lease.key}', taken {age:.0f}s ago", holder_run_id=lease.run_id,
                    holder=lease.holder, age_seconds=age, hint=hint)


class FileLock:
    """Leases in ``<directory>/<key>.lock`` (JSON), made atomic with ``flock``."""

    def __init__(self, directory: Path, *, clock: Clock | None = None, ttl: timedelta = DEFAULT_TTL) -> None:
        self.directory = Path(directory)
        self.clock = clock or SystemClock()
        self.ttl = ttl

    def _path(self, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        return self.directory / f"{safe}.lock"

    @contextmanager
    def _guard(self, key: str) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        guard = self._path(key).with_suffix(".guard")
        with guard.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read(self, key: str) -> Lease | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return Lease(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # A corrupt lease file must not block a failover forever; treat it as no lease.
            return None

    def _write(self, lease: Lease) -> None:
        atomic_write_text(self._path(lease.key), json.dumps(asdict(lease), indent=2) + "\n")

    def is_stale(self, lease: Lease) -> bool:
        """True when the holder is gone (same host) or the lease has expired."""
        if lease.released:
            return True
        if parse_utc(lease.expires_at) <= self.clock.now():
            return True
        return lease.host == socket.gethostname() and not _pid_alive(lease.pid)

    def _age(self, lease: Lease) -> float:
        return (self.clock.now() - parse_utc(lease.acquired_at)).total_seconds()

    def _new_lease(self, key: str, run_id: str, token: int) -> Lease:
        now: datetime = self.clock.now()
        return Lease(key=key, run_id=run_id, holder=default_actor(), host=socket.gethostname(), pid=os.getpid(),
                     acquired_at=utc_iso(now), expires_at=utc_iso(now + self.ttl), fencing_token=token)

    def acquire(self, key: str, run_id: str, *, take_over: bool = False) -> Lease:
        """See :meth:`Lock.acquire`."""
        with self._guard(key):
            current = self._read(key)
            token = (current.fencing_token if current else 0) + 1
            if current is not None and not current.released:
                stale = self.is_stale(current)
                if not may_take(current, run_id, stale=stale, take_over=take_over):
                    raise self._held(current, stale)
            lease = self._new_lease(key, run_id, token)
            if current is not None and not current.released:
                lease = replace(lease, taken_over_from=describe(current))
            self._write(lease)
            return lease

    def _held(self, lease: Lease, stale: bool) -> LockHeld:
        return lock_held(lease, self._age(lease), stale)

    def renew(self, lease: Lease) -> Lease:
        """See :meth:`Lock.renew`."""
        with self._guard(lease.key):
            current = self._read(lease.key)
            if current is None or current.fencing_token != lease.fencing_token or current.released:
                raise LockHeld(f"the lock for '{lease.key}' was taken over (token "
                               f"{current.fencing_token if current else '?'} > {lease.fencing_token})",
                               holder_run_id=current.run_id if current else None,
                               holder=current.holder if current else None,
                               hint="another run took over; stop this one and inspect both runs")
            renewed = replace(lease, expires_at=utc_iso(self.clock.now() + self.ttl))
            self._write(renewed)
            return renewed

    def release(self, lease: Lease) -> None:
        """See :meth:`Lock.release`. The token is kept so the next holder gets a higher one."""
        with self._guard(lease.key):
            current = self._read(lease.key)
            if current is not None and current.fencing_token == lease.fencing_token:
                self._write(replace(current, released=True))

    def inspect(self, key: str) -> Lease | None:
        """See :meth:`Lock.inspect`."""
        current = self._read(key)
        return None if current is None or current.released else current


class NullLock:
    """A lock that always succeeds (for tests and explicitly unlocked runs)."""

    def acquire(self, key: str, run_id: str, *, take_over: bool = False) -> Lease:
        """Return a dummy lease."""
        del take_over
        now = utc_iso(SystemClock().now())
        return Lease(key, run_id, default_actor(), socket.gethostname(), os.getpid(), now, now, 0)

    def renew(self, lease: Lease) -> Lease:
        """Return ``lease`` unchanged."""
        return lease

    def release(self, lease: Lease) -> None:
        """Do nothing."""
        del lease

    def inspect(self, key: str) -> Lease | None:
        """Always None."""
        del key
        return None


__all__ = ["DEFAULT_TTL", "FileLock", "Lease", "Lock", "NullLock", "describe", "lock_held", "may_take"]
