"""The moves tutorial of docs/scenarios.md ("Entry, exit and quality: the other moves"): its file is
docs/examples/moves_2013.yaml, and the moves do what the section says: the entrant has no share, access or
habit before its entry and a share after it; the retailer that exits has none after; JD's attractiveness
builds up linearly over a year (docs/model.md sections 4 and 7)."""

from __future__ import annotations

import numpy as np

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import load_scenario
from tests.helpers import ROOT
from tests.test_docs import tutorial_steps

HEADING = "## Entry, exit and quality: the other moves"
EXAMPLE = ROOT / "docs" / "examples" / "moves_2013.yaml"


def test_the_sections_file_is_the_example():
    files = [s for s in tutorial_steps(HEADING) if s[0] == "file"]
    assert [p for _, p, _ in files] == ["docs/examples/moves_2013.yaml"]
    assert files[0][2] == EXAMPLE.read_text()


def test_the_moves_do_what_the_section_says():
    sc = load_scenario(EXAMPLE)
    names = sc.retailer_names
    new, gone, jd = names.index("NewCo"), names.index("Suning"), names.index("JD")
    steps = {e.id: e.step for e in sc.events}
    alpha = np.array([r.attractiveness if r.attractiveness is not None else -1.5 for r in sc.retailers])
    m = Market(sc, build_world(sc, n=4000), alpha, sc.seed, settle=False)
    shares = []
    for t in range(sc.calendar.steps):
        rec = m.step()
        shares.append(rec.gmv_share)
        if t < steps["newco_enters"]:
            assert (m.last != new).all() and (m.access[:, new] == 0).all()
        if t >= steps["suning_closes"]:
            assert (m.last != gone).all() and (m.access[:, gone] == 0).all()
    shares = np.array(shares)
    assert (shares[: steps["newco_enters"], new] == 0).all() and shares[-1, new] > 0
    assert (shares[steps["suning_closes"] :, gone] == 0).all() and shares[steps["suning_closes"] - 1, gone] > 0
    # JD's attractiveness: +0.2 built up over 365 days from its step (7-day steps: 7/365 of it a step)
    s0 = steps["jd_logistics"]
    lift = [m.alpha_at(t)[jd] - m.alpha_at(s0 - 1)[jd] for t in (s0, s0 + 10, s0 + 60)]
    trend = m.trend[jd] * sc.calendar.step_days / 365.25
    assert np.allclose(lift, [0.2 * 7 / 365 + trend, 0.2 * 77 / 365 + 11 * trend, 0.2 + 61 * trend], atol=1e-9), lift
