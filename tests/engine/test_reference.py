"""One step of the engine against an independent reference (tests/engine/refmodel.py: plain Python loops over a
few hundred consumers, written from docs/model.md sections 2, 3, 5, 6 and 7, importing nothing from marketsim).

A market with every feature switched on (three social layers of different weights, trends, prices, turnover, a
dated market size and basket mean, every access state) runs through a timeline with every kind of event. Before
each step a frozen copy of its state is taken; the reference computes from it, for every shopper, each term of
the utility (social exposure layer by layer with the boosts g_pj, habit, friction of its access state,
promotions), the utility and the choice probabilities, and compares them with what the engine computed in that
step. It then checks the step's purchases, the state after them (synchronous update, access by purchase path,
turnover) and the step's outputs in real units. Finally the choices sampled from the same frozen state under
many seeds are tested against the reference probabilities (Pearson chi-square at a fixed level, with enough
draws that a 2-point error in a choice probability fails: checked on every state).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from scipy import stats

from marketsim.engine import choice
from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import parse_text

from . import refmodel as ref

REFERENCE_YAML = """
schema: marketsim/v2
name: reference
seed: 4242
calendar: {start: 2020-01-06, step_days: 7, steps: 16, warmup: 3}
market:
  size: {2020-01-06: 1000000, 2020-04-06: 1600000}
consumers:
  count: 400
  shopping_rate: 0.8
  turnover: 0.04
  basket: {mean: {2019-12-30: 100, 2020-12-28: 152}, sigma: 0.7}
providers:
  weibo: {penetration: 0.45, network: {model: barabasi_albert, m: 3}, weight: 1.6}
  qq: {penetration: 0.8, network: {model: watts_strogatz, k: 6, rewire: 0.2}, weight: 0.5}
  sohu: {penetration: 0.3, network: {model: erdos_renyi, mean_degree: 3}, weight: 1.1}
  taobao: {penetration: 0.6}
retailers:
  - {name: A, kind: platform, take_rate: 0.05, attractiveness: -0.6, trend: 0.9, initial_share: 0.45,
     logins: [taobao], sso_share: {taobao: 0.6}}
  - {name: B, kind: direct, margin: 0.1, attractiveness: -0.9, trend: -0.7, price_index: 0.85, initial_share: 0.35,
     logins: [qq, weibo, sohu], sso_share: {weibo: 0.25, qq: 0.3}}
  - {name: C, kind: direct, margin: 0.08, attractiveness: -1.1, initial_share: 0.2, logins: [qq], sso_share: {qq: 0.4}}
forecast: {trend_after: linear}   # the reference model carries trends on (the rules past the cut-off: test_trend_after.py)
behaviour: {beta_price: 1.5, beta_social: 0.9, beta_habit: 1.2, beta_friction: 0.8}
friction: {native: 0.25, sso: 0.05, link: 0.45, create: 1.9}
events:
  - {id: boost, type: social_boost, step: 3, layer: weibo, retailer: A, factor: 3.0}
  - {id: promo_qq, type: promotion, step: 4, retailer: B, audience: qq, utility: 0.7, until: 6}
  - {id: drop_weibo_B, type: remove_login, step: 5, retailer: B, provider: weibo, migration_cost: 0.3}
  - {id: drop_qq_C, type: remove_login, step: 6, retailer: C, provider: qq}
  - {id: add_weibo_A, type: add_login, step: 7, retailer: A, provider: weibo}
  - {id: price_C, type: price_change, step: 8, retailer: C, price_index: 1.25}
  - id: stake
    type: equity_stake
    step: 9
    investor: Alibaba
    target: Weibo
    stake: 0.18
    effects:
      - {type: social_boost, layer: sohu, retailer: B, factor: 0.3}
      - {type: promotion, retailer: A, utility: 0.35, until: 11}
      - {type: add_login, retailer: C, provider: taobao}
  - {id: drop_taobao_A, type: remove_login, step: 10, retailer: A, provider: taobao, migration_cost: 0.9}
