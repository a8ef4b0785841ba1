"""MarketModel is a real Mesa model: keyword arguments, rng, step, running, DataCollector, batch_run."""

import mesa
import numpy as np

from marketsim.engine.market import initial_alpha
from marketsim.mesa_model.model import MarketModel
from tests.helpers import SCENARIOS

ALPHA = {"Tmall": -4.1, "JD": -4.4, "Other": -4.2}


def test_steps_and_datacollector():
    m = MarketModel(SCENARIOS / "tiny.yaml", consumers=1500, steps=4, alpha=ALPHA, rng=5)
    assert isinstance(m, mesa.Model) and m.running
    while m.running:
        m.step()
    assert m.market.t == 4
    df = m.datacollector.get_model_vars_dataframe()
    assert len(df) == 4
    for col in (
        "gmv_share[JD]",
        "gmv[Tmall]",
        "revenue[Other]",
        "accounts_created[JD]",
        "access_lost[JD]",
        "buyer_share[Tmall]",
        "no_purchase_rate",
        "date",
    ):
        assert col in df.columns
    shares = df[[f"gmv_share[{n}]" for n in ALPHA]].sum(axis=1)
    assert np.allclose(shares, 1)
    agents = m.datacollector.get_agent_vars_dataframe()
    assert set(agents["name"]) == set(ALPHA)


def test_same_rng_same_run_and_values_override():
    def run(**kw):
        m = MarketModel(SCENARIOS / "tiny.yaml", consumers=1500, steps=6, alpha=ALPHA, **kw)
        for _ in range(6):
            m.step()
        return m.datacollector.get_model_vars_dataframe()

    a, b = run(rng=1), run(rng=1)
    assert a.equals(b)
    assert not a.equals(run(rng=2))
    assert not a.equals(run(rng=1, values={"friction.create": 4.0}))


def test_calibrates_when_no_alpha_given():
    """Without alpha the model fits the scenario's targets (tiny: Tmall 50.6%, JD 17.1%, Other 32.3% over the
    weeks before its first event at step 8, with a conversion of 0.6), and runs with the fitted values: its own
    GMV shares and conversion over those weeks meet the targets within sampling noise (3,000 consumers x 8 weeks:
    a share's standard deviation is about a point)."""
    m = MarketModel(SCENARIOS / "tiny.yaml", rng=3)
    assert np.all(np.isfinite(m.alpha)) and m.alpha.shape == (3,)
    assert not np.allclose(m.alpha, initial_alpha(m.market_scenario)), "the fit moved the static-logit start"
    for _ in range(8):
        m.step()
    df = m.datacollector.get_model_vars_dataframe()
    gmv = df[[f"gmv[{n}]" for n in ALPHA]].sum()
    share = gmv / gmv.sum()
    assert abs(share["gmv[Tmall]"] - 0.506) < 0.04 and abs(share["gmv[JD]"] - 0.171) < 0.03, share
    assert abs(share["gmv[Other]"] - 0.323) < 0.04, share
    assert abs((1 - df["no_purchase_rate"]).mean() - 0.6) < 0.02


def test_mesa_batch_run():
    results = mesa.batch_run(
        MarketModel,
        parameters={"scenario": str(SCENARIOS / "tiny.yaml"), "consumers": 1000, "alpha": [ALPHA], "rng": [1, 2]},
        iterations=1,
        max_steps=3,
        number_processes=1,
        data_collection_period=1,
        display_progress=False,
    )
    assert len(results) > 0 and "gmv_share[JD]" in results[0]
