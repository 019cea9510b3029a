"""A failover lock lease: pure data (the lock backends and lease providers exchange it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    """Who holds the lock for ``key``, since when, until when, with which fencing token."""

    key: str
    run_id: str
    holder: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str
    fencing_token: int
    released: bool = False
    #: Who held the unreleased lease this one replaced (see :func:`describe`), for the audit log.
    taken_over_from: str | None = None


__all__ = ["Lease"]
