"""Back-tests (``marketsim backtest SCENARIO --until DATE``): fit on the observations that end before DATE,
project the rest with the full uncertainty, and compare with what was observed and with two naive forecasts.
Held-out observations (``holdout: true``, docs/model.md section 8) are never fitted, whatever their dates: they are
always among the observations predicted, in addition to those that end on or after DATE.

The fit is the scenario's own (docs/model.md section 8) with the earlier cut-off; parameters that the earlier data
cannot identify (a trend seen in one period only, an offset the primary source cannot anchor) are fixed at 0
or dropped, and the output says so. The prediction for a held-out observation is the simulated share over its
period plus its source's fitted offset (none if the source's offset for that retailer could not be fitted),
over K parameter draws x R replicates; its 90% interval is the 5th-95th percentile of that mixture plus the
observation's own error, its 50% interval the 25th-75th percentile of the same sample. The observation's error is
the observation model of the fit each draw comes from (:mod:`marketsim.fit.observation`, shared with ``marketsim
fit``): its source's error estimated from that fit's residuals with a stated prior (drawn from its posterior per
sample: a Student t), the offset's own error, and for a source or (source, retailer) pair the fit never saw, the
prior's error and the spread of offsets between sources (sources disagree by 3-8 points, docs/sources.md).
``sigma_pp`` (``--sigma``) overrides every source's error with a fixed number of points.

``marketsim backtest SCENARIO --rolling`` repeats this at every cut-off in turn: :mod:`marketsim.experiments.rolling`.

Naive forecasts, per held-out observation, from the same source's earlier observations of the retailer:
*persistence* holds the last observed share flat; *trend* extends the least-squares line through them (by the
periods' middles), where there are two or more. Their errors are reported where they exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np

from marketsim.errors import UserError
from marketsim.experiments.posterior import refuse_ex_post_leak
from marketsim.experiments.projection import replicate_seeds
from marketsim.experiments.tasks import fit_task, map_jobs, with_draw
from marketsim.experiments.uncertainty import Draws, weighted_quantile
from marketsim.figures.plots import mark_events, retailer_colors, subplots
from marketsim.figures.style import figure_function
from marketsim.fit.calibrate import FitPath, expected_path, fit_problem, period_weights, with_event_values
from marketsim.fit.observation import ObservationModel, estimate
from marketsim.fit.options import FitOptions
from marketsim.scenario.core import Observation, Scenario

#: Draws of the predictive sample per held-out share (its percentiles are the intervals: the 5% point of 20,000
#: draws moves by about 0.03 points from one sample to another).
PREDICTIVE_SAMPLES = 20_000


def _mid(o: Observation) -> float:
    """The middle of an observation's period, in days since 2000-01-01."""
    return ((o.start - dt.date(2000, 1, 1)).days + (o.end - dt.date(2000, 1, 1)).days) / 2


def naive_forecasts(past: list[Observation], target: Observation, retailer: str) -> tuple[float | None, float | None]:
    """(persistence, trend) forecasts of ``retailer``'s share in ``target`` from ``past`` observations of the same
    source that end before it does (fractions), or None where they do not exist. (A held-out observation may lie
    inside the fitted period: observations ending after it are not the past of it.)"""
    same = sorted(
        (o for o in past if o.source == target.source and o.share(retailer) is not None and o.end < target.end),
        key=lambda o: o.end,
    )
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
    #: per source: the observation error used (points) and how it was set (:func:`observation_summary`)
    observation_error: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        k, n = self.coverage90
        doc = {
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
            "observation_error": self.observation_error,
        }
        summary = self.holdout_summary()
        if summary is not None:
            doc["holdout"] = summary
        return doc

    def holdout_summary(self) -> dict | None:
        """The errors and the coverage over the held-out observations alone (``holdout: true``), or None if the
        scenario has none: the comparison a validation file (validation/) is for."""
        rows = [h for h in self.heldout if h["holdout"]]
        if not rows:
            return None
        errs = {
            f: [abs(h[f] - h["observed"]) for h in rows if h[f] is not None]
            for f in ("predicted", "persistence", "trend")
        }
        covered = sum(h["lo90"] <= h["observed"] <= h["hi90"] for h in rows)
        return {
            "mae": {("model" if f == "predicted" else f): (float(np.mean(v)) if v else None) for f, v in errs.items()},
            "mae_n": {("model" if f == "predicted" else f): len(v) for f, v in errs.items()},
            "coverage90": covered / len(rows),
            "coverage90_count": f"{covered} of {len(rows)}",
        }


