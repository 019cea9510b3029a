"""The Prefect adapter: flows, deployments, the embedded server and Prefect settings.

It turns Prefect parameters into the engine's typed options and calls the engine's single
entry point (:mod:`dr_engine.engine.run`); it makes no failover decision of its own.
"""
