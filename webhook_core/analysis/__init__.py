"""The analysis layer: figures read from the replay's tables (docs/analysis.md)."""