def split_at(scenario: Scenario, until: dt.date) -> tuple[list[Observation], list[Observation]]:
    """(fitted, predicted) observations of a back-test from ``until``: those that may be fitted (not held out) and
    end before it, and those that end on or after it or are held out. Refuses, in one line, a back-test with nothing
    to fit or nothing to predict, or one whose ex-post prior already saw what it predicts: callers check this before
    any costly work."""
    past = [o for o in scenario.observations if o.end < until and not o.holdout]
    later = [o for o in scenario.observations if o.end >= until or o.holdout]
    if not past:
        raise UserError(
            f"{scenario.source}: no observation that may be fitted (not held out) ends before {until}: nothing to "
            f"fit; choose a later --until"
        )
    if not later:
        raise UserError(
            f"{scenario.source}: no observation ends on or after {until} and none is held out: nothing to predict; "
            f"choose an earlier --until"
        )
    refuse_ex_post_leak(scenario, until, later)  # a prior that saw what is predicted scores nothing
    return past, later


def backtest(
    scenario: Scenario,
    until: dt.date,
    *,
    draws: Draws,
    replicates: int,
    executor=None,
    cache_dir=None,
    on_progress=None,
    sigma_pp: float | None = None,
) -> Backtest:
    """Fit ``scenario`` on its observations ending before ``until`` and predict the later ones and every held-out
    one (module docstring)."""
    past, later = split_at(scenario, until)
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
    paths = map_jobs(executor, path_task, jobs, "replicates", on_progress)
    w = np.repeat(draws.weights[kept] / draws.weights[kept].sum() / replicates, replicates)

    rng = np.random.default_rng(np.random.SeedSequence(sc.seed, spawn_key=(3,)))
    preds = predict_heldout(sc, later, [fits[k] for k in kept], len(seeds), paths, w, horizon, rng, sigma_pp)
    rows, errs, covered, n = [], {"model": [], "persistence": [], "trend": []}, 0, 0
    for o, rn, pred in preds:
        obs_share = o.share(rn)
        assert obs_share is not None
        pers, trend = naive_forecasts(past, o, rn)
        row = {
            "source": o.source,
            "period": {"label": o.label, "start": o.start.isoformat(), "end": o.end.isoformat()},
            "holdout": o.holdout,
            "retailer": rn,
            "observed": obs_share * 100,
            **pred,
            "persistence": None if pers is None else pers * 100,
            "trend": None if trend is None else trend * 100,
        }
        rows.append(row)
        errs["model"].append(abs(pred["predicted"] - obs_share * 100))
        if pers is not None:
            errs["persistence"].append(abs(pers - obs_share) * 100)
        if trend is not None:
            errs["trend"].append(abs(trend - obs_share) * 100)
        covered += pred["lo90"] <= obs_share * 100 <= pred["hi90"]
        n += 1
    mae = {k: (float(np.mean(v)) if v else None) for k, v in errs.items()}
    bands = {}
    for j, rn in enumerate(sc.retailer_names):
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
        observation_summary([fits[k] for k in kept], draws.weights[kept], sigma_pp),
    )


