"""Compliance evidence built from run records: reports, period reports, evidence packs, notes.

- :mod:`.source` reads a run directory through :mod:`dr_engine.evidence.record` and :mod:`dr_engine.evidence.audit`;
- :mod:`.model` / :mod:`.period` build the report models (redacted by :mod:`.redact`);
- :mod:`.charts` (matplotlib Agg) and :mod:`.render` (Jinja templates, WeasyPrint) format them;
- :mod:`.publish` writes files and gives Prefect artifact content
  (:func:`~dr_engine.report.publish.write_default_reports` is called at the end of every run);
- :mod:`.evidence` builds and verifies evidence packs; :mod:`.notes` records remediation items;
- :mod:`.controls` maps the evidence to PCI DSS, SOC 2, DORA/RTS and FFIEC controls.
"""
