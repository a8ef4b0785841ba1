"""Parameter uncertainty (docs/model.md sections 8 and 10): draws of the uncertain parameters, and what the
spread of an answer across them means.

A scenario marks a number no source pins as a range or a prior (:class:`marketsim.scenario.core.Uncertain`).
:func:`prior_draws` is a space-filling design over them: a Latin hypercube (McKay, Beckman & Conover 1979;
``scipy.stats.qmc``) in the unit cube, mapped through each prior's inverse CDF, so that K draws cover
every parameter's range evenly whatever K is. :func:`posterior_draws` resamples a weighted sample
(:mod:`marketsim.experiments.posterior`) instead.

For an answer computed on every draw k and replicate r (a share shift, say), :func:`summarize` gives

* the **total interval**: percentiles of the mixture of all K x R values (weighted by the draws' weights),
  which covers the assumptions and the simulation noise together and does not shrink as K grows;
* the **decomposition** of its variance (law of total variance): the part from the assumptions (the variance
  of the draws' means, less the noise those means still carry, sigma^2_within / R) and the part from
  simulation noise (the mean variance within a draw);
* the **drivers**: each parameter's share of the assumptions' part, from a linear regression of the draws'
  means on the parameters' unit coordinates (squared standardized regression coefficients, Saltelli et al.
  2008, "Global Sensitivity Analysis: The Primer", section 1.2.5), with the R^2 that says how much of it a
  linear reading explains;
* the probability that the value is below a threshold.

With a single draw (no uncertain parameter, or ``--draws 1``) the interval is the classical 95% t interval
of the mean over the replicates, t(0.975, R-1) s / sqrt(R): it covers simulation noise only, and
:func:`summarize` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from marketsim.scenario.core import Scenario, Uncertain
from marketsim.scenario.labels import event_names, parameter_quantity


@dataclass(frozen=True)
class Draws:
    """K parameter sets: ``values[k]`` maps each uncertain parameter's path to its value in draw k."""

    params: tuple[Uncertain, ...]
    unit: np.ndarray  # (K, D) unit-cube coordinates (prior CDF values) of the draws
    values: list[dict[str, float]]
    weights: np.ndarray  # (K,) non-negative, summing to 1
    source: str  # "central" (one draw at the central values), "prior" or "posterior"

    @property
    def k(self) -> int:
        return len(self.values)


def central_draws(scenario: Scenario, k: int = 1) -> Draws:
    """One draw: every uncertain parameter at its central value (the point scenario); ``k`` copies of it (equal
    weights) for what varies between draws besides the uncertain parameters (the fitted trends' uncertainty)."""
    params = scenario.uncertain
    unit = np.array([[float(p.distribution().cdf(p.value)) for p in params]]) if params else np.zeros((1, 0))
    values = [{p.path: p.value for p in params} for _ in range(k)]
    return Draws(params, np.repeat(unit, k, axis=0), values, np.full(k, 1.0 / k), "central")


def prior_draws(scenario: Scenario, k: int, seed: int) -> Draws:
    """``k`` draws from the priors of the scenario's uncertain parameters: a Latin hypercube design (scrambled
    by ``seed``) mapped through each prior's inverse CDF (truncated to the field's allowed interval)."""
    params = scenario.uncertain
    if not params or k <= 1:
        return central_draws(scenario)
    from scipy.stats import qmc

    unit = qmc.LatinHypercube(d=len(params), seed=np.random.default_rng(seed)).random(k)
    cols = [p.ppf(unit[:, d]) for d, p in enumerate(params)]
    values = [{p.path: _value(p, cols[d][i]) for d, p in enumerate(params)} for i in range(k)]
    return Draws(params, unit, values, np.full(k, 1.0 / k), "prior")


