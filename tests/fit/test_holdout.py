"""Held-out observations (``holdout: true``, docs/model.md section 8): no fit ever uses one, whatever the cut-off;
the back-test predicts every one of them.

The market is built so that including the held-out 2012Q2 line would change the fit visibly (it says A 30%, B 50%
against about 52% and 30% on either side of it): every command that fits (calibrate, run, project, fit, backtest,
sweep) is run on the file without the held-out lines and then on the file with them, in one fit cache: a fit that
saw a held-out line would have another cache key, so the cache must not grow; and the fitted values of the two
files, fitted afresh, must be equal."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from marketsim.experiments.backtest import naive_forecasts
from marketsim.fit.cache import CACHE_ENV
from marketsim.fit.calibrate import CalibrationError, cache_key, calibrate, fit_problem
from marketsim.scenario.core import parse_text
from tests.helpers import cli, fit_market_yaml

OBS = """primary_source: P
observations:
  - {source: P, period: 2012Q1, shares: {A: 0.52, B: 0.30}}
  - {source: P, period: 2012Q3, shares: {A: 0.53, B: 0.29}}
  - {source: P, period: 2013Q1, shares: {A: 0.55, B: 0.28}}
"""
#: far from the others (inside the fitted period) and after the cut-off
HELD = """  - {source: P, period: 2012Q2, shares: {A: 0.30, B: 0.50}, holdout: true}
  - {source: P, period: 2013Q3, shares: {A: 0.58, B: 0.26}, holdout: true}
"""
#: a one-off event (the default cut-off, and something to project) with an uncertain size, and an uncertain
#: behavioural number the observations inform (for `marketsim fit`)
EXTRA = """events:
  - {id: promo, type: promotion, date: 2013-06-01, retailer: B,
     utility: {value: 0.3, range: [0.1, 0.5], assumption: "a test"}}
"""
SOCIAL = '{value: 0.5, range: [0.2, 0.8], assumption: "a test"}'


def _text(obs: str, n: int = 2000) -> str:
    return fit_market_yaml(obs, n=n, extra=EXTRA, beta_social=SOCIAL)


def test_a_holdout_observation_is_read_and_written_back_and_leaves_the_digest_alone():
    plain = parse_text(_text(OBS))
    said = parse_text(_text(OBS.replace("}}\n", "}, holdout: false}\n")))
    held = parse_text(_text(OBS + HELD))
    assert [o.holdout for o in said.observations] == [False] * 3
    assert said.digest() == plain.digest()  # holdout: false is the default: no new field in the digest
    assert held.digest() != plain.digest()  # a held-out line is part of the scenario (a back-test reads it)
    assert [o.holdout for o in held.observations] == [False] * 3 + [True] * 2
    assert [o.label for o in held.holdout_observations] == ["2012Q2", "2013Q3"]
    for until in (None, dt.date(2012, 12, 31), dt.date(2013, 12, 31), dt.date(2015, 1, 1)):
        assert held.fit_observations(until) == plain.fit_observations(until)
        assert not any(o.holdout for o in held.fit_observations(until))
        assert cache_key(held, until) == cache_key(plain, until)
    # the same line, not held out, is fitted: a different problem and key (what the tests below would notice)
    shown = parse_text(_text(OBS + HELD.replace(", holdout: true", "")))
    assert len(shown.fit_observations(dt.date(2013, 12, 31))) == 5
    assert cache_key(shown) != cache_key(plain)
    assert fit_problem(held).observations == fit_problem(plain).observations


def test_validate_writes_holdout_back(tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text(_text(OBS + HELD))
    r = cli("validate", f, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("holdout: true") == 2 and "holdout: false" not in r.stdout  # the default is not written
    again = parse_text(r.stdout)  # the resolved scenario is itself a scenario file: the same one
    assert again.observations == parse_text(_text(OBS + HELD)).observations


def test_no_fit_uses_a_holdout_observation_fitted_afresh():
    plain = parse_text(_text(OBS))
    held = parse_text(_text(OBS + HELD))
    shown = parse_text(_text(OBS + HELD.replace(", holdout: true", "")))
    a, b = (calibrate(s) for s in (plain, held))
    assert b.alpha == a.alpha and b.trend == a.trend and b.key == a.key
    assert b.observations == a.observations and len(a.observations) == 6  # 3 observations x 2 retailers
    # including the 2012Q2 line would have moved B's attractiveness visibly, or made the fit fail on that line
    # (with the login-mix rule, docs/model.md 12.4, no state of this market meets it: the fit says so)
    try:
        c = calibrate(shown)
    except CalibrationError as e:
        assert "2012Q2" in str(e), e
    else:
        assert abs(c.alpha["B"] - a.alpha["B"]) > 0.05


def _cached(cache) -> set[str]:
    return {p.name for p in cache.glob("*.json")}


def _sweep(tmp_path, base) -> str:
    spec = tmp_path / f"sweep-{base.stem}.yaml"
    spec.write_text(
        f"""schema: marketsim-sweep/v1
