"""The live page follows its scenario: its controls come from the scenario's own uncertain
parameters and events and the format's definitions (a WeChat scenario gets WeChat sliders, with the ranges its
``uncertain`` entries state, labels and units from :mod:`marketsim.scenario.labels`); the values set on them reach
the scenario (:func:`scenario_with`); the baseline can drop one chosen event (:class:`LiveModel`); the event labels
on the share chart never overlap, also for six events in three weeks."""

from __future__ import annotations

import re
from html import unescape
from itertools import combinations

import numpy as np
import pytest

pytest.importorskip("solara")

from marketsim.engine.market import initial_alpha
from marketsim.figures import labels as placement
from marketsim.mesa_model.live import LiveModel
from marketsim.scenario.core import load_scenario
from marketsim.scenario.eventtypes import REGISTRY
from marketsim.scenario.fieldspec import Field
from marketsim.scenario.labels import event_label
from marketsim.viz import page
from tests.helpers import ROOT, SCENARIOS

TENCENT = ROOT / "docs" / "examples" / "tencent_jd_2014.yaml"

#: tiny's market for 12 weeks with a WeChat account and six events in three weeks (steps 2 to 4).
SIX = f"""
schema: marketsim/v2
base: {SCENARIOS / "tiny.yaml"}
name: six
consumers: {{count: 600}}
calendar: {{steps: 12}}
providers:
  wechat:
    penetration: {{value: 0.5, range: [0.3, 0.6], assumption: "a test's range"}}
events:
  - {{id: jd_drops_weibo, type: remove_login, date: 2013-01-21, retailer: JD, provider: weibo, migration_cost: 0.5}}
  - {{id: tmall_promo, type: promotion, date: 2013-01-22, retailer: Tmall, audience: weibo, utility: 0.3}}
  - {{id: jd_adds_wechat, type: add_login, date: 2013-01-28, retailer: JD, provider: wechat}}
  - id: jd_wechat_promo
    type: promotion
    date: 2013-01-29
    retailer: JD
    audience: wechat
    utility: {{value: 0.2, range: [0.1, 0.6], assumption: "a test's range"}}
  - {{id: tmall_price_cut, type: price_change, date: 2013-02-04, retailer: Tmall, price_index: 0.95}}
  - {{id: other_logistics, type: attractiveness_change, date: 2013-02-05, retailer: Other, utility: 0.4, over: 14}}
"""


@pytest.fixture(scope="module")
def six(tmp_path_factory) -> object:
    f = tmp_path_factory.mktemp("six") / "six.yaml"
    f.write_text(SIX)
    return load_scenario(f)


@pytest.fixture(scope="module")
def tencent():
    return load_scenario(TENCENT)


def _by_path(sc) -> dict[str, page.Knob]:
    return {k.path: k for k in page.knobs(sc)}


# --------------------------------------------------------------------------- the knobs


def test_a_wechat_scenario_gets_wechat_sliders_with_its_stated_ranges_units_and_labels(tencent):
    k = _by_path(tencent)
    wechat = k["providers.wechat.penetration"]
    assert (wechat.label, wechat.unit, wechat.scale) == ("Share of consumers with a WeChat account", "%", 100.0)
    assert (wechat.lo, wechat.value, wechat.hi) == (0.4, 0.57, 0.6)  # its uncertain: range [0.4, 0.6]
    assert wechat.fmt(wechat.value) == "57.0%" and "not every WeChat user" in wechat.note
    retained = k["events.jd_takes_tencent_shops.retention"]
    assert (retained.lo, retained.hi, retained.unit, retained.group) == (0.3, 0.7, "%", "jd_takes_tencent_shops")
    # named by what the event does, never by its id
    assert retained.label == "JD buys Tencent (50% of its customers retained; Tencent closes): customers retained"
    # the WeChat promotion's utility: a prior from a stored posterior, offered over its central 95%
    promo = k["events.tencent_jd_deal.effects.1.utility"]
    u = next(u for u in tencent.uncertain if u.path == promo.path)
    assert np.allclose([promo.lo, promo.hi], u.ppf(np.array([0.025, 0.975])))
    assert promo.fmt(0.1) == "0.10 utils" and promo.group == "tencent_jd_deal"
    # every event: a switch; every one-off event: its week; the deal's stake and price are records (no slider)
    switches = [x.group for x in k.values() if x.kind == "switch"]
    assert switches == [e.id for e in tencent.events]
    weeks = {x.group: x.value for x in k.values() if x.kind == "week"}
    assert weeks == {e.id: e.step for e in tencent.events if not e.recurring}
    assert not any(p.endswith((".stake", ".amount_usd")) for p in k)
    # the behaviour every scenario has
    assert {"behaviour.beta_social", "behaviour.beta_habit", "friction.create"} <= set(k)


