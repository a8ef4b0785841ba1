"""Rolling-origin back-tests (``marketsim backtest SCENARIO --rolling``; docs/model.md section 8, "Held-out
observations"): fit at each cut-off in turn and predict every observation after it, then score the predictions
by horizon against two naive forecasts.

**Origins.** The candidate origins are the distinct end dates of the scenario's observations plus one day, in
order. At origin D the fit is the back-test's (:mod:`marketsim.experiments.backtest`): it uses only the
observations that end before D (on or before the cut-off D - 1 day: the cut-off of ``fit_problem`` and
``FitOptions(until=...)``, so nothing after it can reach the fit, nor its cache key), with the trends and
offsets that data cannot identify fixed at 0 or dropped. An origin is skipped, with one line saying why, when
nothing ends on or after it (nothing to predict), when the fit still refuses (e.g. too few equations, or more than
one calibrated retailer never observed yet), or when no parameter draw could be fitted.

**Predictions.** Every observed share of an observation ending on or after D is predicted with the back-test's
machinery (K draws x R replicates, the source's fitted offset, the observation error of each draw's fit:
:mod:`marketsim.fit.observation`, or ``sigma_pp`` points where given): the mean,
and the 50% and 90% intervals (25th-75th and 5th-95th percentiles of the same predictive sample). Its horizon
is ``ceil((observation end - D) / 91.3 days)`` quarters, at least 1.

**Baselines** (fractions in, points out), from the observations that end before D:

* *persistence*: the last value (by period end) of the same retailer from the same source. If that source never
  observed the retailer before D, the last value of the retailer from any source (latest end; ties: the first
  source name in sort order), as it was reported: no adjustment for the level difference between sources.
* *drift*: persistence plus the mean change per day of that same (source, retailer) series -- (last - first) /
  (days between their periods' middles), first and last by period end -- times the days from the middle of the
  last one's period to the middle of the held-out one's. With one observation of the series (or first and last
  with the same middle), drift equals persistence.

A held-out share of a retailer that no source observed before D has no baselines: it is listed (``persistence``
and ``drift`` null) but left out of the per-horizon scores, so that the model and the baselines are scored on the
same values. Per horizon: n, the mean absolute error (points) of the model's mean, persistence and drift, and the
fraction of the n held-out values inside the model's 50% and 90% intervals.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from marketsim.errors import UserError
from marketsim.experiments.backtest import observation_summary, path_task, predict_heldout
from marketsim.experiments.posterior import refuse_ex_post_leak
from marketsim.experiments.projection import replicate_seeds
from marketsim.experiments.tasks import fit_task, map_jobs, with_draw
from marketsim.experiments.uncertainty import Draws
from marketsim.fit.calibrate import CalibrationError, fit_problem, with_event_values
from marketsim.fit.options import FitOptions
from marketsim.scenario.core import Observation, Scenario

#: Days in a quarter, for the horizon of a prediction (365.25 / 4, rounded).
QUARTER_DAYS = 91.3


def candidate_origins(sc: Scenario) -> list[dt.date]:
    """The distinct end dates of ``sc``'s observations plus one day, in order."""
    return sorted({o.end + dt.timedelta(days=1) for o in sc.observations})


def horizon_quarters(origin: dt.date, end: dt.date) -> int:
    """Quarters from ``origin`` to an observation ending on ``end``: ceil(days / 91.3), at least 1."""
    return max(1, math.ceil((end - origin).days / QUARTER_DAYS))


def _mid(o: Observation) -> float:
    """The middle of an observation's period, in days since 2000-01-01."""
    base = dt.date(2000, 1, 1)
    return ((o.start - base).days + (o.end - base).days) / 2


def baselines(past: list[Observation], target: Observation, retailer: str) -> tuple[float | None, float | None]:
    """(persistence, drift) forecasts (fractions) of ``retailer``'s share in ``target`` from the observations
    ``past`` (those that end before the origin), or (None, None) when no source observed the retailer in
    ``past``. The rules are the module docstring's."""
    seen = [o for o in past if o.share(retailer) is not None]
    if not seen:
        return None, None
    same = [o for o in seen if o.source == target.source]
    if not same:
        last_any = min(seen, key=lambda o: (-o.end.toordinal(), o.source))
        same = [o for o in seen if o.source == last_any.source]
    series = sorted(same, key=lambda o: (o.end, o.start))
    first, last = series[0], series[-1]
    v_last = last.share(retailer)
    v_first = first.share(retailer)
    assert v_last is not None and v_first is not None
    days = _mid(last) - _mid(first)
    if len(series) < 2 or days == 0:
        return v_last, v_last
    return v_last, v_last + (v_last - v_first) / days * (_mid(target) - _mid(last))


