"""Which documents leave the live tree, and where they go: retired environments into ``archive/``.

A transaction reads, copies, checks and rewrites every live document, so the live tree must hold what is
alive, not every preview environment a project ever had. An environment is **retired** when the lifecycle
recorded it destroyed (status ``retired``) and nothing of it is left: no provider handle, no traffic. The
:data:`KEEP_RETIRED` most recently retired stay live (``squals status`` shows what just ended, and the
lifecycle's own report of a teardown sees it); older ones move, in the first commit that finds more (usually
the one retiring another), to ``archive/<YYYY-MM>/environments/<name>.json`` (the month of that commit).
The store keeps ``archive/`` as one subtree it never reads: each month's directory is written while its
month lasts, then never again. The
history keeps every version of the document, and ``squals history ENV`` finds an archived environment's
transitions from their commit trailers.

Ended experiments stay live: the experiments concern reads them to refuse a second run of one id and to
number the pull requests of winners without one, and there is one experiment at a time, not one per PR.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from squals_action.state.layout import ARCHIVE_DIR, ENVIRONMENTS_DIR

#: Retired environments that stay in the live tree, the most recently updated first.
KEEP_RETIRED = 10
#: The lifecycle's status of a destroyed environment.
RETIRED = "retired"


def is_retired(doc: Mapping[str, Any]) -> bool:
    """An environment recorded destroyed with nothing left of it: no provider handle, no traffic share."""
    return doc.get("status") == RETIRED and not doc.get("handle") and not doc.get("traffic_share")


def to_archive(docs: Mapping[str, Mapping[str, Any]], keep: int = KEEP_RETIRED) -> list[str]:
    """Paths of the retired environment documents beyond the ``keep`` most recently updated ones."""
    retired = sorted(
        (
            (str(doc.get("updated_at") or ""), path)
            for path, doc in docs.items()
            if path.startswith(f"{ENVIRONMENTS_DIR}/") and is_retired(doc)
        ),
        reverse=True,
    )
    return sorted(path for _, path in retired[keep:])


def archive_path(path: str, when: datetime) -> str:
    """Where the document at ``path`` goes, below :data:`ARCHIVE_DIR`: ``<YYYY-MM>/<path>``."""
    return f"{when:%Y-%m}/{path}"


__all__ = ["ARCHIVE_DIR", "KEEP_RETIRED", "archive_path", "is_retired", "to_archive"]
