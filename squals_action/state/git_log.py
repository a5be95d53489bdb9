"""The history of the state branch, read from its commit log a page at a time.

``squals history`` over thousands of transitions must not parse all of them to show twenty: git stops
walking at ``--max-count`` and ``--since``, and picks one environment's commits by their
``Squals-Environment`` trailer with ``--grep`` (an archived environment's too: the log is all it needs).
Python then checks each entry it parsed, so a summary line that merely looks like a trailer is not taken
for one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from squals_action.state.git_repo import GitRepo
from squals_action.state.transitions import HistoryEntry, parse_message

_FORMAT = "--format=%H%x1f%ct%x1f%B"


def read_history(
    repo: GitRepo,
    tip: str,
    *,
    environment: str | None = None,
    limit: int | None = None,
    since: datetime | None = None,
) -> list[HistoryEntry]:
    """Transitions from ``tip`` back, newest first: at most ``limit``, none older than ``since``."""
    args = ["log", "--no-show-signature", "--no-decorate", "-z", _FORMAT]
    if since is not None:
        args.append(f"--since=@{int(since.timestamp())}")
    if environment is not None:  # names are letters, digits, '.', '_', '-': only '.' means more in a regex
        args.append(f"--grep=^Squals-Environment: {environment.replace('.', '[.]')}$")
    entries: list[HistoryEntry] = []
    skip = 0
    while True:
        page = [f"--max-count={limit}", f"--skip={skip}"] if limit is not None else []
        out = repo.run(*args, *page, tip).stdout.decode("utf-8", "replace")
        records = [r for r in out.split("\0") if r.strip()]
        for record in records:
            commit, ts, body = record.lstrip("\n").split("\x1f", 2)
            entry = parse_message(commit, datetime.fromtimestamp(int(ts), UTC), body)
            if entry is None or (environment is not None and entry.environment != environment):
                continue
            if since is not None and entry.time < since:
                continue
            entries.append(entry)
            if limit is not None and len(entries) >= limit:
                return entries
        if limit is None or len(records) < limit:
            return entries
        skip += limit  # git's page held commits that only looked like the environment's: read on
