"""``squals experiment plan``: the units, days and islands an experiment needs, before it starts.

Argument parsing only: the flags (and, with ``--from``, the squals file's experiment) become a
:class:`~squals_action.experiments.plan.Design`; the plan is computed and rendered by the packages below,
imported by the handler (numpy and scipy load only when a plan is made; the plan module itself is light).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from squals_action.errors import EXIT_OK, UsageError
from squals_action.experiments.plan import TICKS_PER_DAY

if TYPE_CHECKING:
    from squals_action.experiments.plan import Design
    from squals_action.manifest.model import Experiment

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")
_PERCENT_RE = re.compile(rf"^({_NUMBER})%$")


def _number(text: str) -> float:
    if not _NUMBER_RE.match(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return float(text)


def fraction(text: str) -> float:
    """An argparse type: ``10%`` or ``0.1`` -> 0.1 (a rate, alpha, power)."""
    got = _PERCENT_RE.match(text.strip())
    if got:
        return float(got.group(1)) / 100.0
    if not _NUMBER_RE.match(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a number or a percentage (0.1 or 10%), got {text!r}")
    return float(text)


def effect(text: str) -> tuple[float, bool]:
    """An argparse type: ``5%`` -> (0.05, relative) or ``0.5`` -> (0.5, absolute in the metric's unit)."""
    got = _PERCENT_RE.match(text.strip())
    if got:
        return float(got.group(1)) / 100.0, True
    if not _NUMBER_RE.match(text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a relative effect (5%) or an absolute one in the metric's unit (0.5), got {text!r}"
        )
    return float(text), False


def split(text: str) -> dict[str, float]:
    """An argparse type: ``control=50,green=50``, or ``50/25/25`` (control, variant-1, variant-2...)."""
    parts = [p.strip() for p in text.split("," if "=" in text else "/")]
    out: dict[str, float] = {}
    for i, part in enumerate(parts):
        name, _, weight = part.rpartition("=") if "=" in text else ("", "", part)
        name = name.strip() or ("control" if i == 0 else f"variant-{i}")
        if not name or name in out or not _NUMBER_RE.match(weight.strip()):
            raise argparse.ArgumentTypeError(
                f"expected NAME=WEIGHT,NAME=WEIGHT or WEIGHT/WEIGHT (first is control), got {text!r}"
            )
        out[name] = float(weight)
    if len(out) < 2:
        raise argparse.ArgumentTypeError(f"expected control and at least one variant, got {text!r}")
    return out


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``plan`` to ``squals experiment``."""
    plan = actions.add_parser(
        "plan",
        help="units per variant, days and islands an experiment needs (fixed and sequential designs)",
        description="From a baseline (--rate, or --mean and --sd), the minimum detectable effect, the split, "
        "alpha, power and the daily traffic: the units per variant and days each design needs (fixed: "
        "Welch's test at one look; sequential: the mSPRT at every tick, by a seeded simulation) and the "
        "islands (one per variant). --from reads the split, control, alpha and kind of a squals file's "
        "experiment; flags override it. The islands' names carry the experiment id's tag: give --id for "
        "the exact names. See docs/experiments.md.",
    )
    plan.add_argument(
        "--from", dest="from_file", type=Path, metavar="FILE", help="a squals file's experiment"
    )
    plan.add_argument("--rate", type=fraction, help="baseline rate of a proportion objective (10%% or 0.1)")
    plan.add_argument("--mean", type=_number, help="baseline mean per unit of a mean or ratio objective")
    plan.add_argument("--sd", type=_number, help="baseline standard deviation per unit (with --mean)")
    plan.add_argument(
        "--mde",
        type=effect,
        required=True,
        help="minimum detectable effect: relative to the baseline (5%%) or absolute in the metric's unit "
        "(0.01 is one point of a rate), in the objective's direction",
    )
    plan.add_argument(
        "--split", type=split, help="weights: control=50,green=50 or 50/25/25 (first is control)"
    )
    plan.add_argument("--control", help="the control variant (default: the squals file's, else the first)")
    plan.add_argument(
        "--direction", choices=("maximize", "minimize"), help="default: the file's, else maximize"
    )
    plan.add_argument("--alpha", type=fraction, help="significance level (default: the file's, else 0.05)")
    plan.add_argument("--power", type=fraction, default=0.8, help="power wanted (default: 80%%)")
    plan.add_argument(
        "--daily-traffic",
        type=_number,
        required=True,
        metavar="UNITS",
        help="units entering per day, all variants",
    )
    plan.add_argument(
        "--ticks-per-day",
        type=_number,
        default=TICKS_PER_DAY,
        help="looks of the sequential test per day (default: 96, the example workflow's 15-minute schedule)",
    )
    plan.add_argument(
        "--id",
        dest="experiment_id",
        type=experiment_id,
        help="the experiment id `squals experiment start` will use (its --id, default <name>-<12 digits of "
        "its commit): the islands' exact names; without it their tag is shown as <tag>",
    )
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format")
    plan.set_defaults(handler=run_plan)


def experiment_id(text: str) -> str:
    """An argparse type: an experiment id as the start checks it."""
    from squals_action.state.errors import StateError
    from squals_action.state.layout import check_name

    try:
        return check_name("experiment", text)
    except StateError as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from None


def _experiment(path: Path) -> Experiment:
    from squals_action.manifest import load

    if not path.is_file():
        raise UsageError(f"--from {path}: no such file (expected a squals file)")
    manifest = load(path)
    if manifest.experiment is None:
        raise UsageError(f"{path}: no experiment section to plan (expected an `experiment:` mapping)")
    return manifest.experiment


def design_of(args: argparse.Namespace, spec: Experiment | None) -> Design:
    """The design the flags and the squals file's experiment ask for (flags win)."""
    from squals_action.experiments.plan import Design

    kind = spec.objective.kind if spec is not None else ("proportion" if args.rate is not None else "mean")
    where = f"{args.from_file}: the objective {spec.objective.metric} is a {kind}" if spec else "expected"
    if kind == "proportion":
        if args.rate is None or args.mean is not None or args.sd is not None:
            raise UsageError(f"{where}: give its baseline as --rate (not --mean/--sd)")
        baseline, sd = args.rate, None
    else:
        if args.mean is None or args.sd is None or args.rate is not None:
            raise UsageError(f"{where}: give its baseline as --mean and --sd (not --rate)")
        baseline, sd = args.mean, args.sd
    weights = args.split or (dict(spec.split) if spec is not None else {"control": 50.0, "variant-1": 50.0})
    control = args.control or (
        spec.control if spec is not None and spec.control in weights else next(iter(weights))
    )
    direction = args.direction or (spec.objective.direction if spec is not None else "maximize")
    size, relative = args.mde
    change = abs(size) * (abs(baseline) if relative else 1.0)
    alpha = args.alpha if args.alpha is not None else (spec.significance.alpha if spec is not None else 0.05)
    return Design(
        baseline=baseline,
        sd=sd,
        effect=change if direction == "maximize" else -change,
        split=weights,
        control=control,
        alpha=alpha,
        power=args.power,
        daily_units=args.daily_traffic,
        ticks_per_day=args.ticks_per_day,
    )


def run_plan(args: argparse.Namespace) -> int:
    import json

    from squals_action.experiments.plan import plan
    from squals_action.report import plan as view

    spec = _experiment(args.from_file) if args.from_file is not None else None
    made = plan(design_of(args, spec), args.experiment_id)
    if args.format == "json":
        print(json.dumps(made.to_json(), indent=2))
    elif args.format == "markdown":
        print(view.markdown(made), end="")
    else:
        view.print_terminal(made, sys.stdout)
    return EXIT_OK
