"""Every reported total in real units (docs/model.md sections 2 and 9): shoppers, buyers, GMV, revenue, accounts
created, one-click sign-ups, access lost and newcomers against closed forms, with a dated market size and a
dated basket mean, at two numbers of agents (the same closed form must hold at 10^4 and 10^5).

The market: no habit, social or friction effects, so every shopper picks retailer j with the static logit
probability p_j whatever its state (docs/model.md section 6), and a consumer's access evolves in closed form:
A accepts no single sign-on, B accepts QQ until the event at step 8 removes it. With r the shopping rate,
s(t) the market size and m(t) the basket mean at step t's date, s0_j the initial shares, pi the QQ penetration
and q_j = 1 - r p_j the chance of not buying at j in a step:

  shoppers(t) = s(t) r;  buyers_j(t) = s(t) r p_j;  GMV_j(t) = s(t) r p_j m(t)  (relative baskets have mean 1);
  accounts_A(t) = s(t) (1 - s0_A) q_A^t r p_A           (only A's non-customers, all without access, create);
  linked_B(t) = s(t) s0_A pi v q_B^t r p_B,  accounts_B(t) = s(t) s0_A (1 - pi v) q_B^t r p_B   (t < 8);
  access_lost_B(8) = s(8) [s0_B sso_B + s0_A pi v (1 - q_B^8)]  (B's QQ-login customers and QQ sign-ups so far);
  accounts_B(t >= 8) = s(t) [s0_B sso_B + s0_A (pi v + (1 - pi v) q_B^8)] q_B^(t - 8) r p_B  (no access at B left);
v: the share of a QQ holder's one-click sign-ups at B that go through QQ (the rest open a native account: the
route weights that keep B's stated login mix, docs/model.md 12.4).

Sampled totals are compared in counts of agents (a total / (s(t) / N)) within 5 standard deviations of the
per-agent sums (each agent's contribution is independent of the others' here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.engine.run import simulate
from marketsim.scenario.core import parse_text

from .refmodel import date_of, series_at

UNITS_YAML = """
schema: marketsim/v2
name: units
seed: 31
calendar: {{start: 2020-01-06, step_days: 7, steps: {steps}, warmup: 0}}
market: {{size: {{2020-01-06: 2000000, 2020-03-30: 3000000}}, currency: RMB}}
consumers:
  count: {n}
  shopping_rate: 0.3
  turnover: {turnover}
  basket: {{mean: {{2020-01-06: 200, 2020-03-30: 260}}, sigma: 0.8}}
providers:
  qq: {{penetration: 0.6}}
  weibo: {{penetration: 0.3, network: {{model: erdos_renyi, mean_degree: 4}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: -0.5, initial_share: 0.6, logins: []}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: -1.0, initial_share: 0.4, logins: [qq], sso_share: {{qq: 0.5}}}}
