"""Parameter uncertainty (docs/model.md sections 8 and 10, property 9): intervals over draws, their
decomposition, the posterior's contraction and coverage, the back-test's naive forecasts, and executor
independence."""

import datetime as dt
import json
import math

import numpy as np
import pytest
from scipy import stats

from marketsim.experiments.backtest import naive_forecasts
from marketsim.experiments.posterior import kernel_weights
from marketsim.experiments.projection import project
from marketsim.experiments.uncertainty import central_draws, prior_draws, summarize, weighted_quantile
from marketsim.fit.calibrate import expected_path, fit_problem
from marketsim.scenario.core import Observation, parse_text
from tests.helpers import cli, fit_market_yaml, simple_market_yaml


def marketsim(*args, cwd):
    """``marketsim ARGS`` in this process (tests/helpers.py ``cli``)."""
    return cli(*args, cwd=cwd)


def _one_param_scenario(range_=(0.0, 1.0)):
    text = simple_market_yaml(
        n=2000,
        steps=4,
        events=(
            f"[{{id: promo, type: promotion, step: 0, retailer: A, utility: {{value: {sum(range_) / 2}, range: [{range_[0]}, "
            f"{range_[1]}], assumption: test}}}}]"
        ),
    )
    return parse_text(text)


def test_single_draw_interval_is_the_t_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(0.01, 0.02, size=(1, 7))
    s = summarize(x, central_draws(_one_param_scenario()))
    half = stats.t.ppf(0.975, 6) * x.std(ddof=1) / math.sqrt(7)
    assert np.allclose(s.interval, (x.mean() - half, x.mean() + half), rtol=0, atol=1e-15)
    assert "simulation noise only" in s.covers and s.var_assumptions == 0


def test_decomposition_recovers_known_variances():
    """values[k, r] = a x_k + noise: the assumptions' part is a^2 Var(x) and the noise's part s^2."""
    sc = _one_param_scenario()
    draws = prior_draws(sc, 64, seed=1)
    x = np.array([v["events.promo.utility"] for v in draws.values])
    a, s_noise, R = 0.03, 0.01, 50
    vals = a * x[:, None] + np.random.default_rng(2).normal(0, s_noise, size=(64, R))
    s = summarize(vals, draws, thresholds=(0.0,))
    assert abs(s.var_assumptions - a**2 * x.var()) < 0.1 * a**2 * x.var()
    assert abs(s.var_noise - s_noise**2) < 0.1 * s_noise**2
    assert s.drivers == {"events.promo.utility": pytest.approx(1.0)} and s.drivers_r2 > 0.85
    # the mixture interval does not shrink with more draws (a pooled t interval would)
    total_sd = math.sqrt(a**2 / 12 + s_noise**2)
    assert s.interval[1] - s.interval[0] > 3 * total_sd
    assert abs(s.below[0.0] - stats.norm.cdf(0, a / 2, total_sd)) < 0.05


def test_projection_decomposition_matches_closed_form_logit():
    """A static logit market (no habit, social ties or friction) with a promotion of uncertain utility u ~ U(0, 1)
    for A: A's share moves by p_A(u) - p_A(0) in closed form, so the mean shift and the assumptions' part of its
    variance are known integrals over the prior."""
    sc = _one_param_scenario()
    draws = prior_draws(sc, 16, seed=7)
    proj = project(sc, draws=draws, replicates=6, steps=4)
    s = proj.shift("scenario")["A"]
    va, vb = -1.0, -0.5 - 2.0 * math.log(1.0)

    def p_a(u):
        return math.exp(va + u) / (math.exp(va + u) + math.exp(vb))

    u = np.array([v["events.promo.utility"] for v in draws.values])
    exact = np.array([p_a(x) - p_a(0) for x in u])
    assert abs(s.mean - exact.mean()) < 0.004
    assert abs(math.sqrt(s.var_assumptions) - exact.std()) < 0.15 * exact.std()
    assert s.share_assumptions > 0.8  # at 2,000 consumers the promotion's range dwarfs the noise
    assert s.interval[0] < exact.min() + 0.01 and s.interval[1] > exact.max() - 0.01


