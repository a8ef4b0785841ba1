"""The model behind the live page: a scenario and its counterfactual stepped together (:class:`LiveModel`, a
``mesa.Model``), and the fitted attractiveness it runs with (:func:`fitted_alpha`, cached on disk and in this
process). Knows nothing of Solara: the page (:mod:`marketsim.viz.page`) draws it.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import mesa
import numpy as np

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.fit.cache import cache_dir, fitted
from marketsim.fit.calibrate import with_event_values
from marketsim.io.store import RESULTS_DIR
from marketsim.scenario.core import Scenario

#: Consumers drawn in the agent picture.
SAMPLE_SIZE = 300


#: In-process cache of fitted attractiveness (by scenario digest), on top of the results/ cache.
_ALPHA: dict[str, np.ndarray] = {}
_EVENTS: dict[str, dict[str, float]] = {}  # (the same key) -> fitted recurring effects' sizes


_ALPHA_LOCK = threading.Lock()


#: Every LiveModel still in memory (a model leaves it when nothing references it any more).
MODELS: weakref.WeakSet = weakref.WeakSet()


def results_root() -> Path:
    return Path(os.environ.get("MARKETSIM_VIZ_RESULTS") or RESULTS_DIR)


def fitted_alpha(
    scenario: Scenario, on_iter: Callable[[int, float], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Attractiveness and trend per retailer (scenario order) for ``scenario``: given, or fitted to its
    observations.

    The one place the page depends on the calibration: cached on disk under <results>/calibration/
    ($MARKETSIM_VIZ_RESULTS, default results/) and in this process. ``on_iter(simulations, worst residual)``
    is called while a fit runs. Raises whatever the fit raises (the page shows it as one line)."""
    root = results_root()
    key = f"{root}:{scenario.digest()}"
    with _ALPHA_LOCK:
        if key not in _ALPHA:
            fit = fitted(
                scenario,
                cache_dir(root),
                on_progress=None if on_iter is None else (lambda stage, k, worst: on_iter(k, worst)),
            )
            _ALPHA[key] = (fit.alpha, fit.trend)
            _EVENTS[key] = {} if fit.calibration is None else fit.calibration.event_values
        return _ALPHA[key]


def fitted_events(scenario: Scenario) -> Scenario:
    """``scenario`` with the sizes of its 'calibrate' recurring effects fitted (after :func:`fitted_alpha`)."""
    return with_event_values(scenario, _EVENTS.get(f"{results_root()}:{scenario.digest()}", {}))


