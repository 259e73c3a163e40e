"""The rules of docs/semantics.md: webhook settings, locations, extraction, the online matcher,
the SQL macros and the keys."""
