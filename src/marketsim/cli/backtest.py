"""``marketsim backtest``: fit before a date, project past it, compare with what was observed; with ``--rolling``,
at every cut-off in turn, scored by horizon (:mod:`marketsim.experiments.rolling`)."""

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
    trend_rule,
)
from marketsim.report.progress import bar, stderr


def cmd_backtest(args: argparse.Namespace) -> int:
    from marketsim.experiments.backtest import backtest, backtest_figure, split_at
    from marketsim.experiments.uncertainty import central_draws, prior_draws
    from marketsim.report.numbers import interval
    from marketsim.report.progress import console, table
    from marketsim.runtime.executor import open_executor

    if getattr(args, "rolling", False):
        return cmd_rolling(args)
    from marketsim.report.skill import trend_sentence

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, f"backtest-{args.until}", named=("until",))
    check_settings(out, "backtest.json", settings)
    # trends after --until: stated, or chosen by rolling-origin skill on the observations before it (never on
    # what the back-test scores)
    split_at(sc, args.until)  # nothing to fit or to predict, or a leak: one line before the trend choice's fits
    sc, choice = trend_rule(sc, args, until=args.until, quiet=args.json)
    k = args.draws if args.draws is not None else (16 if sc.uncertain else 1)
    draws = prior_draws(sc, k, sc.seed) if k > 1 else central_draws(sc)
    R = args.replicates
    with open_executor(draws.k * (R + 1), workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(
            f"back-testing {sc.name} from {args.until}: {draws.k} draws x {R} replicates", None, "tasks"
        ) as update:
            done = {}

            def progress(stage, k_done, total):
                done[stage] = (k_done, total)
                update(completed=sum(d for d, _ in done.values()), total=draws.k * (R + 1))

            bt = backtest(
                sc,
                args.until,
                draws=draws,
                replicates=R,
                executor=pool.executor,
                cache_dir=fit_cache(args),
                on_progress=progress,
                sigma_pp=args.sigma,
            )
    doc = bt.to_dict()
    doc["settings"] = settings
    doc["trend_after"] = {**choice.to_dict(), "sentence": trend_sentence(choice.to_dict())}
    if store_result(
        args, out, "backtest", "backtest", "backtest.json", doc, figures={"backtest.png": lambda: backtest_figure(bt)}
    ):
        return 0
    con = console()
    t = table(
        f"{sc.name}: back-test, fitted until {args.until}, held-out observations",
        caption=f"{bt.draws} parameter draws x {bt.replicates} replicates; interval: 90% of the mixture plus "
        f"{error_phrase(args.sigma)}; naive: "
        f"persistence (last value held) and trend (a line through the source's earlier values)"
        f"{'; *: held out (holdout: true), never fitted' if 'holdout' in doc else ''}"
        f"{settings_caption(settings)}",
    )
    t.add_column("source")
    t.add_column("period")
    t.add_column("retailer")
    for c in ("obs %", "pred %", "90% %", "persist.", "trend"):
        t.add_column(c, justify="right", no_wrap=True)
    for h in bt.heldout:
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        t.add_row(
            h["source"],
            h["period"]["label"] + (" *" if h["holdout"] else ""),
            h["retailer"],
            f"{h['observed']:.1f}",
            f"{h['predicted']:.1f}",
            interval(h["lo90"], h["hi90"], "{:.1f}"),
            fmt(h["persistence"]),
            fmt(h["trend"]),
        )
    con.print(t)
    mae = doc["mae"]
    con.print(
        "mean absolute error (pp): "
        + "; ".join(f"{k} {v:.2f} over {doc['mae_n'][k]}" if v is not None else f"{k}: none" for k, v in mae.items())
    )
    con.print(f"coverage of the 90% intervals: {doc['coverage90_count']}")
    if "holdout" in doc:
        ho = doc["holdout"]
        con.print(
            "held-out observations (holdout: true) only: mean absolute error (pp): "
            + "; ".join(
                f"{k} {v:.2f} over {ho['mae_n'][k]}" if v is not None else f"{k}: none" for k, v in ho["mae"].items()
            )
            + f"; coverage of the 90% intervals: {ho['coverage90_count']}"
        )
    con.print(error_lines(bt.observation_error))
    for f in bt.fixed:
        con.print(f"note: {f}")
    con.print(doc["trend_after"]["sentence"], markup=False)
    stderr.print(f"wrote {out}/: backtest.json, backtest.png", markup=False, soft_wrap=True)
    return 0


def cmd_rolling(args: argparse.Namespace) -> int:
    """``marketsim backtest SCENARIO --rolling``: a rolling-origin back-test, scored by horizon."""
    from marketsim.experiments.rolling import check_plans, plan_origins, rolling_backtest
    from marketsim.experiments.uncertainty import central_draws, prior_draws
    from marketsim.report.numbers import part
    from marketsim.report.progress import console, table
    from marketsim.report.skill import trend_sentence
    from marketsim.runtime.executor import open_executor

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, "backtest-rolling", named=("rolling",))
    check_settings(out, "backtest.json", settings)
    k = args.draws if args.draws is not None else (16 if sc.uncertain else 1)
    draws = prior_draws(sc, k, sc.seed) if k > 1 else central_draws(sc)
    R = args.replicates
    plans, skipped = plan_origins(sc)
    check_plans(sc, plans, skipped)  # before the trend choice's fits
    # at each origin, trends after it follow the scenario's rule, or the one chosen on the data before it
    from marketsim.experiments.trend_choice import per_origin

    with bar(
        "how trends continue past each origin: rolling-origin fits before it", None, "tasks", enabled=not args.json
    ):
        choices = per_origin(sc, plans, cache_dir=fit_cache(args))
    total = len(plans) * draws.k * (R + 1)
    with open_executor(max(total, 1), workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(
            f"rolling back-test of {sc.name}: {len(plans)} origins x {draws.k} draws x {R} replicates", None, "tasks"
        ) as update:
            done: dict = {}

            def progress(stage, k_done, n):
                done[stage] = k_done
                update(completed=sum(done.values()), total=total)

            rb = rolling_backtest(
                sc,
                draws=draws,
                replicates=R,
                executor=pool.executor,
                cache_dir=fit_cache(args),
                on_progress=progress,
                sigma_pp=args.sigma,
                plan=(plans, skipped),
            )
    doc = rb.details()
    doc["settings"] = settings
    doc["trend_after"] = (
        [{"origin": p.origin.isoformat(), **c.to_dict()} for p, c in zip(plans, choices, strict=True)]
        if choices
        else sc.forecast.trend_after
    )
    for line in rb.skipped:  # one line each (on stderr, where one-line messages soft-wrap)
        stderr.print(f"marketsim: skipped {line}", markup=False, soft_wrap=True)
    if store_result(args, out, "backtest", "backtest", "backtest.json", doc, printed=rb.to_dict()):
        return 0
    con = console()
    origins = ", ".join(o["origin"] for o in rb.origins)
    t = table(
        f"{sc.name}: rolling back-test from {len(rb.origins)} origin{'s' if len(rb.origins) != 1 else ''} "
        f"({origins}), by horizon",
        caption=f"{rb.draws} parameter draw{'s' if rb.draws != 1 else ''} x {rb.replicates} replicate{'s' if rb.replicates != 1 else ''} per origin; MAE in points of GMV share; "
        f"intervals: the mixture plus {error_phrase(args.sigma)}; persistence: the "
        f"source's last value before the origin (another source's if it had none); drift: persistence plus the "
        f"series' mean change per day{settings_caption(settings)}",
    )
    t.add_column("quarters ahead", justify="right")
    for c in ("n", "MAE model", "persistence", "drift", "50% cover", "90% cover"):
        t.add_column(c, justify="right", no_wrap=True)
    for h in rb.horizons:
        m = h["mae"]
        t.add_row(
            str(h["quarters"]),
            str(h["n"]),
            f"{m['model']:.2f}",
            f"{m['persistence']:.2f}",
            f"{m['drift']:.2f}",
            part(h["coverage"]["50"]),
            part(h["coverage"]["90"]),
        )
    con.print(t)
    for h in rb.horizons:
        con.print(verdict(h))
    if rb.unscored:
        con.print(
            f"note: {rb.unscored} held-out share{'s' if rb.unscored != 1 else ''} of a retailer no source had observed "
            f"before the origin: no baseline, not scored"
        )
    for o in rb.origins:
        con.print(f"at {o['origin']}: {error_lines(o['observation_error'])}")
        for f in o["fixed"]:
            con.print(f"note: at {o['origin']}: {f}")
    for p, c in zip(plans, choices, strict=True):
        con.print(f"note: at {p.origin}: {trend_sentence(c.to_dict())}", markup=False)
    stderr.print(f"wrote {out}/: backtest.json", markup=False, soft_wrap=True)
    return 0


def error_phrase(sigma: float | None) -> str:
    """What the intervals add for an observation's own error (the tables' captions)."""
    if sigma is not None:
        return f"a {sigma:g}-point observation error (--sigma)"
    return "each source's observation error (estimated from the fit's residuals with a stated prior, below)"


def error_lines(errors: dict) -> str:
    """One line: the observation error per source (points), how it was set, and the spread of offsets for a pair
    no fit saw (docs/model.md section 8)."""
    from marketsim.fit.observation import Prior

    parts = [f"{s} {e['sigma_pp']:.1f} ({e['described']})" for s, e in errors["sources"].items()]
    parts.append(f"offsets no fit saw: spread {errors['unseen_offsets']['sigma_pp']:.1f}")
    return f"observation error (pp, posterior scale; {Prior().describe()}): " + "; ".join(parts)


def verdict(h: dict) -> str:
    """One plain sentence: does the model beat persistence at this horizon?"""
    m = h["mae"]
    q = f"{h['quarters']} quarter{'s' if h['quarters'] != 1 else ''} ahead ({h['n']} held-out share{'s' if h['n'] != 1 else ''})"
    if m["model"] < m["persistence"]:
        return f"{q}: the model beats persistence (MAE {m['model']:.2f} vs {m['persistence']:.2f} points)."
    if m["model"] == m["persistence"]:
        return f"{q}: the model ties with persistence (MAE {m['model']:.2f} points)."
    return f"{q}: the model does not beat persistence (MAE {m['model']:.2f} vs {m['persistence']:.2f} points)."
