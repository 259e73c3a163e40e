"""The load layer: a dataset folder into DuckDB tables, every bad row quarantined (docs/semantics.md, Inputs)."""
