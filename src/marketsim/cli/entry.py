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
import sys
import textwrap
from pathlib import Path
from typing import Callable

from marketsim import __version__
from marketsim.errors import UserError
from marketsim.report.progress import bar, stderr


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
    sc = sc.with_overrides(seed=getattr(args, "seed", None), consumers=getattr(args, "consumers", None),
                           steps=getattr(args, "steps", None) if steps else None)
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
    "project": ("set", "seed", "consumers", "steps", "draws", "replicates", "prior", "baseline_without", "compare",
                "threshold", "independent_baseline"),
    "fit": ("set", "seed", "consumers", "draws", "sigma"),
    "backtest": ("set", "seed", "consumers", "until", "draws", "replicates", "sigma"),
}
FIT_DRAWS, SIGMA_PP, BACKTEST_REPLICATES = 64, 1.0, 2
ARG_DEFAULTS = {"fit": {"draws": FIT_DRAWS, "sigma": SIGMA_PP},
                "backtest": {"replicates": BACKTEST_REPLICATES, "sigma": SIGMA_PP}}


def settings_of(args: argparse.Namespace) -> dict:
    """What produced a result, recorded in its JSON as ``settings``: the scenario file and the sha256 of its
    resolved content (before command-line settings), then every option of :data:`SETTINGS` the user gave
    (``set`` as {path: value as typed}; dates as YYYY-MM-DD). Folder names and --out checks use it."""
    from marketsim.scenario.core import load_scenario

    out: dict = {"scenario_file": args.scenario, "scenario_file_hash": load_scenario(args.scenario).digest()}
    defaults = ARG_DEFAULTS.get(args.command, {})
    for k in SETTINGS[args.command]:
        v = getattr(args, k, None)
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


def result_folder(args: argparse.Namespace, settings: dict, scenario_name: str, leaf: str | None = None,
                  named: tuple[str, ...] = ()) -> Path:
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
    from marketsim.io import names
    from marketsim.io import store

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
        raise UserError(f"{out}: holds a result made with other settings ({'; '.join(diff)}); choose another --out "
                        f"or remove the folder")


def settings_caption(settings: dict) -> str:
    """``"; settings: --set ..., --steps 10"`` for a table caption or chart, or "" with no settings."""
    from marketsim.io.names import describe

    d = describe(settings)
    return f"; settings: {d}" if d else ""


def note_settings(fig, settings: dict) -> None:
    """Write the command-line settings (if any) in small type at the bottom right of a chart."""
    from marketsim.report.projection import note_settings as note

    note(fig, settings)


def fit_cache(args: argparse.Namespace) -> Path:
    """The fit cache folder: $MARKETSIM_FIT_CACHE, or <--results>/calibration."""
    from marketsim.fit.cache import cache_dir

    return cache_dir(results_root(args))


