"""``marketsim fit``: condition the uncertain inputs on the observations (ABC); store the posterior."""

from __future__ import annotations

import argparse

from marketsim.cli.args import (
    check_settings,
    fit_cache,
    load,
    result_folder,
    settings_caption,
    settings_of,
    store_result,
)
from marketsim.report.progress import bar, stderr


def cmd_fit(args: argparse.Namespace) -> int:
    from marketsim.experiments.posterior import condition, save_posterior
    from marketsim.fit.observation import Prior
    from marketsim.report.progress import console, table
    from marketsim.runtime.executor import open_executor

    sc = load(args)
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
            )
    path = save_posterior(post, sc, cache, summ["parameters"])
    summ["posterior_file"] = str(path)
    summ["settings"] = settings
    if store_result(args, out, "fit", "fit", "posterior.json", summ):
        return 0
    con = console()
    t = table(
        f"{sc.name}: what the observations until {summ['until']} say about the uncertain parameters",
        caption=f"{summ['fitted']} of {summ['draws']} prior draws could be fitted; effective sample size "
        f"{summ['ess']:.1f} (floor {summ['ess_floor']:g}); kernel: each source's observation error "
        f"({Prior().describe()}): "
        + "; ".join(f"{s} {e['sigma_pp']:.2g} pp ({e['described']})" for s, e in summ["observation_error"].items())
        + settings_caption(settings),
    )
    t.add_column("parameter")
    for c in ("prior 90%", "posterior 90%", "narrowed"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in summ["parameters"]:
        t.add_row(
            r["path"] + ("" if r["before_cutoff"] else " *"),
            f"{r['prior_90'][0]:.3g}..{r['prior_90'][1]:.3g}",
            f"{r['posterior_90'][0]:.3g}..{r['posterior_90'][1]:.3g}",
            f"{r['narrowing'] * 100:.0f}%",
        )
    con.print(t)
    con.print(
        "* acts only after the cut-off: the observations cannot inform it (its posterior is its prior, up to the "
        "design's noise)"
    )
    informed = [r for r in summ["parameters"] if r["before_cutoff"] and r["narrowing"] > 0.2]
    if informed:
        con.print("the data narrowed: " + ", ".join(f"{r['path']} ({r['narrowing'] * 100:.0f}%)" for r in informed))
    else:
        con.print(
            "the data narrowed no parameter by more than a fifth: the fits absorb the rest; treat the posterior "
            "as the prior"
        )
    stderr.print(f"wrote {path} (used by `marketsim project`) and {out}/posterior.json", markup=False, soft_wrap=True)
    return 0
