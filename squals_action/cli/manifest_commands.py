"""Sub-commands of the manifest concern."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this concern's sub-commands (none yet)."""
