"""The moves that shape a market (docs/model.md section 7, v3), one engine step at a time against the independent
reference (tests/engine/refmodel.py): entry and exit (who is an option), attractiveness changes at once and
linearly over days, a one-off change of the shopping rate, acquisitions (with and without keep_brand), and
recurring effects (a promotion for one audience, a sale price, a yearly attractiveness boost, a seasonal shopping
rate), each seen only by the shoppers whose own day within the step falls inside a firing.

The random numbers the new parts draw are recomputed here with numpy alone, from the run seed, as the engine
documents them (population.seed_streams / step_stream): the SeedSequence of the run spawns seven children,
the sixth ("days") gives step t its own generator (spawn key + (t,)) and one uniform per consumer x step_days
is its day within the step; the seventh ("events") does the same for an acquisition's retained customers.
The step's other draws are those of docs/model.md 12.8, as in tests/engine/test_reference.py.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from marketsim.engine import choice, events
from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import parse_text

from . import refmodel as ref
from .test_reference import _access_tuple, reference_state

MOVES_YAML = """
schema: marketsim/v2
name: reference-moves
seed: 777
calendar: {start: 2019-12-02, step_days: 30, steps: 16, warmup: 2}
market:
  size: {2019-12-02: 1000000, 2021-01-01: 1300000}
consumers:
  count: 500
  shopping_rate: 0.55
  turnover: 0.03
  basket: {mean: 120, sigma: 0.6}
providers:
  weibo: {penetration: 0.45, network: {model: barabasi_albert, m: 3}, weight: 1.3}
  qq: {penetration: 0.7, network: {model: watts_strogatz, k: 6, rewire: 0.2}, weight: 0.6}
  taobao: {penetration: 0.6}
retailers:
  - {name: A, kind: platform, take_rate: 0.05, attractiveness: -0.7, trend: 0.4, initial_share: 0.4,
     logins: [taobao], sso_share: {taobao: 0.6}}
  - {name: B, kind: direct, margin: 0.1, attractiveness: -0.9, price_index: 0.9, initial_share: 0.35,
     logins: [qq, weibo], sso_share: {weibo: 0.3, qq: 0.3}}
  - {name: C, kind: direct, margin: 0.08, attractiveness: -1.0, initial_share: 0, enters_later: true,
     logins: [qq, taobao]}
  - {name: D, kind: direct, margin: 0.08, attractiveness: -1.1, initial_share: 0.25, logins: [weibo, qq],
     sso_share: {weibo: 0.4, qq: 0.2}}
forecast: {trend_after: linear}   # the reference model carries trends on (the rules past the cut-off: test_trend_after.py)
behaviour: {beta_price: 1.5, beta_social: 0.8, beta_habit: 1.2, beta_friction: 0.8}
friction: {native: 0.25, sso: 0.05, link: 0.45, create: 1.9}
events:
  - {id: sale, type: promotion, date: 2020-01-10, retailer: B, audience: qq, utility: 0.9, every: year, days: 5}
  - {id: festival, type: shopping_rate, date: 2020-02-27, factor: 1.5, every: year, days: 4}
  - {id: flash, type: price_change, date: 2020-03-20, retailer: A, price_index: 0.7, every: year, days: 10}
  - {id: anniversary, type: attractiveness_change, date: 2020-02-01, retailer: D, utility: 0.8, every: year, days: 2}
  - {id: enter, type: entry, step: 2, retailer: C}
  - {id: better, type: attractiveness_change, step: 3, retailer: A, utility: 0.5}
  - {id: ramp, type: attractiveness_change, step: 3, retailer: C, utility: 0.9, over: 75}
  - {id: rate, type: shopping_rate, step: 5, factor: 1.2}
  - {id: buy, type: acquisition, step: 6, acquirer: A, target: D, retention: 0.6, keep_brand: true}
  - {id: buy2, type: acquisition, step: 8, acquirer: C, target: B, retention: 0.45}
  - {id: close, type: exit, step: 10, retailer: D}
