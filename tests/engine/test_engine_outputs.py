"""A run's outputs as a reader gets them (timeseries and flows tables, shares by step, progress), the engine's
entry points (simulate's defaults, the starting attractiveness of a fit, the warm-up, forks), each checked
against the step records or a closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marketsim.engine import events
from marketsim.engine.market import Market, initial_alpha
from marketsim.engine.population import build_world
from marketsim.engine.run import simulate
from marketsim.scenario.core import RemoveLogin, parse_text
from tests.helpers import simple_market_yaml

COLUMNS = [
    "step",
    "date",
    "retailer",
    "gmv",
    "gmv_share",
    "buyers",
    "buyer_share",
    "revenue",
    "accounts_created",
    "logins_linked",
    "access_lost",
    "lost_login_consumers",
    "shoppers",
    "no_purchase_rate",
    "newcomers",
]


def _sc(**over):
    return parse_text(simple_market_yaml(n=3000, steps=6, beta_habit=1.0, create=1.0, link=0.3, **over))


def test_timeseries_and_flows_tables_hold_the_records():
    sc = parse_text(
        simple_market_yaml(
            n=3000,
            steps=6,
            beta_habit=1.0,
            create=1.0,
            link=0.3,
            events="[{id: d, type: remove_login, step: 2, retailer: B, provider: weibo}]",
        )
        .replace("marketsim/v1", "marketsim/v2")
        .replace("shopping_rate: 0.5,", "shopping_rate: 0.5, turnover: 0.05,")
    )
    seen = []
    run = simulate(sc, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(t + 1, 6) for t in range(6)]
    assert (run.seed, run.consumers, run.steps, len(run.records)) == (11, 3000, 6, 6)
    np.testing.assert_array_equal(run.alpha, [-1.0, -0.5])
    ts = run.timeseries()
    assert list(ts.columns) == COLUMNS and len(ts) == 6 * 2
    for rec in run.records:
        for j, name in enumerate(("A", "B")):
            row = ts[(ts.step == rec.step) & (ts.retailer == name)].iloc[0]
            assert row.date == sc.calendar.date_of(rec.step).isoformat()
            want = (
                rec.gmv[j],
                rec.gmv_share[j],
                rec.buyers[j],
                rec.buyer_share[j],
                rec.revenue[j],
                rec.accounts_created[j],
                rec.logins_linked[j],
                rec.access_lost[j],
                rec.lost_login_last[j],
                rec.shoppers,
                rec.no_purchase_rate,
                rec.newcomers,
            )
            assert tuple(row[COLUMNS[3:]]) == pytest.approx(want)
        assert run.share(rec.step) == pytest.approx({"A": rec.gmv_share[0], "B": rec.gmv_share[1]})
    assert ts[ts.step == 2].access_lost.sum() > 0 and ts[ts.step != 2].access_lost.sum() == 0
    fl = run.flows()
    assert list(fl.columns) == ["step", "from", "to", "buyers"]
    assert set(fl["from"]) <= {"A", "B", "(none)"} and set(fl["to"]) <= {"A", "B"} and (fl.buyers > 0).all()
    for rec in run.records:
        f = fl[fl.step == rec.step]
        assert f.buyers.sum() == pytest.approx(rec.flows.sum()) == pytest.approx(rec.buyers.sum())
        for a, src in enumerate(("A", "B", "(none)")):
            for j, dst in enumerate(("A", "B")):
                got = f[(f["from"] == src) & (f["to"] == dst)].buyers.sum()
                assert got == pytest.approx(rec.flows[a, j])
    assert (fl["from"] == "(none)").any(), "newcomers (no last retailer) bought somewhere"


def test_simulate_defaults_and_arguments():
    sc = _sc()
    a = simulate(sc)
    b = simulate(sc, seed=11, steps=6, world=build_world(sc, 11))
    assert [r.gmv.tolist() for r in a.records] == [r.gmv.tolist() for r in b.records]
    c = simulate(sc, seed=12, steps=3)
    assert (c.seed, c.steps, len(c.records)) == (12, 3, 3) and c.records[0].gmv.tolist() != a.records[0].gmv.tolist()
    t = simulate(sc, trend=np.array([0.0, 3.0]))
    assert t.records[-1].gmv_share[1] > a.records[-1].gmv_share[1] + 0.02, "the trend is used"
    cal = parse_text(
        simple_market_yaml(n=500, steps=2)
        .replace("attractiveness: -1.0", "attractiveness: calibrate")
        .replace("initial_share: 0.6", "initial_share: 0.6, target_share: 0.5")
        .replace("initial_share: 0.4", "initial_share: 0.4, target_share: 0.5")
        .replace("shopping_rate: 0.5,", "shopping_rate: 0.5, conversion: 0.6,")
    )
    with pytest.raises(ValueError, match="need fitted alphas"):
        simulate(cal)


def test_initial_alpha_is_the_static_logit_less_the_habit_bonus():
    """The fit's starting point, ln(conv x s_j / (1 - conv)) - beta_habit (docs/model.md 12): a closed form."""
    text = (
        simple_market_yaml(beta_habit=0.7)
        .replace("attractiveness: -1.0", "attractiveness: calibrate")
        .replace("initial_share: 0.6", "initial_share: 0.6, target_share: 0.45")
        .replace("initial_share: 0.4", "initial_share: 0.4, target_share: 0.55")
        .replace("shopping_rate: 0.5,", "shopping_rate: 0.5, conversion: 0.8,")
    )
    sc = parse_text(text)
    assert initial_alpha(sc).tolist() == pytest.approx([math.log(0.8 * 0.45 / 0.2) - 0.7, -0.5])


