"""Pure domain code: no I/O, no web framework, no SQL."""
