"""The decision desk's numbers (docs/model.md section 10): options compared for one retailer.

A projection (:mod:`marketsim.experiments.projection`) runs every option on the same parameter draws and the same
replicate seeds, so two options' horizon shares for the same (draw, replicate) are a *paired* comparison: the
difference is the option's effect with the assumptions and the random numbers held fixed. Everything here is read
from those paired values, weighted by the draws' weights (1/R per replicate within a draw):

* :func:`ranking`: the options by their mean shift (horizon share minus the baseline's), with the 95% interval
  over draws x replicates and the probability that each is the best of all;
* :func:`p_beats`: the probability that option a leaves the retailer a higher share than option b;
* :func:`p_beyond`: the probability that the shift is beyond a threshold, in either direction;
* :func:`tornado`: the shift's range as each uncertain parameter moves over its range with the others central,
  read from a fit of the draws' means on the parameters (a surrogate: no extra simulation), and each
  parameter's share of the variance from the assumptions.

The sentence that says which option is best and how sure that is lives with the other words, in
:mod:`marketsim.report.decision`.

:class:`Outcomes` holds what they need; it comes from a :class:`~marketsim.experiments.projection.Projection`
(:func:`from_projection`) or from a stored projection folder (:func:`from_folder`: projection.json,
replicates.parquet and draws.parquet), so the command line, the browser's Decide view and the exported files
say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from marketsim.errors import UserError
from marketsim.experiments.projection import BASELINE, Projection, baseline_words, fit_until, observed_of
from marketsim.experiments.uncertainty import Draws, Param, param_of, summarize, variance_shares
from marketsim.io import store


@dataclass(frozen=True)
class Outcomes:
    """Everything the decision views need, from a projection or a stored projection folder."""

    scenario: str
    options: tuple[str, ...]  # option names, first = the scenario
    retailers: tuple[str, ...]
    baseline: str  # in words
    dates: tuple[str, ...]  # ISO date of each step
    share: dict[str, np.ndarray]  # arm (options + "baseline") -> (K, R, T, J) GMV share, fractions
    weights: np.ndarray  # (K,) draw weights, sum 1
    params: tuple[Param, ...]
    values: np.ndarray  # (K, P) parameter values of each kept draw, stored units
    draw_index: np.ndarray  # (K,) design index of each kept draw
    currency: str = "RMB"
    unit: np.ndarray | None = None  # (K, P) the draws' coordinates in [0, 1] (prior CDF values)
    observed: tuple[dict, ...] = ()  # decision-time observations: source, label, start, end, shares
    fit_until: str | None = None  # the fit's cut-off: the model extrapolates after it
    covers: str = ""  # what the intervals cover, in words
    summary: dict = field(default_factory=dict, repr=False)  # projection.json

    def shift(self, option: str) -> np.ndarray:
        """(K, R, J): the option's horizon GMV share minus the baseline's (fractions)."""
        self._check_option(option)
        return self.share[option][:, :, -1, :] - self.share[BASELINE][:, :, -1, :]

    def horizon(self) -> str:
        return self.dates[-1]

    @property
    def k(self) -> int:
        return len(self.weights)

    def cell_weights(self) -> np.ndarray:
        """(K, R): each (draw, replicate) value's weight in the mixture (sums to 1)."""
        R = self.share[BASELINE].shape[1]
        return np.repeat(self.weights[:, None] / R, R, axis=1)

    def retailer_index(self, retailer: str) -> int:
        if retailer not in self.retailers:
            raise UserError(f"retailer {retailer!r} is not in this projection; it has {', '.join(self.retailers)}")
        return self.retailers.index(retailer)

    def _check_option(self, option: str) -> None:
        if option not in self.options:
            raise UserError(f"option {option!r} is not in this projection; it has {', '.join(self.options)}")


# --------------------------------------------------------------------------- building Outcomes


