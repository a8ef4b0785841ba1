"""The ``marketsim`` command line.

Every user error prints one line to stderr (``marketsim: error: file:line: field: problem``) and exits
with code 2, without a traceback. Ctrl-C exits with 130 and leaves no half-written result file.
Subcommands other than ``run``, ``validate`` and ``calibrate`` live in the modules of their concept
and are imported only when used, so ``marketsim run`` never loads Solara or Dask.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import UserError
from .progress import bar, stderr


# --------------------------------------------------------------------------- shared helpers


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def iso_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def seed_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in 0 .. 2^63-1, got {v}")
    return v


def set_value(text: str) -> tuple[str, str]:
    """``PATH=VALUE`` of --set (the value is read as YAML: 2.5, 2013-09-25, true, [1, 2])."""
    path, eq, value = text.partition("=")
    if not eq or not path.strip():
        raise argparse.ArgumentTypeError(f"expected PATH=VALUE (e.g. behaviour.beta_social=2.5), got {text!r}")
    return path.strip(), value.strip()


def load(args: argparse.Namespace, *, steps: bool = True):
    """The scenario named on the command line with its --set values and --seed / --consumers (and --steps
    unless ``steps=False``: calibration uses the scenario's own calendar, so a shorter run reuses the same fit)."""
    from .scenario import load_scenario, with_settings

    sc = load_scenario(args.scenario)
    if getattr(args, "set", None):
        sc = with_settings(sc, args.set)
    return sc.with_overrides(seed=getattr(args, "seed", None), consumers=getattr(args, "consumers", None),
                             steps=getattr(args, "steps", None) if steps else None)


def results_root(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "results", None) or "results")


def fit_params(scenario, args: argparse.Namespace, quiet: bool = False, **kw):
    """Attractiveness and trends for ``scenario``: given, or fitted (cached under results/calibration/).
    Returns :class:`marketsim.fitcache.Fitted`."""
    from .fitcache import fitted

    kw.setdefault("until", getattr(args, "until", None))
    if getattr(args, "tolerance", None) is not None:
        kw["tol_pp"] = args.tolerance
    with bar("fitting to the observations", None, "simulations", enabled=not quiet) as update:
        fit = fitted(scenario, results_root(args) / "calibration",
                     on_progress=lambda stage, k, worst: update(completed=k), **kw)
    if fit.note:
        stderr.print(f"marketsim: {fit.note}", markup=False, soft_wrap=True)
    cal = fit.calibration
    if cal is not None and not quiet:
        stderr.print(f"fit {'(cached) ' if fit.cached else ''}to {len(cal.observations)} observed shares: "
                     f"{cal.evaluations} simulations, largest residual {cal.max_residual_pp:.2f} pp, "
                     f"{cal.dof} residual degree{'s' if cal.dof != 1 else ''} of freedom", markup=False)
    return fit


# --------------------------------------------------------------------------- run / validate / calibrate


