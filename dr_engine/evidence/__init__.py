"""Evidence: what happened, as an auditor reads it.

- :mod:`.audit`: the hash-chained, sealed audit log (the truth);
- :mod:`.record`: the run record (``run.json``), and :mod:`.journal`, which folds it from the log;
- :mod:`.history`, :mod:`.recovery`, :mod:`.summary`: attempts and sessions, measured RTO/RPO,
  plain-text views; :mod:`.record_check` says whether a record can be trusted;
- :mod:`.approval_record`, :mod:`.operations_record`: the events of approvals and operator
  actions; :mod:`.identity`: who acted, as the operating system proves it;
- :mod:`.statedir`: where runs live; :mod:`.secrets_scrub` and :mod:`.redact`: no secret in
  the record or a report.
"""