"""
STEPS = 13  # steps 0..12: before any event, at each event, after the promotions end (steps 6 and 11)
#: Chi-square: fixed significance level, and seeds per frozen state (400 consumers x 0.8 shop: 320 x SEEDS draws)
ALPHA_CHI2 = 1e-3
SEEDS = 150


def _access_tuple(code: int, pnames) -> tuple:
    """The engine's access code (marketsim.engine.choice: 0 none, 1 native, 2 migrate, 3 + p sso(p)) in the reference's form."""
    return {0: ref.NONE, 1: ref.NATIVE, 2: ref.MIGRATE}.get(int(code)) or ("sso", pnames[int(code) - 3])


def reference_state(m: Market) -> ref.State:
    """The frozen consumer state of engine market ``m``, as plain Python values."""
    pnames = [p.name for p in m.scenario.providers]
    holds = [{pnames[k] for k in np.flatnonzero(row)} for row in m.world.holds]
    neighbours = {
        lay.name: [lay.graph.indices[lay.graph.indptr[i] : lay.graph.indptr[i + 1]].tolist() for i in range(m.n)]
        for lay in m.world.layers
    }
    return ref.State(
        last=[int(x) for x in m.last],
        access=[[_access_tuple(c, pnames) for c in row] for row in m.access],
        holds=holds,
        basket=[float(x) for x in m.basket],
        login_pref=[float(x) for x in m.login_pref],
        neighbours=neighbours,
        route_weight=[
            {
                "native": float(m.route_weight[0, j]),
                **{p: float(m.route_weight[1 + k, j]) for k, p in enumerate(pnames)},
            }
            for j in range(m.R)
        ],
    )


def _engine_layers(m: Market, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The engine's own social exposure of shoppers ``idx``, one layer at a time (the other layers' factors
    zeroed for the call, then restored)."""
    saved = m.social_factor.copy()
    out = {}
    try:
        for li, lay in enumerate(m.world.layers):
            m.social_factor[:] = 0.0
            m.social_factor[li] = saved[li]
            out[lay.name] = np.asarray(m.social_exposure(idx), dtype=np.float64)
    finally:
        m.social_factor[:] = saved
    return out


class _Step:
    """What one engine step did, seen from outside: the frozen market before it, the random stream's state
    before it, every call of choice.utilities (its terms and result, and the engine's exposure per layer), the
    step's record and purchases, and the consumer state after it."""

    def __init__(self, frozen, rng, calls, record, purchases, after):
        self.frozen, self.rng, self.calls, self.record, self.purchases, self.after = (
            frozen,
            rng,
            calls,
            record,
            purchases,
            after,
        )


@pytest.fixture(scope="module")
def reference_run():
    sc = parse_text(REFERENCE_YAML)
    alpha = np.array([r.attractiveness for r in sc.retailers])
    m = Market(sc, build_world(sc), alpha, sc.seed, track_expected=True, kernel="numpy")  # its terms: spied below
    calls: list[dict] = []
    ctx: dict = {}
    original = choice.utilities

    def spy(alpha_t, log_price, habit, social, friction_cost, promo, **kw):
        V = original(alpha_t, log_price, habit, social, friction_cost, promo, **kw)
        k = len(V)
        calls.append(
            {
                "alpha": np.array(alpha_t, dtype=np.float64),
                "log_price": np.array(log_price, dtype=np.float64),
                "habit": np.broadcast_to(np.asarray(habit, dtype=np.float64), V.shape).copy(),
                "social": np.broadcast_to(np.asarray(social, dtype=np.float64), V.shape).copy(),
                "F": np.asarray(friction_cost, dtype=np.float64).copy(),
                "promo": np.broadcast_to(np.asarray(promo, dtype=np.float64), V.shape).copy(),
                "V": np.asarray(V, dtype=np.float64).copy(),
                "kw": dict(kw),
                "rows": k,
                "layers": _engine_layers(ctx["m"], ctx["idx"]),
            }
        )
        return V

    steps = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(choice, "utilities", spy)
        for t in range(STEPS):
            frozen = m.fork(sc)
            rng = copy.deepcopy(m.rng)
            u = copy.deepcopy(m.rng).random(m.n, dtype=np.float32)
            ctx.update(m=m, idx=np.flatnonzero(u < sc.consumers.shopping_rate))
            calls.clear()
            rec = m.step()
            bi, bj = m.last_purchases
            steps[t] = _Step(
                frozen,
                rng,
                list(calls),
                rec,
                (bi.copy(), bj.copy()),
                (m.last.copy(), m.access.copy(), m.basket.copy(), m.login_pref.copy()),
            )
    return sc, steps


