"""Argument types and helpers shared by the commands: numbers, dates, seeds, ``--set``, the scenario with its
command-line settings, the settings a result records, where a command writes, the fit cache.
"""

from __future__ import annotations

import argparse
import concurrent.futures
from pathlib import Path

from marketsim.errors import UserError
from marketsim.report.progress import bar, stderr
from marketsim.scenario import bundled


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


def finite_float(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused: they would print as a probability or an interval)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
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


def scenario_file(text: str) -> str:
    """A scenario (or sweep) file argument: the path as given, or the bundled file a bare name such as
    ``battle_lines_2013`` names when no file of that name is here (:func:`marketsim.scenario.bundled.resolve`)."""
    return bundled.resolve(text)


def set_value(text: str) -> tuple[str, str]:
    """``PATH=VALUE`` of --set (the value is read as YAML: 2.5, 2013-09-25, true, [1, 2])."""
    path, eq, value = text.partition("=")
    if not eq or not path.strip():
        raise argparse.ArgumentTypeError(f"expected PATH=VALUE (e.g. behaviour.beta_social=2.5), got {text!r}")
    return path.strip(), value.strip()


def load(args: argparse.Namespace, *, steps: bool = True, memory: bool = True):
    """The scenario named on the command line with its --set values and --seed / --consumers (and --steps
    unless ``steps=False``: calibration uses the scenario's own calendar, so a shorter run reuses the same fit),
    checked to fit in memory unless ``memory=False`` (``validate`` checks the file, not this machine)."""
    from marketsim.scenario.core import load_scenario, with_settings

    sc = load_scenario(args.scenario)
    if getattr(args, "set", None):
        sc = with_settings(sc, args.set)
    sc = sc.with_overrides(
        seed=getattr(args, "seed", None),
        consumers=getattr(args, "consumers", None),
        steps=getattr(args, "steps", None) if steps else None,
    )
    if memory:  # a market that cannot fit in this machine's memory is refused before any fit or allocation
        from marketsim.engine.population import check_memory

        check_memory(sc)
    return sc


def results_root(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "results", None) or "results")


#: Per command: the options recorded as its ``settings`` (those that change what it writes), and defaults that
#: argparse fills in (a value equal to one is not a setting the user gave).
SETTINGS = {
    "run": ("set", "seed", "consumers", "steps"),
    "calibrate": ("set", "seed", "consumers", "until", "tolerance"),
    "project": (
        "set",
        "seed",
        "consumers",
        "steps",
        "draws",
        "replicates",
        "prior",
        "baseline_without",
        "compare",
        "threshold",
        "independent_baseline",
        "trend_uncertainty",
    ),
    "fit": ("set", "seed", "consumers", "draws", "sigma", "ex_post", "until"),
    "backtest": ("set", "seed", "consumers", "until", "rolling", "draws", "replicates", "sigma"),
}


FIT_DRAWS, BACKTEST_REPLICATES = 64, 2


ARG_DEFAULTS = {
    "fit": {"draws": FIT_DRAWS},
    "backtest": {"replicates": BACKTEST_REPLICATES},
}


def settings_of(args: argparse.Namespace) -> dict:
    """What produced a result, recorded in its JSON as ``settings``: the scenario file and the sha256 of its
    resolved content (before command-line settings), then every option of :data:`SETTINGS` the user gave
    (``set`` as {path: value as typed}; dates as YYYY-MM-DD). Folder names and --out checks use it."""
    from marketsim.scenario.core import load_scenario

    out: dict = {"scenario_file": args.scenario, "scenario_file_hash": load_scenario(args.scenario).digest()}
    defaults = ARG_DEFAULTS.get(args.command, {})
    for k in SETTINGS[args.command]:
        v = getattr(args, k, None)
        if k == "trend_uncertainty":  # off by default: only turning it on is a setting
            if v is True:
                out[k] = True
            continue
        if v is None or v is False or (k in defaults and v == defaults[k]):
            continue
        if k == "set":
            v = {path: value for path, value in v}
        elif k == "until":
            v = v.isoformat()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def result_folder(
    args: argparse.Namespace, settings: dict, scenario_name: str, leaf: str | None = None, named: tuple[str, ...] = ()
) -> Path:
    """Where a command writes: --out, else <results>/<scenario>[/<leaf>] with the settings' suffix on the last
    part (:mod:`marketsim.io.names`: plain names as written, other text as a slug and digest; never outside
    <results>)."""
    from marketsim.io import names

    if getattr(args, "out", None):
        return Path(args.out)
    root = results_root(args)
    suffix = names.settings_suffix(settings, named)
    folder = names.scenario_folder(scenario_name)
    out = root / (folder + suffix) if leaf is None else root / folder / (leaf + suffix)
    return names.inside(root, out)


def check_settings(out: Path, result_file: str, settings: dict) -> None:
    """Refuse (one line) to replace a result in ``out`` that was made with other settings (read from its
    ``result_file``); a result from before results recorded their settings is replaced as before."""
    from marketsim.io import names, store

    if store.result_kind(out) is None:  # nothing marketsim provably wrote there: no settings to keep apart
        return
    try:
        prev = store.read_result(out, [result_file]).json(result_file).get("settings")
    except (UserError, OSError, ValueError, AttributeError):
        return
    if not isinstance(prev, dict):
        return
    diff = names.differences(prev, settings)
    if diff:
        raise UserError(
            f"{out}: holds a result made with other settings ({'; '.join(diff)}); choose another --out "
            f"or remove the folder"
        )


