"""dr-engine: disaster-recovery failover runbooks as code, executed by Prefect."""

__version__ = "0.1.0"
