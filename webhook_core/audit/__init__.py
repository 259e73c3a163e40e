"""The audit layer: the set-based replay in DuckDB and the online matcher fed from the same tables."""
