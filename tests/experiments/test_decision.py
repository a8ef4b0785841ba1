"""The decision desk's numbers (marketsim.experiments.decision) against answers known by construction: paired
comparisons of synthetic options whose probabilities are computed here by another route, a tornado of a known
linear and quadratic response, and a stored projection read back equal to the one in memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.errors import UserError
from marketsim.experiments import decision as D
from marketsim.experiments.projection import BASELINE
from marketsim.experiments.uncertainty import Param
from marketsim.report import decision as W
from tests.helpers import SCENARIOS


def _outcomes(shifts: dict[str, np.ndarray], weights=None, unit=None, params=()) -> D.Outcomes:
    """Outcomes whose baseline is 0.2 for retailer A and whose options' horizon shares are 0.2 + shift (K, R)."""
    K, R = next(iter(shifts.values())).shape
    T, J = 3, 2
    share = {BASELINE: np.full((K, R, T, J), 0.2)}
    for name, s in shifts.items():
        a = np.full((K, R, T, J), 0.2)
        a[:, :, -1, 0] = 0.2 + s
        share[name] = a
    w = np.full(K, 1 / K) if weights is None else np.asarray(weights, float) / np.sum(weights)
    return D.Outcomes(
        scenario="s",
        options=tuple(shifts),
        retailers=("A", "B"),
        baseline="without e",
        dates=("2013-01-07", "2013-01-14", "2013-01-21"),
        share=share,
        weights=w,
        params=tuple(params),
        values=np.zeros((K, len(params))) if unit is None else np.asarray(unit),
        draw_index=np.arange(K),
        unit=unit,
    )


def test_paired_probabilities_equal_counts_by_hand():
    rng = np.random.default_rng(1)
    K, R = 40, 5
    a = rng.normal(0.0, 0.01, (K, R))
    b = a + rng.normal(0.003, 0.004, (K, R))  # b is better by 0.3 points on average
    c = a - 0.02  # c is worse than a everywhere
    w = rng.uniform(0.5, 1.5, K)
    o = _outcomes({"a": a, "b": b, "c": c}, weights=w)
    cell = np.repeat(w[:, None] / w.sum() / R, R, axis=1)
    p = D.p_beats(o, "A")
    assert p["b"]["a"] == pytest.approx(float(cell[b > a].sum()), abs=1e-12)
    assert p["a"]["c"] == pytest.approx(1.0) and p["c"]["a"] == pytest.approx(0.0)
    for x in "abc":
        assert math.isnan(p[x][x])
        for y in "abc":
            if x != y:
                assert p[x][y] + p[y][x] == pytest.approx(1.0)
    rank = D.ranking(o, "A")
    assert [r["option"] for r in rank] == ["b", "a", "c"]
    assert rank[0]["mean_pp"] == pytest.approx(float((cell * b).sum()) * 100)
    assert sum(r["p_best"] for r in rank) == pytest.approx(1.0)
    best_is_b = (b > a) & (b > c)
    assert rank[0]["p_best"] == pytest.approx(float(cell[best_is_b].sum()), abs=1e-12)
    # beyond a threshold, in both directions
    pb = D.p_beyond(o, "A", -0.5)
    assert pb["c"] == pytest.approx(float(cell[c < -0.005].sum()))
    assert D.p_beyond(o, "A", 0.2)["b"] == pytest.approx(float(cell[b > 0.002].sum()))
    # a tie counts half
    tie = _outcomes({"x": np.zeros((4, 2)), "y": np.zeros((4, 2))})
    assert D.p_beats(tie, "A")["x"]["y"] == pytest.approx(0.5)
    with pytest.raises(UserError, match="retailer 'Z' is not in this projection; it has A, B"):
        D.ranking(o, "Z")


def _param(path, lo, hi, central=None):
    c = (lo + hi) / 2 if central is None else central
    return Param(path, path, "", 1.0, lo, hi, c, "assumption: test", 0.0, 1.0, (c - lo) / (hi - lo))


