"""The ``squals-action`` entry point: the container's ENTRYPOINT on GitHub Actions.

It reads the event (``GITHUB_EVENT_NAME``, ``GITHUB_EVENT_PATH``), turns it into one intent and dispatches it.
An event that asks for nothing ends here, having imported only the standard library and the event parser, so
an unrelated label costs a fraction of a second. Everything else (PyGithub, the pipeline) is imported after.
Failures end in :func:`squals_action.error_handler.run_guarded`, the one exit place.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace

from squals_action.error_handler import run_guarded
from squals_action.github.events import Intent, IntentKind, load_event, parse_event
from squals_action.report import workflow_commands as wc


def main() -> int:
    """Entry point of the ``squals-action`` console script."""
    return run_guarded(lambda: act(os.environ), "squals-action")


def act(environ: Mapping[str, str]) -> int:
    token = environ.get("INPUT_GITHUB-TOKEN", "").strip() or environ.get("GITHUB_TOKEN", "").strip()
    if token:
        wc.emit(*wc.add_mask(token))
    name, payload = load_event(environ)
    intent = parse_event(name, payload, environ)
    if intent.kind is IntentKind.NOTHING:
        print(f"squals: nothing to do: {intent.reason}")
        wc.set_outputs({"status": "nothing", "intent": "nothing", "environment-url": ""})
        return 0
    return _act(intent, token, environ)


def _act(intent: Intent, token: str, environ: Mapping[str, str]) -> int:
    from squals_action.github.runner import run, settings_from_env
    from squals_action.github.wiring import build_api, build_core

    settings = replace(settings_from_env(environ), token=token)
    api = build_api(intent, token, environ)
    core = build_core(settings, environ)
    code, _ = run(intent, core, api, settings)
    sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