def posterior_draws(
    params: tuple[Uncertain, ...], samples: list[dict[str, float]], weights: np.ndarray, k: int, seed: int
) -> Draws:
    """``k`` draws resampled from a weighted posterior sample (systematic resampling: each sample appears
    in proportion to its weight, with the least added noise; Kitagawa 1996). The weights must be finite and
    non-negative with a positive sum, one per sample (:func:`marketsim.experiments.posterior.check_posterior` checks a
    stored posterior so); anything else raises ValueError rather than resampling garbage."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(samples),) or not len(w) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"posterior weights must be {len(samples)} finite non-negative numbers with a positive sum")
    w = w / w.sum()
    u0 = np.random.default_rng(seed).random()
    idx = np.minimum(np.searchsorted(np.cumsum(w), (u0 + np.arange(k)) / k), len(w) - 1)
    values = [dict(samples[i]) for i in idx]
    unit = np.array([[float(p.distribution().cdf(v[p.path])) for p in params] for v in values]).reshape(k, len(params))
    return Draws(params, unit, values, np.full(k, 1.0 / k), "posterior")


# --------------------------------------------------------------------------- the parameters as people read them

#: Parameter-range ends of a prior that has no ends of its own (normal, lognormal...): its 2.5% and 97.5% points.
TAIL = 0.025


@dataclass(frozen=True)
class Param:
    """An uncertain parameter as the decision views show it. Values are in stored units (a fraction 0.05);
    ``scale`` turns them into display units (5 with unit "%")."""

    path: str
    label: str
    unit: str
    scale: float
    low: float  # the stated range's ends (a range's ends; a prior's 2.5% and 97.5% points)
    high: float
    central: float  # the scenario's central value
    reason: str  # the scenario's source, or "assumption: ..."
    u_low: float = 0.0  # the same three as coordinates in [0, 1] (the prior's CDF)
    u_high: float = 1.0
    u_central: float = 0.5

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def param_of(p: Uncertain, scenario: Scenario) -> Param:
    """The :class:`Param` of ``scenario``'s uncertain parameter ``p``: label and unit from
    :mod:`marketsim.scenario.labels` (an event's field named by what the event does), the range's ends (a uniform
    prior's own ends, else the 2.5% and 97.5% points)."""
    q = parameter_quantity(p.path, currency=scenario.currency, events=event_names(scenario))
    if p.prior == "uniform":
        u_lo, u_hi = 0.0, 1.0
        lo, hi = (float(x) for x in p.args[:2])
        lo, hi = max(lo, p.bounds[0]), min(hi, p.bounds[1])
    else:
        u_lo, u_hi = TAIL, 1 - TAIL
        lo, hi = (float(x) for x in np.asarray(p.ppf(np.array([TAIL, 1 - TAIL]))).reshape(-1))
    try:
        u_c = float(p.distribution().cdf(p.value))
    except Exception:  # an empirical prior (a stored posterior) without a CDF: the middle of the range
        u_c = 0.5
    return Param(p.path, q.label, q.unit, q.scale, lo, hi, float(p.value), p.reason, u_lo, u_hi, u_c)


def _value(p: Uncertain, x: float) -> float | int:
    return int(round(float(x))) if p.integer else float(x)


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    """What K draws x R replicates of one number say (see the module docstring). Units are those of the input."""

    mean: float
    interval: tuple[float, float]  # 95%
    covers: str  # "assumptions and simulation noise" or "simulation noise only"
    var_total: float
    var_assumptions: float
    var_noise: float
    drivers: dict[str, float] = field(default_factory=dict)  # parameter path -> share of the assumptions' variance
    drivers_r2: float = math.nan
    below: dict[float, float] = field(default_factory=dict)  # threshold -> probability the value is below it

    @property
    def share_assumptions(self) -> float:
        tot = self.var_assumptions + self.var_noise
        return self.var_assumptions / tot if tot > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "ci95": list(self.interval),
            "covers": self.covers,
            "variance": {
                "total": self.var_total,
                "assumptions": self.var_assumptions,
                "noise": self.var_noise,
                "share_assumptions": self.share_assumptions,
            },
            "drivers": self.drivers,
            "drivers_r2": self.drivers_r2,
            "p_below": {f"{t:g}": p for t, p in self.below.items()},
        }


def weighted_quantile(x: np.ndarray, w: np.ndarray, q) -> np.ndarray:
    """Quantiles of the distribution that puts weight w_i on x_i (the midpoint rule: the empirical CDF of a
    weighted sample, interpolated between the points)."""
    order = np.argsort(x)
    x, w = x[order], w[order]
    cw = np.cumsum(w) - 0.5 * w
    cw /= w.sum()
    return np.interp(q, cw, x)


def summarize(values: np.ndarray, draws: Draws, thresholds: tuple[float, ...] = ()) -> Summary:
    """Summary of ``values`` (K, R): one number per draw and replicate (see the module docstring)."""
    v = np.asarray(values, dtype=float)
    K, R = v.shape
    w = draws.weights / draws.weights.sum()
    wr = np.repeat(w / R, R)  # each (draw, replicate) value's weight in the mixture
    flat = v.reshape(-1)
    mean = float(flat @ wr)
    below = {t: float(wr[flat < t].sum()) for t in thresholds}
    within = v.var(axis=1, ddof=1) if R > 1 else np.zeros(K)
    var_noise = float(w @ within)
    if K == 1:
        if R < 2:
            return Summary(
                mean, (math.nan, math.nan), "nothing: one replicate has no spread", 0.0, 0.0, 0.0, below=below
            )
        half = float(stats.t.ppf(0.975, R - 1) * math.sqrt(within[0] / R))
        return Summary(
            mean,
            (mean - half, mean + half),
            "simulation noise only: the 95% t interval of the mean over replicates, assumptions fixed",
            var_noise,
            0.0,
            var_noise,
            below=below,
        )
    means = v.mean(axis=1)
    var_between = float(w @ (means - w @ means) ** 2)
    var_assumptions = max(var_between - var_noise / R, 0.0)
    lo, hi = weighted_quantile(flat, wr, [0.025, 0.975])
    drivers, r2 = _drivers(draws, means, w)
    return Summary(
        mean,
        (float(lo), float(hi)),
        "assumptions and simulation noise: 95% of the draws x replicates",
        float(flat @ (wr * flat)) - mean**2,
        var_assumptions,
        var_noise,
        drivers,
        r2,
        below,
    )


def _drivers(draws: Draws, means: np.ndarray, w: np.ndarray) -> tuple[dict[str, float], float]:
    """Squared standardized regression coefficients of the draws' means on the unit coordinates, normalised to
    shares of the explained variance; and the regression's R^2 (:func:`variance_shares`)."""
    X = draws.unit
    if X.shape[1] == 0 or len(means) <= X.shape[1] + 1 or np.ptp(means) == 0:
        return {}, math.nan
    shares, r2 = variance_shares(X, means, w)
    return {p.path: float(s) for p, s in zip(draws.params, shares, strict=True)}, r2


def variance_shares(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """How much of the spread of ``y`` each column of ``X`` drives: the weighted (``w``) linear regression of
    ``y`` on the columns, each one's squared standardized coefficient as a share of their sum (zeros where none
    explains any), and the regression's R^2 (nan, with zeros, when ``y`` does not vary). The tornado and the
    summary's drivers read the same numbers."""
    sw = np.sqrt(w)
    Xc = X - w @ X
    yc = y - w @ y
    sd_y = math.sqrt(float(w @ yc**2))
    if sd_y == 0:
        return np.zeros(X.shape[1]), math.nan
    beta, *_ = np.linalg.lstsq(Xc * sw[:, None], yc * sw, rcond=None)
    sd_x = np.sqrt(w @ Xc**2)
    src2 = (beta * sd_x / sd_y) ** 2
    fitted = Xc @ beta
    r2 = float(1 - (w @ (yc - fitted) ** 2) / (w @ yc**2))
    tot = src2.sum()
    return (src2 / tot if tot > 0 else src2), r2
