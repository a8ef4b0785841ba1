"""Conditioning the uncertain parameters on the observations (``marketsim fit``, MODEL.md section 8).

Approximate Bayesian computation by importance sampling over a space-filling prior design (Beaumont, Zhang &
Balding 2002; Sisson, Fan & Beaumont 2018, "Handbook of ABC", chapter 1): K draws from the priors
(:func:`marketsim.uncertainty.prior_draws`), each fitted like any scenario (its attractiveness, trends and
source offsets fitted to the observations; :mod:`marketsim.fitcache`), each weighted by a Gaussian kernel of
its residuals, exp(-sum_i r_i^2 / (2 sigma^2)), with sigma the observation error in points. A draw that no
fit can reconcile with the observations (the market tips, an attractiveness runs away) gets weight 0.

Why not ABC-SMC (pyabc): every particle here needs a fit of several nuisance parameters (tens of
simulations), so the thousands of particles an SMC run spends would take hours on two cores; one pass over a
Latin hypercube of K draws costs K fits, the same fits a projection over the priors makes (and caches), and
its effective sample size is reported so that a too-concentrated posterior shows. The price: the posterior
is only as fine as the design (K points).

What the data can say: observations dated before an event carry nothing on its effect, and the fitted
attractiveness, trends and offsets absorb most of the rest; so the fit reports, per parameter, how much the
posterior narrowed against the prior (1 - posterior sd / prior sd), and says which parameters act before the
cut-off (only those can be informed by the data at all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scenario import Scenario, Uncertain
from .uncertainty import Draws, prior_draws, weighted_quantile

FORMAT = "marketsim-posterior/v1"
#: Default observation error (points of share) of the kernel: the sources disagree by 2-4 points on JD's
#: share (FACTS.md), and a fitted market misses single observations by about half a point; 1 point is an
#: assumption, stated in the output and settable with --sigma.
DEFAULT_SIGMA_PP = 1.0
DEFAULT_DRAWS = 64


@dataclass(frozen=True)
class Posterior:
    params: tuple[Uncertain, ...]
    samples: list[dict[str, float]]  # the design's draws
    weights: np.ndarray  # (K,) normalised importance weights
    sigma_pp: float
    path: Path | None = None

    @property
    def ess(self) -> float:
        """Effective sample size, 1 / sum w^2 (Kish): how many equally weighted draws the posterior is worth."""
        return float(1.0 / np.sum(self.weights**2)) if self.weights.sum() > 0 else 0.0


def kernel_weights(residuals: list[np.ndarray | None], sigma_pp: float) -> np.ndarray:
    """Normalised Gaussian-kernel weights of draws from their residual vectors (points); None = no fit (weight 0)."""
    logw = np.array([-0.5 * float(np.sum((r / sigma_pp) ** 2)) if r is not None else -np.inf for r in residuals])
    if not np.isfinite(logw).any():
        return np.zeros(len(residuals))
    w = np.exp(logw - logw[np.isfinite(logw)].max())
    return w / w.sum()


def parameter_report(draws: Draws, weights: np.ndarray, scenario: Scenario, until: dt.date) -> list[dict]:
    """Per parameter: prior and posterior mean, sd and 90% interval, the narrowing, and whether it can be
    informed at all (it acts on the market before the cut-off)."""
    out = []
    for d, p in enumerate(draws.params):
        x = np.array([v[p.path] for v in draws.values], dtype=float)
        dist = p.distribution()
        lo, hi = p.bounds
        prior_lo, prior_hi = float(p.ppf(0.05)), float(p.ppf(0.95))
        prior_sd = float(np.std(p.ppf((np.arange(2000) + 0.5) / 2000)))
        mean = float(weights @ x)
        sd = float(math.sqrt(max(weights @ (x - mean) ** 2, 0.0)))
        q5, q95 = weighted_quantile(x, weights, [0.05, 0.95])
        out.append({"path": p.path, "prior": p.describe(), "reason": p.reason,
                    "prior_mean": float(np.mean(p.ppf((np.arange(2000) + 0.5) / 2000))), "prior_sd": prior_sd,
                    "prior_90": [prior_lo, prior_hi], "posterior_mean": mean, "posterior_sd": sd,
                    "posterior_90": [float(q5), float(q95)], "narrowing": 1 - sd / prior_sd if prior_sd > 0 else 0.0,
                    "before_cutoff": acts_before(scenario, p.path, until)})
        del dist, lo, hi
    return out


def acts_before(scenario: Scenario, path: str, until: dt.date) -> bool:
    """True if the parameter at ``path`` changes the market before the fit's cut-off: a market parameter, or a
    parameter of an event dated before it."""
    parts = path.split(".")
    if parts[0] != "events":
        return True
    ev = next((e for e in scenario.events if e.id == parts[1]), None)
    return ev is not None and ev.date < until


def prior_key(scenario: Scenario, k: int, sigma_pp: float, cache_key: str) -> str:
    """The posterior's key: the central fit's key, the priors, the design size and the kernel's sigma."""
    priors = [[p.path, p.prior, list(p.args), list(p.bounds)] for p in scenario.uncertain]
    blob = json.dumps([cache_key, priors, k, sigma_pp, scenario.seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def posterior_path(scenario: Scenario, cache_dir: str | Path) -> Path:
    """Where ``marketsim fit`` stores the posterior of ``scenario`` (next to the fit cache, keyed by the fit's
    key): the latest one fitted for this market and these priors."""
    from .calibrate import cache_key

    return Path(cache_dir) / f"{cache_key(scenario)}.posterior.json"


def save_posterior(post: Posterior, scenario: Scenario, cache_dir: str | Path, report: list[dict]) -> Path:
    from . import store

    body = {"params": [p.path for p in post.params], "samples": post.samples, "weights": post.weights.tolist(),
            "sigma_pp": post.sigma_pp, "priors": [[p.path, p.prior, list(p.args)] for p in post.params],
            "report": report}
    doc = {"format": FORMAT, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), **body}
    path = posterior_path(scenario, cache_dir)
    store.write_json(path, doc)
    return path


def load_posterior(scenario: Scenario, cache_dir: str | Path) -> Posterior | None:
    """The stored posterior for this market and these priors, or None (none stored, or it does not match: the
    priors changed, or the file was edited)."""
    path = posterior_path(scenario, cache_dir)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        body = {k: doc[k] for k in ("params", "samples", "weights", "sigma_pp", "priors", "report")}
        if doc.get("format") != FORMAT or doc.get("sha256") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    params = scenario.uncertain
    if body["priors"] != [[p.path, p.prior, list(p.args)] for p in params]:
        return None
    w = np.asarray(body["weights"], dtype=float)
    if len(w) != len(body["samples"]) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        return None
    return Posterior(params, body["samples"], w / w.sum(), float(body["sigma_pp"]), path)


def condition(scenario: Scenario, *, k: int = DEFAULT_DRAWS, sigma_pp: float = DEFAULT_SIGMA_PP, executor=None,
              cache_dir: str | Path | None = None, on_progress=None) -> tuple[Posterior, dict]:
    """Weigh ``k`` prior draws by how well their fits meet the observations (see the module docstring).
    Returns the posterior and a summary (per-parameter report, failed draws, effective sample size)."""
    from .errors import UserError
    from .projection import _map, _with_draw, central_fit, fit_task

    if not scenario.uncertain:
        raise UserError(f"{scenario.source}: no uncertain parameter (a range or a prior) to condition on the data")
    if not scenario.observations:
        raise UserError(f"{scenario.source}: no observations to condition on")
    draws = prior_draws(scenario, k, scenario.seed)
    cache = None if cache_dir is None else str(cache_dir)
    start = central_fit(scenario, cache)
    fits = _map(executor, fit_task, [(_with_draw(scenario, v), cache, True, None, False, start) for v in draws.values],
                "fits", on_progress)
    residuals = [None if "error" in f else np.asarray(f["residuals"], dtype=float) for f in fits]
    w = kernel_weights(residuals, sigma_pp)
    if w.sum() == 0:
        first = next((f["error"] for f in fits if "error" in f), "no draw could be fitted")
        raise UserError(f"no parameter draw could be fitted to the observations; the first: {first}")
    post = Posterior(draws.params, draws.values, w, sigma_pp)
    until = scenario.fit_cutoff()
    report = parameter_report(draws, w, scenario, until)
    summary = {"scenario": scenario.name, "draws": k, "fitted": sum(r is not None for r in residuals),
               "sigma_pp": sigma_pp, "ess": post.ess, "until": until.isoformat(), "parameters": report,
               "failed": [{"values": v, "reason": f["error"]} for v, f in zip(draws.values, fits) if "error" in f]}
    return post, summary
