"""How trends continue after the fit cut-off (docs/model.md section 4, "Trends beyond the data"): the scenario's
``forecast.trend_after`` (linear, hold, damped) in ``Market.alpha_at``, against closed forms; a scenario without
the setting is the scenario it was (digest, outputs); the counterfactual and a fork keep the cut-off; the fit
never sees the rule."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from scipy.integrate import quad

from marketsim.engine.market import DAYS_PER_YEAR, Market
from marketsim.engine.population import build_world
from marketsim.engine.run import simulate
from marketsim.errors import ScenarioError
from marketsim.fit.calibrate import cache_key, expected_path, fit_problem
from marketsim.scenario.core import load_scenario
from tests.helpers import BUNDLED, SCENARIOS

ALPHA = np.array([-1.0, -1.5, -1.2])
TREND = np.array([0.6, -0.4, 0.0])


def _tiny(forecast: dict | None = None, **values):
    """tiny.yaml (3 retailers, the cut-off is its event's date, 2013-03-04: step 8 and a day) at 600 consumers,
    with ``forecast``."""
    sc = load_scenario(SCENARIOS / "tiny.yaml")
    vals = {"consumers.count": 600, **values}
    if forecast is not None:
        vals["forecast"] = forecast
    return sc.with_values(vals)


def _market(sc, **kw):
    return Market(sc, build_world(sc), ALPHA, sc.seed, trend=TREND, settle=False, **kw)


def _years(sc, t):
    return t * sc.calendar.step_days / DAYS_PER_YEAR


def _cut_years(sc):
    return (sc.fit_cutoff() - sc.calendar.start).days / DAYS_PER_YEAR


def test_linear_is_the_old_formula_bit_for_bit():
    sc = _tiny({"trend_after": "linear"})
    assert sc.forecast.trend_after == "linear" and sc.fit_cutoff() == dt.date(2013, 3, 4)
    m = _market(sc)
    for t in range(-3, 40):
        assert np.array_equal(m.alpha_at(t), ALPHA + TREND * (max(t, 0) * 7 / DAYS_PER_YEAR))


def test_hold_freezes_the_attractiveness_at_its_value_at_the_cut_off():
    sc = _tiny({"trend_after": "hold"})
    m = _market(sc)
    cut = _cut_years(sc)
    assert cut == 57 / DAYS_PER_YEAR
    for t in range(40):
        y = _years(sc, t)
        want = ALPHA + TREND * (y if y <= cut else cut)
        assert np.allclose(m.alpha_at(t), want, rtol=0, atol=1e-12), t
    # the trend acts before the cut-off (steps 0-8 start on or before 2013-03-04), not after
    assert not np.allclose(m.alpha_at(0), m.alpha_at(8))
    assert np.array_equal(m.alpha_at(9), m.alpha_at(30))


@pytest.mark.parametrize("half_life", [0.25, 2.0])
def test_damped_adds_the_integral_of_the_decaying_slope(half_life):
    sc = _tiny({"trend_after": "damped", "half_life_years": half_life})
    m = _market(sc)
    cut = _cut_years(sc)

    def slope(s):  # d/dt of the trend's contribution, per unit of trend
        return 1.0 if s <= cut else 2 ** (-(s - cut) / half_life)

    for t in range(0, 200, 7):
        y = _years(sc, t)
        years = quad(slope, 0, y, points=[cut] if y > cut else None, limit=200)[0]
        assert np.allclose(m.alpha_at(t), ALPHA + TREND * years, rtol=0, atol=1e-9), t
    # far beyond the cut-off the contribution approaches trend x (cut + half_life / ln 2)
    far = m.alpha_at(50 * 52)
    assert np.allclose(far, ALPHA + TREND * (cut + half_life / math.log(2)), atol=1e-9)


def test_a_market_takes_the_cut_off_it_is_given():
    sc = _tiny({"trend_after": "hold"})
    m = _market(sc, trend_cut=dt.date(2013, 2, 3))  # 28 days after the start: step 4
    assert np.array_equal(m.alpha_at(4), m.alpha_at(20)) and not np.array_equal(m.alpha_at(3), m.alpha_at(4))


def test_without_the_setting_the_scenario_is_what_it_was():
    """Every bundled scenario: no forecast key in its resolved form (so its digest is unchanged), and writing the
    defaults out changes nothing; a stated rule is another scenario (unstated, the commands choose one by skill,
    src/marketsim/experiments/trend_choice.py; where nothing chose one the trends hold)."""
    for path in BUNDLED:
        sc = load_scenario(path)
        assert sc.forecast.trend_after is None and sc.forecast.rule == "hold", path
        assert "forecast" not in sc.to_dict(), path
        assert sc.with_values({"forecast": {"trend_uncertainty": False}}).digest() == sc.digest(), path
    sc = _tiny()
    hold = _tiny({"trend_after": "hold"})
    assert hold.digest() != sc.digest() and hold.to_dict()["forecast"] == {
        "trend_after": "hold",
        "half_life_years": None,
        "trend_uncertainty": False,
    }


def test_runs_agree_until_the_cut_off_and_differ_after():
    """The same seed: hold and linear are one market until the first step that starts after the cut-off; a run
    of a scenario that states no rule (and was given none) holds."""
    lin, hold = _tiny({"trend_after": "linear"}), _tiny({"trend_after": "hold"})
    a = simulate(lin, ALPHA, trend=TREND, steps=14)
    b = simulate(hold, ALPHA, trend=TREND, steps=14)
    c = simulate(_tiny(), ALPHA, trend=TREND, steps=14)
    assert all(np.array_equal(x.gmv, y.gmv) for x, y in zip(b.records, c.records, strict=True))
    assert all(np.array_equal(x.gmv, y.gmv) for x, y in zip(a.records[:9], b.records[:9], strict=True))
    assert any(not np.array_equal(x.gmv, y.gmv) for x, y in zip(a.records[9:], b.records[9:], strict=True))


def test_the_counterfactual_and_a_fork_keep_the_cut_off():
    """Without its events a scenario's default cut-off would move to the calendar's end: the counterfactual keeps
    the fit's (and a linear scenario's counterfactual is unchanged: no fit_until written into it)."""
    hold = _tiny({"trend_after": "hold"})
    base = hold.without_events()
    assert not base.events and base.fit_cutoff() == hold.fit_cutoff() == dt.date(2013, 3, 4)
    assert _tiny({"trend_after": "linear"}).without_events().fit_until is None
    m = _market(hold)
    fork = m.fork(base)
    assert fork.trend_cut_years == m.trend_cut_years
    assert np.array_equal(_market(base).alpha_at(20), m.alpha_at(20))


def test_the_fit_never_reaches_past_its_cut_off():
    """Every step of a fit starts on or before its cut-off (its horizon ends with its last observation), so the
    rule cannot act inside a fit: its expected path is the same under every rule."""
    for path in BUNDLED:
        sc = load_scenario(path)
        if not sc.needs_fit:
            continue
        prob = fit_problem(sc, drop_unidentified=True, allow_fixed=True)
        assert sc.calendar.date_of(prob.horizon - 1) <= prob.until, path
    lin, hold = _tiny({"trend_after": "linear"}), _tiny({"trend_after": "hold"})
    prob = fit_problem(hold)
    assert prob.horizon == 9  # the target_share shorthand: through 2013-03-03, the day before the event (step 8)
    assert cache_key(hold) == cache_key(lin)  # so a stored fit serves every rule
    p1 = expected_path(lin, ALPHA, TREND, lin.seed, 600, 12, trend_cut=prob.until)
    p2 = expected_path(hold, ALPHA, TREND, hold.seed, 600, 12, trend_cut=prob.until)
    assert np.array_equal(p1.gmv[: prob.horizon], p2.gmv[: prob.horizon])


@pytest.mark.parametrize(
    ("forecast", "message"),
    [
        ({"trend_after": "damped"}, "trend_after: damped needs 'half_life_years'"),
        ({"trend_after": "hold", "half_life_years": 1}, "a half-life is for trend_after: damped, not hold"),
        ({"half_life_years": 1}, "not a rule left unstated"),
        ({"trend_after": "frozen"}, "unknown trend rule 'frozen'"),
        ({"trend_after": "damped", "half_life_years": 0}, "out of range"),
        ({"trend_rule": "hold"}, "unknown key 'trend_rule'"),
    ],
)
def test_bad_settings_are_one_line(forecast, message):
    with pytest.raises(ScenarioError, match=message):
        _tiny(forecast)