name: holdout_{base.stem}
base: {base}
seed: 3
consumers: 600
replicates: 1
design: {{method: grid, levels: 2}}
parameters:
  - {{path: friction.create, range: [1.0, 2.0]}}
outputs: [gmv_share.B]
shift_against: all
average_last: 2
"""
    )
    return str(spec)


@pytest.mark.slow
def test_no_command_that_fits_uses_a_holdout_observation(tmp_path):
    cache = tmp_path / "cache"
    env = {CACHE_ENV: str(cache)}
    files = {}
    for name, obs in (("plain", OBS), ("held", OBS + HELD)):
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(_text(obs))

    def commands(name):
        f, res = files[name], str(tmp_path / f"results-{name}")
        small = ("--consumers", 600, "--workers", 1, "--results", res)
        return [
            ("calibrate", f, "--results", res),
            ("calibrate", f, "--until", "2013-12-31", "--results", res),  # a cut-off after every line
            ("run", f, "--consumers", 600, "--results", res),
            ("project", f, "--draws", 2, "--replicates", 1, *small),
            ("fit", f, "--draws", 12, "--sigma", 100, *small),
            ("backtest", f, "--until", "2013-01-01", "--draws", 1, "--replicates", 1, "--json", *small),
            ("sweep", _sweep(tmp_path, f), "--workers", 1, "--out", tmp_path / f"sweep-{name}"),
        ]

    for args in commands("plain"):
        r = cli(*args, cwd=tmp_path, env=env)
        assert r.returncode == 0, (args[0], r.stderr)
    fits = _cached(cache)
    assert len(fits) >= 3  # the default cut-off, 2013-12-31, the back-test's, the draws of fit and project
    for args in commands("held"):
        r = cli(*args, cwd=tmp_path, env=env)
        assert r.returncode == 0, (args[0], r.stderr)
        # every fit of the file with held-out lines has the key of a fit without them (it was found in the cache)
        assert _cached(cache) == fits, f"{args[0]}: a fit with another key: {sorted(_cached(cache) - fits)}"
        if args[0] == "backtest":
            out = json.loads(r.stdout)
            rows = {(h["period"]["label"], h["retailer"]): h for h in out["heldout"]}
            # predicted: the line after --until and both held-out ones, the 2012Q2 one although it lies before it
            assert {p for p, _ in rows} == {"2013Q1", "2012Q2", "2013Q3"}
            assert [rows[p, "A"]["holdout"] for p in ("2013Q1", "2012Q2", "2013Q3")] == [False, True, True]
            assert out["holdout"]["mae_n"]["model"] == 4 and out["holdout"]["coverage90_count"].endswith("of 4")
            assert rows["2012Q2", "A"]["persistence"] == pytest.approx(52.0)  # from 2012Q1: the past of 2012Q2
            assert rows["2013Q3", "A"]["persistence"] == pytest.approx(53.0)  # the last fitted line, 2012Q3
            model = np.mean([abs(h["predicted"] - h["observed"]) for h in out["heldout"] if h["holdout"]])
            assert out["holdout"]["mae"]["model"] == pytest.approx(model)


def test_naive_forecasts_use_only_what_ended_before_the_target():
    held = parse_text(_text(OBS + HELD))
    past = [o for o in held.observations if not o.holdout]
    q2 = next(o for o in held.observations if o.label == "2012Q2")
    assert naive_forecasts(past, q2, "A") == (0.52, None)
