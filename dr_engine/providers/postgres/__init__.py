"""PostgreSQL: connections and replication state (:mod:`.client`), server administration
(:mod:`.admin`), a data directory's processes (:mod:`.processes`) and failover-lock leases in a
table (:mod:`.lease`)."""
