"""Reading terraform's human output: state-lock holders, error blocks, failure kinds.

Terraform has no machine-readable error stream for ``init``/``plan``/``apply`` (``-json``
changes the whole UI), so the few facts we act on are parsed from its ``-no-color`` text:
the ``Lock Info:`` block printed when a state lock is held, and the first ``Error:`` block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

_LOCK_FIELD = re.compile(r"^\s+(ID|Path|Operation|Who|Version|Created|Info):[ \t]*(.*)$", re.MULTILINE)
_GO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d+))? ([+-]\d{4})")


@dataclass(frozen=True)
class LockInfo:
    """Who holds a terraform state lock, as terraform reports it."""

    id: str
    path: str = ""
    operation: str = ""
    who: str = ""
    version: str = ""
    created: datetime | None = None

    def age_seconds(self, now: datetime) -> float | None:
        """How long the lock has been held at ``now`` (None when terraform gave no time)."""
        return None if self.created is None else max((now - self.created).total_seconds(), 0.0)

    def describe(self, now: datetime) -> str:
        """One line for people: holder, operation, age, lock id."""
        age = self.age_seconds(now)
        held = f"for {age:.0f}s" if age is not None else "since an unknown time"
        operation = self.operation.removeprefix("OperationType") or "an operation"
        who = self.who or "an unknown holder"
        return f"held by {who} ({operation}, terraform {self.version or '?'}) {held}, lock id {self.id}"


def parse_go_time(text: str) -> datetime | None:
    """Parse Go's default time format (``2026-01-31 10:00:00.123456789 +0000 UTC``)."""
    match = _GO_TIME.match(text.strip())
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.strptime(f"{day} {clock}.{micro} {offset}", "%Y-%m-%d %H:%M:%S.%f %z").astimezone(UTC)


def parse_lock_info(output: str) -> LockInfo | None:
    """The ``Lock Info:`` block of a failed command, or None when there is none."""
    if "Lock Info:" not in output:
        return None
    block = output.split("Lock Info:", 1)[1]
    fields = {key: value.strip() for key, value in _LOCK_FIELD.findall(block)}
    if "ID" not in fields:
        return None
    return LockInfo(
        id=fields["ID"], path=fields.get("Path", ""), operation=fields.get("Operation", ""),
        who=fields.get("Who", ""), version=fields.get("Version", ""),
        created=parse_go_time(fields.get("Created", "")),
    )


def first_error(output: str, max_lines: int = 14) -> str:
    """The first ``Error:`` block (title, location, detail), compacted for a message."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("Error:")), None)
    if start is None:
        tail = [line for line in lines if line.strip()][-5:]
        return " / ".join(line.strip() for line in tail) or "(no output)"
    block: list[str] = []
    for line in lines[start:]:
        if block and (line.lstrip().startswith(("Error:", "Warning:")) or line.startswith("╵")):
            break
        if line.strip():
            block.append(line.rstrip())
        if len(block) >= max_lines:
            break
    return "\n".join(block)


class Failure(StrEnum):
    """What kind of failure a terraform command reported."""

    LOCKED = "locked"
    TOO_OLD = "too-old"
    TRANSIENT = "transient"
    BACKEND_MISSING = "backend-missing"
    CONFIG = "config"
    OTHER = "other"


_TRANSIENT = re.compile(
    r"connection refused|connection reset|i/o timeout|no such host|TLS handshake timeout|"
    r"StatusCode: 5\d\d|RequestTimeout|Throttling|SlowDown|TooManyRequests|ServiceUnavailable|"
    r"context deadline exceeded|unexpected EOF",
    re.IGNORECASE,
)
_BACKEND_MISSING = re.compile(
    r"NoSuchBucket|S3 bucket .* does not exist|ResourceNotFoundException|Requested resource not found",
    re.IGNORECASE,
)
_CONFIG = re.compile(
    r"Unsupported (argument|block type|attribute)|Invalid (reference|expression|value|block)|"
    r"Reference to undeclared|Missing required argument|Argument or block definition required|"
    r"Unclosed configuration block|No value for required variable|Value for undeclared variable|"
    r"Invalid value for (input )?variable|Failed to read file|Unreadable module directory|"
    r"No configuration files|Duplicate (resource|output|variable)",
    re.IGNORECASE,
)


def classify(output: str) -> Failure:
    """Decide what a non-zero exit means from terraform's output."""
    if "Error acquiring the state lock" in output or "Lock Info:" in output:
        return Failure.LOCKED
    if "Unsupported Terraform Core version" in output:
        return Failure.TOO_OLD
    if _BACKEND_MISSING.search(output):
        return Failure.BACKEND_MISSING
    if _CONFIG.search(output):
        return Failure.CONFIG
    if _TRANSIENT.search(output):
        return Failure.TRANSIENT
    return Failure.OTHER
