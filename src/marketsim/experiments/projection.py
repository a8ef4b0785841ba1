"""Projections (docs/model.md section 10): a scenario (and the options it is compared with) against its
counterfactual baseline, over draws of the uncertain parameters and replicates of the simulation.

For each parameter draw k (:mod:`marketsim.experiments.uncertainty`) every arm is fitted (:mod:`marketsim.fit.cache`: a draw
that does not change the market before the fit's cut-off reuses a stored fit); the counterfactual baseline
keeps the fit of the first option and drops its events. Then every draw runs the same R replicates: replicate
r's seed is ``SeedSequence(scenario.seed).spawn(R)[r]`` for every draw and arm (common random numbers), and
the arms of a replicate share one World and one market up to the first step where their events differ, where
the market forks (:meth:`marketsim.engine.market.Market.fork`). Everything runs as tasks on one executor (local
processes or a Dask cluster) and is collected by index, so the numbers depend on the seed alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType

import numpy as np
import pandas as pd

from marketsim.engine.login_mix import summarize_shortfalls
from marketsim.engine.market import DAYS_PER_YEAR, Market, MoveRecord
from marketsim.engine.outputs import move_event
from marketsim.engine.population import build_world, child_seed
from marketsim.errors import UserError
from marketsim.experiments.tasks import divergence, fit_task, map_jobs, run_forked, with_draw
from marketsim.experiments.uncertainty import Draws, Summary, param_of, summarize
from marketsim.fit.cache import fitted
from marketsim.fit.calibrate import Calibration, CalibrationError, cache_key, with_event_values
from marketsim.fit.options import FitOptions
from marketsim.scenario.core import Scenario, Uncertain
from marketsim.scenario.labels import events_label

# the tasks' older private names (marketsim.tasks holds them now)
_map, _with_draw, _divergence = map_jobs, with_draw, divergence

BASELINE = "baseline"
METRICS = ("gmv_share", "gmv", "revenue", "accounts_created")


def replicate_seeds(seed: int, replicates: int, stream: int = 0) -> list[int]:
    """Integer seeds of the replicates, spawned from the scenario seed (``stream`` 1 gives an independent set)."""
    root = np.random.SeedSequence(seed, spawn_key=(stream,)) if stream else np.random.SeedSequence(seed)
    return [child_seed(c) for c in root.spawn(replicates)]


# --------------------------------------------------------------------------- tasks (run on the executor)


def replicate_task(
    arms: list[tuple[str, Scenario]],
    params: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int,
    steps: int,
    baseline_seed: int | None = None,
) -> dict:
    """One replicate of every arm (``arms``: name -> scenario; ``params``: name -> (alpha, trend)).

    Arms with the same World and values share one market until their events differ, then fork. Returns per arm
    the per-step metrics (steps x retailers), and for the consumers who lost a login in the first arm, where
    they last bought at the horizon in every arm, and per arm the moves that changed who is in the market (kind,
    retailer, other, step, moved, lost: :class:`marketsim.engine.market.MoveRecord`)."""
    first_name, first = arms[0]
    world = build_world(first, seed)
    out: dict = {}
    markets: dict[str, Market] = {}
    groups: dict = {}
    keys = {name: _world_key(sc) for name, sc in arms}
    for name, sc in arms:
        a, tr = params[name]
        s = seed if name != BASELINE or baseline_seed is None else baseline_seed
        groups.setdefault((a.tobytes(), tr.tobytes(), s, keys[name]), []).append((name, sc))
    for (_, _, s, key), members in groups.items():
        name0, sc0 = members[0]
        a, tr = params[name0]
        w = world if (s == seed and key == keys[first_name]) else build_world(sc0, s)
        lead = Market(sc0, w, a, s, trend=tr)
        for (name, _), (m, recs) in zip(members, run_forked(lead, members, steps), strict=True):
            out[name] = {k: np.array([getattr(r, k) for r in recs]) for k in METRICS}
            markets[name] = m
    m0 = markets[first_name]
    lost = m0.lost_index()
    R = m0.R
    dest = {
        name: (
            np.bincount(m.last[lost][m.last[lost] >= 0], minlength=R).astype(float)
            if m.world is m0.world
            else np.full(R, np.nan)
        )
        for name, m in markets.items()
    }
    moves = {
        name: [(mv.kind, mv.retailer, mv.other, mv.step, mv.moved, mv.lost) for mv in m.moves]
        for name, m in markets.items()
    }
    # the first arm's login removals: its customers who lost the login, of how many, and every account lost
    logins = [
        (ll.step, ll.retailer, ll.provider, ll.customers, ll.base, ll.accounts, ll.stated) for ll in m0.login_losses
    ]
    return {
        "arms": out,
        "lost": len(lost),
        "destinations": dest,
        "scale": m0.scale_at(steps - 1),
        "moves": moves,
        "login_losses": logins,
        "login_shortfalls": [dataclasses.asdict(s) for s in m0.login_shortfalls],  # stated login shares out of reach
    }


def _world_key(sc: Scenario) -> str:
    """What a World depends on: providers, consumers, retailers' starting shares and logins, the market size."""
    d = sc.to_dict()
    return repr(
        (
            d["providers"],
            d["consumers"],
            [(r["name"], r["initial_share"], r["sso_share"], r["logins"]) for r in d["retailers"]],
            d["market_size"],
            d["calendar"]["start"],
        )
    )


