"""``marketsim project``: the scenario against its baseline over draws of the uncertain inputs; the report."""

from __future__ import annotations

import argparse

from marketsim.cli.args import check_settings, fit_cache, load, result_folder, settings_of, store_result, trend_rule
from marketsim.report.progress import bar, stderr


def projection_label(baseline_without: list[str] | None, options: list[str]) -> str:
    """A folder name saying what a projection compared: ``vs-no-events``, ``vs-without-jd_drops_weibo``, plus
    ``-options-a-b`` when options were compared; ids and names that are not plain become a slug and a digest
    (:func:`marketsim.io.names.projection_label`), so the name is always one safe path part."""
    from marketsim.io.names import projection_label as label

    return label(baseline_without, options)


def cmd_project(args: argparse.Namespace) -> int:
    from marketsim.experiments.workflow import ProjectionRequest, plan_projection, run_projection
    from marketsim.io import store
    from marketsim.report import decision
    from marketsim.report import projection as report
    from marketsim.report.skill import with_trend_words
    from marketsim.runtime.executor import open_executor
    from marketsim.scenario.core import load_scenario, with_settings

    def note(text: str) -> None:
        stderr.print(text, markup=False, soft_wrap=True)

    compare = []
    for path in args.compare or []:
        v = load_scenario(path)
        if getattr(args, "set", None):
            v = with_settings(v, args.set)
        compare.append((path, v))
    settings = settings_of(args)
    request = ProjectionRequest(
        scenario=load(args),
        label=args.scenario,
        cache_dir=fit_cache(args),
        trend_scenario=load(args, steps=False),  # (--steps does not change the trend rule)
        compare=tuple(compare),
        baseline_without=args.baseline_without,
        draws=args.draws,
        replicates=args.replicates,
        prior=args.prior,
        independent_baseline=args.independent_baseline,
        thresholds=tuple(args.threshold or ()),
        trend_uncertainty=getattr(args, "trend_uncertainty", None),
        settings=settings,
    )
    plan = plan_projection(request, on_note=note, trend=lambda s: trend_rule(s, args, quiet=args.json)[1])
    sc, draws, R = plan.scenario, plan.draws, plan.replicates
    out = result_folder(
        args,
        settings,
        sc.name,
        "projection-" + projection_label(args.baseline_without, list(plan.options)),
        named=("baseline_without", "compare"),
    )
    store.check_output_dir(out, kind="projection")  # before any work
    check_settings(out, "projection.json", settings)
    with open_executor(plan.jobs, workers=args.workers, scheduler=args.scheduler) as pool:
        executor, where = pool.executor, pool.where
        with bar(
            f"projecting {sc.name}: {draws.k} draw{'s' if draws.k > 1 else ''} x {R} replicates on {where}",
            None,
            "tasks",
        ) as update:
            done = {"fits": 0, "replicates": 0}
            totals = {"fits": draws.k * len(plan.options), "replicates": 0}

            def progress(stage, k_done, total):
                done[stage], totals[stage] = k_done, total
                update(
                    completed=done["fits"] + done["replicates"],
                    total=totals["fits"] + (totals["replicates"] or draws.k * R),
                )

            # the decision block: the options ranked per retailer, P(beats), P(beyond), the sentence
            proj, summ = run_projection(plan, executor=executor, on_progress=progress, add=decision.add_decision)
    for w in proj.warnings:
        stderr.print(f"marketsim: warning: {w}", markup=False, soft_wrap=True)
    with_trend_words(summ)

    def files(new):
        report.write_result_files(proj, summ, new)
        if getattr(args, "export", None):  # report.html / projection.xlsx, in the same result set as the rest
            from marketsim.experiments.decision import from_projection
            from marketsim.report.export import export

            export(new, args.export, summary=summ, outcomes=from_projection(proj, summ))

    if store_result(args, out, "projection", "project", "projection.json", summ, write=files):
        return 0
    report.print_summary(summ, proj)
    sent = {"html": "report.html", "xlsx": "projection.xlsx"}
    exported = [sent[f] for f in sent if f in (getattr(args, "export", None) or ())]
    stderr.print(
        f"wrote {out}/: projection.json, report.md"
        + "".join(f", {x}" for x in exported)
        + ", replicates and draws (.parquet and .csv), the options' scenario files, charts (.png and .svg)",
        markup=False,
        soft_wrap=True,
    )
    return 0
