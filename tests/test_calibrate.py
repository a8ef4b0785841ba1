"""Calibration (MODEL.md section 8): recovers known attractiveness; converges on the bundled scenarios."""

import numpy as np
import pytest

from marketsim.calibrate import CalibrationError, calibrate, window_shares
from marketsim.population import build_world
from marketsim.scenario import load_scenario, parse_text

from .conftest import SCENARIOS, simple_market_yaml


def test_recovers_known_alphas():
    known = np.array([-1.3, -0.4])
    sc = parse_text(simple_market_yaml(n=5000, steps=12, beta_habit=1.5, beta_social=0.5, native=0.2, link=0.3,
                                       create=1.0, alpha_a=known[0], alpha_b=known[1], sigma=0.5))
    shares, conv = window_shares(sc, build_world(sc), known, sc.seed, sc.calibration_window)
    target = sc.with_values({
        "retailers.A.attractiveness": "calibrate", "retailers.B.attractiveness": "calibrate",
        "retailers.A.target_share": float(shares[0]), "retailers.B.target_share": 1 - float(shares[0]),
        "consumers.conversion": float(conv),
    })
    cal = calibrate(target, tol_pp=0.05)
    assert np.allclose(cal.alpha_vector(target), known, atol=0.02), cal.alpha
    assert all(abs(r) < 0.05 for r in cal.residual_pp.values())


@pytest.mark.parametrize("name,consumers", [("tiny", None), ("baseline_2013q2", 20000), ("jd_drops_weibo_login", 20000),
                                            ("alibaba_weibo_stake", 20000), ("battle_lines_2013", 20000)])
def test_converges_on_bundled_scenarios(name, consumers):
    sc = load_scenario(SCENARIOS / f"{name}.yaml").with_overrides(consumers=consumers)
    cal = calibrate(sc)
    assert set(cal.residual_pp) == {"Tmall", "JD", "Other"}
    assert max(abs(v) for v in cal.residual_pp.values()) < 0.2 and abs(cal.conversion_residual_pp) < 0.2
    assert cal.iterations < 60
    assert calibrate(sc).alpha == cal.alpha  # deterministic


def test_unreachable_target_names_the_retailer():
    sc = parse_text(simple_market_yaml(n=2000, steps=5, alpha_b=12.0).replace(
        "attractiveness: -1.0, initial_share: 0.6", "attractiveness: calibrate, initial_share: 0.6, target_share: 0.9").replace(
        "initial_share: 0.4,", "initial_share: 0.4, target_share: 0.1,").replace(
        "basket: {mean: 100", "conversion: 0.5, basket: {mean: 100"))
    with pytest.raises(CalibrationError, match="retailer 'A'"):
        calibrate(sc)
