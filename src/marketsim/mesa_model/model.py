"""``MarketModel``: the market as a Mesa model (Mesa's examples' ``model.py``).

Built from keyword arguments, with an ``rng`` keyword, and with ``step()``, ``running`` and a
``DataCollector`` whose model reporters carry the per-step outputs of docs/model.md section 9, so Mesa's
own tools (``batch_run``, SolaraViz) work on it. The consumers are rows of numpy arrays inside
:class:`marketsim.engine.market.Market`; retailers are Mesa agents. This module imports no UI, CLI or
result-file code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mesa
import numpy as np

from marketsim.engine.market import Market, initial_alpha
from marketsim.engine.population import build_world
from marketsim.fit.calibrate import calibrate
from marketsim.mesa_model.agents import RetailerAgent
from marketsim.scenario import bundled
from marketsim.scenario.core import Scenario, load_scenario


def _reporters(names: tuple[str, ...]) -> dict[str, Any]:
    def rec(attr, j=None):
        def f(model: MarketModel):
            r = model.market.last_record
            if r is None:
                return float("nan")
            v = getattr(r, attr)
            return float(v if j is None else v[j])

        return f

    reps: dict[str, Any] = {
        "step": lambda m: m.market.t - 1,
        "date": lambda m: m.current_date.isoformat(),
        "no_purchase_rate": rec("no_purchase_rate"),
    }
    for j, n in enumerate(names):
        for attr in ("gmv_share", "gmv", "buyer_share", "revenue", "accounts_created", "logins_linked", "access_lost"):
            reps[f"{attr}[{n}]"] = rec(attr, j)
    return reps


class MarketModel(mesa.Model):
    """Consumers choosing among online retailers (docs/model.md).

    Args:
        scenario: a :class:`Scenario`, the path of a scenario YAML file or the name of a bundled one
                (``"battle_lines_2013"``); default the small bundled ``tiny``.
        consumers: override ``consumers.count`` (N agents).
        steps: override ``calendar.steps`` (the model stops running after that many steps).
        values: further overrides by dotted scenario path, e.g. ``{"friction.create": 3.0}``.
        alpha: attractiveness per retailer (sequence in retailer order or mapping name -> value);
            default: the scenario's, with retailers marked 'calibrate' fitted now (in memory).
        trend: trend per retailer in utility per year (same forms); default: the scenario's, or the fit's.
        rng: seed of this run (an int); default the scenario's ``seed``. All randomness is spawned from it.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        *,
        consumers: int | None = None,
        steps: int | None = None,
        values: Mapping[str, Any] | None = None,
        alpha: Any = None,
        trend: Any = None,
        rng: int | None = None,
    ):
        if isinstance(rng, np.random.Generator):
            rng = int(rng.integers(2**63 - 1))
        if scenario is None:  # the small bundled scenario, when a tool builds the model with no arguments
            scenario = bundled.path(bundled.TINY)
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if values:
            sc = sc.with_values(dict(values))
        sc = sc.with_overrides(seed=rng, consumers=consumers, steps=steps)
        super().__init__(rng=sc.seed)
        # not `self.scenario`: Mesa 3.5's Model owns that name (its own Scenario objects)
        self.market_scenario = sc
        if alpha is None and sc.needs_fit:
            cal = calibrate(sc)
            alpha, trend = cal.alpha_vector(sc), cal.trend_vector(sc) if trend is None else trend
        if alpha is None:
            alpha = initial_alpha(sc)
        self.alpha = _per_retailer(alpha, sc)
        self.trend = None if trend is None else _per_retailer(trend, sc)
        self.world = build_world(sc)
        self.market = Market(sc, self.world, self.alpha, sc.seed, trend=self.trend)
        self.retailers = [RetailerAgent(self, j, r.name, r.kind) for j, r in enumerate(sc.retailers)]
        self.datacollector = mesa.DataCollector(
            model_reporters=_reporters(sc.retailer_names),
            agent_reporters={"name": "name", "gmv_share": "gmv_share", "gmv": "gmv", "revenue": "revenue"},
        )
        self.running = sc.calendar.steps > 0

    @property
    def current_date(self):
        """Date of the last completed step (the start date before any step)."""
        return self.market_scenario.calendar.date_of(max(self.market.t - 1, 0))

    def step(self) -> None:
        if not self.running:
            return
        rec = self.market.step()
        for a in self.retailers:
            a.observe(rec)
        self.datacollector.collect(self)
        self.running = self.market.t < self.market_scenario.calendar.steps


def _per_retailer(values: Any, scenario: Scenario) -> np.ndarray:
    """A sequence in retailer order, or a mapping retailer name -> value, as an array."""
    if isinstance(values, Mapping):
        values = [values[n] for n in scenario.retailer_names]
    return np.asarray(values, dtype=float)
