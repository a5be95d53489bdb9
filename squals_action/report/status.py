"""``squals status``: the environments recorded on the state branch with what the local Dealer says now.

The recorded part (version, status, share, URL, lock) comes from one snapshot; the live part (the public URL
users go to, requests, errors and p95 latency per environment) from the Dealer's tallies when a Dealer runs,
and is "no data" otherwise: a figure nobody measured is never shown as a zero. A retired environment's
recorded URL is not shown as a place to go: nothing answers there any more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from squals_action.dealer.interface import VariantTally
from squals_action.experiments.records import ACTIVE, placement
from squals_action.report.terminal import cell, console, unbroken
from squals_action.sorting import natural_key
from squals_action.state import Lock, Snapshot, utc_now

#: Recorded statuses of an environment that no longer runs: its URL is history, not a place to go.
GONE = frozenset({"retired", "absent"})
NO_DATA = "no data"


@dataclass(frozen=True)
class LiveTraffic:
    """The local Dealer as it is now: where users go, and its tallies (``None`` when it did not answer)."""

    url: str
    pid: int | None
    tallies: Mapping[str, VariantTally] | None


def lock_json(lock: Lock | None) -> dict[str, Any] | None:
    """A lock as ``status`` and ``unlock`` print it in JSON: its document and whether it has expired."""
    if lock is None:
        return None
    doc = lock.to_json()
    doc.pop("schema_version", None)
    doc["expired"] = lock.expired(utc_now())
    if lock.holder is not None:  # a run on this machine that is gone: the lock waits for `squals unlock`
        doc["stale"] = lock.holder.liveness() == "dead"
    return doc


def _figures(name: str, live: LiveTraffic | None) -> dict[str, Any] | None:
    """Requests, errors and p95 latency the Dealer tallied for ``name``; ``None``: nothing was measured."""
    tally = live.tallies.get(name) if live is not None and live.tallies is not None else None
    if tally is None:
        return None
    return {"requests": tally.activations, "errors": tally.errors, "p95_ms": tally.latency_p95_ms}


def status_json(
    snapshot: Snapshot,
    branch: str,
    include_all: bool = False,
    remote: str | None = None,
    live: LiveTraffic | None = None,
) -> dict[str, Any]:
    """The ``--format json`` document of ``squals status``: environments in natural order, locks, figures.

    ``remote``: the remote that holds the branch, ``None`` for the repository's own (local-only mode).
    An environment that no longer runs has ``url: null`` and its recorded URL in ``last_url``; ``figures``
    is ``null`` when the Dealer has none for it (no Dealer running, or no request through it yet).
    """
    envs = snapshot.environments()
    locks = snapshot.locks()
    environments = []
    for name in sorted(set(envs) | set(locks), key=natural_key):
        env = envs.get(name)
        doc: dict[str, Any] = env.to_json() if env is not None else {"name": name, "status": None}
        doc.pop("schema_version", None)
        if doc.get("status") in GONE and doc.get("url"):
            doc["last_url"], doc["url"] = doc["url"], None
        doc["lock"] = lock_json(locks.get(name))
        doc["figures"] = _figures(name, live)
        environments.append(doc)
    experiments = []
    docs = snapshot.experiments()
    for experiment in sorted(docs.values(), key=lambda e: natural_key(e.id)):
        if include_all or experiment.status in ACTIVE:  # promoting, promotion-failed... still run
            exp_doc = experiment.to_json()
            exp_doc.pop("schema_version", None)
            exp_doc["placement"] = placement(experiment, docs)
            experiments.append(exp_doc)
    return {
        "branch": branch,
        "remote": remote,
        "commit": snapshot.commit,
        "public_url": live.url if live is not None else None,
        "environments": environments,
        "experiments": experiments,
    }


def _lock_line(lock: Mapping[str, Any] | None) -> str:
    """Who holds the lock and since when: ``PR #9 (bob, run 91) since 2026-05-01T12:00:00Z``."""
    if lock is None:
        return ""
    holder = lock.get("holder")
    who = ", ".join(
        ([str(lock["actor"])] if lock.get("actor") else [])
        + ([f"run {lock['run_id']}"] if lock.get("run_id") else [])
        + ([f"pid {holder['pid']} on {holder['host']}"] if holder else [])
    )
    line = f"PR #{lock['pr']}" + (f" ({who})" if who else "") + f" since {lock['acquired_at']}"
    if lock.get("stale"):
        return line + f" (stale: `squals unlock {lock['environment']}`)"
    return line + (" (expired)" if lock.get("expired") else "")


def _figures_cell(figures: Mapping[str, Any] | None) -> str:
    """``1,204 · 3 (0.25 %) · 41 ms``: requests, errors, p95; ``no data`` when nothing was measured."""
    if figures is None:
        return NO_DATA
    requests, errors, p95 = figures["requests"], figures["errors"], figures["p95_ms"]
    rate = f" ({100.0 * errors / requests:.2g} %)" if errors else ""
    latency = f"{p95:.0f} ms" if p95 is not None else NO_DATA
    return f"{requests:,} · {errors:,}{rate} · {latency}"