def _shoppers_and_uniforms(sc, st: _Step, n: int):
    """The step's random numbers in the order docs/model.md 12.8 documents: one float32 uniform per consumer
    (shop?), R+1 per shopper (Gumbel-max choice), one per consumer (leave?)."""
    g = copy.deepcopy(st.rng)
    R = len(sc.retailers)
    idx = np.flatnonzero(g.random(n, dtype=np.float32) < sc.consumers.shopping_rate)
    u_pick = g.random((len(idx), R + 1), dtype=np.float32)
    gone = np.flatnonzero(g.random(n, dtype=np.float32) < sc.consumers.turnover)
    return idx, u_pick, gone


def _calls(st: _Step) -> dict:
    """All utilities calls of the step, rows concatenated (an engine may work in batches, all from one state)."""
    out = {}
    for key in ("habit", "social", "F", "promo", "V"):
        out[key] = np.concatenate([c[key] for c in st.calls])
    out["layers"] = {name: np.concatenate([c["layers"][name] for c in st.calls]) for name in st.calls[0]["layers"]}
    return out


def _reference_step(sc, st: _Step, t: int):
    """The reference's view of step t from the frozen state: (side, state after this step's events, lost access per
    retailer, shoppers, their utility terms)."""
    state = reference_state(st.frozen)
    side = ref.retailer_side(sc, t)
    lost = ref.apply_removals(side, state.access)
    idx, u_pick, gone = _shoppers_and_uniforms(sc, st, st.frozen.n)
    terms = [ref.utilities(sc, side, t, state, int(i)) for i in idx]
    return side, state, lost, idx, u_pick, gone, terms


@pytest.mark.parametrize("t", range(STEPS))
def test_utilities_and_probabilities_match_the_reference_layer_by_layer(reference_run, t):
    sc, steps = reference_run
    st = steps[t]
    side, state, lost, idx, u_pick, gone, terms = _reference_step(sc, st, t)
    eng = _calls(st)
    assert len(eng["V"]) == len(idx), "one utility row per shopper of the step"
    b = sc.behaviour
    call = st.calls[0]
    assert call["kw"] == {
        "beta_price": b.beta_price,
        "beta_social": b.beta_social,
        "beta_habit": b.beta_habit,
        "beta_friction": b.beta_friction,
    }
    # attractiveness with its trend, and prices, at step t
    assert np.allclose(call["alpha"], terms[0]["alpha"], atol=1e-6, rtol=0)
    assert np.allclose(call["log_price"], [math.log(p) for p in side.price], atol=1e-6, rtol=0)
    # social exposure, layer by layer (weights w_p, boosts g_pj, each layer's own degree), then in total
    for name, S_eng in eng["layers"].items():
        S_ref = np.array([tm["layers"][name] for tm in terms])
        assert np.allclose(S_eng, S_ref, atol=1e-5, rtol=0), f"layer {name} at step {t}"
        assert (S_ref > 0).any(), f"layer {name} exposes nobody: the comparison would be empty"
    assert set(eng["layers"]) == {p.name for p in sc.providers if p.network is not None}
    assert np.allclose(eng["social"], np.array([tm["S"] for tm in terms]), atol=1e-5, rtol=0)
    assert np.array_equal(eng["habit"], np.array([tm["habit"] for tm in terms]))
    assert np.allclose(eng["F"], np.array([tm["F"] for tm in terms]), atol=1e-6, rtol=0), f"friction at step {t}"
    assert np.allclose(eng["promo"], np.array([tm["M"] for tm in terms]), atol=1e-6, rtol=0), f"promotions at step {t}"
    V_ref = np.array([tm["V"] for tm in terms])
    assert np.allclose(eng["V"], V_ref, atol=2e-5, rtol=0), f"utilities at step {t}"
    P_ref = np.array([ref.probabilities(list(v)) for v in V_ref])
    assert np.allclose(choice.logit_probabilities(eng["V"].astype(np.float32)), P_ref, atol=2e-6, rtol=0)
    # the engine's expected buyers and GMV (track_expected: what calibration fits) are these probabilities summed
    scale = ref.series_at(sc.market_size.points, ref.date_of(sc, t)) / st.frozen.n
    money = ref.series_at(sc.consumers.basket.mean.points, ref.date_of(sc, t)) * scale
    basket = np.array(state.basket)[idx]
    assert np.allclose(st.record.expected_buyers, P_ref[:, 1:].sum(axis=0) * scale, rtol=1e-5)
    assert np.allclose(st.record.expected_gmv, basket @ P_ref[:, 1:] * money, rtol=1e-5)


