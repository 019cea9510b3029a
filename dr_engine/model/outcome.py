"""What a step observed, as plain data (no I/O, no engine): shared by actions, gates and errors.

:class:`RpoObservation` lives here, on the floor below everything that reads it, so that
``dr_engine.errors`` (which carries one on a failed step), the RPO gate in
``dr_engine.capabilities.data`` and the actions can all import it without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RpoObservation:
    """What a data action measured about data loss at cutover (any field may be unknown)."""

    lag_bytes: int | None = None
    lag_seconds: float | None = None
    rows_lost: int | None = None


__all__ = ["RpoObservation"]
