"""``marketsim project``: the scenario against its baseline over draws of the uncertain inputs; the report."""

from __future__ import annotations

import argparse

from marketsim.cli.args import check_settings, fit_cache, load, result_folder, settings_of, store_result, trend_rule
from marketsim.errors import UserError
from marketsim.report.progress import bar, stderr

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
    from marketsim.experiments.posterior import load_posterior
    from marketsim.experiments.uncertainty import central_draws, posterior_draws, prior_draws
    from marketsim.io import store
    from marketsim.report import decision
    from marketsim.report import projection as report
    from marketsim.report.skill import skill, trend_sentence
    from marketsim.scenario.core import load_scenario

    sc = load(args)
    sc.without_events(args.baseline_without)  # checks the event ids before any work
    for e in sc.events_outside:
        if args.baseline_without and e.id in args.baseline_without:
            raise UserError(
                f"--baseline-without {e.id}: the event ({e.date}) falls after the last step of this "
                f"{sc.calendar.steps}-step projection, so there is nothing to compare; drop --steps or "
                f"choose another event"
            )
        stderr.print(
            f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this "
            f"{sc.calendar.steps}-step projection: it does not fire",
            markup=False,
            soft_wrap=True,
        )
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
            raise UserError(
                f"{path}: another market than {args.scenario} ({'; '.join(diff)}); options must differ only "
                f"in their events and assumptions"
            )
        options[v.name] = v
    projection.check_shared_draws(options, sc.uncertain)
    settings = settings_of(args)
    cache = fit_cache(args)
    # how trends continue past the data: stated, or chosen by rolling-origin skill on the decision-time data (the
    # options are one market: an option that does not state its own rule gets the same)
    from marketsim.experiments.trend_choice import with_trend

    choice = trend_rule(load(args, steps=False), args, quiet=args.json)[1]  # (--steps does not change it)
    options = {name: with_trend(v, choice) for name, v in options.items()}
    sc = options[sc.name]
    asked = getattr(args, "trend_uncertainty", None)
    trends = bool(sc.forecast.trend_uncertainty if asked is None else asked) and any(
        r.calibrate_trend for r in sc.retailers
    )  # the fitted trends vary between draws too (when asked: --trend-uncertainty or forecast.trend_uncertainty)
    k = args.draws if args.draws is not None else (DEFAULT_DRAWS if sc.uncertain or trends else 1)
    # a stored posterior is checked in full where it would be used: a damaged one is one line, never the priors
    post = None if args.prior or k <= 1 or not sc.uncertain else load_posterior(sc, cache)
    draws_from = {"source": "central"}
    if trends and not sc.uncertain and k > 1:
        draws = central_draws(sc, k)  # the draws differ in their trends only
    elif k <= 1 or not sc.uncertain:
        draws = central_draws(sc)
    elif post is not None:
        draws = posterior_draws(post.params, post.samples, post.weights, k, sc.seed)
        draws_from = {
            "source": "posterior",
            "posterior": str(post.path),
            "ess": round(post.ess, 2),
            "design_draws": len(post.samples),
            "sigma_pp": post.sigma_pp,
        }
        stderr.print(
            f"drawing the uncertain parameters from the posterior stored by `marketsim fit` ({post.path}; "
            f"effective sample size {post.ess:.1f} of {len(post.samples)} fitted draws); --prior draws from "
            f"the priors",
            markup=False,
            soft_wrap=True,
        )
    else:
        draws = prior_draws(sc, k, sc.seed)
        draws_from = {"source": "prior"}
    R = args.replicates or (DEFAULT_REPLICATES if draws.k == 1 else DEFAULT_REPLICATES_WITH_DRAWS)
    if draws.k == 1 and R < 2:
        raise UserError(
            "--replicates 1 with a single parameter draw gives no interval: the spread of one replicate "
            "is unknown; give --replicates 2 or more (or --draws 2 or more)"
        )
    out = result_folder(
        args,
        settings,
        sc.name,
        "projection-" + projection_label(args.baseline_without, list(options)),
        named=("baseline_without", "compare"),
    )
    store.check_output_dir(out, kind="projection")  # before any work
    check_settings(out, "projection.json", settings)
    from marketsim.runtime.executor import open_executor

    jobs = draws.k * (len(options) + R)
    with open_executor(jobs, workers=args.workers, scheduler=args.scheduler) as pool:
        executor, where = pool.executor, pool.where
        with bar(
            f"projecting {sc.name}: {draws.k} draw{'s' if draws.k > 1 else ''} x {R} replicates on {where}",
            None,
            "tasks",
        ) as update:
            done = {"fits": 0, "replicates": 0}
            totals = {"fits": draws.k * len(options), "replicates": 0}

            def progress(stage, k_done, total):
                done[stage], totals[stage] = k_done, total
                update(
                    completed=done["fits"] + done["replicates"],
                    total=totals["fits"] + (totals["replicates"] or draws.k * R),
                )

            proj = projection.project(
                sc,
                draws=draws,
                replicates=R,
                options=options,
                baseline_without=args.baseline_without,
                executor=executor,
                cache_dir=cache,
                independent_baseline=args.independent_baseline,
                thresholds=tuple(args.threshold or ()),
                on_progress=progress,
                trend_uncertainty=trends,
            )
    summ = projection.summary(proj)
    summ["settings"] = settings
    decision.add_decision(summ, proj)  # the options ranked per retailer, P(beats), P(beyond), the sentence
    for w in proj.warnings:
        stderr.print(f"marketsim: warning: {w}", markup=False, soft_wrap=True)
    summ["draws_from"] = draws_from  # where the parameter draws came from (the posterior's file and ESS)
    summ["trend_after"] = {**choice.to_dict(), "sentence": trend_sentence(choice.to_dict())}
    summ["trend_uncertainty"] = trends
    summ["skill"] = skill(choice.to_dict())  # the model's skill on its own data, next to the answer

    def files(new):
        store.write_table(proj.tidy(), new / "replicates", formats=("parquet",))
        decision.write_decision_files(proj, new)  # draws.parquet (+ .csv) and the options' scenario files
        report.write_report(proj, summ, new)

    if store_result(args, out, "projection", "project", "projection.json", summ, write=files):
        return 0
    report.print_summary(summ, proj)
    stderr.print(
        f"wrote {out}/: replicates.parquet, draws.parquet, projection.json, fan.png, shift.png, flows.png, report.md",
        markup=False,
        soft_wrap=True,
    )
    return 0