def cmd_validate(args: argparse.Namespace) -> int:
    from .describe import provenance, render
    from .scenario import scenario_files

    sc = load(args)
    settings = [f"{k}={v}" for k, v in (args.set or [])]
    settings += [f"--{k} {getattr(args, k)}" for k in ("seed", "consumers", "steps") if getattr(args, k, None) is not None]
    print(render(sc, given=args.scenario, prov=provenance(scenario_files(args.scenario)), settings=settings), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from . import schema, store

    if not args.write:
        print(schema.reference_markdown() if args.kind == "reference" else schema.schema_text(args.kind), end="")
        return 0
    root = Path(args.root)
    doc_path = root / "docs" / "scenarios.md"
    if not doc_path.is_file():
        raise UserError(f"{doc_path}: not found; run `marketsim schema --write` from the repository root (or give --root)")
    try:
        doc = schema.with_reference(doc_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{doc_path}: {e}") from None
    files = {root / "schema" / "scenario.schema.json": schema.schema_text("scenario"),
             root / "schema" / "sweep.schema.json": schema.schema_text("sweep"), doc_path: doc}
    for path, text in files.items():
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            store.write_text(path, text)
        print(f"{path}: {'unchanged' if same else 'written'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from . import plots, store
    from .progress import console, table

    sc = load(args)
    if not sc.needs_fit:
        raise UserError(f"{args.scenario}: no retailer has attractiveness or trend 'calibrate'; nothing to fit")
    fit = fit_params(sc, args, quiet=args.json)
    cal = fit.calibration
    full = None
    if sc.consumers.count > cal.consumers:  # fitted at fewer consumers (property 11.4): residuals at full N too
        from .calibrate import residuals_at

        full = residuals_at(sc, cal)
    fig = plots.fit_figure(sc, cal)
    out = results_root(args) / sc.name
    store.save_figure(fig, out / "fit.png")
    plots.close(fig)
    doc = cal.summary()
    if full is not None:
        doc["full_size"] = full
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    t = table(f"{sc.name}: fit to {len(cal.observations)} observed GMV shares until {cal.until}",
              caption=f"primary source {cal.primary_source}; seed {cal.seed}, {cal.consumers:,} consumers; "
                      f"{cal.dof} residual degree{'s' if cal.dof != 1 else ''} of freedom")
    t.add_column("source")
    t.add_column("period")
    t.add_column("retailer")
    for col in ("observed %", "simulated %", "residual pp") + (("at full N pp",) if full else ()):
        t.add_column(col, justify="right", no_wrap=True)
    for k, o in enumerate(cal.observations):
        row = [o["source"], o["period"]["label"], o["retailer"], f"{o['observed']:.1f}", f"{o['simulated']:.2f}",
               f"{o['residual_pp']:+.2f}"]
        if full:
            row.append(f"{full['observations'][k]['residual_pp']:+.2f}")
        t.add_row(*row)
    con = console()
    con.print(t)
    p = table("fitted parameters", caption="attractiveness in utility at the calendar start; trend in utility a year")
    p.add_column("retailer")
    for col in ("attractiveness", "trend /yr") + tuple(f"{s} offset pp" for s in cal.offsets):
        p.add_column(col, justify="right", no_wrap=True)
    fitted_alpha = {r.name for r in sc.retailers if r.calibrate}
    fitted_trend = {r.name for r in sc.retailers if r.calibrate_trend}
    for n in sc.retailer_names:
        p.add_row(n, f"{cal.alpha[n]:.3f}" + ("" if n in fitted_alpha else " (given)"),
                  f"{cal.trend[n]:+.3f}" + ("" if n in fitted_trend else " (given)"),
                  *[(f"{d[n]:+.2f}" if n in d else "-") for d in cal.offsets.values()])
    con.print(p)
    con.print(f"conversion residual {cal.conversion_residual_pp:+.2f} pp; {cal.iterations} solver steps, "
              f"{cal.evaluations} simulations; tolerance {cal.tol_pp} pp; cache key {cal.key}")
    if cal.dof == 0:
        con.print("the fit is saturated (as many parameters as equations): zero residuals say nothing about the model")
    con.print(f"wrote {out / 'fit.png'}", markup=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import plots, store
    from .calibrate import residuals_at
    from .engine import simulate

    fit = fit_params(load(args, steps=False), args, quiet=args.json)
    cal = fit.calibration
    sc = load(args)
    steps = sc.calendar.steps
    for e in sc.events_outside:
        stderr.print(f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this {steps}-step run: "
                     f"it does not fire", markup=False, soft_wrap=True)
    with bar(f"simulating {sc.name}", steps, "steps", enabled=True) as update:
        res = simulate(sc, fit.alpha, trend=fit.trend, on_step=lambda done, total: update(completed=done))
    out = Path(args.out) if args.out else results_root(args) / sc.name
    ts, flows = res.timeseries(), res.flows()
    store.write_table(ts, out / "timeseries")
    store.write_table(flows, out / "flows")
    fig = plots.shares_figure(sc, ts)
    store.save_figure(fig, out / "shares.png")
    plots.close(fig)
    first, last = res.share(0), res.share(steps - 1)
    summary = {
        "scenario": sc.name,
        "scenario_hash": sc.digest(),
        "seed": sc.seed,
        "consumers": sc.consumers.count,
        "steps": steps,
        "version": __version__,
        "first_date": sc.calendar.date_of(0).isoformat(),
        "last_date": sc.calendar.date_of(steps - 1).isoformat(),
        "share_first": first,
        "share_last": last,
        "attractiveness": dict(zip(sc.retailer_names, map(float, fit.alpha))),
        "trend": dict(zip(sc.retailer_names, map(float, fit.trend))),
        "calibration": None if cal is None else {
            "key": cal.key, "consumers": cal.consumers, "dof": cal.dof, "max_residual_pp": cal.max_residual_pp,
            "this_run": residuals_at(sc, cal, res.records)["observations"]},
        "events": [{"id": e.id, "step": e.step, "date": e.date.isoformat(), "type": e.action.type,
                    "outside_horizon": e.step >= steps} for e in sc.events],
        "files": {"timeseries": ["timeseries.csv", "timeseries.parquet"], "flows": ["flows.csv", "flows.parquet"], "plot": "shares.png"},
    }
    store.write_json(out / "summary.json", summary)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from .progress import console, table

    t = table(f"{sc.name}: GMV share by retailer, first and last week",
              caption=f"seed {sc.seed}, {sc.consumers.count:,} consumers")
    t.add_column("retailer")
    for col in (f"{summary['first_date']} %", f"{summary['last_date']} %", "change pp"):
        t.add_column(col, justify="right", no_wrap=True)
    for n in sc.retailer_names:
        t.add_row(n, f"{first[n] * 100:.1f}", f"{last[n] * 100:.1f}", f"{(last[n] - first[n]) * 100:+.1f}")
    con = console()
    con.print(t)
    con.print(f"wrote {out}/: timeseries.csv, timeseries.parquet, flows.csv, flows.parquet, summary.json, shares.png")
    return 0


# --------------------------------------------------------------------------- the parser


#: command -> "module:function" taking the parsed arguments and returning an exit code (imported lazily).
COMMANDS: dict[str, str] = {
    "run": "marketsim.cli:cmd_run",
    "validate": "marketsim.cli:cmd_validate",
    "schema": "marketsim.cli:cmd_schema",
    "calibrate": "marketsim.cli:cmd_calibrate",
    "project": "marketsim.projection:cmd_project",
    "viz": "marketsim.app:cmd_viz",
    "sweep": "marketsim.experiment:cmd_sweep",
    "analyze": "marketsim.analysis:cmd_analyze",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description to the terminal's width; keeps paragraphs with indented lines
    (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paras = []
        for para in text.split("\n\n"):
            if any(line.startswith("  ") for line in para.splitlines()):
                paras.append("\n".join(indent + line for line in para.splitlines()))
            else:
                paras.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paras)


def _command(sub, name: str, summary: str, details: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does (``summary``), what it writes (``details``) and how to call
    it (``examples``). argparse %-formats the one-line ``help`` (the command list), so a literal % is escaped."""
    return sub.add_parser(name, help=summary.replace("%", "%%"), description=f"{summary}\n\n{details}",
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples), formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="marketsim", formatter_class=_HelpFormatter,
                description="Agent-based simulator of competition between online retailers: consumers choose by "
                            "price, habit, login friction and what their friends bought; events (a retailer "
                            "dropping a login, an equity stake) move the shares.",
                epilog="examples:\n"
                       "  marketsim run scenarios/battle_lines_2013.yaml\n"
                       "  marketsim project scenarios/battle_lines_2013.yaml\n"
                       "  marketsim COMMAND --help      # what a command does and writes")
    p.add_argument("--version", action="version", version=f"marketsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def scenario_cmd(name: str, summary: str, details: str, examples: list[str], *, seed=True, consumers=True,
                     steps=True, json_flag=True, settings=True):
        s = _command(sub, name, summary, details, examples)
        s.add_argument("scenario", help="scenario YAML file (e.g. scenarios/battle_lines_2013.yaml)")
        if seed:
            s.add_argument("--seed", type=seed_int, help="override the scenario's seed")
        if consumers:
            s.add_argument("--consumers", type=positive_int, help="override consumers.count (agents)")
        if steps:
            s.add_argument("--steps", type=positive_int, help="override calendar.steps")
        if settings:
            s.add_argument("--set", action="append", type=set_value, metavar="PATH=VALUE",
                           help="set a scenario field by its dotted path, as sweeps do (repeatable): "
                                "--set behaviour.beta_social=2.5 --set retailers.JD.sso_share.weibo=0.1")
        if json_flag:
            s.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
        s.add_argument("--results", default="results", help="results root (calibration cache, default outputs); default: results")
        return s

    r = scenario_cmd(
        "run", "Run one simulation and show each retailer's GMV share at the first and last week.",
        "Fits attractiveness first if the scenario asks for it (cached under results/calibration/).\n"
        "Writes results/<scenario>/: timeseries.csv and .parquet (one row per retailer and week),\n"
        "flows.csv and .parquet (who switched where), summary.json and shares.png.",
        ["marketsim run scenarios/battle_lines_2013.yaml",
         "marketsim run scenarios/tiny.yaml --consumers 1000 --steps 10 --json"])
    r.add_argument("--out", help="output folder (default: results/<scenario-name>/)")
    scenario_cmd(
        "validate", "Check a scenario file and print the resolved scenario, itself a valid scenario file.",
        "Every problem is one line: file:line: field: what is wrong; what is allowed (exit code 2).\n"
        "Otherwise prints the scenario with defaults filled in and base files merged, with comments\n"
        "saying which file sets each block, retailer and event, every uncertain parameter, and each\n"
        "promotion, friction, migration cost and social boost as the change it makes to a typical\n"
        "shopper's probability of choosing the retailer. Writes nothing.",
        ["marketsim validate scenarios/jd_drops_weibo_login.yaml",
         "marketsim validate scenarios/battle_lines_2013.yaml > resolved.yaml"], json_flag=False)
    sc = _command(
        sub, "schema", "Print the JSON Schema of scenario or sweep files (for editors), or the field reference.",
        "Prints the JSON Schema (draft 2020-12) generated from the format's definitions\n"
        "(marketsim/schema.py), the same the validator uses; `reference` prints the field reference\n"
        "of docs/scenarios.md. --write (from the repository root) writes schema/scenario.schema.json,\n"
        "schema/sweep.schema.json and the reference in docs/scenarios.md.",
        ["marketsim schema > scenario.schema.json", "marketsim schema sweep",
         "marketsim schema --write      # after editing marketsim/schema.py"])
    sc.add_argument("kind", nargs="?", choices=("scenario", "sweep", "reference"), default="scenario",
                    help="which: scenario (default), sweep, or reference (markdown)")
    sc.add_argument("--write", action="store_true", help="write the published files under --root instead of printing")
    sc.add_argument("--root", default=".", help="repository root for --write (default: the current folder)")
    c = scenario_cmd(
        "calibrate", "Fit attractiveness, trends and source offsets to the observed share series and show the fit.",
        "Uses every observation that ends on or before the cut-off (the scenario's fit_until, --until,\n"
        "or the first event's date). Shows per observation the observed and simulated share and the\n"
        "residual, the fitted parameters, and the residual degrees of freedom. Writes the fit to\n"
        "results/calibration/ (reused by run, project and sweep) and results/<scenario>/fit.png.",
        ["marketsim calibrate scenarios/baseline_2013q2.yaml",
         "marketsim calibrate scenarios/baseline_2013q2.yaml --until 2013-01-01 --json",
         "marketsim calibrate scenarios/baseline_2013q2.yaml --set behaviour.beta_social=0.5"], steps=False)
    c.add_argument("--until", type=iso_date, help="fit cut-off date YYYY-MM-DD (default: the scenario's fit_until)")
    c.add_argument("--tolerance", type=positive_float, metavar="PP",
                   help="solver accuracy in percentage points (default 0.2)")

    pr = scenario_cmd(
        "project", "Replicated projection against the counterfactual baseline, with 95% intervals and a report.",
        "Runs R replicates of the scenario and of the same market without its events (or without\n"
        "--baseline-without EVENT ...) on the same seeds, and shows each retailer's share shift.\n"
        "Writes results/<scenario>/projection/: replicates.parquet, projection.json, fan.png,\n"
        "shift.png, flows.png and report.md.",
        ["marketsim project scenarios/battle_lines_2013.yaml",
         "marketsim project scenarios/battle_lines_2013.yaml \\\n      --baseline-without jd_drops_weibo"])
    pr.add_argument("--replicates", type=positive_int, default=20, help="replicates R (default 20)")
    pr.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count)")
    pr.add_argument("--baseline-without", nargs="+", metavar="EVENT", help="event ids removed in the baseline (default: all events)")
    pr.add_argument("--out", help="output folder (default: results/<scenario-name>/projection/)")
    pr.add_argument("--independent-baseline", action="store_true",
                    help="run the baseline on independent seeds (to measure what common random numbers save)")

    v = scenario_cmd(
        "viz", "Serve the live browser visualization (needs the 'viz' extra).",
        "Serves a page with the market's consumers, their ties and each retailer's share, step by step,\n"
        "with sliders for the key assumptions. Writes nothing; Ctrl-C stops the server.",
        ["marketsim viz scenarios/battle_lines_2013.yaml   # then http://127.0.0.1:8765/"],
        steps=False, json_flag=False, seed=False)
    v.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    v.add_argument("--port", type=positive_int, default=8765, help="port (default 8765)")

    sw = _command(
        sub, "sweep", "Run a parameter sweep (local processes or a Dask cluster).",
        "Runs the base scenario of a sweep file (schema marketsim-sweep/v1) at every point of its design\n"
        "(grid, lhs, sobol or morris), with replicates. Writes results/<sweep-name>/: manifest.json and\n"
        "part-*.parquet, stored as runs finish; re-running resumes where a killed sweep stopped.\n"
        "Then `marketsim analyze` the folder. File format: docs/sweeps.md.",
        ["marketsim sweep scenarios/sweep_weibo_login.yaml",
         "marketsim sweep scenarios/sweep_weibo_login.yaml --workers 4 --out results/w4",
         "marketsim sweep scenarios/sweep_weibo_login.yaml \\\n      --scheduler tcp://10.0.0.5:8786"])
    sw.add_argument("sweep", help="sweep YAML file (e.g. scenarios/sweep_weibo_login.yaml)")
    sw.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count)")
    sw.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: local processes)")
    sw.add_argument("--resume", action="store_true", help="skip runs already stored (re-running does this too)")
    sw.add_argument("--out", help="output folder (default: results/<sweep-name>/)")

    an = _command(
        sub, "analyze", "Sensitivity and effect sizes of a finished sweep: which assumption matters, and by how much.",
        "Shows per output and parameter the Sobol indices (or Morris mu*, or per-point intervals for\n"
        "grid and lhs designs) and the main effect: the output's range over the parameter's range.\n"
        "Writes into the results folder: analysis.json, sensitivity.png (sobol, morris), effects.png\n"
        "(one panel per parameter) and response.png.",
        ["marketsim analyze results/sweep_weibo_login",
         "marketsim analyze results/sweep_weibo_login --json > analysis.json"])
    an.add_argument("path", help="sweep results folder, e.g. results/sweep_weibo_login")
    an.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
    return p


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler = _resolve(COMMANDS[args.command])
        return int(handler(args) or 0)
    except UserError as e:
        print(f"marketsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("marketsim: interrupted; finished result files are intact, nothing half-written was kept", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        extra = {"solara": "viz", "dask": "distributed", "distributed": "distributed"}.get((e.name or "").split(".")[0])
        if extra:
            print(f"marketsim: error: {args.command} needs the '{extra}' extra: pip install -e '.[{extra}]'", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
