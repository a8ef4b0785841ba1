"""What a projection hands on (projection.json, the report, replicates.parquet), checked from outside.

One small fitted market with a login removal, three options (drop Weibo, drop QQ under the same event id, keep), an uncertain migration cost and an event past the horizon is projected once inline and once on
a thread pool. Every number of ``summary()`` and every row of ``tidy()`` is recomputed here from the projection's
arrays (or from the scenario) by a different route, and the structure of the JSON is pinned key by key: a
renamed key breaks every reader of projection.json.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from marketsim.errors import UserError
from marketsim.experiments.projection import BASELINE, project, replicate_seeds, round_to, summary
from marketsim.experiments.tasks import divergence, with_draw
from marketsim.experiments.uncertainty import prior_draws
from marketsim.scenario.core import parse_text
from tests.helpers import fit_market_yaml

OBS = "primary_source: P\nobservations:\n  - {source: P, period: 2012, shares: {A: 0.5, B: 0.3}}\n"
DROP = (
    "events:\n"
    "  - {id: drop, type: remove_login, step: 14, retailer: B, provider: weibo,\n"
    "     migration_cost: {value: 0.8, range: [0.4, 1.6], assumption: test}}\n"
    "  - {id: later, type: price_change, step: 20, retailer: C, price_index: 0.5}\n"
)
STEPS = 20  # the price change at step 20 lies just past the horizon (steps 0..19)
K, R = 2, 3


def _sc(extra):
    return parse_text(fit_market_yaml(OBS, n=1500, alpha=("calibrate", "calibrate", -1.0), extra=extra))


def _runs(tmp_path_factory):
    drop = _sc(DROP)
    offer = _sc(DROP.replace("provider: weibo,", "provider: qq,", 1))
    keep = _sc("events:\n  - {id: later, type: price_change, step: 20, retailer: C, price_index: 0.5}\n")
    raw_before = copy.deepcopy(drop.raw)
    draws = prior_draws(drop, K, seed=3)
    cache = tmp_path_factory.mktemp("fits")
    calls = []
    inline = project(
        drop,
        draws=draws,
        replicates=R,
        steps=STEPS,
        cache_dir=cache,
        thresholds=(-0.5, 0.0),
        options={"drop": drop, "qq": offer, "keep": keep},
        on_progress=lambda *a: calls.append(a),
    )
    with ThreadPoolExecutor(2) as pool:
        pooled = project(
            drop,
            draws=draws,
            replicates=R,
            steps=STEPS,
            cache_dir=cache,
            executor=pool,
            options={"drop": drop, "qq": offer, "keep": keep},
            independent_baseline=True,
        )
    assert drop.raw == raw_before, "projecting must not change the scenario it was given"
    return dict(drop=drop, offer=offer, keep=keep, draws=draws, inline=inline, pooled=pooled, calls=calls)


def test_projection_checked_from_outside(tmp_path_factory):
    """One projection run inline and on a pool, checked by each part below (in one test: a tool that maps code
    to the tests reaching it, like mutmut, then runs every check that depends on the projection)."""
    runs = _runs(tmp_path_factory)
    _progress_is_reported_stage_by_stage(runs)
    _arms_seeds_and_shapes(runs)
    _summary_numbers_recomputed(runs)
    _tidy_rows(runs)


def _progress_is_reported_stage_by_stage(runs):
    # one fit per distinct fit problem (the fit cache's key): "drop" and "qq" differ only in the login removal at
    # step 14, past the fitted horizon (the 2012 observation), as does the uncertain migration cost, so their 2K
    # fits are one problem; "keep" has its first event later (another cut-off): a second one
    fits, reps = 2, K * R
    want = [("fits", i, fits) for i in range(fits + 1)] + [("replicates", i, reps) for i in range(reps + 1)]
    assert runs["calls"] == want


def _arms_seeds_and_shapes(runs):
    p, q = runs["inline"], runs["pooled"]
    assert set(p.arrays) == {"drop", "qq", "keep", BASELINE}
    for arm in p.arrays:
        assert set(p.arrays[arm]) == {"gmv_share", "gmv", "revenue", "accounts_created"}
        assert p.arrays[arm]["gmv_share"].shape == (K, R, STEPS, 3)
        np.testing.assert_allclose(p.arrays[arm]["gmv_share"].sum(axis=-1), 1.0, atol=1e-9)
    assert p.seeds == replicate_seeds(5, R) == p.baseline_seeds and p.paired
    assert q.seeds == p.seeds and q.baseline_seeds == replicate_seeds(5, R, stream=1) and not q.paired
    assert len(set(q.baseline_seeds) | set(q.seeds)) == 2 * R
    # the options run on the same seeds as the first: the pool gives the inline numbers for them
    for arm in ("drop", "qq", "keep"):
        np.testing.assert_array_equal(p.arrays[arm]["gmv"], q.arrays[arm]["gmv"])
    assert not np.array_equal(p.arrays[BASELINE]["gmv"], q.arrays[BASELINE]["gmv"]), "independent baseline seeds"
    # destinations of the lost-login consumers: comparable only where the arm shares the first option's consumers
    assert np.isnan(q.destinations[BASELINE].astype(float)).all() and np.isfinite(p.destinations[BASELINE]).all()
    assert q.destinations[BASELINE].dtype == np.float64
    # keep has no removal: it is the baseline (same fit, same seeds, the later event past the horizon)
    np.testing.assert_array_equal(p.arrays["keep"]["gmv"], p.arrays[BASELINE]["gmv"])
    # drop and qq differ only in the removed provider (same id, same step): they must differ from step 14 on
    d = p.arrays["qq"]["gmv_share"] - p.arrays["drop"]["gmv_share"]
    assert np.abs(d[:, :, :14]).max() == 0 and np.abs(d[:, :, 14:]).max() > 0
    # the draw's migration cost reaches the drop arm only where the arm has that path
    assert [v["events.drop.migration_cost"] for v in runs["draws"].values] != [0.8, 0.8]
    assert with_draw(runs["keep"], runs["draws"].values[0]) is runs["keep"]
    assert with_draw(runs["drop"], runs["draws"].values[0]).events[0].action.migration_cost == pytest.approx(
        runs["draws"].values[0]["events.drop.migration_cost"]
    )


def test_divergence_and_an_invalid_draw():
    a = _sc(DROP)
    b = _sc(DROP.replace("step: 14", "step: 15"))
    c = _sc(DROP.replace("retailer: B, provider: weibo", "retailer: B, provider: qq"))
    assert divergence(a, a) >= 10**9 and divergence(a, b) == 14 and divergence(b, a) == 14
    assert divergence(a, c) == 14, "same id and step, another action"
    with pytest.raises(UserError, match=r"parameter draw .*events.drop.migration_cost"):
        with_draw(a, {"events.drop.migration_cost": -1.0})


def _summary_numbers_recomputed(runs):
    p, drop = runs["inline"], runs["drop"]
    s = summary(p)
    assert set(s) == {
        "scenario",
        "scenario_hash",
        "seed",
        "consumers",
        "steps",
        "horizon",
        "draws",
        "replicates",
        "paired_seeds",
        "baseline_without",
        "baseline",
        "events_outside_horizon",
        "share_scenario",
        "share_baseline",
        "shift",
        "revenue_shift",
        "interval_covers",
        "thresholds_pp",
        "lost_login",
        "observed",
        "fit_until",
        "calibration",
        "seconds",
        "warnings",
        "options",
        "compare",
    }
    assert (s["scenario"], s["scenario_hash"], s["seed"], s["consumers"], s["steps"], s["replicates"]) == (
        "fitmarket",
        drop.digest(),
        5,
        1500,
        STEPS,
        R,
    )
    assert s["horizon"] == drop.calendar.date_of(STEPS - 1).isoformat() and s["paired_seeds"] is True
    assert s["baseline_without"] == ["drop", "later"] and s["events_outside_horizon"] == ["later"]
    assert s["thresholds_pp"] == [-0.5, 0.0]
    d = s["draws"]
    assert set(d) == {"k", "designed", "source", "parameters", "failed"}
    assert (d["k"], d["designed"], d["failed"]) == (K, K, [])
    assert d["source"] == runs["draws"].source
    (par,) = d["parameters"]
    assert {k: par.pop(k) for k in ("path", "value", "range", "reason")} == {
        "path": "events.drop.migration_cost",
        "value": 0.8,
        "range": "range 0.4 .. 1.6",
        "reason": "assumption: test",
    }
    # what the decision views need: the label (the event by what it does), the unit, and the range's ends in stored
    # units and as prior coordinates (a uniform range: its ends are 0 and 1, the central value at (0.8-0.4)/1.2)
    assert par.pop("label").endswith(": cost of migrating the account") and "drop" not in par["unit"]
    assert par == pytest.approx(
        {"unit": par["unit"], "scale": 1.0, "low": 0.4, "high": 1.6, "u_low": 0.0, "u_high": 1.0, "u_central": 1 / 3}
    )
    w = p.weights
    assert w == pytest.approx(np.full(K, 1 / K))
    hz = {arm: p.arrays[arm]["gmv_share"][:, :, STEPS - 1, :] for arm in p.arrays}
    for j, n in enumerate("ABC"):
        assert s["share_scenario"][n] == pytest.approx(hz["drop"][:, :, j].mean())
        assert s["share_baseline"][n] == pytest.approx(hz[BASELINE][:, :, j].mean())
        sh = s["shift"][n]
        assert sh["mean"] == pytest.approx((hz["drop"] - hz[BASELINE])[:, :, j].mean())
        assert set(sh) == {"mean", "ci95", "covers", "variance", "drivers", "drivers_r2", "p_below"}
        assert set(sh["p_below"]) == {"-0.005", "0"}
        assert sh["p_below"]["0"] == pytest.approx(((hz["drop"] - hz[BASELINE])[:, :, j] < 0).mean(), abs=0.5)
        rev = p.arrays["drop"]["revenue"][:, :, 14:, j].sum(axis=2) - p.arrays[BASELINE]["revenue"][:, :, 14:, j].sum(
            axis=2
        )
        assert s["revenue_shift"][n]["mean"] == pytest.approx(rev.mean())
    assert s["revenue_shift"]["from"] == drop.calendar.date_of(14).isoformat()
    assert s["revenue_shift"]["to"] == s["horizon"] and s["revenue_shift"]["currency"] == drop.currency
    assert s["interval_covers"] == s["shift"]["A"]["covers"]
    assert s["shift"]["B"]["mean"] < 0, "B dropped a login"
    # options and their differences (same draws and seeds)
    assert set(s["options"]) == {"drop", "qq", "keep"} and s["options"]["drop"]["shift"] == s["shift"]
    assert set(s["options"]["qq"]) == {"share", "shift", "revenue_shift"}
    assert set(s["compare"]) == {"qq - drop", "keep - drop"}
    for j, n in enumerate("ABC"):
        assert s["compare"]["qq - drop"][n]["mean"] == pytest.approx((hz["qq"] - hz["drop"])[:, :, j].mean())
        assert s["compare"]["keep - drop"][n]["mean"] == pytest.approx((hz["keep"] - hz["drop"])[:, :, j].mean())
        assert s["options"]["keep"]["shift"][n]["mean"] == 0.0
    assert set(s["compare"]["qq - drop"]["B"]["p_below"]) == {"-0.005", "0"}
    # consumers who lost a login, in real units, and where they bought at the horizon
    ll = s["lost_login"]
    assert set(ll) == {
        "consumers",
        "consumers_rounded",
        "destinations_scenario",
        "destinations_baseline",
        "removal_in_baseline",
        "removals",
    }
    # the login removal: the retailer's customers who lost it, of how many (docs/model.md 12.4), every account lost
    (rm,) = ll["removals"]
    assert rm["customers"]["mean"] <= rm["accounts"]["mean"] and rm["stated_path"].startswith("retailers.")
    assert p.lost.shape == (K, R) and p.lost.min() > 10
    assert ll["consumers"] == pytest.approx(p.lost.mean() * p.scale) and ll["consumers_rounded"] == round_to(
        ll["consumers"]
    )
    assert p.scale == pytest.approx(1_000_000 / 1500)
    assert ll["removal_in_baseline"] is False
    for arm, key in (("drop", "destinations_scenario"), (BASELINE, "destinations_baseline")):
        tot = p.destinations[arm].sum(axis=(0, 1))
        assert ll[key] == pytest.approx(dict(zip("ABC", tot / tot.sum(), strict=True)))
    assert ll["destinations_scenario"]["B"] < ll["destinations_baseline"]["B"]
    # the fit: one per draw (the migration cost does not touch the market before the cut-off: one distinct fit)
    cal = s["calibration"]
    assert set(cal) == {"fits", "distinct", "dof", "max_residual_pp", "median_max_residual_pp", "key"}
    assert (
        (cal["fits"], cal["distinct"]) == (K, 1) and cal["key"] == p.fits[0]["key"] and cal["dof"] == p.fits[0]["dof"]
    )
    assert cal["max_residual_pp"] == max(f["max_residual_pp"] for f in p.fits) < 3.0  # a 1,500-consumer market
    assert cal["median_max_residual_pp"] == pytest.approx(float(np.median([f["max_residual_pp"] for f in p.fits])))
    assert set(p.fits[0]) == {
        "alpha",
        "trend",
        "key",
        "max_residual_pp",
        "dof",
        "residuals",
        "offsets",
        "event_values",
        "trend_se",
        "observation",
    }
    assert p.fits[0]["event_values"] == {}  # (no recurring effect's size is fitted here)
    assert len(p.fits[0]["residuals"]) == 2 and max(abs(r) for r in p.fits[0]["residuals"]) == cal["max_residual_pp"]
    assert set(s["seconds"]) == {"fits", "replicates"} and min(s["seconds"].values()) >= 0


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_a_single_option_has_no_compare_block(tmp_path, monkeypatch):
    import time

    drop = _sc(DROP)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    one = project(
        drop, draws=prior_draws(drop, K, seed=3), replicates=2, steps=16, cache_dir=None, baseline_without=["later"]
    )
    took = time.perf_counter() - t0
    assert list(tmp_path.iterdir()) == [], "no cache folder: none was asked for"
    s = summary(one)
    assert 0 <= s["seconds"]["fits"] and 0 <= s["seconds"]["replicates"]
    assert abs(s["seconds"]["fits"] + s["seconds"]["replicates"] - took) < 0.3, (s["seconds"], took)
    assert "options" not in s and "compare" not in s
    assert s["baseline_without"] == ["later"] and s["events_outside_horizon"] == ["later"]
    assert s["lost_login"]["removal_in_baseline"] is True  # the baseline keeps the removal
    assert s["shift"]["B"]["mean"] == 0.0 and s["seconds"]["fits"] >= 0


def _tidy_rows(runs):
    p = runs["pooled"]
    t = p.tidy()
    assert list(t.columns) == [
        "draw",
        "replicate",
        "seed",
        "arm",
        "step",
        "date",
        "retailer",
        "gmv_share",
        "gmv",
        "revenue",
        "accounts_created",
    ]
    assert len(t) == 4 * K * R * STEPS * 3 and t.seed.dtype == np.uint64
    rng = np.random.default_rng(0)
    for _ in range(25):
        arm = ["drop", "qq", "keep", BASELINE][rng.integers(4)]
        k, r, st, j = rng.integers(K), rng.integers(R), rng.integers(STEPS), rng.integers(3)
        row = t[(t.arm == arm) & (t.draw == p.kept[k]) & (t.replicate == r) & (t.step == st) & (t.retailer == "ABC"[j])]
        assert len(row) == 1
        row = row.iloc[0]
        assert row.seed == (p.baseline_seeds if arm == BASELINE else p.seeds)[r]
        assert row.date == runs["drop"].calendar.date_of(int(st)).isoformat()
        for m in ("gmv_share", "gmv", "revenue", "accounts_created"):
            assert row[m] == p.arrays[arm][m][k, r, st, j]


def test_round_to_two_significant_figures():
    assert round_to(3_585_344) == 3_600_000 and round_to(-0.012345) == -0.012 and round_to(0.0) == 0.0
    assert round_to(987.6, digits=3) == 988 and round_to(14_449_999) == 14_000_000
    assert math.isnan(round_to(math.nan)) and round_to(math.inf) == math.inf


def test_a_draw_that_cannot_be_fitted_is_dropped_and_reported(tmp_path):
    """Two draws of the social weight, one (6: the market tips) that the observations rule out: the projection
    keeps the other, and says which values failed and why; with no draw left it is one line."""
    from marketsim.experiments.uncertainty import Draws

    obs = (
        "primary_source: P\nobservations:\n"
        "  - {source: P, period: 2012H1, shares: {A: 0.52, B: 0.3}}\n"
        "  - {source: P, period: 2012H2, shares: {A: 0.53, B: 0.29}}\n"
    )
    text = fit_market_yaml(obs, n=1500, trend=("calibrate", 0, 0), extra=DROP).replace(
        "beta_social: 0.5,", "beta_social: {value: 0.5, range: [0.0, 6.0], assumption: test},"
    )
    sc = parse_text(text)
    p = sc.uncertain
    assert [u.path for u in p] == ["behaviour.beta_social", "events.drop.migration_cost"]
    draws = Draws(
        p,
        np.array([[0.1, 0.5], [1.0, 0.5]]),
        [{p[0].path: 0.6, p[1].path: 0.8}, {p[0].path: 6.0, p[1].path: 0.8}],
        np.array([0.5, 0.5]),
        "prior",
    )
    proj = project(sc, draws=draws, replicates=2, steps=16, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) >= 2, "the fits (and the failure) are cached where asked"
    s = summary(proj)
    assert proj.kept.tolist() == [0] and s["draws"]["k"] == 1 and s["draws"]["designed"] == 2
    (fail,) = s["draws"]["failed"]
    assert set(fail) == {"values", "reason"} and fail["values"] == draws.values[1]
    assert "cannot be met" in fail["reason"] and "tips" in fail["reason"] and "\n" not in fail["reason"]
    assert proj.arrays["scenario"]["gmv_share"].shape == (1, 2, 16, 3)
    bad = Draws(p, np.array([[1.0, 0.5]]), [draws.values[1]], np.ones(1), "prior")
    with pytest.raises(UserError, match=r"^no parameter draw could be fitted; the first: .*cannot be met"):
        project(sc, draws=bad, replicates=2, steps=16, cache_dir=tmp_path)
