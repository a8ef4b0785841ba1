"""What every experiment (projection, posterior, backtest, sweep) does with a scenario and an executor: run a list of
jobs in order on an executor with progress (:func:`map_jobs`), put a parameter draw into a scenario
(:func:`with_draw`), and find where two scenarios' event timelines part (:func:`divergence`, where a shared market
forks).
"""

from __future__ import annotations

from concurrent.futures import Executor, as_completed

from marketsim.errors import UserError
from marketsim.scenario.core import Scenario, ScenarioError


def divergence(a: Scenario, b: Scenario) -> int:
    """First step at which the event timelines of ``a`` and ``b`` differ (a large number if never)."""
    ea = {(e.id, e.step, repr(e.action)) for e in a.events}
    eb = {(e.id, e.step, repr(e.action)) for e in b.events}
    diff = ea ^ eb
    return min((step for _, step, _ in diff), default=10**9)


def with_draw(sc: Scenario, values: dict) -> Scenario:
    """``sc`` with the draw's values at the paths ``sc`` itself declares uncertain (its own range or prior). A
    path where ``sc`` has a plain number (an option that sets the migration cost, or has no offer) or that it
    lacks (an option without the event) keeps ``sc``'s own value: a draw never gives an option back what it took
    out. :func:`check_shared_draws` makes sure the options that declare a path declare the same prior."""
    mine = {u.path for u in sc.uncertain}
    own = {p: v for p, v in values.items() if p in mine}
    if not own:
        return sc
    try:
        return sc.with_values(own)
    except ScenarioError as e:
        raise UserError(f"parameter draw {own} makes an invalid scenario: {e}") from None


def map_jobs(executor: Executor | None, fn, jobs: list[tuple], stage: str, on_progress) -> list:
    """Run ``fn(*job)`` for every job, in order, inline or on ``executor``; report progress as jobs finish."""
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
