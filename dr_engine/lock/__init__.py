"""One run per application at a time: the failover lock.

- :mod:`.base`: the :class:`~dr_engine.lock.base.Lock` protocol, the lease file lock and the
  null lock;
- :mod:`.backends`: which lock a run uses (file, DynamoDB or PostgreSQL leases) and the lease
  logic those share (fencing tokens, stale leases, the minimum interval between runs);
- :mod:`.heartbeat`: renews a remote lease while a run is alive.
"""
