"""Which failover lock a run uses, and the lease logic shared by the remote backends.

:mod:`dr_engine.lock.base` defines the :class:`~dr_engine.lock.base.Lock` protocol and the lock file. This
module adds leases kept in the *target* region, so that two machines cannot fail one application
over at the same time:

- ``file`` (default): ``<state-dir>/locks/<runbook>.lock``; one machine or a shared state dir.
- ``dynamodb``: one item per runbook in a DynamoDB table of the target region, written with
  conditional writes (:mod:`dr_engine.providers.aws.lease_table`).
- ``postgres``: one row per runbook in a lease table of a PostgreSQL database in the target
  region (:mod:`dr_engine.providers.postgres.lease`).

The decision logic (who may take a lease, when it is stale, the fencing token) is written once
in :class:`LeaseLock` against a two-call :class:`LeaseStore`: ``read`` and a compare-and-swap
``put``. Settings come from the environment first, then the target region's ``params``
(see :class:`LockSettings`).

:func:`hold_lock` takes the lease *before* Prefect starts, so a second run fails in about a
second with :class:`~dr_engine.errors.LockHeld`, and hands the held lease to the engine.
:func:`check_min_interval` refuses an automatic run that comes too soon after the last one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from dr_engine.clock import Clock, SystemClock, parse_utc, utc_iso
from dr_engine.errors import ConfigError, LockHeld
from dr_engine.evidence.audit import default_actor
from dr_engine.evidence.statedir import StateDir
from dr_engine.lock.base import DEFAULT_TTL, FileLock, Lease, Lock, NullLock, _pid_alive, describe, lock_held, may_take
from dr_engine.model import Region
from dr_engine.model.units import parse_duration

BACKENDS = ("file", "dynamodb", "postgres", "none")
DEFAULT_TABLE = "dr-engine-locks"


class LeaseStore(Protocol):
    """Where leases live: one record per key, replaced only by compare-and-swap on the token."""

    def read(self, key: str) -> Lease | None:
        """The stored lease of ``key`` (released ones included), or None."""
        ...

    def put(self, lease: Lease, *, expected_token: int | None) -> bool:
        """Store ``lease`` iff the stored token is ``expected_token`` (None: no record); True if stored."""
        ...


class LeaseLock:
    """A :class:`~dr_engine.lock.base.Lock` on any :class:`LeaseStore` (same rules as the lock file)."""

    def __init__(self, store: LeaseStore, *, clock: Clock | None = None, ttl: timedelta = DEFAULT_TTL) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.ttl = ttl

    def is_stale(self, lease: Lease) -> bool:
        """True when released, expired, or held by a dead process on this host."""
        if lease.released or parse_utc(lease.expires_at) <= self.clock.now():
            return True
        return lease.host == socket.gethostname() and not _pid_alive(lease.pid)

    def _age(self, lease: Lease) -> float:
        return (self.clock.now() - parse_utc(lease.acquired_at)).total_seconds()

    def acquire(self, key: str, run_id: str, *, take_over: bool = False) -> Lease:
        """See :meth:`dr_engine.lock.base.Lock.acquire`."""
        current = self.store.read(key)
        if current is not None and not current.released:
            stale = self.is_stale(current)
            if not may_take(current, run_id, stale=stale, take_over=take_over):
                raise lock_held(current, self._age(current), stale)
        now = self.clock.now()
        lease = Lease(key=key, run_id=run_id, holder=default_actor(), host=socket.gethostname(), pid=os.getpid(),
                      acquired_at=utc_iso(now), expires_at=utc_iso(now + self.ttl),
                      fencing_token=(current.fencing_token if current else 0) + 1,
                      taken_over_from=describe(current) if current is not None and not current.released else None)
        if self.store.put(lease, expected_token=current.fencing_token if current else None):
            return lease
        # Another process wrote between our read and our write: it won; name it.
        winner = self.store.read(key)
        if winner is None:
            raise LockHeld(f"the lock for '{key}' changed while it was being taken",
                           hint="retry; if this repeats, inspect the lock store")
        raise lock_held(winner, self._age(winner), False)

    def renew(self, lease: Lease) -> Lease:
        """See :meth:`dr_engine.lock.base.Lock.renew`."""
        current = self.store.read(lease.key)
        renewed = replace(lease, expires_at=utc_iso(self.clock.now() + self.ttl))
        if (current is not None and not current.released and current.fencing_token == lease.fencing_token
                and self.store.put(renewed, expected_token=lease.fencing_token)):
            return renewed
        latest = self.store.read(lease.key)
        raise LockHeld(f"the lock for '{lease.key}' was taken over (token "
                       f"{latest.fencing_token if latest else '?'} > {lease.fencing_token})",
                       holder_run_id=latest.run_id if latest else None, holder=latest.holder if latest else None,
                       hint="another run took over; stop this one and inspect both runs")

    def release(self, lease: Lease) -> None:
        """See :meth:`dr_engine.lock.base.Lock.release` (the token stays, so the next one is higher)."""
        current = self.store.read(lease.key)
        if current is not None and current.fencing_token == lease.fencing_token and not current.released:
            self.store.put(replace(current, released=True), expected_token=lease.fencing_token)

    def inspect(self, key: str) -> Lease | None:
        """See :meth:`dr_engine.lock.base.Lock.inspect`."""
        current = self.store.read(key)
        return None if current is None or current.released else current

    def last(self, key: str) -> Lease | None:
        """The latest lease of ``key``, released or not (for the minimum interval)."""
        return self.store.read(key)


class HeldLock:
    """A lock whose lease was taken before the run started (see :func:`hold_lock`).

    The engine's ``acquire`` for that same key and run gets the held lease back instead of
    competing with itself; everything else goes to the wrapped lock.
    """

    def __init__(self, inner: Lock, lease: Lease) -> None:
        self.inner = inner
        self.lease = lease

    def acquire(self, key: str, run_id: str, *, take_over: bool = False) -> Lease:
        """The held lease for its own key and run (renewed); otherwise the wrapped lock's answer."""
        if key == self.lease.key and run_id == self.lease.run_id:
            self.lease = self.inner.renew(self.lease)
            return self.lease
        return self.inner.acquire(key, run_id, take_over=take_over)

    def renew(self, lease: Lease) -> Lease:
        """Renew through the wrapped lock."""
        self.lease = self.inner.renew(lease)
        return self.lease

    def release(self, lease: Lease) -> None:
        """Release through the wrapped lock."""
        self.inner.release(lease)

    def inspect(self, key: str) -> Lease | None:
        """Inspect through the wrapped lock."""
        return self.inner.inspect(key)