@pytest.mark.slow
def test_property_9_posterior_contracts_and_covers():
    """docs/model.md property 9 on a cheap synthetic design: a promotion of unknown utility u ~ U(0, 1) starts at
    month 8; the primary source observes A and B quarterly; the fit uses the quarters through month 16 and
    holds out the rest. Over 40 trials (u drawn from the prior, observations simulated on another seed plus
    0.5-point noise), the 90% posterior interval must cover u and the held-out observations about 90% of the
    time, and the posterior must be much narrower than the prior (a posterior equal to the prior would pass
    coverage, not contraction)."""
    quarters = [
        (dt.date(2012, 1, 1) + dt.timedelta(days=90 * q), dt.date(2012, 1, 1) + dt.timedelta(days=90 * q + 89))
        for q in range(8)
    ]
    obs = "primary_source: P\nfit_until: 2013-05-01\nobservations:\n" + "".join(
        f"  - {{source: P, period: {{start: {a}, end: {b}}}, shares: {{A: 0.5, B: 0.3}}}}\n" for a, b in quarters
    )
    promo = "events:\n  - {id: promo, type: promotion, step: 8, retailer: A, utility: {value: 0.5, range: [0, 1], assumption: test}}"
    sc = parse_text(fit_market_yaml(obs, n=3000, alpha=(-0.6, -0.9, -1.0), trend=(0, 0, 0), extra=promo))
    prob = fit_problem(sc, dt.date(2014, 1, 1), allow_fixed=True)
    n_fit = sum(o.end < dt.date(2013, 5, 1) for o in prob.observations)
    draws = prior_draws(sc, 48, seed=11)
    alpha, trend = np.array([-0.6, -0.9, -1.0]), np.zeros(3)

    def shares(u, seed):
        s = sc.with_values({"events.promo.utility": float(u)})
        return expected_path(s, alpha, trend, seed, 3000, prob.horizon).period_shares(prob.weights)[:, :2] * 100

    sim = np.array([shares(v["events.promo.utility"], sc.seed) for v in draws.values])  # (K, obs, 2)
    sigma_obs = 0.5
    spread = np.array([shares(0.5, 100 + s) for s in range(6)]).std(axis=0, ddof=1).mean()  # simulation noise, points
    sigma = math.sqrt(sigma_obs**2 + spread**2)
    rng = np.random.default_rng(2024)
    covered_u = covered_obs = n_obs = 0
    sds = []
    trials = 40
    for t in range(trials):
        u_true = rng.random()
        data = shares(u_true, 1000 + t) + rng.normal(0, sigma_obs, size=sim.shape[1:])
        res = [(sim[k, :n_fit] - data[:n_fit]).ravel() for k in range(len(sim))]
        w = kernel_weights(res, sigma)
        u = np.array([v["events.promo.utility"] for v in draws.values])
        lo, hi = weighted_quantile(u, w, [0.05, 0.95])
        covered_u += lo - 0.02 <= u_true <= hi + 0.02  # +- half the design's spacing
        sds.append(math.sqrt(w @ (u - w @ u) ** 2))
        pick = rng.choice(len(w), size=4000, p=w)
        pred = sim[pick, n_fit:] + rng.normal(0, sigma, size=(4000,) + sim.shape[1:])[:, n_fit:]
        plo, phi = np.percentile(pred, [5, 95], axis=0)
        held = data[n_fit:]
        covered_obs += int(((plo <= held) & (held <= phi)).sum())
        n_obs += held.size
    rate_u, rate_obs = covered_u / trials, covered_obs / n_obs
    print(
        f"property 9: u covered in {covered_u}/{trials} trials, held-out observations in {covered_obs}/{n_obs}; "
        f"mean posterior sd {np.mean(sds):.3f} vs prior {1 / math.sqrt(12):.3f}"
    )
    assert 0.75 <= rate_u <= 1.0 and 0.75 <= rate_obs <= 0.99
    assert np.mean(sds) < 0.5 / math.sqrt(12)


