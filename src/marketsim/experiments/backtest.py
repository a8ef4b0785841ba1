"""Back-tests (``marketsim backtest SCENARIO --until DATE``): fit on the observations that end before DATE,
project the rest with the full uncertainty, and compare with what was observed and with two naive forecasts.

The fit is the scenario's own (docs/model.md section 8) with the earlier cut-off; parameters that the earlier data
cannot identify (a trend seen in one period only, an offset the primary source cannot anchor) are fixed at 0
or dropped, and the output says so. The prediction for a held-out observation is the simulated share over its
period plus its source's fitted offset (none if the source's offset for that retailer could not be fitted),
over K parameter draws x R replicates; its 90% interval is the 5th-95th percentile of that mixture plus the
observation's own error (a normal of ``sigma_pp`` points: 1 by default, an assumption shared with
``marketsim fit``; sources disagree by several points, docs/sources.md).

Naive forecasts, per held-out observation, from the same source's earlier observations of the retailer:
*persistence* holds the last observed share flat; *trend* extends the least-squares line through them (by the
periods' middles), where there are two or more. Their errors are reported where they exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from marketsim.errors import UserError
from marketsim.experiments.posterior import DEFAULT_SIGMA_PP
from marketsim.experiments.projection import replicate_seeds
from marketsim.experiments.tasks import fit_task, map_jobs, with_draw
from marketsim.experiments.uncertainty import Draws, weighted_quantile
from marketsim.figures.plots import mark_events, retailer_colors, subplots
from marketsim.figures.style import figure_function
from marketsim.fit.calibrate import FitPath, expected_path, fit_problem, with_event_values
from marketsim.fit.options import FitOptions
from marketsim.scenario.core import Observation, Scenario


def _mid(o: Observation) -> float:
    """The middle of an observation's period, in days since 2000-01-01."""
    return ((o.start - dt.date(2000, 1, 1)).days + (o.end - dt.date(2000, 1, 1)).days) / 2


def naive_forecasts(past: list[Observation], target: Observation, retailer: str) -> tuple[float | None, float | None]:
    """(persistence, trend) forecasts of ``retailer``'s share in ``target`` from ``past`` observations of the same
    source (fractions), or None where they do not exist."""
    same = sorted((o for o in past if o.source == target.source and o.share(retailer) is not None), key=lambda o: o.end)
    if not same:
        return None, None
    persistence = same[-1].share(retailer)
    if len(same) < 2:
        return persistence, None
    x = np.array([_mid(o) for o in same])
    y = np.array([o.share(retailer) for o in same])
    slope, intercept = np.polyfit(x, y, 1)
    return persistence, float(intercept + slope * _mid(target))


@dataclass
class Backtest:
    scenario: Scenario
    until: dt.date
    heldout: list[dict]
    mae: dict[str, float | None]
    counts: dict[str, int]
    coverage90: tuple[int, int]  # (covered, held-out observations)
    draws: int
    replicates: int
    fixed: list[str]  # what the earlier data could not identify
    series: dict  # for the chart: dates, predictive bands per retailer

    def to_dict(self) -> dict:
        k, n = self.coverage90
        return {
            "scenario": self.scenario.name,
            "until": self.until.isoformat(),
            "heldout": self.heldout,
            "mae": self.mae,
            "mae_n": self.counts,
            "coverage90": k / n if n else None,
            "coverage90_count": f"{k} of {n}",
            "draws": self.draws,
            "replicates": self.replicates,
            "fixed": self.fixed,
        }


