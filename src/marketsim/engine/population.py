"""The consumers at step 0 (docs/model.md sections 2 and 3), drawn once from the scenario seed.

A :class:`World` is everything about a market that does not change while it runs and that a scenario
and its counterfactual share on the same seed: identity accounts, baskets, social layers, and the
initial last retailer and access of every consumer. Consumers are rows of numpy arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from marketsim.engine import network
from marketsim.engine.choice import ACCESS_DTYPE, NATIVE, SSO
from marketsim.errors import ScenarioError
from marketsim.scenario.core import Scenario, load_lines


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
    login_pref: np.ndarray  # float32 (N,) uniform: which route a one-click sign-up takes (engine.login_mix)
    last0: np.ndarray  # int16 (N,), initial last retailer (-1 = none)
    access0: np.ndarray  # int16 (N, R), initial access codes (see marketsim.engine.choice)
    layers: tuple[Layer, ...]
    scale: float  # real shoppers per agent at the calendar start = market.size(start) / N (it may grow: Market.scale)


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The named, independent random streams of one run, spawned from the run seed (SeedSequence)."""
    # spawn(8) gives the same first five children as spawn(5) did: adding streams changes none of the others.
    # "days": each consumer's day within a step while a recurring effect is on (one generator per step);
    # "events": the draws of events that pick consumers (an acquisition's retained customers, one per step).
    # "routes": the redraw of the pilot's sign-up routes under the solved login-mix weights (engine.login_mix).
    pop, net, dyn, warm, pilot, days, events, routes = np.random.SeedSequence(seed).spawn(8)
    return {
        "population": pop,
        "network": net,
        "dynamics": dyn,
        "warmup": warm,
        "pilot": pilot,
        "days": days,
        "events": events,
        "routes": routes,
    }


def step_stream(ss: np.random.SeedSequence, t: int) -> np.random.Generator:
    """A generator of its own for step ``t`` (>= 0) of stream ``ss``: the same numbers whatever happened before
    that step, so a scenario and its counterfactual draw them alike (common random numbers)."""
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, int(t))))


def child_seed(ss: np.random.SeedSequence) -> int:
    """An integer run seed drawn from a SeedSequence (for a sub-run such as the burn-in pilot or a replicate)."""
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def build_world(scenario: Scenario, seed: int | None = None, n: int | None = None) -> World:
    """Draw the consumers and their social layers for ``seed`` (default: the scenario's). Refuses first (one
    line, :func:`check_memory`) a market whose arrays would not fit in the memory available."""
    seed = scenario.seed if seed is None else seed
    n = scenario.consumers.count if n is None else n
    check_memory(scenario, n)
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
        g = network.generate(
            prov.network.model, len(members), prov.network.kwargs, np.random.default_rng(net_children[p])
        )
        g = g.relabel(members, n)
        deg = g.degree()
        inv = np.zeros(n, dtype=np.float32)
        nz = deg > 0
        inv[nz] = 1.0 / deg[nz]
        layers.append(Layer(p, prov.name, prov.weight, g, inv))

    return World(
        n=n,
        holds=holds,
        basket=basket,
        login_pref=login_pref,
        last0=last0,
        access0=access0,
        layers=tuple(layers),
        scale=scenario.market_size.at(scenario.calendar.start) / n,
    )


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


# --------------------------------------------------------------------------- memory, before anything is built