def test_each_events_numbers_come_from_the_registry_within_the_formats_ranges(six):
    k = _by_path(six)
    raw = {e["id"]: e for e in six.raw["events"]}
    for e in six.events:
        cls = REGISTRY[e.action.type]
        for f in cls.format_fields:
            if not isinstance(f, Field) or f.type not in ("number", "integer") or f.key in cls.inert:
                continue
            if f.key not in raw[e.id]:
                continue
            knob = k[f"events.{e.id}.{f.key}"]
            assert f.lo <= knob.lo <= knob.value <= knob.hi <= f.hi, (knob.path, knob.lo, knob.hi)
            assert knob.integer == (f.type == "integer")
    assert k["events.other_logistics.over"].fmt(14) == "14 days"
    assert k["events.tmall_price_cut.price_index"].fmt(0.95) == "0.95 (1 = market price)"
    assert (k["events.jd_wechat_promo.utility"].lo, k["events.jd_wechat_promo.utility"].hi) == (0.1, 0.6)
    assert "jd_adds_wechat" in {x.group for x in k.values()}  # no numbers, still its switch and its week


def test_values_round_trip_through_scenario_with(six, tencent):
    sc = page.scenario_with(
        six,
        {
            "providers.wechat.penetration": 0.45,
            "events.jd_wechat_promo.utility": 0.55,
            "events.tmall_price_cut.date": 6,
            "events.other_logistics.over": 20,
            "behaviour.beta_habit": 3.0,
            "event:jd_adds_wechat": 0,
            "event:tmall_promo": 1,  # on, as it was
        },
        seed=11,
    )
    ev = {e.id: e for e in sc.events}
    assert sc.providers[sc.provider_index("wechat")].penetration == 0.45
    assert ev["jd_wechat_promo"].action.utility == 0.55
    assert ev["tmall_price_cut"].step == 6
    assert ev["other_logistics"].action.over_days == 20
    assert sc.behaviour.beta_habit == 3.0 and sc.seed == 11
    assert "jd_adds_wechat" not in ev and "tmall_promo" in ev
    # the same values read back from the new scenario's own knobs
    k = _by_path(sc)
    assert k["events.jd_wechat_promo.utility"].value == 0.55 and k["events.tmall_price_cut.date"].value == 6
    assert page.scenario_with(six, {x.key: x.value for x in page.knobs(six)}, six.seed).digest() == six.digest()
    deal = page.scenario_with(tencent, {"events.jd_takes_tencent_shops.retention": 0.65}, tencent.seed)
    assert next(e for e in deal.events if e.id == "jd_takes_tencent_shops").action.retention == 0.65


# --------------------------------------------------------------------------- the baseline


def test_a_baseline_without_one_event_is_the_scenario_simulated_without_it(six):
    alpha = initial_alpha(six)
    m = LiveModel(six, alpha, baseline=["tmall_promo"], sample_size=20)
    alone = LiveModel(six.without_events(["tmall_promo"]), alpha, sample_size=20)
    default = LiveModel(six, alpha, sample_size=20)
    while m.running:
        m.step()
        alone.step()
        default.step()
    assert np.isfinite(m.share).all()
    assert np.array_equal(m.share[1], alone.share[0])  # same seed, same consumers: the same numbers
    assert np.array_equal(m.share[0], default.share[0]) and not np.array_equal(m.share[1], default.share[1])
    assert (
        page.baseline_words(m) == "without Tmall promotion to Weibo users"
        and page.baseline_words(default) == "without its events"
    )
    assert page.baseline_for(six, "tmall_promo") == ["tmall_promo"] and page.baseline_for(six, "") is None
    off = page.scenario_with(six, {"event:tmall_promo": 0}, six.seed)
    assert page.baseline_for(off, "tmall_promo") == []  # switched off: the baseline is the scenario itself
    assert [c for c, _ in page.baseline_choices(six)] == ["", *(e.id for e in six.events)]


