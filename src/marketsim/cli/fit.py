"""``marketsim fit``: condition the uncertain inputs on the observations (ABC); store the posterior."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from marketsim.cli.args import (
    check_settings,
    fit_cache,
    load,
    result_folder,
    settings_caption,
    settings_of,
    store_result,
)
from marketsim.errors import UserError
from marketsim.report.numbers import part, share, value_range
from marketsim.report.progress import bar, stderr
from marketsim.scenario.labels import event_names, parameter_quantity


def cmd_fit(args: argparse.Namespace) -> int:
    from marketsim.experiments.posterior import condition, save_posterior
    from marketsim.report.progress import console, table
    from marketsim.runtime.executor import open_executor

    sc = load(args)
    if args.ex_post != (args.until is not None):  # the one sanctioned use of held-out figures is asked for in full
        raise UserError(
            "--ex-post needs --until DATE (the last day of what followed the events, e.g. 2014-03-10)"
            if args.ex_post
            else f"--until {args.until}: only with --ex-post (an ex-post evaluation that weighs the draws by the "
            f"held-out observations ending by then); without it `marketsim fit` uses the scenario's own cut-off"
        )
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, "fit")
    check_settings(out, "posterior.json", settings)
    cache = fit_cache(args)
    with open_executor(args.draws, workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(
            f"conditioning {sc.name}: fitting {args.draws} prior draws on {pool.where}", args.draws, "fits"
        ) as update:
            post, summ = condition(
                sc,
                k=args.draws,
                sigma_pp=args.sigma,
                executor=pool.executor,
                cache_dir=cache,
                on_progress=lambda stage, k, n: update(completed=k, total=n),
                ex_post_until=args.until,
            )
    path = save_posterior(post, sc, cache, summ["parameters"], ex_post=summ.get("ex_post"))
    if args.save:
        save_copy(path, Path(args.save))
        summ["saved"] = args.save
    summ["posterior_file"] = str(path)
    summ["settings"] = settings
    if store_result(args, out, "fit", "fit", "posterior.json", summ):
        return 0
    con = console()
    names = event_names(sc)  # the parameters of events are named by what the events do
    ex = summ.get("ex_post")
    if ex:
        t = table(
            f"{sc.name}: EX POST: what the observations until {summ['until']} and the held-out figures up to "
            f"{ex['until']} say about the uncertain parameters",
            caption=f"{summ['fitted']} of {summ['draws']} prior draws could be fitted; effective sample size "
            f"{summ['ess']:.1f} (floor {summ['ess_floor']:g}); {_kernel_caption(summ)}{settings_caption(settings)}",
        )
        _ex_post_table(con, t, summ, ex, names)
        stderr.print(f"wrote {path} (ex post) and {out}/posterior.json", markup=False, soft_wrap=True)
        return 0
    t = table(
        f"{sc.name}: what the observations until {summ['until']} say about the uncertain parameters",
        caption=f"{summ['fitted']} of {summ['draws']} prior draws could be fitted; effective sample size "
        f"{summ['ess']:.1f} (floor {summ['ess_floor']:g}); {_kernel_caption(summ)}{settings_caption(settings)}",
    )
    t.add_column("parameter")
    for c in ("prior 90%", "posterior 90%", "narrowed"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in summ["parameters"]:
        t.add_row(
            _label(r["path"], names) + ("" if r["before_cutoff"] else " *"),
            value_range(*r["prior_90"], parameter_quantity(r["path"], events=names)),
            value_range(*r["posterior_90"], parameter_quantity(r["path"], events=names)),
            part(r["narrowing"]),
        )
    con.print(t)
    con.print(
        "* acts only after the cut-off: the observations cannot inform it (its posterior is its prior, up to the "
        "design's noise)"
    )
    informed = [r for r in summ["parameters"] if r["before_cutoff"] and r["narrowing"] > 0.2]
    if informed:
        con.print(
            "the data narrowed: " + ", ".join(f"{_label(r['path'], names)} ({part(r['narrowing'])})" for r in informed)
        )
    else:
        con.print(
            "the data narrowed no parameter by more than a fifth: the fits absorb the rest; treat the posterior "
            "as the prior"
        )
    stderr.print(f"wrote {path} (used by `marketsim project`) and {out}/posterior.json", markup=False, soft_wrap=True)
    return 0


def _label(path: str, names: dict[str, str]) -> str:
    """A parameter as the terminal names it: its label (:func:`marketsim.scenario.labels.parameter_quantity`, the
    scenario's events in words: ``names``)."""
    return parameter_quantity(path, events=names).label


def save_copy(path: Path, dest: Path) -> None:
    """--save FILE: the stored posterior copied to ``dest`` (e.g. docs/examples/posteriors/, for a scenario that
    takes a prior from it); one line when it cannot be written."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    except OSError as e:
        raise UserError(f"--save {dest}: cannot write the posterior there ({e.strerror or e})") from None


def _ex_post_table(con, t, summ: dict, ex: dict, names: dict[str, str]) -> None:
    """The prior against the ex-post posterior, with what could inform each parameter, and plain words on what
    was used and what the posterior may not be used for."""
    t.add_column("parameter", overflow="fold")
    for c in ("prior 90%", "posterior 90%", "narrowed"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in summ["parameters"]:
        t.add_row(
            _label(r["path"], names) + ("" if r["before_cutoff"] else " +" if r["ex_post_informs"] else " *"),
            value_range(*r["prior_90"], parameter_quantity(r["path"], events=names)),
            value_range(*r["posterior_90"], parameter_quantity(r["path"], events=names)),
            part(r["narrowing"]),
        )
    con.print(t)
    con.print(
        f"+ acts only after the fit's cut-off ({summ['until']}) and before {ex['until']}: only the held-out figures "
        f"can inform it; * acts only after {ex['until']}: nothing can (its posterior is its prior, up to the "
        f"design's noise); unmarked: it acts before the cut-off (the fitted observations and the held-out figures)",
        soft_wrap=True,
    )
    figs = "; ".join(
        f"{f['source']} {f['period']} ({', '.join(f'{k} {share(v)}' for k, v in f['shares'].items())})"
        for f in ex["figures"]
    )
    con.print(
        f"EX POST: the weights used the held-out figures that end by {ex['until']}: {figs}. They were never "
        f"fitted (the attractiveness, trends and offsets of each draw are fitted on the observations until "
        f"{summ['until']} only); they weigh the draws. This posterior is ex post: it may not be used to score "
        f"{summ['scenario']}'s own forecasts (`marketsim project` and `backtest` of it refuse it); another "
        f"scenario may take a prior from it (`prior: {{posterior: FILE, parameter: PATH}}`) only if its decision "
        f"(fit cut-off) is on or after {ex['until']}.",
        soft_wrap=True,
    )
    informed = [r for r in summ["parameters"] if r["ex_post_informs"] and r["narrowing"] > 0.2]
    if informed:
        con.print(
            "the data narrowed: " + ", ".join(f"{_label(r['path'], names)} ({part(r['narrowing'])})" for r in informed)
        )
    else:
        con.print("the data narrowed no parameter by more than a fifth: treat the posterior as the prior")


def _kernel_caption(summ: dict) -> str:
    """How the draws were weighed: each source's observation error, its value and where it came from."""
    from marketsim.fit.observation import Prior

    return f"kernel: each source's observation error ({Prior().describe()}): " + "; ".join(
        f"{s} {e['sigma_pp']:.2g} pp ({e['described']})" for s, e in summ["observation_error"].items()
    )
