"""Tests of gateway.flows (the LangGraph workflows)."""
