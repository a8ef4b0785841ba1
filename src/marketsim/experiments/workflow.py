"""One projection workflow shared by ``marketsim project`` and the page's "Decide" view: the options loaded and
checked, the rule trends follow past the data, the parameter draws (from the stored posterior, the priors or the
central values), :func:`marketsim.experiments.projection.project` and its summary.

The callers parse their inputs into a :class:`ProjectionRequest`, call :func:`plan_projection` (cheap checks,
then the trend rule and the draws), open an executor for :attr:`ProjectionPlan.jobs` tasks, call
:func:`run_projection`, and render the result (the CLI: terminal and result folder; the page: its charts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from marketsim.errors import UserError
from marketsim.experiments import projection
from marketsim.experiments.defaults import DEFAULT_DRAWS, DEFAULT_REPLICATES, DEFAULT_REPLICATES_WITH_DRAWS
from marketsim.experiments.posterior import load_posterior
from marketsim.experiments.projection import Projection
from marketsim.experiments.trend_choice import TrendChoice, choose_trend, with_trend
from marketsim.experiments.uncertainty import Draws, central_draws, posterior_draws, prior_draws
from marketsim.fit.calibrate import Calibration
from marketsim.scenario.core import Scenario


class Cancelled(Exception):
    """The caller's ``cancel`` event was set while the projection ran: the work stopped, nothing was written."""


@dataclass(frozen=True)
class ProjectionRequest:
    """What to project. ``scenario``: the first option with every setting applied (--set, seed, consumers,
    steps); ``trend_scenario``: the same before --steps (the trend rule is chosen on the scenario's own
    calendar, so a shorter run reuses it); ``label``: how messages name it (its file); ``compare``: the other
    options as (how messages name it, the loaded scenario); ``cache_dir``: the fit cache; ``settings``: what a
    stored result records as its settings."""

    scenario: Scenario
    label: str
    cache_dir: Path
    trend_scenario: Scenario | None = None
    compare: tuple[tuple[str, Scenario], ...] = ()
    baseline_without: list[str] | None = None
    draws: int | None = None
    replicates: int | None = None
    prior: bool = False
    independent_baseline: bool = False
    thresholds: tuple[float, ...] = ()
    trend_uncertainty: bool | None = None
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectionPlan:
    """A checked request: the options (trend rule written in), the draws and replicates, where the draws come
    from, the trend rule, and whether the fitted trends vary between draws."""

    request: ProjectionRequest
    options: dict[str, Scenario]
    draws: Draws
    replicates: int
    draws_from: dict
    choice: TrendChoice
    trends: bool
    #: the first option's fit at its central values (:func:`marketsim.experiments.projection.central_fit`), which
    #: every draw's fit starts from; None with one draw, or when it cannot be fitted
    start: Calibration | None = None

    @property
    def scenario(self) -> Scenario:
        return self.options[self.request.scenario.name]

    @property
    def jobs(self) -> int:
        """Tasks the projection submits (the executor's size)."""
        return self.draws.k * (len(self.options) + self.replicates)


def _note(on_note: Callable[[str], None] | None, text: str) -> None:
    if on_note is not None:
        on_note(text)


