"""Persistence, async only. Functions are named in data language (insert_, find_, mark_)."""