def fit_params(scenario, args: argparse.Namespace, quiet: bool = False, **kw):
    """Attractiveness and trends for ``scenario``: given, or fitted (cached under results/calibration/).
    Returns :class:`marketsim.fit.cache.Fitted`."""
    from marketsim.fit.cache import fitted

    kw.setdefault("until", getattr(args, "until", None))
    if getattr(args, "tolerance", None) is not None:
        kw["tol_pp"] = args.tolerance
    with bar("fitting to the observations", None, "simulations", enabled=not quiet) as update:
        fit = fitted(scenario, fit_cache(args),
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
    from marketsim.scenario.describe import provenance, render
    from marketsim.scenario.core import scenario_files

    sc = load(args, memory=False)
    settings = [f"{k}={v}" for k, v in (args.set or [])]
    settings += [f"--{k} {getattr(args, k)}" for k in ("seed", "consumers", "steps") if getattr(args, k, None) is not None]
    print(render(sc, given=args.scenario, prov=provenance(scenario_files(args.scenario)), settings=settings), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from marketsim.scenario import schema
    from marketsim.io import store

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
    from marketsim.figures import plots
    from marketsim.io import store
    from marketsim.report.progress import console, table

    sc = load(args)
    if not sc.needs_fit:
        raise UserError(f"{args.scenario}: no retailer has attractiveness or trend 'calibrate'; nothing to fit")
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, "calibration")
    check_settings(out, "fit.json", settings)
    fit = fit_params(sc, args, quiet=args.json)
    cal = fit.calibration
    full = None
    if sc.consumers.count > cal.consumers:  # fitted at fewer consumers (property 11.4): residuals at full N too
        from marketsim.fit.calibrate import residuals_at

        full = residuals_at(sc, cal)
    doc = cal.summary()
    if full is not None:
        doc["full_size"] = full
    doc["settings"] = settings
    with store.result_set(out, "calibration", writer="marketsim calibrate") as new:
        fig = plots.fit_figure(sc, cal)
        note_settings(fig, settings)
        store.save_figure(fig, new / "fit.png")
        plots.close(fig)
        store.write_json(new / "fit.json", doc)
    from marketsim.io import resultsindex
    resultsindex.update(results_root(args))  # results/index.md lists every result
    if args.json:
        print(store.dumps(doc))
        return 0
    t = table(f"{sc.name}: fit to {len(cal.observations)} observed GMV shares until {cal.until}",
              caption=f"primary source {cal.primary_source}; seed {cal.seed}, {cal.consumers:,} consumers; "
                      f"{cal.dof} residual degree{'s' if cal.dof != 1 else ''} of freedom{settings_caption(settings)}")
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
              f"{cal.evaluations} simulations; tolerance {cal.tol_pp:.3g} pp; cache key {cal.key}")
    if cal.dof == 0:
        con.print("the fit is saturated (as many parameters as equations): zero residuals say nothing about the model")
    con.print(f"wrote {out}/: fit.png, fit.json")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from marketsim.figures import plots
    from marketsim.io import store
    from marketsim.fit.calibrate import residuals_at
    from marketsim.engine.market import simulate

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name)
    store.check_output_dir(out, kind="run")  # before any work: a bad --out costs nothing
    check_settings(out, "summary.json", settings)
    fit = fit_params(load(args, steps=False), args, quiet=args.json)
    cal = fit.calibration
    steps = sc.calendar.steps
    for e in sc.events_outside:
        stderr.print(f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this {steps}-step run: "
                     f"it does not fire", markup=False, soft_wrap=True)
    with bar(f"simulating {sc.name}", steps, "steps", enabled=True) as update:
        res = simulate(sc, fit.alpha, trend=fit.trend, on_step=lambda done, total: update(completed=done))
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
        "attractiveness": dict(zip(sc.retailer_names, map(float, fit.alpha))),
        "trend": dict(zip(sc.retailer_names, map(float, fit.trend))),
        "calibration": None if cal is None else {
            "key": cal.key, "consumers": cal.consumers, "dof": cal.dof, "max_residual_pp": cal.max_residual_pp,
            "this_run": residuals_at(sc, cal, res.records)["observations"]},
        "events": [{"id": e.id, "step": e.step, "date": e.date.isoformat(), "type": e.action.type,
                    "outside_horizon": e.step >= steps} for e in sc.events],
        "files": {"timeseries": ["timeseries.csv", "timeseries.parquet"], "flows": ["flows.csv", "flows.parquet"], "plot": "shares.png"},
        "settings": settings,
    }
    with store.result_set(out, "run", writer="marketsim run") as new:  # all files appear together, or none
        store.write_table(ts, new / "timeseries")
        store.write_table(flows, new / "flows")
        fig = plots.shares_figure(sc, ts)
        note_settings(fig, settings)
        store.save_figure(fig, new / "shares.png")
        plots.close(fig)
        store.write_json(new / "summary.json", summary)
    from marketsim.io import resultsindex
    resultsindex.update(results_root(args))  # results/index.md lists every result
    if args.json:
        print(store.dumps(summary))
        return 0
    from marketsim.report.progress import console, table

    t = table(f"{sc.name}: GMV share by retailer, first and last week",
              caption=f"seed {sc.seed}, {sc.consumers.count:,} consumers{settings_caption(settings)}")
    t.add_column("retailer")
    for col in (f"{summary['first_date']} %", f"{summary['last_date']} %", "change pp"):
        t.add_column(col, justify="right", no_wrap=True)
    def pct(x):
        return f"{x * 100:.1f}" if x == x else "no purchases"

    for n in sc.retailer_names:
        d = last[n] - first[n]
        t.add_row(n, pct(first[n]), pct(last[n]), f"{d * 100:+.1f}" if d == d else "-")
    con = console()
    con.print(t)
    if cal is not None:
        worst = max((abs(o["residual_pp"]) for o in summary["calibration"]["this_run"]), default=None)
        if worst is not None:
            con.print(f"the fit's observations in this run ({sc.consumers.count:,} consumers): largest residual "
                      f"{worst:.2f} pp (the fit was made at {cal.consumers:,})")
    con.print(f"wrote {out}/: timeseries.csv, timeseries.parquet, flows.csv, flows.parquet, summary.json, shares.png")
    return 0