@dataclass
class OriginPlan:
    """An origin whose fit is identified: the observations fitted and predicted, what the data cannot identify."""

    origin: dt.date
    past: list[Observation]
    later: list[Observation]
    fixed: list[str]
    # the scenario its paths simulate (None: the back-tested one); e.g. with the trend rule chosen on the data
    # before this origin (marketsim.experiments.trend_choice.per_origin)
    scenario: Scenario | None = None

    @property
    def cut(self) -> dt.date:
        return self.origin - dt.timedelta(days=1)


def plan_origins(sc: Scenario) -> tuple[list[OriginPlan], list[str]]:
    """The origins to fit at (module docstring) and one line per candidate origin skipped, saying why."""
    plans, skipped = [], []
    for origin in candidate_origins(sc):
        past = [o for o in sc.observations if o.end < origin]
        later = [o for o in sc.observations if o.end >= origin]
        if not later:
            skipped.append(f"origin {origin}: no observation ends on or after it; nothing to predict")
            continue
        try:
            prob = fit_problem(sc, origin - dt.timedelta(days=1), drop_unidentified=True)
        except CalibrationError as e:
            skipped.append(f"origin {origin}: the fit refuses: {e}")
            continue
        fixed = [
            f"trend[{r.name}] fixed at 0 (no two periods of it before {origin})"
            for j, r in enumerate(sc.retailers)
            if r.calibrate_trend and j not in prob.free_trend
        ]
        plans.append(OriginPlan(origin, past, later, fixed))
    return plans, skipped


@dataclass
class RollingBacktest:
    scenario: Scenario
    horizons: list[dict]
    heldout: list[dict]
    origins: list[dict]  # per origin fitted: date, observations fitted, draws kept, fits, what was fixed
    skipped: list[str]  # one line per candidate origin skipped
    draws: int
    replicates: int
    sigma_pp: float | None  # --sigma: every source's observation error (None: each fit's observation model)
    unscored: int = 0  # held-out shares without baselines (left out of the horizons' scores)

    def to_dict(self) -> dict:
        """The documented result: per horizon n, MAEs and coverage; every held-out share (points)."""
        return {"horizons": self.horizons, "heldout": self.heldout}

    def details(self) -> dict:
        """What is stored: :meth:`to_dict` plus the origins, what was skipped and the settings of the run."""
        return {
            **self.to_dict(),
            "scenario": self.scenario.name,
            "rolling": True,
            "origins": self.origins,
            "skipped": self.skipped,
            "unscored": self.unscored,
            "draws": self.draws,
            "replicates": self.replicates,
            "sigma_pp": self.sigma_pp,
        }


def _tasks_total(plans: list[OriginPlan], draws: Draws, replicates: int) -> int:
    return len(plans) * draws.k * (replicates + 1)


def check_plans(sc: Scenario, plans: list[OriginPlan], skipped: list[str]) -> None:
    """Refuse, in one line, a rolling back-test without a usable origin, or one whose ex-post prior already saw
    what an origin predicts (it would score nothing): callers check this before any costly work."""
    if not plans:
        why = skipped[0] if skipped else "it has no observations"
        raise UserError(
            f"{sc.source}: no cut-off has an identified fit and observations after it "
            f"({len(skipped)} tried; the first: {why})"
        )
    for p in plans:  # a prior that saw what an origin predicts scores nothing
        refuse_ex_post_leak(sc, p.origin, p.later)


