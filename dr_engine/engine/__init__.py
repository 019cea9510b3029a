"""The engine: runs one plan, the single entry point every caller uses.

- :mod:`.run`: ``start_run`` / ``resume_run`` take the failover lock, mint the run id, check the
  runbook and region digests, and execute the plan (retries, deadlines, interrupts, the record);
- :mod:`.options`: the typed :class:`~dr_engine.engine.options.RunOptions`;
- :mod:`.executors`, :mod:`.interrupts`, :mod:`.progress`: where steps run, stop signals, live
  progress;
- :mod:`.operations`, :mod:`.approval`, :mod:`.controls`: hooks for drills and approvals, and
  the operator's ``dr cancel`` / ``dr skip``;
- :mod:`.notify`, :mod:`.readiness`, :mod:`.automatic`, :mod:`.drill_cleanup`: webhooks,
  continuous readiness, scheduled runs and cleaning up after a killed drill.
"""
