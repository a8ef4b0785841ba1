"""The observation model (src/marketsim/fit/observation.py, docs/model.md section 8 "v3: observation error"): each
source's error estimated from a fit's residuals with a stated prior, offsets with their uncertainty, the spread of
offsets for a pair no fit saw; the back-test's predictive intervals and ``marketsim fit``'s kernel use it, and
``--sigma`` overrides it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from marketsim.experiments.backtest import predict_heldout
from marketsim.fit.calibrate import FitPath
from marketsim.fit.observation import (
    OFFSET_PRIOR_DOF,
    OFFSET_PRIOR_SCALE_PP,
    SIGMA_PRIOR_DOF,
    SIGMA_PRIOR_SCALE_PP,
    Prior,
    estimate,
    residual_dof,
)
from marketsim.scenario.core import parse_text
from tests.helpers import cli, fit_market_yaml


def _q95(model, source, retailer, n=200_000, seed=1) -> float:
    """The 95% point of ``n`` predictive draws (points, centred) of a figure from ``source``."""
    return float(np.quantile(model.noise(source, retailer, np.random.default_rng(seed), n), 0.95))


def test_the_estimator_is_the_conjugate_posterior_worked_by_hand():
    # P: the level source (no offset), 3 residuals, one fitted parameter acting on its first two rows only;
    # Q: 3 residuals of retailer A with a fitted offset (+2 points); R: one residual of A with its own offset
    sources = ["P", "P", "P", "Q", "Q", "Q", "R"]
    retailers = ["A"] * 7
    r = np.array([1.0, -1.0, 0.5, 2.0, -1.0, -1.0, 0.3])
    J = np.array([[1.0], [-1.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    m = estimate(sources, retailers, r, offsets={"Q": {"A": 2.0}, "R": {"A": -4.0}}, jacobian=J)
    nu0, t0 = SIGMA_PRIOR_DOF, SIGMA_PRIOR_SCALE_PP
    # leverages by hand: the parameter's column (1, -1, 0) gives P's first two rows 1/2 each: P keeps 2 of its 3
    # degrees of freedom; Q's offset takes 1/3 of each of its rows: 2 of 3; R's offset takes its only one: prior
    p, q, rr = m.error("P"), m.error("Q"), m.error("R")
    assert p.dof == pytest.approx(2.0) and q.dof == pytest.approx(2.0) and rr.dof == pytest.approx(0.0)
    assert p.nu == pytest.approx(nu0 + 2) and p.scale_pp == pytest.approx(math.sqrt((nu0 * t0**2 + 2.25) / (nu0 + 2)))
    assert q.nu == pytest.approx(nu0 + 2) and q.scale_pp == pytest.approx(math.sqrt((nu0 * t0**2 + 6.0) / (nu0 + 2)))
    assert (rr.origin, rr.nu, rr.scale_pp) == ("prior", nu0, t0)
    assert (p.origin, q.origin) == ("estimated", "estimated")
    # the spread of offsets between sources: its prior updated with the two fitted offsets
    s = m.offset_spread
    assert s.nu == pytest.approx(OFFSET_PRIOR_DOF + 2)
    assert s.scale_pp == pytest.approx(
        math.sqrt((OFFSET_PRIOR_DOF * OFFSET_PRIOR_SCALE_PP**2 + 4 + 16) / (OFFSET_PRIOR_DOF + 2))
    )
    # offsets: fitted (with s.e. sigma / sqrt(n)), the level source's (0 exactly), a pair never seen
    assert m.offset("Q", "A") == (2.0, "fitted") and m.offset("P", "A") == (0.0, "level")
    assert m.offset("P", "B") == (0.0, "unseen") and m.offset("S", "A") == (0.0, "unseen")
    assert m.offset_se("Q", "A") == pytest.approx(q.scale_pp * math.sqrt(q.nu / (q.nu - 2)) / math.sqrt(3))
    # the posterior predictive, sampled: a Student t with nu degrees of freedom and scale s (level pair), scale
    # s sqrt(1 + 1/n) for an offset fitted on n observations
    assert _q95(m, "P", "A") == pytest.approx(p.scale_pp * stats.t.ppf(0.95, p.nu), rel=0.02)
    assert _q95(m, "Q", "A") == pytest.approx(q.scale_pp * math.sqrt(4 / 3) * stats.t.ppf(0.95, q.nu), rel=0.02)
    # the kernel of `marketsim fit`: each residual's source's posterior scale
    np.testing.assert_allclose(m.kernel_sigma(sources), [p.scale_pp] * 3 + [q.scale_pp] * 3 + [t0])


def test_residual_degrees_of_freedom_add_up_and_make_the_variance_unbiased():
    """y = X beta + offsets + e with equal errors, fitted by least squares over many trials: each source's sum of
    squared residuals over its degrees of freedom estimates sigma^2 (counting a source's residuals, less its
    offsets, would not: the slope sits on source A's rows), and the degrees of freedom add up to the fit's."""
    rng = np.random.default_rng(7)
    src = ["A"] * 4 + ["B"] * 6 + ["C"] * 5
    n = len(src)
    x = np.zeros(n)
    x[:4] = [0.0, 1.0, 2.0, 3.0]  # a slope seen on A's rows only, plus a little on B's
    x[4:6] = [0.5, -0.5]
    D = np.column_stack([[s == k for s in src] for k in ("B", "C")]).astype(float)  # offsets of B and C (A: level)
    X = np.column_stack([np.ones(n), x])  # a level and a slope
    A_full = np.column_stack([D, X])
    proj = A_full @ np.linalg.pinv(A_full)
    J = X - D @ np.linalg.pinv(D) @ X  # the Jacobian of the residuals with the offsets profiled out
    sigma = 1.7
    ss = {k: [] for k in "ABC"}
    dof = None
    for _ in range(4000):
        y = A_full @ rng.normal(0, 3, size=4) + rng.normal(0, sigma, size=n)
        r = y - proj @ y
        m = estimate(src, ["j"] * n, r, offsets={"B": {"j": 0.0}, "C": {"j": 0.0}}, jacobian=J)
        for k in "ABC":
            ss[k].append(m.error(k).ss)
        dof = {k: m.error(k).dof for k in "ABC"}
    assert dof is not None and sum(dof.values()) == pytest.approx(n - 4)
    assert dof["A"] < 4 - 1  # the slope takes more than one of A's four
    for k in "ABC":
        assert np.mean(ss[k]) / dof[k] == pytest.approx(sigma**2, rel=0.05), k


def test_predictive_intervals_cover_their_nominal_rate_over_repeated_trials():
    """Each trial draws every source's error from the stated prior and its offset from the stated spread, makes
    each source's residuals (1, 2 and 5 observations, each source with a fitted offset but the level one), fits
    the offsets, and predicts a new figure of each source and of a source never seen. Over 2,000 trials x 4
    sources the 90% and 50% intervals (percentiles of the model's predictive draws) cover 90% and 50% of the
    figures, within 1.5 and 2 points (the binomial standard errors are 0.3 and 0.6 points); the unseen source's
    within 3 (its offset's spread is learned from fitted offsets, which carry their own noise)."""
    rng = np.random.default_rng(11)
    prior = Prior()
    sizes = {"L": 3, "S1": 1, "S2": 2, "S5": 5}
    hits = {k: {"90": [], "50": []} for k in (*sizes, "new")}
    for _ in range(2000):
        sig = {k: prior.scale_pp * math.sqrt(prior.dof / rng.chisquare(prior.dof)) for k in (*sizes, "new")}
        tau = prior.offset_scale_pp * math.sqrt(prior.offset_dof / rng.chisquare(prior.offset_dof))
        off = {k: (0.0 if k == "L" else rng.normal(0, tau)) for k in (*sizes, "new")}
        sources, resid, fitted = [], [], {}
        for k, n in sizes.items():
            e = rng.normal(0, sig[k], size=n)
            if k == "L":
                r = e  # the level source: no offset, residuals are the errors
            else:
                fitted[k] = {"A": float(off[k] + e.mean())}  # the offset's estimate: the mean gap
                r = e - e.mean()
            sources += [k] * n
            resid += list(r)
        m = estimate(sources, ["A"] * len(sources), resid, offsets=fitted, prior=prior)
        for k in (*sizes, "new"):
            est = fitted.get(k, {}).get("A", 0.0)
            y = off[k] + rng.normal(0, sig[k])
            draws = est + m.noise(k, "A", rng, 2000)
            lo90, lo50, hi50, hi90 = np.quantile(draws, [0.05, 0.25, 0.75, 0.95])
            hits[k]["90"].append(lo90 <= y <= hi90)
            hits[k]["50"].append(lo50 <= y <= hi50)
    seen90 = np.mean([h for k in sizes for h in hits[k]["90"]])
    seen50 = np.mean([h for k in sizes for h in hits[k]["50"]])
    assert seen90 == pytest.approx(0.90, abs=0.015)
    assert seen50 == pytest.approx(0.50, abs=0.02)
    for k in sizes:  # each size, including one observation (no residual left: the prior) and the level source
        assert np.mean(hits[k]["90"]) == pytest.approx(0.90, abs=0.03), k
    assert np.mean(hits["new"]["90"]) == pytest.approx(0.90, abs=0.03)
    assert np.mean(hits["new"]["50"]) == pytest.approx(0.50, abs=0.04)


def test_a_source_the_fit_never_saw_gets_the_wider_prior_based_interval():
    """The back-test's predictive intervals (predict_heldout): a source with residuals gets its estimated error; a
    source the fit never saw (as Analysys in validation/) the prior's, plus the spread of offsets: wider; --sigma
    fixes every source's error at the number given."""
    sc = parse_text(
        fit_market_yaml(
            "primary_source: P\nobservations:\n"
            "  - {source: P, period: 2012Q1, shares: {A: 0.52}}\n"
            "  - {source: P, period: 2012Q3, shares: {A: 0.53}}\n"
            "  - {source: P, period: 2013Q1, shares: {A: 0.55}}\n"
            "  - {source: U, period: 2013Q1, shares: {A: 0.55}}\n",
            n=500,
        )
    )
    model = estimate(["P"] * 6, ["A"] * 6, [0.2, -0.1, 0.1, -0.2, 0.15, -0.05])  # 6 small residuals, level source
    fit = {"offsets": {}, "observation": model.to_dict()}
    T = 24
    gmv = np.tile([55.0, 30.0, 15.0], (T, 1))
    path = FitPath(gmv, np.ones(T), np.ones(T))
    seen, unseen = sc.observations[2], sc.observations[3]
    out = predict_heldout(sc, [seen, unseen], [fit], 1, [path], np.array([1.0]), T, np.random.default_rng(0))
    width = {o.source: p["hi90"] - p["lo90"] for o, _, p in out}
    e = model.error("P")
    assert e.origin == "estimated" and e.scale_pp < SIGMA_PRIOR_SCALE_PP
    assert width["P"] == pytest.approx(2 * e.scale_pp * stats.t.ppf(0.95, e.nu), rel=0.03)
    u = model.error("U")
    assert (u.origin, u.scale_pp, u.nu) == ("prior", SIGMA_PRIOR_SCALE_PP, SIGMA_PRIOR_DOF)
    assert width["U"] > 2 * SIGMA_PRIOR_SCALE_PP * stats.t.ppf(0.95, SIGMA_PRIOR_DOF) > width["P"]
    assert width["U"] > 2 * width["P"]  # the offset's spread: a level difference no fit could measure
    for _, _, p in out:
        assert p["predicted"] == pytest.approx(55.0)
    # --sigma 1: a normal of 1 point for the seen source (as before the observation model)
    out = predict_heldout(sc, [seen], [fit], 1, [path], np.array([1.0]), T, np.random.default_rng(0), 1.0)
    assert out[0][2]["hi90"] - out[0][2]["lo90"] == pytest.approx(2 * 1.645, abs=0.05)


OBS = """primary_source: P
observations:
  - {source: P, period: 2012Q1, shares: {A: 0.52, B: 0.30}}
  - {source: P, period: 2012Q3, shares: {A: 0.53, B: 0.29}}
  - {source: P, period: 2013Q1, shares: {A: 0.55, B: 0.28}}
  - {source: Q, period: 2012Q2, shares: {A: 0.49, B: 0.33}}
  - {source: Q, period: 2012Q4, shares: {A: 0.51, B: 0.30}}
"""
#: an uncertain event after the cut-off: every draw's fit is the central one (one fit, cached), and every draw
#: weighs the same
EXTRA = """events:
  - {id: promo, type: promotion, date: 2013-06-01, retailer: B,
     utility: {value: 0.3, range: [0.1, 0.5], assumption: "a test"}}
"""


def test_marketsim_fit_reports_each_sources_error_and_sigma_overrides_it(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(OBS, n=600, extra=EXTRA))
    small = ("--draws", 12, "--consumers", 600, "--workers", 1, "--json")
    env = {"MARKETSIM_FIT_CACHE": str(tmp_path / "cache")}
    r = cli("fit", f, *small, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["observation_error"]
    assert set(est) == {"P", "Q"}
    for s, e in est.items():
        assert e["from"] in ("estimated", "prior") and e["sigma_pp"] > 0, s
        assert e["from"] in e["described"], s
    assert est["P"]["n"] == 6 and est["Q"]["n"] == 4
    assert est["P"]["sigma_pp"] != pytest.approx(1.0) or est["Q"]["sigma_pp"] != pytest.approx(1.0)
    r = cli("fit", f, *small, "--sigma", 1, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {s: (e["sigma_pp"], e["from"]) for s, e in doc["observation_error"].items()} == {
        "P": (1.0, "override"),
        "Q": (1.0, "override"),
    }
    assert doc["sigma_pp"] == 1.0 and doc["settings"]["sigma"] == 1.0
    # the table's caption names each source's error and where it came from
    r = cli("fit", f, *small[:-1], cwd=tmp_path, env=env, columns=200)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for s, e in est.items():
        assert f"{s} {e['sigma_pp']:.2g} pp ({e['described']})" in text, text


def test_residual_dof_without_a_jacobian_spreads_the_parameters_evenly():
    # 4 rows, one offset over the last two, 2 parameters and a conversion row without a Jacobian: each of the 5
    # equations carries 2/5 of the parameters' leverage; the offset's rows 1/2 more
    np.testing.assert_allclose(residual_dof(4, [[2, 3]], None, 2, 1), [0.6, 0.6, 0.1, 0.1])


def test_marketsim_backtest_reports_each_sources_error_and_sigma_overrides_it(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(OBS, n=600))
    small = ("--until", "2013-01-01", "--draws", 1, "--replicates", 1, "--workers", 1, "--json")
    env = {"MARKETSIM_FIT_CACHE": str(tmp_path / "cache")}
    widths = {}
    for extra in ((), ("--sigma", 1)):
        r = cli("backtest", f, *small, *extra, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        err = doc["observation_error"]
        assert set(err["sources"]) == {"P", "Q"} and err["unseen_offsets"]["sigma_pp"] > 0
        got = {s: (e["sigma_pp"], e["from"]) for s, e in err["sources"].items()}
        if extra:
            assert got == {"P": (1.0, "override"), "Q": (1.0, "override")}
        else:
            assert {w for _, w in got.values()} <= {"estimated", "prior"}
        widths[bool(extra)] = [h["hi90"] - h["lo90"] for h in doc["heldout"]]
    # one draw, one replicate: the band is the observation error alone; 1 point is narrower than the estimate
    assert widths[True] == pytest.approx([2 * 1.645] * len(widths[True]), abs=0.1)  # (20,000 draws)
    assert min(widths[False]) > max(widths[True])