@pytest.mark.parametrize("t", range(STEPS))
def test_purchases_update_and_outputs_match_the_reference(reference_run, t):
    """The step's choices (Gumbel-max on the step's own uniforms), the synchronous update of last retailer and
    access by purchase path, turnover, and every output of the step in real units."""
    sc, steps = reference_run
    st = steps[t]
    side, state, lost, idx, u_pick, gone, terms = _reference_step(sc, st, t)
    n, R = st.frozen.n, len(sc.retailers)
    # choices: the option with the largest utility + Gumbel noise (column 0: no purchase, utility 0)
    picks, close = {}, 0
    for row, (i, tm) in enumerate(zip(idx, terms, strict=True)):
        x = [0.0 - math.log(-math.log(float(u_pick[row, 0])))] + [
            v - math.log(-math.log(float(u_pick[row, j + 1]))) for j, v in enumerate(tm["V"])
        ]
        order = sorted(range(R + 1), key=lambda k: -x[k])
        if x[order[0]] - x[order[1]] < 1e-4:
            close += 1  # a near tie: float32 rounding may decide it either way
            continue
        picks[int(i)] = order[0] - 1
    assert close <= 2
    bi, bj = st.purchases
    bought = dict(zip(bi.tolist(), bj.tolist(), strict=True))
    assert set(bought) <= set(idx.tolist()), "only shoppers buy"
    for i, j in picks.items():
        assert bought.get(i, -1) == j, f"step {t}: consumer {i} picked {bought.get(i, -1)}, reference {j}"
    # the state after the step: every purchase applied together, from the paths computed before any of them
    paths = {int(i): tm["path"] for i, tm in zip(idx, terms, strict=True)}
    after = ref.after_purchases(sc, side, state, sorted(bought.items()), paths)
    for i in gone.tolist():  # newcomers take the slots of those who left (docs/model.md section 2)
        after.last[i] = -1
        after.access[i] = [ref.NONE] * R
    last, access, basket, login_pref = st.after
    pnames = [p.name for p in sc.providers]
    assert last.tolist() == after.last
    for i in range(n):
        assert [_access_tuple(c, pnames) for c in access[i]] == after.access[i], f"step {t}: access of consumer {i}"
    stay = np.setdiff1d(np.arange(n), gone)
    assert np.array_equal(basket[stay], np.array(state.basket)[stay]) and np.all(
        basket[gone] != np.array(state.basket)[gone]
    )
    assert np.array_equal(login_pref[stay], np.array(state.login_pref, dtype=np.float32)[stay])
    # the outputs, in real units: size(date) / N per consumer, basket.mean(date) per unit of relative basket
    rec = st.record
    scale = ref.series_at(sc.market_size.points, ref.date_of(sc, t)) / n
    money = ref.series_at(sc.consumers.basket.mean.points, ref.date_of(sc, t)) * scale
    buyers, gmv, created, linked = np.zeros(R), np.zeros(R), np.zeros(R), np.zeros(R)
    flows = np.zeros((R + 1, R))
    for i, j in bought.items():
        buyers[j] += 1
        gmv[j] += state.basket[i]
        # a one-click sign-up that takes the native route (docs/model.md 12.4) opens a new native account
        native_link = paths[i][j] == "link" and (
            ref.link_route(sc, side, state.holds[i], state.login_pref[i], j, state.route_weight[j]) == ref.NATIVE
        )
        created[j] += paths[i][j] in ("create", "migrate") or native_link
        linked[j] += paths[i][j] == "link" and not native_link
        flows[state.last[i] if state.last[i] >= 0 else R, j] += 1
    assert rec.step == t and math.isclose(rec.shoppers, len(idx) * scale)
    assert np.allclose(rec.buyers, buyers * scale, rtol=1e-12)
    assert np.allclose(rec.gmv, gmv * money, rtol=1e-9)
    assert np.allclose(rec.revenue, gmv * money * np.array([r.revenue_rate for r in sc.retailers]), rtol=1e-9)
    assert np.allclose(rec.accounts_created, created * scale, rtol=1e-12), "accounts_created: new native accounts only"
    assert np.allclose(rec.logins_linked, linked * scale, rtol=1e-12)
    assert np.allclose(rec.access_lost, np.array(lost) * scale, rtol=1e-12)
    assert np.allclose(rec.flows, flows * scale, rtol=1e-12)
    assert math.isclose(rec.newcomers, len(gone) * scale)


