"""The consumers at step 0 (MODEL.md sections 2 and 3), drawn once from the scenario seed.

A :class:`World` is everything about a market that does not change while it runs and that a scenario
and its counterfactual share on the same seed: identity accounts, baskets, social layers, and the
initial last retailer and access of every consumer. Consumers are rows of numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import network
from .choice import ACCESS_DTYPE, NATIVE, SSO
from .scenario import Scenario


@dataclass(frozen=True)
class Layer:
    """A social layer: the graph over the holders of ``provider`` (CSR, global consumer ids)."""

    provider: int  # provider index
    name: str
    weight: float  # influence weight w_p
    graph: network.CSRGraph
    inv_degree: np.ndarray  # float32 (N,), 1/deg_p(i) or 0 where deg_p(i) == 0


@dataclass(frozen=True)
class World:
    n: int
    holds: np.ndarray  # bool (N, P)
    basket: np.ndarray  # float64 (N,), relative basket value (mean 1): x basket.mean(t) gives the currency
    login_pref: np.ndarray  # float32 (N,) uniform: which held provider a one-click sign-up uses (engine.Market)
    last0: np.ndarray  # int16 (N,), initial last retailer (-1 = none)
    access0: np.ndarray  # int16 (N, R), initial access codes (see marketsim.choice)
    layers: tuple[Layer, ...]
    scale: float  # real shoppers per agent at the calendar start = market.size(start) / N (it may grow: Market.scale)


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The named, independent random streams of one run, spawned from the run seed (SeedSequence)."""
    pop, net, dyn, warm, pilot = np.random.SeedSequence(seed).spawn(5)
    return {"population": pop, "network": net, "dynamics": dyn, "warmup": warm, "pilot": pilot}


def child_seed(ss: np.random.SeedSequence) -> int:
    """An integer run seed drawn from a SeedSequence (for a sub-run such as the burn-in pilot or a replicate)."""
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def build_world(scenario: Scenario, seed: int | None = None, n: int | None = None) -> World:
    """Draw the consumers and their social layers for ``seed`` (default: the scenario's)."""
    seed = scenario.seed if seed is None else seed
    n = scenario.consumers.count if n is None else n
    streams = seed_streams(seed)
    rng = np.random.default_rng(streams["population"])
    P, R = len(scenario.providers), len(scenario.retailers)

    pen = np.array([p.penetration for p in scenario.providers])
    holds = rng.random((n, P)) < pen[None, :]

    basket = relative_baskets(rng, scenario.consumers.basket.sigma, n)
    login_pref = rng.random(n, dtype=np.float32)

    init = np.array([r.initial_share for r in scenario.retailers])
    last0 = _categorical(rng.random(n), init).astype(np.int16)

    access0 = np.zeros((n, R), dtype=ACCESS_DTYPE)
    u = rng.random(n)
    for j, r in enumerate(scenario.retailers):
        mine = last0 == j
        codes = np.full(n, NATIVE, dtype=ACCESS_DTYPE)
        lo = 0.0
        for pname, share in r.sso_share:
            p = scenario.provider_index(pname)
            sel = mine & (u >= lo) & (u < lo + share)
            codes[sel] = SSO + p
            holds[sel, p] = True  # "those customers hold p"
            lo += share
        access0[mine, j] = codes[mine]

    layers = []
    net_children = streams["network"].spawn(P)
    for p, prov in enumerate(scenario.providers):
        if prov.network is None:
            continue
        members = np.flatnonzero(holds[:, p])
        g = network.generate(prov.network.model, len(members), prov.network.kwargs, np.random.default_rng(net_children[p]))
        g = g.relabel(members, n)
        deg = g.degree()
        inv = np.zeros(n, dtype=np.float32)
        nz = deg > 0
        inv[nz] = 1.0 / deg[nz]
        layers.append(Layer(p, prov.name, prov.weight, g, inv))

    return World(n=n, holds=holds, basket=basket, login_pref=login_pref, last0=last0, access0=access0, layers=tuple(layers),
                 scale=scenario.market_size.at(scenario.calendar.start) / n)


def relative_baskets(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    """n relative basket values ~ LogNormal(-sigma^2 / 2, sigma), whose mean is exactly 1 (the log-normal
    correction): a consumer's spend per order is this times ``basket.mean`` at the date."""
    if sigma <= 0:
        return np.ones(n)
    return rng.lognormal(-0.5 * sigma**2, sigma, size=n)


def _categorical(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, u, side="right")
