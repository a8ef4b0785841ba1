"""Scenario discovery (marketsim.experiments.discovery, PRIM) on designs whose boxes are known by construction,
and its words (marketsim.report.discovery): labels and display units, coverage and density spelt out."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest

from marketsim.errors import UserError
from marketsim.experiments import discovery as S
from marketsim.experiments.decision import Outcomes
from marketsim.experiments.projection import BASELINE
from marketsim.experiments.uncertainty import Param
from marketsim.report import discovery as W
from marketsim.scenario.labels import Quantity, parameter_quantity

pytest.importorskip("ema_workbench")

#: 5% of the labels flipped: inside the box 95% are cases, outside 5%.
NOISE = 0.05


def _design(seed: int, n: int = 2000):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(size=(n, 4)), columns=["x1", "x2", "x3", "x4"])
    flip = rng.uniform(size=n) < NOISE
    return X, flip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prim_finds_the_known_box_and_leaves_irrelevant_dimensions_alone(seed):
    X, flip = _design(seed)
    y = ((X.x1 > 0.6) & (X.x2 < 0.3)).to_numpy() ^ flip
    [box] = S.discover(X, y, boxes=1)
    assert set(box.limits) == {"x1", "x2"}  # x3 and x4 do not matter: not restricted
    lo1, hi1 = box.limits["x1"]
    lo2, hi2 = box.limits["x2"]
    assert abs(lo1 - 0.6) < 0.05 and hi1 == np.inf
    assert lo2 == -np.inf and abs(hi2 - 0.3) < 0.05
    # the true box: mass 0.4 x 0.3 = 0.12, density 0.95; the cases: 0.12 x 0.95 + 0.88 x 0.05 of all points
    mass, dens = 0.12, 1 - NOISE
    cov = mass * dens / (mass * dens + (1 - mass) * NOISE)  # 0.72
    assert box.coverage == pytest.approx(cov, abs=0.06)
    assert box.density == pytest.approx(dens, abs=0.06)
    assert box.mass == pytest.approx(mass, abs=0.02)
    # the statistics are those of the points inside the stated limits
    inside = box.contains(X)
    assert box.n == inside.sum() and box.cases == y[inside].sum()
    assert box.coverage == pytest.approx(y[inside].sum() / y.sum()) and box.density == pytest.approx(y[inside].mean())


@pytest.mark.parametrize("seed", [1, 3])  # seed 1: a limit peeled by chance (x2 < 0.96) in the second box
def test_several_boxes_cover_two_separate_regions(seed):
    X, flip = _design(seed)
    a = (X.x1 > 0.6) & (X.x2 < 0.3)  # mass 0.12
    b = (X.x3 > 0.8) & (X.x1 < 0.4)  # mass 0.08
    y = (a | b).to_numpy() ^ flip
    boxes = S.discover(X, y, boxes=3)
    assert len(boxes) == 2  # the rest is noise: no third box reaches the least density
    first, second = boxes
    assert set(first.limits) == {"x1", "x2"} and abs(first.limits["x1"][0] - 0.6) < 0.05
    assert abs(first.limits["x2"][1] - 0.3) < 0.05
    assert set(second.limits) == {"x1", "x3"} and abs(second.limits["x3"][0] - 0.8) < 0.05
    assert abs(second.limits["x1"][1] - 0.4) < 0.05
    # the second box's coverage is of all cases; its draws are those the first box does not hold
    assert first.coverage + second.coverage <= 1
    assert second.n == (second.contains(X) & ~first.contains(X)).sum()


def test_pure_noise_gives_no_box():
    X, _ = _design(4)
    y = np.random.default_rng(5).uniform(size=len(X)) < 0.2  # independent of X
    assert S.discover(X, y, boxes=2) == []


def test_a_missing_workbench_names_the_extra(monkeypatch):
    for name in ("ema_workbench", "ema_workbench.analysis", "ema_workbench.analysis.prim"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    X, flip = _design(0, n=50)
    with pytest.raises(UserError, match=r"pip install 'marketsim\[decide\]'"):
        S.discover(X, ~flip)


def test_sentences_use_labels_and_display_units():
    weibo, social = "retailers.JD.sso_share.weibo", "behaviour.beta_social"
    d = S.Discovery(
        boxes=[S.Box({weibo: (0.08, np.inf), social: (-np.inf, 0.9)}, 0.71, 0.84, 0.2, 50, 42)],
        outcome=Quantity("JD: GMV share shift from the events", "pp", 100),
        threshold=-0.3,
        below=True,
        parameters={weibo: parameter_quantity(weibo), social: parameter_quantity(social)},
        draws=250,
        cases=59,
        retailer="JD",
        option="jd_drops_weibo",
    )
    s = W.sentence(d, d.boxes[0])
    assert s == (
        "With jd_drops_weibo, JD loses more than 0.30 points of GMV share when JD: share of customers logging in "
        "with Weibo is above 8% and social influence: weight of friends' purchases is below 0.9 utility "
        "(coverage 71%: of the draws where it loses that much, 71% are in this box; density 84%: of the draws in "
        "the box, 84% lose that much)"
    )
    both = S.Box({weibo: (0.05, 0.125)}, 0.5, 0.9, 0.1, 10, 9)
    assert "is between 5 and 12.5%" in W.sentence(d, both)
    gains = S.Discovery(**{**d.__dict__, "threshold": 0.5, "below": False})
    assert "JD gains more than 0.50 points" in W.sentence(gains, both) and "of the draws in the box, 90% gain" in (
        W.sentence(gains, both)
    )
    data = W.describe(d)
    assert data["boxes"][0]["limits"][weibo] == [0.08, None] and data["boxes"][0]["sentence"] == s
    assert data["boxes"][0]["conditions"][1]["label"] == "Social influence: weight of friends' purchases"


# --------------------------------------------------------------------------- on a projection's outcomes


def _param(path: str, low: float, high: float) -> Param:
    q = parameter_quantity(path)
    return Param(path, q.label, q.unit, q.scale, low, high, (low + high) / 2, "assumption: test")


def _outcomes(K: int = 120, R: int = 3, seed: int = 0) -> Outcomes:
    """JD loses 1 point under "drop" where its Weibo share exceeds 10% (else 0.1 point), plus replicate noise;
    under "keep" nothing changes. The social weight does not matter."""
    rng = np.random.default_rng(seed)
    weibo = rng.uniform(0.02, 0.15, K)
    social = rng.uniform(0.0, 2.0, K)
    T, J = 2, 3
    base = np.full((K, R, T, J), 0.2)
    drop = base.copy()
    drop[:, :, -1, 1] += np.where(weibo > 0.10, -0.01, -0.001)[:, None] + rng.normal(0, 0.0005, (K, R))
    params = (_param("retailers.JD.sso_share.weibo", 0.02, 0.15), _param("behaviour.beta_social", 0.0, 2.0))
    return Outcomes(
        scenario="drop",
        options=("drop", "keep"),
        retailers=("Tmall", "JD", "Other"),
        baseline="without jd_drops_weibo",
        dates=("2013-01-06", "2013-01-13"),
        share={"drop": drop, "keep": base.copy(), BASELINE: base},
        weights=np.full(K, 1 / K),
        params=params,
        values=np.column_stack([weibo, social]),
        draw_index=np.arange(K),
    )


def test_discover_outcomes_finds_where_the_option_loses():
    o = _outcomes()
    d = S.discover_outcomes(o, "drop", "JD", -0.3)
    [box] = d.boxes
    assert list(box.limits) == ["retailers.JD.sso_share.weibo"]
    lo, hi = box.limits["retailers.JD.sso_share.weibo"]
    assert abs(lo - 0.10) < 0.01 and hi == np.inf
    # no noise near the threshold: the box is exact up to PRIM's step (5% of the draws per peel)
    assert box.coverage >= 0.95 and box.density >= 0.95
    assert d.cases == int((o.values[:, 0] > 0.10).sum()) and d.draws == 120
    s = W.sentence(d, box)
    assert s.startswith("With drop, JD loses more than 0.30 points of GMV share when JD: share of customers")
    assert re.search(r"Weibo is above (9\.9\d?|10(\.\d\d?)?)% \(coverage", s), s  # display unit: % of 0.1


def test_discover_outcomes_says_what_is_wrong_and_what_would_do():
    o = _outcomes()
    with pytest.raises(UserError, match=r"--threshold \+0.2: none of the 120 draws lies above it .*--threshold -"):
        S.discover_outcomes(o, "drop", "JD", 0.2)  # no draw gains: the hint turns to losses
    with pytest.raises(UserError, match=r"none of the 120 draws lies below it"):
        S.discover_outcomes(o, "keep", "JD", -0.3)
    with pytest.raises(UserError, match="retailer 'Suning' is not in this projection"):
        S.discover_outcomes(o, "drop", "Suning", -0.3)
    with pytest.raises(UserError, match="option 'stay' is not in this projection"):
        S.discover_outcomes(o, "stay", "JD", -0.3)
    with pytest.raises(UserError, match="5 draws are too few .* at least 8"):
        S.discover_outcomes(_outcomes(K=5), "drop", "JD", -0.3)
    # the suggested threshold works
    msg = ""
    try:
        S.discover_outcomes(o, "drop", "JD", -2.0)
    except UserError as e:
        msg = str(e)
    suggested = float(msg.split("--threshold ")[-1].split(" ")[0])
    assert suggested < 0 and S.discover_outcomes(o, "drop", "JD", suggested).cases > 0


def test_a_label_inside_a_sentence_keeps_a_name_capitalised():
    from marketsim.report.discovery import _inline

    assert _inline("Social influence: weight of friends' purchases") == "social influence: weight of friends' purchases"
    assert _inline("Habit: pull of the last retailer") == "habit: pull of the last retailer"
    assert _inline("Alibaba buys 18% of Weibo, effect 1 (social boost): factor").startswith("Alibaba")
    assert _inline("JD: share of customers logging in with Weibo").startswith("JD")