class LiveModel(mesa.Model):
    """The scenario and its counterfactual (the baseline: the same scenario without some of its events), stepped
    together.

    Both arms are :class:`Market` s on one World, with the same attractiveness ``alpha`` and seed: they draw
    the same random numbers for the same consumer at the same step, so they are identical until the first
    event and every later difference is caused by the events. A real ``mesa.Model`` (``step()``,
    ``running``), so Mesa's tools can drive it too.

    ``baseline``: the ids of the events the counterfactual drops; None (the default): every one-off event (recurring
    effects, such as a yearly sale, stay in both arms: :meth:`Scenario.without_events`). An unknown id raises
    :class:`~marketsim.scenario.core.ScenarioError`.

    Attributes: ``market`` (the scenario arm), ``counterfactual``, ``world``, ``share`` (array (2, steps,
    retailers): GMV share as a fraction, arm 0 = scenario, 1 = counterfactual; NaN for steps not run yet),
    ``present`` (same shape, bool: the retailer was in the market in that arm and step; an entrant before its
    entry, a retailer after its exit or its acquisition are not), ``moves`` (the scenario arm's entries, exits and
    acquisitions so far, :class:`marketsim.engine.market.MoveRecord`),
    ``accounts`` (accounts created so far in the scenario arm, real units), ``fired`` (events applied so
    far, in order), ``sample`` / ``edges`` / ``pos`` (the drawn consumers, their ties, their layout).
    """

    def __init__(
        self,
        scenario: Scenario,
        alpha: np.ndarray,
        trend: np.ndarray | None = None,
        sample_size: int = SAMPLE_SIZE,
        baseline: list[str] | None = None,
    ):
        super().__init__(rng=scenario.seed)
        self.market_scenario = scenario
        self.baseline = None if baseline is None else list(baseline)  # ids of the events the counterfactual drops
        self.alpha = np.asarray(alpha, dtype=float)
        self.world = build_world(scenario, scenario.seed)
        self.trend = None if trend is None else np.asarray(trend, dtype=float)
        self.market = Market(scenario, self.world, self.alpha, scenario.seed, trend=self.trend)
        # the counterfactual starts from the scenario's settled market (events never fire during the burn-in)
        self.counterfactual = Market(
            scenario.without_events(self.baseline),
            self.world,
            self.alpha,
            scenario.seed,
            trend=self.trend,
            start=self.market.consumer_state(),
        )
        T, R = scenario.calendar.steps, len(scenario.retailers)
        self.share = np.full((2, T, R), np.nan)
        self.present = np.ones((2, T, R), dtype=bool)
        self.accounts = np.zeros(R)
        self.fired: list = []
        self.sample, self.edges, self.pos = _sample_and_layout(self.world, scenario.seed, sample_size)
        self.running = T > 0
        MODELS.add(self)

    @property
    def t(self) -> int:
        """Steps done."""
        return self.market.t

    @property
    def horizon(self) -> int:
        """Steps in the run (the calendar's)."""
        return self.market_scenario.calendar.steps

    def step(self) -> None:
        if not self.running:
            return
        t = self.market.t
        rec = self.market.step()
        cf = self.counterfactual.step()
        self.fired.extend(e for e in self.market_scenario.events if e.step == t)  # applied before week t's choices
        self.share[0, t] = rec.gmv_share
        self.share[1, t] = cf.gmv_share
        self.present[0, t] = self.market.available
        self.present[1, t] = self.counterfactual.available
        self.accounts += rec.accounts_created
        self.running = self.market.t < self.horizon

    @property
    def moves(self) -> list:
        """The scenario arm's entries, exits and acquisitions so far, in order."""
        return self.market.moves

    def switched(self) -> np.ndarray:
        """Consumers (bool per consumer) whose last retailer differs from the counterfactual's: moved by an event."""
        return self.market.last != self.counterfactual.last


def _sample_and_layout(world, seed: int, k: int):
    """A snowball sample of ``k`` consumers over the social layers, its ties (i, j, layer) and a fixed layout."""
    import networkx as nx

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    layers = [lay.graph for lay in world.layers]
    k = min(k, world.n)
    if not layers:
        sample = np.sort(rng.choice(world.n, size=k, replace=False))
        return sample, [], np.array([(math.cos(i), math.sin(i)) for i in range(k)])
    chosen: dict[int, None] = {}
    frontier: list[int] = []
    while len(chosen) < k:
        if not frontier:
            start = int(rng.integers(world.n))
            if start in chosen:
                continue
            chosen[start] = None
            frontier = [start]
        v = frontier.pop(0)
        for g in layers:
            for u in rng.permutation(g.neighbours(v))[:3]:  # a few ties per consumer keep the sample spread out
                if len(chosen) >= k:
                    break
                if int(u) not in chosen:
                    chosen[int(u)] = None
                    frontier.append(int(u))
    sample = np.array(sorted(chosen), dtype=np.int64)
    local = {int(g): i for i, g in enumerate(sample)}
    edges = []
    for li, g in enumerate(layers):
        for i, v in enumerate(sample):
            for u in g.neighbours(int(v)):
                j = local.get(int(u))
                if j is not None and j > i:
                    edges.append((i, j, li))
    G = nx.Graph()
    G.add_nodes_from(range(len(sample)))
    G.add_edges_from((i, j) for i, j, _ in edges)
    pos = nx.spring_layout(G, seed=int(rng.integers(2**31)), iterations=60)
    return sample, edges, np.array([pos[i] for i in range(len(sample))])