def test_the_reference_run_exercises_every_state_and_event(reference_run):
    """Not vacuous: over the run, shoppers reach checkout by every path, including a migrate state where the
    one-click sign-up is cheaper; every removal took access from someone. (Migrate never falls back to creating an
    account here: both migration offers cost less than f_create.)"""
    sc, steps = reference_run
    seen: dict = {}
    for t, st in steps.items():
        side, state, lost, idx, _, _, terms = _reference_step(sc, st, t)
        for i, tm in zip(idx, terms, strict=True):
            for j, path in enumerate(tm["path"]):
                acc = state.access[int(i)][j][0]
                seen[(acc, path)] = seen.get((acc, path), 0) + 1
        if t == 5:
            assert lost[1] > 5  # Weibo logins at B lost (to migrate)
        if t == 6:
            assert lost[2] > 5  # QQ logins at C lost (to none)
        if t == 10:
            assert lost[0] > 5  # Taobao logins at A lost (to migrate, dearer than a Weibo link)
    for key in [
        ("native", "native"),
        ("sso", "sso"),
        ("none", "link"),
        ("none", "create"),
        ("migrate", "migrate"),
        ("migrate", "link"),
    ]:
        assert seen.get(key, 0) >= 5, (key, seen)


def test_initial_draw_matches_model_section_2():
    """docs/model.md 2: last retailer from the initial shares; customers of j log in through p with j's sso_share of p
    and hold p; the others are native at j; nobody has access elsewhere; accounts ~ Bernoulli(penetration) apart
    from those sso customers. Binomial bounds at 20,000 consumers; the social layers are graphs over holders."""
    sc = parse_text(REFERENCE_YAML.replace("count: 400", "count: 20000"))
    w = build_world(sc)
    n, pnames = w.n, [p.name for p in sc.providers]
    R = len(sc.retailers)

    def near(k, m, p):
        return abs(k / m - p) < 4.5 * math.sqrt(p * (1 - p) / m) + 1e-12

    sso_customer = np.zeros((n, len(pnames)), dtype=bool)
    for j, r in enumerate(sc.retailers):
        mine = w.last0 == j
        assert near(mine.sum(), n, r.initial_share)
        codes = w.access0[mine, j]
        stated = dict(r.sso_share)
        for k, p in enumerate(pnames):
            sso_here = codes == 3 + k
            assert near(sso_here.sum(), mine.sum(), stated.get(p, 0.0)), (r.name, p)
            assert w.holds[np.flatnonzero(mine)[sso_here], k].all(), f"{r.name}'s {p}-login customers must hold {p}"
            sso_customer[np.flatnonzero(mine)[sso_here], k] = True
        assert near((codes == 1).sum(), mine.sum(), 1 - sum(stated.values()))
        assert (w.access0[~mine, j] == 0).all(), "no access at a retailer one has not bought from"
    for k, p in enumerate(sc.providers):
        rest = ~sso_customer[:, k]
        assert near(w.holds[rest, k].sum(), rest.sum(), p.penetration), p.name
    for lay in w.layers:
        k = pnames.index(lay.name)
        deg = np.diff(lay.graph.indptr)
        assert (deg[~w.holds[:, k]] == 0).all() and (deg[w.holds[:, k]] > 0).mean() > 0.9
        assert np.allclose(lay.inv_degree[deg > 0], 1 / deg[deg > 0]) and (lay.inv_degree[deg == 0] == 0).all()
        assert lay.weight == sc.providers[k].weight
    # relative baskets have mean 1 (the log-normal correction) and log-sd sigma
    sigma = sc.consumers.basket.sigma
    assert abs(w.basket.mean() - 1) < 4.5 * math.sqrt(math.exp(sigma**2) - 1) / math.sqrt(n)
    assert abs(np.log(w.basket).std() - sigma) < 0.02
    assert math.isclose(w.scale, 1_000_000 / n)
    assert w.last0.dtype == np.int16 and set(np.unique(w.last0)) == set(range(R))


