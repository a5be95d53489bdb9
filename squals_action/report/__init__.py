"""Reporting: markdown helpers shared by every concern, and the composer of the sticky PR comment."""
