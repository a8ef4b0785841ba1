"""The validator's rules for the moves that shape a market (docs/model.md sections 4 and 7): entries, exits and
acquisitions in an order that makes sense, recurring effects (every: year, days) only where they can recur, and
retailers that enter later. Each mistake gives one line, ``file:line: field: what is wrong; what would be right``,
pointing at the line of the event (or retailer) at fault."""

from __future__ import annotations

import pytest

from marketsim.errors import ScenarioError
from marketsim.scenario.core import load_scenario

HEAD = """schema: marketsim/v2
name: moves
seed: 5
calendar: {start: 2020-01-06, step_days: 7, steps: 120}
market: {size: 100000}
consumers: {count: 400, shopping_rate: 0.6, basket: {mean: 100, sigma: 0.5}}
providers:
  qq: {penetration: 0.5}
retailers:
  - {name: A, kind: platform, take_rate: 0.05, attractiveness: -0.5, initial_share: 0.6, logins: [qq]}
  - {name: B, kind: direct, margin: 0.1, attractiveness: -0.6, initial_share: 0.4, logins: [qq]}
  - {name: C, kind: direct, margin: 0.1, attractiveness: -0.8, initial_share: 0, enters_later: true, logins: [qq]}
behaviour: {beta_price: 2.0, beta_social: 0.5, beta_habit: 1.0, beta_friction: 1.0}
friction: {native: 0.2, sso: 0.0, link: 0.3, create: 2.0}
events:
"""
FIRST_EVENT_LINE = HEAD.count("\n") + 1
C_LINE = next(i for i, ln in enumerate(HEAD.splitlines(), 1) if "name: C" in ln)


def _error(tmp_path, text: str) -> str:
    p = tmp_path / "moves.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    msg = str(ei.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def _check(msg: str, line: int, field: str, *parts: str) -> None:
    """``moves.yaml:LINE: FIELD: ...; ...`` with every part in it."""
    assert msg.split("moves.yaml:", 1)[1].startswith(f"{line}: {field}: "), msg
    what, _, right = msg.partition(f"{field}: ")[2].partition("; ")
    assert what and right, f"what is wrong; what would be right: {msg}"
    for part in parts:
        assert part in msg, (part, msg)