def test_warm_up_runs_before_step_zero_and_reports_nothing_lost():
    sc = parse_text(simple_market_yaml(n=2000, steps=4, warmup=5, beta_habit=1.0))
    trend = np.array([0.0, 5.0])
    m = Market(sc, build_world(sc, 3), np.array([-1.0, -0.5]), 3, trend=trend)
    assert [r.step for r in m.warmup_records] == [-5, -4, -3, -2, -1] and m.t == 0
    # the burn-in runs at the calendar start's values: no trend yet (5 utility/yr would move B's share)
    flat = Market(sc, build_world(sc, 3), np.array([-1.0, -0.5]), 3)
    assert [r.gmv.tolist() for r in m.warmup_records] == [r.gmv.tolist() for r in flat.warmup_records]
    rec = m.step()
    assert rec.access_lost.tolist() == [0, 0]


def test_fork_shares_the_world_and_follows_its_own_events():
    sc = _sc()
    m = Market(sc, build_world(sc, 4), np.array([-1.0, -0.5]), 4)
    m.step()
    other = _sc(events="[{id: d, type: remove_login, step: 3, retailer: B, provider: weibo}]")
    f = m.fork(other)
    assert f.world is m.world and f.scenario is other and f.t == m.t
    assert f.access is not m.access and np.array_equal(f.access, m.access)
    for _ in range(3):
        f.step()
        m.step()
    assert [e.id for e in f.fired] == ["d"] and m.fired == []
    assert not f.accepts[0, 1] and m.accepts[0, 1]


def test_lost_index_follows_each_removal():
    sc = _sc()
    m = Market(sc, build_world(sc, 4), np.array([-1.0, -0.5]), 4)
    assert len(m.lost_index()) == 0
    events.apply(m, RemoveLogin("B", "weibo"), m.t)
    first = m.lost_index().copy()
    assert len(first) > 0 and np.array_equal(first, np.flatnonzero(m.lost_login))
    events.apply(m, RemoveLogin("B", "qq"), m.t)
    assert len(m.lost_index()) > len(first) and np.array_equal(m.lost_index(), np.flatnonzero(m.lost_login))


def _turnover_sc(turnover=0.05, n=3000, warmup=0):
    return parse_text(
        simple_market_yaml(
            n=n,
            steps=6,
            beta_habit=1.0,
            create=1.0,
            link=0.3,
            warmup=warmup,
            events="[{id: d, type: remove_login, step: 2, retailer: B, provider: weibo}]",
        )
        .replace("marketsim/v1", "marketsim/v2")
        .replace("shopping_rate: 0.5,", f"shopping_rate: 0.5, turnover: {turnover},")
    )


def test_without_turnover_a_market_starts_from_its_world_and_a_bad_trend_is_refused():
    sc = _turnover_sc(turnover=0.0)
    w = build_world(sc, 7)
    m = Market(sc, w, np.array([-1.0, -0.5]), 7)
    assert m.pilot_steps == 0
    assert np.array_equal(m.last, w.last0) and np.array_equal(m.access, w.access0), "no pilot: the initial draw"
    with pytest.raises(ValueError, match=r"trend must be 2 finite numbers, got array\(\[nan"):
        Market(sc, w, np.array([-1.0, -0.5]), 7, trend=np.array([np.nan, 0.0]))


def test_a_market_adopts_the_state_of_pilot_consumers_with_its_own_accounts():
    """docs/model.md 12.2: each consumer takes the last retailer and access of a pilot consumer holding the same
    identity accounts (the hot deck); the pilot runs 2 lifetimes and can be continued for a few more steps."""
    from marketsim.engine.market import pilot_steps, run_pilot

    sc = _turnover_sc(turnover=0.05, n=3000)
    alpha, trend = np.array([-1.0, -0.5]), np.zeros(2)
    pilot = run_pilot(sc, alpha, trend, 7, 3000)
    assert pilot.steps == pilot_steps(0.05) == 40 and pilot.world.n == 3000
    m = Market(sc, build_world(sc, 7), alpha, 7, pilot=pilot)
    assert m.pilot_steps == 40
    key = lambda holds: holds.astype(np.int64) @ (1 << np.arange(holds.shape[1]))  # noqa: E731
    kp, km = key(pilot.world.holds), key(m.world.holds)
    pairs = {
        (int(k), int(last), bytes(acc)) for k, last, acc in zip(kp, pilot.state.last, pilot.state.access, strict=True)
    }
    found = np.isin(km, kp)
    assert found.mean() > 0.95
    for i in np.flatnonzero(found):
        assert (int(km[i]), int(m.last[i]), bytes(m.access[i])) in pairs, i
    assert not np.array_equal(m.last, m.world.last0)
    more = run_pilot(sc, alpha, trend, 7, 3000, start=pilot, steps=3)
    assert more.steps == 3 and more.world is pilot.world
    assert not np.array_equal(more.state.last, pilot.state.last)


def test_lost_login_consumers_are_counted_where_they_last_bought():
    sc = _turnover_sc(turnover=0.0)
    m = Market(sc, build_world(sc, 7), np.array([-1.0, -0.5]), 7)
    for _ in range(6):
        rec = m.step()
        lost = m.lost_index()
        want = np.bincount(m.last[lost][m.last[lost] >= 0], minlength=2) * m.scale_at(rec.step)
        assert rec.lost_login_last.tolist() == pytest.approx(want.tolist())
    assert (rec.lost_login_last > 0).all(), "lost-login consumers who last bought at each retailer"
