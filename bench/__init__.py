"""Benchmarks, apart from the test tiers: ``python -m bench <name> [--quick]``."""
