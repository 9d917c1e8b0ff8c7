"""Seeded simulation benchmarks of Kanaria's analysis (see docs/benchmarks.md)."""
