"""Benchmarks of ``webhook_core`` (docs/benchmarks.md); run each from the repository root as a module,
e.g. ``python -m benchmarks.replay --n 1000000``, so that they import each other as ``benchmarks.…``."""