def test_naive_forecasts_on_a_hand_made_series():
    def obs(src, y, q, a, b):
        start = dt.date(y, 3 * q - 2, 1)
        end = dt.date(y + (q == 4), 1 if q == 4 else 3 * q + 1, 1) - dt.timedelta(days=1)
        return Observation(src, f"{y}Q{q}", start, end, (("A", a), ("B", b)))

    past = [obs("P", 2012, 1, 0.50, 0.20), obs("P", 2012, 3, 0.54, 0.18), obs("Q", 2012, 2, 0.60, 0.25)]
    target = obs("P", 2013, 1, 0.0, 0.0)
    pers, trend = naive_forecasts(past, target, "A")
    assert pers == 0.54
    # a line through (mid Q1, 0.50) and (mid Q3, 0.54), extended to mid Q1 2013: two quarters on, +0.04
    mids = [(o.start.toordinal() + o.end.toordinal()) / 2 for o in (past[0], past[1], target)]
    expect = 0.50 + 0.04 * (mids[2] - mids[0]) / (mids[1] - mids[0])
    assert trend == pytest.approx(expect, abs=1e-9)
    assert naive_forecasts(past, obs("Q", 2013, 1, 0, 0), "A") == (0.60, None)
    assert naive_forecasts(past, obs("R", 2013, 1, 0, 0), "A") == (None, None)


def test_backtest_command_on_a_small_market(tmp_path):
    obs = (
        "primary_source: P\nobservations:\n"
        "  - {source: P, period: 2012Q1, shares: {A: 0.52, B: 0.30}}\n"
        "  - {source: P, period: 2012Q3, shares: {A: 0.53, B: 0.29}}\n"
        "  - {source: P, period: 2013Q1, shares: {A: 0.55, B: 0.28}}\n"
    )
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(obs, n=3000))
    r = marketsim(
        "backtest", f, "--until", "2013-01-01", "--draws", 1, "--replicates", 2, "--json", "--workers", 1, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"heldout", "mae", "coverage90"} and len(out["heldout"]) == 2
    h = {x["retailer"]: x for x in out["heldout"]}
    assert h["A"]["persistence"] == pytest.approx(53.0) and h["A"]["trend"] == pytest.approx(54.0, abs=0.2)
    # with one draw and 2 equally weighted replicates plus a symmetric observation error (a Student t: the source's
    # error estimated from the fit, docs/model.md section 8), the 90% band is symmetric about the prediction (their
    # mean) up to the resampling noise of its 5% and 95% points, and at least as wide as a 1-point normal error's
    for x in out["heldout"]:
        assert x["predicted"] == pytest.approx((x["lo90"] + x["hi90"]) / 2, abs=0.15)
        assert x["hi90"] - x["lo90"] >= 2 * 1.645 * 1.0 - 0.1
    inside = sum(x["lo90"] <= x["observed"] <= x["hi90"] for x in out["heldout"])
    assert out["coverage90_count"] == f"{inside} of 2"
    assert out["mae"]["persistence"] == pytest.approx((abs(53 - 55) + abs(29 - 28)) / 2)
    assert out["mae"]["model"] == pytest.approx(np.mean([abs(x["predicted"] - x["observed"]) for x in out["heldout"]]))
    assert (tmp_path / "results" / "fitmarket" / "backtest-2013-01-01--draws1" / "backtest.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_same_numbers_inline_local_processes_and_dask(tmp_path):
    sc = _one_param_scenario()
    path = tmp_path / "one.yaml"
    path.write_text(
        simple_market_yaml(
            n=2000,
            steps=4,
            events=(
                "[{id: promo, type: promotion, step: 1, retailer: A, utility: {value: 0.5, range: [0, 1], assumption: test}}]"
            ),
        )
    )
    runs = []
    for extra in (["--workers", 1], ["--workers", 2]):
        r = marketsim("project", path, "--draws", 3, "--replicates", 2, "--json", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        r = marketsim(
            "project",
            path,
            "--draws",
            3,
            "--replicates",
            2,
            "--json",
            "--scheduler",
            cluster.scheduler_address,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    for other in runs[1:]:
        assert other["shift"] == runs[0]["shift"] and other["share_scenario"] == runs[0]["share_scenario"]
    assert runs[0]["draws"]["k"] == 3 and sc.uncertain
