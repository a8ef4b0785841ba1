"""Recurring effects in the fit (docs/model.md sections 7 and 8): the size of a seasonal sale is identified by
observations of different lengths (a quarter without the sale against the year that contains it), recovered
from synthetic observations simulated with a known size, and refused, naming why, when only whole years are
observed. A run, a projection and the live page simulate the fitted size (with_event_values)."""

import datetime as dt

import numpy as np
import pytest

from marketsim.fit.calibrate import CalibrationError, calibrate, expected_path, fit_problem, with_event_values
from marketsim.scenario.core import parse_text
from tests.fit.test_calibrate import _period_shares
from tests.helpers import fit_market_yaml

TRUE_ALPHA, TRUE_SEASON = (-0.6, -0.9, -1.0), 0.8
#: A's year-end sale: every year from 1 November for 61 days (through 31 December), on 30-day steps: the firing
#: covers parts of steps, so only the shoppers of its days see it
SEASON = """
events:
  - {{id: sale, type: promotion, date: 2012-11-01, retailer: A, utility: {u}, every: year, days: 61}}
"""
PERIODS = {
    "2012Q3": (dt.date(2012, 7, 1), dt.date(2012, 9, 30)),
    "2012Q4": (dt.date(2012, 10, 1), dt.date(2012, 12, 31)),
    "2012": (dt.date(2012, 1, 1), dt.date(2012, 12, 31)),
    "2013Q2": (dt.date(2013, 4, 1), dt.date(2013, 6, 30)),
}


def _observations(labels, n=5000):
    true = parse_text(fit_market_yaml(SEASON.format(u=TRUE_SEASON), n=n, alpha=TRUE_ALPHA))
    path = expected_path(true, np.array(TRUE_ALPHA), np.zeros(3), true.seed, n, 24)
    lines = ["primary_source: P", "observations:"]
    for label in labels:
        s = _period_shares(true, path, *PERIODS[label])
        lines.append(f"  - {{source: P, period: {label}, shares: {{A: {s[0]:.5f}, B: {s[1]:.5f}}}}}")
    return "\n".join(lines), path.conversion


def _fit_scenario(labels):
    obs, conv = _observations(labels)
    return parse_text(fit_market_yaml(SEASON.format(u="calibrate") + obs, conversion=round(conv, 5)))


def test_a_known_seasonal_effect_is_recovered_from_a_quarter_against_its_year():
    sc = _fit_scenario(["2012Q3", "2012Q4", "2012", "2013Q2"])
    assert sc.calibrated_events == ("events.sale.utility",) and sc.events[0].action.utility == 0.0
    prob = fit_problem(sc)
    assert prob.param_names()[-1] == "events.sale.utility" and prob.n_params == 4
    cal = calibrate(sc)
    fitted = cal.event_values["events.sale.utility"]
    assert abs(fitted - TRUE_SEASON) < 0.15, cal.event_values
    se = cal.event_se["events.sale.utility"]
    assert 0 < se < 0.5 and abs(fitted - TRUE_SEASON) < 4 * se + 0.05, (fitted, se)
    assert np.allclose(cal.alpha_vector(sc), TRUE_ALPHA, atol=0.05), cal.alpha
    assert cal.max_residual_pp < 0.3
    # the market a run simulates carries the fitted size, in both arms of a projection
    run = with_event_values(sc, cal.event_values)
    assert run.events[0].action.utility == pytest.approx(fitted) and not run.calibrated_events
    assert run.without_events().events[0].action.utility == pytest.approx(fitted)  # the sale recurs in both arms
    # a run with the size held at 0 (the bug this guards against) misses the Q4 observation by points
    off = expected_path(sc, cal.alpha_vector(sc), np.zeros(3), sc.seed, 5000, cal.horizon)
    on = expected_path(run, cal.alpha_vector(sc), np.zeros(3), sc.seed, 5000, cal.horizon)
    q4 = [o for o in cal.observations if o["period"]["label"] == "2012Q4" and o["retailer"] == "A"][0]
    gap_off = _period_shares(sc, off, *PERIODS["2012Q4"])[0] * 100 - q4["observed"]
    gap_on = _period_shares(sc, on, *PERIODS["2012Q4"])[0] * 100 - q4["observed"]
    assert abs(gap_on) < 0.5 < abs(gap_off), (gap_on, gap_off)


def test_only_whole_years_cannot_identify_a_seasonal_effect():
    obs, conv = _observations(["2012"])
    text = fit_market_yaml(
        SEASON.format(u="calibrate")
        + obs.replace("period: 2012,", "period: 2012,")
        + "\n  - {source: P, period: 2013, shares: {A: 0.5, B: 0.3}}".replace(
            "2013,", "{start: 2012-12-25, end: 2013-12-24},"
        ),
        conversion=round(conv, 5),
    )
    sc = parse_text(text)
    with pytest.raises(CalibrationError) as e:
        fit_problem(sc)
    msg = str(e.value)
    assert "events.sale.utility" in msg and "cover the effect's days unequally" in msg and "\n" not in msg, msg
    assert "add one, or give it a number" in msg


def test_calibrate_is_only_for_a_recurring_effect():
    from marketsim.errors import ScenarioError

    once = "events:\n  - {id: promo, type: promotion, step: 3, retailer: A, utility: calibrate}\n"
    with pytest.raises(ScenarioError, match=r"events\[0\]\.utility: 'calibrate' fits the size of a recurring effect"):
        parse_text(fit_market_yaml(once))
