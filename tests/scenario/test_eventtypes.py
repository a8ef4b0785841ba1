"""The event-type registry (marketsim/eventtypes.py): every event type holds its fields, its rules, what it does to
the market, how `marketsim validate` and the live page describe it and its chart labels, in one class. Checked
here: the published JSON Schema and the field reference carry every registered type's fields; every type
describes itself and labels its numbers; and an event type defined only in this file (registered through the
registry's public API) validates, runs in the engine and is described, with no other module touched."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from marketsim.engine import events
from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.errors import ScenarioError
from marketsim.scenario import describe, labels, schema
from marketsim.scenario.core import parse_text
from marketsim.scenario.eventtypes import REGISTRY, EventType, Reading, Registry
from marketsim.scenario.fieldspec import Field
from marketsim.viz import page as app

ROOT = Path(__file__).resolve().parents[2]

# A small market with one event of every registered type (an equity stake carrying every effect type).
YAML = """
schema: marketsim/v2
name: evtypes
seed: 5
calendar: {{start: 2020-01-06, step_days: 7, steps: 8}}
market: {{size: 100000}}
consumers: {{count: 400, shopping_rate: 0.6, basket: {{mean: 100, sigma: 0.5}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 2}}, weight: 1.0}}
  qq: {{penetration: 0.5}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: -0.5, initial_share: 0.6, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: -0.6, initial_share: 0.4, logins: [qq, weibo]}}
  - {{name: C, kind: direct, margin: 0.1, attractiveness: -0.8, initial_share: 0, enters_later: true, logins: [qq]}}
behaviour: {{beta_price: 2.0, beta_social: 0.5, beta_habit: 1.0, beta_friction: 1.0}}
friction: {{native: 0.2, sso: 0.0, link: 0.3, create: 2.0}}
events: {events}
"""
ALL_EVENTS = """
  - {id: drop, type: remove_login, step: 1, retailer: B, provider: weibo, migration_cost: 0.5}
  - {id: add, type: add_login, step: 1, retailer: A, provider: weibo}
  - {id: boost, type: social_boost, step: 2, layer: weibo, retailer: A, factor: 2}
  - {id: promo, type: promotion, step: 2, retailer: B, utility: 0.3, audience: qq, until: 5}
  - {id: price, type: price_change, step: 3, retailer: A, price_index: 1.1}
  - {id: stake, type: equity_stake, step: 3, investor: X, target: Y, stake: 0.1, amount_usd: 1000000,
     effects: [{type: social_boost, layer: weibo, retailer: B, factor: 1.5},
               {type: promotion, retailer: A, utility: 0.2}, {type: add_login, retailer: A, provider: qq}]}
  - {id: season, type: shopping_rate, step: 1, factor: 1.5, every: year, days: 3}
  - {id: enter, type: entry, step: 2, retailer: C}
  - {id: better, type: attractiveness_change, step: 2, retailer: A, utility: 0.2, over: 30}
  - {id: buy, type: acquisition, step: 4, acquirer: A, target: C, retention: 0.5}
  - {id: close, type: exit, step: 6, retailer: B}
