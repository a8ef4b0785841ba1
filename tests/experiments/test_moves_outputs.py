"""The moves that change who is in the market (an entry, an acquisition, an exit), as a run and a projection
report them: summary.json's and projection.json's ``moves`` hold the engine's own MoveRecord numbers (shoppers
moved to the acquirer and lost, in real units; an entrant's share at the horizon), recomputed here by another
route (stepping a Market by hand, simulating each replicate alone), and the terminal says them in words. A
scenario without such moves has no ``moves`` key (the golden files pin the rest)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from marketsim.engine.market import Market, initial_alpha
from marketsim.engine.population import build_world
from marketsim.engine.run import simulate
from marketsim.experiments.projection import project, replicate_seeds, summary
from marketsim.experiments.tasks import with_draw
from marketsim.experiments.uncertainty import prior_draws
from marketsim.report.moves import move_lines
from marketsim.report.numbers import count, share
from marketsim.scenario.core import parse_text
from tests.helpers import MOVES_YAML, cli, simple_market_yaml

ACQ_STEP, RETENTION = 6, 0.6


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("moves") / "moves.yaml"
    p.write_text(MOVES_YAML, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def by_hand():
    """The market stepped by hand: the target's customers just before the acquisition, and the MoveRecords."""
    sc = parse_text(MOVES_YAML)
    m = Market(sc, build_world(sc, sc.seed), initial_alpha(sc), sc.seed)
    jb = sc.retailer_names.index("Yihaodian")
    before = None
    recs = []
    for t in range(sc.calendar.steps):
        if t == ACQ_STEP:
            before = int((m.last == jb).sum())
        recs.append(m.step())
    return sc, m, before, recs


@pytest.fixture(scope="module")
def run(scenario_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    r = cli("run", scenario_file, "--out", out, columns=200)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "summary.json").read_text()), r.stdout


def test_the_engine_records_what_the_acquisition_did(by_hand):
    sc, m, before, _ = by_hand
    acq = next(mv for mv in m.moves if mv.kind == "acquisition")
    assert (acq.step, acq.retailer, acq.other) == (ACQ_STEP, "JD", "Yihaodian")
    scale = m.scale_at(ACQ_STEP)
    assert scale == pytest.approx(sc.market_size.at(sc.calendar.date_of(ACQ_STEP)) / sc.consumers.count)
    # every customer of the target is either moved or lost, in real shoppers; about `retention` of them moved
    assert acq.moved + acq.lost == pytest.approx(before * scale)
    assert before > 200
    assert abs(acq.moved / (acq.moved + acq.lost) - RETENTION) < 0.08


def test_run_summary_holds_the_engines_move_numbers(run, by_hand):
    doc, _ = run
    sc, m, _, recs = by_hand
    assert [d["kind"] for d in doc["moves"]] == ["entry", "acquisition", "exit"] == [mv.kind for mv in m.moves]
    entry, acq, exit_ = doc["moves"]
    mv = {x.kind: x for x in m.moves}
    assert acq == {
        "kind": "acquisition",
        "event": "jd_buys_yhd",
        "step": ACQ_STEP,
        "date": "2013-02-18",
        "acquirer": "JD",
        "target": "Yihaodian",
        "moved": pytest.approx(mv["acquisition"].moved, rel=1e-12),
        "lost": pytest.approx(mv["acquisition"].lost, rel=1e-12),
    }
    assert exit_["retailer"] == "Dangdang" and exit_["event"] == "dangdang_leaves"
    assert exit_["lost"] == pytest.approx(mv["exit"].lost, rel=1e-12) and exit_["lost"] > 0
    j = sc.retailer_names.index("Suning")
    assert entry["retailer"] == "Suning" and entry["date"] == "2013-01-28" and entry["step"] == 3
    assert entry["share_at_horizon"] == pytest.approx(recs[-1].gmv_share[j], rel=1e-12)
    assert entry["share_at_horizon"] == pytest.approx(doc["share_last"]["Suning"], rel=1e-12)


def test_run_terminal_says_the_moves_in_words(run, by_hand):
    doc, out = run
    _, m, _, recs = by_hand
    mv = {x.kind: x for x in m.moves}
    acq = mv["acquisition"]
    assert (
        f"JD's acquisition of Yihaodian on 2013-02-18 moved {count(acq.moved)} shoppers to JD "
        f"({count(acq.lost)} lost their habit)" in out
    )
    assert f"Suning, entering on 2013-01-28, reached {share(doc['share_last']['Suning'])} by the horizon" in out
    assert f"Dangdang left the market on 2013-03-18: {count(mv['exit'].lost)} shoppers lost their habit" in out