# Coefficients of the estimate, measured with tracemalloc (World + Market + a few steps of tiny.yaml at 10^5 to
# 4 x 10^5 consumers, and with m = 30 or k = 100) and rounded up: the estimate is 1.4 to 2 times the peak (since
# the CSR build fills int32 indices: 1.1 to 1.7 before, when a tie took 100 bytes while its layer was built).
#: Bytes per consumer of the World and the Market besides the social layers, with the temporaries of drawing
#: them and of one step; plus this much per retailer and per provider.
BYTES_PER_CONSUMER = 64
BYTES_PER_CONSUMER_RETAILER = 24
BYTES_PER_CONSUMER_PROVIDER = 20
#: Bytes per consumer for each social layer: CSR row pointers (int64), 1/degree (float32), a pointer's slack;
#: plus 4 per retailer (the neighbour counts, int32).
BYTES_PER_CONSUMER_LAYER = 20
#: Bytes per tie a generator draws (members x m, x k/2 or x mean_degree/2): kept, the CSR entry of each end
#: (int32); while its layer is built, the generator's int64 ends, the CSR build's int32 entries and the int64
#: gather of their global ids (one layer at a time: the largest counts; measured 32 with k = 100).
BYTES_PER_TIE_KEPT = 8
BYTES_PER_TIE_BUILDING = 32
#: Below this estimate (256 MB) a market is built without asking the system how much memory is available.
SMALL_MARKET_BYTES = 1 << 28


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a market of ``n`` consumers needs at its peak (World, Market and the temporaries of building the
    largest social layer), with what drives it: ``layers`` lists (field path of the network, model, its
    parameters, expected members, ties) per provider with a network."""

    n: int
    total: int
    layers: tuple[tuple[str, str, dict, int, int], ...]


def memory_estimate(scenario: Scenario, n: int | None = None) -> MemoryEstimate:
    """The peak memory of building and running ``scenario`` with ``n`` consumers (default: consumers.count),
    from the sizes alone: nothing is allocated and no random number is drawn. Members of a layer are the expected
    holders of its provider (penetration, plus the sign-ups through it: initial share x sso_share)."""
    n = scenario.consumers.count if n is None else int(n)
    R, P = len(scenario.retailers), len(scenario.providers)
    total = n * (BYTES_PER_CONSUMER + R * BYTES_PER_CONSUMER_RETAILER + P * BYTES_PER_CONSUMER_PROVIDER)
    layers, building = [], 0
    for prov in scenario.providers:
        if prov.network is None:
            continue
        extra = sum(r.initial_share * s for r in scenario.retailers for pn, s in r.sso_share if pn == prov.name)
        members = int(round(n * min(1.0, prov.penetration + extra)))
        kw = prov.network.kwargs
        per = {
            "barabasi_albert": kw.get("m", 0),
            "watts_strogatz": kw.get("k", 0) / 2,
            "erdos_renyi": kw.get("mean_degree", 0) / 2,
        }.get(prov.network.model, 0)
        ties = int(members * per)
        layers.append((f"providers.{prov.name}.network", prov.network.model, dict(kw), members, ties))
        total += ties * BYTES_PER_TIE_KEPT + n * (BYTES_PER_CONSUMER_LAYER + 4 * R)
        building = max(building, ties * BYTES_PER_TIE_BUILDING)
    return MemoryEstimate(n, total + building, tuple(layers))


def available_memory() -> int | None:
    """Bytes this process can still allocate: the system's available memory (psutil, else /proc/meminfo), at
    most what a container (cgroup v2 memory.max) and the address-space limit (RLIMIT_AS) leave. None if unknown."""
    limits = []
    try:
        import psutil

        limits.append(int(psutil.virtual_memory().available))
    except Exception:  # psutil not installed (it is optional): the kernel's own figure
        try:
            with open("/proc/meminfo") as fh:
                info = dict(line.split(":", 1) for line in fh)
            limits.append(int(info["MemAvailable"].split()[0]) * 1024)
        except (OSError, KeyError, ValueError):
            try:
                limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
            except (OSError, ValueError, AttributeError):
                pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            cap = fh.read().strip()
        if cap != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                limits.append(int(cap) - int(fh.read().strip()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(soft - used)
    except (ImportError, OSError, ValueError):
        pass
    return max(0, min(limits)) if limits else None


def check_memory(scenario: Scenario, n: int | None = None) -> MemoryEstimate:
    """Refuse (:class:`ScenarioError`, one line naming consumers.count and the network fields, with the estimate
    and the memory available, in GB) a market that would not fit in memory, before anything is allocated."""
    est = memory_estimate(scenario, n)
    if est.total < SMALL_MARKET_BYTES:  # every test and fit-sized market: not worth asking the system
        return est
    avail = available_memory()
    if avail is None or est.total <= avail:
        return est
    gb = 1e9
    biggest = sorted(est.layers, key=lambda x: -x[4])
    nets = "; ".join(
        f"{path} ({model}, {', '.join(f'{k}: {v:g}' for k, v in kw.items())}): ~{ties:,} ties over {members:,} members"
        for path, model, kw, members, ties in biggest
    )
    fields = ", ".join(f"{path}.{k}" for path, _, kw, _, _ in biggest for k in kw if k in ("m", "k", "mean_degree"))
    source, line = field_location(scenario.source, "consumers.count")
    raise ScenarioError(
        f"{est.n:,} consumers need about {est.total / gb:,.1f} GB of memory{' (social layers: ' + nets + ')' if nets else ''}; "
        f"{avail / gb:,.1f} GB is available; allowed: fewer consumers (consumers.count, or --consumers)"
        f"{', or fewer ties (' + fields + ')' if fields else ''}, or a machine with more memory",
        source=source,
        path="consumers.count",
        line=line,
    )


def field_location(source: str, path: str) -> tuple[str, int | None]:
    """The file and line where a scenario file (and its bases) sets ``path``; (source, None) if unknown."""
    try:
        return load_lines(source).find(path)
    except Exception:  # not a file any more, or not readable: the message goes without a line
        return source, None