def settings_caption(settings: dict) -> str:
    """``"; settings: --set ..., --steps 10"`` for a table caption or chart, or "" with no settings."""
    from marketsim.io.names import describe

    d = describe(settings)
    return f"; settings: {d}" if d else ""


def note_settings(fig, settings: dict) -> None:
    """Write the command-line settings (if any) in small type at the bottom right of a chart."""
    from marketsim.report.projection import note_settings as note

    note(fig, settings)


def store_result(
    args: argparse.Namespace,
    out: Path,
    kind: str,
    command: str,
    doc_name: str,
    doc: dict,
    *,
    figures: dict | None = None,
    write=None,
    printed: dict | None = None,
) -> bool:
    """The tail every command that stores a result shares: one result set in ``out`` (all its files appear
    together, or none) holding what ``write(folder)`` writes, each figure of ``figures`` (file name -> a function
    drawing it) with the command-line settings noted on it, and the JSON document ``doc`` as ``doc_name``; then
    results/index.md is brought up to date; then, with ``--json``, ``doc`` (or ``printed``, when the document
    printed is not the one stored) goes to stdout. Returns True when it printed the JSON (the command has nothing
    more to show)."""
    from marketsim.figures import plots
    from marketsim.io import resultsindex, store

    with store.result_set(out, kind, writer=f"marketsim {command}") as new:
        if write is not None:
            write(new)
        for name, draw in (figures or {}).items():
            fig = draw()
            note_settings(fig, doc.get("settings") or {})
            store.save_figure(fig, new / name)
            plots.close(fig)
        store.write_json(new / doc_name, doc)
    resultsindex.update(results_root(args))  # results/index.md lists every result
    if getattr(args, "json", False):
        print(store.dumps(doc if printed is None else printed))
        return True
    return False


def fit_cache(args: argparse.Namespace) -> Path:
    """The fit cache folder: $MARKETSIM_FIT_CACHE, or <--results>/calibration; absolute, so that the tasks of a
    Dask cluster (whose workers have working folders of their own) use this one."""
    from marketsim.fit.cache import cache_dir

    return cache_dir(results_root(args)).absolute()


def fit_params(scenario, args: argparse.Namespace, quiet: bool = False):
    """Attractiveness and trends for ``scenario``: given, or fitted (cached under results/calibration/) up to
    ``--until`` within ``--tolerance``. Returns :class:`marketsim.fit.cache.Fitted`."""
    from marketsim.fit.cache import fitted
    from marketsim.fit.options import FitOptions

    options = FitOptions(until=getattr(args, "until", None), tol_pp=getattr(args, "tolerance", None))
    with bar("fitting to the observations", None, "simulations", enabled=not quiet) as update:
        fit = fitted(
            scenario, fit_cache(args), options=options, on_progress=lambda stage, k, worst: update(completed=k)
        )
    if fit.note:
        stderr.print(f"marketsim: {fit.note}", markup=False, soft_wrap=True)
    cal = fit.calibration
    if cal is not None and not quiet:
        stderr.print(
            f"fit {'(cached) ' if fit.cached else ''}to {len(cal.observations)} observed shares: "
            f"{cal.evaluations} simulations, largest residual {cal.max_residual_pp:.2f} pp, "
            f"{cal.dof} residual degree{'s' if cal.dof != 1 else ''} of freedom",
            markup=False,
        )
    return fit


def trend_rule(scenario, args: argparse.Namespace, until=None, quiet: bool = False, beside=None):
    """``scenario`` with the rule its trends follow after the cut-off (``until``, else its own) written in, and
    the :class:`marketsim.experiments.trend_choice.TrendChoice` behind it: the scenario's own rule if it states
    one, else the one chosen by rolling-origin skill on the decision-time observations (cached next to the
    fits, so only the first run of a scenario simulates). ``beside()``: other work (``marketsim run``'s own fit,
    with its own progress bar) done meanwhile in this thread while the rule is chosen in another (the two need
    each other's results only after both: a fit never sees the forecast); returns (scenario, choice, what
    ``beside()`` returned). The rule's bar shows once ``beside()`` is done, for what is left of the choice."""
    from marketsim.experiments.trend_choice import choose_trend, with_trend

    done: dict = {}

    def progress(stage, k, total):
        done[stage] = (k, total)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trend-choice") as pool:
        fut = pool.submit(choose_trend, scenario, cache_dir=fit_cache(args), until=until, on_progress=progress)
        other = beside() if beside is not None else None
        with bar(
            "how trends continue past the data: rolling-origin fits on the observations before the cut-off",
            None,
            "tasks",
            enabled=not quiet,
        ) as update:
            while not concurrent.futures.wait([fut], timeout=0.1).done:
                counts = list(done.values())
                update(completed=sum(d for d, _ in counts), total=sum(t for _, t in counts))
        choice = fut.result()
    out = (with_trend(scenario, choice), choice)
    return out if beside is None else (*out, other)


def executor_args(p: argparse.ArgumentParser) -> None:
    """--workers and --scheduler: where the parallel work of a command runs (src/marketsim/runtime/executor.py)."""
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count, at most the work)")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: local processes)")
