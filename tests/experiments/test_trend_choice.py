"""How trends continue past the data when a scenario does not say (docs/model.md section 8, "Trends beyond the
data"; src/marketsim/experiments/trend_choice.py): the rule is chosen by rolling-origin skill on the decision-time
observations only, a stated rule is kept, and every forecast report states the choice and the model's skill.

The series are simulated from a known rule: A's utility rises 1.0 a year, then holds from July 2012 (a trend
that stops) or goes on (a trend that keeps rising); the choice must find which. One fit cache serves the module
(the choices at one cut-off share their fits), so the file runs in about half a minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.experiments.projection import project
from marketsim.experiments.trend_choice import choose_trend, trend_stated, with_trend
from marketsim.experiments.uncertainty import central_draws
from marketsim.fit.calibrate import expected_path, period_weights
from marketsim.report.skill import skill, skill_sentence, trend_sentence
from marketsim.scenario.core import Observation, parse_text
from tests.helpers import fit_market_yaml

N = 1000
QUARTERS = ["2012Q1", "2012Q2", "2012Q3", "2012Q4", "2013Q1", "2013Q2"]
EVENT = "events:\n  - {id: drop, type: remove_login, step: 19, retailer: B, provider: weibo}\n"


def _quarter(label: str) -> tuple[dt.date, dt.date]:
    y, q = int(label[:4]), int(label[-1])
    end = dt.date(y + (q == 4), 1 if q == 4 else 3 * q + 1, 1) - dt.timedelta(days=1)
    return dt.date(y, 3 * q - 2, 1), end


def _truth(rule: str, cut: str) -> dict[str, tuple[float, float]]:
    """Quarterly shares of A and B simulated with A's trend 1.0 a year following ``rule`` after ``cut``."""
    sc = parse_text(
        fit_market_yaml(
            "",
            n=N,
            alpha=(0.0, 0.0, 0.0),
            trend=(1.0, 0.0, 0),
            extra=f"forecast: {{trend_after: {rule}}}\nfit_until: {cut}",
        )
    )
    path = expected_path(sc, np.zeros(3), np.array([1.0, 0.0, 0.0]), sc.seed, N, sc.calendar.steps)
    out = {}
    for q in [*QUARTERS, "2013Q3"]:
        a, b = _quarter(q)
        w = period_weights(sc.calendar, Observation("P", q, a, b, ()), sc.calendar.steps)[None, :]
        s = path.period_shares(w)[0]
        out[q] = (round(float(s[0]), 4), round(float(s[1]), 4))
    return out


