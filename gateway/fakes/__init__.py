"""Fake upstream services used by tests, benchmarks and the demo."""
