"""The live page's pictures for a market whose retailers come and go (no browser: the HTML and SVG the page's
components show, built from a LiveModel stepped here): the events list names every event with its date, and a
recurring effect with each date it fires within the calendar, the past ones marked; the numbers table says a
retailer is not in the market yet, or left on a date, instead of a share; the share chart leaves out the weeks
a retailer is not in the market and says so in its label, without a NaN anywhere."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("solara")

from marketsim.engine.market import initial_alpha
from marketsim.mesa_model.live import LiveModel
from marketsim.report.numbers import count
from marketsim.scenario.core import parse_text
from marketsim.scenario.labels import event_label
from marketsim.viz import page
from tests.helpers import MOVES_YAML

ENTRY, ACQ, EXIT, SALE_1, SALE_2 = 3, 6, 10, 44, 96  # the weeks of the moves scenario's events


@pytest.fixture(scope="module")
def model():
    sc = parse_text(MOVES_YAML.replace("count: 3000", "count: 1500"))
    return LiveModel(sc, initial_alpha(sc), sample_size=60)


def _row(html: str, name: str) -> list[str]:
    row = next(r for r in html.split("<tr>") if f"</span> {name}</td>" in r)
    return re.findall(r"<td class='(?:share|cf|gap)[^']*'>([^<]*)</td>", row)


def _items(html: str) -> dict[str, str]:
    return dict(re.findall(r"<li data-id='([^']+)'[^>]*>(.*?)</li>", html))


def _chart(m: LiveModel) -> str:
    colors = page._colors(m.market_scenario)
    return page.share_chart_svg(m.market_scenario, m.share, m.t, colors, {e.id for e in m.fired}, m.present)


def _step_to(m: LiveModel, t: int) -> None:
    while m.t < t:
        m.step()


def test_the_page_follows_retailers_that_come_and_go(model):
    m, colors = model, page._colors(model.market_scenario)
    # week 0: every event with its date; the yearly sale with both dates it fires, neither past
    ev = _items(page.events_html(m))
    assert list(ev) == ["suning_enters", "jd_buys_yhd", "dangdang_leaves", "singles_day"]
    assert "<b>2013-01-28</b> (week 3) Suning enters the market" in ev["suning_enters"]
    assert "<b>2013-02-18</b> (week 6) JD buys Yihaodian (60% of its customers retained" in ev["jd_buys_yhd"]
    assert "<b>2013-03-18</b> (week 10) Dangdang leaves the market" in ev["dangdang_leaves"]
    sale = ev["singles_day"]
    assert "every year from 2013-11-11</b> for 3 days Tmall promotion" in sale
    assert re.findall(r"data-past='(\w+)'>([^<]*)<", sale) == [
        ("false", f"2013-11-11 to 2013-11-13 (week {SALE_1})"),
        ("false", f"2014-11-11 to 2014-11-13 (week {SALE_2})"),
    ]
    nums = page.numbers_html(m, colors)
    assert _row(nums, "Suning") == ["not in the market yet (enters on 2013-01-28)", "not in the market", "–"]
    assert _row(nums, "Tmall") == ["–", "–", "–"]
    assert "data-week='0'" in nums and "data-week='0'" in page.events_html(m)

    # before the entry: the entrant is out of the chart (no line of its own), and its label says so
    _step_to(m, ENTRY)
    svg = _chart(m)
    assert "nan" not in svg.lower() and f'data-week="{ENTRY}"' in svg
    assert "Suning not in the market yet" in svg
    assert svg.count('class="scenario"') == 4  # Tmall, JD, Yihaodian, Dangdang
    assert _row(page.numbers_html(m, colors), "Suning")[0].startswith("not in the market yet")

    # after the entry and the acquisition: Suning has a share; Yihaodian left, bought by JD
    _step_to(m, ACQ + 1)
    nums = page.numbers_html(m, colors)
    s = _row(nums, "Suning")
    assert s[0].endswith("%") and s[1] == "not in the market" and s[2].startswith("+")
    assert _row(nums, "Yihaodian")[0] == "left on 2013-02-18 (bought by JD)"
    assert _row(nums, "Yihaodian")[1].endswith("%")
    acq = next(mv for mv in m.moves if mv.kind == "acquisition")
    jd = _items(page.events_html(m))["jd_buys_yhd"]
    assert f"moved {count(acq.moved)} shoppers to JD ({count(acq.lost)} lost their habit)" in jd
    assert re.search(r"<li data-id='jd_buys_yhd' data-fired='true' class='fired'>", page.events_html(m))

    # past the exit and the first sale: Dangdang left; the first firing is marked past, the second is not
    _step_to(m, SALE_1 + 1)
    nums = page.numbers_html(m, colors)
    assert _row(nums, "Dangdang")[0] == "left on 2013-03-18"
    ev = _items(page.events_html(m))
    assert re.findall(r"data-past='(\w+)'", ev["singles_day"]) == ["true", "false"]
    assert "lost their habit there" in ev["dangdang_leaves"]
    svg = _chart(m)
    assert "nan" not in svg.lower()
    assert "Dangdang left the market" in svg and "Yihaodian left the market" in svg
    # the lines: Suning drawn from its entry week on; Dangdang up to the week before it left
    names = m.market_scenario.retailer_names
    scen = re.findall(r'class="scenario" points="([^"]*)"', svg)
    assert len(scen) == len(names)
    per = dict(zip(names, scen, strict=True))
    assert len(per["Suning"].split()) == m.t - ENTRY
    assert len(per["Dangdang"].split()) == EXIT
    assert len(per["Yihaodian"].split()) == ACQ
    # the yearly sale is marked at each of its firings within the calendar, dark once it fired
    sale = next(e for e in m.market_scenario.events if e.id == "singles_day")
    said = re.escape(event_label(sale, m.market_scenario.provider_names))  # the event in words, never its id
    assert re.findall(rf'fill="(#\w+)"[^>]*>(\d{{4}}-\d\d-\d\d) {said}<', svg) == [
        ("#222", "2013-11-11"),
        ("#aaa", "2014-11-11"),
    ]
    assert np.array_equal(m.present[0, : m.t, names.index("Suning")], np.arange(m.t) >= ENTRY)
