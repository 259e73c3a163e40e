"""The audit layer: the set-based replay in DuckDB, the online matcher fed from the same tables, and the
audit database (``schema``: its names and version; ``audit``: ``open_audit``, a folder or a database)."""