"""
STEPS = 16
DAYS, EVENTS = 5, 6  # the children of the run's SeedSequence (spawn(7)) for days within a step and event draws


def _stream(seed: int, child: int, t: int) -> np.random.Generator:
    """Step t's own generator of child ``child`` of the run's SeedSequence, with numpy alone."""
    ss = np.random.SeedSequence(seed).spawn(7)[child]
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, t)))


class _Step:
    def __init__(self, frozen, rng, calls, record, purchases, after, moves):
        self.frozen, self.rng, self.calls, self.record = frozen, rng, calls, record
        self.purchases, self.after, self.moves = purchases, after, moves


@pytest.fixture(scope="module")
def moves_run():
    sc = parse_text(MOVES_YAML)
    alpha = np.array([r.attractiveness for r in sc.retailers])
    m = Market(sc, build_world(sc), alpha, sc.seed, track_expected=True, kernel="numpy")  # its terms: spied below
    calls: list[dict] = []
    original = choice.utilities

    def spy(alpha_t, log_price, habit, social, friction_cost, promo, **kw):
        V = original(alpha_t, log_price, habit, social, friction_cost, promo, **kw)
        calls.append(
            {
                "alpha": np.array(alpha_t, dtype=np.float64),
                "log_price": np.array(log_price, dtype=np.float64),
                "F": np.asarray(friction_cost, dtype=np.float64).copy(),
                "promo": np.broadcast_to(np.asarray(promo, dtype=np.float64), V.shape).copy(),
                "V": np.asarray(V, dtype=np.float64).copy(),
            }
        )
        return V

    steps = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(choice, "utilities", spy)
        for t in range(STEPS):
            frozen = m.fork(sc)
            rng = copy.deepcopy(m.rng)
            calls.clear()
            n_moves = len(m.moves)
            rec = m.step()
            bi, bj = m.last_purchases
            steps[t] = _Step(
                frozen,
                rng,
                list(calls),
                rec,
                (bi.copy(), bj.copy()),
                (m.last.copy(), m.access.copy()),
                list(m.moves[n_moves:]),
            )
            assert [c.tolist() for c in m.counts] == [c.tolist() for c in m.recount()], f"counts after step {t}"
    return sc, steps


def _reference_step(sc, st: _Step, t: int):
    """The reference's view of step t from the frozen state before it: the retailer side, the state after the
    step's events (removals, exits, acquisitions fed the engine's documented uniforms), per retailer the accesses
    lost and the moves, the shoppers (by their day's threshold), their days and uniforms, their utility terms."""
    n, R = st.frozen.n, len(sc.retailers)
    names = [r.name for r in sc.retailers]
    state = reference_state(st.frozen)
    side = ref.retailer_side(sc, t)
    lost = ref.apply_removals(side, state.access)
    moves = []
    for ev in sc.events:
        if ev.step != t or ev.every is not None:
            continue
        a = ev.action
        if a.type == "exit":
            j = names.index(a.retailer)
            state, gone, had = ref.leave(state, j)
            lost[j] += had
            moves.append(("exit", a.retailer, None, 0, gone))
        elif a.type == "acquisition":
            u = _stream(sc.seed, EVENTS, t).random(n).tolist()
            ja, jb = names.index(a.acquirer), names.index(a.target)
            state, moved, gone, had = ref.acquire(state, side, ja, jb, a.retention, a.keep_brand, u)
            lost[jb] += had
            moves.append(("acquisition", a.acquirer, a.target, moved, gone))
        elif a.type == "entry":
            moves.append(("entry", a.retailer, None, 0, 0))
    g = copy.deepcopy(st.rng)
    u_shop = g.random(n, dtype=np.float32)
    day = _stream(sc.seed, DAYS, t).random(n) * sc.calendar.step_days
    idx = np.array([i for i in range(n) if float(u_shop[i]) < ref.shop_threshold(sc, t, float(day[i]))], dtype=int)
    u_pick = g.random((len(idx), R + 1), dtype=np.float32)
    gone = np.flatnonzero(g.random(n, dtype=np.float32) < sc.consumers.turnover)
    terms = [ref.utilities(sc, side, t, state, int(i), day=float(day[i])) for i in idx]
    return side, state, lost, moves, idx, day, u_pick, gone, terms


@pytest.mark.parametrize("t", range(STEPS))
def test_each_step_matches_the_reference(moves_run, t):
    """Shoppers (the shopping rate by day), utilities term by term (alpha with its changes, recurring effects by
    day), who is an option, choices, the state after the step's events and purchases, and the outputs."""
    sc, steps = moves_run
    st = steps[t]
    side, state, lost, moves, idx, day, u_pick, gone, terms = _reference_step(sc, st, t)
    n, R = st.frozen.n, len(sc.retailers)
    V_eng = np.concatenate([c["V"] for c in st.calls])
    assert len(V_eng) == len(idx), f"step {t}: one utility row per shopper (shoppers by their day's rate)"
    assert math.isclose(st.record.shoppers, len(idx) * st.frozen.scale_at(t))
    assert np.allclose(st.calls[0]["alpha"], terms[0]["alpha"], atol=1e-6, rtol=0), f"alpha at step {t}"
    promo = np.concatenate([c["promo"] for c in st.calls])
    assert np.allclose(promo, [tm["M"] for tm in terms], atol=2e-6, rtol=0), f"promotions and recurring at {t}"
    assert np.allclose(np.concatenate([c["F"] for c in st.calls]), [tm["F"] for tm in terms], atol=1e-6, rtol=0)
    assert np.allclose(V_eng, [tm["V"] for tm in terms], atol=2e-5, rtol=0), f"utilities at step {t}"
    avail = ref.available(sc, t)
    P_ref = np.array([ref.probabilities(tm["V"], avail) for tm in terms])
    scale = ref.series_at(sc.market_size.points, ref.date_of(sc, t)) / n
    assert np.allclose(st.record.expected_buyers, P_ref[:, 1:].sum(axis=0) * scale, rtol=1e-5, atol=1e-9)
    # choices: the largest utility + Gumbel noise among no purchase and the retailers that are options
    picks, close = {}, 0
    for row, (i, tm) in enumerate(zip(idx, terms, strict=True)):
        x = [-math.log(-math.log(float(u_pick[row, 0])))] + [
            v - math.log(-math.log(float(u_pick[row, j + 1]))) if avail[j] else -math.inf for j, v in enumerate(tm["V"])
        ]
        order = sorted(range(R + 1), key=lambda k: -x[k])
        if x[order[0]] - x[order[1]] < 1e-4:
            close += 1
            continue
        picks[int(i)] = order[0] - 1
    assert close <= 2
    bi, bj = st.purchases
    bought = dict(zip(bi.tolist(), bj.tolist(), strict=True))
    for i, j in picks.items():
        assert bought.get(i, -1) == j, f"step {t}: consumer {i} picked {bought.get(i, -1)}, reference {j}"
    assert all(avail[j] for j in bought.values()), "nobody buys at a retailer that is not an option"
    # the state after the step's events and purchases, and turnover
    paths = {int(i): tm["path"] for i, tm in zip(idx, terms, strict=True)}
    after = ref.after_purchases(sc, side, state, sorted(bought.items()), paths)
    for i in gone.tolist():
        after.last[i] = -1
        after.access[i] = [ref.NONE] * R
    last, access = st.after
    pnames = [p.name for p in sc.providers]
    assert last.tolist() == after.last, f"last retailer after step {t}"
    for i in range(n):
        assert [_access_tuple(c, pnames) for c in access[i]] == after.access[i], f"step {t}: access of {i}"
    # outputs: access lost to events (exits and closing targets), and the moves
    assert np.allclose(st.record.access_lost, np.array(lost) * scale, rtol=1e-12), f"access lost at step {t}"
    got = [(mv.kind, mv.retailer, mv.other, mv.moved, mv.lost) for mv in st.moves]
    want = [(k, r, o, moved * scale, gone_ * scale) for k, r, o, moved, gone_ in moves]
    assert len(got) == len(want)
    for g_, w in zip(got, want, strict=True):
        assert g_[:3] == w[:3] and math.isclose(g_[3], w[3]) and math.isclose(g_[4], w[4]), (t, g_, w)
    assert all(mv.step == t for mv in st.moves)


def test_the_run_exercises_every_move(moves_run):
    """Not vacuous: recurring firings cover part of a step (some shoppers in, some out) in both years, for each
    recurring type; the ramp is partial for two steps; both acquisitions move and lose customers; the exit and the
    closing target take accesses away; C has customers after its entry."""
    sc, steps = moves_run
    seen: dict[str, set[int]] = {}
    for t, st in steps.items():
        *_, idx, day, _, _, terms = _reference_step(sc, st, t)
        inside = {ev.id for i in idx for ev in ref.firing_on(sc, t, float(day[i]))}
        outside = sum(1 for i in idx if not ref.firing_on(sc, t, float(day[i])))
        for name in inside:
            if outside:
                seen.setdefault(name, set()).add(t)
    for name in ("sale", "festival", "flash", "anniversary"):
        ts = sorted(seen.get(name, ()))
        assert ts and (ts[-1] - ts[0] >= 11 or name == "flash"), (name, ts)  # both years (flash: 2021 is out)
    ramp = [ref.alpha_at(sc, t)[2] - sc.retailers[2].attractiveness for t in range(3, 7)]
    assert 0 < ramp[0] < ramp[1] < ramp[2] == pytest.approx(0.9) == ramp[3]
    buys = [mv for st in steps.values() for mv in st.moves if mv.kind == "acquisition"]
    assert len(buys) == 2 and all(mv.moved > 0 and mv.lost > 0 for mv in buys)
    assert steps[8].record.access_lost[1] > 0 and steps[10].record.access_lost[3] > 0
    assert steps[2].record.buyers[2] == 0 or steps[3].record.buyers[2] > 0
    assert sum(st.record.buyers[2] for st in steps.values()) > 0


@pytest.mark.parametrize("t, name", [(6, "buy"), (8, "buy2"), (10, "close")])
def test_the_event_alone_matches_the_reference(moves_run, t, name):
    """The state right after the event (before the step's choices), applied through the engine's event entry point
    to a copy of the market, against the reference's transform: every consumer's habit and access, and the
    neighbour counts recomputed from scratch."""
    sc, steps = moves_run
    st = steps[t]
    m = st.frozen.fork(sc)
    ev = next(e for e in sc.events if e.id == name)
    state = reference_state(m)
    side = ref.retailer_side(sc, t)
    names = [r.name for r in sc.retailers]
    events.apply(m, ev.action, t)
    a = ev.action
    if a.type == "acquisition":
        u = _stream(sc.seed, EVENTS, t).random(m.n).tolist()
        want, *_ = ref.acquire(
            state, side, names.index(a.acquirer), names.index(a.target), a.retention, a.keep_brand, u
        )
    else:
        want, *_ = ref.leave(state, names.index(a.retailer))
    got = reference_state(m)
    assert got.last == want.last
    assert got.access == want.access
    assert [c.tolist() for c in m.counts] == [c.tolist() for c in m.recount()]
    assert m.available.tolist() == ref.available(sc, t)
