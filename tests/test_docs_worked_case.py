"""The worked case of docs/scenarios.md ("The March 2014 Tencent-JD deal") does what it says: its file is
docs/examples/tencent_jd_2014.yaml, its `$ marketsim ...` commands run as written (in this process, through
``marketsim.cli.main``) and print the lines shown, and the run shows what the section reads from it: the
acquisition hands JD about retention x Tencent's share, and the sales fire on 11 November and 18 June every
year and on no other day (docs/model.md section 7, property 12)."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import load_scenario
from tests.helpers import ROOT, SCENARIOS, cli
from tests.test_docs import _normal, tutorial_steps

HEADING = "## Worked case: the March 2014 Tencent-JD deal"
EXAMPLE = ROOT / "docs" / "examples" / "tencent_jd_2014.yaml"
SALES = {"singles_day": (11, 11), "singles_day_shoppers": (11, 11), "jd_618": (6, 18)}
DEAL_STEP = 114  # 2014-03-10, in the week that starts 2014-03-09
POSTERIORS = ROOT / "docs" / "examples" / "posteriors"
STORED = POSTERIORS / "china_b2c_2012_2015.expost-2014-03-10.json"
ENTRY = "events.tencent_jd_deal.effects.1.utility"


def test_the_worked_cases_file_is_the_example():
    steps = tutorial_steps(HEADING)
    files = [s for s in steps if s[0] == "file"]
    assert [p for _, p, _ in files] == ["docs/examples/tencent_jd_2014.yaml"]
    assert files[0][2] == EXAMPLE.read_text()
    assert [s[1].split()[1] for s in steps if s[0] == "run"] == ["validate", "run"]


def test_the_entry_points_prior_is_the_stored_ex_post_posterior_of_the_validation_file():
    """The case takes the WeChat entry point's prior from the posterior the documented `marketsim fit --ex-post`
    stored in the repository (docs/scenarios.md, "What history says about the entry point"): a file conditioned on
    the held-out CECRC 2013 shares up to the deal's date, which the case's own decision (fit_until) does not
    precede; validate names it."""
    import json

    fitted = json.loads(STORED.read_text())["fitted"]
    assert fitted["scenario"] == "china_b2c_2012_2015" and fitted["ex_post"] is True
    assert fitted["conditioned_until"] == "2014-03-10"
    assert [(f["source"], f["period"]) for f in fitted["figures"]] == [("cecrc", "2013")]
    sc = load_scenario(EXAMPLE)
    assert sc.fit_cutoff() == dt.date(2014, 3, 10)
    u = next(u for u in sc.uncertain if u.path == ENTRY)
    assert u.prior == "posterior" and u.posterior == (str(STORED), "events.alibaba_buys_weibo_stake.effects.1.utility")
    assert u.reason.startswith(
        "ex-post posterior of china_b2c_2012_2015.events.alibaba_buys_weibo_stake.effects.1.utility "
        "(china_b2c_2012_2015.expost-2014-03-10.json, conditioned on the held-out cecrc 2013, 32 draws"
    ), u.reason


def test_the_sales_fire_on_their_day_every_year_and_on_no_other():
    sc = load_scenario(EXAMPLE)
    cal = sc.calendar
    events = {e.id: e for e in sc.events}
    assert {i for i, e in events.items() if e.recurring} == set(SALES)
    assert sc.first_event_step == 69  # recurring effects do not end the calibration window (the 2013 stake does)
    for eid, (month, day) in SALES.items():
        fires = [dt.date(y, month, day) for y in (2012, 2013, 2014)]
        assert events[eid].firings(cal) == tuple((d, d) for d in fires)
    # in the engine: the steps a sale is on, and the one day of each step it covers
    m = Market(sc, build_world(sc, n=300), np.zeros(len(sc.retailers)), sc.seed, settle=False)
    for eid, (month, day) in SALES.items():
        on = {}
        for t in range(cal.steps):
            for lo, hi, f in m.firings_at(t):
                if f.event.id == eid:
                    on[t] = (lo, hi)
        want = {}
        for y in (2012, 2013, 2014):
            days = (dt.date(y, month, day) - cal.start).days
            want[days // cal.step_days] = (float(days % cal.step_days), float(days % cal.step_days + 1))
        assert on == want, eid
    # a counterfactual without its one-off events keeps the sales in both arms
    assert {e.id for e in sc.without_events().events} == set(SALES)


@pytest.mark.slow
def test_the_worked_case_runs_as_written_and_shows_what_it_says(tmp_path):
    shutil.copytree(SCENARIOS, tmp_path / "src" / "marketsim" / "scenarios")  # where the file's base: points
    shutil.copytree(ROOT / "schema", tmp_path / "schema")
    shutil.copytree(POSTERIORS, tmp_path / "docs" / "examples" / "posteriors")  # its prior learned from history
    for kind, what, body in tutorial_steps(HEADING):
        if kind == "file":
            (tmp_path / what).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / what).write_text(body)
            continue
        r = cli(*what.split()[1:], cwd=tmp_path)
        assert r.returncode == 0, (what, r.stderr[-2000:])
        out = _normal(r.stdout + "\n" + r.stderr)
        for line in body:
            assert _normal(line) in out, f"`{what}` does not print: {line}\n--- it printed:\n{r.stdout}{r.stderr}"

    ts = pd.read_csv(tmp_path / "results" / "tencent_jd_2014--consumers20000" / "timeseries.csv")
    share = ts.pivot(index="step", columns="retailer", values="gmv_share")
    sc = load_scenario(EXAMPLE)
    assert {e.id: e.step for e in sc.events if e.date.year == 2014} == {
        "tencent_jd_deal": DEAL_STEP,
        "jd_takes_tencent_shops": DEAL_STEP,
    }

    # the hand-over: Tencent is gone from the deal's week on, and JD's share jumps by about retention x
    # Tencent's share (0.5 x about 5 points; the WeChat entry point and the shoppers who lost their habit add a
    # little); the four weeks before against the four from the deal
    before, after = share.loc[DEAL_STEP - 4 : DEAL_STEP - 1].mean(), share.loc[DEAL_STEP : DEAL_STEP + 3].mean()
    assert (share.loc[: DEAL_STEP - 1, "Tencent"] > 0).all() and (share.loc[DEAL_STEP:, "Tencent"] == 0).all()
    handed = 0.5 * before["Tencent"]
    assert 0.02 < handed < 0.04
    assert 0.5 * handed < after["JD"] - before["JD"] < 2 * handed

    # the sales: 28% more shoppers in the weeks containing 11 November (3x on one day of seven) and in no
    # other week; Tmall up in those weeks, JD up in the weeks containing 18 June
    start, sd = sc.calendar.start, sc.calendar.step_days

    def week(month, day):
        return [(dt.date(y, month, day) - start).days // sd for y in (2012, 2013, 2014)]

    shoppers = ts.groupby("step")["shoppers"].first()
    ratio = shoppers / shoppers.rolling(9, center=True, min_periods=3).median()
    assert sorted(ratio[ratio > 1.1].index) == week(11, 11) == [45, 97, 149]
    assert all(1.2 < ratio[t] < 1.4 for t in week(11, 11))
    assert ratio.drop(week(11, 11)).between(0.93, 1.07).all()

    def lift(retailer, t):
        return share.loc[t, retailer] - share.loc[[t - 2, t - 1, t + 1, t + 2], retailer].mean()

    assert all(lift("Tmall", t) > 0.02 for t in week(11, 11))
    assert week(6, 18) == [24, 76, 128]
    assert np.mean([lift("JD", t) for t in week(6, 18)]) > 0.01
