"""The ``marketsim`` command line.

Every user error prints one line to stderr (``marketsim: error: file:line: field: problem``) and exits
with code 2, without a traceback. Ctrl-C exits with 130 and leaves no half-written result file.
Subcommands other than ``run``, ``validate`` and ``calibrate`` live in the modules of their concept
and are imported only when used, so ``marketsim run`` never loads Solara or Dask.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
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


def seed_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in 0 .. 2^63-1, got {v}")
    return v


def load(args: argparse.Namespace, *, steps: bool = True):
    """The scenario named on the command line with --seed / --consumers (and --steps unless ``steps=False``:
    calibration uses the scenario's own calendar, so a shorter run reuses the same fit)."""
    from .scenario import load_scenario

    sc = load_scenario(args.scenario)
    return sc.with_overrides(seed=getattr(args, "seed", None), consumers=getattr(args, "consumers", None),
                             steps=getattr(args, "steps", None) if steps else None)


def results_root(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "results", None) or "results")


def fitted_alpha(scenario, args: argparse.Namespace, quiet: bool = False):
    """Attractiveness for ``scenario``: given, or calibrated (cached under results/calibration/)."""
    import numpy as np

    from .engine import initial_alpha
    from .store import cached_calibration

    if not any(r.calibrate for r in scenario.retailers):
        return initial_alpha(scenario), None
    with bar("calibrating", None, "it", enabled=not quiet) as update:
        cal, cached = cached_calibration(scenario, results_root(args) / "calibration",
                                         on_iter=lambda it, worst: update(completed=it))
    if not quiet:
        stderr.print(f"calibration {'(cached) ' if cached else ''}in {cal.iterations} iterations, "
                     f"max residual {max(map(abs, cal.residual_pp.values()), default=0):.3f} pp")
    return np.array(cal.alpha_vector(scenario)), cal


# --------------------------------------------------------------------------- run / validate / calibrate


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    sc = load(args)
    print(f"# {args.scenario}: valid ({sc.name}, schema marketsim/v1, digest {sc.digest()[:12]})")
    print(yaml.safe_dump(sc.to_dict(), sort_keys=False, allow_unicode=True), end="")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.table import Table

    sc = load(args)
    _, cal = fitted_alpha(sc, args, quiet=args.json)
    if cal is None:
        raise UserError(f"{args.scenario}: no retailer has attractiveness 'calibrate'; nothing to fit")
    if args.json:
        print(json.dumps(cal.to_dict(), indent=2))
        return 0
    t = Table(title=f"{sc.name}: calibration over {cal.window} steps (seed {cal.seed}, {cal.consumers:,} consumers)")
    for col in ("retailer", "target share", "simulated share", "residual (pp)", "attractiveness"):
        t.add_column(col, justify="right" if col != "retailer" else "left")
    for r in sc.retailers:
        res = cal.residual_pp.get(r.name)
        t.add_row(r.name, f"{r.target_share:.3f}", f"{cal.shares[r.name]:.3f}",
                  "fixed" if res is None else f"{res:+.3f}", f"{cal.alpha[r.name]:.4f}")
    from rich.console import Console

    con = Console()
    con.print(t)
    con.print(f"iterations: {cal.iterations}; conversion residual {cal.conversion_residual_pp:+.3f} pp; "
              f"tolerance {cal.tol_pp} pp; cache key {cal.key}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import plots, store
    from .engine import simulate

    sc = load(args)
    out = Path(args.out) if args.out else results_root(args) / sc.name
    store.check_output_dir(out, kind="run")  # before any work: a bad --out costs nothing
    alpha, cal = fitted_alpha(load(args, steps=False), args, quiet=args.json)
    steps = sc.calendar.steps
    with bar(f"simulating {sc.name}", steps, "steps", enabled=True) as update:
        res = simulate(sc, alpha, on_step=lambda done, total: update(completed=done))
    ts, flows = res.timeseries(), res.flows()
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
        "attractiveness": dict(zip(sc.retailer_names, map(float, alpha))),
        "calibration": None if cal is None else {"iterations": cal.iterations, "residual_pp": cal.residual_pp, "key": cal.key},
        "events": [{"id": e.id, "step": e.step, "date": e.date.isoformat(), "type": e.action.type} for e in sc.events],
        "files": {"timeseries": ["timeseries.csv", "timeseries.parquet"], "flows": ["flows.csv", "flows.parquet"], "plot": "shares.png"},
    }
    with store.result_set(out, "run", writer="marketsim run") as new:  # all files appear together, or none
        store.write_table(ts, new / "timeseries")
        store.write_table(flows, new / "flows")
        fig = plots.shares_figure(sc, ts)
        store.save_figure(fig, new / "shares.png")
        plots.close(fig)
        store.write_json(new / "summary.json", summary)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.table import Table

    from .progress import console

    t = Table(title=f"{sc.name}: GMV share, {summary['first_date']} -> {summary['last_date']} "
                    f"(seed {sc.seed}, {sc.consumers.count:,} consumers)")
    for col in ("retailer", f"share {summary['first_date']}", f"share {summary['last_date']}", "change (pp)"):
        t.add_column(col, justify="left" if col == "retailer" else "right")
    for n in sc.retailer_names:
        t.add_row(n, f"{first[n] * 100:.1f}%", f"{last[n] * 100:.1f}%", f"{(last[n] - first[n]) * 100:+.1f}")
    con = console()  # paths are user text: never rich markup
    con.print(t)
    con.print(f"wrote {out}/: timeseries.csv, timeseries.parquet, flows.csv, flows.parquet, summary.json, shares.png")
    return 0


