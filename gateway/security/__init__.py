"""Secrets: client tokens and provider keys at rest. Keys are passed in, never read here."""
