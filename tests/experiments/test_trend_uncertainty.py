"""The fitted trends' uncertainty in projections (docs/model.md section 8, v3: a fitted trend has a standard error;
projections draw it like any uncertain parameter): each draw adds a normal with the fit's standard error to every
fitted trend, the same normal for every option of the draw; the spread between draws then grows with the horizon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marketsim.experiments.projection import perturb_trends, project, trend_pivots
from marketsim.experiments.uncertainty import central_draws
from marketsim.scenario.core import parse_text
from tests.fit.test_calibrate import synthetic_observations
from tests.helpers import fit_market_yaml


def _market(**kw):
    obs, conv = synthetic_observations()
    return parse_text(fit_market_yaml(obs, trend=("calibrate", "calibrate", 0), conversion=round(conv, 5), **kw))


def _fit(trend, se):
    return {"alpha": np.zeros(3), "trend": np.array(trend, float), "trend_se": se, "event_values": {}}


def test_each_draw_moves_every_fitted_trend_by_its_own_standard_error():
    sc = _market()
    draws = central_draws(sc, 4)
    by_draw = {
        k: {
            "a": _fit([-0.3, 0.2, 0.0], {"A": 0.05, "B": 0.1}),
            "b": _fit([-0.3, 0.2, 0.0], {"A": 0.5, "B": math.nan}),  # another option: its own errors (nan: 0)
        }
        for k in range(4)
    }
    by_draw[2] = {"a": {"error": "no fit"}, "b": {"error": "no fit"}}
    new, fits = perturb_trends(sc, draws, by_draw, [0, 1, 3], "a")
    z = np.array([(fits[k]["a"]["trend"][:2] - [-0.3, 0.2]) / [0.05, 0.1] for k in (0, 1, 3)])
    assert np.all(np.abs(z) > 0) and np.std(z) > 0.1  # standard normals, one per draw and trend
    for i, k in enumerate((0, 1, 3)):
        b = fits[k]["b"]["trend"]
        assert b[0] == pytest.approx(-0.3 + 0.5 * z[i, 0]) and b[1] == 0.2 and b[2] == 0.0  # the same z, its own se
        assert fits[k]["a"]["trend"][2] == 0.0  # the reference trend is not fitted: not drawn
        assert new.values[k]["retailers.A.trend"] == fits[k]["a"]["trend"][0]
    assert fits[2]["a"] == {"error": "no fit"}
    assert [p.path for p in new.params] == ["retailers.A.trend", "retailers.B.trend"]
    assert new.unit.shape == (4, 2) and np.allclose(new.weights, 0.25)
    # deterministic for the scenario seed
    again = perturb_trends(sc, draws, by_draw, [0, 1, 3], "a")[1]
    assert all(np.array_equal(again[k]["a"]["trend"], fits[k]["a"]["trend"]) for k in (0, 1, 3))


def test_a_drawn_trend_turns_about_the_middle_of_its_observations():
    """A slope drawn from its standard error turns the fitted line about the middle of the data (the pivot): the
    utility there stays the fitted one, so the draws agree where the observations are and part away from them.
    (Moving the trend alone, the attractiveness fixed, turned the line about the calendar start: draws of a
    trend with a large standard error then missed the very observations they were fitted to.)"""
    sc = _market()
    pivot = trend_pivots(sc)
    start = sc.calendar.start
    mids = [((o.start - start).days + (o.end - start).days) / 2 / 365.25 for o in sc.fit_observations()]
    assert pivot["A"] == pytest.approx(np.mean(mids)) and 0 < pivot["A"] < 2
    draws = central_draws(sc, 4)
    fit = {"alpha": np.array([-0.5, -0.8, -1.0]), "trend": np.array([-0.3, 0.2, 0.0]), "trend_se": {"A": 0.4, "B": 0.3}}
    by_draw = {k: {"a": {**fit, "event_values": {}}} for k in range(4)}
    _, fits = perturb_trends(sc, draws, by_draw, [0, 1, 2, 3], "a")
    for k in range(4):
        a, t = fits[k]["a"]["alpha"], fits[k]["a"]["trend"]
        assert not np.allclose(t[:2], fit["trend"][:2]) and not np.allclose(a[:2], fit["alpha"][:2])
        for j, n in enumerate("AB"):
            assert a[j] + t[j] * pivot[n] == pytest.approx(fit["alpha"][j] + fit["trend"][j] * pivot[n])
        assert a[2] == fit["alpha"][2] and t[2] == 0.0  # the reference is not drawn


@pytest.mark.slow
def test_the_spread_between_draws_grows_with_the_horizon():
    """Four draws of one market that differ only in their trends: the draws' mean shares spread more at the
    end of two years, and at the start, than in the middle of the observations the trends were fitted to (a
    drawn trend turns the line about that middle);
    without the option they are one market (no spread between draws)."""
    sc = _market(n=2000)
    draws = central_draws(sc, 4)
    with_tu = project(sc, draws=draws, replicates=2, trend_uncertainty=True)
    without = project(sc, draws=draws, replicates=2, trend_uncertainty=False)
    share = with_tu.arrays["scenario"]["gmv_share"][..., 0]  # (draws, replicates, steps): retailer A
    spread = share.mean(axis=1).std(axis=0)
    # the draws turn about the middle of A's observations: they agree there and part on either side of it
    # (shares follow utilities with the lag of habit, so the narrowest point comes a few steps after the pivot)
    low = int(np.argmin(spread))
    assert 3 <= low < len(spread) - 3, spread
    near = spread[low - 1 : low + 2].mean()
    assert spread[-3:].mean() > 2 * near and spread[:3].mean() > 2 * near, spread
    flat = without.arrays["scenario"]["gmv_share"]
    assert all(np.array_equal(flat[0], flat[k]) for k in range(1, 4))
    assert [p.path for p in with_tu.draws.params] == ["retailers.A.trend", "retailers.B.trend"]