@dataclass(frozen=True)
class LockSettings:
    """The failover lock configuration of one runbook.

    Read from, in order: ``DR_LOCK_BACKEND`` / ``DR_LOCK_TABLE`` / ``DR_LOCK_DSN`` /
    ``DR_LOCK_TTL`` / ``DR_MIN_RUN_INTERVAL`` environment variables, then the target region's
    params ``lock_backend`` / ``lock_table`` / ``lock_dsn`` / ``lock_ttl`` / ``min_run_interval``.
    ``lock_dsn`` may name a region secret as ``secret:NAME`` (so no password sits in a file).
    """

    backend: str = "file"
    table: str = DEFAULT_TABLE
    dsn: str | None = None
    ttl: timedelta = DEFAULT_TTL
    min_interval: timedelta = timedelta(0)

    @classmethod
    def of(cls, target: Region | None) -> LockSettings:
        """Settings for a runbook whose target region is ``target``."""
        params = dict(target.params) if target is not None else {}

        def pick(env: str, param: str) -> str | None:
            value = os.environ.get(env) or params.get(param)
            return None if value is None or value == "" else str(value)

        backend = (pick("DR_LOCK_BACKEND", "lock_backend") or "file").lower()
        if backend not in BACKENDS:
            raise ConfigError(f"unknown failover lock backend {backend!r}",
                              hint=f"set DR_LOCK_BACKEND or the target region's lock_backend to one of "
                                   f"{', '.join(BACKENDS)}")
        ttl = pick("DR_LOCK_TTL", "lock_ttl")
        interval = pick("DR_MIN_RUN_INTERVAL", "min_run_interval")
        return cls(backend=backend, table=pick("DR_LOCK_TABLE", "lock_table") or DEFAULT_TABLE,
                   dsn=pick("DR_LOCK_DSN", "lock_dsn"), ttl=_duration(ttl, "lock TTL") if ttl else DEFAULT_TTL,
                   min_interval=_duration(interval, "minimum run interval") if interval else timedelta(0))


