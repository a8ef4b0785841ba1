"""``marketsim discover`` on a small stored projection and a small stored sweep: the boxes it prints are those of
the stored numbers (recomputed here from the folder by another route), and every wrong argument is one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marketsim.experiments.decision import from_folder
from marketsim.io import dataset
from tests.helpers import ISHIGAMI, SCENARIOS, cli, ishigami_sweep, one_line_error

pytest.importorskip("ema_workbench")


@pytest.fixture(scope="module")
def projection(tmp_path_factory):
    """The tiny market (JD drops Weibo login at step 8) projected over 8 draws x 2 replicates, 14 weeks."""
    root = tmp_path_factory.mktemp("disc")
    args = ["project", str(SCENARIOS / "tiny.yaml"), "--draws", "8", "--replicates", "2", "--consumers", "1500"]
    r = cli(*args, "--steps", "14", "--results", str(root))
    assert r.returncode == 0, r.stderr
    return next(root.glob("tiny/projection-*"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """An Ishigami sweep of 60 design points, one run each."""
    text = ISHIGAMI.replace("size: 12", "size: 60").replace("batch_runs: 3", "batch_runs: 1")
    return ishigami_sweep(tmp_path_factory.mktemp("ish"), text)[1]


def _per_draw_loss(folder, retailer="JD"):
    o = from_folder(folder)
    j = o.retailers.index(retailer)
    return o, o.shift(o.options[0])[:, :, j].mean(axis=1) * 100


def _inside(limits: dict, X: pd.DataFrame) -> np.ndarray:
    m = np.ones(len(X), dtype=bool)
    for c, (lo, hi) in limits.items():
        v = X[c].to_numpy()
        m &= (v >= (-np.inf if lo is None else lo)) & (v <= (np.inf if hi is None else hi))
    return m


def test_discover_on_a_projection_states_boxes_of_the_stored_draws(projection):
    o, pp = _per_draw_loss(projection)
    threshold = float(np.round(np.median(pp), 2))  # about half the draws lose more than this
    assert threshold < 0
    r = cli("discover", str(projection), "--retailer", "JD", "--threshold", str(threshold), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cases = pp < threshold
    assert d["draws"] == 8 and d["cases"] == int(cases.sum()) and d["direction"] == "below"
    assert d["option"] == "tiny" and d["retailer"] == "JD"
    X = pd.DataFrame(o.values, columns=[p.path for p in o.params])
    assert d["boxes"]  # (this small projection has one)
    for b in d["boxes"]:  # each box's numbers are those of the draws inside its limits
        inside = _inside(b["limits"], X)
        assert b["n"] == inside.sum() and b["cases"] == (cases & inside).sum()
        assert b["coverage"] == pytest.approx((cases & inside).sum() / cases.sum())
        assert b["density"] >= 0.5 and b["sentence"].startswith(
            f"With tiny, JD loses more than {-threshold:.2f} points"
        )
        for c in b["limits"]:
            assert d["parameters"][c]["label"] in b["sentence"]  # labels, not paths
            assert c not in b["sentence"]
    # the table and the sentences
    r = cli("discover", str(projection), "--retailer", "JD", "--threshold", str(threshold), columns=200)
    assert r.returncode == 0, r.stderr
    assert "coverage" in r.stdout and "density" in r.stdout
    assert "1. With tiny, JD loses more than" in r.stdout


def test_discover_on_a_projection_refuses_in_one_line(projection):
    o, pp = _per_draw_loss(projection)
    p = str(projection)
    one_line_error(cli("discover", p, "--threshold", "-0.3"), "--retailer", "Tmall, JD, Other")
    one_line_error(cli("discover", p, "--retailer", "Suning", "--threshold", "-0.3"), "'Suning'", "Tmall, JD, Other")
    one_line_error(cli("discover", p, "--retailer", "JD", "--threshold", "-0.3", "--option", "x"), "'x'", "tiny")
    one_line_error(cli("discover", p, "--retailer", "JD", "--threshold", "-0.3", "--output", "y"), "--output")
    # beyond every draw: says so, and which threshold would have cases; that one works
    far = float(pp.min()) - 1
    err = one_line_error(
        cli("discover", p, "--retailer", "JD", "--threshold", f"{far:.2f}"), "none of the 8 draws lies below it"
    )
    suggested = err.split("--threshold ")[-1].split(" ")[0]
    assert float(suggested) < 0
    r = cli("discover", p, "--retailer", "JD", "--threshold", suggested, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["cases"] >= 1


def test_discover_on_a_sweep_finds_the_stored_points(sweep):
    man = dataset.read_manifest(sweep)
    df = dataset.load_results(sweep)
    y = df.groupby("point_id")["y"].mean()
    X = df.groupby("point_id")[[f"param.{p['path']}" for p in man["parameters"]]].first()
    X.columns = [c.removeprefix("param.") for c in X.columns]
    threshold = float(np.round(np.quantile(y, 0.7), 2))
    r = cli("discover", str(sweep), "--output", "y", "--threshold", str(threshold), "--boxes", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cases = (y > threshold).to_numpy()
    assert d["unit_of_draw"] == "design points" and d["draws"] == 60 and d["cases"] == cases.sum()
    assert 1 <= len(d["boxes"]) <= 2
    earlier = np.zeros(len(X), dtype=bool)
    for b in d["boxes"]:
        inside = _inside(b["limits"], X) & ~earlier
        assert b["n"] == inside.sum() and b["cases"] == (cases & inside).sum()
        assert b["sentence"].startswith(f"y is above {threshold:g} when ")
        earlier |= inside
    r = cli("discover", str(sweep), "--output", "y", "--threshold", str(threshold))
    assert r.returncode == 0 and "design points" in r.stdout


def test_discover_on_a_sweep_refuses_in_one_line(sweep, tmp_path):
    s = str(sweep)
    one_line_error(cli("discover", s, "--threshold", "1"), "--output, one of y")
    one_line_error(cli("discover", s, "--threshold", "1", "--retailer", "JD"), "shift.gmv_share.JD is not among them")
    one_line_error(cli("discover", s, "--threshold", "1", "--output", "z"), "--output z", "y")
    one_line_error(cli("discover", s, "--threshold", "1", "--output", "y", "--option", "a"), "--option a")
    one_line_error(cli("discover", s, "--threshold", "99", "--output", "y"), "none of the 60 design points")
    one_line_error(cli("discover", str(tmp_path), "--threshold", "1"), "neither a projection nor a sweep")
    one_line_error(cli("discover", str(tmp_path / "no"), "--threshold", "1"), "no such folder")
    small = ishigami_sweep(tmp_path, ISHIGAMI.replace("size: 12", "size: 4").replace("batch_runs: 3", "batch_runs: 1"))
    one_line_error(cli("discover", str(small[1]), "--threshold", "1", "--output", "y"), "4 design points are too few")