def test_a_file_with_every_move_in_order_is_valid(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text(
        HEAD
        + """  - {id: enter, type: entry, step: 2, retailer: C}
  - {id: promo, type: promotion, step: 3, retailer: C, utility: 0.3}
  - {id: buy, type: acquisition, step: 5, acquirer: A, target: C, retention: 0.5, keep_brand: true}
  - {id: better, type: attractiveness_change, step: 6, retailer: C, utility: 0.2, over: 30}
  - {id: close, type: exit, step: 8, retailer: B}
  - {id: sale, type: promotion, date: 2020-11-11, retailer: A, utility: 0.4, every: year, days: 3}
  - {id: season, type: shopping_rate, date: 2020-06-18, factor: 1.5, every: year, days: 1}
"""
    )
    sc = load_scenario(p)
    assert [e.id for e in sc.events if e.recurring] == ["season", "sale"]
    assert next(r for r in sc.retailers if r.name == "C").enters_later


@pytest.mark.parametrize(
    "events, line, field, parts",
    [
        # an entry of a retailer that is there from the start
        (
            "  - {id: e, type: entry, step: 2, retailer: A}\n",
            0,
            "events[0].retailer",
            ["A is in the market from the start", "enters_later: true"],
        ),
        # a second entry
        (
            "  - {id: e, type: entry, step: 2, retailer: C}\n  - {id: again, type: entry, step: 5, retailer: C}\n",
            1,
            "events[1].retailer",
            ["C already entered on 2020-01-20 (step 2)", "one entry"],
        ),
        # a second entry after an exit is still a second entry
        (
            "  - {id: e, type: entry, step: 2, retailer: C}\n  - {id: x, type: exit, step: 3, retailer: C}\n"
            "  - {id: again, type: entry, step: 5, retailer: C}\n",
            2,
            "events[2].retailer",
            ["C already entered", "one entry"],
        ),
        # an acquisition of a retailer that left (an exit before it)
        (
            "  - {id: x, type: exit, step: 2, retailer: B}\n"
            "  - {id: buy, type: acquisition, step: 5, acquirer: A, target: B, retention: 0.5}\n",
            1,
            "events[1].target",
            ["B is not in the market on 2020-02-10 (step 5)", "it left the market on 2020-01-20 (step 2)"],
        ),
        # ... or an earlier acquisition without keep_brand
        (
            "  - {id: buy, type: acquisition, step: 2, acquirer: A, target: B, retention: 0.5}\n"
            "  - {id: again, type: acquisition, step: 5, acquirer: A, target: B, retention: 0.5}\n",
            1,
            "events[1].target",
            ["B is not in the market on 2020-02-10 (step 5)", "A bought it on 2020-01-20 (step 2)"],
        ),
        # an acquirer that has left
        (
            "  - {id: x, type: exit, step: 2, retailer: B}\n"
            "  - {id: buy, type: acquisition, step: 5, acquirer: B, target: A, retention: 0.5}\n",
            1,
            "events[1].acquirer",
            ["B is not in the market", "it left the market"],
        ),
        # an acquirer buying itself
        (
            "  - {id: buy, type: acquisition, step: 2, acquirer: A, target: A, retention: 0.5}\n",
            0,
            "events[0].target",
            ["A cannot buy itself", "another retailer"],
        ),
        # an event about a retailer after it left
        (
            "  - {id: x, type: exit, step: 2, retailer: B}\n  - {id: p, type: promotion, step: 5, retailer: B, utility: 0.3}\n",
            1,
            "events[1].retailer",
            ["B is not in the market on 2020-02-10 (step 5)", "it left the market"],
        ),
        # a second exit
        (
            "  - {id: x, type: exit, step: 2, retailer: B}\n  - {id: again, type: exit, step: 4, retailer: B}\n",
            1,
            "events[1].retailer",
            ["B is not in the market", "it left the market"],
        ),
        # an event about a retailer before it entered
        (
            "  - {id: p, type: price_change, step: 1, retailer: C, price_index: 0.9}\n"
            "  - {id: e, type: entry, step: 2, retailer: C}\n",
            0,
            "events[0].retailer",
            ["C is not in the market on 2020-01-13 (step 1)", "has not entered yet"],
        ),
        # an exit of a retailer that never entered
        ("  - {id: x, type: exit, step: 2, retailer: C}\n", 0, "events[0].retailer", ["has not entered yet"]),
        # an effect of an equity stake about a retailer that left: the effect's own field
        (
            "  - {id: x, type: exit, step: 2, retailer: B}\n"
            "  - {id: s, type: equity_stake, step: 4, investor: X, target: Y, stake: 0.1,\n"
            "     effects: [{type: promotion, retailer: A, utility: 0.1}, {type: promotion, retailer: B, utility: 0.2}]}\n",
            2,  # the effect's own line
            "events[1].effects[1].retailer",
            ["B is not in the market"],
        ),
        # a recurring effect longer than a year
        (
            "  - {id: p, type: promotion, date: 2020-11-11, retailer: A, utility: 0.3, every: year, days: 400}\n",
            0,
            "events[0].days",
            ["400 is out of range", "1 <= x <= 365"],
        ),
        # days without every
        (
            "  - {id: p, type: promotion, date: 2020-11-11, retailer: A, utility: 0.3, days: 3}\n",
            0,
            "events[0].days",
            ["days without every", "every: year"],
        ),
        # every without days
        (
            "  - {id: p, type: promotion, date: 2020-11-11, retailer: A, utility: 0.3, every: year}\n",
            0,
            "events[0]",
            ["without days", "days: N"],
        ),
        # every on a type that cannot recur
        (
            "  - {id: a, type: add_login, date: 2020-11-11, retailer: A, provider: qq, every: year, days: 3}\n",
            0,
            "events[0].every",
            ["an add_login cannot recur"],
        ),
        (
            "  - {id: r, type: remove_login, date: 2020-11-11, retailer: A, provider: qq, every: year, days: 3}\n",
            0,
            "events[0].every",
            ["a remove_login cannot recur", "promotion, price_change, attractiveness_change, shopping_rate"],
        ),
        (
            "  - {id: x, type: exit, date: 2020-11-11, retailer: B, every: year, days: 3}\n",
            0,
            "events[0].every",
            ["an exit cannot recur", "allowed: every on a temporary effect"],
        ),
        # an unknown recurrence
        (
            "  - {id: p, type: promotion, date: 2020-11-11, retailer: A, utility: 0.3, every: month, days: 3}\n",
            0,
            "events[0].every",
            ["'month'", "allowed: year"],
        ),
        # a recurring promotion with until
        (
            "  - {id: p, type: promotion, date: 2020-11-11, retailer: A, utility: 0.3, until: 2020-12-01, every: year, days: 3}\n",
            0,
            "events[0].until",
            ["recurring promotion", "without until"],
        ),
        # a recurring attractiveness change that builds up
        (
            "  - {id: a, type: attractiveness_change, date: 2020-11-11, retailer: A, utility: 0.3, over: 30, every: year, days: 3}\n",
            0,
            "events[0].over",
            ["does not build up", "without over"],
        ),
        # keep_brand not a boolean
        (
            "  - {id: buy, type: acquisition, step: 2, acquirer: A, target: B, retention: 0.5, keep_brand: maybe}\n",
            0,
            "events[0].keep_brand",
            ["expected true or false", "'maybe'"],
        ),
        (
            "  - {id: buy, type: acquisition, step: 2, acquirer: A, target: B, retention: 0.5, keep_brand: 1}\n",
            0,
            "events[0].keep_brand",
            ["expected true or false, got 1"],
        ),
    ],
)
def test_each_rule_gives_one_line(tmp_path, events, line, field, parts):
    msg = _error(tmp_path, HEAD + events)
    _check(msg, FIRST_EVENT_LINE + line, field, *parts)


@pytest.mark.parametrize(
    "old, new, field, parts",
    [
        (
            "initial_share: 0, enters_later",
            "initial_share: 0.1, enters_later",
            "retailers[2].initial_share",
            ["C enters later (enters_later: true)", "allowed: 0"],
        ),
        (
            "attractiveness: -0.8, initial_share: 0, enters_later",
            "attractiveness: calibrate, initial_share: 0, enters_later",
            "retailers[2].attractiveness",
            ["C enters later", "no observation before it enters can fit it", "allowed: a number"],
        ),
        (
            "initial_share: 0, enters_later",
            "trend: calibrate, initial_share: 0, enters_later",
            "retailers[2].trend",
            ["C enters later", "allowed: a number"],
        ),
        ("enters_later: true", "enters_later: later", "retailers[2].enters_later", ["expected true or false"]),
    ],
)
def test_a_retailer_that_enters_later(tmp_path, old, new, field, parts):
    text = HEAD.replace(old, new).replace(
        "initial_share: 0.4", "initial_share: 0.3" if "0.1" in new else "initial_share: 0.4"
    )
    msg = _error(tmp_path, text + "  - {id: e, type: entry, step: 2, retailer: C}\n")
    _check(msg, C_LINE, field, *parts)


def test_a_shopping_rate_factor_that_would_make_a_probability_above_1_is_refused():
    from marketsim.scenario.core import parse_text
    from tests.helpers import fit_market_yaml

    bad = "events:\n  - {id: rush, type: shopping_rate, date: 2012-11-11, factor: 3, every: year, days: 1}\n"
    with pytest.raises(ScenarioError) as e:
        parse_text(fit_market_yaml(bad))
    msg = str(e.value)
    assert "events[0].factor: factor 3 x consumers.shopping_rate 0.5 = 1.5" in msg and "at most 2" in msg, msg
    assert "\n" not in msg
    parse_text(fit_market_yaml(bad.replace("factor: 3", "factor: 2")))  # exactly 1: allowed
