"""Conditioning the uncertain parameters on the observations (``marketsim fit``, docs/model.md section 8).

Approximate Bayesian computation by importance sampling over a space-filling prior design (Beaumont, Zhang &
Balding 2002; Sisson, Fan & Beaumont 2018, "Handbook of ABC", chapter 1): K draws from the priors
(:func:`marketsim.experiments.uncertainty.prior_draws`), each fitted like any scenario (its attractiveness, trends and
source offsets fitted to the observations; :mod:`marketsim.fit.cache`), each weighted by a Gaussian kernel of
its residuals, exp(-sum_i r_i^2 / (2 sigma_i^2)), with sigma_i the observation error in points of the source of
residual i: the posterior scale of that source's error in the observation model of the central fit
(:mod:`marketsim.fit.observation`: estimated from the central fit's residuals with a stated prior, or the prior
where a source has no residual degrees of freedom), or one number for every source given with ``--sigma``. A draw
that no fit can reconcile with the observations (the market tips, an attractiveness runs away) gets weight 0.

Why not ABC-SMC (pyabc): every particle here needs a fit of several nuisance parameters (tens of
simulations), so the thousands of particles an SMC run spends would take hours on two cores; one pass over a
Latin hypercube of K draws costs K fits, the same fits a projection over the priors makes (and caches), and
its effective sample size is reported so that a too-concentrated posterior shows. The price: the posterior
is only as fine as the design (K points).

What the data can say: observations dated before an event carry nothing on its effect, and the fitted
attractiveness, trends and offsets absorb most of the rest; so the fit reports, per parameter, how much the
posterior narrowed against the prior (1 - posterior sd / prior sd), and says which parameters act before the
cut-off (only those can be informed by the data at all).

Ex post (``marketsim fit --ex-post --until DATE``, docs/model.md section 8, "Effects learned from history"): the
draws are fitted exactly as above, on the observations a fit may use (never a held-out one); the kernel then
weighs each draw also by how well its simulated path (at the fitted values, the scenario's seed) meets the
held-out observations that end by DATE: what followed the events. The result is an *ex-post* posterior: it is
stored apart from the decision-time one (:func:`expost_posterior_path`), it records the held-out figures it saw
and DATE, :func:`check_posterior` refuses it for the scenario's own projections, and another scenario may take a
prior from it only if its decision comes on or after DATE (:func:`marketsim.scenario.posterior_file.ex_post_refusal`).

When the posterior is worth too few draws (effective sample size under :func:`ess_floor`), nothing is stored
and nothing is reported as narrowed: a posterior on one or two points says nothing about the data and would
collapse every interval a projection draws from it. A stored posterior is checked in full when it is used
(:func:`load_posterior`); a damaged or inconsistent one is an error naming the file, never a silent fallback.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marketsim.errors import UserError
from marketsim.experiments.projection import central_fit
from marketsim.experiments.tasks import fit_task, map_jobs, with_draw
from marketsim.experiments.uncertainty import Draws, prior_draws, weighted_quantile
from marketsim.fit.cache import BadEntry, check_folder, check_writable, read_regular, store_entry, what_is
from marketsim.fit.calibrate import cache_key, expected_path, period_weights, with_event_values
from marketsim.fit.observation import estimate, from_calibration
from marketsim.fit.options import FitOptions
from marketsim.runtime.digest import digest
from marketsim.scenario.core import Observation, Scenario, Uncertain
from marketsim.scenario.posterior_file import (  # noqa: F401  (public here as before)
    ESS_FRACTION,
    ESS_MIN,
    FORMAT,
    KEYS,
    BadPosterior,
    check_document,
    checksum,
    ess_floor,
    ex_post_of,
    figures_text,
    read_document,
)

DEFAULT_DRAWS = 64
#: The effective-sample-size floor (ESS_MIN, ESS_FRACTION, ess_floor) lives with the file's reader
#: (:mod:`marketsim.scenario.posterior_file`): an effective sample size under max(10, 5% of the draws) means the
#: posterior 90% interval is set by one or two draws, or the kernel (the observation error) is narrower than the
#: design's spacing.


@dataclass(frozen=True)
class Posterior:
    params: tuple[Uncertain, ...]
    samples: list[dict[str, float]]  # the design's draws
    weights: np.ndarray  # (K,) normalised importance weights
    sigma_pp: float  # the kernel's observation error (points; root mean square over the residuals)
    path: Path | None = None

    @property
    def ess(self) -> float:
        """Effective sample size, 1 / sum w^2 (Kish): how many equally weighted draws the posterior is worth."""
        return float(1.0 / np.sum(self.weights**2)) if self.weights.sum() > 0 else 0.0


def kernel_weights(residuals: list[np.ndarray | None], sigma_pp: float | np.ndarray) -> np.ndarray:
    """Normalised Gaussian-kernel weights of draws from their residual vectors (points); None = no fit (weight 0).
    ``sigma_pp``: one observation error (points) for every residual, or one per residual (its source's)."""
    logw = np.array([-0.5 * float(np.sum((r / sigma_pp) ** 2)) if r is not None else -np.inf for r in residuals])
    if not np.isfinite(logw).any():
        return np.zeros(len(residuals))
    w = np.exp(logw - logw[np.isfinite(logw)].max())
    return w / w.sum()


def parameter_report(
    draws: Draws, weights: np.ndarray, scenario: Scenario, until: dt.date, ex_post_until: dt.date | None = None
) -> list[dict]:
    """Per parameter: prior and posterior mean, sd and 90% interval, the narrowing, and whether it can be
    informed at all (it acts on the market before the cut-off); ex post (``ex_post_until``), also whether the
    held-out figures up to that date can inform it (it acts before that date: ``ex_post_informs``)."""
    out = []
    for p in draws.params:
        x = np.array([v[p.path] for v in draws.values], dtype=float)
        dist = p.distribution()
        lo, hi = p.bounds
        prior_lo, prior_hi = float(p.ppf(0.05)), float(p.ppf(0.95))
        prior_sd = float(np.std(p.ppf((np.arange(2000) + 0.5) / 2000)))
        mean = float(weights @ x)
        sd = float(math.sqrt(max(weights @ (x - mean) ** 2, 0.0)))
        q5, q95 = weighted_quantile(x, weights, [0.05, 0.95])
        out.append(
            {
                "path": p.path,
                "prior": p.describe(),
                "reason": p.reason,
                "prior_mean": float(np.mean(p.ppf((np.arange(2000) + 0.5) / 2000))),
                "prior_sd": prior_sd,
                "prior_90": [prior_lo, prior_hi],
                "posterior_mean": mean,
                "posterior_sd": sd,
                "posterior_90": [float(q5), float(q95)],
                "narrowing": 1 - sd / prior_sd if prior_sd > 0 else 0.0,
                "before_cutoff": acts_before(scenario, p.path, until),
            }
        )
        if ex_post_until is not None:
            out[-1]["ex_post_informs"] = acts_before(scenario, p.path, ex_post_until)
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
    return digest([cache_key, priors, k, sigma_pp, scenario.seed], 20, spaced=True)


def posterior_path(scenario: Scenario, cache_dir: str | Path) -> Path:
    """Where ``marketsim fit`` stores the posterior of ``scenario`` (next to the fit cache, keyed by the fit's
    key): the latest one fitted for this market and these priors."""
    return Path(cache_dir) / f"{cache_key(scenario)}.posterior.json"


def expost_posterior_path(scenario: Scenario, cache_dir: str | Path, until: dt.date) -> Path:
    """Where ``marketsim fit --ex-post --until DATE`` stores its posterior: next to the decision-time one, under
    another name, so that ``marketsim project`` (:func:`load_posterior`) never finds it."""
    return Path(cache_dir) / f"{cache_key(scenario)}.expost-{until.isoformat()}.posterior.json"


def save_posterior(
    post: Posterior,
    scenario: Scenario,
    cache_dir: str | Path,
    report: list[dict],
    until: dt.date | None = None,
    ex_post: dict | None = None,
) -> Path:
    """Store ``post`` where :func:`load_posterior` finds it (atomically; a folder or FIFO in its place is
    cleared, or one line says why it cannot be). An ex-post posterior (``ex_post``: the ``ex_post`` part of
    :func:`condition`'s summary) records ``ex_post: true``, DATE and the held-out figures it saw, and goes to
    :func:`expost_posterior_path` instead."""
    body = {
        "params": [p.path for p in post.params],
        "samples": post.samples,
        "weights": post.weights.tolist(),
        "sigma_pp": post.sigma_pp,
        "priors": [[p.path, p.prior, list(p.args)] for p in post.params],
        "report": report,
        "fitted": {  # where it comes from: read by a scenario that takes a prior from it
            "scenario": scenario.name,
            "file": scenario.source,
            "until": (until or scenario.fit_cutoff()).isoformat(),
            "fields": {
                p.path: {"unit": p.unit, "bounds": [_finite(p.bounds[0]), _finite(p.bounds[1])], "integer": p.integer}
                for p in post.params
            },
        },
    }
    if ex_post is not None:
        body["fitted"].update({"ex_post": True, "conditioned_until": ex_post["until"], "figures": ex_post["figures"]})
    doc = {"format": FORMAT, "sha256": checksum(body), **body}
    path = (
        posterior_path(scenario, cache_dir)
        if ex_post is None
        else expost_posterior_path(scenario, cache_dir, dt.date.fromisoformat(ex_post["until"]))
    )
    store_entry(path, doc, "the posterior")
    return path


def load_posterior(scenario: Scenario, cache_dir: str | Path) -> Posterior | None:
    """The stored posterior for this market and these priors, or None when none is stored. A stored one is
    checked in full (:func:`check_posterior`): anything wrong with it (damaged, edited, fitted under other priors
    or parameters, weights worth fewer draws than :func:`ess_floor`) raises a UserError naming the file and
    the problem; it is never silently replaced by the priors."""
    path = posterior_path(scenario, cache_dir)
    if what_is(path) is None:
        return None
    try:
        return check_posterior(json.loads(read_regular(path)), scenario, path)
    except (BadEntry, ValueError) as e:
        problem = str(e) if isinstance(e, BadEntry) else "not valid JSON (truncated or damaged)"
        raise UserError(
            f"{path}: the posterior stored by `marketsim fit` {problem}; `marketsim fit` remakes it, --prior ignores it"
        ) from None


def check_posterior(doc, scenario: Scenario, path: Path | None = None) -> Posterior:
    """The posterior in ``doc`` (a parsed posterior file) for ``scenario``, checked in full: format, keys and
    checksum; the parameters and priors are the scenario's uncertain ones; every sample gives each of them a
    number inside its support (the prior's, truncated to the field's bounds); the weights are finite,
    non-negative, one per sample, with a positive sum; the kernel's sigma is a positive number; the effective
    sample size is at least :func:`ess_floor`. Raises :class:`marketsim.fit.cache.BadEntry` saying what is wrong
    (a phrase that follows "the posterior stored by `marketsim fit`")."""
    try:
        body = check_document(doc)
    except BadPosterior as e:
        raise BadEntry(str(e)) from None
    params = scenario.uncertain
    want = [p.path for p in params]
    if body["params"] != want:
        raise BadEntry(
            f"was fitted for the uncertain parameters {_names(body['params'])}, not the scenario's {_names(want)}"
        )
    if body["priors"] != [[p.path, p.prior, list(p.args)] for p in params]:
        raise BadEntry(
            f"was fitted under other priors than the scenario's ({'; '.join(p.path + ': ' + p.describe() for p in params)})"
        )
    try:
        seen = ex_post_of(body.get("fitted"))
    except BadPosterior as e:
        raise BadEntry(str(e)) from None
    if seen is not None:  # it saw the held-out figures: drawing from it would leak them into the skill
        raise BadEntry(
            f"is an ex-post posterior (conditioned on the held-out {figures_text(seen['figures'])} up to "
            f"{seen['until']}): the scenario's own projections and back-tests may not draw from it"
        )
    sigma, samples, weights = body["sigma_pp"], body["samples"], body["weights"]
    support = {p.path: _support(p) for p in params}
    for i, v in enumerate(samples):
        if not isinstance(v, dict) or sorted(v) != sorted(want):
            raise BadEntry(f"has samples[{i}] that does not give exactly the parameters {_names(want)}")
        for p in params:
            x, (lo, hi) = v[p.path], support[p.path]
            if not _number(x) or not lo <= x <= hi or (p.integer and x != int(x)):
                raise BadEntry(
                    f"has samples[{i}].{p.path} = {x!r}, outside its support {lo:g} .. {hi:g}"
                    f"{' (an integer)' if p.integer else ''}"
                )
    post = Posterior(params, samples, np.asarray(weights, dtype=float), float(sigma), path)
    floor = ess_floor(len(samples))
    if post.ess < floor:
        raise BadEntry(
            f"is worth {post.ess:.1f} draws (effective sample size) of {len(samples)}, under the floor of {floor:g}"
        )
    return post


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _names(paths) -> str:
    return ", ".join(map(str, paths)) if isinstance(paths, list) and paths else "(none)"


def _support(p: Uncertain) -> tuple[float, float]:
    """Where draws of ``p`` can fall: its prior's support within the field's bounds (a little slack for the
    rounding of the stored numbers)."""
    a, b = p.distribution().support()
    lo, hi = max(p.bounds[0], float(a)), min(p.bounds[1], float(b))
    eps = 1e-9 * max(1.0, abs(lo), abs(hi))
    return lo - eps, hi + eps


def condition(
    scenario: Scenario,
    *,
    k: int = DEFAULT_DRAWS,
    sigma_pp: float | None = None,
    executor=None,
    cache_dir: str | Path | None = None,
    on_progress=None,
    ex_post_until: dt.date | None = None,
) -> tuple[Posterior, dict]:
    """Weigh ``k`` prior draws by how well their fits meet the observations (see the module docstring).
    ``sigma_pp``: the kernel's observation error for every source (``--sigma``); None: each source's from the
    central fit's observation model. Returns the posterior and a summary (per-parameter report, failed draws,
    effective sample size, the observation error used per source). With ``ex_post_until`` (DATE), the held-out
    observations that end by DATE weigh the draws too (ex post: the module docstring); the summary's ``ex_post``
    lists them."""
    if not scenario.uncertain:
        raise UserError(f"{scenario.source}: no uncertain parameter (a range or a prior) to condition on the data")
    if not scenario.fittable_observations:  # held-out ones (holdout: true) never enter a fit
        raise UserError(f"{scenario.source}: no observations to condition on (held-out ones are never fitted)")
    if k < ess_floor(k):  # the effective sample size never exceeds the number of draws: refuse before any fit
        raise UserError(
            f"--draws {k}: a posterior of {k} draws is worth at most {k} (effective sample size), under "
            f"the floor of {ess_floor(k):g} a posterior needs to be stored; give --draws {DEFAULT_DRAWS} "
            f"(the default) or more"
        )
    if cache_dir is not None:
        check_folder(Path(cache_dir))
        check_writable(Path(cache_dir), "the posterior (and any missing fit)")  # before the costly fits
    followed = [] if ex_post_until is None else heldout_until(scenario, ex_post_until)
    draws = prior_draws(scenario, k, scenario.seed)
    cache = None if cache_dir is None else str(cache_dir)
    start = central_fit(scenario, cache)
    fits = map_jobs(
        executor,
        fit_task,
        [(with_draw(scenario, v), cache, FitOptions(allow_fixed=True, start=start)) for v in draws.values],
        "fits",
        on_progress,
    )
    residuals = [None if "error" in f else np.asarray(f["residuals"], dtype=float) for f in fits]
    # the kernel's sigma per residual: its source's error in the central fit's observation model (every draw fits
    # the same observations, in the same order); no central fit: the prior for every source
    model = from_calibration(start, override=sigma_pp) if start is not None else estimate([], [], [], override=sigma_pp)
    sources = [o["source"] for o in start.observations] if start is not None else []
    n_res = max((len(r) for r in residuals if r is not None), default=0)
    if sources and len(sources) == n_res:
        sigma, errors = model.kernel_sigma(sources), {s: model.error(s) for s in sorted(set(sources))}
    else:
        sigma, errors = np.full(n_res, model.error("").scale_pp), {"(every source)": model.error("")}
    if followed:  # a held-out figure's kernel: its source's error and its offset's (the spread, if never fitted)
        extra = [
            math.hypot(model.error(o.source).scale_pp, model.offset_se(o.source, r))
            for o in followed
            for r, _ in o.shares
        ]
        sigma = np.concatenate([sigma, np.asarray(extra, dtype=float)])
    if followed:  # ex post: each fitted draw's misses on what followed join its residuals
        missed = map_jobs(
            executor,
            heldout_task,
            [
                (with_draw(scenario, v), f, followed)
                for v, f in zip(draws.values, fits, strict=True)
                if "error" not in f
            ],
            "held-out paths",
            on_progress,
        )
        it = iter(missed)
        residuals = [None if r is None else np.concatenate([r, next(it)]) for r in residuals]
    w = kernel_weights(residuals, sigma)
    if w.sum() == 0:
        first = next((f["error"] for f in fits if "error" in f), "no draw could be fitted")
        raise UserError(f"no parameter draw could be fitted to the observations; the first: {first}")
    rms = float(np.sqrt(np.mean(sigma**2))) if n_res else model.error("").scale_pp
    post = Posterior(draws.params, draws.values, w, rms)
    floor = ess_floor(k)
    if post.ess < floor:  # a posterior on a handful of points: neither stored nor reported as "narrowing"
        kept = (
            None
            if cache_dir is None
            else posterior_path(scenario, cache_dir)
            if ex_post_until is None
            else expost_posterior_path(scenario, cache_dir, ex_post_until)
        )
        kept = f"; the posterior stored before ({kept}) is left as it was" if kept is not None and kept.exists() else ""
        raise UserError(
            f"{scenario.source}: the posterior is worth {post.ess:.1f} draws (effective sample size: the fits of "
            f"{k} prior draws, weighted by a kernel of the observation errors "
            f"{', '.join(f'{s} {e.scale_pp:.2g}' for s, e in errors.items())} points), under the floor of {floor:g}; "
            f"nothing was stored{kept}; give more --draws (e.g. {max(2 * k, DEFAULT_DRAWS)}) or a larger --sigma "
            f"(the observation error you assume for every source, in points)"
        )
    until = scenario.fit_cutoff()
    report = parameter_report(draws, w, scenario, until, ex_post_until)
    summary = {
        "scenario": scenario.name,
        "draws": k,
        "fitted": sum(r is not None for r in residuals),
        "sigma_pp": rms,  # the kernel's observation error, root mean square over the residuals
        "observation_error": {s: {**e.to_dict(), "described": e.describe()} for s, e in errors.items()},
        "ess": post.ess,
        "ess_floor": floor,
        "until": until.isoformat(),
        "parameters": report,
        "failed": [
            {"values": v, "reason": f["error"]} for v, f in zip(draws.values, fits, strict=True) if "error" in f
        ],
    }
    if ex_post_until is not None:
        summary["ex_post"] = {"until": ex_post_until.isoformat(), "figures": [figure(o) for o in followed]}
    return post, summary


def refuse_ex_post_leak(scenario: Scenario, until: dt.date, later: list[Observation]) -> None:
    """Refuse (one line) a back-test of ``scenario`` from the cut-off ``until`` that predicts ``later`` when one
    of its parameters takes its prior from an ex-post posterior conditioned on figures up to a date on or after
    ``until`` and acts before the last of ``later`` ends: the prediction would be scored with what the prior
    already saw. (The validator lets such a prior in only for a decision on or after that date; a back-test moves
    the decision earlier.) A parameter that acts only after every predicted observation changes no prediction."""
    if not later:
        return
    end = max(o.end for o in later) + dt.timedelta(days=1)
    for u in scenario.uncertain:
        if not u.posterior:
            continue
        try:
            seen = ex_post_of(read_document(Path(u.posterior[0])).get("fitted"))
        except BadPosterior as e:
            raise UserError(f"{u.posterior[0]}: the posterior {e}; it gives {u.path} its prior") from None
        if seen is not None and until <= seen["until"] and acts_before(scenario, u.path, end):
            raise UserError(
                f"{scenario.source}: {u.path} takes its prior from an ex-post posterior conditioned on the held-out "
                f"{figures_text(seen['figures'])} up to {seen['until']}; a back-test from {until} predicts "
                f"observations through {end - dt.timedelta(days=1)} that it acts on, and would score them with "
                f"what the prior already saw; back-test from after {seen['until']}, or give it a value of its own "
                f"(--set {u.path}=VALUE)"
            )


def heldout_until(scenario: Scenario, until: dt.date) -> list[Observation]:
    """The held-out observations (``holdout: true``) that end on or before ``until``: what an ex-post fit weighs
    the draws by. Refused in one line when there is none."""
    followed = [o for o in scenario.holdout_observations if o.end <= until]
    if not followed:
        held = ", ".join(f"{o.source} {o.label} (ends {o.end})" for o in scenario.holdout_observations)
        raise UserError(
            f"{scenario.source}: --ex-post --until {until}: no held-out observation (holdout: true) ends by then, "
            f"nothing followed to condition on; "
            + (f"the held-out ones: {held}" if held else "the scenario holds none (mark later figures holdout: true)")
        )
    return followed


def figure(o: Observation) -> dict:
    """A held-out figure as an ex-post posterior records it: source, period (label, first and last day), shares."""
    return {
        "source": o.source,
        "period": o.label,
        "start": o.start.isoformat(),
        "end": o.end.isoformat(),
        "shares": {r: v for r, v in o.shares},
    }


def heldout_task(scenario: Scenario, fit: dict, observations: list[Observation]) -> np.ndarray:
    """One fitted draw's misses (points) on held-out ``observations``, one per (observation, retailer) in order:
    its expected path at the fitted values (the scenario's seed and consumers; after the fit's cut-off the
    trends follow the scenario's ``forecast``) averaged over each period, plus the source's fitted offset (none
    where the fit has none for that source and retailer), minus the observed share."""
    sc = with_event_values(scenario, fit["event_values"])
    cal, names = sc.calendar, sc.retailer_names
    horizon = max(cal.step_of(o.end) for o in observations) + 1
    path = expected_path(sc, fit["alpha"], fit["trend"], sc.seed, sc.consumers.count, horizon)
    out = []
    for o in observations:
        shares = path.period_shares(period_weights(cal, o, horizon)[None, :])[0]
        offsets = (fit["offsets"] or {}).get(o.source, {})
        out += [shares[names.index(r)] * 100 + offsets.get(r, 0.0) - v * 100 for r, v in o.shares]
    return np.asarray(out, dtype=float)