def from_projection(proj: Projection, summary: dict | None = None) -> Outcomes:
    """The outcomes of a finished projection (``summary``: its :func:`~marketsim.experiments.projection.summary`)."""
    sc = proj.scenario
    kept = proj.kept_draws()
    params = tuple(param_of(p, sc) for p in kept.params)
    values = np.array([[v[p.path] for p in params] for v in kept.values], dtype=float).reshape(len(kept.values), -1)
    T = proj.steps
    summ = summary if summary is not None else {}
    return Outcomes(
        scenario=sc.name,
        options=tuple(proj.options),
        retailers=tuple(proj.names),
        baseline=baseline_words(sc, [e for e in sc.events if e not in proj.baseline.events]),
        dates=tuple(sc.calendar.date_of(t).isoformat() for t in range(T)),
        share={arm: proj.arrays[arm]["gmv_share"] for arm in (*proj.options, BASELINE)},
        weights=proj.weights,
        params=params,
        values=values,
        draw_index=np.asarray(proj.kept),
        currency=sc.currency,
        unit=np.asarray(kept.unit, dtype=float),
        observed=observed_of(sc),
        fit_until=fit_until(sc),
        covers=_covers(summ),
        summary=summ,
    )


def _covers(summary: dict) -> str:
    return str(summary.get("interval_covers") or "")


def draws_table(proj: Projection) -> pd.DataFrame:
    """One row per kept draw: ``draw`` (its index in the design, the ``draw`` column of replicates.parquet),
    ``weight``, then each uncertain parameter's value (stored units) under its path, then its coordinate in
    [0, 1] (the prior's CDF at the value) under ``u:<path>``. Written as draws.parquet (and .csv)."""
    kept = proj.kept_draws()
    cols: dict = {"draw": np.asarray(proj.kept, dtype=np.int64), "weight": np.asarray(kept.weights, dtype=float)}
    for p in kept.params:
        cols[p.path] = np.array([v[p.path] for v in kept.values], dtype=float)
    for d, p in enumerate(kept.params):
        cols[f"u:{p.path}"] = np.asarray(kept.unit, dtype=float).reshape(len(kept.values), -1)[:, d]
    return pd.DataFrame(cols)


def from_folder(folder: str | Path) -> Outcomes:
    """The outcomes of a stored projection (projection.json, replicates.parquet, draws.parquet), read as one
    result set (:func:`marketsim.io.store.read_result`). UserError (one line) for anything else."""
    folder = Path(folder)
    rs = store.read_result(folder)
    if rs.kind != "projection":
        raise UserError(
            f"{folder}: holds a {rs.kind} result, not a projection; give a folder `marketsim project` wrote"
        )
    for need in ("projection.json", "replicates.parquet", "draws.parquet"):
        if need not in rs.data:
            raise UserError(
                f"{folder}: its projection has no {need} (written by an older marketsim); run `marketsim project` "
                f"again to get it"
            )
    summ = rs.json("projection.json")
    reps = rs.table("replicates.parquet")
    draws = rs.table("draws.parquet")
    retailers = tuple(summ["shift"].keys())
    options = tuple(summ["options"].keys()) if "options" in summ else (summ["scenario"],)
    kept = draws["draw"].to_numpy(dtype=np.int64)
    K = len(kept)
    R = int(summ["replicates"])
    T = int(summ["steps"])
    J = len(retailers)
    reps = reps.sort_values(["arm", "draw", "replicate", "step", "retailer"], kind="stable")
    share: dict[str, np.ndarray] = {}
    rpos = {r: j for j, r in enumerate(retailers)}
    dpos = {int(d): i for i, d in enumerate(kept)}
    dates = tuple(sorted(set(reps["date"])))
    for arm in (*options, BASELINE):
        a = reps[reps["arm"] == arm]
        if a.empty:
            raise UserError(f"{folder}: replicates.parquet has no rows for {arm!r}; run `marketsim project` again")
        arr = np.full((K, R, T, J), np.nan)
        arr[
            a["draw"].map(dpos).to_numpy(),
            a["replicate"].to_numpy(),
            a["step"].to_numpy(),
            a["retailer"].map(rpos).to_numpy(),
        ] = a["gmv_share"].to_numpy()
        share[arm] = arr
    pdocs = summ["draws"]["parameters"]
    params = tuple(
        Param(
            d["path"],
            d.get("label", d["path"]),
            d.get("unit", ""),
            float(d.get("scale", 1.0)),
            float(d.get("low", math.nan)),
            float(d.get("high", math.nan)),
            float(d["value"]),
            d.get("reason", ""),
            float(d.get("u_low", 0.0)),
            float(d.get("u_high", 1.0)),
            float(d.get("u_central", 0.5)),
        )
        for d in pdocs
    )
    values = draws[[p.path for p in params]].to_numpy(dtype=float).reshape(K, len(params))
    unit = draws[[f"u:{p.path}" for p in params]].to_numpy(dtype=float).reshape(K, len(params))
    w = draws["weight"].to_numpy(dtype=float)
    return Outcomes(
        scenario=summ["scenario"],
        options=options,
        retailers=retailers,
        baseline=str(summ.get("baseline") or ", ".join(summ.get("baseline_without") or [])),
        dates=dates,
        share=share,
        weights=w / w.sum(),
        params=params,
        values=values,
        draw_index=kept,
        currency=(summ.get("revenue_shift") or {}).get("currency", "RMB"),
        unit=unit,
        observed=tuple(summ.get("observed") or ()),
        fit_until=summ.get("fit_until"),
        covers=_covers(summ),
        summary=summ,
    )


