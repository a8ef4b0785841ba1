"""The experiments' tasks: the pieces projections, back-tests, posterior fits and sweeps are built from.

- :func:`map_jobs` runs a task over many jobs, inline or on an executor, in order, reporting progress;
- :func:`fit_task` fits one arm of one parameter draw (through the fit cache) and returns plain data;
- :func:`with_draw` sets a parameter draw's values in a scenario where it declares them uncertain;
- :func:`divergence` is the first step at which two scenarios' events differ;
- :func:`run_forked` runs one market for several scenarios that differ only in their events: one market until
  their events differ, then a fork per scenario (:meth:`marketsim.engine.market.Market.fork`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, as_completed
from typing import Any

from marketsim.engine.market import Market, StepRecord
from marketsim.errors import UserError
from marketsim.fit.cache import fitted
from marketsim.fit.calibrate import CalibrationError
from marketsim.fit.observation import from_calibration
from marketsim.fit.options import FitOptions
from marketsim.scenario.core import Scenario, ScenarioError

#: A step of a timeline that never differs (larger than any run).
NEVER = 10**9


def map_jobs(
    executor: Executor | None,
    fn: Callable[..., Any],
    jobs: list[tuple],
    stage: str,
    on_progress: Callable[[str, int, int], None] | None,
) -> list:
    """``fn(*job)`` for every job, in the order of ``jobs``, inline (``executor`` None) or on ``executor``;
    ``on_progress(stage, done, total)`` as jobs finish. Jobs not yet started are cancelled if one fails."""
    out: list = [None] * len(jobs)
    if on_progress:
        on_progress(stage, 0, len(jobs))
    if executor is None:
        for i, job in enumerate(jobs):
            out[i] = fn(*job)
            if on_progress:
                on_progress(stage, i + 1, len(jobs))
        return out
    futs = {executor.submit(fn, *job): i for i, job in enumerate(jobs)}
    try:
        for done, fut in enumerate(as_completed(futs), 1):
            out[futs[fut]] = fut.result()
            if on_progress:
                on_progress(stage, done, len(jobs))
    finally:
        for f in futs:
            f.cancel()
    return out


def fit_task(scenario: Scenario, cache_dir: str | None, options: FitOptions = FitOptions()) -> dict:
    """Fit one arm of one draw (through the fit cache in ``cache_dir``; None: no cache) as plain data:
    {"alpha", "trend" (per retailer), "key", "max_residual_pp", "dof", "residuals" (pp per observation),
    "offsets", "observation"} (the last six None when nothing is fitted; "observation": the fit's observation model,
    :class:`marketsim.fit.observation.ObservationModel` as plain data), or {"error": one line} when the fit fails."""
    try:
        fit = fitted(scenario, cache_dir, options=options)
    except CalibrationError as e:
        return {"error": str(e)}
    cal = fit.calibration
    return {
        "alpha": fit.alpha,
        "trend": fit.trend,
        "key": None if cal is None else cal.key,
        "max_residual_pp": None if cal is None else cal.max_residual_pp,
        "dof": None if cal is None else cal.dof,
        "residuals": None if cal is None else [o["residual_pp"] for o in cal.observations],
        "offsets": None if cal is None else cal.offsets,
        "event_values": {} if cal is None else cal.event_values,  # fitted recurring effects' sizes, by path
        "trend_se": {} if cal is None else cal.trend_se,  # fitted trends' standard errors, by retailer
        "observation": None if cal is None else from_calibration(cal).to_dict(),  # each source's error, offsets' s.e.
    }


def with_draw(sc: Scenario, values: dict) -> Scenario:
    """``sc`` with the draw's values at the paths ``sc`` itself declares uncertain (its own range or prior). A
    path where ``sc`` has a plain number (an option that sets the migration cost, or has no offer) or that it
    lacks (an option without the event) keeps ``sc``'s own value: a draw never gives an option back what it took
    out. :func:`marketsim.experiments.projection.check_shared_draws` makes sure the options that declare a path declare the
    same prior. A draw that makes the scenario invalid is a UserError (one line)."""
    mine = {u.path for u in sc.uncertain}
    own = {p: v for p, v in values.items() if p in mine}
    if not own:
        return sc
    try:
        return sc.with_values(own)
    except ScenarioError as e:
        raise UserError(f"parameter draw {own} makes an invalid scenario: {e}") from None


def divergence(a: Scenario, b: Scenario) -> int:
    """First step at which the event timelines of ``a`` and ``b`` differ (an event's id, step or action);
    :data:`NEVER` if they never do."""
    ea = {(e.id, e.step, repr(e.action)) for e in a.events}
    eb = {(e.id, e.step, repr(e.action)) for e in b.events}
    diff = ea ^ eb
    return min((step for _, step, _ in diff), default=NEVER)


def run_forked(
    lead: Market, arms: Sequence[tuple[Hashable, Scenario]], steps: int
) -> list[tuple[Market, list[StepRecord]]]:
    """Run ``steps`` steps of every arm (name, scenario) from one market: ``lead``, a fresh market of the first
    arm's scenario, runs alone up to the first step where any other arm's events differ from the first's
    (:func:`divergence`); there each other arm becomes a fork of it (same World, state and random streams,
    its own events), and every market runs on to ``steps``. Returns per arm, in order, its market and its
    ``steps`` step records (the shared ones first). The result is the same as running each arm alone."""
    first = arms[0][1]
    split = min([divergence(first, sc) for _, sc in arms[1:]] + [steps])
    shared = [lead.step() for _ in range(split)]
    forks = [lead.fork(sc) for _, sc in arms[1:]]  # before the lead moves on
    return [(m, shared + [m.step() for _ in range(steps - split)]) for m in [lead, *forks]]
