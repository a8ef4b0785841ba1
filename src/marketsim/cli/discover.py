"""``marketsim discover``: the boxes of assumptions under which an option loses (or gains) more than a threshold,
on a stored projection (its draws) or a stored sweep (its design points); PRIM, :mod:`marketsim.experiments.discovery`;
the words, :mod:`marketsim.report.discovery`."""

from __future__ import annotations

import argparse
from pathlib import Path

from marketsim.errors import UserError
from marketsim.experiments.decision import from_folder
from marketsim.experiments.discovery import (
    MASS_MIN,
    MIN_DENSITY,
    PEEL_ALPHA,
    Discovery,
    discover_outcomes,
    discover_sweep,
    sweep_outputs,
)
from marketsim.io import dataset, store
from marketsim.report.discovery import condition, describe, no_box, sentence
from marketsim.report.numbers import probability
from marketsim.report.progress import console, table


def _projection(args: argparse.Namespace, path: Path) -> Discovery:
    if args.output:
        raise UserError(f"--output {args.output}: is for a sweep folder; {path} is a projection (use --retailer)")
    o = from_folder(path)
    if not args.retailer:
        raise UserError(f"{path}: say whose share to search: --retailer, one of {', '.join(o.retailers)}")
    option = args.option or o.options[0]
    return discover_outcomes(o, option, args.retailer, args.threshold, boxes=args.boxes)


def _sweep(args: argparse.Namespace, path: Path) -> Discovery:
    if args.option:
        raise UserError(f"--option {args.option}: is for a projection folder; {path} is a sweep (use --output)")
    outputs = sweep_outputs(path)
    output = args.output
    if output is None:
        if args.retailer and f"shift.gmv_share.{args.retailer}" in outputs:
            output = f"shift.gmv_share.{args.retailer}"
        else:
            whose = f"shift.gmv_share.{args.retailer} is not among them" if args.retailer else "no --retailer given"
            raise UserError(f"{path}: say which output to search: --output, one of {', '.join(outputs)} ({whose})")
    return discover_sweep(path, output, args.threshold, boxes=args.boxes)


def load(args: argparse.Namespace) -> Discovery:
    """The discovery the arguments ask for, on a projection or a sweep folder."""
    path = Path(args.result)
    if not path.is_dir():
        raise UserError(
            f"{path}: no such folder; give a projection folder (results/<scenario>/projection-.../) or a sweep "
            f"folder (results/<sweep-name>/)"
        )
    if store.result_kind(path) == "projection":
        return _projection(args, path)
    if dataset.is_sweep_folder(path):
        return _sweep(args, path)
    raise UserError(
        f"{path}: neither a projection nor a sweep result folder; run `marketsim project SCENARIO` or "
        f"`marketsim sweep SWEEP.yaml` and give the folder it writes"
    )


def cmd_discover(args: argparse.Namespace) -> int:
    d = load(args)
    if args.json:
        print(store.dumps({"result": str(args.result), **describe(d)}))
        return 0
    con = console()
    if not d.boxes:
        con.print(no_box(d))
        return 0
    t = table(
        f"Boxes of assumptions: {d.cases} of {d.draws} {d.unit_of_draw} are cases",
        caption="coverage: share of all cases inside the box; density: share of cases among the box's "
        f"{d.unit_of_draw} (those no earlier box holds)",
    )
    t.add_column("box", justify="right", no_wrap=True)
    t.add_column("assumptions")
    t.add_column("coverage", justify="right", no_wrap=True)
    t.add_column("density", justify="right", no_wrap=True)
    t.add_column(d.unit_of_draw, justify="right", no_wrap=True)
    for i, b in enumerate(d.boxes, 1):
        conds = "\n".join(condition(lo, hi, d.parameters[c]) for c, (lo, hi) in b.limits.items())
        t.add_row(str(i), conds, probability(b.coverage), probability(b.density), str(b.n))
    con.print(t)
    con.print()
    for i, b in enumerate(d.boxes, 1):
        con.print(f"{i}. {sentence(d, b)}")
    con.print()
    con.print(
        f"PRIM (Friedman & Fisher 1999), peeling {probability(PEEL_ALPHA)} at a step down to boxes of "
        f"{probability(MASS_MIN)} of the {d.unit_of_draw}; each box is the one of highest harmonic mean of coverage "
        f"and density with a density of at least {probability(MIN_DENSITY)} (assumption); docs/sweeps.md."
    )
    return 0
