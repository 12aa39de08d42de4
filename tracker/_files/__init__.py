"""The files of a store: its layout and file systems (store), the per-writer log format (wal),
event rows as Arrow tables (rows) and the checks every reader applies to a file (checks).

Internal: users reach these through ``hptrack``'s public names."""