@pytest.fixture(scope="module")
def series():
    return {"stops": _truth("hold", "2012-06-30"), "rises": _truth("linear", "2013-12-31")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fits")


def _market(series: dict, *, extra_obs: str = "", forecast: str = "", quarters=QUARTERS) -> str:
    lines = ["primary_source: P", "fit_until: 2013-06-30", "observations:"]
    for q in quarters:
        a, b = series[q]
        lines.append(f"  - {{source: P, period: {q}, shares: {{A: {a}, B: {b}}}}}")
    return fit_market_yaml("\n".join(lines) + "\n" + extra_obs, n=N, trend=("calibrate", 0, 0), extra=EVENT + forecast)


def test_a_trend_that_stops_holds_and_one_that_goes_on_is_carried(series, cache):
    stops = choose_trend(parse_text(_market(series["stops"])), cache_dir=cache)
    rises = choose_trend(parse_text(_market(series["rises"])), cache_dir=cache)
    for c in (stops, rises):
        assert c.how == "chosen" and c.n > 0 and c.until == "2013-06-30", c
        assert set(c.mae) == {"hold", "damped (half-life 1 year)", "linear"}
    assert stops.rule == "hold" and stops.mae["hold"] < stops.mae["linear"], stops.mae
    assert rises.rule == "linear" and rises.mae["linear"] < rises.mae["hold"], rises.mae
    # stored next to the fits: the same scenario gets the same choice without simulating again
    again = choose_trend(parse_text(_market(series["rises"])), cache_dir=cache)
    assert again == rises and len(list(cache.glob("*.trend-choice.json"))) == 2


def test_a_stated_rule_is_kept_and_its_skill_still_measured(series, cache):
    sc = parse_text(_market(series["rises"], forecast="forecast: {trend_after: hold}\n"))
    assert trend_stated(sc)
    c = choose_trend(sc, cache_dir=cache)
    assert (c.rule, c.how) == ("hold", "stated") and c.model == c.mae["hold"] and c.n > 0
    assert with_trend(sc, dataclasses.replace(c, rule="linear")).forecast.trend_after == "hold"
    # an unstated scenario gets the chosen rule written in; until then the engine holds (the fallback)
    plain = parse_text(_market(series["rises"]))
    assert not trend_stated(plain) and plain.forecast.rule == "hold"
    assert with_trend(plain, dataclasses.replace(c, rule="linear", how="chosen")).forecast.trend_after == "linear"


def test_the_choice_never_reads_held_out_or_later_observations(series, cache):
    """Planted: the rising series' figures as a held-out source inside the window, and as an observation of the
    primary source after the cut-off. Fitted as decision-time data they change the scores; planted, nothing."""
    s = series["stops"]
    r = series["rises"]
    planted = (
        f"  - {{source: H, period: 2012Q4, holdout: true, shares: {{A: {r['2013Q2'][0]}, B: {r['2013Q2'][1]}}}}}\n"
        f"  - {{source: H, period: 2013Q1, holdout: true, shares: {{A: {r['2013Q3'][0]}, B: {r['2013Q3'][1]}}}}}\n"
        f"  - {{source: P, period: 2013Q3, shares: {{A: 0.9, B: 0.05}}}}\n"
    )
    clean = choose_trend(parse_text(_market(s)), cache_dir=cache)
    for f in cache.glob("*.trend-choice.json"):  # computed again (the fits stay cached), not read back
        f.unlink()
    dirty = choose_trend(parse_text(_market(s, extra_obs=planted)), cache_dir=cache)
    assert dataclasses.asdict(dirty) == dataclasses.asdict(clean)
    # the later observation would change the scores if the cut-off let it in (so the check above can fail)
    later = choose_trend(parse_text(_market(s, extra_obs=planted)), cache_dir=cache, until=dt.date(2013, 9, 30))
    assert later.n > clean.n and later.mae != clean.mae


def test_no_scorable_origin_falls_back_to_hold(series):
    c = choose_trend(parse_text(_market(series["rises"], quarters=QUARTERS[:1])))
    assert (c.rule, c.how, c.n) == ("hold", "fallback", 0)
    assert "no origin could be scored: hold by default" in trend_sentence(c.to_dict())
    assert "skill is unknown" in skill_sentence(c.to_dict())


def test_the_report_sentences():
    d = {
        "rule": "hold",
        "label": "hold",
        "how": "chosen",
        "until": "2013-06-30",
        "n": 4,
        "mae": {"linear": 3.1, "hold": 2.1, "damped (half-life 1 year)": 2.4},
        "model": 2.1,
        "persistence": 2.3,
        "horizons": [2],
        "origins": ["2013-01-01"],
        "tie": False,
    }
    assert trend_sentence(d) == (
        "trends after the cut-off (2013-06-30): hold (chosen: rolling-origin MAE on 4 decision-time values: "
        "hold 2.10, damped (half-life 1 year) 2.40, linear 3.10 points; persistence 2.30)"
    )
    assert skill_sentence(d).startswith(
        "On the observations before the cut-off (2013-06-30), this model's forecasts missed by 2.1 points on "
        "average against 2.3 for holding the last value flat (n=4, 2 quarters ahead"
    )
    assert skill(d)["beats_persistence"] is True and "does better" in skill_sentence(d)
    worse = {**d, "model": 2.9}
    assert skill(worse)["beats_persistence"] is False
    assert skill_sentence(worse).endswith(
        "it does worse than holding the last value flat: treat its level forecasts with caution; its shifts "
        "between options are what it is for."
    )
    assert (
        trend_sentence({**d, "how": "stated"}) == "trends after the cut-off (2013-06-30): hold (stated in the scenario)"
    )
    alike = {**d, "tie": True, "mae": dict.fromkeys(d["mae"], 2.5)}
    assert "all alike: no origin before the cut-off had a fitted trend to carry" in trend_sentence(alike)


def test_project_states_the_trend_rule_and_the_skill(series, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKETSIM_FIT_CACHE", str(cache))
    (tmp_path / "m.yaml").write_text(_market(series["stops"]))
    args = ["project", "m.yaml", "--draws", "2", "--replicates", "2", "--workers", "1", "--out", "p"]
    assert main(args) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "p" / "projection.json").read_text())
    assert doc["trend_after"]["rule"] == "hold" and doc["trend_after"]["how"] == "chosen"
    assert doc["skill"]["n"] > 0 and doc["skill"]["beats_persistence"] in (True, False)
    assert doc["trend_uncertainty"] is False  # off unless asked (docs/model.md section 8)
    report = (tmp_path / "p" / "report.md").read_text()
    assert "## How good its forecasts are" in report and doc["skill"]["sentence"] in report
    assert "Trends after the cut-off (2013-06-30): hold (chosen: rolling-origin MAE on" in report
    assert "trends after the cut-off (2013-06-30): hold (chosen" in " ".join(out.split())
    assert "On the observations before the cut-off" in " ".join(out.split())


