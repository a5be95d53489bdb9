"""The security stage's gates from the squals file: dependencies and change risk, each within a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from squals_action.gates.interface import Gate, GateContext, GateResult, run_one
from squals_action.gates.security.interface import VulnSource
from squals_action.manifest.model import SecurityGate


class DeadlineGate(Gate):
    """Runs an in-process gate in a worker thread and reports ``timeout`` when it overruns.

    The security gates make network calls (each with its own timeout) and parse files; this bounds the
    gate as a whole, like the process-group timeout bounds a command gate.
    """

    def __init__(self, inner: Gate, timeout: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.stage = inner.stage
        self.timeout = timeout

    def run(self, ctx: GateContext) -> GateResult:
        box: list[GateResult] = []
        started = time.time()
        worker = threading.Thread(
            target=lambda: box.append(run_one(self.inner, ctx)), name=f"squals-{self.name}", daemon=True
        )
        worker.start()
        worker.join(self.timeout)
        if box:
            return box[0]
        return GateResult(
            self.name,
            self.stage,
            "timeout",
            self.timeout,
            f"did not finish within {self.timeout:g}s",
            started_at=started,
            ended_at=time.time(),
        )


def security_gates_for(security: SecurityGate, *, sources: Mapping[str, object] | None = None) -> list[Gate]:
    """The ``dependencies`` and ``risk`` gates the squals file declares; ``sources`` overrides by name."""
    from squals_action.gates.security.dependencies import DependencyGate
    from squals_action.gates.security.risk import RiskGate

    overrides = {k: v for k, v in (sources or {}).items() if isinstance(v, VulnSource)}
    gates: list[Gate] = []
    if security.dependencies is not None:
        gates.append(DeadlineGate(DependencyGate(security.dependencies, sources=overrides), security.timeout))
    if security.risk is not None:
        gates.append(DeadlineGate(RiskGate(security.risk), security.timeout))
    return gates