# --------------------------------------------------------------------------- project


#: Default parameter draws of a projection whose scenario has uncertain parameters, and the replicates per
#: draw (with no uncertain parameter: one draw and DEFAULT_REPLICATES replicates). 32 x 4 keeps the
#: headline projection to a few minutes on 2 cores; the mixture's 2.5% and 97.5% points then rest on
#: 128 paired values.
DEFAULT_DRAWS = 32
DEFAULT_REPLICATES_WITH_DRAWS = 4
DEFAULT_REPLICATES = 20


def projection_label(baseline_without: list[str] | None, options: list[str]) -> str:
    """A folder name saying what a projection compared: ``vs-no-events``, ``vs-without-jd_drops_weibo``, plus
    ``-options-a-b`` when options were compared; ids and names that are not plain become a slug and a digest
    (:func:`marketsim.io.names.projection_label`), so the name is always one safe path part."""
    from marketsim.io.names import projection_label as label

    return label(baseline_without, options)


def cmd_project(args: argparse.Namespace) -> int:
    from marketsim.experiments import projection
    from marketsim.report import projection as report
    from marketsim.io import resultsindex
    from marketsim.io import store
    from marketsim.experiments.posterior import load_posterior
    from marketsim.scenario.core import load_scenario
    from marketsim.experiments.uncertainty import central_draws, posterior_draws, prior_draws

    sc = load(args)
    sc.without_events(args.baseline_without)  # checks the event ids before any work
    for e in sc.events_outside:
        if args.baseline_without and e.id in args.baseline_without:
            raise UserError(f"--baseline-without {e.id}: the event ({e.date}) falls after the last step of this "
                            f"{sc.calendar.steps}-step projection, so there is nothing to compare; drop --steps or "
                            f"choose another event")
        stderr.print(f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this "
                     f"{sc.calendar.steps}-step projection: it does not fire", markup=False, soft_wrap=True)
    options = {sc.name: sc}
    for path in args.compare or []:
        v = load_scenario(path)
        if getattr(args, "set", None):
            from marketsim.scenario.core import with_settings

            v = with_settings(v, args.set)
        v = v.with_overrides(seed=sc.seed, consumers=sc.consumers.count, steps=sc.calendar.steps)
        if v.name in options:
            raise UserError(f"{path}: option name {v.name!r} is used twice; give each compared scenario its own name")
        diff = projection.market_differences(sc, v)
        if diff:
            raise UserError(f"{path}: another market than {args.scenario} ({'; '.join(diff)}); options must differ only "
                            f"in their events and assumptions")
        options[v.name] = v
    projection.check_shared_draws(options, sc.uncertain)
    settings = settings_of(args)
    cache = fit_cache(args)
    k = args.draws if args.draws is not None else (DEFAULT_DRAWS if sc.uncertain else 1)
    # a stored posterior is checked in full where it would be used: a damaged one is one line, never the priors
    post = None if args.prior or k <= 1 or not sc.uncertain else load_posterior(sc, cache)
    draws_from = {"source": "central"}
    if k <= 1 or not sc.uncertain:
        draws = central_draws(sc)
    elif post is not None:
        draws = posterior_draws(post.params, post.samples, post.weights, k, sc.seed)
        draws_from = {"source": "posterior", "posterior": str(post.path), "ess": round(post.ess, 2),
                      "design_draws": len(post.samples), "sigma_pp": post.sigma_pp}
        stderr.print(f"drawing the uncertain parameters from the posterior stored by `marketsim fit` ({post.path}; "
                     f"effective sample size {post.ess:.1f} of {len(post.samples)} fitted draws); --prior draws from "
                     f"the priors", markup=False, soft_wrap=True)
    else:
        draws = prior_draws(sc, k, sc.seed)
        draws_from = {"source": "prior"}
    R = args.replicates or (DEFAULT_REPLICATES if draws.k == 1 else DEFAULT_REPLICATES_WITH_DRAWS)
    if draws.k == 1 and R < 2:
        raise UserError("--replicates 1 with a single parameter draw gives no interval: the spread of one replicate "
                        "is unknown; give --replicates 2 or more (or --draws 2 or more)")
    out = result_folder(args, settings, sc.name, "projection-" + projection_label(args.baseline_without, list(options)),
                        named=("baseline_without", "compare"))
    store.check_output_dir(out, kind="projection")  # before any work
    check_settings(out, "projection.json", settings)
    from marketsim.runtime.executor import open_executor

    jobs = draws.k * (len(options) + R)
    with open_executor(jobs, workers=args.workers, scheduler=args.scheduler) as pool:
        executor, where = pool.executor, pool.where
        with bar(f"projecting {sc.name}: {draws.k} draw{'s' if draws.k > 1 else ''} x {R} replicates on {where}",
                 None, "tasks") as update:
            done = {"fits": 0, "replicates": 0}
            totals = {"fits": draws.k * len(options), "replicates": 0}

            def progress(stage, k_done, total):
                done[stage], totals[stage] = k_done, total
                update(completed=done["fits"] + done["replicates"], total=totals["fits"] + (totals["replicates"] or draws.k * R))

            proj = projection.project(sc, draws=draws, replicates=R, options=options,
                                      baseline_without=args.baseline_without, executor=executor, cache_dir=cache,
                                      independent_baseline=args.independent_baseline,
                                      thresholds=tuple(args.threshold or ()), on_progress=progress)
    summ = projection.summary(proj)
    summ["settings"] = settings
    for w in proj.warnings:
        stderr.print(f"marketsim: warning: {w}", markup=False, soft_wrap=True)
    summ["draws_from"] = draws_from  # where the parameter draws came from (the posterior's file and ESS)
    with store.result_set(out, "projection", writer="marketsim project") as new:  # all files, or none
        store.write_table(proj.tidy(), new / "replicates", formats=("parquet",))
        report.write_report(proj, summ, new)
        store.write_json(new / "projection.json", summ)
    resultsindex.update(results_root(args))
    if args.json:
        print(store.dumps(summ))
        return 0
    report.print_summary(summ, proj)
    stderr.print(f"wrote {out}/: replicates.parquet, projection.json, fan.png, shift.png, flows.png, report.md",
                 markup=False, soft_wrap=True)
    return 0


