"""``squals experiment start|tick|status|stop``: run the squals file's experiment from a terminal.

Only argparse here; the engine, provider, Dealer and state store are imported by the handlers. Progress goes
to stderr, results to stdout (``--format json`` for scripts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from squals_action.cli import plan_commands
from squals_action.cli.options import (
    add_state_options,
    project_options,
    pull_request_number,
    requested_remote,
)
from squals_action.errors import EXIT_FAILURE, EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``squals experiment`` and its actions."""
    experiment = subparsers.add_parser(
        "experiment",
        help="start, advance, show or stop the squals file's experiment",
        description="Competing variants, one island each behind the Dealer; a tick measures, tests and "
        "promotes the winner to prod through the normal promotion. See docs/experiments.md.",
    )
    actions = experiment.add_subparsers(dest="experiment_command", metavar="ACTION", required=True)

    start = actions.add_parser(
        "start",
        help="provision one island per variant and split traffic among them",
        description="Provision an island exp-<variant>-<tag> (the experiment's own) for every variant from "
        "COMMIT, split the traffic among them "
        "with the declared split and sticky unit (the experiment's own Dealer; on aws the front door's "
        "listener), and record experiments/<id>.json on the state branch.",
    )
    start.add_argument("--commit", default="HEAD", help="commit the variants run (default: HEAD)")
    start.add_argument(
        "--pr", type=pull_request_number, help="pull request of the experiment (the winner becomes pr-N)"
    )
    start.add_argument("--id", dest="experiment_id", help="experiment id (default: <name>-<commit>)")
    _common(start)
    start.set_defaults(handler=run_start)

    tick = actions.add_parser(
        "tick",
        help="measure, decide, and act (exclude, promote the winner, or end)",
        description="For every running experiment (or the one named): read the squals file as it was at "
        "the start, the Dealer's tallies (on aws: CloudWatch) and declared metrics, test each variant "
        "against control, record the decision; the winner's own island is promoted to prod.",
    )
    tick.add_argument("experiment_id", nargs="?", metavar="ID", help="only this experiment")
    _common(tick)
    tick.set_defaults(handler=run_tick)

    status = actions.add_parser(
        "status",
        help="show the experiments recorded on the state branch",
        description="The experiments on the state branch; --format markdown gives the report the PR comment "
        "shows (per-variant table and the objective's chart over the ticks).",
    )
    status.add_argument("experiment_id", nargs="?", metavar="ID", help="only this experiment")
    _common(status, ("text", "json", "markdown"))
    status.set_defaults(handler=run_status)

    stop = actions.add_parser("stop", help="end an experiment by hand: islands stopped, nothing promoted")
    stop.add_argument("experiment_id", metavar="ID")
    stop.add_argument("--reason", default="", help="recorded with the stop")
    _common(stop)
    stop.set_defaults(handler=run_stop)

    plan_commands.register(actions)


def _common(parser: argparse.ArgumentParser, formats: tuple[str, ...] = ("text", "json")) -> None:
    add_state_options(parser, squals_file=True)
    parser.add_argument("--format", choices=formats, default="text", help="output format")


def _engine(args: argparse.Namespace) -> Any:
    import os

    from squals_action.experiments.engine import from_lifecycle
    from squals_action.lifecycle.project import open_project

    # The variants' code passed its gates on its pull request.
    options = project_options(args, gates=False, run_id=os.environ.get("GITHUB_RUN_ID") or None)
    lifecycle = open_project(options)
    return from_lifecycle(lifecycle, log=lambda text: print(f"> {text}", file=sys.stderr, flush=True))


