"""The test suite: a package, so that ``tests.support`` imports by name and test modules may share base
names across folders."""
