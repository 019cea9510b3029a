"""Start Prefect's API ahead of time, so a run started later pays no server start-up.

Embedded Prefect starts a temporary local server on first use (seconds; more on a fresh
``PREFECT_HOME``). ``dr demo`` warms it up before it fails the region, so the measured RTO
shows the failover, not Prefect booting. Configure Prefect (:func:`dr_engine.flows.settings.configure`)
before calling this.
"""

from __future__ import annotations

import time


def warm_up() -> float:
    """Start (or reach) the Prefect API once; return the seconds it took."""
    from prefect.client.orchestration import get_client

    started = time.monotonic()
    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    return time.monotonic() - started


__all__ = ["warm_up"]
