"""Dependency-file parsers, one module per format, chosen by file name in :mod:`.registry`."""