def backtest(
    scenario: Scenario,
    until: dt.date,
    *,
    draws: Draws,
    replicates: int,
    executor=None,
    cache_dir=None,
    on_progress=None,
    sigma_pp: float = DEFAULT_SIGMA_PP,
) -> Backtest:
    """Fit ``scenario`` on its observations ending before ``until`` and predict the later ones (module docstring)."""
    past = [o for o in scenario.observations if o.end < until]
    later = [o for o in scenario.observations if o.end >= until]
    if not past:
        raise UserError(
            f"{scenario.source}: no observation ends before {until}: nothing to fit; choose a later --until"
        )
    if not later:
        raise UserError(
            f"{scenario.source}: no observation ends on or after {until}: nothing to predict; choose an earlier --until"
        )
    cut = until - dt.timedelta(days=1)
    sc = scenario
    full = fit_problem(sc, cut, drop_unidentified=True)
    fixed = [
        f"trend[{r.name}] fixed at 0 (no two periods of it before {until})"
        for j, r in enumerate(sc.retailers)
        if r.calibrate_trend and j not in full.free_trend
    ]
    cache = None if cache_dir is None else str(cache_dir)
    options = FitOptions(until=cut, drop_unidentified=True)
    fits = map_jobs(executor, fit_task, [(with_draw(sc, v), cache, options) for v in draws.values], "fits", on_progress)
    kept = [k for k, f in enumerate(fits) if "error" not in f]
    if not kept:
        raise UserError(
            f"no parameter draw could be fitted to the observations before {until}; the first: {fits[0]['error']}"
        )
    horizon = max(sc.calendar.step_of(o.end) for o in later) + 1
    seeds = replicate_seeds(sc.seed, replicates)
    jobs = [
        (
            with_event_values(with_draw(sc, draws.values[k]), fits[k]["event_values"]),
            fits[k]["alpha"],
            fits[k]["trend"],
            s,
            horizon,
            cut,
        )
        for k in kept
        for s in seeds
    ]
    paths = map_jobs(executor, _path_task, jobs, "replicates", on_progress)
    w = np.repeat(draws.weights[kept] / draws.weights[kept].sum() / replicates, replicates)

    names = sc.retailer_names
    cal = sc.calendar
    rng = np.random.default_rng(np.random.SeedSequence(sc.seed, spawn_key=(3,)))
    rows, errs, covered, n = [], {"model": [], "persistence": [], "trend": []}, 0, 0
    for o in later:
        wts = np.array(
            [
                [
                    max(0, (min(cal.date_of(t + 1), o.end + dt.timedelta(days=1)) - max(cal.date_of(t), o.start)).days)
                    / cal.step_days
                    for t in range(horizon)
                ]
            ]
        )
        for rn, obs_share in o.shares:
            j = names.index(rn)
            offs = np.array([(fits[k]["offsets"] or {}).get(o.source, {}).get(rn, 0.0) for k in kept for _ in seeds])
            pred = np.array([p.period_shares(wts)[0, j] * 100 for p in paths]) + offs
            mean = float(w @ pred)
            # an observation is the simulated share plus the source's own error (sigma_pp points, an assumption
            # shared with `marketsim fit`): the predictive interval is that of the sum
            noisy = rng.choice(pred, size=20_000, p=w) + rng.normal(0, sigma_pp, size=20_000)
            lo, hi = np.percentile(noisy, [5, 95])
            pers, trend = naive_forecasts(past, o, rn)
            row = {
                "source": o.source,
                "period": {"label": o.label, "start": o.start.isoformat(), "end": o.end.isoformat()},
                "retailer": rn,
                "observed": obs_share * 100,
                "predicted": mean,
                "lo90": float(lo),
                "hi90": float(hi),
                "persistence": None if pers is None else pers * 100,
                "trend": None if trend is None else trend * 100,
            }
            rows.append(row)
            errs["model"].append(abs(mean - obs_share * 100))
            if pers is not None:
                errs["persistence"].append(abs(pers - obs_share) * 100)
            if trend is not None:
                errs["trend"].append(abs(trend - obs_share) * 100)
            covered += lo <= obs_share * 100 <= hi
            n += 1
    mae = {k: (float(np.mean(v)) if v else None) for k, v in errs.items()}
    bands = {}
    for j, rn in enumerate(names):
        x = np.array([p.shares[:, j] for p in paths]) * 100
        bands[rn] = {
            q: [float(weighted_quantile(x[:, t], w, qq)) for t in range(horizon)]
            for q, qq in (("lo", 0.05), ("median", 0.5), ("hi", 0.95))
        }
    return Backtest(
        sc,
        until,
        rows,
        mae,
        {k: len(v) for k, v in errs.items()},
        (int(covered), n),
        len(kept),
        replicates,
        fixed,
        {"steps": horizon, "bands": bands, "past": past, "later": later},
    )


def _path_task(scenario: Scenario, alpha, trend, seed: int, horizon: int, cut: dt.date | None = None) -> FitPath:
    """The expected path of one draw and seed; after ``cut`` (the back-test's fit cut-off) the trends follow the
    scenario's ``forecast`` rule, as they would after a real fit at that date."""
    return expected_path(scenario, alpha, trend, seed, scenario.consumers.count, horizon, trend_cut=cut)


@figure_function
def backtest_figure(bt: Backtest):
    """The observed series (filled: fitted, hollow: held out) with the predictive 90% band of every retailer."""
    import pandas as pd

    sc = bt.scenario
    colors = retailer_colors(sc)
    dates = pd.to_datetime([sc.calendar.date_of(t) for t in range(bt.series["steps"])])
    fig, ax = subplots(figsize=(10, 5.6), dpi=150)
    for rn, b in bt.series["bands"].items():
        ax.fill_between(dates, b["lo"], b["hi"], color=colors[rn], alpha=0.2, lw=0, label=f"{rn}: 90% predictive band")
        ax.plot(dates, b["median"], color=colors[rn], lw=1.2)
    for group, filled in ((bt.series["past"], True), (bt.series["later"], False)):
        for o in group:
            mid = pd.Timestamp(o.start + (o.end - o.start) / 2)
            for rn, v in o.shares:
                ax.plot([pd.Timestamp(o.start), pd.Timestamp(o.end)], [v * 100] * 2, color=colors[rn], lw=1, alpha=0.6)
                ax.plot([mid], [v * 100], "o", ms=7, color=colors[rn], mfc=colors[rn] if filled else "white", mew=1.5)
                ax.annotate(
                    o.source, (mid, v * 100), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7
                )
    ax.axvline(pd.Timestamp(bt.until), color="black", lw=1)
    ax.annotate(
        f"fit until {bt.until}",
        (pd.Timestamp(bt.until), 1.0),
        xycoords=("data", "axes fraction"),
        rotation=90,
        va="top",
        ha="right",
        fontsize=8,
    )
    mark_events(ax, sc, bt.series["steps"])
    ax.set_ylabel("GMV share (%)")
    k, n = bt.coverage90
    ax.set_title(
        f"{sc.name}: back-test, fitted on observations before {bt.until} (filled), held out (hollow); "
        f"{k} of {n} inside their 90% band",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    fig.tight_layout()
    return fig
