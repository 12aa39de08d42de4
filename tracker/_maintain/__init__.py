"""Store maintenance: sealing crashed writers' logs (logs, fallback), compaction and verification.

Internal: users reach these through ``hptrack``'s public names."""
