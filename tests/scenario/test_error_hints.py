"""Errors that say how to fix: a name the file does not declare, a percent written where a
fraction of 1 goes, and a field inside a list. Each is one line on stderr, exit 2, at the file and line of the
offending field (its path as that file writes it), saying what to write instead."""

import pytest

from marketsim.cli import main
from marketsim.scenario import schema as S
from marketsim.scenario.fieldspec import Block, Field, ListOf, MapOf, Variants

#: A small self-contained scenario: its fields' lines are found by their text (:func:`_line`).
MARKET = """schema: marketsim/v2
name: hints
description: a market for error messages
seed: 1
calendar:
  start: 2013-01-06
  step_days: 7
  steps: 20
market:
  size: 1000000
  currency: RMB
consumers:
  count: 500
  shopping_rate: 0.2
  conversion: 0.6
  basket: {mean: 100, sigma: 0.5}
providers:
  weibo:
    penetration: 0.2
  qq: {penetration: 0.9}
retailers:
  - name: Tmall
    kind: platform
    take_rate: 0.05
    attractiveness: 0.5
    initial_share: 0.6
    logins: [qq]
  - name: JD
    kind: direct
    margin: 0.1
    attractiveness: 0.2
    initial_share: 0.4
    logins: [qq, weibo]
    sso_share:
      weibo: 0.05
      qq: 0.1
events:
  - id: drop
    type: remove_login
    date: 2013-02-03
    retailer: JD
    provider: weibo
  - id: stake
    type: equity_stake
    date: 2013-03-03
    investor: Alibaba
    target: weibo
    stake: 0.18
    effects:
      - type: social_boost
        layer: weibo
        retailer: Tmall
        factor: 1.5
      - type: promotion
        retailer: Tmall
        audience: weibo
        utility: 0.1
"""


def _line(text: str, needle: str, after: str = "") -> int:
    """The 1-based line of the first ``needle`` after the first ``after``."""
    start = text.index(after) if after else 0
    return text[: text.index(needle, start)].count("\n") + 1


