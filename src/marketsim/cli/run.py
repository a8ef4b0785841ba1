"""``marketsim run``: simulate a scenario once and write its time series, charts and summary."""

from __future__ import annotations

import argparse

from marketsim import __version__
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
from marketsim.report.moves import lost_login_line, move_lines, wrapped
from marketsim.report.numbers import share, shift
from marketsim.report.progress import bar, stderr


def cmd_run(args: argparse.Namespace) -> int:
    from marketsim.engine.run import simulate
    from marketsim.figures import plots
    from marketsim.fit.calibrate import residuals_at, with_event_values
    from marketsim.io import store

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name)
    store.check_output_dir(out, kind="run")  # before any work: a bad --out costs nothing
    check_settings(out, "summary.json", settings)
    full = load(args, steps=False)
    # how trends continue past the cut-off: stated, or chosen by rolling-origin skill (on the full calendar, so
    # --steps does not change the choice), beside the fit (which never sees the forecast)
    from marketsim.experiments.trend_choice import with_trend
    from marketsim.report.skill import skill, trend_sentence

    def fit_now():
        return fit_params(full, args, quiet=args.json)

    if full.needs_fit:
        _, choice, fit = trend_rule(full, args, quiet=args.json, beside=fit_now)
    else:
        choice, fit = None, fit_now()
    cal = fit.calibration
    sc = sc if choice is None else with_trend(sc, choice)
    steps = sc.calendar.steps
    for e in sc.events_outside:
        stderr.print(
            f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this {steps}-step run: "
            f"it does not fire",
            markup=False,
            soft_wrap=True,
        )
    with bar(f"simulating {sc.name}", steps, "steps", enabled=True) as update:
        run_sc = sc if cal is None else with_event_values(sc, cal.event_values)  # fitted recurring effects
        res = simulate(run_sc, fit.alpha, trend=fit.trend, on_step=lambda done, total: update(completed=done))
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
        "attractiveness": dict(zip(sc.retailer_names, map(float, fit.alpha), strict=True)),
        "trend": dict(zip(sc.retailer_names, map(float, fit.trend), strict=True)),
        "calibration": None
        if cal is None
        else {
            "key": cal.key,
            "consumers": cal.consumers,
            "dof": cal.dof,
            "max_residual_pp": cal.max_residual_pp,
            "this_run": residuals_at(sc, cal, res.records)["observations"],
        },
        "events": [
            {
                "id": e.id,
                "step": e.step,
                "date": e.date.isoformat(),
                "type": e.action.type,
                "outside_horizon": e.step >= steps,
            }
            for e in sc.events
        ],
        **({"moves": res.moves_summary()} if res.moves else {}),  # entries, exits, acquisitions (none: no key)
        **(
            {}
            if choice is None
            else {
                "trend_after": {**choice.to_dict(), "sentence": trend_sentence(choice.to_dict())},
                "skill": skill(choice.to_dict()),
            }
        ),
        # login removals: the customers who lost their login, from the stated login mix (none: no key)
        **({"lost_login": res.login_losses_summary()} if res.login_losses else {}),
        # stated login shares the market cannot keep (docs/model.md 12.4; none: no key)
        **({"warnings": [s.text() for s in res.login_shortfalls]} if res.login_shortfalls else {}),
        "files": {
            "timeseries": ["timeseries.csv", "timeseries.parquet"],
            "flows": ["flows.csv", "flows.parquet"],
            "plot": "shares.png",
        },
        "settings": settings,
    }

    def tables(new):
        store.write_table(ts, new / "timeseries")
        store.write_table(flows, new / "flows")

    figures = {"shares.png": lambda: plots.shares_figure(sc, ts)}
    if store_result(args, out, "run", "run", "summary.json", summary, figures=figures, write=tables):
        return 0
    from marketsim.report.progress import console, table

    t = table(
        f"{sc.name}: GMV share by retailer, first and last week",
        caption=f"seed {sc.seed}, {sc.consumers.count:,} consumers{settings_caption(settings)}",
    )
    t.add_column("retailer")
    for col in (f"{summary['first_date']} %", f"{summary['last_date']} %", "change pp"):
        t.add_column(col, justify="right", no_wrap=True)

    def pct(x):
        return share(x, unit="") if x == x else "no purchases"

    for n in sc.retailer_names:
        d = last[n] - first[n]
        t.add_row(n, pct(first[n]), pct(last[n]), shift(d, 1) if d == d else "-")
    con = console()
    con.print(t)
    if cal is not None:
        worst = max((abs(o["residual_pp"]) for o in summary["calibration"]["this_run"]), default=None)
        if worst is not None:
            con.print(
                f"the fit's observations in this run ({sc.consumers.count:,} consumers): largest residual "
                f"{worst:.2f} pp (the fit was made at {cal.consumers:,})"
            )
    for line in move_lines(summary.get("moves"), summary["last_date"]):
        con.print(line, markup=False, soft_wrap=True)
    if choice is not None:
        con.print(summary["trend_after"]["sentence"], markup=False)
        con.print(summary["skill"]["sentence"], markup=False)
    for d in summary.get("lost_login", ()):
        for ln in wrapped(lost_login_line(d), con.width):
            con.print(ln, markup=False, soft_wrap=True)
    for w in summary.get("warnings", ()):
        stderr.print(f"marketsim: warning: {w}", markup=False, soft_wrap=True)
    con.print(
        f"wrote {out}/: timeseries.csv, timeseries.parquet, flows.csv, flows.parquet, summary.json, shares.png, shares.svg"
    )
    return 0
