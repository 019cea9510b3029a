"""Providers: thin I/O adapters, the only code that talks to the outside world.

``aws/`` (boto3, lazily), ``postgres/`` (psycopg, ``pg_ctl``, base backups, leases),
``terraform/`` (the real CLI), ``dns/`` (queries and RFC 2136 updates), :mod:`.http` (bounded
requests) and :mod:`.children` (every command a step runs, in a session of its own). Actions
decide; providers do what they are told and report what they saw.
"""
