"""Entrypoint of the scheduled deployments in ``prefect.yaml`` (the flow lives in the package)."""

from dr_engine.flows.deployments import scheduled_run_flow

__all__ = ["scheduled_run_flow"]
