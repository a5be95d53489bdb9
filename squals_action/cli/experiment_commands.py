"""Sub-commands of the experiments concern."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this concern's sub-commands (none yet)."""
