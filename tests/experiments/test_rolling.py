"""The rolling-origin back-test (``marketsim backtest SCENARIO --rolling``, src/marketsim/experiments/rolling.py)."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from rich.cells import cell_len

from marketsim.experiments.rolling import baselines, horizon_quarters, plan_origins, rolling_backtest
from marketsim.experiments.uncertainty import central_draws
from marketsim.scenario.core import Observation, parse_text
from tests.helpers import cli, fit_market_yaml

#: One source over two years; the first observation sees A only, so the fit at its end refuses (B and C, both
#: calibrated, never observed) and that origin is skipped.
SERIES = {
    "2012Q1": {"A": 0.52},
    "2012Q3": {"A": 0.53, "B": 0.29},
    "2013Q1": {"A": 0.55, "B": 0.28},
    "2013Q3": {"A": 0.58, "B": 0.26},
}


def _obs_yaml(series: dict) -> str:
    lines = ["primary_source: P", "observations:"]
    for label, shares in series.items():
        s = ", ".join(f"{k}: {v}" for k, v in shares.items())
        lines.append(f"  - {{source: P, period: {label}, shares: {{{s}}}}}")
    return "\n".join(lines) + "\n"


def _quarter(label: str) -> tuple[dt.date, dt.date]:
    y, q = int(label[:4]), int(label[-1])
    start = dt.date(y, 3 * q - 2, 1)
    end = dt.date(y + (q == 4), 1 if q == 4 else 3 * q + 1, 1) - dt.timedelta(days=1)
    return start, end


def test_horizon_in_quarters():
    o = dt.date(2013, 1, 1)
    assert horizon_quarters(o, dt.date(2013, 1, 1)) == 1  # at least one
    assert horizon_quarters(o, dt.date(2013, 3, 31)) == 1  # 89 days
    assert horizon_quarters(o, dt.date(2013, 4, 2)) == 1  # 91 days: within 91.3
    assert horizon_quarters(o, dt.date(2013, 4, 3)) == 2  # 92 days
    assert horizon_quarters(o, dt.date(2012, 12, 1)) == 1  # ends before the origin: still at least one
    assert horizon_quarters(o, dt.date(2013, 12, 31)) == math.ceil(364 / 91.3)


def test_baselines_rules():
    def obs(src, label, **shares):
        a, b = _quarter(label)
        return Observation(src, label, a, b, tuple(shares.items()))

    past = [obs("P", "2012Q1", A=0.50), obs("P", "2012Q3", A=0.56), obs("Q", "2012Q4", A=0.40, B=0.2)]
    # same source: persistence the last value; drift the mean change per day between the middles, carried on
    target = obs("P", "2013Q3", A=0.6)
    mid = lambda o: (o.start.toordinal() + o.end.toordinal()) / 2  # noqa: E731
    per_day = (0.56 - 0.50) / (mid(past[1]) - mid(past[0]))
    pers, drift = baselines(past, target, "A")
    assert pers == 0.56 and drift == pytest.approx(0.56 + per_day * (mid(target) - mid(past[1])))
    # a source that never saw B: the last value of any source, as reported; one value: drift = persistence
    assert baselines(past, obs("P", "2013Q3", B=0.3), "B") == (0.2, 0.2)
    # nobody saw C before: no baselines
    assert baselines(past, obs("P", "2013Q3", C=0.3), "C") == (None, None)


def test_plan_skips_what_cannot_be_fitted_or_predicted():
    sc = parse_text(fit_market_yaml(_obs_yaml(SERIES), n=3000))
    plans, skipped = plan_origins(sc)
    assert [p.origin for p in plans] == [dt.date(2012, 10, 1), dt.date(2013, 4, 1)]
    assert len(skipped) == 2
    assert skipped[0].startswith("origin 2012-04-01: the fit refuses") and "\n" not in skipped[0]
    assert skipped[1] == "origin 2013-10-01: no observation ends on or after it; nothing to predict"


def test_rolling_command_on_a_small_market(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(_obs_yaml(SERIES), n=3000))
    r = cli(
        "backtest", f, "--rolling", "--draws", 1, "--replicates", 2, "--consumers", 3000, "--json", "--workers", 1,
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # exactly the documented shape
    assert set(out) == {"horizons", "heldout"}
    for h in out["horizons"]:
        assert set(h) == {"quarters", "n", "mae", "coverage"}
        assert set(h["mae"]) == {"model", "persistence", "drift"} and set(h["coverage"]) == {"50", "90"}
    keys = {"source", "period", "retailer", "observed", "predicted", "lo50", "hi50", "lo90", "hi90"}
    for x in out["heldout"]:
        assert set(x) == keys | {"persistence", "drift", "origin"}
        assert set(x["period"]) == {"label", "start", "end"}
        assert x["lo90"] <= x["lo50"] <= x["predicted"] + 0.2 and x["predicted"] - 0.2 <= x["hi50"] <= x["hi90"]
    # every observation after each usable origin is predicted, nothing before it
    expect = []
    for origin in ("2012-10-01", "2013-04-01"):
        for label, shares in SERIES.items():
            if _quarter(label)[1] >= dt.date.fromisoformat(origin):
                expect += [(origin, label, rn) for rn in shares]
    assert sorted((x["origin"], x["period"]["label"], x["retailer"]) for x in out["heldout"]) == sorted(expect)
    # persistence and drift, computed here from the series (one source: its own last value, and the change per
    # day between the middles of its first and last periods before the origin)
    for x in out["heldout"]:
        origin = dt.date.fromisoformat(x["origin"])
        before = [
            (label, s[x["retailer"]])
            for label, s in SERIES.items()
            if _quarter(label)[1] < origin and x["retailer"] in s
        ]
        mid = lambda label: sum(d.toordinal() for d in _quarter(label)) / 2  # noqa: E731
        (l0, v0), (l1, v1) = before[0], before[-1]
        drift = v1 if l0 == l1 else v1 + (v1 - v0) / (mid(l1) - mid(l0)) * (mid(x["period"]["label"]) - mid(l1))
        assert x["persistence"] == pytest.approx(v1 * 100) and x["drift"] == pytest.approx(drift * 100)
        assert x["observed"] == pytest.approx(SERIES[x["period"]["label"]][x["retailer"]] * 100)
    # per horizon: n, the MAEs and the coverage recomputed from the held-out values
    by_q: dict[int, list] = {}
    for x in out["heldout"]:
        q = max(
            1, math.ceil((dt.date.fromisoformat(x["period"]["end"]) - dt.date.fromisoformat(x["origin"])).days / 91.3)
        )
        by_q.setdefault(q, []).append(x)
    assert [h["quarters"] for h in out["horizons"]] == sorted(by_q)
    for h in out["horizons"]:
        g = by_q[h["quarters"]]
        assert h["n"] == len(g)
        for name, key in (("model", "predicted"), ("persistence", "persistence"), ("drift", "drift")):
            assert h["mae"][name] == pytest.approx(np.mean([abs(x[key] - x["observed"]) for x in g]))
        assert h["coverage"]["50"] == pytest.approx(np.mean([x["lo50"] <= x["observed"] <= x["hi50"] for x in g]))
        assert h["coverage"]["90"] == pytest.approx(np.mean([x["lo90"] <= x["observed"] <= x["hi90"] for x in g]))
    assert "skipped origin 2012-04-01: the fit refuses" in r.stderr
    folder = tmp_path / "results" / "fitmarket" / "backtest-rolling--consumers3000-draws1"
    stored = json.loads((folder / "backtest.json").read_text())
    assert stored["horizons"] == out["horizons"] and stored["settings"]["rolling"] is True
    # the table, with one sentence per horizon saying whether the model beats persistence
    r = cli(
        "backtest", f, "--rolling", "--draws", 1, "--replicates", 2, "--consumers", 3000, "--workers", 1, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for h in out["horizons"]:
        m = h["mae"]
        says = "beats persistence" if m["model"] < m["persistence"] else "does not beat persistence"
        assert (
            f"{h['quarters']} quarters ahead ({h['n']} held-out shares): the model {says} "
            f"(MAE {m['model']:.2f} vs {m['persistence']:.2f} points)." in text
        ), text
    assert "marketsim: skipped origin 2013-10-01: no observation ends on or after it; nothing to predict\n" in r.stderr
    assert max(cell_len(line) for line in r.stdout.splitlines()) <= 80  # the table and sentences at 80 columns


def test_until_and_rolling_exclude_each_other(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(_obs_yaml(SERIES), n=3000))
    r = cli("backtest", f, "--rolling", "--until", "2013-01-01", cwd=tmp_path)
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = cli("backtest", f, cwd=tmp_path)
    assert r.returncode == 2 and "--until --rolling" in r.stderr


def test_no_usable_origin_is_one_line(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(fit_market_yaml(_obs_yaml({"2012Q1": {"A": 0.52}, "2012Q3": {"A": 0.53}}), n=3000))
    r = cli("backtest", f, "--rolling", "--draws", 1, "--workers", 1, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no cut-off has an identified fit" in r.stderr


def test_a_future_observation_does_not_change_an_earlier_fit():
    """A planted observation after an origin changes neither the fit there nor its predictions (no fit cache:
    each fit is made afresh)."""
    two = {"2012Q1": {"A": 0.52, "B": 0.30}, "2012Q3": {"A": 0.53, "B": 0.29}}
    planted = {**two, "2013Q3": {"A": 0.70, "B": 0.10}}
    runs = []
    for series in (two, planted):
        sc = parse_text(fit_market_yaml(_obs_yaml(series), n=3000))
        runs.append(rolling_backtest(sc, draws=central_draws(sc), replicates=1, cache_dir=None))
    a, b = runs
    assert a.origins[0]["origin"] == b.origins[0]["origin"] == "2012-04-01"
    assert a.origins[0]["fits"] == b.origins[0]["fits"] and a.origins[0]["fitted"] == b.origins[0]["fitted"] == 1
    first = [x for x in b.heldout if x["origin"] == "2012-04-01" and x["period"]["label"] == "2012Q3"]
    assert [x["predicted"] for x in first] == [x["predicted"] for x in a.heldout]
    # the planted observation is predicted from both origins
    assert sorted({x["origin"] for x in b.heldout if x["period"]["label"] == "2013Q3"}) == ["2012-04-01", "2012-10-01"]