def _error(capsys, path=None, *args: str) -> str:
    """The one error line of ``marketsim validate PATH`` (or of the command ``args``), which must exit 2."""
    rc = main(list(args) if args else ["validate", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marketsim: error: ") and "Traceback" not in err, err
    return lines[0]


def _file(tmp_path, old: str, new: str, after: str = "", name: str = "m.yaml"):
    """MARKET with the first ``old`` after ``after`` replaced by ``new``; (path, text)."""
    at = MARKET.index(old, MARKET.index(after) if after else 0)
    text = MARKET[:at] + new + MARKET[at + len(old) :]
    p = tmp_path / name
    p.write_text(text)
    return p, text


# --------------------------------------------------------------------------- a name the file does not declare


@pytest.mark.parametrize(
    "old,new,after,field,unknown",
    [
        ("logins: [qq, weibo]", "logins: [qq, wechat]", "", "retailers[1].logins[1]", "provider"),
        ("      qq: 0.1", "      wechat: 0.1", "sso_share", "retailers[1].sso_share.wechat", "provider"),
        ("provider: weibo", "provider: wechat", "id: drop", "events[0].provider", "provider"),
        ("layer: weibo", "layer: wechat", "", "events[1].effects[0].layer", "provider"),
        ("audience: weibo", "audience: wechat", "", "events[1].effects[1].audience", "audience"),
    ],
)
def test_an_undeclared_provider_says_where_providers_are_declared_and_how(
    tmp_path, capsys, old, new, after, field, unknown
):
    path, text = _file(tmp_path, old, new, after)
    msg = _error(capsys, path)
    assert f"{path}:{_line(text, new, after)}: {field}: unknown {unknown} 'wechat'; allowed: weibo, qq" in msg, msg
    # where they are declared, and the shortest declaration (the format's required fields)
    assert f"providers are declared under `providers:` at line {_line(text, 'providers:')}" in msg, msg
    assert "to use wechat, add `wechat: {penetration: 0.1}` there (its numbers are placeholders)" in msg, msg


def test_an_undeclared_provider_in_a_file_over_a_base_is_declared_in_that_file(tmp_path, capsys):
    """The base declares the providers; the user's file names one it does not: declare it in the user's file
    (mappings merge key by key, so the base's providers stay)."""
    (tmp_path / "base.yaml").write_text(MARKET)
    top = tmp_path / "top.yaml"
    top.write_text(
        "schema: marketsim/v2\nbase: base.yaml\nname: top\nevents:\n"
        "  - id: link\n    type: add_login\n    date: 2013-04-07\n    retailer: Tmall\n    provider: wechat\n"
    )
    msg = _error(capsys, top)
    assert f"{top}:9: events[0].provider: unknown provider 'wechat'" in msg, msg
    assert f"declared under `providers:` at {tmp_path / 'base.yaml'}:{_line(MARKET, 'providers:')}" in msg, msg
    assert "declare it in this file as `providers: {wechat: {penetration: 0.1}}`" in msg, msg
    assert "the base's providers stay" in msg, msg


def test_an_undeclared_retailer_says_how_to_add_one_and_the_rule_it_must_keep(tmp_path, capsys):
    path, text = _file(tmp_path, "retailer: Tmall", "retailer: Suning", "type: social_boost")
    msg = _error(capsys, path)
    line = _line(text, "retailer: Suning")
    assert f"{path}:{line}: events[1].effects[0].retailer: unknown retailer 'Suning'; allowed: Tmall, JD" in msg, msg
    assert f"retailers are declared under `retailers:` at line {_line(text, 'retailers:')}" in msg, msg
    assert "add `- {name: Suning, kind: platform, initial_share: 0.1}` there" in msg, msg
    assert "lower the others' initial_share so that all still sum to 1" in msg, msg


def test_a_login_share_of_a_provider_the_retailer_does_not_accept_says_how_to_accept_it(tmp_path, capsys):
    path, text = _file(tmp_path, "logins: [qq, weibo]", "logins: [qq]")
    msg = _error(capsys, path)
    line = _line(text, "weibo: 0.05")
    assert f"{path}:{line}: retailers[1].sso_share.weibo: JD does not accept weibo login" in msg, msg
    assert f"or add weibo to its logins at line {_line(text, 'logins: [qq]', 'name: JD')}: logins: [qq, weibo]" in msg


def test_an_unknown_event_id_lists_the_ids_and_where_they_are(tmp_path, capsys):
    """--baseline-without names the option (not the scenario's `events:` line) and the ids with their place;
    `remove: true` of an id the base lacks is reported at that item's id, not at the list."""
    path, text = _file(tmp_path, "seed: 1", "seed: 1")
    msg = _error(capsys, None, "project", str(path), "--baseline-without", "stak")
    assert msg.startswith("marketsim: error: --baseline-without: unknown event 'stak' (did you mean 'stake'?)"), msg
    assert f"allowed: the ids of hints's events: drop, stake (listed under events: at {path}:" in msg, msg

    (tmp_path / "base.yaml").write_text(MARKET)
    top = tmp_path / "top.yaml"
    top.write_text(
        "schema: marketsim/v2\nbase: base.yaml\nname: top\nretailers:\n  - {name: JD, margin: 0.2}\n"
        "events:\n  - {id: drop, provider: qq}\n  - id: stak\n    remove: true\n"
    )
    msg = _error(capsys, top)
    assert f"{top}:8: events[1].id: 'remove: true' names id 'stak', which the base does not have" in msg, msg
    assert "(did you mean 'stake'?); allowed: its ids: drop, stake (listed under events: at " in msg, msg


# --------------------------------------------------------------------------- a percent where a fraction goes


@pytest.mark.parametrize(
    "old,new,after,field,fix",
    [
        ("stake: 0.18", "stake: 15%", "", "events[1].stake", "write 0.15 (a fraction of 1: 15% = 0.15)"),
        ("stake: 0.18", "stake: 15 %", "", "events[1].stake", "write 0.15"),
        (
            "stake: 0.18",
            "stake: 15",
            "",
            "events[1].stake",
            "allowed: 0 < x <= 1; it is a fraction of 1: for 15% write 0.15",
        ),
        ("penetration: 0.2", "penetration: 21%", "", "providers.weibo.penetration", "write 0.21"),
        ("shopping_rate: 0.2", "shopping_rate: 20", "", "consumers.shopping_rate", "for 20% write 0.2"),
        ("conversion: 0.6", "conversion: 60%", "", "consumers.conversion", "write 0.6"),
        ("take_rate: 0.05", "take_rate: 5%", "", "retailers[0].take_rate", "write 0.05"),
        ("margin: 0.1", "margin: 10", "", "retailers[1].margin", "for 10% write 0.1"),
        ("weibo: 0.05", "weibo: 5%", "sso_share", "retailers[1].sso_share.weibo", "write 0.05"),
        (
            "weibo: 0.05",
            "weibo: {value: 0.05, range: [2, 15], assumption: a guess}",
            "sso_share",
            "retailers[1].sso_share.weibo.range[0]",
            "for 2% write 0.02",
        ),
        ("initial_share: 0.6", "initial_share: '60'", "", "retailers[0].initial_share", "for 60% write 0.6"),
    ],
)
def test_a_percent_where_a_fraction_goes_says_what_to_write(tmp_path, capsys, old, new, after, field, fix):
    """Every field whose allowed range lies within [0, 1] (the format's constraint, not a list of fields) takes
    a fraction: 15%, '15 %', 15 or '15' there is answered with 'write 0.15', at the field's own line."""
    path, text = _file(tmp_path, old, new, after)
    msg = _error(capsys, path)
    assert f"{path}:{_line(text, new, after)}: {field}: " in msg and fix in msg, msg


def test_every_field_of_the_formats_whose_range_lies_in_0_1_is_a_fraction():
    """The hint comes from the field's constraint: every share, probability and stake of the scenario format has
    it, and nothing else does (a factor of up to 100 or a utility takes no 'write 0.15')."""
    found: dict[str, bool] = {}

    def walk(n, p):
        if isinstance(n, Field) and n.type in ("number", "integer"):
            found[p] = n.fraction
        elif isinstance(n, Block):
            for f in n.fields:
                walk(f, f"{p}.{f.key}")
        elif isinstance(n, MapOf):
            walk(n.value, f"{p}.*")
        elif isinstance(n, ListOf):
            walk(n.item, f"{p}[]")
        elif isinstance(n, Variants):
            for t in n.variants:
                walk(n.block(t), f"{p}<{t}>")

    walk(S.SCENARIO, "")
    fractions = {p for p, f in found.items() if f}
    for p in (
        ".consumers.shopping_rate",
        ".consumers.conversion",
        ".consumers.turnover",
        ".providers.*.penetration",
        ".retailers[].take_rate",
        ".retailers[].margin",
        ".retailers[].initial_share",
        ".retailers[].sso_share.*",
        ".events[]<equity_stake>.stake",
        ".events[]<acquisition>.retention",
        ".observations[].shares.*",
    ):
        assert p in fractions, p
    assert not any(k in p for p in fractions for k in ("factor", "utility", "friction", "beta_", "weight", "size"))


# --------------------------------------------------------------------------- a field inside a list


def test_a_field_inside_a_list_of_a_file_over_a_base_is_named_as_that_file_writes_it(tmp_path, capsys):
    """The merged scenario's events[1] (the base's second event) is the user's events[0]: the error names the
    field as the user's file writes it, at the field's own line (not the `events:` line, not the merged index)."""
    (tmp_path / "base.yaml").write_text(MARKET)
    top = tmp_path / "top.yaml"
    top.write_text(
        "schema: marketsim/v2\nbase: base.yaml\nname: top\nevents:\n  - id: stake\n    date: 2013-03-10\n"
        "    amount_usd: -5\n"
    )
    msg = _error(capsys, top)
    assert f"{top}:7: events[0].amount_usd: -5 is out of range" in msg, msg
    top.write_text(top.read_text().replace("amount_usd: -5", "stake: 15%"))
    msg = _error(capsys, top)
    assert f"{top}:7: events[0].stake: expected a number, got string '15%'; write 0.15" in msg, msg
    # an effect's field in the base stays the base's, at its line, by its path there
    top.write_text(top.read_text().replace("stake: 15%", "stake: 0.15"))
    (tmp_path / "base.yaml").write_text(MARKET.replace("factor: 1.5", "factor: -1"))
    msg = _error(capsys, top)
    line = _line(MARKET, "factor: 1.5")
    assert f"{tmp_path / 'base.yaml'}:{line}: events[1].effects[0].factor: -1 is out of range" in msg, msg


def test_shares_that_do_not_sum_to_one_point_at_a_field_and_list_each_line(tmp_path, capsys):
    path, text = _file(tmp_path, "initial_share: 0.4", "initial_share: 0.3")
    msg = _error(capsys, path)
    first, second = _line(text, "initial_share: 0.6"), _line(text, "initial_share: 0.3")
    assert f"{path}:{second}: retailers[1].initial_share: initial_share values sum to 0.9 " in msg, msg
    assert f"(Tmall 0.6 at line {first}, JD 0.3 at line {second}); they must sum to 1: add 0.1 to them" in msg, msg


def test_a_set_path_naming_an_unknown_item_lists_the_items_and_where_they_are(tmp_path, capsys):
    path, text = _file(tmp_path, "seed: 1", "seed: 1")
    msg = _error(capsys, None, "validate", str(path), "--set", "retailers.JDD.margin=0.2")
    assert "retailers.JDD: no item named 'JDD' (did you mean 'JD'?); items: Tmall, JD" in msg, msg
    assert f"(listed under retailers: at {path}:{_line(text, 'retailers:')})" in msg, msg
