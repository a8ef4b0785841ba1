"""No silent wrong answers, nothing written outside its folder: ``--compare`` options keep what they
say (a draw sets a parameter only where the option declares it uncertain), options of another market are
refused, non-finite numbers are refused, every result records the settings that made it and results of other
settings are kept apart, and no name built from user text leaves the results folder or collides with another.

A small market with given attractiveness (nothing to fit) keeps the command-line tests to a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.cli.project import projection_label
from marketsim.errors import UserError
from marketsim.experiments.tasks import with_draw
from marketsim.experiments.uncertainty import prior_draws
from marketsim.scenario.core import parse_text

MIGRATION = "{value: 0.5, range: [0.2, 1.5], assumption: test}"


def market(name="mkt", migration=MIGRATION, event_id="drop", extra_events="", start="2020-01-06", n=600):
    """A two-retailer market (attractiveness given: nothing to fit) where B drops Weibo login at step 2, with
    ``migration`` as the event's migration cost, and an uncertain social weight."""
    return f"""
schema: marketsim/v2
name: {name}
seed: 11
calendar: {{start: {start}, steps: 6, warmup: 0}}
market: {{size: 1000000}}
consumers: {{count: {n}, shopping_rate: 0.6, basket: {{mean: 100, sigma: 0.0}}}}
providers:
  weibo: {{penetration: 0.6, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.9, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: -1.0, initial_share: 0.5, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: -0.5, initial_share: 0.5, logins: [qq, weibo],
      sso_share: {{weibo: 0.6, qq: 0.2}}}}
behaviour: {{beta_price: 2.0, beta_social: {{value: 0.5, range: [0.2, 1.0], assumption: test}}, beta_habit: 1.0,
            beta_friction: 1.0}}
friction: {{native: 0.2, sso: 0.0, link: 0.3, create: 3.0}}
events:
  - {{id: {json.dumps(event_id)}, type: remove_login, step: 2, retailer: B, provider: weibo, migration_cost: {migration}}}
{extra_events}"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def run(*args) -> int:
    try:
        return main([str(a) for a in args])
    except SystemExit as e:  # argparse refuses a value
        return int(e.code)


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# --------------------------------------------------------------------------- wrong answers (critical)


def test_an_option_without_the_offer_keeps_it_out_and_identical_options_are_named(tmp_path, monkeypatch, capsys):
    """The JD case in small: the scenario's migration cost is uncertain; the option drops the offer
    (``migration_cost: null``). Before, every draw wrote the cost back into the option, so "no offer" equalled
    "offer" (+0.00 [+0.00, +0.00]) without a word. Now the option keeps no offer; an option that really is the
    same as the scenario is named in a warning (stderr, projection.json, report.md)."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "offer", market())
    write(
        tmp_path,
        "nooffer",
        "schema: marketsim/v2\nbase: offer.yaml\nname: nooffer\nevents:\n  - {id: drop, migration_cost: null}\n",
    )
    write(tmp_path, "same", "schema: marketsim/v2\nbase: offer.yaml\nname: same\n")
    assert (
        run(
            "project",
            "offer.yaml",
            "--compare",
            "nooffer.yaml",
            "same.yaml",
            "--draws",
            3,
            "--replicates",
            2,
            "--workers",
            1,
            "--out",
            "p",
        )
        == 0
    )
    err = capsys.readouterr().err
    doc = json.loads((tmp_path / "p" / "projection.json").read_text())
    diff = doc["compare"]["nooffer - mkt"]["B"]
    assert diff["ci95"] != [0.0, 0.0] and diff["mean"] < 0, "without the offer B keeps fewer Weibo customers"
    assert doc["warnings"] == [
        "options mkt and same gave identical results in every draw and replicate: check that "
        "they differ (a draw sets a parameter only where an option declares it uncertain)"
    ]
    assert "warning: options mkt and same gave identical results" in " ".join(err.split())
    assert "identical results in every draw" in (tmp_path / "p" / "report.md").read_text()


