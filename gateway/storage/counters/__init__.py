"""Quota counters: one protocol, an in-memory backend (one process) and a Redis one (shared)."""
