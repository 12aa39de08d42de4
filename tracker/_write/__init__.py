"""The write path: one Writer per process appends event rows to its own log and fsyncs them.

Internal: users reach these through ``hptrack``'s public names."""