# --------------------------------------------------------------------------- labels that never overlap


def _label_boxes(svg: str) -> list[tuple[float, float, float, float]]:
    """(left, right, top, bottom) of each event label of a share chart, by the page's own width measure."""
    out = []
    for x, y, text in re.findall(r'<text class="event-label" x="([-\d.]+)" y="([-\d.]+)"[^>]*>([^<]*)</text>', svg):
        w = page.text_width(unescape(text), 11)
        out.append((float(x), float(x) + w, float(y) - 11, float(y) + 3))
    return out


def _disjoint(a, b) -> bool:
    return a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]


def test_six_event_labels_in_three_weeks_never_overlap_on_the_share_chart(six):
    m = LiveModel(six, initial_alpha(six), sample_size=20)
    for _ in range(6):
        m.step()
    svg = page.share_chart_svg(six, m.share, m.t, ["#000"] * 3, {e.id for e in m.fired}, m.present)
    boxes = _label_boxes(svg)
    assert len(boxes) == 3  # one label per week with events, naming each of them
    labels = " ".join(re.findall(r'class="event-label"[^>]*>([^<]*)<', svg))
    assert all(event_label(e, six.provider_names) in labels for e in six.events), labels  # words, never ids
    assert not any(e.id.replace("_", " ") in labels or e.id in labels for e in six.events), labels
    assert all(_disjoint(a, b) for a, b in combinations(boxes, 2)), boxes
    width = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))
    top = min(b[2] for b in boxes)
    assert all(0 <= b[0] and b[1] <= width for b in boxes) and top >= 0


def test_place_labels_never_overlaps_on_crowded_random_marks():
    rng = np.random.default_rng(21)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        xs = list(rng.choice([rng.uniform(0, 600), 590.0, 10.0], size=n) + rng.uniform(0, 20, n))
        ws = list(rng.uniform(20, 250, n))
        placed = placement.place_labels(xs, ws, 2.0, 658.0)
        boxes = [(a, a + w, -14.0 * r, -14.0 * r + 13) for (a, r), w in zip(placed, ws, strict=True)]
        assert all(_disjoint(a, b) for a, b in combinations(boxes, 2)), (xs, ws, placed)
        assert all(2.0 <= b[0] and b[1] <= 658.0 for b in boxes)
        assert max(r for _, r in placed) < n


def test_spread_keeps_labels_apart_and_inside_the_plot():
    ys = placement.spread([200.0, 199.0, 198.0, 197.0], 14, 0.0, 205.0)
    assert all(abs(a - b) >= 14 for a, b in combinations(ys, 2)) and max(ys) <= 205.0


@pytest.mark.parametrize("steps", [8, 26, 105, 157, 520])
def test_month_labels_under_the_chart_never_overlap(six, steps):
    sc = six.with_overrides(steps=steps)
    svg = page.share_chart_svg(sc, np.full((2, steps, 3), np.nan), 0, ["#000"] * 3, set())
    found = re.findall(r'<text x="([-\d.]+)" y="[-\d.]+" text-anchor="middle" fill="#666">([^<]+)</text>', svg)
    boxes = [(float(x) - page.text_width(t, 12) / 2, float(x) + page.text_width(t, 12) / 2, 0, 1) for x, t in found]
    assert len(boxes) >= min(3, steps // 4) and found[0][1].endswith(str(sc.calendar.start.year))
    assert all(_disjoint(a, b) for a, b in combinations(boxes, 2)), found
