"""``marketsim calibrate``: fit attractiveness and trends to a scenario's observations; print and store the fit."""

from __future__ import annotations

import argparse

from marketsim.cli.args import (
    check_settings,
    fit_params,
    load,
    result_folder,
    settings_caption,
    settings_of,
    store_result,
    trend_rule,
)
from marketsim.errors import UserError
from marketsim.report.numbers import points


def cmd_calibrate(args: argparse.Namespace) -> int:
    from marketsim.figures import plots
    from marketsim.fit.calibrate import at_limit
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
    # fitted at fewer consumers (shares do not depend on N: docs/model.md property 4): residuals at full N too
    if sc.consumers.count > cal.consumers:
        from marketsim.fit.calibrate import residuals_at

        full = residuals_at(sc, cal)
    doc = cal.summary()
    if full is not None:
        doc["full_size"] = full
    # how trends continue past this cut-off: stated, or chosen by rolling-origin skill on the data before it
    from marketsim.report.skill import skill, trend_sentence

    choice = trend_rule(sc, args, until=getattr(args, "until", None), quiet=args.json)[1].to_dict()
    doc["trend_after"] = {**choice, "sentence": trend_sentence(choice)}
    doc["skill"] = skill(choice)
    from marketsim.engine.market import login_shortfalls

    # stated login shares the fitted market cannot keep (docs/model.md 12.4): a warning, not an error (the
    # penetrations they depend on are uncertain)
    short = [s.text() for s in login_shortfalls(sc, fit.alpha, fit.trend, cal.seed, cal.consumers)]
    if short:
        doc["warnings"] = short
    from marketsim.report.progress import stderr

    for w in short:
        stderr.print(f"marketsim: warning: {w}", markup=False, soft_wrap=True)
    doc["settings"] = settings
    if store_result(
        args, out, "calibration", "calibrate", "fit.json", doc, figures={"fit.png": lambda: plots.fit_figure(sc, cal)}
    ):
        return 0
    t = table(
        f"{sc.name}: fit to {len(cal.observations)} observed GMV shares until {cal.until}",
        caption=f"primary source {cal.primary_source}; seed {cal.seed}, {cal.consumers:,} consumers; "
        f"{cal.dof} residual degree{'s' if cal.dof != 1 else ''} of freedom{settings_caption(settings)}",
    )
    t.add_column("source")
    t.add_column("period")
    t.add_column("retailer")
    for col in ("observed %", "simulated %", "residual pp") + (("at full N pp",) if full else ()):
        t.add_column(col, justify="right", no_wrap=True)
    for k, o in enumerate(cal.observations):
        row = [
            o["source"],
            o["period"]["label"],
            o["retailer"],
            f"{o['observed']:.1f}",
            f"{o['simulated']:.2f}",
            points(o["residual_pp"]),
        ]
        if full:
            row.append(points(full["observations"][k]["residual_pp"]))
        t.add_row(*row)
    con = console()
    con.print(t)
    se_note = (
        "; trend s.e.: its standard error from the fit's Jacobian and residuals (95% about trend +- 1.96 s.e.), "
        "relative to the reference trend"
        if cal.trend_se
        else ""
    )
    p = table(
        "fitted parameters",
        caption=f"attractiveness in utility at the calendar start; trend in utility a year{se_note}",
    )
    p.add_column("retailer")
    se_cols = ("trend s.e.",) if cal.trend_se else ()
    for col in ("attractiveness", "trend /yr", *se_cols) + tuple(f"{s} offset pp" for s in cal.offsets):
        p.add_column(col, justify="right", no_wrap=True)
    fitted_alpha = {r.name for r in sc.retailers if r.calibrate}
    fitted_trend = {r.name for r in sc.retailers if r.calibrate_trend}
    for n in sc.retailer_names:
        p.add_row(
            n,
            f"{cal.alpha[n]:.3f}" + ("" if n in fitted_alpha else " (given)"),
            f"{cal.trend[n]:+.3f}" + ("" if n in fitted_trend else " (given)"),
            *([f"{cal.trend_se[n]:.3f}" if n in cal.trend_se else "-"] if se_cols else []),
            *[(points(d[n]) if n in d else "-") for d in cal.offsets.values()],
        )
    con.print(p)
    for path, v in cal.event_values.items():
        se = cal.event_se.get(path, float("nan"))
        if at_limit(v):
            con.print(
                f"{path} (recurring effect): {v:+.3f} utility, at the end of its range: the observations ask for "
                f"more than this effect can give (lengthen its days, or model the season another way)",
                markup=False,
            )
            continue
        con.print(
            f"{path} (recurring effect): {v:+.3f} utility, standard error {se:.3f} (95% about "
            f"[{v - 1.96 * se:+.2f}, {v + 1.96 * se:+.2f}]; from the fit's Jacobian and residuals)",
            markup=False,
        )
    for line in cal.level_notes():  # retailers the primary source never observes: at another source's level
        con.print(line)
    con.print(
        f"conversion residual {points(cal.conversion_residual_pp)} pp; {cal.iterations} solver steps, "
        f"{cal.evaluations} simulations; tolerance {cal.tol_pp:.3g} pp; cache key {cal.key}"
    )
    if cal.dof == 0:
        con.print("the fit is saturated (as many parameters as equations): zero residuals say nothing about the model")
    con.print(doc["trend_after"]["sentence"], markup=False)
    con.print(doc["skill"]["sentence"], markup=False)
    con.print(f"wrote {out}/: fit.png, fit.json")
    return 0
