"""Actions: decision logic per capability, written once; I/O lives in ``dr_engine.providers``."""
