"""Event semantics (docs/model.md section 7): for each event type, the exact change it makes to a running
market's state and everything it must leave alone, then what consumers can and cannot do afterwards.

Each event is applied to a settled market through the engine's handler, between two snapshots of the whole
state (accepted logins, migration offers, social factors, promotions, prices, every consumer's access and last
retailer, the lost-login marks and neighbour counts); the test names the fields that must change, how, and
requires every other field to be unchanged. Then the market runs on and the consumers' purchases show the
consequences (who can sign up where, through which provider, and what a purchase creates).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from marketsim.engine import choice, events
from marketsim.engine.choice import MIGRATE, NATIVE, NONE, SSO
from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import AddLogin, EquityStake, PriceChange, Promotion, RemoveLogin, SocialBoost, parse_text

EVENTS_YAML = """
schema: marketsim/v2
name: events
seed: 808
calendar: {{start: 2020-01-06, step_days: 7, steps: 30, warmup: 4}}
market: {{size: 5000000}}
consumers: {{count: {n}, shopping_rate: 0.6, basket: {{mean: 100, sigma: 0.5}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.5, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}, weight: 0.8}}
  taobao: {{penetration: 0.6}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: -0.5, initial_share: 0.45, logins: [taobao], sso_share: {{taobao: 0.5}}}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: -0.6, initial_share: 0.35, logins: [qq, weibo],
      sso_share: {{weibo: 0.4, qq: 0.2}}}}
  - {{name: C, kind: direct, margin: 0.1, attractiveness: -0.9, initial_share: 0.2, logins: [qq], sso_share: {{qq: 0.3}}}}
