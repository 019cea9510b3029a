"""Prefect flows: thin adapters that run dr-engine plans (imports only prefect, dr_engine, stdlib)."""