def _duration(text: str, what: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"invalid {what} {text!r}: {exc}", hint="write a duration such as 90s, 15m or 2h") from exc


def _dsn(settings: LockSettings, target: Region) -> str:
    if not settings.dsn:
        raise ConfigError("the postgres failover lock needs a DSN",
                          hint="set DR_LOCK_DSN or the target region's lock_dsn (e.g. secret:lock_dsn)")
    if settings.dsn.startswith("secret:"):
        from dr_engine.config.bindings import read_secret

        return read_secret(target, settings.dsn.removeprefix("secret:")).get_secret_value()
    return settings.dsn


def lock_for(target: Region | None, state_dir: StateDir | Path, *, clock: Clock | None = None,
             settings: LockSettings | None = None) -> Lock:
    """The configured failover lock for runbooks failing over to ``target``."""
    settings = settings or LockSettings.of(target)
    clock = clock or SystemClock()
    if settings.backend == "none":
        return NullLock()
    if settings.backend == "file" or target is None:
        return FileLock(StateDir.of(state_dir).locks_dir, clock=clock, ttl=settings.ttl)
    if settings.backend == "dynamodb":
        from dr_engine.providers.aws.lease_table import DynamoDbLeaseStore
        from dr_engine.providers.aws.session import AwsTarget

        return LeaseLock(DynamoDbLeaseStore(AwsTarget.of(target), settings.table), clock=clock, ttl=settings.ttl)
    from dr_engine.providers.postgres.lease import PostgresLeaseStore

    return LeaseLock(PostgresLeaseStore(_dsn(settings, target), settings.table.replace("-", "_")), clock=clock,
                     ttl=settings.ttl)


def last_lease(lock: Lock, key: str) -> Lease | None:
    """The latest lease of ``key`` even when released (None when the backend keeps no history)."""
    inner = lock.inner if isinstance(lock, HeldLock) else lock
    if isinstance(inner, LeaseLock):
        return inner.last(key)
    if isinstance(inner, FileLock):
        return inner._read(key)
    return None


def check_min_interval(lock: Lock, key: str, min_interval: timedelta, *, clock: Clock | None = None) -> None:
    """Refuse (LockHeld) an automatic run of ``key`` less than ``min_interval`` after the last one began."""
    if min_interval <= timedelta(0):
        return
    last = last_lease(lock, key)
    if last is None:
        return
    now = (clock or SystemClock()).now()
    since = now - parse_utc(last.acquired_at)
    if since < min_interval:
        wait = (min_interval - since).total_seconds()
        raise LockHeld(f"the last run of '{key}' ({last.run_id} by {last.holder}) began {since.total_seconds():.0f}s "
                       f"ago; automatic runs are at least {min_interval.total_seconds():.0f}s apart",
                       holder_run_id=last.run_id, holder=last.holder, age_seconds=since.total_seconds(),
                       hint=f"the next automatic run may start in {wait:.0f}s; start one by hand to run it now")


@contextmanager
def hold_lock(lock: Lock, key: str, run_id: str, *, take_over: bool = False) -> Iterator[HeldLock]:
    """Take ``key`` for ``run_id`` now (LockHeld at once if another run has it); release on exit.

    Give the yielded :class:`HeldLock` to the engine (``RunOptions.lock``): it reuses the lease.
    Releasing on exit covers a run that never started (e.g. Prefect failed to start); when the
    engine already released the lease this is a no-op.
    """
    lease = lock.acquire(key, run_id, take_over=take_over)
    held = HeldLock(lock, lease)
    try:
        yield held
    finally:
        held.release(held.lease)


__all__ = [
    "BACKENDS",
    "DEFAULT_TABLE",
    "HeldLock",
    "LeaseLock",
    "LeaseStore",
    "LockSettings",
    "check_min_interval",
    "hold_lock",
    "last_lease",
    "lock_for",
]