behaviour: {{beta_price: 2.0, beta_social: 0.5, beta_habit: 1.0, beta_friction: 1.0}}
friction: {{native: 0.2, sso: 0.0, link: 0.3, create: 2.0}}
events: {events}
"""
A, B, C = 0, 1, 2
WEIBO, QQ, TAOBAO = 0, 1, 2
STATE = (
    "accepts",
    "migrate_cost",
    "social_factor",
    "promotions",
    "price",
    "access",
    "last",
    "lost_login",
    "pending_access_lost",
    "counts",
    "basket",
    "login_pref",
)


def _scenario(n=3000, events="[]"):
    return parse_text(EVENTS_YAML.format(n=n, events=events))


def _market(sc, steps=3, seed=None):
    seed = sc.seed if seed is None else seed
    m = Market(sc, build_world(sc, seed), np.array([r.attractiveness for r in sc.retailers]), seed)
    for _ in range(steps):
        m.step()
    return m


def snapshot(m: Market) -> dict:
    return {k: copy.deepcopy(getattr(m, k)) for k in STATE}


def changed(before: dict, after: dict) -> set[str]:
    """The state fields that differ between two snapshots."""
    out = set()
    for k in STATE:
        a, b = before[k], after[k]
        if k == "counts":
            same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        elif k == "promotions":
            same = a == b
        else:
            same = np.array_equal(a, b)
        if not same:
            out.add(k)
    return out


@pytest.fixture(scope="module")
def settled():
    sc = _scenario()
    return sc, _market(sc)


def _apply(settled, action):
    sc, m0 = settled
    m = m0.fork(sc)
    before = snapshot(m)
    events.apply(m, action, m.t)
    return m, before, snapshot(m)


def _run(m, steps, on_step):
    """Step ``m`` ``steps`` times; ``on_step(m, before_access, record)`` after each."""
    for _ in range(steps):
        before = m.access.copy()
        rec = m.step()
        on_step(m, before, rec)


# --------------------------------------------------------------------------- remove_login


def test_remove_login_without_migration(settled):
    m, before, after = _apply(settled, RemoveLogin("B", "weibo"))
    hit = before["access"][:, B] == SSO + WEIBO
    assert hit.sum() > 50
    assert changed(before, after) == {"accepts", "access", "lost_login", "pending_access_lost"}
    flipped = before["accepts"] != after["accepts"]
    assert flipped.sum() == 1 and flipped[WEIBO, B] and not after["accepts"][WEIBO, B]
    diff = before["access"] != after["access"]
    assert np.array_equal(diff[:, B], hit) and not diff[:, [A, C]].any(), "only B's Weibo logins change"
    assert (after["access"][hit, B] == NONE).all()
    assert np.array_equal(after["lost_login"], hit)
    assert after["pending_access_lost"].tolist() == [0, int(hit.sum()), 0]
    assert np.isinf(after["migrate_cost"]).all()
    # afterwards: nobody logs in or signs up at B through Weibo again; a Weibo-only holder who lost the login
    # and buys at B must create an account (counted), a QQ holder signs up through QQ (counted as a sign-up)
    weibo_only = hit & ~m.world.holds[:, QQ]
    seen = {"create": 0, "qq": 0}

    def check(m, prev, rec):
        assert not (m.access[:, B] == SSO + WEIBO).any(), "a holder re-linked through the removed provider"
        bi, bj = m.last_purchases
        at_b = bi[bj == B]
        fresh = at_b[prev[at_b, B] == NONE]
        created = fresh[~m.world.holds[fresh, QQ]]
        assert (m.access[created, B] == NATIVE).all()
        # a QQ holder signs up through QQ or opens a native account (the login-mix route, docs/model.md 12.4)
        assert np.isin(m.access[fresh[m.world.holds[fresh, QQ]], B], [SSO + QQ, NATIVE]).all()
        assert rec.accounts_created[B] >= len(created) * m.scale_at(rec.step) - 1e-6
        seen["create"] += int(weibo_only[created].sum())
        seen["qq"] += int((hit[fresh] & (m.access[fresh, B] == SSO + QQ)).sum())

    _run(m, 12, check)
    assert seen["create"] > 10 and seen["qq"] > 10
    assert m.last_record.access_lost.sum() == 0  # counted once, in the step of the event


def test_remove_login_with_migration(settled):
    m, before, after = _apply(settled, RemoveLogin("B", "weibo", migration_cost=0.5))
    hit = before["access"][:, B] == SSO + WEIBO
    assert changed(before, after) == {"accepts", "access", "lost_login", "pending_access_lost", "migrate_cost"}
    assert (after["access"][hit, B] == MIGRATE).all() and np.array_equal(
        before["access"] != after["access"], np.outer(hit, np.arange(3) == B)
    )
    assert after["migrate_cost"][B] == 0.5 and np.isinf(after["migrate_cost"][[A, C]]).all()
    assert not after["accepts"][WEIBO, B]
    # friction of the migrate state: min(migration cost, a one-click sign-up where one applies)
    F, path = choice.friction_lookup(m.friction_tables(), m.access, choice.can_link(m.world.holds, m.accepts))
    mig_qq = hit & m.world.holds[:, QQ]
    mig_no = hit & ~m.world.holds[:, QQ]
    assert np.allclose(F[mig_qq, B], 0.3) and (path[mig_qq, B] == choice.PATH_LINK).all()
    assert np.allclose(F[mig_no, B], 0.5) and (path[mig_no, B] == choice.PATH_MIGRATE).all()
    # afterwards: the migrated account is native (a new account, counted); QQ holders sign up through QQ instead
    seen = {"migrated": 0, "linked": 0}

    def check(m, prev, rec):
        bi, bj = m.last_purchases
        at_b = bi[bj == B]
        was = at_b[prev[at_b, B] == MIGRATE]
        no_qq, qq = was[~m.world.holds[was, QQ]], was[m.world.holds[was, QQ]]
        # a QQ holder signs up through QQ or opens a native account (the login-mix route, docs/model.md 12.4)
        assert (m.access[no_qq, B] == NATIVE).all() and np.isin(m.access[qq, B], [SSO + QQ, NATIVE]).all()
        assert rec.accounts_created[B] >= len(no_qq) * m.scale_at(rec.step) - 1e-6
        seen["migrated"] += len(no_qq)
        seen["linked"] += int((m.access[qq, B] == SSO + QQ).sum())
        assert not (m.access[:, B] == SSO + WEIBO).any()

    _run(m, 12, check)
    assert seen["migrated"] > 10 and seen["linked"] > 10


# --------------------------------------------------------------------------- add_login


def test_add_login_lets_holders_sign_up(settled):
    m, before, after = _apply(settled, AddLogin("A", "weibo"))
    assert changed(before, after) == {"accepts"}, "adding a login gives nobody access by itself"
    flipped = before["accepts"] != after["accepts"]
    assert flipped.sum() == 1 and after["accepts"][WEIBO, A]
    # a Weibo holder without Taobao and without access at A: before, an account to create; now a one-click sign-up
    who = (before["access"][:, A] == NONE) & m.world.holds[:, WEIBO] & ~m.world.holds[:, TAOBAO]
    assert who.sum() > 50
    F, path = choice.friction_lookup(m.friction_tables(), m.access, choice.can_link(m.world.holds, m.accepts))
    assert np.allclose(F[who, A], 0.3) and (path[who, A] == choice.PATH_LINK).all()
    seen = [0]

    def check(m, prev, rec):
        bi, bj = m.last_purchases
        fresh = bi[(bj == A) & (prev[bi, A] == NONE)]
        wb = fresh[m.world.holds[fresh, WEIBO] & ~m.world.holds[fresh, TAOBAO]]
        # through the added provider, or a native account (the login-mix route, docs/model.md 12.4)
        assert np.isin(m.access[wb, A], [SSO + WEIBO, NATIVE]).all(), "sign-up through the added provider"
        via = wb[m.access[wb, A] == SSO + WEIBO]
        assert rec.logins_linked[A] >= len(via) * m.scale_at(rec.step) - 1e-6
        seen[0] += len(via)

    _run(m, 10, check)
    assert seen[0] > 10


def test_without_add_login_those_holders_create_accounts(settled):
    """The control of the test above: the same consumers, no event, create native accounts at A."""
    sc, m0 = settled
    m = m0.fork(sc)
    seen = [0]

    def check(m, prev, rec):
        bi, bj = m.last_purchases
        fresh = bi[(bj == A) & (prev[bi, A] == NONE)]
        wb = fresh[m.world.holds[fresh, WEIBO] & ~m.world.holds[fresh, TAOBAO]]
        assert (m.access[wb, A] == NATIVE).all()
        seen[0] += len(wb)

    _run(m, 10, check)
    assert seen[0] > 3


# --------------------------------------------------------------------------- social_boost


def test_social_boost_changes_one_layer_for_one_retailer(settled):
    sc, m0 = settled
    m, before, after = _apply(settled, SocialBoost("weibo", "A", 2.5))
    assert changed(before, after) == {"social_factor"}
    layers = [lay.name for lay in m.world.layers]
    expect = np.ones((len(layers), 3))
    expect[layers.index("weibo"), A] = 2.5
    assert np.array_equal(after["social_factor"], expect)
    # exposure moves by (2.5 - 1) x w_weibo x (Weibo friends at A) / (Weibo degree), for A only
    everyone = np.arange(m.n)
    d = m.social_exposure(everyone).astype(np.float64) - m0.social_exposure(everyone).astype(np.float64)
    lay = m.world.layers[layers.index("weibo")]
    deg = np.diff(lay.graph.indptr)
    friends_at_a = np.array([(m.last[lay.graph.neighbours(i)] == A).sum() for i in range(m.n)])
    want = np.where(deg > 0, 1.5 * lay.weight * friends_at_a / np.maximum(deg, 1), 0.0)
    assert np.allclose(d[:, A], want, atol=1e-5) and (want > 0).sum() > 100
    assert np.allclose(d[:, [B, C]], 0, atol=1e-6)


# --------------------------------------------------------------------------- promotion, price_change


class _Spy:
    """Records the terms of every choice.utilities call (the shoppers' promotions, prices, frictions) of market
    ``m``, which steps by the numpy path from here on (the compiled pass gives the same state: test_kernel.py)."""

    def __init__(self, mp, m: Market):
        m.kernel = "numpy"
        self.calls: list[dict] = []
        original = choice.utilities

        def spy(alpha, log_price, habit, social, friction_cost, promo, **kw):
            V = original(alpha, log_price, habit, social, friction_cost, promo, **kw)
            self.calls.append(
                {
                    "log_price": np.array(log_price, dtype=np.float64),
                    "F": np.asarray(friction_cost, dtype=np.float64).copy(),
                    "promo": np.broadcast_to(np.asarray(promo, dtype=np.float64), V.shape).copy(),
                }
            )
            return V

        mp.setattr(choice, "utilities", spy)


def _shoppers(m: Market) -> np.ndarray:
    """Who shops in m's next step (docs/model.md 12.8: the first draw of a step, one float32 per consumer)."""
    u = copy.deepcopy(m.rng).random(m.n, dtype=np.float32)
    return np.flatnonzero(u < m.scenario.consumers.shopping_rate)


@pytest.mark.parametrize("audience, until", [("qq", 6), ("everyone", 6), ("qq", "2020-02-19"), ("qq", None)])
def test_promotion_reaches_its_audience_until_it_ends(monkeypatch, audience, until):
    """From its step to `until` (exclusive; a date means the step containing it), +utility at its retailer for
    holders of the audience provider (or everyone), nothing for anyone else or any other retailer."""
    ev = (
        f"[{{id: p, type: promotion, step: 3, retailer: B, audience: {audience}, utility: 0.8"
        + ("" if until is None else f", until: {until}")
        + "}]"
    )
    sc = _scenario(n=1500, events=ev)
    assert sc.events[0].action.until_step == (None if until is None else 6)  # 2020-02-19 lies in step 6
    m = _market(sc, steps=0)
    spy = _Spy(monkeypatch, m)
    for t in range(9):
        idx = _shoppers(m)
        before = snapshot(m)
        m.step()
        promo = spy.calls[-1]["promo"]
        active = 3 <= t < (6 if until is not None else 99)
        aud = np.ones(len(idx), bool) if audience == "everyone" else m.world.holds[idx, QQ]
        want = np.zeros((len(idx), 3))
        want[:, B] = 0.8 * aud if active else 0.0
        assert np.allclose(promo, want), f"step {t}"
        if t == 3:
            assert m.promotions == [(B, -1 if audience == "everyone" else QQ, 0.8, None if until is None else 6)]
            # the event itself changes nothing else
            assert changed(before, snapshot(m)) - {"access", "last", "counts", "promotions"} == set()
    assert (m.promotions == []) == (until is not None), "an ended promotion is dropped"


def test_price_change_moves_only_that_price(settled, monkeypatch):
    m, before, after = _apply(settled, PriceChange("C", 1.3))
    assert changed(before, after) == {"price"} and after["price"].tolist() == [1.0, 1.0, 1.3]
    spy = _Spy(monkeypatch, m)
    m.step()
    assert np.allclose(spy.calls[-1]["log_price"], np.log([1.0, 1.0, 1.3]), atol=1e-7)


# --------------------------------------------------------------------------- equity_stake, timing


def test_equity_stake_does_exactly_what_its_effects_do(settled):
    effects = (SocialBoost("qq", "B", 2.0), Promotion("A", "weibo", 0.4, 9), AddLogin("C", "taobao"))
    m, before, after = _apply(settled, EquityStake("Alibaba", "Weibo", 0.18, 5.86e8, effects))
    sc, m0 = settled
    m2 = m0.fork(sc)
    for eff in effects:
        events.apply(m2, eff, m2.t)
    assert changed(after, snapshot(m2)) == set()
    assert changed(before, after) == {"social_factor", "promotions", "accepts"}
    # a stake with no effects is only a fact on the timeline
    m3, b3, a3 = _apply(settled, EquityStake("Tencent", "JD", 0.15, None, ()))
    assert changed(b3, a3) == set()


def test_events_fire_before_their_steps_choices(monkeypatch):
    """A remove_login at step s applies before step s's choices: the consumers who logged in through it face a
    sign-up or a new account in that very step, and the loss is counted in that step's record."""
    sc = _scenario(n=1500, events="[{id: drop, type: remove_login, step: 4, retailer: B, provider: weibo}]")
    m = _market(sc, steps=4)
    holders = m.access[:, B] == SSO + WEIBO
    idx = _shoppers(m)
    spy = _Spy(monkeypatch, m)
    rec = m.step()
    F = spy.calls[-1]["F"]
    h = holders[idx]
    assert h.sum() > 10
    assert np.allclose(F[h, B], np.where(m.world.holds[idx[h], QQ], 0.3, 2.0))
    assert rec.access_lost[B] == holders.sum() * m.scale_at(4)


def test_events_of_one_step_apply_in_file_order():
    ev = (
        "[{id: drop, type: remove_login, step: 4, retailer: B, provider: weibo},"
        " {id: back, type: add_login, step: 4, retailer: B, provider: weibo},"
        " {id: add2, type: add_login, step: 6, retailer: A, provider: qq},"
        " {id: drop2, type: remove_login, step: 6, retailer: A, provider: qq}]"
    )
    sc = _scenario(n=1500, events=ev)
    m = _market(sc, steps=4)
    holders = m.access[:, B] == SSO + WEIBO
    rec = m.step()
    assert m.accepts[WEIBO, B], "removed, then added back in the same step"
    assert rec.access_lost[B] == holders.sum() * m.scale_at(4) > 0, "the removal still took the logins"
    m.step()
    m.step()
    assert not m.accepts[QQ, A], "added, then removed in the same step"
    assert [e.id for e in m.fired] == ["drop", "back", "add2", "drop2"]


def test_removals_accumulate_within_a_step_and_across_steps(settled):
    """Two providers removed at one retailer in the same step: both groups lose access, the step counts both
    (not the last one), and the lost-login marks of an earlier removal elsewhere are kept, not replaced. QQ has
    provider index 1, so a code slip between sso(p) = SSO + p and any other offset shows."""
    sc, m0 = settled
    m = m0.fork(sc)
    was = m.access.copy()
    hit_c = was[:, C] == SSO + QQ
    events.apply(m, RemoveLogin("C", "qq"), m.t)
    assert m.pending_access_lost.tolist() == [0, 0, int(hit_c.sum())] and hit_c.sum() > 20
    hit_bw, hit_bq = was[:, B] == SSO + WEIBO, was[:, B] == SSO + QQ
    events.apply(m, RemoveLogin("B", "weibo"), m.t)
    events.apply(m, RemoveLogin("B", "qq", migration_cost=0.4), m.t)
    assert hit_bw.sum() > 20 and hit_bq.sum() > 20
    assert m.pending_access_lost.tolist() == [0, int(hit_bw.sum() + hit_bq.sum()), int(hit_c.sum())]
    assert np.array_equal(m.lost_login, hit_c | hit_bw | hit_bq)
    assert (m.access[hit_bw, B] == NONE).all() and (m.access[hit_bq, B] == MIGRATE).all()
    assert (m.access[hit_c, C] == NONE).all()
    assert not m.accepts[[WEIBO, QQ], B].any() and not m.accepts[QQ, C] and m.accepts[TAOBAO, A]
    rec = m.step()
    assert rec.access_lost.tolist() == pytest.approx(
        [0, (hit_bw.sum() + hit_bq.sum()) * m.scale_at(rec.step), hit_c.sum() * m.scale_at(rec.step)]
    )
