"""Entrypoint of the readiness deployment in ``prefect.yaml`` (the flow lives in the package)."""

from dr_engine.flows.readiness import readiness_flow

__all__ = ["readiness_flow"]
