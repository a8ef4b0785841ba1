"""The ``marketsim`` command line: the command registry, the parser and the error mapping.

Every user error prints one line to stderr (``marketsim: error: file:line: field: problem``) and exits
with code 2, without a traceback. Ctrl-C exits with 130 and leaves no half-written result file.
Each command lives in its own module of this package (``marketsim.cli.run``, ``.project``, ...: parse, call a
workflow, render) and is imported only when used, so ``marketsim run`` never loads Solara or Dask.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import textwrap
from collections.abc import Callable

from marketsim import __version__
from marketsim.cli.args import (
    BACKTEST_REPLICATES,
    FIT_DRAWS,
    executor_args,
    finite_float,
    fit_cache,
    iso_date,
    positive_float,
    positive_int,
    scenario_file,
    seed_int,
    set_value,
)
from marketsim.errors import UserError
from marketsim.experiments.defaults import DEFAULT_DRAWS, DEFAULT_REPLICATES, DEFAULT_REPLICATES_WITH_DRAWS

# --------------------------------------------------------------------------- the parser


#: command -> "module:function" taking the parsed arguments and returning an exit code (imported lazily).
COMMANDS: dict[str, str] = {
    "run": "marketsim.cli.run:cmd_run",
    "validate": "marketsim.cli.validate:cmd_validate",
    "schema": "marketsim.cli.schema:cmd_schema",
    "calibrate": "marketsim.cli.calibrate:cmd_calibrate",
    "project": "marketsim.cli.project:cmd_project",
    "fit": "marketsim.cli.fit:cmd_fit",
    "backtest": "marketsim.cli.backtest:cmd_backtest",
    "viz": "marketsim.cli.viz:cmd_viz",
    "sweep": "marketsim.cli.sweep:cmd_sweep",
    "analyze": "marketsim.cli.analyze:cmd_analyze",
    "discover": "marketsim.cli.discover:cmd_discover",
    "scenarios": "marketsim.cli.scenarios:cmd_scenarios",
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
                paras.append(
                    textwrap.fill(" ".join(para.split()), width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(paras)


def _command(sub, name: str, summary: str, details: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does (``summary``), what it writes (``details``) and how to call
    it (``examples``). argparse %-formats the one-line ``help`` (the command list), so a literal % is escaped."""
    return sub.add_parser(
        name,
        help=summary.replace("%", "%%"),
        description=f"{summary}\n\n{details}",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=_HelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="marketsim",
        formatter_class=_HelpFormatter,
        description="Agent-based simulator of competition between online retailers: consumers choose by "
        "price, habit, login friction and what their friends bought; events (a retailer "
        "dropping a login, an equity stake) move the shares.",
        epilog="examples:\n"
        "  marketsim run battle_lines_2013\n"
        "  marketsim project battle_lines_2013\n"
        "  marketsim COMMAND --help      # what a command does and writes",
    )
    p.add_argument("--version", action="version", version=f"marketsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def scenario_cmd(
        name: str,
        summary: str,
        details: str,
        examples: list[str],
        *,
        seed=True,
        consumers=True,
        steps=True,
        json_flag=True,
        settings=True,
    ):
        s = _command(sub, name, summary, details, examples)
        s.add_argument(
            "scenario",
            type=scenario_file,
            help="scenario YAML file, or the name of a bundled one (e.g. battle_lines_2013; "
            "`marketsim scenarios` lists them)",
        )
        if seed:
            s.add_argument("--seed", type=seed_int, help="override the scenario's seed")
        if consumers:
            s.add_argument("--consumers", type=positive_int, help="override consumers.count (agents)")
        if steps:
            s.add_argument("--steps", type=positive_int, help="override calendar.steps")
        if settings:
            s.add_argument(
                "--set",
                action="append",
                type=set_value,
                metavar="PATH=VALUE",
                help="set a scenario field by its dotted path, as sweeps do (repeatable): "
                "--set behaviour.beta_social=2.5 --set retailers.JD.sso_share.weibo=0.1",
            )
        if json_flag:
            s.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
        s.add_argument(
            "--results", default="results", help="results root (calibration cache, default outputs); default: results"
        )
        return s

    r = scenario_cmd(
        "run",
        "Run one simulation and show each retailer's GMV share at the first and last week.",
        "Fits attractiveness first if the scenario asks for it (cached under results/calibration/).\n"
        "Writes results/<scenario>/: timeseries.csv and .parquet (one row per retailer and week),\n"
        "flows.csv and .parquet (who switched where), summary.json and shares.png. Command-line\n"
        "settings name their own folder (results/tiny--consumers1000-steps10/) and are recorded in\n"
        "summary.json, so a run with other settings never replaces this one.",
        ["marketsim run battle_lines_2013", "marketsim run tiny --consumers 1000 --steps 10 --json"],
    )
    r.add_argument("--out", help="output folder (default: results/<scenario-name>/)")
    scenario_cmd(
        "validate",
        "Check a scenario file and print the resolved scenario, itself a valid scenario file.",
        "Every problem is one line: file:line: field: what is wrong; what is allowed (exit code 2).\n"
        "Otherwise prints the scenario with defaults filled in and base files merged, with comments\n"
        "saying which file sets each block, retailer and event, every uncertain parameter, and each\n"
        "promotion, friction, migration cost and social boost as the change it makes to a typical\n"
        "shopper's probability of choosing the retailer. Writes nothing.",
        ["marketsim validate jd_drops_weibo_login", "marketsim validate battle_lines_2013 > resolved.yaml"],
        json_flag=False,
    )
    sc = _command(
        sub,
        "schema",
        "Print the JSON Schema of scenario or sweep files (for editors), or the field reference.",
        "Prints the JSON Schema (draft 2020-12) generated from the format's definitions\n"
        "(src/marketsim/scenario/schema.py), the same the validator uses; `reference` prints the field reference\n"
        "of docs/scenarios.md. --write (from the repository root) writes schema/scenario.schema.json,\n"
        "schema/sweep.schema.json and the reference in docs/scenarios.md.",
        [
            "marketsim schema > scenario.schema.json",
            "marketsim schema sweep",
            "marketsim schema --write      # after editing src/marketsim/scenario/schema.py",
        ],
    )
    sc.add_argument(
        "kind",
        nargs="?",
        choices=("scenario", "sweep", "reference"),
        default="scenario",
        help="which: scenario (default), sweep, or reference (markdown)",
    )
    sc.add_argument("--write", action="store_true", help="write the published files under --root instead of printing")
    sc.add_argument("--root", default=".", help="repository root for --write (default: the current folder)")
    c = scenario_cmd(
        "calibrate",
        "Fit attractiveness, trends and source offsets to the observed share series and show the fit.",
        "Uses every observation that ends on or before the cut-off (the scenario's fit_until, --until,\n"
        "or the first one-off event's date: recurring effects do not count). Shows per observation the\n"
        "observed and simulated share and the residual, the fitted parameters, and the residual degrees\n"
        "of freedom. Writes the fit to results/calibration/ (reused by run, project and sweep) and\n"
        "results/<scenario>/fit.png.",
        [
            "marketsim calibrate baseline_2013q2",
            "marketsim calibrate baseline_2013q2 --until 2013-01-01 --json",
            "marketsim calibrate tiny --set behaviour.beta_social=0.5",
        ],
        steps=False,
    )
    c.add_argument("--until", type=iso_date, help="fit cut-off date YYYY-MM-DD (default: the scenario's fit_until)")
    c.add_argument(
        "--tolerance", type=positive_float, metavar="PP", help="solver accuracy in percentage points (default 0.2)"
    )

    pr = scenario_cmd(
        "project",
        "Project a scenario against its counterfactual, over the assumptions' ranges, with a report.",
        "Draws the uncertain parameters (ranges and priors in the scenario, or the posterior stored by\n"
        "`marketsim fit`), fits each draw, and runs R replicates of the scenario and of the same market\n"
        "without its events (or without --baseline-without EVENT ...) on the same seeds. Shows each\n"
        "retailer's share shift with a 95% interval that covers the assumptions and the simulation noise,\n"
        "how much of its spread each causes, and which assumptions drive it. --compare projects other\n"
        "options (scenario files) on the same draws and seeds. Writes\n"
        "results/<scenario>/projection-<what was compared>[--<settings>]/: replicates.parquet, projection.json, fan.png,\n"
        "shift.png, flows.png (compare.png) and report.md (every table also as CSV, every chart also as SVG;\n"
        "--export html,xlsx adds report.html and projection.xlsx); results/index.md lists every result.",
        [
            "marketsim project battle_lines_2013",
            "marketsim project battle_lines_2013 \\",
            "    --baseline-without jd_drops_weibo",
            "marketsim project battle_lines_2013 --threshold -0.5 \\",
            "    --compare jd_keeps_weibo_login",
        ],
    )
    pr.add_argument(
        "--draws",
        type=positive_int,
        metavar="K",
        help=f"parameter draws over the uncertain parameters (default {DEFAULT_DRAWS} when the scenario has "
        f"any, else 1)",
    )
    pr.add_argument(
        "--replicates",
        type=positive_int,
        metavar="R",
        help=f"replicates per draw (default {DEFAULT_REPLICATES_WITH_DRAWS} with draws, {DEFAULT_REPLICATES} without)",
    )
    pr.add_argument(
        "--prior", action="store_true", help="draw from the priors even if `marketsim fit` stored a posterior"
    )
    pr.add_argument(
        "--compare",
        nargs="+",
        metavar="VARIANT.yaml",
        help="other options (scenario files) projected on the same draws and seeds, and compared",
    )
    pr.add_argument(
        "--threshold",
        type=finite_float,
        action="append",
        metavar="PP",
        help="also report the probability that a shift is below PP points (repeatable)",
    )
    executor_args(pr)
    pr.add_argument(
        "--baseline-without", nargs="+", metavar="EVENT", help="event ids removed in the baseline (default: all events)"
    )
    pr.add_argument("--out", help="output folder (default: results/<scenario>/projection-<what was compared>/)")
    pr.add_argument(
        "--export",
        metavar="FORMATS",
        help="also write files to send, into the same result folder: html (report.html: one self-contained file, "
        "charts inline), xlsx (projection.xlsx: every table; needs pip install 'marketsim[decide]'), or all "
        "(e.g. --export html,xlsx); does not change the folder's name",
    )
    pr.add_argument(
        "--independent-baseline",
        action="store_true",
        help="run the baseline on independent seeds (to measure what common random numbers save)",
    )
    pr.add_argument(
        "--trend-uncertainty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw every fitted trend within its standard error (each draw adds a normal with the fit's standard "
        f"error, turned about the middle of the retailer's observations; default draws then {DEFAULT_DRAWS} even "
        "without uncertain parameters); default: the scenario's forecast.trend_uncertainty (false unless it says "
        "true: a draw's own standard error can be far too large where its market is near tipping, "
        "docs/model.md section 8); --no-trend-uncertainty holds the fitted trends at their point values",
    )

    f = scenario_cmd(
        "fit",
        "Condition the uncertain parameters on the observations (a posterior for project).",
        "Draws the uncertain parameters from their priors (a Latin hypercube), fits each draw to the\n"
        "observations, and weighs each by how well its fit meets them (approximate Bayesian computation\n"
        "with a Gaussian kernel of each source's observation error, estimated from the central fit's\n"
        "residuals with a stated prior; --sigma fixes it). Shows per parameter the prior and posterior 90%\n"
        "intervals and how much the data narrowed it. Stores the posterior next to the fit cache\n"
        "(results/calibration/), where `marketsim project` finds it, and results/<scenario>/fit/.\n\n"
        "With --ex-post --until DATE (an ex-post evaluation, docs/model.md section 8): the draws are\n"
        "fitted as without it, but weighed also by the held-out observations (holdout: true) that end\n"
        "by DATE: what followed the events. The posterior is stored apart (never used by `marketsim\n"
        "project` of this scenario); another scenario may take a prior from it if its decision is on or\n"
        "after DATE.",
        [
            "marketsim fit battle_lines_2013",
            "marketsim fit battle_lines_2013 --draws 32 --sigma 0.5",
            "marketsim fit validation/china_b2c_2012_2015.yaml --ex-post \\\n"
            "      --until 2014-03-10 --sigma 2 --save posteriors/expost.json",
        ],
        steps=False,
    )
    f.add_argument(
        "--draws", type=positive_int, default=FIT_DRAWS, metavar="K", help=f"prior draws (default {FIT_DRAWS})"
    )
    f.add_argument(
        "--sigma",
        type=positive_float,
        metavar="PP",
        help="override: one observation error for every source, in points of share (default: each source's, "
        "estimated from the central fit's residuals with a stated prior; docs/model.md section 8)",
    )
    f.add_argument(
        "--ex-post",
        action="store_true",
        help="an ex-post evaluation: weigh the draws also by the held-out observations that end by --until",
    )
    f.add_argument(
        "--until", type=iso_date, metavar="DATE", help="with --ex-post: the last day of what followed (YYYY-MM-DD)"
    )
    f.add_argument("--save", metavar="FILE", help="also write the posterior to FILE (for another scenario's prior)")
    executor_args(f)
    b = scenario_cmd(
        "backtest",
        "Fit on the observations before a date and predict the later ones, against naive forecasts.",
        "Fits on the observations that end before --until, projects the rest over the uncertain\n"
        "parameters' draws and replicates (observations marked holdout: true are never fitted and always\n"
        "predicted, whatever their dates), and shows per held-out observation the observed share, the\n"
        "prediction with its 90% interval, and two naive forecasts (the last value held flat; a line\n"
        "through the source's earlier values); then the mean absolute errors and the coverage of the\n"
        "90% intervals. Writes results/<scenario>/backtest-<date>/: backtest.json, backtest.png.\n\n"
        "With --rolling instead of --until: a rolling-origin back-test. It fits at every cut-off in turn\n"
        "(the day after each observation's end, where the earlier data identify a fit), predicts every\n"
        "observation after it, and scores the predictions by horizon (quarters ahead) against persistence\n"
        "and drift, with the coverage of the 50% and 90% intervals. Writes\n"
        "results/<scenario>/backtest-rolling/: backtest.json.",
        [
            "marketsim backtest baseline_2013q2 --until 2013-01-01",
            "marketsim backtest baseline_2013q2 --until 2013-01-01 --json",
            "marketsim backtest baseline_2013q2 --rolling --draws 4",
        ],
        steps=False,
    )
    when = b.add_mutually_exclusive_group(required=True)
    when.add_argument("--until", type=iso_date, help="fit on observations that end before this date")
    when.add_argument(
        "--rolling",
        action="store_true",
        help="fit at every cut-off in turn (each observation's end + 1 day) and score the predictions by horizon",
    )
    b.add_argument("--draws", type=positive_int, metavar="K", help="parameter draws (default 16 when uncertain)")
    b.add_argument(
        "--replicates",
        type=positive_int,
        default=BACKTEST_REPLICATES,
        metavar="R",
        help=f"replicates per draw (default {BACKTEST_REPLICATES})",
    )
    b.add_argument(
        "--sigma",
        type=positive_float,
        metavar="PP",
        help="override: one observation error for every source, in points, in the predictive intervals "
        "(default: each source's, estimated from each fit's residuals with a stated prior; docs/model.md section 8)",
    )
    executor_args(b)

    v = scenario_cmd(
        "viz",
        "Serve the live browser visualization (needs the 'viz' extra).",
        "Serves a page with the market's consumers, their ties and each retailer's share, step by step,\n"
        "with sliders for the key assumptions. Writes nothing; Ctrl-C stops the server.",
        ["marketsim viz battle_lines_2013   # then http://127.0.0.1:8765/"],
        steps=False,
        json_flag=False,
        seed=False,
    )
    v.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: loopback only; any other needs the token in the printed address)",
    )
    v.add_argument("--port", type=positive_int, default=8765, help="port (default 8765)")
    v.add_argument(
        "--max-sessions",
        type=positive_int,
        default=4,
        metavar="N",
        help="browser tabs served at once, each with its own market in memory (default 4)",
    )

    sw = _command(
        sub,
        "sweep",
        "Run a parameter sweep (local processes or a Dask cluster).",
        "Runs the base scenario of a sweep file (schema marketsim-sweep/v1) at every point of its design\n"
        "(grid, lhs, sobol or morris), with replicates. Writes results/<sweep-name>/: manifest.json and\n"
        "part-*.parquet, stored as runs finish; re-running resumes where a killed sweep stopped.\n"
        "Then `marketsim analyze` the folder. File format: docs/sweeps.md.",
        [
            "marketsim sweep sweep_weibo_login",
            "marketsim sweep sweep_weibo_login --workers 4 --out results/w4",
            "marketsim sweep sweep_weibo_login \\\n      --scheduler tcp://10.0.0.5:8786",
        ],
    )
    sw.add_argument(
        "sweep", type=scenario_file, help="sweep YAML file, or the name of a bundled one (e.g. sweep_weibo_login)"
    )
    sw.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count)")
    sw.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: local processes)")
    sw.add_argument("--resume", action="store_true", help="skip runs already stored (re-running does this too)")
    sw.add_argument("--out", help="output folder (default: results/<sweep-name>/)")

    an = _command(
        sub,
        "analyze",
        "Sensitivity and effect sizes of a finished sweep: which assumption matters, and by how much.",
        "Shows per output and parameter the Sobol indices (or Morris mu*, or per-point intervals for\n"
        "grid and lhs designs) and the main effect: the output's range over the parameter's range.\n"
        "Writes into the results folder: analysis.json, sensitivity.png (sobol, morris), effects.png\n"
        "(one panel per parameter) and response.png.",
        [
            "marketsim analyze results/sweep_weibo_login",
            "marketsim analyze results/sweep_weibo_login --json > analysis.json",
        ],
    )
    an.add_argument("path", help="sweep results folder, e.g. results/sweep_weibo_login")
    an.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
    di = _command(
        sub,
        "discover",
        "What would flip it: the boxes of assumptions under which an option loses (or gains) more than a threshold.",
        "Scenario discovery (PRIM, Friedman & Fisher 1999; needs the 'decide' extra) over a stored projection's\n"
        "draws (a draw's outcome: its mean shift of the retailer's GMV share over its replicates) or a stored\n"
        "sweep's design points (an output's mean over the replicates). A threshold below 0 asks where the\n"
        "outcome falls below it (loses more than), 0 or above where it rises above it. Shows each box's\n"
        "assumptions in words with its coverage (share of the cases inside it) and density (share of cases\n"
        "among its draws). Writes nothing. Method and settings: docs/sweeps.md.",
        [
            "marketsim discover results/battle_lines_2013/projection-vs-no-events \\",
            "    --retailer JD --threshold -0.3",
            "marketsim discover results/sweep_weibo_login --threshold -0.3 --json \\",
            "    --retailer JD",
        ],
    )
    di.add_argument(
        "result", metavar="RESULT", help="a projection folder (written by `marketsim project`) or a sweep folder"
    )
    di.add_argument(
        "--retailer", metavar="NAME", help="whose GMV share shift to search (projection; sweep: picks the output)"
    )
    di.add_argument(
        "--threshold",
        type=finite_float,
        required=True,
        metavar="PP",
        help="in points for a share shift (an output's display unit for a sweep): below 0, the cases lose more "
        "than that; 0 or above, they gain more than that",
    )
    di.add_argument(
        "--option", metavar="NAME", help="projection: which option (default: the scenario, the first option)"
    )
    di.add_argument(
        "--output",
        metavar="OUTPUT",
        help="sweep: which output, e.g. shift.gmv_share.JD (default: shift.gmv_share.<retailer>)",
    )
    di.add_argument(
        "--boxes", type=positive_int, default=1, metavar="N", help="up to N boxes, each over the cases left (default 1)"
    )
    di.add_argument("--json", action="store_true", help="print JSON to stdout instead of the table")
    sc = _command(
        sub,
        "scenarios",
        "The scenarios bundled with marketsim: list them, or copy them into a folder to edit.",
        "list (the default) prints the bundled scenario and sweep files. copy DIR copies them all into DIR\n"
        "(made if missing; a file already there is never overwritten); their base: references are relative,\n"
        "so the copies keep working together. A bundled name also works wherever a scenario file goes.",
        ["marketsim scenarios", "marketsim scenarios copy my_scenarios"],
    )
    sc.add_argument("action", nargs="?", choices=("list", "copy"), default="list", help="list (default) or copy")
    sc.add_argument("dir", nargs="?", help="the folder to copy into (copy)")
    return p


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