def test_an_option_with_its_own_range_for_a_shared_path_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "offer", market())
    write(tmp_path, "wide", market("wide", "{value: 0.5, range: [0.1, 3.0], assumption: wider}"))
    write(
        tmp_path,
        "extra",
        market(
            "extra",
            extra_events="  - {id: promo, type: promotion, step: 3, retailer: A, "
            "utility: {value: 0.2, range: [0.0, 0.4], assumption: test}}\n",
        ),
    )
    assert run("project", "offer.yaml", "--compare", "wide.yaml", "--draws", 2, "--replicates", 2, "--out", "p") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "events.drop.migration_cost" in err and "range 0.1 .. 3" in err
    assert run("project", "offer.yaml", "--compare", "extra.yaml", "--draws", 2, "--replicates", 2, "--out", "p") == 2
    err = capsys.readouterr().err.strip()
    assert "option extra: events.promo.utility is uncertain there" in err and "not in mkt" in err
    assert not (tmp_path / "p").exists()


KINDS = ("same", "plain", "null", "absent", "wider", "shifted")


def test_property_a_draw_never_overrides_what_an_option_says(tmp_path):
    """Random option files over a scenario with an uncertain migration cost: each option keeps its own plain
    number, its no-offer or its missing event in every draw; an option that declares the same prior takes the
    draw; an option that declares another prior is refused. So no option silently equals another."""
    main_sc = parse_text(market())
    draws = prior_draws(main_sc, 5, seed=1)
    path = "events.drop.migration_cost"
    rng = np.random.default_rng(17)
    cases = []
    for case in range(40):
        kind = KINDS[rng.integers(len(KINDS))]
        plain = float(np.round(rng.uniform(0.0, 3.0), 3))
        migration = {
            "same": MIGRATION,
            "plain": plain,
            "null": "null",
            "absent": None,
            "wider": "{value: 0.5, range: [0.2, 2.5], assumption: t}",
            "shifted": "{value: 0.7, range: [0.2, 1.5], assumption: t}",
        }[kind]
        text = (
            market(f"o{case}", migration)
            if migration is not None
            else market(f"o{case}", MIGRATION).split("events:")[0] + "events: []\n"
        )
        opt = parse_text(text)
        cases.append((kind, opt, {"mkt": main_sc, f"o{case}": opt}))
        if kind in ("wider", "shifted"):
            continue
        for values in draws.values:
            got = with_draw(opt, values)
            assert got.behaviour.beta_social == pytest.approx(values["behaviour.beta_social"])
            cost = [e.action.migration_cost for e in got.events]
            want = {
                "same": [pytest.approx(values[path])],
                "plain": [pytest.approx(plain)],
                "null": [None],
                "absent": [],
            }[kind]
            assert cost == want, (kind, cost)
    from marketsim.experiments.projection import check_shared_draws

    for kind, _, options in cases:
        if kind in ("wider", "shifted"):
            with pytest.raises(UserError, match=path):
                check_shared_draws(options, draws.params)
        else:
            check_shared_draws(options, draws.params)


# --------------------------------------------------------------------------- another market


def test_compare_with_another_market_is_refused_naming_what_differs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "offer", market())
    write(tmp_path, "later", market("later", start="2021-03-01"))
    write(
        tmp_path,
        "three",
        market("three")
        .replace("logins: [qq, weibo],", "logins: [qq, weibo],", 1)
        .replace(
            "retailers:\n",
            "retailers:\n  - {name: C, kind: direct, margin: 0.1, attractiveness: -2, initial_share: 0.1, "
            "logins: []}\n",
            1,
        )
        .replace("initial_share: 0.5, logins: [qq]}", "initial_share: 0.4, logins: [qq]}"),
    )
    assert run("project", "offer.yaml", "--compare", "later.yaml", "--draws", 1, "--replicates", 2, "--out", "p") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "later.yaml: another market than offer.yaml" in err
    assert "calendar" in err and "2020-01-06" in err and "2021-03-01" in err
    assert run("project", "offer.yaml", "--compare", "three.yaml", "--draws", 1, "--replicates", 2, "--out", "p") == 2
    err = capsys.readouterr().err.strip()
    assert "retailers: " in err and '["A", "B"]' in err and '["C", "A", "B"]' in err
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_non_finite_threshold_is_refused(tmp_path, monkeypatch, capsys, value):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "offer", market())
    assert run("project", "offer.yaml", "--draws", 1, "--replicates", 2, f"--threshold={value}", "--out", "p") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"argument --threshold: expected a finite number, got {value}")
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- settings recorded, results kept apart


