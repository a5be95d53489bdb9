"""Squals Action: pull-request-driven delivery with git-native state."""

__version__ = "0.1.0"