#: Commands that write under --results (the calibration cache) or --out: their locations are checked first.
WRITERS = ("run", "calibrate", "project", "sweep", "fit", "backtest")


def preflight(args: argparse.Namespace) -> None:
    """Check the output locations named on the command line before any work (one line, exit 2, if one is a
    file, under a file, unwritable or full), and --export's formats. Each command checks its own default folder
    itself."""
    if args.command not in WRITERS:
        return
    import os

    from marketsim.fit.cache import CACHE_ENV
    from marketsim.io.store import check_output_dir

    if getattr(args, "results", None) and not os.environ.get(CACHE_ENV):
        # a shared cache ($MARKETSIM_FIT_CACHE) may be read-only: it is only read unless a fit is missing, and
        # then fitcache says so naming it (not --results, which does not hold it)
        check_output_dir(fit_cache(args), option="--results")
    if getattr(args, "out", None):
        check_output_dir(args.out)
    if isinstance(getattr(args, "export", None), str):  # --export html,xlsx: formats known, openpyxl there
        from marketsim.report.export import parse_formats

        args.export = parse_formats(args.export)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help into a closed pipe
        return _closed_pipe()
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
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as e:
        from marketsim.io.store import disk_problem

        problem = disk_problem(e)
        if problem is None:
            raise
        print(
            f"marketsim: error: {problem} writing {e.filename or 'an output file'}; free space or choose another "
            f"--out/--results",
            file=sys.stderr,
        )
        return 2
    except ModuleNotFoundError as e:
        extra = {"solara": "viz", "dask": "distributed", "distributed": "distributed"}.get((e.name or "").split(".")[0])
        if extra:
            print(
                f"marketsim: error: {args.command} needs the '{extra}' extra: pip install -e '.[{extra}]'",
                file=sys.stderr,
            )
            return 2
        raise


#: Exit code when the reader of the output went away (``marketsim validate X | head -1``): 128 + SIGPIPE, what
#: the shell reports for a Unix tool stopped by that signal.
EXIT_CLOSED_PIPE = 141


def _closed_pipe() -> int:
    """The reader of standard output closed it: stop quietly, as Unix tools do (no message, no traceback).
    What is still buffered for it is discarded: standard output is pointed at /dev/null, so that Python's
    own flush at exit does not fail again ("Exception ignored ... BrokenPipeError")."""
    import os

    with contextlib.suppress(Exception):  # not a real file descriptor (e.g. captured in tests): nothing to redirect
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return EXIT_CLOSED_PIPE


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
    from marketsim.errors import Interrupted

    if isinstance(e, Interrupted) and str(e):
        return str(e)
    done = sys.modules.get("marketsim.io.store")
    sets = done.committed_sets() if done is not None else []
    if sets:
        return f"interrupted after {', '.join(map(str, sets))} was written completely; nothing else was changed"
    return "interrupted; no result set was changed"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