def rolling_backtest(
    scenario: Scenario,
    *,
    draws: Draws,
    replicates: int,
    executor=None,
    cache_dir=None,
    on_progress=None,
    sigma_pp: float | None = None,
    plan: tuple[list[OriginPlan], list[str]] | None = None,
) -> RollingBacktest:
    """Fit ``scenario`` at every origin in turn and predict the observations after each (module docstring).
    ``plan``: :func:`plan_origins` of ``scenario`` when the caller already has it. Progress goes to
    ``on_progress(stage, done, total)`` with the stages "fits" (origins x draws) and "replicates"."""
    sc = scenario
    plans, skipped = plan if plan is not None else plan_origins(sc)
    skipped = list(skipped)
    check_plans(sc, plans, skipped)
    cache = None if cache_dir is None else str(cache_dir)
    fit_jobs = [
        (with_draw(sc, v), cache, FitOptions(until=p.cut, drop_unidentified=True)) for p in plans for v in draws.values
    ]
    fits_all = map_jobs(executor, fit_task, fit_jobs, "fits", on_progress)
    K = draws.k
    horizon = max(sc.calendar.step_of(o.end) for o in sc.observations) + 1
    seeds = replicate_seeds(sc.seed, replicates)
    used: list[tuple[OriginPlan, list[int], list[dict]]] = []
    for i, p in enumerate(plans):
        fits = fits_all[i * K : (i + 1) * K]
        kept = [k for k, f in enumerate(fits) if "error" not in f]
        if not kept:
            skipped.append(f"origin {p.origin}: no parameter draw could be fitted; the first: {fits[0]['error']}")
            continue
        used.append((p, kept, fits))
    path_jobs = [
        (
            with_event_values(with_draw(p.scenario or sc, draws.values[k]), fits[k]["event_values"]),
            fits[k]["alpha"],
            fits[k]["trend"],
            s,
            horizon,
            p.cut,  # after the origin's cut-off the trends follow the scenario's forecast rule
        )
        for p, kept, fits in used
        for k in kept
        for s in seeds
    ]
    paths_all = map_jobs(executor, path_task, path_jobs, "replicates", on_progress)
    if not used:
        raise UserError(f"{sc.source}: no origin could be fitted; {'; '.join(skipped)}")

    heldout: list[dict] = []
    origins: list[dict] = []
    at = 0
    for p, kept, fits in used:
        n_paths = len(kept) * replicates
        paths = paths_all[at : at + n_paths]
        at += n_paths
        w = np.repeat(draws.weights[kept] / draws.weights[kept].sum() / replicates, replicates)
        rng = np.random.default_rng(np.random.SeedSequence(sc.seed, spawn_key=(3, p.origin.toordinal())))
        kept_fits = [fits[k] for k in kept]
        for o, rn, pred in predict_heldout(sc, p.later, kept_fits, replicates, paths, w, horizon, rng, sigma_pp):
            share = o.share(rn)
            assert share is not None
            pers, drift = baselines(p.past, o, rn)
            heldout.append(
                {
                    "source": o.source,
                    "period": {"label": o.label, "start": o.start.isoformat(), "end": o.end.isoformat()},
                    "retailer": rn,
                    "observed": share * 100,
                    **pred,
                    "persistence": None if pers is None else pers * 100,
                    "drift": None if drift is None else drift * 100,
                    "origin": p.origin.isoformat(),
                }
            )
        origins.append(
            {
                "origin": p.origin.isoformat(),
                "fitted": len(p.past),
                "predicted": sum(len(o.shares) for o in p.later),
                "draws": len(kept),
                "fits": [
                    {
                        "alpha": list(map(float, f["alpha"])),
                        "trend": list(map(float, f["trend"])),
                        "offsets": f["offsets"],
                    }
                    for f in kept_fits
                ],
                "fixed": p.fixed,
                "observation_error": observation_summary(kept_fits, draws.weights[kept], sigma_pp),
            }
        )
    horizons, unscored = score_by_horizon(heldout)
    return RollingBacktest(sc, horizons, heldout, origins, skipped, K, replicates, sigma_pp, unscored=unscored)


def score_by_horizon(heldout: list[dict]) -> tuple[list[dict], int]:
    """Per horizon (quarters, ascending): {"quarters", "n", "mae": {"model", "persistence", "drift"},
    "coverage": {"50", "90"}} over the held-out shares that have baselines; and how many had none."""
    groups: dict[int, list[dict]] = {}
    unscored = 0
    for h in heldout:
        if h["persistence"] is None:
            unscored += 1
            continue
        q = horizon_quarters(dt.date.fromisoformat(h["origin"]), dt.date.fromisoformat(h["period"]["end"]))
        groups.setdefault(q, []).append(h)
    out = []
    for q in sorted(groups):
        g = groups[q]
        obs = np.array([h["observed"] for h in g])

        def mae(key: str, g=g, obs=obs) -> float:
            return float(np.mean(np.abs(np.array([h[key] for h in g]) - obs)))

        out.append(
            {
                "quarters": q,
                "n": len(g),
                "mae": {"model": mae("predicted"), "persistence": mae("persistence"), "drift": mae("drift")},
                "coverage": {
                    "50": float(np.mean([h["lo50"] <= h["observed"] <= h["hi50"] for h in g])),
                    "90": float(np.mean([h["lo90"] <= h["observed"] <= h["hi90"] for h in g])),
                },
            }
        )
    return out, unscored