# --------------------------------------------------------------------------- the comparisons


def ranking(o: Outcomes, retailer: str) -> list[dict]:
    """The options, best first by the mean shift of ``retailer`` (percentage points against the baseline), each
    with its 95% interval (:func:`marketsim.experiments.uncertainty.summarize`, as projection.json's: over draws x
    replicates, or the t interval of the mean with one draw) and ``p_best``: the probability that it leaves ``retailer`` the
    highest share of all the options (ties shared)."""
    j = o.retailer_index(retailer)
    w = o.cell_weights().reshape(-1)
    S = np.stack([o.shift(a)[:, :, j].reshape(-1) for a in o.options])  # (options, K*R)
    top = S.max(axis=0)
    best = S >= top - 1e-15
    p_best = (best / best.sum(axis=0)) @ w
    K, R = o.share[BASELINE].shape[:2]
    draws = Draws((), np.zeros((K, 0)), [{} for _ in range(K)], o.weights, "outcomes")
    rows = []
    for i, a in enumerate(o.options):
        s = summarize(S[i].reshape(K, R), draws)  # the mean and interval projection.json gives (one definition)
        rows.append(
            {
                "option": a,
                "mean_pp": s.mean * 100,
                "ci95_pp": [s.interval[0] * 100, s.interval[1] * 100],
                "p_best": float(p_best[i]),
            }
        )
    rows.sort(key=lambda r: -r["mean_pp"])
    return rows


def p_beats(o: Outcomes, retailer: str) -> dict[str, dict[str, float]]:
    """``p[a][b]``: the probability that option ``a`` leaves ``retailer`` a higher horizon share than option ``b``,
    over the same draws and replicates (a tie counts half); ``p[a][a]`` is nan. ``p[a][b] + p[b][a] == 1``."""
    j = o.retailer_index(retailer)
    w = o.cell_weights().reshape(-1)
    S = {a: o.share[a][:, :, -1, j].reshape(-1) for a in o.options}
    out: dict[str, dict[str, float]] = {}
    for a in o.options:
        out[a] = {}
        for b in o.options:
            if a == b:
                out[a][b] = math.nan
            else:
                out[a][b] = float(((S[a] > S[b]) + 0.5 * (S[a] == S[b])) @ w)
    return out


def p_beyond(o: Outcomes, retailer: str, threshold_pp: float) -> dict[str, float]:
    """Per option: the probability that ``retailer``'s shift is beyond ``threshold_pp`` points: below it for a
    negative threshold ("loses more than"), above it for zero or a positive one ("gains more than")."""
    j = o.retailer_index(retailer)
    w = o.cell_weights().reshape(-1)
    t = threshold_pp / 100
    out = {}
    for a in o.options:
        s = o.shift(a)[:, :, j].reshape(-1)
        out[a] = float(((s < t) if threshold_pp < 0 else (s > t)) @ w)
    return out


