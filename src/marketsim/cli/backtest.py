"""``marketsim backtest``: fit before a date, project past it, compare with what was observed."""

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


def cmd_backtest(args: argparse.Namespace) -> int:
    from marketsim.experiments.backtest import backtest, backtest_figure
    from marketsim.experiments.uncertainty import central_draws, prior_draws
    from marketsim.report.numbers import interval
    from marketsim.report.progress import console, table
    from marketsim.runtime.executor import open_executor

    sc = load(args)
    settings = settings_of(args)
    out = result_folder(args, settings, sc.name, f"backtest-{args.until}", named=("until",))
    check_settings(out, "backtest.json", settings)
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
    if store_result(
        args, out, "backtest", "backtest", "backtest.json", doc, figures={"backtest.png": lambda: backtest_figure(bt)}
    ):
        return 0
    con = console()
    t = table(
        f"{sc.name}: back-test, fitted until {args.until}, held-out observations",
        caption=f"{bt.draws} parameter draws x {bt.replicates} replicates; interval: 90% of the mixture plus a "
        f"{args.sigma:g}-point observation error (an assumption); naive: "
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
    for f in bt.fixed:
        con.print(f"note: {f}")
    stderr.print(f"wrote {out}/: backtest.json, backtest.png", markup=False, soft_wrap=True)
    return 0