"""


def _numeric(block) -> list[str]:
    return [f.key for f in block.fields if isinstance(f, Field) and f.type in ("number", "integer")]


# --------------------------------------------------------------------------- (1) the published format


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_type_is_in_the_published_json_schema(name):
    published = json.loads((ROOT / "schema" / "scenario.schema.json").read_text(encoding="utf-8"))
    item = published["$defs"]["scenario"]["properties"]["events"]["anyOf"][0]["items"]
    assert name in item["properties"]["type"]["enum"]
    rule = next(r for r in item["allOf"] if r.get("if", {}).get("properties", {}).get("type", {}).get("const") == name)
    fields = [f.key for f in REGISTRY.actions[name].fields]
    assert fields and set(fields) <= set(rule["then"]["properties"])
    assert set(REGISTRY.actions[name].required_keys) <= set(rule["then"].get("required", []))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_type_is_in_the_reference(name):
    doc = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    part = doc.split(f"**`type: {name}`**: ", 1)
    assert len(part) == 2, f"docs/scenarios.md has no paragraph for type {name}"
    table = part[1].split("\n\n", 2)[1]  # the table right after the type's paragraph
    for f in REGISTRY.actions[name].fields:
        assert f"`events[].{f.key}`" in table, (name, f.key)
    if name in REGISTRY.effect_types:
        assert "Also an effect of an equity_stake." in part[1].split("\n", 1)[0]


# --------------------------------------------------------------------------- (2) every type describes itself


@pytest.fixture(scope="module")
def every_type():
    sc = parse_text(YAML.format(events=ALL_EVENTS))
    acts = {}
    for e in sc.events:
        for a in (e.action, *e.action.actions()):
            acts.setdefault(a.type, (e, a))
    assert set(acts) == set(REGISTRY), "the test scenario must use every registered type"
    return sc, acts


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_type_describes_itself_and_labels_its_numbers(every_type, name):
    sc, acts = every_type
    e, a = acts[name]
    # validate writes back every field the type has (the effects of an equity stake with their own)
    doc = describe.scenario_document(sc)
    written = next(d for d in doc["events"] if d["id"] == e.id)
    if a is not e.action:
        written = next(x for x in written["effects"] if x["type"] == name)
    spec = REGISTRY.actions[name]
    assert set(written) - {"id", "type", "date", "every", "days"} <= {f.key for f in spec.fields}
    assert set(spec.required_keys) <= set(written)
    # the live page names it in words, not by its type's name
    text = app._describe(type("E", (), {"action": a})())
    assert text != name.replace("_", " ") and text == a.live_text()
    # every number a sweep may vary has a chart label (not the generic "Events: id field")
    for key in _numeric(spec):
        q = labels.parameter_quantity(f"events.{e.id}.{key}")
        assert not q.label.startswith("Events:"), (name, key, q.label)


def test_validate_output_names_every_event_type_and_its_business_terms(every_type):
    sc, _ = every_type
    out = describe.render(sc, given="evtypes.yaml", prov=None)
    for name in REGISTRY:
        assert f"type: {name}" in out
    for path in (
        "events.drop.migration_cost",
        "events.boost.factor",
        "events.promo.utility",
        "events.price.price_index",
        "events.stake.effects.0.factor",
        "events.stake.effects.1.utility",
    ):
        assert f"#   - {path}: " in out, path


# --------------------------------------------------------------------------- (3) a new type, in one class


@dataclass(frozen=True)
class Tax(EventType):
    """A throw-away event type: a sales tax on one retailer multiplies its price index by (1 + rate)."""

    retailer: str
    rate: float
    type: str = "sales_tax"

    doc: ClassVar[str] = "A sales tax on the retailer: its price index is multiplied by (1 + rate)."
    format_fields: ClassVar[tuple] = (
        Field("retailer", "string", "The retailer taxed.", required=True, refers="retailer", what="retailer"),
        Field("rate", "number", "Tax rate.", unit="fraction of 1", required=True, lo=0, hi=1, uncertain=True),
    )
    labels: ClassVar[dict] = {"rate": ("{e}: tax rate", "%", 100.0)}

    @classmethod
    def parse(cls, r: Reading) -> Tax:
        t = cls(r.get("retailer"), r.get("rate"))
        if t.rate > 0.5 and t.retailer == "A":  # a rule between fields, reported as every other
            r.fail(f"{r.path}.rate", f"{t.rate} is too high for a platform; allowed: at most 0.5")
        return t

    def apply(self, m, step):
        m.price[m.retailer_index[self.retailer]] *= 1 + self.rate

    def file_fields(self, key, num, cal):
        return {"retailer": self.retailer, "rate": num(self.rate, f"{key}.rate")}

    def business_terms(self, key, when, t):
        return [(f"{key}.rate", self.rate, f"{self.retailer} is taxed {self.rate:.0%} {when}")]

    def live_text(self):
        return f"{self.retailer} taxed {self.rate:.0%}"


@pytest.fixture
def with_tax() -> Registry:
    return REGISTRY.with_types(Tax, effect=True)


TAX = """
  - {id: tax, type: sales_tax, step: 2, retailer: B, rate: {range: [0.1, 0.3], assumption: a guess}}
