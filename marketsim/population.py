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
    basket: np.ndarray  # float64 (N,), basket value in the market's currency
    last0: np.ndarray  # int16 (N,), initial last retailer (-1 = none)
    access0: np.ndarray  # int16 (N, R), initial access codes (see marketsim.choice)
    layers: tuple[Layer, ...]
    scale: float  # real shoppers per agent = market.size / N


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The named, independent random streams of one run, spawned from the run seed (SeedSequence)."""
    pop, net, dyn, warm = np.random.SeedSequence(seed).spawn(4)
    return {"population": pop, "network": net, "dynamics": dyn, "warmup": warm}


def build_world(scenario: Scenario, seed: int | None = None, n: int | None = None) -> World:
    """Draw the consumers and their social layers for ``seed`` (default: the scenario's)."""
    seed = scenario.seed if seed is None else seed
    n = scenario.consumers.count if n is None else n
    streams = seed_streams(seed)
    rng = np.random.default_rng(streams["population"])
    P, R = len(scenario.providers), len(scenario.retailers)

    pen = np.array([p.penetration for p in scenario.providers])
    holds = rng.random((n, P)) < pen[None, :]

    b = scenario.consumers.basket
    mu = np.log(b.mean) - 0.5 * b.sigma**2  # E[LogNormal(mu, sigma)] = b.mean
    basket = rng.lognormal(mu, b.sigma, size=n) if b.sigma > 0 else np.full(n, b.mean)

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

    return World(n=n, holds=holds, basket=basket, last0=last0, access0=access0, layers=tuple(layers),
                 scale=scenario.market_size / n)


def _categorical(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, u, side="right")
