"""Properties 11 and 12 of docs/model.md (v3) and the bookkeeping of the moves that shape a market.

11. An acquisition creates and loses no consumer: right after it, the acquirer's customers are its own plus the
    retained share of the target's (binomial bounds; exactly: every former target customer is now the
    acquirer's or nobody's), and the target holds none unless it keeps its brand.
12. A retailer before its entry or after its exit has share 0, no access and no habit; a recurring effect fires
    on the same calendar dates every year and on no others.
Also: an acquisition's MoveRecord counts, an exit's clearing of access and habit with the social neighbour
counts kept right, same seed -> same numbers, and a scenario and its counterfactual identical before the first
one-off event even with recurring effects in both.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from marketsim.engine import events
from marketsim.engine.choice import NONE
from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import parse_text

YAML = """
schema: marketsim/v2
name: moves
seed: 31
calendar: {{start: {start}, step_days: {sd}, steps: {steps}, warmup: 2}}
market: {{size: 2000000}}
consumers: {{count: {n}, shopping_rate: 0.5, turnover: 0.01, basket: {{mean: 100, sigma: 0.5}}}}
providers:
  weibo: {{penetration: 0.5, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.6, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}, weight: 0.8}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: -0.6, initial_share: 0.45, logins: [qq],
      sso_share: {{qq: 0.4}}}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: -0.7, initial_share: 0.35, logins: [weibo, qq],
      sso_share: {{weibo: 0.4, qq: 0.2}}}}
  - {{name: C, kind: direct, margin: 0.1, attractiveness: -0.8, initial_share: 0.2, logins: [weibo]}}
  - {{name: D, kind: direct, margin: 0.1, attractiveness: -0.5, initial_share: 0, enters_later: true, logins: [qq]}}