def _public_line(live: LiveTraffic | None, dealer_dir: str) -> str:
    if live is None:
        return f"Public URL: none (no Dealer runs from {dealer_dir}); requests, errors, p95: no data"
    line = f"Public URL: {live.url} (the Dealer, pid {live.pid})"
    if live.tallies is None:
        line += "; it did not answer for its tallies: no data"
    return line


def _share_cell(env: Mapping[str, Any]) -> str:
    share = env.get("traffic_share")
    return f"{share:g} %" if share is not None and env.get("status") not in GONE else ""


def _dealer_url(experiment: Mapping[str, Any]) -> str:
    """Where a running experiment's own Dealer takes its users (recorded when it started)."""
    url = (experiment.get("extra") or {}).get("url")
    return str(url) if url and experiment.get("status") == "running" else ""


def _variants_cell(experiment: Mapping[str, Any]) -> str:
    split = experiment.get("split") or {}
    return ", ".join(f"{v} {split[v]:g} %" if v in split else v for v in experiment["variants"])


def _verdict_cell(experiment: Mapping[str, Any]) -> str:
    decision = experiment.get("decision") or {}
    return " ".join(str(decision[k]) for k in ("outcome", "winner") if decision.get(k))


@dataclass(frozen=True)
class _Column:
    """One column: its header, the cell of a row, whether it stays whole (what identifies a row or is
    copied: names, URLs) and whether it is right-aligned (figures)."""

    header: str
    value: Callable[[Mapping[str, Any]], str]
    whole: bool = False
    right: bool = False


_ENVIRONMENTS = (
    _Column("environment", lambda env: str(env["name"]), whole=True),
    _Column("status", lambda env: str(env.get("status") or "-"), whole=True),
    _Column("traffic", _share_cell, whole=True, right=True),
    _Column("URL", lambda env: str(env.get("url") or ""), whole=True),
    _Column("requests · errors · p95", lambda env: _figures_cell(env["figures"]), right=True),
)
_ENVIRONMENT_DETAILS = (
    _Column("lock", lambda env: _lock_line(env["lock"])),
    _Column("version", lambda env: str(env.get("version") or (env.get("commit") or "")[:12])),
    _Column("updated", lambda env: str(env.get("updated_at") or "")),
)
_EXPERIMENTS = (
    _Column("experiment", lambda exp: str(exp["id"]), whole=True),
    _Column("status", lambda exp: str(exp["status"]), whole=True),
    _Column("URL", _dealer_url, whole=True),
    _Column("decision", _verdict_cell),
)
_EXPERIMENT_DETAILS = (
    _Column("variants", _variants_cell),
    _Column("placement", lambda exp: str(exp.get("placement") or "")),
    _Column("updated", lambda exp: str(exp.get("updated_at") or "")),
)


def _table(title: str, rows: list[Mapping[str, Any]], columns: tuple[_Column, ...]) -> Any:
    from rich.table import Table

    table = Table(title=cell(title) if title else None, title_justify="left")
    for column in columns:
        whole = unbroken(column.value(row) for row in rows) if column.whole else {}
        table.add_column(column.header, justify="right" if column.right else "left", **whole)
    for row in rows:
        table.add_row(*(cell(column.value(row)) for column in columns))
    return table


def _print_fitting(
    view: Any,
    title: str,
    rows: list[Mapping[str, Any]],
    main: tuple[_Column, ...],
    details: tuple[_Column, ...],
) -> None:
    """One table when it fits the width; else the main columns, then the first one with the details: a
    narrow terminal gets two tables rather than one whose cells are cut to "…"."""
    from rich.measure import Measurement

    wide = _table(title, rows, (*main, *details))
    unbounded = view.options.update_width(1_000_000)  # how wide it wants to be, not what it is given
    if Measurement.get(view, unbounded, wide).maximum <= view.width:
        view.print(wide)
        return
    view.print(_table(title, rows, main))
    view.print(_table("", rows, (main[0], *details)))


def print_status(
    out: IO[str],
    report: Mapping[str, Any],
    *,
    title: str,
    live: LiveTraffic | None,
    dealer_dir: str,
    include_all: bool,
) -> None:
    """The text view of :func:`status_json`: the public URL, the environments, the experiments."""
    view = console(out)
    view.print(cell(_public_line(live, dealer_dir)))
    if report["environments"]:
        _print_fitting(view, title, report["environments"], _ENVIRONMENTS, _ENVIRONMENT_DETAILS)
    else:
        view.print(cell("No environments."))
    if report["experiments"]:
        heading = "Experiments" if include_all else "Active experiments"
        _print_fitting(view, heading, report["experiments"], _EXPERIMENTS, _EXPERIMENT_DETAILS)
    else:
        view.print(cell("No experiments." if include_all else "No active experiments."))
