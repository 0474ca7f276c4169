"""Shared test harness pieces: real servers the tests start and stop."""
