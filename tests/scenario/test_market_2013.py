"""The bundled five-retailer market (scenarios/market_2013.yaml): it validates, shares baseline_2013q2.yaml's
market, and its fit problem (no simulation) has the parameters, level sources and degrees of freedom its
comments count."""

import datetime as dt

from marketsim.fit.calibrate import fit_problem
from marketsim.scenario.core import load_scenario
from tests.helpers import SCENARIOS, cli

MARKET = SCENARIOS / "market_2013.yaml"


def test_market_2013_validates_and_shares_the_baseline_market():
    r = cli("validate", MARKET)
    assert r.returncode == 0, r.stderr
    sc, base = load_scenario(MARKET).to_dict(), load_scenario(SCENARIOS / "baseline_2013q2.yaml").to_dict()
    for block in ("calendar", "market_size", "currency", "consumers", "providers", "behaviour", "friction"):
        assert sc[block] == base[block], block  # copied from the baseline: must not drift
    assert [r["name"] for r in sc["retailers"]] == ["Tmall", "JD", "Suning", "Tencent", "Other"]
    assert abs(sum(r["initial_share"] for r in sc["retailers"]) - 1) < 1e-9


def test_market_2013_fit_problem():
    prob = fit_problem(load_scenario(MARKET))
    assert prob.param_names() == [
        "alpha[Tmall]",
        "alpha[JD]",
        "alpha[Suning]",
        "alpha[Tencent]",
        "alpha[Other]",
        "trend[Tmall]",
        "trend[JD]",
        "trend[Suning]",
        "trend[Tencent]",
    ]
    # iResearch (primary) never observes Suning and Tencent: CECRC sets their level, no offset for them
    assert prob.primary == "iresearch" and prob.level_sources == {"Suning": "cecrc", "Tencent": "cecrc"}
    assert prob.offsets == (("cecrc", 0), ("cecrc", 1))
    # 11 shares + the conversion; 5 alphas + 4 trends + 2 offsets
    assert (prob.n_equations, prob.n_params, len(prob.offsets), prob.dof) == (12, 9, 2, 1)
    # decision-time data only: everything ends by the cut-off, published before September 2013
    assert prob.until == dt.date(2013, 7, 1) and all(o.end <= prob.until for o in load_scenario(MARKET).observations)