# --------------------------------------------------------------------------- the projection


@dataclass
class Projection:
    """The results of :func:`project`: per arm, metric arrays of shape (draws, replicates, steps, retailers)."""

    scenario: Scenario  # the first option
    options: dict[str, Scenario]  # the options compared (name -> scenario), the first being ``scenario``
    baseline: Scenario
    draws: Draws
    kept: np.ndarray  # indices (into the design) of the draws that could be fitted
    failed: list[tuple[dict, str]]  # (draw values, reason) of draws that could not be fitted
    seeds: list[int]
    baseline_seeds: list[int]
    steps: int
    arrays: dict[str, dict[str, np.ndarray]]
    lost: np.ndarray  # (draws, replicates) agents who lost a login (first option)
    destinations: dict[str, np.ndarray]  # arm -> (draws, replicates, retailers)
    scale: float  # shoppers per agent at the horizon
    fits: list[dict]  # per kept draw: the first option's fit summary
    thresholds: tuple[float, ...] = ()
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line each: e.g. two options identical in every draw
    #: arm -> its entries, exits and acquisitions in the order they happened: kind, retailer, other, step, and
    #: moved / lost (draws, replicates) in real shoppers (:class:`marketsim.engine.market.MoveRecord`)
    moves: dict[str, list[dict]] = field(default_factory=dict)
    #: the first option's login removals (step, retailer, provider) with ``customers`` (the retailer's customers who
    #: lost it), ``base`` (its customers), ``accounts`` (every consumer who lost it), real shoppers, and ``stated``
    #: (the retailer's sso_share of the provider in that draw): (draws, replicates) arrays
    login_losses: list[dict] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, ...]:
        return self.scenario.retailer_names

    @property
    def paired(self) -> bool:
        return self.seeds == self.baseline_seeds

    @property
    def weights(self) -> np.ndarray:
        w = self.draws.weights[self.kept]
        return w / w.sum()

    def kept_draws(self) -> Draws:
        d = self.draws
        return Draws(d.params, d.unit[self.kept], [d.values[i] for i in self.kept], self.weights, d.source)

    def horizon(self, arm: str, metric: str = "gmv_share") -> np.ndarray:
        """(draws, replicates, retailers) at the last step."""
        return self.arrays[arm][metric][:, :, -1, :]

    def removed_from(self, arm: str) -> int:
        """First step at which ``arm`` and the baseline differ (where a shift can begin)."""
        return min(divergence(self.options[arm], self.baseline), self.steps - 1)

    def shift(self, arm: str) -> dict[str, Summary]:
        """Per retailer: the horizon GMV share of ``arm`` minus the baseline's (fractions), summarised over the
        draws and replicates (:func:`marketsim.experiments.uncertainty.summarize`)."""
        d = self.horizon(arm) - self.horizon(BASELINE)
        return {
            n: summarize(d[:, :, j], self.kept_draws(), tuple(t / 100 for t in self.thresholds))
            for j, n in enumerate(self.names)
        }

    def revenue_shift(self, arm: str) -> dict[str, Summary]:
        """Per retailer: revenue (currency) from the first step the arm differs from the baseline to the horizon."""
        lo = self.removed_from(arm)
        s = self.arrays[arm]["revenue"][:, :, lo:, :].sum(axis=2) - self.arrays[BASELINE]["revenue"][:, :, lo:, :].sum(
            axis=2
        )
        return {n: summarize(s[:, :, j], self.kept_draws()) for j, n in enumerate(self.names)}

    def difference(self, a: str, b: str) -> dict[str, Summary]:
        """Per retailer: horizon share of option ``a`` minus option ``b`` (same draws and seeds)."""
        d = self.horizon(a) - self.horizon(b)
        return {
            n: summarize(d[:, :, j], self.kept_draws(), tuple(t / 100 for t in self.thresholds))
            for j, n in enumerate(self.names)
        }

    def destination_shares(self) -> dict[str, dict[str, float]]:
        w = self.weights
        out = {}
        for arm, d in self.destinations.items():
            tot = np.einsum("k,krj->j", w, d)
            s = tot.sum()
            out[arm] = {
                n: (float(tot[j] / s) if s > 0 and np.isfinite(s) else math.nan) for j, n in enumerate(self.names)
            }
        return out

    def tidy(self) -> pd.DataFrame:
        """One row per draw, replicate, arm, step and retailer."""
        frames = []
        for arm, a in self.arrays.items():
            K, R, T, J = a["gmv_share"].shape
            seeds = self.baseline_seeds if arm == BASELINE else self.seeds
            dates = np.array([self.scenario.calendar.date_of(t).isoformat() for t in range(T)])
            frames.append(
                pd.DataFrame(
                    {
                        "draw": np.repeat(self.kept, R * T * J),
                        "replicate": np.tile(np.repeat(np.arange(R), T * J), K),
                        "seed": np.tile(np.repeat(np.array(seeds, dtype=np.uint64), T * J), K),
                        "arm": arm,
                        "step": np.tile(np.repeat(np.arange(T), J), K * R),
                        "date": np.tile(np.repeat(dates, J), K * R),
                        "retailer": np.tile(np.array(self.names), K * R * T),
                        **{k: v.reshape(-1) for k, v in a.items()},
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def project(
    scenario: Scenario,
    *,
    draws: Draws,
    replicates: int,
    options: dict[str, Scenario] | None = None,
    baseline_without: list[str] | None = None,
    steps: int | None = None,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    independent_baseline: bool = False,
    thresholds: tuple[float, ...] = (),
    on_progress: Callable[[str, int, int], None] | None = None,
    trend_uncertainty: bool | None = None,
    start: Calibration | None | EllipsisType = ...,
) -> Projection:
    """Project ``scenario`` (and the other ``options``, compared on the same draws and seeds) against the
    baseline without ``baseline_without`` (default: all of the scenario's events).

    ``draws``: the parameter sets (:mod:`marketsim.experiments.uncertainty`); a draw's values are set in each option (and the
    baseline) at the paths that option itself declares uncertain with the same prior (:func:`marketsim.experiments.tasks.with_draw`,
    :func:`check_shared_draws`); the options must be the same market (:func:`market_differences`). Options
    whose results are identical in every draw and replicate are named in ``Projection.warnings``.
    ``executor``: any ``concurrent.futures.Executor`` (None runs inline). ``on_progress(stage,
    done, total)`` reports the fits, then the replicates. Draws that cannot be fitted are dropped and reported
    (they are parameter values the observations rule out); if none can, the first one's reason is raised.
    ``trend_uncertainty`` (None: the first option's ``forecast.trend_uncertainty``, true unless the scenario
    turns it off): with more than one draw, each draw adds to every trend
    fitted in it a normal with that fit's standard error (:func:`perturb_trends`; the draws then name the trends
    as parameters, so the report shows how much of the spread they drive). ``start``: the first option's fit at
    its central values (:func:`central_fit`), which every draw's fit starts from, when the caller made it (None:
    it could not be fitted); by default it is made here when there is more than one draw."""
    options = dict(options or {"scenario": scenario})
    first = next(iter(options))
    for name, sc in options.items():
        diff = market_differences(options[first], sc)
        if diff:
            raise UserError(
                f"option {name} is another market than {first} ({'; '.join(diff)}); options must differ "
                f"only in their events and assumptions"
            )
    check_shared_draws(options, draws.params)
    baseline_full = options[first].without_events(baseline_without)
    steps = steps or scenario.calendar.steps
    cache = None if cache_dir is None else str(cache_dir)
    arms_of = []  # per draw: [(name, scenario)] with the baseline last
    for values in draws.values:
        arms = [(name, with_draw(sc, values)) for name, sc in options.items()]
        arms.append((BASELINE, with_draw(baseline_full, values)))
        arms_of.append(arms)

    # fits: every distinct (draw, option) market; identical ones (same key) are fitted once by the cache
    import time

    t0 = time.perf_counter()
    fit_jobs = [(k, name, sc) for k, arms in enumerate(arms_of) for name, sc in arms if name != BASELINE]
    if start is ...:
        start = central_fit(options[first], cache) if draws.k > 1 else None
    # one fit per distinct fit problem (the fit cache's key: the market, the events inside the fitted horizon, the
    # observations): options that differ only after the horizon share it, as does the same draw of a scenario
    # without uncertain parameters, drawn again for its trends' uncertainty
    fit_keys = [cache_key(sc) for _, _, sc in fit_jobs]
    unique = {d: i for i, d in reversed(list(enumerate(fit_keys)))}
    order = sorted(unique.values())
    done = map_jobs(
        executor,
        fit_task,
        [(fit_jobs[i][2], cache, FitOptions(start=start)) for i in order],
        "fits",
        on_progress,
    )
    by_key = {fit_keys[i]: f for i, f in zip(order, done, strict=True)}
    fits = [by_key[d] for d in fit_keys]
    by_draw: dict[int, dict[str, dict]] = {}
    for (k, name, _), f in zip(fit_jobs, fits, strict=True):
        by_draw.setdefault(k, {})[name] = f
    kept, failed = [], []
    for k in range(draws.k):
        bad = next((f["error"] for f in by_draw[k].values() if "error" in f), None)
        if bad is None:
            kept.append(k)
        else:
            failed.append((draws.values[k], bad))
    if not kept:
        raise UserError(f"no parameter draw could be fitted; the first: {failed[0][1]}")

    if trend_uncertainty is None:
        trend_uncertainty = options[first].forecast.trend_uncertainty
    if trend_uncertainty and draws.k > 1:
        draws, by_draw = perturb_trends(options[first], draws, by_draw, kept, first)
    t_fit = time.perf_counter() - t0
    seeds = replicate_seeds(scenario.seed, replicates)
    bseeds = replicate_seeds(scenario.seed, replicates, stream=1) if independent_baseline else seeds
    per_draw = []
    for k in kept:
        params = {name: (f["alpha"], f["trend"]) for name, f in by_draw[k].items()}
        params[BASELINE] = params[first]  # the counterfactual keeps the fitted values and drops the events
        values = {name: f["event_values"] for name, f in by_draw[k].items()}
        values[BASELINE] = values[first]  # (recurring effects are in both arms, with the same fitted sizes)
        per_draw.append(([(name, with_event_values(sc, values[name])) for name, sc in arms_of[k]], params))
    # replicate by replicate: the runs of one replicate seed follow each other on a worker, which then draws their
    # burn-in pilot's random numbers once (engine.pilot_inputs); results are put back in (draw, replicate) order
    jobs = [
        (arms, params, seeds[r], steps, bseeds[r] if independent_baseline else None)
        for r in range(replicates)
        for arms, params in per_draw
    ]
    by_replicate = map_jobs(executor, replicate_task, jobs, "replicates", on_progress)
    results = [by_replicate[r * len(per_draw) + d] for d in range(len(per_draw)) for r in range(replicates)]

    K, R = len(kept), replicates
    arm_names = [name for name, _ in arms_of[kept[0]]]
    arrays = {
        arm: {m: np.stack([res["arms"][arm][m] for res in results]).reshape(K, R, steps, -1) for m in METRICS}
        for arm in arm_names
    }
    for arm in arm_names:  # shares of no purchases are undefined: one line naming why, never nan shares
        empty = ~np.isfinite(arrays[arm]["gmv_share"][:, :, -1, :]).all(axis=-1)
        if empty.any():
            k, r = map(int, np.argwhere(empty)[0])
            raise UserError(no_purchases_cause(dict(arms_of[kept[k]])[arm], arm, r, steps))
    warnings = [
        f"options {a} and {b} gave identical results in every draw and replicate: check that they differ "
        f"(a draw sets a parameter only where an option declares it uncertain)"
        for a, b in identical_options(arrays, list(options))
    ]
    # stated login shares the market cannot keep (docs/model.md 12.4): one line each, over every run
    warnings += summarize_shortfalls([res.get("login_shortfalls", []) for res in results])
    return Projection(
        scenario=options[first],
        options=options,
        baseline=baseline_full,
        draws=draws,
        kept=np.array(kept),
        failed=failed,
        seeds=seeds,
        baseline_seeds=bseeds,
        steps=steps,
        arrays=arrays,
        lost=np.array([res["lost"] for res in results]).reshape(K, R),
        destinations={
            arm: np.stack([res["destinations"][arm] for res in results]).reshape(K, R, -1) for arm in arm_names
        },
        scale=results[0]["scale"],
        fits=[by_draw[k][first] for k in kept],
        thresholds=tuple(thresholds),
        extra={"seconds": {"fits": round(t_fit, 2), "replicates": round(time.perf_counter() - t0 - t_fit, 2)}},
        warnings=warnings,
        moves={arm: collect_moves([res["moves"][arm] for res in results], K, R) for arm in arm_names},
        login_losses=collect_login_losses([res.get("login_losses", []) for res in results], K, R),
    )


def collect_login_losses(per_result: list[list[tuple]], K: int, R: int) -> list[dict]:
    """The first option's login removals over its K x R results: one dict per (step, retailer, provider) with
    ``customers``, ``base``, ``accounts`` and ``stated`` as (K, R) arrays (NaN where a result lacks it)."""
    keys: dict[tuple, int] = {}
    for losses in per_result:
        for step, retailer, provider, *_ in losses:
            keys.setdefault((step, retailer, provider), len(keys))
    vals = np.full((len(keys), 4, K * R), np.nan)
    for i, losses in enumerate(per_result):
        for step, retailer, provider, cust, base, acc, stated in losses:
            vals[keys[(step, retailer, provider)], :, i] = (cust, base, acc, np.nan if stated is None else stated)
    return [
        {
            "step": step,
            "retailer": retailer,
            "provider": provider,
            **{f: vals[k, x].reshape(K, R) for x, f in enumerate(("customers", "base", "accounts", "stated"))},
        }
        for (step, retailer, provider), k in keys.items()
    ]


def collect_moves(per_result: list[list[tuple]], K: int, R: int) -> list[dict]:
    """The moves of one arm over its K x R results (in order, draw-major): one dict per move (kind, retailer,
    other, step) with ``moved`` and ``lost`` as (K, R) arrays (NaN where a result lacks that move)."""
    keys: dict[tuple, int] = {}
    for moves in per_result:
        for kind, retailer, other, step, _, _ in moves:
            keys.setdefault((kind, retailer, other, step), len(keys))
    moved, lost = np.full((len(keys), K * R), np.nan), np.full((len(keys), K * R), np.nan)
    for i, moves in enumerate(per_result):
        for kind, retailer, other, step, mv, ls in moves:
            k = keys[(kind, retailer, other, step)]
            moved[k, i], lost[k, i] = mv, ls
    return [
        {
            "kind": kind,
            "retailer": retailer,
            "other": other,
            "step": step,
            "moved": moved[k].reshape(K, R),
            "lost": lost[k].reshape(K, R),
        }
        for (kind, retailer, other, step), k in keys.items()
    ]


#: The stream of the trends' draws (spawn key of the scenario seed; replicates use 0 and 1, back-tests 3).
TREND_STREAM = 4


def trend_pivots(scenario: Scenario) -> dict[str, float]:
    """Per retailer observed by the fit, the pivot of its fitted trend: the mean middle of the periods of the
    observations (that a fit at the scenario's cut-off uses) that give its share, in years since the calendar start.
    A line fitted through points is known best at their middle: a slope drawn from its standard error turns the
    line about that point, so a drawn trend keeps the utility there (the data's level) and moves it away from it."""
    start = scenario.calendar.start
    mids: dict[str, list[float]] = {}
    for o in scenario.fit_observations():
        mid = ((o.start - start).days + (o.end - start).days) / 2 / DAYS_PER_YEAR
        for r, _ in o.shares:
            mids.setdefault(r, []).append(mid)
    return {r: float(np.mean(v)) for r, v in mids.items()}


def perturb_trends(
    scenario: Scenario, draws: Draws, by_draw: dict[int, dict[str, dict]], kept: list[int], first: str
) -> tuple[Draws, dict[int, dict[str, dict]]]:
    """The fitted trends' uncertainty in the draws (docs/model.md section 8, v3): draw k adds z[k, j] x se to
    every trend j fitted in it (turning it about its pivot, :func:`trend_pivots`: the attractiveness moves by
    -z x se x pivot so that the utility in the middle of j's observations stays the fitted one), with z standard normal (one per draw and fitted trend, from the scenario seed's
    stream TREND_STREAM, the same for every option of the draw) and se that option's own fitted standard error
    (a nan one counts as 0). Returns the draws with one parameter per fitted trend appended (path
    ``retailers.NAME.trend``, normal around the first kept draw's fit: the report's drivers then name the trends)
    and the fits with their trends moved."""
    from scipy import stats

    names = scenario.retailer_names
    ref = by_draw[kept[0]][first]
    fitted = [n for n in names if n in ref.get("trend_se", {})]
    if not fitted:
        return draws, by_draw
    rng = np.random.default_rng(np.random.SeedSequence(scenario.seed, spawn_key=(TREND_STREAM,)))
    z = rng.standard_normal((draws.k, len(fitted)))
    pivot = trend_pivots(scenario)
    out: dict[int, dict[str, dict]] = {}
    values = [dict(v) for v in draws.values]
    for k, fits in by_draw.items():
        out[k] = {}
        for name, f in fits.items():
            if "error" in f:
                out[k][name] = f
                continue
            tr = np.array(f["trend"], dtype=float)
            al = np.array(f["alpha"], dtype=float)
            for i, n in enumerate(fitted):
                se = f.get("trend_se", {}).get(n, 0.0)
                j = names.index(n)
                move = z[k, i] * (se if math.isfinite(se) else 0.0)
                tr[j] += move
                al[j] -= move * pivot.get(n, 0.0)  # the utility at the middle of j's observations stays fitted
            out[k][name] = {**f, "trend": tr, "alpha": al}
            if name == first:
                values[k].update({f"retailers.{n}.trend": float(tr[names.index(n)]) for n in fitted})
    ref_trend = np.asarray(ref["trend"], dtype=float)
    params = tuple(
        Uncertain(
            f"retailers.{n}.trend",
            float(ref_trend[names.index(n)]),
            "normal",
            (float(ref_trend[names.index(n)]), max(float(ref["trend_se"][n]), 1e-12)),
            "fitted trend: a normal with its standard error from the fit (turned off by project --no-trend-uncertainty)",
            (-math.inf, math.inf),
        )
        for n in fitted
    )
    unit = np.column_stack([draws.unit, stats.norm.cdf(z)])
    return Draws(draws.params + params, unit, values, draws.weights, draws.source), out


def no_purchases_cause(sc: Scenario, arm: str, replicate: int, steps: int) -> str:
    """One line for a projection whose arm ``arm`` had no simulated purchase at the horizon (its shares would be
    0 / 0), naming the cause from the scenario's own values: a shopping rate that leaves no shoppers, or
    frictions that leave no buyer."""
    c, f, b = sc.consumers, sc.friction, sc.behaviour
    when = f"at the horizon ({sc.calendar.date_of(steps - 1)}) in {arm}, replicate {replicate}"
    per_step = c.shopping_rate * c.count
    if per_step < 1:
        return (
            f"{sc.source}: consumers.shopping_rate {c.shopping_rate:g} per {sc.calendar.step_days}-day step: "
            f"{per_step:.2g} simulated shoppers a step at {c.count:,} consumers, so no purchase {when} and no "
            f"shares; raise consumers.shopping_rate (or --consumers)"
        )
    return (
        f"{sc.source}: no simulated shopper bought {when}, so there are no shares: every retailer's friction "
        f"(native {f.native:g}, sso {f.sso:g}, link {f.link:g}, create {f.create:g} utility, times "
        f"behaviour.beta_friction {b.beta_friction:g}) and attractiveness leave the purchase probability ~0; lower "
        f"the frictions or raise the attractiveness"
    )


def central_fit(scenario: Scenario, cache_dir: str | None):
    """The fit of ``scenario`` at its central values (cached), which every draw's fit starts from (its values and
    Jacobian: a draw near the centre then needs a few simulations instead of a full fit); None if nothing is
    fitted or it cannot be fitted."""
    try:
        return fitted(scenario, cache_dir).calibration
    except CalibrationError:
        return None


def _spec(u) -> tuple:
    """What an uncertain parameter's draws depend on: central value, prior, its parameters, bounds, integer."""
    return (u.value, u.prior, tuple(u.args), tuple(u.bounds), u.integer)


def check_shared_draws(options: dict[str, Scenario], params) -> None:
    """Every option draws its uncertain parameters from the first option's draws (``params``): refuse (one line)
    an option that declares a parameter uncertain that the first does not, or with another range or prior."""
    first = next(iter(options))
    by_path = {p.path: p for p in params}
    for name, sc in options.items():
        for u in sc.uncertain:
            m = by_path.get(u.path)
            if m is None:
                raise UserError(
                    f"option {name}: {u.path} is uncertain there ({u.describe()}) but not in {first}, whose "
                    f"parameter draws every option shares; give it the same range or prior in {first}, or "
                    f"a plain number in {name}"
                )
            if _spec(m) != _spec(u):
                raise UserError(
                    f"option {name}: {u.path} is {u.describe()} with central value {u.value:g} there but "
                    f"{m.describe()} with central value {m.value:g} in {first}; options share one draw per "
                    f"parameter, so give both the same range, prior and central value (or a plain number)"
                )


#: The fields that make two scenario files the same market (the ones --compare may not change).
MARKET_FIELDS = (
    "retailers",
    "calendar",
    "seed",
    "consumers",
    "market_size",
    "currency",
    "observations",
    "primary_source",
    "fit_until",
)


def market_differences(a: Scenario, b: Scenario) -> list[str]:
    """``field: a's value vs b's`` (shortened) for each market field in which ``b`` differs from ``a``: retailers
    (names and order), the calendar, seed, consumer count, market size, currency, observations, primary source
    and fit cut-off. Options compared in one projection must be the same market."""
    da, db = a.to_dict(), b.to_dict()
    out = []
    for f in MARKET_FIELDS:
        va, vb = da.get(f), db.get(f)
        if f == "retailers":
            va, vb = [r["name"] for r in va], [r["name"] for r in vb]
        elif f == "consumers":
            va, vb = va["count"], vb["count"]
        elif f == "fit_until" and va != vb and a.fit_cutoff() == b.fit_cutoff():
            continue  # one states the cut-off the other's events give (an option with some events switched off)
        if va != vb:
            out.append(f"{f}: {_short(va)} vs {_short(vb)}")
    return out


def _short(v, n: int = 40) -> str:
    import json

    t = json.dumps(v, default=str) if not isinstance(v, str) else v
    return t if len(t) <= n else t[: n - 3] + "..."


def identical_options(arrays: dict[str, dict[str, np.ndarray]], names: list[str]) -> list[tuple[str, str]]:
    """Pairs of options whose every metric is identical in every draw, replicate, step and retailer."""
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if all(np.array_equal(arrays[a][m], arrays[b][m]) for m in METRICS)
    ]


# --------------------------------------------------------------------------- the summary


def summary(proj: Projection) -> dict:
    """The projection as plain data (``project --json``, projection.json, the report)."""
    sc = proj.scenario
    w = proj.weights
    horizon = sc.calendar.date_of(proj.steps - 1).isoformat()

    def share(arm):
        return {
            n: float(np.einsum("k,kr->", w, proj.horizon(arm)[:, :, j]) / proj.horizon(arm).shape[1])
            for j, n in enumerate(proj.names)
        }

    outside = [e.id for e in sc.events if e.step >= proj.steps]
    removed = [e.id for e in sc.events if e not in proj.baseline.events]
    options = {}
    for arm in proj.options:
        lo = proj.removed_from(arm)
        options[arm] = {
            "share": share(arm),
            "shift": {n: s.to_dict() for n, s in proj.shift(arm).items()},
            "revenue_shift": {
                "from": sc.calendar.date_of(lo).isoformat(),
                "to": horizon,
                "currency": sc.currency,
                **{n: s.to_dict() for n, s in proj.revenue_shift(arm).items()},
            },
        }
        if proj.moves.get(arm):
            options[arm]["moves"] = moves_summary(proj, arm)
    first = next(iter(proj.options))
    out = {
        "scenario": sc.name,
        "scenario_hash": sc.digest(),
        "seed": sc.seed,
        "consumers": sc.consumers.count,
        "steps": proj.steps,
        "horizon": horizon,
        "draws": {
            "k": len(proj.kept),
            "designed": proj.draws.k,
            "source": proj.draws.source,
            "parameters": [
                {"path": p.path, "value": p.value, "range": p.describe(), "reason": p.reason}
                | {k: v for k, v in param_of(p, sc).to_dict().items() if k not in ("path", "central", "reason")}
                for p in proj.draws.params
            ],
            "failed": [{"values": v, "reason": why} for v, why in proj.failed],
        },
        "replicates": len(proj.seeds),
        "paired_seeds": proj.paired,
        "baseline_without": removed,
        "baseline": baseline_words(sc, [e for e in sc.events if e.id in removed]),  # the same in words
        "events_outside_horizon": outside,
        "share_scenario": options[first]["share"],
        "share_baseline": share(BASELINE),
        "shift": options[first]["shift"],
        "revenue_shift": options[first]["revenue_shift"],
        "interval_covers": next(iter(options[first]["shift"].values()))["covers"],
        "thresholds_pp": list(proj.thresholds),
        "lost_login": _lost_login(proj),
        "observed": list(observed_of(sc)),  # the decision-time observations (charts show them)
        "fit_until": fit_until(sc),  # the last day of the data the fit uses: the model extrapolates after it
        "calibration": _fit_summary(proj),
        "seconds": proj.extra.get("seconds"),
        "warnings": list(proj.warnings),
    }
    if "moves" in options[first]:  # entries, exits, acquisitions (a scenario without them: no key)
        out["moves"] = options[first]["moves"]
    if len(proj.options) > 1:
        names = list(proj.options)
        out["options"] = options
        out["compare"] = {
            f"{a} - {names[0]}": {n: s.to_dict() for n, s in proj.difference(a, names[0]).items()} for a in names[1:]
        }
    return out


def observed_of(sc) -> tuple[dict, ...]:
    """The scenario's decision-time observations (never a held-out one) as plain data."""
    return tuple(
        {
            "source": o.source,
            "label": o.label,
            "start": o.start.isoformat(),
            "end": o.end.isoformat(),
            "shares": dict(o.shares),
        }
        for o in sc.observations
        if not o.holdout
    )


def fit_until(sc) -> str | None:
    """The last day of the data the fit uses (its observations up to the cut-off): the model extrapolates after
    it (None with no observation)."""
    obs = sc.fit_observations()
    return max(o.end for o in obs).isoformat() if obs else None


def baseline_words(sc, removed) -> str:
    """The baseline in words: "without Alibaba buys 18% of Weibo; JD stops accepting Weibo login" (the events it
    removes, by what they do), or "the scenario itself (no event removed)"."""
    return (
        f"without {events_label(removed, sc.provider_names)}" if removed else "the scenario itself (no event removed)"
    )


def moves_summary(proj: Projection, arm: str) -> list[dict]:
    """The entries, exits and acquisitions of ``arm`` as plain data, in the order they happened: the fields of a
    run's summary.json ``moves`` (:func:`marketsim.engine.outputs.moves_to_dicts`), each number (shoppers moved
    and lost, an entrant's GMV share at the horizon) as its mean and 95% interval over the draws and replicates,
    with what the interval covers."""
    sc, draws = proj.options[arm], proj.kept_draws()

    def stat(x: np.ndarray) -> dict:
        s = summarize(x, draws)
        return {"mean": s.mean, "ci95": list(s.interval), "covers": s.covers}

    out = []
    for mv in proj.moves[arm]:
        rec = MoveRecord(mv["step"], mv["kind"], mv["retailer"], mv["other"])
        d: dict = {
            "kind": mv["kind"],
            "event": move_event(sc, rec),
            "step": mv["step"],
            "date": sc.calendar.date_of(mv["step"]).isoformat(),
        }
        if mv["kind"] == "acquisition":
            d.update(acquirer=mv["retailer"], target=mv["other"], moved=stat(mv["moved"]), lost=stat(mv["lost"]))
        elif mv["kind"] == "exit":
            d.update(retailer=mv["retailer"], lost=stat(mv["lost"]))
        else:
            d.update(
                retailer=mv["retailer"],
                share_at_horizon=stat(proj.horizon(arm)[:, :, proj.names.index(mv["retailer"])]),
            )
        out.append(d)
    return out


def _lost_login(proj: Projection) -> dict:
    """Consumers who lost a login by an event of the first option, and where they last bought at the horizon in
    that option and in the baseline. ``removal_in_baseline`` is true when the baseline keeps a login removal
    (a ``--baseline-without`` of other events): then those consumers lost it in both arms."""
    w = proj.weights
    consumers = float(w @ proj.lost.mean(axis=1)) * proj.scale
    dest = proj.destination_shares()
    first = next(iter(proj.options))
    return {
        "consumers": consumers,
        "consumers_rounded": round_to(consumers),
        "destinations_scenario": dest[first],
        "destinations_baseline": dest[BASELINE],
        "removal_in_baseline": any(e.action.revokes_logins for e in proj.baseline.events),
        "removals": _login_removals(proj),
    }


def _login_removals(proj: Projection) -> list[dict]:
    """Each login removal of the first option, derived from the retailer's stated login mix (the fields of a run's
    summary.json ``lost_login``, :func:`marketsim.engine.outputs.login_losses_to_dicts`), each number as its mean
    and 95% interval over the draws and replicates (``stated``: its central value; ``stated_draws`` over draws)."""
    sc, draws = proj.scenario, proj.kept_draws()
    unc = {u.path: u for u in sc.uncertain}
    dates = {e.id: e.date for e in sc.events}

    def stat(x: np.ndarray) -> dict:
        s = summarize(x, draws)
        return {"mean": s.mean, "ci95": list(s.interval), "covers": s.covers}

    out = []
    for ll in proj.login_losses:
        path = f"retailers.{ll['retailer']}.sso_share.{ll['provider']}"
        eid = next(
            (
                e.id
                for e in sc.events
                if e.step == ll["step"]
                and getattr(e.action, "retailer", None) == ll["retailer"]
                and getattr(e.action, "provider", None) == ll["provider"]
            ),
            None,
        )
        stated = dict(next(r for r in sc.retailers if r.name == ll["retailer"]).sso_share).get(ll["provider"])
        u = unc.get(path)
        base = ll["base"]
        out.append(
            {
                "event": eid,
                "step": ll["step"],
                "date": (dates[eid] if eid in dates else sc.calendar.date_of(ll["step"])).isoformat(),
                "retailer": ll["retailer"],
                "provider": ll["provider"],
                "customers": stat(ll["customers"]),
                "customer_base": stat(base),
                "share": stat(np.where(base > 0, ll["customers"] / np.where(base > 0, base, 1), np.nan)),
                "accounts": stat(ll["accounts"]),
                "stated": stated,
                "stated_draws": stat(ll["stated"]) if np.isfinite(ll["stated"]).all() else None,
                "stated_path": path,
                "stated_range": None if u is None or u.prior != "uniform" else [float(x) for x in u.args],
                "stated_reason": None if u is None else u.reason,
            }
        )
    return out


def _fit_summary(proj: Projection) -> dict | None:
    f = [x for x in proj.fits if x.get("key")]
    if not f:
        return None
    res = [x["max_residual_pp"] for x in f]
    return {
        "fits": len(f),
        "distinct": len({x["key"] for x in f}),
        "dof": f[0]["dof"],
        "max_residual_pp": max(res),
        "median_max_residual_pp": float(np.median(res)),
        "key": f[0]["key"],
    }


def round_to(x: float, digits: int = 2) -> float:
    """``x`` to ``digits`` significant figures (what a model of this kind can know: 3,585,344 -> 3,600,000)."""
    if not x or not math.isfinite(x):
        return x
    return float(round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1))
