"""The error bars (docs/model.md section 10): the single-draw t interval on fixed data, the mixture interval over
weighted parameter draws on a case with a known answer, the horizon a projection reports, and the coverage of the
projection's 95% interval measured with enough trials to tell a t interval from a z interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from marketsim.experiments.projection import project, summary
from marketsim.experiments.uncertainty import Draws, central_draws, summarize
from marketsim.scenario.core import parse_text
from tests.helpers import simple_market_yaml

T_975_3 = 3.182446305284263  # t(0.975, 3 degrees of freedom), from the tables
ONE_DRAW = Draws((), np.zeros((1, 0)), [{}], np.ones(1), "central")


def test_single_draw_interval_half_width_is_t_s_over_sqrt_n():
    x = np.array([[0.1, 0.4, 0.2, 0.7]])  # mean 0.35, sample variance 0.07
    s = summarize(x, ONE_DRAW)
    half = T_975_3 * math.sqrt(0.07) / 2
    assert s.mean == pytest.approx(0.35, abs=1e-15)
    assert s.interval == pytest.approx((0.35 - half, 0.35 + half), abs=1e-12)  # z would give +-0.2593
    assert s.var_noise == pytest.approx(0.07) and s.var_assumptions == 0 and "t interval" in s.covers
    one = summarize(np.array([[0.3]]), ONE_DRAW)
    assert one.mean == 0.3 and all(math.isnan(v) for v in one.interval) and "one replicate" in one.covers
    # a threshold probability is the share of values below it
    assert summarize(x, ONE_DRAW, thresholds=(0.3,)).below == {0.3: 0.5}


def test_mixture_interval_over_weighted_draws_has_the_known_answer():
    """Two draws with weights 0.9 and 0.1: the first's replicates are the quantiles of N(0, 1), the second's are
    all 10. The mixture's 2.5% point is N(0, 1)'s 0.025 / 0.9 quantile (-1.915), its 97.5% point is 10, its mean 1;
    the variance between draws is 0.9 x 1^2 + 0.1 x 9^2 = 9, within draws 0.9 x 1."""
    R = 4000
    grid = stats.norm.ppf((np.arange(R) + 0.5) / R)
    values = np.vstack([grid, np.full(R, 10.0)])
    draws = Draws((), np.zeros((2, 0)), [{}, {}], np.array([0.9, 0.1]), "prior")
    s = summarize(values, draws)
    assert s.mean == pytest.approx(1.0, abs=1e-9)
    assert s.interval[0] == pytest.approx(stats.norm.ppf(0.025 / 0.9), abs=2e-3)  # equal weights: -1.645
    assert s.interval[1] == pytest.approx(10.0, abs=1e-12)
    within = grid.var(ddof=1)
    assert s.var_noise == pytest.approx(0.9 * within, rel=1e-9)
    assert s.var_assumptions == pytest.approx(0.9 * 1.0 + 0.1 * 81.0 - 0.9 * within / R, rel=1e-9)
    assert s.var_total == pytest.approx(0.9 * grid.var() + 0.9 + 0.1 * 81.0, rel=1e-6)
    assert "assumptions and simulation noise" in s.covers
    # the interval of a mixture does not shrink to the mean's: a t interval over 8,000 values would be +-0.07
    assert s.interval[1] - s.interval[0] > 10


def _hike_at(step, steps, n=1000):
    """A static logit market (no habit, social ties or friction): B's price rises by 30% at ``step``."""
    text = simple_market_yaml(
        n=n,
        steps=steps,
        rate=0.6,
        events=(f"[{{id: hike, type: price_change, step: {step}, retailer: B, price_index: 1.3}}]"),
    )
    return parse_text(text)


ALPHA = np.array([-1.0, -0.5])


def _closed_form_share_a(price_b):
    ea, eb = math.exp(ALPHA[0]), math.exp(ALPHA[1] - 2.0 * math.log(price_b))
    return ea / (ea + eb)


def test_projection_reports_the_horizon_not_the_first_step():
    """The price rises at the last of 4 steps: at the horizon A's share moves by the closed-form amount, while at
    every earlier step the two arms are identical (a report of the first step would say 0)."""
    sc = _hike_at(3, 4, n=4000)
    p = project(sc, draws=central_draws(sc), replicates=3)
    d = p.arrays["scenario"]["gmv_share"] - p.arrays["baseline"]["gmv_share"]  # (draws, replicates, steps, retailers)
    assert np.all(d[:, :, :3, :] == 0) and np.all(d[:, :, 3, 0] > 0)
    want = _closed_form_share_a(1.3) - _closed_form_share_a(1.0)
    shift = p.shift("scenario")["A"]
    assert shift.mean == pytest.approx(want, abs=0.01) and shift.mean == pytest.approx(d[0, :, 3, 0].mean(), abs=1e-15)
    out = summary(p)
    assert out["horizon"] == "2020-01-27"  # step 3's date
    assert out["share_scenario"]["A"] == pytest.approx(p.arrays["scenario"]["gmv_share"][0, :, 3, 0].mean(), abs=1e-15)
    assert out["share_baseline"]["A"] == pytest.approx(_closed_form_share_a(1.0), abs=0.02)
    assert out["revenue_shift"]["from"] == "2020-01-27"  # revenue compared from the first step the arms differ


@pytest.mark.slow
def test_interval_coverage_tells_t_from_z():
    """600 projections of 4 paired replicates each (B's price rises at step 0 of 1): how often the reported 95%
    interval of A's share shift covers the true shift (the mean over all 2,400 replicates; the closed-form logit
    value agrees to within its noise). With 4 replicates a t interval covers 95%, a z interval (1.96) about 85.5%;
    600 trials put them 4 standard deviations either side of the 90.5% threshold."""
    trials, reps = 600, 4
    shifts, intervals = [], []
    for k in range(trials):
        sc = _hike_at(0, 1).with_overrides(seed=10_000 + k)
        p = project(sc, draws=central_draws(sc), replicates=reps)
        shifts.append(p.horizon("scenario")[0, :, 0] - p.horizon("baseline")[0, :, 0])
        intervals.append(p.shift("scenario")["A"].interval)
    truth = float(np.mean(shifts))
    assert truth == pytest.approx(_closed_form_share_a(1.3) - _closed_form_share_a(1.0), abs=0.003)
    lo, hi = np.array(intervals).T
    covered = float(np.mean((lo <= truth) & (truth <= hi)))
    z_cover = 2 * stats.t.cdf(1.96, reps - 1) - 1
    assert z_cover < 0.86
    assert 0.905 <= covered <= 0.985, f"95% intervals covered the true shift in {covered:.1%} of {trials} trials"
