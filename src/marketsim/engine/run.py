"""One whole run of a scenario (:func:`simulate`) and what it returns (:class:`RunResult`: the step records, and
their tables from :mod:`marketsim.engine.outputs`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marketsim.engine.login_mix import Shortfall
from marketsim.engine.market import LoginLoss, Market, MoveRecord, StepRecord, initial_alpha
from marketsim.engine.outputs import flows_to_frame, login_losses_to_dicts, moves_to_dicts, records_to_frame
from marketsim.engine.population import World, build_world
from marketsim.scenario.core import Scenario


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    consumers: int
    steps: int
    alpha: np.ndarray
    records: list[StepRecord]
    moves: list[MoveRecord] = field(default_factory=list)  # entries, exits and acquisitions, in the order they fired
    login_losses: list[LoginLoss] = field(default_factory=list)  # login removals: who lost a login (real units)
    login_shortfalls: list[Shortfall] = field(default_factory=list)  # stated login shares the market cannot keep

    def timeseries(self) -> pd.DataFrame:
        """Tidy per-step, per-retailer table (one row per step and retailer)."""
        return records_to_frame(self.scenario, self.records)

    def flows(self) -> pd.DataFrame:
        return flows_to_frame(self.scenario, self.records)

    def moves_summary(self) -> list[dict]:
        """What the entries, exits and acquisitions did, as plain data (:func:`marketsim.engine.outputs.moves_to_dicts`):
        shoppers moved and lost in real units, an entrant's GMV share at the last step."""
        return moves_to_dicts(self.scenario, self.moves, self.records[-1].gmv_share if self.records else None)

    def login_losses_summary(self) -> list[dict]:
        """Each login removal's lost logins as plain data (:func:`marketsim.engine.outputs.login_losses_to_dicts`)."""
        return login_losses_to_dicts(self.scenario, self.login_losses)

    def share(self, step: int) -> dict[str, float]:
        return dict(zip(self.scenario.retailer_names, map(float, self.records[step].gmv_share), strict=True))


def simulate(
    scenario: Scenario,
    alpha: np.ndarray | None = None,
    *,
    trend: np.ndarray | None = None,
    seed: int | None = None,
    steps: int | None = None,
    world: World | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run ``scenario`` for ``steps`` (default: its calendar) with attractiveness ``alpha``.

    ``alpha`` is required when a retailer's attractiveness is 'calibrate' (see :mod:`marketsim.fit.calibrate`);
    ``trend`` (utility per year) defaults to the scenario's trends (0 where 'calibrate').
    ``world`` may be passed to reuse the consumers drawn for the same seed (e.g. a counterfactual).
    ``on_step(done, total)`` is called after each step (progress bars).
    """
    if alpha is None:
        if any(r.calibrate for r in scenario.retailers):
            raise ValueError("retailers marked 'calibrate' need fitted alphas: use marketsim.fit.calibrate.calibrate()")
        alpha = initial_alpha(scenario)
    seed = scenario.seed if seed is None else seed
    steps = scenario.calendar.steps if steps is None else steps
    world = world if world is not None else build_world(scenario, seed)
    m = Market(scenario, world, alpha, seed, trend=trend)
    recs = []
    for t in range(steps):
        recs.append(m.step())
        if on_step is not None:
            on_step(t + 1, steps)
    return RunResult(
        scenario=scenario,
        seed=seed,
        consumers=world.n,
        steps=steps,
        alpha=np.asarray(alpha),
        records=recs,
        moves=list(m.moves),
        login_losses=list(m.login_losses),
        login_shortfalls=list(m.login_shortfalls),
    )