def test_tornado_recovers_a_known_response():
    rng = np.random.default_rng(2)
    K, R = 60, 2
    U = rng.uniform(0, 1, (K, 3))
    params = [_param("x1", 0, 1), _param("x2", 0, 1, central=0.25), _param("x3", 0, 1)]

    def f(u):  # in fractions: 2 points per unit of x1, -1 point per unit of x2, nothing from x3
        return (2 * u[:, 0] - 1 * u[:, 1]) / 100

    shift = np.repeat(f(U)[:, None], R, axis=1)
    o = _outcomes({"opt": shift}, unit=U, params=params)
    t = D.tornado(o, "opt", "A")
    rows = {r["path"]: r for r in t["rows"]}
    # x1 from 0 to 1 with x2 at its central 0.25: 2*0 - 0.25 = -0.25 .. 2*1 - 0.25 = 1.75
    assert rows["x1"]["at_low_pp"] == pytest.approx(-0.25, abs=1e-9)
    assert rows["x1"]["at_high_pp"] == pytest.approx(1.75, abs=1e-9)
    assert rows["x2"]["at_low_pp"] == pytest.approx(1.0, abs=1e-9)  # x1 central 0.5 -> 1 - 0
    assert rows["x2"]["at_high_pp"] == pytest.approx(0.0, abs=1e-9)
    assert rows["x3"]["swing_pp"] == pytest.approx(0.0, abs=1e-9)
    assert [r["path"] for r in t["rows"]] == ["x1", "x2", "x3"]
    # variance shares: squared standardized coefficients; with equal spreads of u they go as 4 : 1 : 0
    sd = U.std(axis=0)
    src = np.array([2 * sd[0], 1 * sd[1], 0.0]) ** 2
    assert [rows[p]["variance_share"] for p in ("x1", "x2", "x3")] == pytest.approx(list(src / src.sum()), abs=1e-9)
    assert "quadratic" in t["method"] and t["r2"] == pytest.approx(1.0)
    # a curved response: the quadratic fit gets both ends right where a straight line could not
    curved = np.repeat(((U[:, 0] - 0.5) ** 2 * 4 / 100)[:, None], R, axis=1)
    tq = D.tornado(_outcomes({"opt": curved}, unit=U, params=params), "opt", "A")
    r1 = next(r for r in tq["rows"] if r["path"] == "x1")
    assert r1["at_low_pp"] == pytest.approx(1.0, abs=1e-9) and r1["at_high_pp"] == pytest.approx(1.0, abs=1e-9)
    # too few draws: no bars, and the reason with the number of draws that would do
    few = D.tornado(_outcomes({"opt": shift[:7]}, unit=U[:7], params=params), "opt", "A")
    assert few["rows"] == [] and "--draws 8" in few["method"]


def test_the_conclusion_names_the_best_option_and_how_sure():
    rng = np.random.default_rng(3)
    a = rng.normal(-0.02, 0.002, (20, 4))
    o = _outcomes({"keep": a + 0.004, "drop": a})
    s = W.conclusion(o, "A", -0.3)
    p = D.p_beats(o, "A")["keep"]["drop"]
    assert s.startswith("For A at 2013-01-21, keep leaves the highest share of the 2 options")
    assert f"it beats drop in {p * 100:.0f}% of the draws and replicates" in s
    assert "(virtually certain to be the better of the two)" in s
    assert "The chance that A loses more than 0.3 points against the baseline is" in s
    assert W.sureness(0.7) == "likely" and W.sureness(0.5) == "about as likely as not"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A small stored projection with options (battle lines with JD's two alternatives, 2,000 consumers)."""
    root = tmp_path_factory.mktemp("decide")
    args = ["project", str(SCENARIOS / "battle_lines_2013.yaml"), "--compare"]
    args += [str(SCENARIOS / "jd_keeps_weibo_login.yaml"), str(SCENARIOS / "jd_drops_weibo_no_offer.yaml")]
    args += ["--consumers", "1500", "--draws", "4", "--replicates", "2", "--steps", "60", "--results", str(root)]
    assert main(args) == 0
    return next(root.glob("battle_lines_2013/projection-*"))


def test_a_stored_projection_reads_back_what_was_computed(stored):
    import json

    o = D.from_folder(stored)
    summ = json.loads((stored / "projection.json").read_text())
    assert o.options == ("battle_lines_2013", "jd_keeps_weibo_login", "jd_drops_weibo_no_offer")
    assert o.share[BASELINE].shape == (4, 2, 60, 3) and not np.isnan(o.share[BASELINE]).any()
    # the shift read back equals the projection's own summary, for every option and retailer
    for arm in o.options:
        for j, r in enumerate(o.retailers):
            mean = float((o.cell_weights() * o.shift(arm)[:, :, j]).sum())
            assert mean == pytest.approx(summ["options"][arm]["shift"][r]["mean"], abs=1e-12)
    assert summ["decision"]["JD"]["ranking"] == D.ranking(o, "JD")
    assert summ["decision"]["JD"]["conclusion"] == W.conclusion(o, "JD", -0.5)
    assert [p.path for p in o.params] == [p["path"] for p in summ["draws"]["parameters"]]
    for p in o.params:
        assert p.low <= p.central <= p.high and p.label and p.reason
    assert (stored / "draws.csv").exists() and (stored / "scenario-jd_keeps_weibo_login.yaml").exists()
    assert "jd_drops_weibo" in (stored / "scenario-battle_lines_2013.yaml").read_text()
    assert summ["observed"] and summ["fit_until"] == "2013-06-30"


def test_a_folder_that_is_not_a_projection_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not a marketsim result folder"):
        D.from_folder(tmp_path)


def test_the_ranking_interval_is_the_one_projection_json_gives():
    """One draw: the interval is the t interval of the mean over replicates (as summarize gives), not the spread
    of the replicates; many draws: the mixture's 2.5% and 97.5% points."""
    from scipy import stats

    rng = np.random.default_rng(4)
    one = rng.normal(-0.01, 0.005, (1, 8))
    r = D.ranking(_outcomes({"a": one}), "A")[0]
    half = stats.t.ppf(0.975, 7) * one.std(ddof=1) / math.sqrt(8) * 100
    assert r["ci95_pp"] == pytest.approx([one.mean() * 100 - half, one.mean() * 100 + half])


def test_two_options_that_never_differ_are_said_to_be_the_same():
    a = np.random.default_rng(5).normal(-0.02, 0.002, (6, 2))
    s = W.conclusion(_outcomes({"x": a, "y": a.copy()}), "A", -0.3)
    assert "y leaves it exactly the same share in every draw and replicate" in s and "beats" not in s
