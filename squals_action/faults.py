"""Named kill points: a test hook that makes a squals process SIGKILL itself at one recorded step.

The fault sweep (``tests/faults/``) proves that a run killed anywhere leaves a state the next command can
work from. For that the places a run may die must be named and reachable on purpose, not by timing:
:func:`point` marks one (every state commit, before and after it is published; every hook and test
stage; every traffic switch, before and after). Nothing happens unless the test variables are set:

* ``SQUALS_FAULT_AT=<step>``: the process kills itself with SIGKILL when it reaches ``<step>``
  (``<step>#N`` for its N-th time in one process);
* ``SQUALS_FAULT_TRACE=<file>``: every step reached is appended to ``<file>``, one per line, under the
  same names, so the sweep enumerates the steps from a real run and a new step is swept without a
  change to the test.

These are test hooks, not settings: docs/reliability.md lists them and what each kill leaves behind.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_AT_ENV = "SQUALS_FAULT_AT"
FAULT_TRACE_ENV = "SQUALS_FAULT_TRACE"

_reached: Counter[str] = Counter()


def point(step: str) -> None:
    """Mark ``step``: trace it and die there when the test variables ask for it (else do nothing)."""
    at, trace = os.environ.get(FAULT_AT_ENV), os.environ.get(FAULT_TRACE_ENV)
    if not at and not trace:
        return
    _reached[step] += 1
    label = step if _reached[step] == 1 else f"{step}#{_reached[step]}"
    if trace:
        with open(trace, "a", encoding="utf-8") as out:
            out.write(label + "\n")
    if at == label:
        os.kill(os.getpid(), signal.SIGKILL)
