"""Compile, test and security gates and the parallel runner; see ``interface.py`` for the contract."""