# --------------------------------------------------------------------------- the parser


#: command -> "module:function" taking the parsed arguments and returning an exit code (imported lazily).
COMMANDS: dict[str, str] = {
    "run": "marketsim.cli:cmd_run",
    "validate": "marketsim.cli:cmd_validate",
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="marketsim", description="Agent-based simulator of competition between online retailers.")
    p.add_argument("--version", action="version", version=f"marketsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def scenario_cmd(name: str, help: str, *, seed=True, consumers=True, steps=True, json_flag=True):
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("scenario", help="scenario YAML file (e.g. scenarios/battle_lines_2013.yaml)")
        if seed:
            s.add_argument("--seed", type=seed_int, help="override the scenario's seed")
        if consumers:
            s.add_argument("--consumers", type=positive_int, help="override consumers.count (agents)")
        if steps:
            s.add_argument("--steps", type=positive_int, help="override calendar.steps")
        if json_flag:
            s.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
        s.add_argument("--results", default="results", help="results root (calibration cache, default outputs); default: results")
        return s

    r = scenario_cmd("run", "Run one simulation: table, time series (CSV, Parquet), summary.json, shares.png.")
    r.add_argument("--out", help="output folder (default: results/<scenario-name>/)")
    scenario_cmd("validate", "Check a scenario file and print the resolved scenario.", json_flag=False)
    scenario_cmd("calibrate", "Fit attractiveness to the target shares and show the fit.", steps=False)

    pr = scenario_cmd("project", "Replicated projection against the counterfactual baseline, with 95% intervals and a report.")
    pr.add_argument("--replicates", type=positive_int, default=20, help="replicates R (default 20)")
    pr.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count)")
    pr.add_argument("--baseline-without", nargs="+", metavar="EVENT", help="event ids removed in the baseline (default: all events)")
    pr.add_argument("--out", help="output folder (default: results/<scenario-name>/projection/)")
    pr.add_argument("--independent-baseline", action="store_true",
                    help="run the baseline on independent seeds (to measure what common random numbers save)")

    v = scenario_cmd("viz", "Serve the live browser visualization (needs the 'viz' extra).", steps=False, json_flag=False, seed=False)
    v.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    v.add_argument("--port", type=positive_int, default=8765, help="port (default 8765)")

    sw = sub.add_parser("sweep", help="Run a parameter sweep (local processes or a Dask cluster).")
    sw.add_argument("sweep", help="sweep YAML file (e.g. scenarios/sweep_weibo_login.yaml)")
    sw.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count)")
    sw.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: local processes)")
    sw.add_argument("--resume", action="store_true", help="skip runs already stored (re-running does this too)")
    sw.add_argument("--out", help="output folder (default: results/<sweep-name>/)")

    an = sub.add_parser("analyze", help="Sensitivity indices or per-point intervals of a finished sweep.")
    an.add_argument("path", help="sweep results folder, e.g. results/sweep_weibo_login")
    an.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
    return p


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


#: Commands that write under --results (the calibration cache) or --out: their locations are checked first.
WRITERS = ("run", "calibrate", "project", "sweep")


def preflight(args: argparse.Namespace) -> None:
    """Check the output locations named on the command line before any work (one line, exit 2, if one is a
    file, under a file, unwritable or full). Each command checks its own default folder itself."""
    if args.command not in WRITERS:
        return
    from .store import check_output_dir

    if getattr(args, "results", None):
        check_output_dir(Path(args.results) / "calibration", option="--results")
    if getattr(args, "out", None):
        check_output_dir(args.out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preflight(args)
        handler = _resolve(COMMANDS[args.command])
        return int(handler(args) or 0)
    except UserError as e:
        print(f"marketsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"marketsim: {_interrupted(e)}", file=sys.stderr)
        if argv is None:  # the marketsim process itself (not a call from Python): stop now, see _exit_now
            _exit_now(130)
        return 130
    except OSError as e:
        from .store import disk_problem

        problem = disk_problem(e)
        if problem is None:
            raise
        print(f"marketsim: error: {problem} writing {e.filename or 'an output file'}; free space or choose another "
              f"--out/--results", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = {"solara": "viz", "dask": "distributed", "distributed": "distributed"}.get((e.name or "").split(".")[0])
        if extra:
            print(f"marketsim: error: {args.command} needs the '{extra}' extra: pip install -e '.[{extra}]'", file=sys.stderr)
            return 2
        raise


def _exit_now(code: int) -> None:
    """Exit at once after Ctrl-C: what was kept is on disk (every file and result set is atomic) and was
    said, worker processes are already killed; the interpreter's own teardown (a quarter of a second of
    module clean-up, during which another Ctrl-C would kill the process by signal) is skipped."""
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _interrupted(e: KeyboardInterrupt) -> str:
    """What Ctrl-C left: the command's own account (errors.Interrupted), else which result sets were swapped
    in completely before it (store.committed_sets), else nothing changed."""
    from .errors import Interrupted

    if isinstance(e, Interrupted) and str(e):
        return str(e)
    done = sys.modules.get("marketsim.store")
    sets = done.committed_sets() if done is not None else []
    if sets:
        return f"interrupted after {', '.join(map(str, sets))} was written completely; nothing else was changed"
    return "interrupted; no result set was changed"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
