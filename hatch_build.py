"""Wheel build hook: once a compiled wheel is written, remove the extension modules mypyc built in place.

hatch-mypyc compiles into the source tree (``build_ext --inplace``) and packs the result into the wheel; left
there, the ``.so`` files would shadow the ``.py`` files for everything run from the checkout afterwards (tests
included), which would then run yesterday's compiled code. An editable build keeps them: that is how it runs
compiled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompiledArtifacts(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if version != "standard" or build_data.get("pure_python", True):
            return
        root = Path(self.root)
        for built in [*root.glob("*__mypyc.*.so"), *(root / "squals_action").rglob("*.so")]:
            built.unlink()