def test_trend_uncertainty_when_asked_and_bands_widen_with_the_horizon(cache):
    """A fitted trend's standard error enters the draws when the scenario asks (forecast.trend_uncertainty): across 16 draws (one replicate,
    the same seed in every draw, so the spread is the trends') the 90% band of A's share is wider at the horizon
    than at the cut-off under a linear rule; with the trends held at their point values the draws are one
    market. The observations are a rising series with +-2 points of alternating noise (a trend known only
    within a standard error)."""
    truth = parse_text(fit_market_yaml("", n=N, alpha=(0.0, 0.0, 0.0), trend=(0.4, 0.0, 0)))
    path = expected_path(truth, np.zeros(3), np.array([0.4, 0.0, 0.0]), truth.seed, N, 24)
    ser = {}
    for k, q in enumerate(QUARTERS):
        a, b = _quarter(q)
        s = path.period_shares(period_weights(truth.calendar, Observation("P", q, a, b, ()), 24)[None, :])[0]
        e = 0.02 * (-1) ** k
        ser[q] = (round(float(s[0]) + e, 4), round(float(s[1]) - e / 2, 4))
    sc = parse_text(_market(ser, forecast="forecast: {trend_after: linear, trend_uncertainty: true}\n"))
    sc = sc.with_overrides(consumers=3000)
    proj = project(sc, draws=central_draws(sc, 16), replicates=1, cache_dir=cache)
    assert [p.path for p in proj.draws.params] == ["retailers.A.trend"]
    share = proj.arrays["scenario"]["gmv_share"][..., 0].reshape(-1, proj.steps)  # (draws, steps)
    lo, hi = np.percentile(share, [5, 95], axis=0)
    cut = sc.calendar.step_of(sc.fit_cutoff())
    assert (hi - lo)[-1] > 1.1 * (hi - lo)[cut] > 0.01, hi - lo
    held = project(sc, draws=central_draws(sc, 16), replicates=1, cache_dir=cache, trend_uncertainty=False)
    assert np.ptp(held.arrays["scenario"]["gmv_share"][..., 0], axis=0).max() == 0


def test_a_model_about_as_good_as_persistence_is_not_said_to_beat_it():
    """3.11 against 3.13 points is no skill: the sentence says "about as well" (with two decimals, never
    "3.1 against 3.1: it does better")."""
    from marketsim.report.skill import skill_sentence

    base = {"n": 4, "horizons": [2], "until": "2013-07-01", "label": "hold"}
    s = skill_sentence({**base, "model": 3.11, "persistence": 3.13})
    assert "missed by 3.11 points on average against 3.13" in s and "about as well as holding" in s
    assert "does better" not in s
    assert "missed by 2.4 points on average against 3.1" in skill_sentence({**base, "model": 2.4, "persistence": 3.1})