# --------------------------------------------------------------------------- sampled choices: chi-square


def _pearson(counts: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic over cells with positive expectation, and its degrees of freedom (cells less one per
    group: each group's draws are fixed)."""
    keep = expected > 0
    x2 = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    return x2, int(keep.sum() - (keep.any(axis=1)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("t", [0, 3, 4, 5, 6, 7, 9, 10, 11])
def test_sampled_choices_follow_the_reference_probabilities(reference_run, t):
    """From the frozen state before step t, SEEDS independent draws of the step (fresh random streams): how
    often each consumer bought where, grouped by last retailer, against the reference's probabilities
    (shop x logit). A 2-point error in one retailer's probability, for every shopper, must be rejected: the
    same counts are tested against such a perturbed expectation too."""
    sc, steps = reference_run
    st = steps[t]
    state = reference_state(st.frozen)
    side = ref.retailer_side(sc, t)
    ref.apply_removals(side, state.access)
    n, R = st.frozen.n, len(sc.retailers)
    rate = sc.consumers.shopping_rate
    P = np.array([ref.probabilities(ref.utilities(sc, side, t, state, i)["V"]) for i in range(n)])
    P_uncond = np.column_stack([1 - rate * (1 - P[:, 0]), rate * P[:, 1:]])  # (n, R+1): no purchase, each retailer
    counts = np.zeros((n, R + 1))
    for s in range(SEEDS):
        m = st.frozen.fork(sc)
        m.rng = np.random.default_rng([t, s, 99])
        m.step()
        bi, bj = m.last_purchases
        counts[bi, bj + 1] += 1
    counts[:, 0] = SEEDS - counts[:, 1:].sum(axis=1)
    group = np.array(state.last) + 1  # 0: none yet, 1 + j: last bought at j
    G = np.zeros((R + 1, R + 1))
    E = np.zeros((R + 1, R + 1))
    np.add.at(G, group, counts)
    np.add.at(E, group, SEEDS * P_uncond)
    x2, df = _pearson(G, E)
    crit = stats.chi2.ppf(1 - ALPHA_CHI2, df)
    assert x2 < crit, f"step {t}: chi-square {x2:.1f} > {crit:.1f} (df {df})"
    # power: 2 points of choice probability moved between two retailers, for every shopper
    mean = P[:, 1:].mean(axis=0)
    hi, lo = int(np.argmax(mean)), int(np.argmin(mean))
    shift = np.minimum(0.02, P[:, 1 + hi]) * rate
    for a, b in ((hi, lo), (lo, hi)):
        Q = P_uncond.copy()
        Q[:, 1 + a] -= np.minimum(shift, Q[:, 1 + a])
        Q[:, 1 + b] += np.minimum(shift, P_uncond[:, 1 + a])
        E2 = np.zeros_like(E)
        np.add.at(E2, group, SEEDS * Q)
        assert _pearson(G, E2)[0] > crit, f"step {t}: a 2-point error ({'ABC'[a]} -> {'ABC'[b]}) would pass"
