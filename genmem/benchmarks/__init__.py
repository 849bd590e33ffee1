"""Benchmarks of genmem, run by `genmem bench`; each can record its table in BENCHMARKS.md."""
