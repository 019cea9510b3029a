"""Drills: non-disruptive test failovers.

:mod:`.session` decides what each step does in a drill (run, skip, or run a *variant* against a
copy) and keeps the list of copies to clean up; :mod:`.variants` holds the per-action variants
and their cleaners (found by discovery).
"""