# --------------------------------------------------------------------------- what drives it


def tornado(o: Outcomes, option: str, retailer: str) -> dict:
    """What drives the option's shift for ``retailer``: per uncertain parameter, the shift (points) with that
    parameter at the low and at the high end of its range and the others at their central values, and its
    share of the variance from the assumptions.

    No extra simulation: the ends come from a fit of the draws' mean shifts (over their replicates) on the
    parameters' coordinates in [0, 1] (the prior's CDF, where the draws are spread evenly): an additive
    quadratic fit (one linear and one squared term per parameter) when there are at least two draws per
    coefficient, else a linear fit when there are two per coefficient of that, else none. The variance shares
    are the squared standardized coefficients of the linear fit (Saltelli et al. 2008, "Global Sensitivity
    Analysis: The Primer", 1.2.5), as the report's drivers. ``r2`` says how much of the draws' spread the fit
    explains (adjusted for the number of coefficients); ``method`` says all this in words."""
    j = o.retailer_index(retailer)
    P = len(o.params)
    means = o.shift(option)[:, :, j].mean(axis=1) * 100  # (K,) points
    w = o.weights
    K = len(means)
    central = float(w @ means)
    if P == 0 or o.unit is None:
        return {
            "rows": [],
            "central_pp": central,
            "method": "no uncertain parameter: nothing drives the spread but simulation noise",
            "r2": math.nan,
        }
    U = o.unit
    uc = np.array([p.u_central for p in o.params])
    Z = U - uc
    quadratic = K >= 2 * (2 * P + 1)  # at least two draws per coefficient (assumption: a rule of thumb)
    if np.ptp(means) == 0:
        return {"rows": [], "central_pp": central, "method": "every draw gives the same shift", "r2": math.nan}
    if K < 2 * (P + 1):
        return {
            "rows": [],
            "central_pp": central,
            "method": f"too few draws ({K}) to read the effects of {P} parameter{'s' if P != 1 else ''} "
            f"(a linear fit needs at least {2 * (P + 1)}: two per coefficient); project with --draws "
            f"{2 * (P + 1)} or more",
            "r2": math.nan,
        }
    X = np.column_stack([np.ones(K), Z, Z**2]) if quadratic else np.column_stack([np.ones(K), Z])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], means * sw, rcond=None)
    fitted = X @ coef
    mu = float(w @ means)
    ss_res, ss_tot = float(w @ (means - fitted) ** 2), float(w @ (means - mu) ** 2)
    r2 = 1 - (ss_res / (K - X.shape[1])) / (ss_tot / (K - 1))  # adjusted R^2
    shares = [float(x) for x in variance_shares(Z, means, w)[0]]

    def at(d: int, u: float) -> float:
        z = u - uc[d]
        v = coef[0] + coef[1 + d] * z
        if quadratic:
            v += coef[1 + P + d] * z * z
        return float(v)

    rows = []
    for d, p in enumerate(o.params):
        lo, hi = at(d, p.u_low), at(d, p.u_high)
        rows.append(
            {
                "path": p.path,
                "label": p.label,
                "unit": p.unit,
                "scale": p.scale,
                "low": p.low,
                "high": p.high,
                "central": p.central,
                "at_low_pp": lo,
                "at_high_pp": hi,
                "swing_pp": abs(hi - lo),
                "variance_share": shares[d],
                "reason": p.reason,
            }
        )
    rows.sort(key=lambda r: -r["swing_pp"])
    kind = "an additive quadratic" if quadratic else "a linear"
    return {
        "rows": rows,
        "central_pp": float(coef[0]),
        "method": f"each bar runs from the shift with that parameter at the low end of its range to the shift at "
        f"the high end, the others at their central values, read from {kind} fit of the {K} draws' mean shifts "
        f"(adjusted R² {r2:.2f}: the share of their spread the fit explains); no extra simulation",
        "r2": r2,
    }