def test_settings_are_recorded_and_other_settings_never_replace_a_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "offer", market())
    assert run("run", "offer.yaml", "--json") == 0
    assert run("run", "offer.yaml", "--json", "--steps", 4) == 0
    assert run("run", "offer.yaml", "--json", "--set", "behaviour.beta_habit=0.5", "--steps", 4) == 0
    capsys.readouterr()
    runs = sorted(p.name for p in (tmp_path / "results").iterdir() if (p / "summary.json").is_file())
    assert runs[0] == "mkt" and runs[1] == "mkt--steps4" and runs[2].startswith("mkt--steps4-set-") and len(runs) == 3
    s = json.loads((tmp_path / "results" / runs[2] / "summary.json").read_text())
    assert s["settings"]["set"] == {"behaviour.beta_habit": "0.5"} and s["settings"]["steps"] == 4
    assert s["settings"]["scenario_file"] == "offer.yaml" and len(s["settings"]["scenario_file_hash"]) == 64
    assert json.loads((tmp_path / "results" / "mkt" / "summary.json").read_text())["settings"]["scenario_file"]
    # the projection: its settings in projection.json, report.md and the folder name
    assert (
        run(
            "project",
            "offer.yaml",
            "--draws",
            2,
            "--replicates",
            2,
            "--set",
            "behaviour.beta_habit=0.5",
            "--workers",
            1,
        )
        == 0
    )
    out = capsys.readouterr()
    (proj,) = (tmp_path / "results" / "mkt").glob("projection-*")
    assert proj.name.startswith("projection-vs-no-events--draws2-replicates2-set-")
    doc = json.loads((proj / "projection.json").read_text())
    assert doc["settings"]["set"] == {"behaviour.beta_habit": "0.5"} and doc["settings"]["draws"] == 2
    assert "--set behaviour.beta_habit=0.5" in (proj / "report.md").read_text()
    assert "--set behaviour.beta_habit=0.5" in " ".join(out.out.split())
    # an explicit --out holding a result of other settings is refused, naming them; the same settings replace it
    assert run("run", "offer.yaml", "--steps", 4, "--out", "o") == 0
    before = (tmp_path / "o" / "summary.json").read_text()
    assert run("run", "offer.yaml", "--steps", 5, "--out", "o") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == (
        "marketsim: error: o: holds a result made with other settings (steps 4 -> 5); "
        "choose another --out or remove the folder"
    )
    assert (tmp_path / "o" / "summary.json").read_text() == before
    assert run("run", "offer.yaml", "--steps", 4, "--out", "o") == 0


# --------------------------------------------------------------------------- paths (critical)