"""


def test_a_new_type_validates(with_tax):
    sc = parse_text(YAML.format(events=TAX), events=with_tax)
    (e,) = sc.events
    assert e.action == Tax("B", 0.2) and e.id == "tax" and e.step == 2
    assert [u.path for u in sc.uncertain] == ["events.tax.rate"]
    # as an effect of an equity stake too
    stake = (
        "[{id: s, type: equity_stake, step: 1, investor: X, target: Y, stake: 0.1,"
        " effects: [{type: sales_tax, retailer: A, rate: 0.1}]}]"
    )
    assert parse_text(YAML.format(events=stake), events=with_tax).events[0].action.effects == (Tax("A", 0.1),)
    # its per-field checks come from its fields, its rule from its class: one line, file:line: field: ...
    for bad, msg in (
        ("{type: sales_tax, step: 1, retailer: B, rate: 2}", r"^<scenario>:\d+: events\[0\]\.rate: .*<= 1"),
        ("{type: sales_tax, step: 1, retailer: Q, rate: 0.1}", r"^<scenario>:\d+: events\[0\]\.retailer: .*'Q'"),
        (
            "{type: sales_tax, step: 1, retailer: A, rate: 0.8}",
            r"^<scenario>:\d+: events\[0\]\.rate: 0.8 is too high for a platform; allowed: at most 0.5$",
        ),
    ):
        with pytest.raises(ScenarioError) as ei:
            parse_text(YAML.format(events=f"[{bad}]"), events=with_tax)
        assert re.search(msg, str(ei.value)) and "\n" not in str(ei.value), str(ei.value)
    # the bundled registry does not know it
    with pytest.raises(ScenarioError, match=r"events\[0\]\.type: unknown event type 'sales_tax'"):
        parse_text(YAML.format(events=TAX))
    # its fields are in the format the JSON Schema and the reference are generated from
    ev = schema.events_spec(with_tax.actions).item
    assert ev.block("sales_tax")["rate"].hi == 1
    assert "sales_tax" in with_tax.effects_spec.variants


def test_a_new_type_runs_in_the_engine(with_tax):
    sc = parse_text(YAML.format(events=TAX), events=with_tax)
    m = Market(sc, build_world(sc, sc.seed), np.array([r.attractiveness for r in sc.retailers]), sc.seed)
    for _ in range(2):
        m.step()
    assert m.price.tolist() == [1.0, 1.0, 1.0]
    m.step()  # step 2: the tax applies before the step's choices
    assert m.price.tolist() == [1.0, pytest.approx(1.2), 1.0]
    assert [ev.id for ev in m.fired] == ["tax"]
    assert events.HANDLERS.keys() == set(REGISTRY)  # the bundled registry is untouched


def test_a_new_type_is_described(with_tax):
    sc = parse_text(YAML.format(events=TAX), events=with_tax)
    out = describe.render(sc, given="t.yaml", prov=None)
    assert "type: sales_tax" in out and "#   - events.tax.rate: 0.2; B is taxed 20% from 2020-01-20" in out
    assert "rate:\n      value: 0.2\n      range:\n      - 0.1\n      - 0.3" in out
    assert app._describe(sc.events[0]) == "B taxed 20%"
    assert with_tax.labels()["rate"] == ("{e}: tax rate", "%", 100.0)


def test_registration_is_explicit_and_checked():
    with pytest.raises(ValueError, match="two event types named 'remove_login'"):
        REGISTRY.with_types(REGISTRY["remove_login"])
    with pytest.raises(ValueError, match="not registered: sales_tax"):
        Registry(list(REGISTRY.types.values()), [Tax])
