from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
BUNDLED = sorted(p for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("sweep_"))


@pytest.fixture
def tiny_path() -> Path:
    return SCENARIOS / "tiny.yaml"


def simple_market_yaml(**over) -> str:
    """A small market with no habit, social or friction effects unless overridden (closed-form logit)."""
    d = dict(n=20000, steps=30, beta_social=0.0, beta_habit=0.0, native=0.0, sso=0.0, link=0.0, create=0.0,
             alpha_a=-1.0, alpha_b=-0.5, price_b=1.0, sigma=0.0, events="[]", rate=0.5, warmup=0)
    d.update(over)
    return f"""
schema: marketsim/v1
name: simple
seed: 11
calendar: {{start: 2020-01-06, steps: {d['steps']}, warmup: {d['warmup']}}}
market: {{size: 1000000}}
consumers: {{count: {d['n']}, shopping_rate: {d['rate']}, basket: {{mean: 100, sigma: {d['sigma']}}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.9, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: {d['alpha_a']}, initial_share: 0.6, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: {d['alpha_b']}, initial_share: 0.4, price_index: {d['price_b']},
      logins: [qq, weibo], sso_share: {{weibo: 0.3, qq: 0.2}}}}
behaviour: {{beta_price: 2.0, beta_social: {d['beta_social']}, beta_habit: {d['beta_habit']}, beta_friction: 1.0}}
friction: {{native: {d['native']}, sso: {d['sso']}, link: {d['link']}, create: {d['create']}}}
events: {d['events']}
"""