def test_a_crafted_event_id_stays_inside_the_results_folder(tmp_path, monkeypatch, capsys):
    """``--baseline-without 'x/../../../tmp/escaped'`` wrote a result set outside the results folder. An id with
    ``.`` is now refused at its line; one with ``/``, ``\\`` and ``~`` becomes one checked name inside the folder."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "dots", market(event_id="x/../../../escaped", migration=0.5))
    before = all_files(tmp_path)
    assert (
        run(
            "project",
            "dots.yaml",
            "--baseline-without",
            "x/../../../escaped",
            "--draws",
            1,
            "--replicates",
            2,
            "--workers",
            1,
        )
        == 2
    )
    assert "events[0].id: event id 'x/../../../escaped' contains '.'" in capsys.readouterr().err
    assert all_files(tmp_path) == before
    evil = "x//~/\\escaped"
    write(tmp_path, "evil", market(event_id=evil, migration=0.5))
    before = all_files(tmp_path)
    assert run("project", "evil.yaml", "--baseline-without", evil, "--draws", 1, "--replicates", 2, "--workers", 1) == 0
    results = tmp_path / "results"
    outside = {p for p in all_files(tmp_path) if p != results and results not in p.parents} - before
    assert outside == set(), outside
    (proj,) = (tmp_path / "results" / "mkt").iterdir()
    assert proj.name.startswith("projection-vs-without-x-escaped-") and (proj / "projection.json").is_file()
    assert "/" not in proj.name and "\\" not in proj.name and "~" not in proj.name


ALPHABET = list("ab-_./\\ .:~%$Ä\n") + ["..", "options", "calibration", "index.md", "A"]


def test_property_names_from_user_text_are_safe_and_never_collide(tmp_path):
    """Random event ids, option names and scenario names: every folder name is one path part inside the results
    folder, and different inputs give different names (``b-c`` vs ``b`` + ``c``, ``x`` vs ``X``)."""
    rng = np.random.default_rng(3)
    labels: dict[str, tuple] = {}
    for _ in range(2000):  # what cmd_project names its folder by
        ids = (
            None
            if rng.random() < 0.2
            else sorted(
                {"".join(ALPHABET[i] for i in rng.integers(len(ALPHABET), size=3)) for _ in range(rng.integers(1, 3))}
            )
        )
        options = ["main"] + [
            "".join(ALPHABET[i] for i in rng.integers(len(ALPHABET), size=3)) for _ in range(rng.integers(0, 3))
        ]
        label = projection_label(ids, options)
        assert "/" not in label and "\\" not in label and "\n" not in label, label
        key = (tuple(ids or ()), tuple(options[1:]))
        assert labels.setdefault(label, key) == key, f"{label}: {key} and {labels[label]}"
    from marketsim.io.names import inside, part, scenario_folder, settings_suffix

    def text():
        return "".join(ALPHABET[i] for i in rng.integers(len(ALPHABET), size=rng.integers(1, 8)))

    seen: dict[str, tuple] = {}
    scenarios: dict[str, str] = {}
    for _ in range(3000):
        ids = None if rng.random() < 0.2 else sorted({text() for _ in range(rng.integers(1, 3))})
        options = ["main"] + [text() for _ in range(rng.integers(0, 3))]
        settings = {} if rng.random() < 0.5 else {"steps": int(rng.integers(1, 5))}
        if rng.random() < 0.3:
            settings["set"] = {text(): text()}
        name = "projection-" + projection_label(ids, options) + settings_suffix(settings, ("baseline_without",))
        key = (tuple(ids or ()), tuple(options[1:]), json.dumps(settings, sort_keys=True))
        assert seen.setdefault(name, key) == key, f"{name}: {key} and {seen[name]}"
        t = text()
        scen = scenario_folder(t)
        assert scenarios.setdefault(scen, t) == t, f"{scen}: {t!r} and {scenarios[scen]!r}"
        for n in (name, scen, part(text())):
            assert n == n.lower(), "a case-insensitive file system would merge two names"
            assert "/" not in n and "\\" not in n and n not in (".", "..", "calibration", "index.md", "options")
            assert len(n) < 255 and n == n.strip() and "\n" not in n
            assert inside(tmp_path, tmp_path / scen / n).parent.parent == tmp_path
    assert projection_label(None, ["m", "b-c"]) != projection_label(None, ["m", "b", "c"])
    assert scenario_folder("Tiny").lower() != "tiny" and scenario_folder("tiny") == "tiny"
    assert projection_label(["jd_drops_weibo"], ["a", "b", "c"]) == "vs-without-jd_drops_weibo-options-b-c"
    with pytest.raises(UserError):
        inside(tmp_path / "results", tmp_path / "results" / ".." / "x")
