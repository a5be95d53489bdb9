"""One concurrent writer process for the state tests and the benchmark.

Usage: ``python state_writer.py REPO WRITER_ID COUNT [MAX_ATTEMPTS [BASE_DELAY MAX_DELAY]]``.
With ``STATE_WRITER_REMOTE`` set in the environment the store uses that remote; set to the empty string,
local-only mode (the branch of REPO itself).

Each transaction increments the shared counter ``counters/c.json`` (``n`` and the writer's own ``w<id>``)
and appends ``<id>-<j>`` to ``journal/log.json``. Prints one JSON line: the attempts of each transaction and
the wall-clock start and end (epoch seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from squals_action.state import Documents, RetryPolicy, Transition, open_store


def main() -> None:
    repo, writer, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    retry = RetryPolicy()
    if len(sys.argv) > 4:
        retry = RetryPolicy(max_attempts=int(sys.argv[4]))
    if len(sys.argv) > 6:
        retry = RetryPolicy(int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
    remote = os.environ.get("STATE_WRITER_REMOTE", "origin")
    store = open_store(repo, remote=remote or None, retry=retry)
    attempts: list[int] = []
    started = time.time()
    for j in range(count):
        item = f"{writer}-{j}"

        def step(docs: Documents, item: str = item) -> Documents:
            counter = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
            counter["n"] += 1
            counter[f"w{writer}"] = counter.get(f"w{writer}", 0) + 1
            docs["counters/c.json"] = counter
            journal = docs.get("journal/log.json", {"schema_version": 1, "entries": []})
            journal["entries"].append(item)
            docs["journal/log.json"] = journal
            return docs

        meta = Transition("count", f"writer {writer} step {j}", run_id=item, actor=writer)
        result = store.transact(step, meta)
        attempts.append(result.attempts)
    ended = time.time()
    print(json.dumps({"writer": writer, "attempts": attempts, "start": started, "end": ended}))


if __name__ == "__main__":
    main()
