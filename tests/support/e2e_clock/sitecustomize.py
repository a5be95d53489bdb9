"""Loaded at start-up by the squals-action processes of ``tests/github/test_e2e_aws.py`` (this folder is on
their ``PYTHONPATH``): CloudWatch's clocks moved as the in-process AWS tests move them, so its one-minute
delay costs no waiting. Nothing else of the process changes.

* ``SQUALS_E2E_BAKE_CLOCK=1``: a bake's windows start an hour ago and move 30 s at every reading (the data
  the test wrote covers the two hours before now).
* ``SQUALS_E2E_START_AGO=<seconds>``: an experiment started that long ago (its data then fits a matured
  window at the next tick).
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from typing import Any

if os.environ.get("SQUALS_E2E_BAKE_CLOCK") == "1":
    from squals_action.lifecycle import parts

    _signals_for = parts.signals_for

    def _moved_signals_for(manifest: Any, traffic: Any, *, clock: Any = None) -> Any:
        start, ticks = datetime.now(UTC) - timedelta(hours=1), itertools.count()
        return _signals_for(
            manifest, traffic, clock=clock or (lambda: start + timedelta(seconds=30 * next(ticks)))
        )

    parts.signals_for = _moved_signals_for

if os.environ.get("SQUALS_E2E_START_AGO"):
    from squals_action.experiments import engine

    _ago = timedelta(seconds=float(os.environ["SQUALS_E2E_START_AGO"]))
    _from_lifecycle = engine.from_lifecycle

    def _started_earlier(*args: Any, **kwargs: Any) -> Any:
        made = _from_lifecycle(*args, **kwargs)
        made.clock = lambda: datetime.now(UTC) - _ago
        return made

    engine.from_lifecycle = _started_earlier