def test_a_run_without_moves_has_no_moves_key(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(simple_market_yaml(n=500, steps=4), encoding="utf-8")
    r = cli("run", p, "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert "moves" not in json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "acquisition" not in r.stdout and "entering on" not in r.stdout


def _by_replicate(sc, proj, k: int, r: int) -> tuple[dict, float]:
    """Draw k, replicate r simulated alone: its MoveRecords by kind and Suning's horizon share."""
    res = simulate(with_draw(sc, proj.kept_draws().values[k]), seed=proj.seeds[r], steps=proj.steps)
    return {x.kind: x for x in res.moves}, float(res.records[-1].gmv_share[sc.retailer_names.index("Suning")])


def test_projection_moves_are_the_replicates_move_records_averaged():
    sc = parse_text(
        MOVES_YAML.replace("retention: 0.6}", "retention: {value: 0.6, range: [0.4, 0.8], assumption: test}}")
    )
    K, R = 2, 2
    proj = project(sc, draws=prior_draws(sc, K, seed=3), replicates=R)
    doc = summary(proj)
    assert [d["kind"] for d in doc["moves"]] == ["entry", "acquisition", "exit"]
    entry, acq, exit_ = doc["moves"]
    w = proj.weights
    got = {"moved": np.zeros((K, R)), "lost": np.zeros((K, R)), "exit": np.zeros((K, R)), "share": np.zeros((K, R))}
    for k in range(K):
        for r in range(R):
            mv, s = _by_replicate(sc, proj, k, r)
            got["moved"][k, r], got["lost"][k, r] = mv["acquisition"].moved, mv["acquisition"].lost
            got["exit"][k, r], got["share"][k, r] = mv["exit"].lost, s
    mean = {key: float(w @ v.mean(axis=1)) for key, v in got.items()}
    assert acq["moved"]["mean"] == pytest.approx(mean["moved"], rel=1e-9)
    assert acq["lost"]["mean"] == pytest.approx(mean["lost"], rel=1e-9)
    assert exit_["lost"]["mean"] == pytest.approx(mean["exit"], rel=1e-9)
    assert entry["share_at_horizon"]["mean"] == pytest.approx(mean["share"], rel=1e-9)
    for x, key in ((acq["moved"], "moved"), (acq["lost"], "lost"), (entry["share_at_horizon"], "share")):
        lo, hi = x["ci95"]
        assert lo <= x["mean"] <= hi and math.isfinite(lo) and math.isfinite(hi)
        assert lo <= got[key].max() and hi >= got[key].min()
        assert x["covers"].startswith("assumptions and simulation noise")
    # the draws set the retention: the share moved follows it
    ret = [v["events.jd_buys_yhd.retention"] for v in proj.kept_draws().values]
    frac = got["moved"].mean(axis=1) / (got["moved"] + got["lost"]).mean(axis=1)
    assert abs(ret[0] - ret[1]) > 0.05
    assert (frac[0] > frac[1]) == (ret[0] > ret[1])
    lines = move_lines(doc["moves"], doc["horizon"])
    assert lines[1].startswith(f"JD's acquisition of Yihaodian on 2013-02-18 moved {count(mean['moved'])} [")
    assert f"to JD ({count(acq['lost']['mean'])} [" in lines[1]  # the summary's mean (equal to rel 1e-9 above)


def test_project_terminal_and_files_name_the_moves(scenario_file, tmp_path):
    out = tmp_path / "p"
    r = cli("project", scenario_file, "--replicates", "3", "--out", out, columns=200)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "projection.json").read_text())
    sc = parse_text(MOVES_YAML)
    runs = [simulate(sc, seed=s) for s in replicate_seeds(sc.seed, 3)]
    moved = np.mean([next(x for x in res.moves if x.kind == "acquisition").moved for res in runs])
    lost = np.mean([next(x for x in res.moves if x.kind == "acquisition").lost for res in runs])
    acq = doc["moves"][1]
    assert acq["moved"]["mean"] == pytest.approx(moved, rel=1e-9)
    assert acq["lost"]["mean"] == pytest.approx(lost, rel=1e-9)
    assert acq["moved"]["covers"].startswith("simulation noise only")
    said = f"JD's acquisition of Yihaodian on 2013-02-18 moved {count(moved)} ["
    assert said in r.stdout
    assert f"to JD ({count(lost)} [" in r.stdout
    assert "Suning, entering on 2013-01-28, reached " in r.stdout
    report = (out / "report.md").read_text()
    assert "## Who entered, left and was bought" in report and said in report
