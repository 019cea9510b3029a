"""Planning: validated models to a checked plan, before anything runs.

- :mod:`.plan` orders the steps in waves and enforces the safety invariants (never shift
  traffic to an unverified region, never promote without fencing the same dataset, ...);
- :mod:`.preflight` runs every action's read-only checks against the real regions (``dr plan``);
- :mod:`.iam` writes the least-privilege IAM policy a runbook needs (``dr iam-policy``).
"""