# --------------------------------------------------------------------------- fit / backtest


def cmd_fit(args: argparse.Namespace) -> int:
    from marketsim.io import resultsindex
    from marketsim.io import store
    from marketsim.experiments.posterior import condition, save_posterior
    from marketsim.runtime.executor import open_executor
    from marketsim.report.progress import console, table

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, "fit")
    check_settings(out, "posterior.json", settings)
    cache = fit_cache(args)
    with open_executor(args.draws, workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(f"conditioning {sc.name}: fitting {args.draws} prior draws on {pool.where}", args.draws, "fits") as update:
            post, summ = condition(sc, k=args.draws, sigma_pp=args.sigma, executor=pool.executor, cache_dir=cache,
                                   on_progress=lambda stage, k, n: update(completed=k, total=n))
    path = save_posterior(post, sc, cache, summ["parameters"])
    summ["posterior_file"] = str(path)
    summ["settings"] = settings
    with store.result_set(out, "fit", writer="marketsim fit") as new:
        store.write_json(new / "posterior.json", summ)
    resultsindex.update(results_root(args))
    if args.json:
        print(store.dumps(summ))
        return 0
    con = console()
    t = table(f"{sc.name}: what the observations until {summ['until']} say about the uncertain parameters",
              caption=f"{summ['fitted']} of {summ['draws']} prior draws could be fitted; effective sample size "
                      f"{summ['ess']:.1f} (floor {summ['ess_floor']:g}); kernel sigma {summ['sigma_pp']:g} pp (an assumption){settings_caption(settings)}")
    t.add_column("parameter")
    for c in ("prior 90%", "posterior 90%", "narrowed"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in summ["parameters"]:
        t.add_row(r["path"] + ("" if r["before_cutoff"] else " *"), f"{r['prior_90'][0]:.3g}..{r['prior_90'][1]:.3g}",
                  f"{r['posterior_90'][0]:.3g}..{r['posterior_90'][1]:.3g}", f"{r['narrowing'] * 100:.0f}%")
    con.print(t)
    con.print("* acts only after the cut-off: the observations cannot inform it (its posterior is its prior, up to the "
              "design's noise)")
    informed = [r for r in summ["parameters"] if r["before_cutoff"] and r["narrowing"] > 0.2]
    if informed:
        con.print("the data narrowed: " + ", ".join(f"{r['path']} ({r['narrowing'] * 100:.0f}%)" for r in informed))
    else:
        con.print("the data narrowed no parameter by more than a fifth: the fits absorb the rest; treat the posterior "
                  "as the prior")
    stderr.print(f"wrote {path} (used by `marketsim project`) and {out}/posterior.json", markup=False, soft_wrap=True)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from marketsim.figures import plots
    from marketsim.io import resultsindex
    from marketsim.io import store
    from marketsim.experiments.backtest import backtest, backtest_figure
    from marketsim.runtime.executor import open_executor
    from marketsim.report.progress import console, interval, table
    from marketsim.experiments.uncertainty import central_draws, prior_draws

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, f"backtest-{args.until}", named=("until",))
    check_settings(out, "backtest.json", settings)
    k = args.draws if args.draws is not None else (16 if sc.uncertain else 1)
    draws = prior_draws(sc, k, sc.seed) if k > 1 else central_draws(sc)
    R = args.replicates
    with open_executor(draws.k * (R + 1), workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(f"back-testing {sc.name} from {args.until}: {draws.k} draws x {R} replicates", None, "tasks") as update:
            done = {}

            def progress(stage, k_done, total):
                done[stage] = (k_done, total)
                update(completed=sum(d for d, _ in done.values()), total=draws.k * (R + 1))

            bt = backtest(sc, args.until, draws=draws, replicates=R, executor=pool.executor,
                          cache_dir=fit_cache(args), on_progress=progress, sigma_pp=args.sigma)
    doc = bt.to_dict()
    doc["settings"] = settings
    with store.result_set(out, "backtest", writer="marketsim backtest") as new:
        store.write_json(new / "backtest.json", doc)
        fig = backtest_figure(bt)
        note_settings(fig, settings)
        store.save_figure(fig, new / "backtest.png")
        plots.close(fig)
    resultsindex.update(results_root(args))
    if args.json:
        print(store.dumps(doc))
        return 0
    con = console()
    t = table(f"{sc.name}: back-test, fitted until {args.until}, held-out observations",
              caption=f"{bt.draws} parameter draws x {bt.replicates} replicates; interval: 90% of the mixture plus a "
                      f"{args.sigma:g}-point observation error (an assumption); naive: "
                      f"persistence (last value held) and trend (a line through the source's earlier values)"
                      f"{settings_caption(settings)}")
    t.add_column("source")
    t.add_column("period")
    t.add_column("retailer")
    for c in ("obs %", "pred %", "90% %", "persist.", "trend"):
        t.add_column(c, justify="right", no_wrap=True)
    for h in bt.heldout:
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        t.add_row(h["source"], h["period"]["label"], h["retailer"], f"{h['observed']:.1f}", f"{h['predicted']:.1f}",
                  interval(h["lo90"], h["hi90"], "{:.1f}"), fmt(h["persistence"]), fmt(h["trend"]))
    con.print(t)
    mae = doc["mae"]
    con.print("mean absolute error (pp): " + "; ".join(
        f"{k} {v:.2f} over {doc['mae_n'][k]}" if v is not None else f"{k}: none" for k, v in mae.items()))
    con.print(f"coverage of the 90% intervals: {doc['coverage90_count']}")
    for f in bt.fixed:
        con.print(f"note: {f}")
    stderr.print(f"wrote {out}/: backtest.json, backtest.png", markup=False, soft_wrap=True)
    return 0


# --------------------------------------------------------------------------- the parser


#: command -> "module:function" taking the parsed arguments and returning an exit code (imported lazily).
COMMANDS: dict[str, str] = {
    "run": "marketsim.cli.entry:cmd_run",
    "validate": "marketsim.cli.entry:cmd_validate",
    "schema": "marketsim.cli.entry:cmd_schema",
    "calibrate": "marketsim.cli.entry:cmd_calibrate",
    "project": "marketsim.cli.entry:cmd_project",
    "fit": "marketsim.cli.entry:cmd_fit",
    "backtest": "marketsim.cli.entry:cmd_backtest",
    "viz": "marketsim.viz.app:cmd_viz",
    "sweep": "marketsim.experiments.sweep.runner:cmd_sweep",
    "analyze": "marketsim.experiments.sweep.analysis:cmd_analyze",
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


def executor_args(p: argparse.ArgumentParser) -> None:
    """--workers and --scheduler: where the parallel work of a command runs (marketsim/executor.py)."""
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: CPU count, at most the work)")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: local processes)")


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
        "flows.csv and .parquet (who switched where), summary.json and shares.png. Command-line\n"
        "settings name their own folder (results/tiny--consumers1000-steps10/) and are recorded in\n"
        "summary.json, so a run with other settings never replaces this one.",
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
         "marketsim calibrate scenarios/tiny.yaml --set behaviour.beta_social=0.5"], steps=False)
    c.add_argument("--until", type=iso_date, help="fit cut-off date YYYY-MM-DD (default: the scenario's fit_until)")
    c.add_argument("--tolerance", type=positive_float, metavar="PP",
                   help="solver accuracy in percentage points (default 0.2)")

    pr = scenario_cmd(
        "project", "Project a scenario against its counterfactual, over the assumptions' ranges, with a report.",
        "Draws the uncertain parameters (ranges and priors in the scenario, or the posterior stored by\n"
        "`marketsim fit`), fits each draw, and runs R replicates of the scenario and of the same market\n"
        "without its events (or without --baseline-without EVENT ...) on the same seeds. Shows each\n"
        "retailer's share shift with a 95% interval that covers the assumptions and the simulation noise,\n"
        "how much of its spread each causes, and which assumptions drive it. --compare projects other\n"
        "options (scenario files) on the same draws and seeds. Writes\n"
        "results/<scenario>/projection-<what was compared>[--<settings>]/: replicates.parquet, projection.json, fan.png,\n"
        "shift.png, flows.png (compare.png) and report.md; results/index.md lists every result.",
        ["marketsim project scenarios/battle_lines_2013.yaml",
         "marketsim project scenarios/battle_lines_2013.yaml \\",
         "    --baseline-without jd_drops_weibo",
         "marketsim project scenarios/battle_lines_2013.yaml --threshold -0.5 \\",
         "    --compare scenarios/jd_keeps_weibo_login.yaml"])
    pr.add_argument("--draws", type=positive_int, metavar="K",
                    help=f"parameter draws over the uncertain parameters (default {DEFAULT_DRAWS} when the scenario has "
                         f"any, else 1)")
    pr.add_argument("--replicates", type=positive_int, metavar="R",
                    help=f"replicates per draw (default {DEFAULT_REPLICATES_WITH_DRAWS} with draws, "
                         f"{DEFAULT_REPLICATES} without)")
    pr.add_argument("--prior", action="store_true", help="draw from the priors even if `marketsim fit` stored a posterior")
    pr.add_argument("--compare", nargs="+", metavar="VARIANT.yaml",
                    help="other options (scenario files) projected on the same draws and seeds, and compared")
    pr.add_argument("--threshold", type=finite_float, action="append", metavar="PP",
                    help="also report the probability that a shift is below PP points (repeatable)")
    executor_args(pr)
    pr.add_argument("--baseline-without", nargs="+", metavar="EVENT", help="event ids removed in the baseline (default: all events)")
    pr.add_argument("--out", help="output folder (default: results/<scenario>/projection-<what was compared>/)")
    pr.add_argument("--independent-baseline", action="store_true",
                    help="run the baseline on independent seeds (to measure what common random numbers save)")

    f = scenario_cmd(
        "fit", "Condition the uncertain parameters on the observations (a posterior for project).",
        "Draws the uncertain parameters from their priors (a Latin hypercube), fits each draw to the\n"
        "observations, and weighs each by how well its fit meets them (approximate Bayesian computation\n"
        "with a Gaussian kernel of --sigma points). Shows per parameter the prior and posterior 90%\n"
        "intervals and how much the data narrowed it. Stores the posterior next to the fit cache\n"
        "(results/calibration/), where `marketsim project` finds it, and results/<scenario>/fit/.",
        ["marketsim fit scenarios/battle_lines_2013.yaml",
         "marketsim fit scenarios/battle_lines_2013.yaml --draws 32 --sigma 0.5"], steps=False)
    f.add_argument("--draws", type=positive_int, default=FIT_DRAWS, metavar="K", help=f"prior draws (default {FIT_DRAWS})")
    f.add_argument("--sigma", type=positive_float, default=SIGMA_PP, metavar="PP",
                   help="observation error of the kernel, in points of share (default 1; an assumption)")
    executor_args(f)
    b = scenario_cmd(
        "backtest", "Fit on the observations before a date and predict the later ones, against naive forecasts.",
        "Fits on the observations that end before --until, projects the rest over the uncertain\n"
        "parameters' draws and replicates, and shows per held-out observation the observed share, the\n"
        "prediction with its 90% interval, and two naive forecasts (the last value held flat; a line\n"
        "through the source's earlier values); then the mean absolute errors and the coverage of the\n"
        "90% intervals. Writes results/<scenario>/backtest-<date>/: backtest.json, backtest.png.",
        ["marketsim backtest scenarios/baseline_2013q2.yaml --until 2013-01-01",
         "marketsim backtest scenarios/baseline_2013q2.yaml --until 2013-01-01 --json"], steps=False)
    b.add_argument("--until", type=iso_date, required=True, help="fit on observations that end before this date")
    b.add_argument("--draws", type=positive_int, metavar="K", help="parameter draws (default 16 when uncertain)")
    b.add_argument("--replicates", type=positive_int, default=BACKTEST_REPLICATES, metavar="R",
                   help=f"replicates per draw (default {BACKTEST_REPLICATES})")
    b.add_argument("--sigma", type=positive_float, default=SIGMA_PP, metavar="PP",
                   help="an observation's own error, in points, added to the predictive interval (default 1; an assumption)")
    executor_args(b)

    v = scenario_cmd(
        "viz", "Serve the live browser visualization (needs the 'viz' extra).",
        "Serves a page with the market's consumers, their ties and each retailer's share, step by step,\n"
        "with sliders for the key assumptions. Writes nothing; Ctrl-C stops the server.",
        ["marketsim viz scenarios/battle_lines_2013.yaml   # then http://127.0.0.1:8765/"],
        steps=False, json_flag=False, seed=False)
    v.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default: loopback only; any other needs the token in the printed address)")
    v.add_argument("--port", type=positive_int, default=8765, help="port (default 8765)")
    v.add_argument("--max-sessions", type=positive_int, default=4, metavar="N",
                   help="browser tabs served at once, each with its own market in memory (default 4)")

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


#: Commands that write under --results (the calibration cache) or --out: their locations are checked first.
WRITERS = ("run", "calibrate", "project", "sweep", "fit", "backtest")


def preflight(args: argparse.Namespace) -> None:
    """Check the output locations named on the command line before any work (one line, exit 2, if one is a
    file, under a file, unwritable or full). Each command checks its own default folder itself."""
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
        print(f"marketsim: error: {problem} writing {e.filename or 'an output file'}; free space or choose another "
              f"--out/--results", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = {"solara": "viz", "dask": "distributed", "distributed": "distributed"}.get((e.name or "").split(".")[0])
        if extra:
            print(f"marketsim: error: {args.command} needs the '{extra}' extra: pip install -e '.[{extra}]'", file=sys.stderr)
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
