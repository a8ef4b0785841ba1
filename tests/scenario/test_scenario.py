"""Scenario files: every bundled file validates; every kind of bad input gets one clear line."""

import pytest

from marketsim.scenario.core import ScenarioError, load_scenario, parse_text
from tests.helpers import BUNDLED, SCENARIOS


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_scenarios_validate(path):
    sc = load_scenario(path)
    assert abs(sum(r.initial_share for r in sc.retailers) - 1) < 1e-9
    assert sc.digest() == load_scenario(path).digest()


def _write(tmp_path, text, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _base_ref(tmp_path, body):
    """A scenario starting from the bundled baseline, overriding with ``body``."""
    return _write(tmp_path, f"schema: marketsim/v1\nbase: {SCENARIOS / 'baseline_2013q2.yaml'}\nname: bad\n{body}")


def _error(path) -> str:
    with pytest.raises(ScenarioError) as ei:
        load_scenario(path)
    msg = str(ei.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def test_unknown_key_did_you_mean(tmp_path):
    msg = _error(_base_ref(tmp_path, "consumer:\n  count: 5\n"))
    assert "bad.yaml:4: consumer: unknown key 'consumer'" in msg and "did you mean 'consumers'" in msg


def test_unknown_nested_key(tmp_path):
    msg = _error(_base_ref(tmp_path, "friction:\n  creat: 2\n"))
    assert "bad.yaml:5: friction.creat" in msg and "did you mean 'create'" in msg and "allowed:" in msg


def test_wrong_type(tmp_path):
    msg = _error(_base_ref(tmp_path, "consumers:\n  shopping_rate: often\n"))
    assert "consumers.shopping_rate" in msg and "expected a number" in msg and "bad.yaml:5" in msg


def test_number_out_of_range(tmp_path):
    msg = _error(_base_ref(tmp_path, "consumers:\n  shopping_rate: 1.5\n"))
    assert "consumers.shopping_rate: 1.5 is out of range; allowed: 0 < x <= 1" in msg


def test_absurd_size(tmp_path):
    msg = _error(_base_ref(tmp_path, "consumers:\n  count: 1000000000000\n"))
    assert "consumers.count" in msg and "out of range" in msg and "1e+07" in msg


def test_shares_must_sum_to_one(tmp_path):
    # retailers merge into the base's by name: Other's share drops by 0.1, so the three sum to 0.9
    body = "retailers:\n  - {name: Other, initial_share: 0.156}\n"
    msg = _error(_base_ref(tmp_path, body))
    # at the field this file gives (its own retailers[0]), each value named with its line
    assert "bad.yaml:5: retailers[0].initial_share: initial_share values sum to 0.9 (Tmall 0.521 at " in msg, msg
    assert "Other 0.156 at line 5); they must sum to 1: add 0.1 to them" in msg, msg


def test_login_names_unknown_provider(tmp_path):
    text = (
        (SCENARIOS / "baseline_2013q2.yaml")
        .read_text()
        .replace("logins: [qq, sohu, weibo]", "logins: [wechat, sohu, weibo]")
    )
    msg = _error(_write(tmp_path, text))
    assert "retailers[1].logins[0]: unknown provider 'wechat'; allowed: weibo, qq, sohu, taobao" in msg
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "wechat" in ln)
    assert f"bad.yaml:{line}:" in msg


def test_sso_share_for_provider_not_accepted(tmp_path):
    text = (SCENARIOS / "baseline_2013q2.yaml").read_text().replace("sso_share: {taobao: 1.0}", "sso_share: {qq: 0.5}")
    msg = _error(_write(tmp_path, text))
    assert "retailers[0].sso_share.qq" in msg and "does not accept qq" in msg


def test_event_for_unknown_retailer(tmp_path):
    msg = _error(
        _base_ref(tmp_path, "events:\n  - {type: remove_login, date: 2013-05-01, retailer: Amazon, provider: weibo}\n")
    )
    assert "events[0].retailer: unknown retailer 'Amazon'; allowed: Tmall, JD, Other" in msg


def test_event_before_start(tmp_path):
    msg = _error(
        _base_ref(tmp_path, "events:\n  - {type: add_login, date: 2011-12-31, retailer: JD, provider: taobao}\n")
    )
    assert "events[0].date: 2011-12-31 is before the scenario starts (2012-01-01)" in msg


def test_event_needs_date_or_step(tmp_path):
    msg = _error(_base_ref(tmp_path, "events:\n  - {type: add_login, retailer: JD, provider: taobao}\n"))
    assert "exactly one of 'date'" in msg


def test_unknown_event_type(tmp_path):
    msg = _error(_base_ref(tmp_path, "events:\n  - {type: remove_logon, step: 3, retailer: JD, provider: weibo}\n"))
    assert "events[0].type" in msg and "did you mean 'remove_login'" in msg


def test_bad_yaml_syntax_has_line(tmp_path):
    msg = _error(_write(tmp_path, "schema: marketsim/v1\nname: [x\n"))
    assert "bad.yaml:" in msg and "not valid YAML" in msg


def test_unsupported_schema(tmp_path):
    text = (SCENARIOS / "baseline_2013q2.yaml").read_text().replace("schema: marketsim/v2", "schema: marketsim/v9")
    msg = _error(_write(tmp_path, text))
    assert "unsupported schema 'marketsim/v9'; allowed: marketsim/v1, marketsim/v2" in msg


def test_missing_required_key(tmp_path):
    msg = _error(_write(tmp_path, "schema: marketsim/v1\nname: x\n"))
    assert "missing required key 'calendar'" in msg


def test_duplicate_retailer(tmp_path):
    text = (SCENARIOS / "baseline_2013q2.yaml").read_text().replace("  - name: Other", "  - name: JD")
    msg = _error(_write(tmp_path, text))
    assert "retailers[2].name: duplicate retailer name 'JD'" in msg


def test_duplicate_in_one_file_over_a_base_is_not_merged_away(tmp_path):
    """Items merge into the base's by name or id, but two items of one file with the same name stay two."""
    body = (
        "retailers:\n  - {name: A, kind: direct, initial_share: 0.5}\n  - {name: A, kind: direct, initial_share: 0.5}\n"
    )
    assert "retailers[1].name: duplicate retailer name 'A'" in _error(_base_ref(tmp_path, body))  # this file's path
    body = (
        "events:\n  - {id: x, type: add_login, date: 2013-02-01, retailer: JD, provider: taobao}\n"
        "  - {id: x, type: add_login, date: 2013-03-01, retailer: JD, provider: taobao}\n"
    )
    assert "duplicate event id 'x'" in _error(_base_ref(tmp_path, body))


def test_odd_watts_strogatz_k(tmp_path):
    msg = _error(_base_ref(tmp_path, "providers:\n  qq:\n    network: {model: watts_strogatz, k: 5, rewire: 0.1}\n"))
    assert "providers.qq.network.k: 5 is odd" in msg


def test_base_cycle_and_missing_base(tmp_path):
    _write(tmp_path, "schema: marketsim/v1\nbase: b.yaml\nname: a\n", "a.yaml")
    _write(tmp_path, "schema: marketsim/v1\nbase: a.yaml\nname: b\n", "b.yaml")
    assert "cycle" in _error(tmp_path / "a.yaml")
    msg = _error(_write(tmp_path, "schema: marketsim/v1\nbase: nowhere.yaml\nname: c\n", "c.yaml"))
    assert "c.yaml:2: base: base scenario 'nowhere.yaml' not found" in msg


def test_missing_file():
    assert "no such file" in _error("does/not/exist.yaml")


def test_calibrate_needs_conversion():
    text = (SCENARIOS / "baseline_2013q2.yaml").read_text().replace("  conversion: 0.6", "  # no conversion")
    with pytest.raises(ScenarioError, match="missing required key 'conversion'"):
        parse_text(text)


def test_with_values_and_without_events():
    sc = load_scenario(SCENARIOS / "battle_lines_2013.yaml")
    s2 = sc.with_values(
        {"retailers.JD.sso_share.weibo": 0.1, "events.jd_drops_weibo.migration_cost": 0.9, "friction.create": 2.5}
    )
    assert dict(s2.retailers[1].sso_share)["weibo"] == 0.1
    assert [e for e in s2.events if e.id == "jd_drops_weibo"][0].action.migration_cost == 0.9
    assert s2.friction.create == 2.5 and s2.digest() != sc.digest()
    with pytest.raises(ScenarioError, match="out of range"):
        sc.with_values({"friction.create": -1})
    base = sc.without_events()
    assert base.events == () and base.retailers == sc.retailers
    part = sc.without_events(["jd_drops_weibo"])
    assert [e.id for e in part.events] == ["alibaba_buys_weibo_stake", "weibo_taobao_linking"]
    with pytest.raises(ScenarioError, match="unknown event 'jd_drop'.*did you mean 'jd_drops_weibo'"):
        sc.without_events(["jd_drop"])


def test_event_dates_to_steps():
    sc = load_scenario(SCENARIOS / "battle_lines_2013.yaml")
    steps = {e.id: e.step for e in sc.events}
    # 2012-01-01 + 7 * 90 days = 2013-09-22: the week containing 2013-09-25
    assert steps == {"alibaba_buys_weibo_stake": 69, "weibo_taobao_linking": 83, "jd_drops_weibo": 90}
    assert sc.calibration_window == 69
    eq = sc.events[0].action
    assert eq.stake == 0.18 and eq.amount_usd == 586e6 and [a.type for a in eq.effects] == ["social_boost", "promotion"]


def test_recurring_effects_do_not_end_the_calibration_window(tmp_path):
    """docs/model.md section 7: a yearly sale is part of the market, not a move to evaluate. The window before the
    first one-off event, the default fit cut-off and the target_share shorthand's period all ignore it (the
    shorthand's period ended the day before the sale's first firing)."""
    p = _write(
        tmp_path,
        f"schema: marketsim/v2\nbase: {SCENARIOS / 'tiny.yaml'}\nname: sale\nevents:\n"
        "  - {id: sale, type: promotion, retailer: JD, utility: 1, date: 2013-01-20, every: year, days: 1}\n",
    )
    sc = load_scenario(p)
    assert [e.id for e in sc.events] == ["sale", "jd_drops_weibo"]  # the sale (step 2) comes first
    assert sc.first_event_step == sc.calibration_window == 8  # jd_drops_weibo, 2013-03-04
    assert str(sc.fit_cutoff()) == "2013-03-04"
    (obs,) = sc.observations
    assert obs.source == "target_share" and str(obs.end) == "2013-03-03"