behaviour: {{beta_price: 2.0, beta_social: 0.0, beta_habit: 0.0, beta_friction: 1.0}}
friction: {{native: 0.0, sso: 0.0, link: 0.0, create: 0.0}}
events: [{{id: drop, type: remove_login, step: 8, retailer: B, provider: qq}}]
"""
R_SHOP, PI, S0, SSO_B, EVENT = 0.3, 0.6, (0.6, 0.4), 0.5, 8
V = np.array([-0.5, -1.0])
P = np.exp(V) / (1 + np.exp(V).sum())
RATE = np.array([0.05, 0.1])


def _scenario(n, steps=14, turnover=0.0):
    return parse_text(UNITS_YAML.format(n=n, steps=steps, turnover=turnover))


def _near(got, expect, sd, what):
    assert abs(got - expect) < 5 * sd, f"{what}: {got:.5g} vs closed form {expect:.5g} (5 sd = {5 * sd:.3g})"


@pytest.fixture(scope="module", params=[10_000, 100_000], ids=["N=1e4", "N=1e5"])
def units_run(request):
    n = request.param
    sc = _scenario(n)
    m = Market(sc, build_world(sc), np.array([-0.5, -1.0]), sc.seed, track_expected=True)
    recs = [m.step() for _ in range(sc.calendar.steps)]
    size = np.array([series_at(sc.market_size.points, date_of(sc, t)) for t in range(len(recs))])
    mean = np.array([series_at(sc.consumers.basket.mean.points, date_of(sc, t)) for t in range(len(recs))])
    # the share of B's one-click sign-ups through QQ (the rest open a native account): the route weights the engine
    # solved for B's stated login mix (engine.login_mix, tested in tests/engine/test_login_mix.py)
    w = m.route_weight[:, 1]
    return sc, recs, size, mean, w[1] / (w[0] + w[1])


def test_the_series_are_dated(units_run):
    sc, recs, size, mean, _ = units_run
    # 2,000,000 on 2020-01-06 rising linearly to 3,000,000 on 2020-03-30 (12 weeks); basket 200 -> 260 over 12 weeks
    assert size[0] == 2_000_000 and size[6] == 2_500_000 and size[12] == 3_000_000 and size[13] == 3_000_000
    assert mean[0] == 200 and mean[3] == 215 and mean[12] == 260


def test_shoppers_buyers_gmv_and_revenue_in_real_units(units_run):
    sc, recs, size, mean, _ = units_run
    n = sc.consumers.count
    T = len(recs)
    per = size / n  # real shoppers per agent at each step
    for t, rec in enumerate(recs):
        _near(rec.shoppers / per[t], n * R_SHOP, math.sqrt(n * R_SHOP * (1 - R_SHOP)), f"shoppers at step {t}")
        # the engine's expected buyers: every shopper has the same logit probabilities here
        assert np.allclose(rec.expected_buyers, rec.shoppers * P, rtol=1e-3)  # float32 probabilities summed in float32
        assert np.allclose(rec.revenue, rec.gmv * RATE, rtol=1e-12)
    buyers = np.array([r.buyers for r in recs]) / per[:, None]  # agents
    gmv = np.array([r.gmv for r in recs]) / (per * mean)[:, None]  # agents x relative basket
    cv2 = math.exp(sc.consumers.basket.sigma**2) - 1  # variance of a relative basket (mean 1)
    for j in range(2):
        q = R_SHOP * P[j]
        _near(buyers[:, j].sum(), T * n * q, math.sqrt(T * n * q), f"buyers of {'AB'[j]}")
        # GMV in halves (the dates matter: size and basket mean grow over the run), each within its own noise:
        # choices, and the fixed baskets of the agents (their mean deviates from 1 by sqrt(cv2 / n))
        for lo, hi in ((0, T // 2), (T // 2, T)):
            k = hi - lo
            sd = math.sqrt(k * n * q * (1 + cv2) + (k * n * q) ** 2 * cv2 / n)
            _near(gmv[lo:hi, j].sum(), k * n * q, sd, f"GMV of {'AB'[j]}, steps {lo}-{hi - 1}")
        # expected GMV (choice probabilities x baskets of the step's shoppers) tells the same story, with less noise
        eg = np.array([r.expected_gmv[j] for r in recs]) / (per * mean)
        _near(
            eg.sum(), T * n * q, math.sqrt(T * n * q * cv2 + (T * n * q) ** 2 * cv2 / n), f"expected GMV of {'AB'[j]}"
        )


def test_accounts_sign_ups_and_access_lost_in_real_units(units_run):
    sc, recs, size, mean, via_qq = units_run
    n = sc.consumers.count
    per = size / n
    qA, qB = 1 - R_SHOP * P[0], 1 - R_SHOP * P[1]
    created = np.array([r.accounts_created for r in recs]) / per[:, None]
    linked = np.array([r.logins_linked for r in recs]) / per[:, None]
    lost = np.array([r.access_lost for r in recs]) / per[:, None]
    ts = np.arange(len(recs))
    pre, post = ts < EVENT, ts >= EVENT
    # A: each non-customer creates one account at its first purchase there (A accepts no sign-on)
    pA = (1 - S0[0]) * qA**ts * R_SHOP * P[0]
    _near(created[:, 0].sum(), n * pA.sum(), math.sqrt(n * pA.sum()), "accounts created at A")
    assert (linked[:, 0] == 0).all() and (lost[:, 0] == 0).all()
    # B before the event: A's customers holding QQ sign up in one click (logins_linked), the others create
    pL = S0[0] * PI * via_qq * qB ** ts[pre] * R_SHOP * P[1]
    pC = S0[0] * (1 - PI * via_qq) * qB ** ts[pre] * R_SHOP * P[1]
    _near(linked[pre, 1].sum(), n * pL.sum(), math.sqrt(n * pL.sum()), "one-click sign-ups at B")
    _near(created[pre, 1].sum(), n * pC.sum(), math.sqrt(n * pC.sum()), "accounts created at B before the event")
    # the event: every QQ login at B is lost, the initial ones and the sign-ups
    p_lost = S0[1] * SSO_B + S0[0] * PI * via_qq * (1 - qB**EVENT)
    assert (lost[ts != EVENT] == 0).all()
    _near(lost[EVENT, 1], n * p_lost, math.sqrt(n * p_lost * (1 - p_lost)), "access lost at B")
    # after it nobody can sign up at B; whoever has no access creates an account at the first purchase there
    none_B = S0[1] * SSO_B + S0[0] * (PI * via_qq + (1 - PI * via_qq) * qB**EVENT)
    pC2 = none_B * qB ** (ts[post] - EVENT) * R_SHOP * P[1]
    assert (linked[post, 1] == 0).all()
    _near(created[post, 1].sum(), n * pC2.sum(), math.sqrt(n * pC2.sum()), "accounts created at B after the event")
    # where the consumers who lost a login last bought: all of them, every step from the event on
    lost_last = np.array([r.lost_login_last.sum() for r in recs]) / per
    assert (lost_last[pre] == 0).all() and np.allclose(lost_last[post], lost[EVENT, 1])


def test_newcomers_in_real_units():
    """Each agent leaves with probability `turnover` per step (docs/model.md section 2): s(t) x turnover newcomers."""
    n, turnover = 10_000, 0.05
    sc = _scenario(n, steps=10, turnover=turnover)
    res = simulate(sc, np.array([-0.5, -1.0]))
    size = np.array([series_at(sc.market_size.points, date_of(sc, t)) for t in range(10)])
    got = np.array([r.newcomers for r in res.records]) / (size / n)
    _near(got.sum(), 10 * n * turnover, math.sqrt(10 * n * turnover * (1 - turnover)), "newcomers")
    # a newcomer has no access: it must create or sign up again, so accounts keep being created at A
    late = np.array([r.accounts_created[0] for r in res.records[5:]]) / (size[5:] / n)
    assert late.sum() > 0