def predict_heldout(
    sc: Scenario,
    later: list[Observation],
    fits: list[dict],
    replicates: int,
    paths: list[FitPath],
    w: np.ndarray,
    horizon: int,
    rng: np.random.Generator,
    sigma_pp: float | None = None,
) -> list[tuple[Observation, str, dict]]:
    """Per held-out share (observation of ``later``, retailer): the prediction in points, as
    {"predicted", "lo50", "hi50", "lo90", "hi90"}. ``paths`` are ``replicates`` paths per fit of ``fits`` (in that
    order) with mixture weights ``w``; the prediction is the weighted mean of the simulated share over the
    observation's period plus the source's fitted offset; both intervals are percentiles (25-75, 5-95) of one
    predictive sample: a path drawn from that mixture (parameter draws and replicates: the simulation noise), plus
    the draw of the observation's own error from that path's fit (:meth:`ObservationModel.noise
    <marketsim.fit.observation.ObservationModel.noise>`: its source's error drawn from its posterior, the offset's
    error, or for a (source, retailer) pair the fit never saw the spread of offsets between sources). ``sigma_pp``
    overrides every source's error (``--sigma``)."""
    names = sc.retailer_names
    cal = sc.calendar
    models = [observation_model(f, sigma_pp) for f in fits]
    out = []
    for o in later:
        wts = period_weights(cal, o, horizon)[None, :]
        for rn, _ in o.shares:
            j = names.index(rn)
            offs = np.array([m.offset(o.source, rn)[0] for m in models for _ in range(replicates)])
            pred = np.array([p.period_shares(wts)[0, j] * 100 for p in paths]) + offs
            mean = float(w @ pred)
            # an observation is the simulated share plus its source's offset and error (fit.observation): the
            # predictive interval is that of the sum, per sample the error of the fit its path comes from
            pick = rng.choice(len(pred), size=PREDICTIVE_SAMPLES, p=w)
            noise = np.empty(PREDICTIVE_SAMPLES)
            of_fit = pick // replicates
            for k in np.unique(of_fit):
                at = of_fit == k
                noise[at] = models[k].noise(o.source, rn, rng, int(at.sum()))
            lo90, lo50, hi50, hi90 = np.percentile(pred[pick] + noise, [5, 25, 75, 95])
            out.append(
                (
                    o,
                    rn,
                    {
                        "predicted": mean,
                        "lo50": float(lo50),
                        "hi50": float(hi50),
                        "lo90": float(lo90),
                        "hi90": float(hi90),
                    },
                )
            )
    return out


def observation_model(fit: dict, sigma_pp: float | None = None) -> ObservationModel:
    """The observation model of a fit (``fit_task``'s "observation"; nothing fitted: every source at its prior and
    no offset known), with ``sigma_pp`` (``--sigma``) overriding every source's error when given."""
    d = fit.get("observation")
    model = ObservationModel.from_dict(d) if d is not None else estimate([], [], [])
    return dataclasses.replace(model, override=sigma_pp) if sigma_pp is not None else model


def observation_summary(fits: list[dict], w: np.ndarray, sigma_pp: float | None = None) -> dict:
    """The observation error the predictions used: {"sources": per source the fits saw, the error (points, the
    posterior scale, averaged over the fits with weights ``w``, one per fit) and how it was set (the first fit's
    phrase: "estimated: n residuals, d dof, with the prior", "prior (...)", "--sigma (override)"),
    "unseen_offsets": the spread (points) of offsets between sources, for a (source, retailer) pair no fit saw}."""
    models = [observation_model(f, sigma_pp) for f in fits]
    w = np.asarray(w, dtype=float) / np.sum(w)
    sources: dict[str, dict] = {}
    for s in sorted({s for m in models for s in m.errors}):
        first = models[0].error(s)
        sources[s] = {
            "sigma_pp": float(sum(wk * m.error(s).scale_pp for wk, m in zip(w, models, strict=True))),
            "from": first.origin,
            "described": first.describe(),
        }
    spread = {
        "sigma_pp": float(sum(wk * m.offset_spread.scale_pp for wk, m in zip(w, models, strict=True))),
        "from": models[0].offset_spread.origin,
    }
    return {"sources": sources, "unseen_offsets": spread}


def path_task(scenario: Scenario, alpha, trend, seed: int, horizon: int, cut: dt.date | None = None) -> FitPath:
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
    cut = (pd.Timestamp(bt.until), f"fit until {bt.until}", {"color": "black", "lw": 1})
    mark_events(ax, sc, bt.series["steps"], extra=[cut])  # the cut-off's label laid out with the events'

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