behaviour: {{beta_price: 2.0, beta_social: 0.6, beta_habit: 1.2, beta_friction: 1.0}}
friction: {{native: 0.2, sso: 0.0, link: 0.3, create: 2.0}}
events: {events}
"""
A, B, C, D = range(4)


def _scenario(events="[]", n=4000, start="2020-01-06", sd=7, steps=20):
    return parse_text(YAML.format(events=events, n=n, start=start, sd=sd, steps=steps))


def _market(sc, seed=None):
    seed = sc.seed if seed is None else seed
    return Market(sc, build_world(sc, seed), np.array([r.attractiveness for r in sc.retailers]), seed)


def _run(m, steps):
    return [m.step() for _ in range(steps)]


# --------------------------------------------------------------------------- property 11


@pytest.mark.parametrize("keep_brand", [False, True])
@pytest.mark.parametrize("retention", [0.0, 0.3, 0.75, 1.0])
def test_an_acquisition_creates_and_loses_no_consumer(keep_brand, retention):
    sc = _scenario(
        f"[{{id: buy, type: acquisition, step: 3, acquirer: A, target: B, retention: {retention}, "
        f"keep_brand: {str(keep_brand).lower()}}}]"
    )
    m = _market(sc)
    _run(m, 3)
    before_last, before_access = m.last.copy(), m.access.copy()
    ev = sc.events[0]
    events.apply(m, ev.action, 3)
    n_b = int((before_last == B).sum())
    assert n_b > 500
    moved = (before_last == B) & (m.last == A)
    # exactly: every former target customer is now the acquirer's or nobody's; nobody else changed habit
    assert set(np.unique(m.last[before_last == B]).tolist()) <= {A, -1}
    assert np.array_equal(m.last[before_last != B], before_last[before_last != B])
    assert (m.last == A).sum() == (before_last == A).sum() + moved.sum()
    assert len(m.last) == m.n  # nobody created or lost
    # in expectation: the retained count within binomial bounds
    k = int(moved.sum())
    assert abs(k - retention * n_b) <= 4.5 * math.sqrt(n_b * retention * (1 - retention)) + 1e-9, (k, n_b)
    # the target holds none, and keeps its access and option only with its brand
    assert (m.last == B).sum() == 0
    assert bool(m.available[B]) == keep_brand
    if not keep_brand:
        assert (m.access[:, B] == NONE).all()
    else:
        assert np.array_equal(m.access[:, B], before_access[:, B])
    # access at the acquirer: kept where there was some; carried over for the retained who had none there
    had = before_access[:, A] != NONE
    assert np.array_equal(m.access[had, A], before_access[had, A])
    carried = moved & ~had & (before_access[:, B] != NONE)
    assert (m.access[carried, A] != NONE).all()
    assert np.array_equal(m.access[~moved & ~had, A], before_access[~moved & ~had, A])
    # the MoveRecord: moved + lost = target's customers x scale
    rec = m.moves[-1]
    scale = m.scale_at(3)
    assert (rec.kind, rec.retailer, rec.other, rec.step) == ("acquisition", "A", "B", 3)
    assert math.isclose(rec.moved, k * scale) and math.isclose(rec.lost, (n_b - k) * scale)
    assert math.isclose(rec.moved + rec.lost, n_b * scale)
    # the social neighbour counts follow the moved habits
    assert all(np.array_equal(a, b) for a, b in zip(m.counts, m.recount(), strict=True))
    # and the market runs on: the target sells nothing without its brand
    recs = _run(m, 4)
    if not keep_brand:
        assert all(r.buyers[B] == 0 and r.gmv_share[B] == 0 for r in recs)
        assert (m.access[:, B] == NONE).all() and (m.last != B).all()


def test_an_acquisition_in_a_full_run_keeps_counts_right():
    sc = _scenario("[{id: buy, type: acquisition, step: 4, acquirer: C, target: A, retention: 0.5}]")
    m = _market(sc)
    _run(m, 4)
    n_a = int((m.last == A).sum())
    m.step()
    rec = m.moves[-1]
    assert math.isclose(rec.moved + rec.lost, n_a * m.scale_at(4))
    assert all(np.array_equal(a, b) for a, b in zip(m.counts, m.recount(), strict=True))


# --------------------------------------------------------------------------- property 12: entry and exit

ENTRY_EXIT = "[{id: in, type: entry, step: 5, retailer: D}, {id: out, type: exit, step: 10, retailer: B}]"


def test_a_retailer_before_its_entry_and_after_its_exit_has_nothing():
    sc = _scenario(ENTRY_EXIT)
    m = _market(sc)
    for t in range(20):
        rec = m.step()
        if t < 5:
            assert rec.buyers[D] == 0 and rec.gmv[D] == 0 and rec.gmv_share[D] == 0
            assert (m.access[:, D] == NONE).all() and (m.last != D).all() and not m.available[D]
        else:
            assert m.available[D]
        if t >= 10:
            assert rec.buyers[B] == 0 and rec.gmv[B] == 0 and rec.gmv_share[B] == 0
            assert (m.access[:, B] == NONE).all() and (m.last != B).all() and not m.available[B]
        assert math.isclose(rec.gmv_share.sum(), 1.0)
    assert sum(r for r in [m.last_record.buyers[D]]) > 0, "D sells once it is in"
    assert [(mv.kind, mv.retailer, mv.step) for mv in m.moves] == [("entry", "D", 5), ("exit", "B", 10)]


def test_an_exit_clears_access_and_habit_and_updates_neighbour_counts():
    sc = _scenario("[{id: out, type: exit, step: 3, retailer: B}]")
    m = _market(sc)
    _run(m, 3)
    last, access = m.last.copy(), m.access.copy()
    events.apply(m, sc.events[0].action, 3)
    was = last == B
    assert was.sum() > 300 and (access[:, B] != NONE).sum() > 300
    assert (m.last[was] == -1).all() and np.array_equal(m.last[~was], last[~was])
    assert (m.access[:, B] == NONE).all()
    others = [j for j in range(4) if j != B]
    assert np.array_equal(m.access[:, others], access[:, others])
    assert all(np.array_equal(a, b) for a, b in zip(m.counts, m.recount(), strict=True))
    assert all((c[:, B] == 0).all() for c in m.counts)
    rec = m.moves[-1]
    assert (rec.kind, rec.retailer) == ("exit", "B") and math.isclose(rec.lost, was.sum() * m.scale_at(3))
    out = m.step()
    assert math.isclose(out.access_lost[B], (access[:, B] != NONE).sum() * m.scale_at(3))
    assert all(np.array_equal(a, b) for a, b in zip(m.counts, m.recount(), strict=True))


# --------------------------------------------------------------------------- property 12: recurring dates


@pytest.mark.parametrize(
    "date, days, want",
    [
        (
            "2020-11-11",
            3,
            [
                ("2020-11-11", "2020-11-13"),
                ("2021-11-11", "2021-11-13"),
                ("2022-11-11", "2022-11-13"),
                ("2023-11-11", "2023-11-13"),
            ],
        ),
        # 29 February: on 28 February in common years, on 29 February in leap years
        (
            "2020-02-29",
            2,
            [
                ("2020-02-29", "2020-03-01"),
                ("2021-02-28", "2021-03-01"),
                ("2022-02-28", "2022-03-01"),
                ("2023-02-28", "2023-03-01"),
            ],
        ),
        # across the new year
        (
            "2020-12-30",
            5,
            [
                ("2020-12-30", "2021-01-03"),
                ("2021-12-30", "2022-01-03"),
                ("2022-12-30", "2023-01-03"),
                ("2023-12-30", "2024-01-03"),
            ],
        ),
    ],
)
def test_a_recurring_effect_fires_on_the_same_dates_every_year(date, days, want):
    """Event.firings over four years (calendar 2020-01-06 + 208 weeks ends 2023-12-31 exclusive of 2024-01-01)."""
    sc = _scenario(
        f"[{{id: sale, type: promotion, date: {date}, retailer: A, utility: 0.5, every: year, days: {days}}}]",
        steps=208,
        n=300,
    )
    ev = sc.events[0]
    got = [(a.isoformat(), b.isoformat()) for a, b in ev.firings(sc.calendar)]
    assert got == want
    # the engine fires it on exactly the steps containing those dates, over exactly those days
    m = _market(sc)
    on_days = set()
    for t in range(sc.calendar.steps):
        for lo, hi, f in m.firings_at(t):
            assert f.event is ev and 0 <= lo < hi <= sc.calendar.step_days
            on_days |= {sc.calendar.date_of(t) + dt.timedelta(days=d) for d in range(int(lo), int(hi))}
    want_days = {
        dt.date.fromisoformat(a) + dt.timedelta(days=k)
        for a, b in want
        for k in range((dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days + 1)
    }
    end = sc.calendar.date_of(sc.calendar.steps)
    assert on_days == {d for d in want_days if d < end}


def test_firing_steps_and_shoppers():
    """firings_at(t) is non-empty exactly on the steps containing a firing day, and a shopping_rate factor raises
    the number of shoppers only on those steps (compared with the same market without it, same seed)."""
    ev = "{id: season, type: shopping_rate, date: 2020-06-18, factor: 1.8, every: year, days: 3}"
    sc = _scenario(f"[{ev}]", steps=110, n=3000)
    base = _scenario("[]", steps=110, n=3000)
    fire = {dt.date(y, 6, 18) + dt.timedelta(days=k) for y in (2020, 2021, 2022) for k in range(3)}
    want = {t for t in range(110) if any(sc.calendar.date_of(t) <= d < sc.calendar.date_of(t + 1) for d in fire)}
    m = _market(sc)
    got = {t for t in range(110) if m.firings_at(t)}
    assert got == want and len(want) >= 2
    for t in range(110):  # each step against the same state and random numbers without the effect
        r0 = m.fork(base).step()
        r = m.step()
        if t in want:
            assert r.shoppers > r0.shoppers, t
        else:
            assert r.shoppers == r0.shoppers and np.array_equal(r.gmv, r0.gmv), t


# --------------------------------------------------------------------------- seeds and counterfactuals

EVERYTHING = """[
  {id: sale, type: promotion, date: 2020-01-20, retailer: B, audience: qq, utility: 0.8, every: year, days: 4},
  {id: season, type: shopping_rate, date: 2020-02-03, factor: 1.4, every: year, days: 6},
  {id: flash, type: price_change, date: 2020-01-27, retailer: C, price_index: 0.8, every: year, days: 2},
  {id: boost, type: attractiveness_change, date: 2020-02-10, retailer: A, utility: 0.5, every: year, days: 3},
  {id: in, type: entry, step: 8, retailer: D},
  {id: better, type: attractiveness_change, step: 9, retailer: D, utility: 0.4, over: 30},
  {id: buy, type: acquisition, step: 10, acquirer: A, target: C, retention: 0.6},
  {id: out, type: exit, step: 12, retailer: B}
]"""


def _numbers(m, steps):
    return [(r.shoppers, r.buyers.tolist(), r.gmv.tolist(), r.access_lost.tolist()) for r in _run(m, steps)]


def test_same_seed_same_numbers():
    sc = _scenario(EVERYTHING, n=2000)
    a, b = _market(sc), _market(sc)
    assert _numbers(a, 20) == _numbers(b, 20)
    assert a.moves == b.moves and a.last.tolist() == b.last.tolist()
    assert _numbers(_market(sc, seed=32), 20) != _numbers(_market(sc), 20)


def test_a_counterfactual_is_identical_before_the_first_one_off_event():
    sc = _scenario(EVERYTHING, n=2000)
    cf = sc.without_events()
    assert [e.id for e in cf.events] == [e.id for e in sc.events if e.recurring] and sc.first_event_step == 8
    a, b = _market(sc), _market(cf)
    ra, rb = _numbers(a, 20), _numbers(b, 20)
    assert ra[:8] == rb[:8]
    assert ra[8:] != rb[8:]
    assert any(a.firings_at(t) for t in range(8)), "the recurring effects fire before the first one-off event"
