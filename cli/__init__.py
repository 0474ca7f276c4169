"""The `orchestra` admin command line."""