def _describe(doc: Any, docs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One experiment document as the CLI shows it (``docs``: every experiment, for which ones share its
    traffic)."""
    from squals_action.experiments.records import placement

    decision = dict(doc.decision or {})
    return {
        "id": doc.id,
        "status": doc.status,
        "placement": placement(doc, docs or {}),
        "variants": list(doc.variants),
        "split": dict(doc.split),
        "url": doc.extra.get("url"),
        "started_at": doc.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if doc.started_at else None,
        "decision": decision.get("status"),
        "winner": decision.get("winner"),
        "outcome": decision.get("outcome"),
        "reasons": list(decision.get("reasons", [])),
        "observations": {v: dict(m) for v, m in doc.observations.items()},
    }


def _print_doc(info: dict[str, Any]) -> None:
    head = f"{info['id']}: {info['status']}"
    if info["outcome"]:
        head += f" ({info['outcome']}" + (f", winner {info['winner']}" if info["winner"] else "") + ")"
    print(head)
    if info["url"] and info["status"] in ("running", "promotion-failed"):
        print(f"  traffic: {info['url']} ({', '.join(f'{k} {v:g} %' for k, v in info['split'].items())})")
    if info["placement"]:
        print(f"  placement: {info['placement']}")
    for variant, figures in info["observations"].items():
        units, conv = int(figures.get("units", 0)), int(figures.get("conversions", 0))
        rate = conv / units if units else 0.0
        print(f"  {variant}: {conv}/{units} = {rate:.4g}")
    for reason in info["reasons"][:3]:
        print(f"  - {reason}")


def run_start(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        outcome = engine.start(args.commit, pr=args.pr, experiment_id=args.experiment_id)
    finally:
        engine.store.close()
    info = _describe(outcome.experiment)
    if args.format == "json":
        print(json.dumps({"message": outcome.message, "started": outcome.started, **info}, indent=2))
    else:
        print(outcome.message)
    return EXIT_OK


def run_tick(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        outcomes = engine.tick(args.experiment_id)
    finally:
        engine.store.close()
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "experiment": o.experiment,
                        "status": o.status,
                        "ok": o.ok,
                        "message": o.message,
                        "promoted": o.promoted,
                        "decision": o.decision.to_json() if o.decision else None,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    elif not outcomes:
        print("no running experiment")
    for o in outcomes if args.format == "text" else ():
        print(f"{o.experiment}: {o.message}")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILURE


def run_status(args: argparse.Namespace) -> int:
    from squals_action.gitcmd import repo_top
    from squals_action.state import choose_remote, open_store

    repo = repo_top((args.repo or Path.cwd()).resolve())
    remote = choose_remote(repo, requested_remote(args))
    with open_store(repo, remote=remote, branch=args.state_branch) as store:
        docs = every = store.read().experiments()
    if args.experiment_id is not None:
        from squals_action.experiments.interface import ExperimentError

        if args.experiment_id not in docs:
            raise ExperimentError(f"no experiment {args.experiment_id!r} on the state branch")
        docs = {args.experiment_id: docs[args.experiment_id]}
    if args.format == "markdown":
        from squals_action.experiments.records import placement
        from squals_action.report import markdown as md
        from squals_action.report.experiments import experiment_markdown

        costs = _running_costs(args, docs)
        for doc in docs.values():
            print(f"### Experiment {md.code(doc.id)}: {md.escape(doc.status)}\n")
            print(experiment_markdown(doc, costs.get(doc.id), placement=placement(doc, every)))
        if not docs:
            print("No experiment recorded.")
        return EXIT_OK
    infos = [_describe(d, every) for d in docs.values()]
    if args.format == "json":
        print(json.dumps(infos, indent=2))
    elif not infos:
        print("no experiment recorded")
    for info in infos if args.format == "text" else ():
        _print_doc(info)
    return EXIT_OK


def run_stop(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        doc = engine.stop(args.experiment_id, args.reason)
    finally:
        engine.store.close()
    info = _describe(doc)
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        _print_doc(info)
    return EXIT_OK


def _running_costs(args: argparse.Namespace, docs: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each running experiment's variants' island costs so far, measured where its start commit made them
    ("no data" with the reason when they cannot be measured: no squals file here, or the cost source
    refused)."""
    from squals_action.errors import SqualsError

    running = {eid: doc for eid, doc in docs.items() if doc.status == "running"}
    if not running:
        return {}
    try:
        from squals_action.experiments.costs import running_costs
        from squals_action.lifecycle.project import squals_dir
        from squals_action.report.costs import variant_cells

        engine = _engine(args)
        try:
            measured = running_costs(engine, running.values(), squals_dir(engine.repo) / "dealer")
            return variant_cells(measured, running)
        finally:
            engine.store.close()
    except SqualsError as exc:
        return {eid: {v: f"no data: {exc.one_line()}" for v in doc.split} for eid, doc in running.items()}
