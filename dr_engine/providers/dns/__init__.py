"""DNS: queries and TSIG-signed RFC 2136 updates against an authoritative server
(:mod:`.client`), and removal of drill records (:mod:`.records`)."""