def plan_projection(
    request: ProjectionRequest,
    *,
    on_note: Callable[[str], None] | None = None,
    trend: Callable[[Scenario], TrendChoice] | None = None,
) -> ProjectionPlan:
    """Check ``request`` (event ids, options of the same market and draws, replicates), choose the trend rule
    (``trend(scenario)``, default :func:`marketsim.experiments.trend_choice.choose_trend` through the fit
    cache) and make the draws. ``on_note`` hears the notes a user should read (an event past the horizon, draws
    from a stored posterior). UserError (one line) for anything that cannot work."""
    r = request
    sc = r.scenario
    sc.without_events(r.baseline_without)  # checks the event ids before any work
    for e in sc.events_outside:
        if r.baseline_without and e.id in r.baseline_without:
            raise UserError(
                f"--baseline-without {e.id}: the event ({e.date}) falls after the last step of this "
                f"{sc.calendar.steps}-step projection, so there is nothing to compare; drop --steps or "
                f"choose another event"
            )
        _note(
            on_note,
            f"marketsim: note: event {e.id} ({e.date}) falls after the last step of this "
            f"{sc.calendar.steps}-step projection: it does not fire",
        )
    options = {sc.name: sc}
    for path, v in r.compare:
        v = v.with_overrides(seed=sc.seed, consumers=sc.consumers.count, steps=sc.calendar.steps)
        if v.name in options:
            raise UserError(f"{path}: option name {v.name!r} is used twice; give each compared scenario its own name")
        diff = projection.market_differences(sc, v)
        if diff:
            raise UserError(
                f"{path}: another market than {r.label} ({'; '.join(diff)}); options must differ only "
                f"in their events and assumptions"
            )
        options[v.name] = v
    projection.check_shared_draws(options, sc.uncertain)
    asked = r.trend_uncertainty
    trends = bool(sc.forecast.trend_uncertainty if asked is None else asked) and any(
        x.calibrate_trend for x in sc.retailers
    )  # the fitted trends vary between draws too (when asked: --trend-uncertainty or forecast.trend_uncertainty)
    k = r.draws if r.draws is not None else (DEFAULT_DRAWS if sc.uncertain or trends else 1)
    with ThreadPoolExecutor(1, thread_name_prefix="central-fit") as beside:
        # the fit at the central values, which every draw's fit starts from, runs beside the trend choice: a fit
        # never sees the forecast, so the rule chosen cannot change it (the thread ends before the plan returns:
        # a caller forks its worker processes after)
        central = (
            beside.submit(projection.central_fit, sc, str(r.cache_dir)) if k > 1 and (sc.uncertain or trends) else None
        )
        # how trends continue past the data: stated, or chosen by rolling-origin skill on the decision-time data
        # (the options are one market: an option that does not state its own rule gets the same)
        full = r.trend_scenario if r.trend_scenario is not None else sc
        choice = trend(full) if trend is not None else choose_trend(full, cache_dir=r.cache_dir)
        start = None if central is None else central.result()
    options = {name: with_trend(v, choice) for name, v in options.items()}
    sc = options[sc.name]
    # a stored posterior is checked in full where it would be used: a damaged one is one line, never the priors
    post = None if r.prior or k <= 1 or not sc.uncertain else load_posterior(sc, r.cache_dir)
    draws_from: dict = {"source": "central"}
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
        _note(
            on_note,
            f"drawing the uncertain parameters from the posterior stored by `marketsim fit` ({post.path}; "
            f"effective sample size {post.ess:.1f} of {len(post.samples)} fitted draws); --prior draws from "
            f"the priors",
        )
    else:
        draws = prior_draws(sc, k, sc.seed)
        draws_from = {"source": "prior"}
    R = r.replicates or (DEFAULT_REPLICATES if draws.k == 1 else DEFAULT_REPLICATES_WITH_DRAWS)
    if draws.k == 1 and R < 2:
        raise UserError(
            "--replicates 1 with a single parameter draw gives no interval: the spread of one replicate "
            "is unknown; give --replicates 2 or more (or --draws 2 or more)"
        )
    return ProjectionPlan(r, options, draws, R, draws_from, choice, trends, start)


def run_projection(
    plan: ProjectionPlan,
    *,
    executor: Executor | None,
    on_progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
    add: Callable[[dict, Projection], object] | None = None,
) -> tuple[Projection, dict]:
    """Run the planned projection on ``executor`` (None: inline) and summarise it: the projection and its
    summary (:func:`marketsim.experiments.projection.summary` with ``settings``, ``draws_from``, ``trend_after``
    (the trend rule, as data) and ``trend_uncertainty``). ``on_progress(stage, done, total)`` as tasks finish.
    Setting ``cancel`` stops the work at the next finished task with :class:`Cancelled` (the tasks not started
    are cancelled; an executor opened with ``open_executor`` kills its workers when the exception leaves it).
    ``add(summary, projection)`` puts what a layer above adds to the summary (the decision block) right after
    ``settings``, where every projection.json has it."""
    r = plan.request

    def progress(stage: str, done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the projection was cancelled")
        if on_progress is not None:
            on_progress(stage, done, total)

    proj = projection.project(
        plan.scenario,
        draws=plan.draws,
        replicates=plan.replicates,
        options=plan.options,
        baseline_without=r.baseline_without,
        executor=executor,
        cache_dir=r.cache_dir,
        independent_baseline=r.independent_baseline,
        thresholds=tuple(r.thresholds),
        on_progress=progress,
        trend_uncertainty=plan.trends,
        start=plan.start,
    )
    if cancel is not None and cancel.is_set():
        raise Cancelled("the projection was cancelled")
    summ = projection.summary(proj)
    summ["settings"] = r.settings
    if add is not None:
        add(summ, proj)
    summ["draws_from"] = plan.draws_from  # where the parameter draws came from (the posterior's file and ESS)
    summ["trend_after"] = plan.choice.to_dict()
    summ["trend_uncertainty"] = plan.trends
    return proj, summ
