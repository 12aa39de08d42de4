"""The read side: DuckDB views over the store's files (views, read), the stored folds
(projections), read-only SQL (sql), and the tables built on the views (overview, exports, training).

Internal: users reach these through ``hptrack``'s public names."""
