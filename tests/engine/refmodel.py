"""An independent reference of one market step, written from docs/model.md (sections 2, 3, 5, 6 and 7)
and the choices its section 12 documents, in plain Python loops over consumers.

It imports nothing from ``marketsim``: it reads a loaded :class:`marketsim.scenario.core.Scenario` (only its public
fields) and a consumer state given as plain Python values, and computes from them, its own way, what the
engine must do: the retailer-side state at a step (accepted logins, migration offers, the social factors g_pj,
active promotions, prices: by replaying the scenario's events), each consumer's social exposure per layer,
friction, promotions, utilities and choice probabilities, and the state after a step's purchases.

Access is written ``("none",)``, ``("native",)``, ``("migrate",)`` or ``("sso", provider_name)``.
The tests translate the engine's arrays into this form (see tests/test_reference.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

NONE, NATIVE, MIGRATE = ("none",), ("native",), ("migrate",)
#: Weight of a provider a retailer accepts without a stated sso_share, in one-click sign-ups (docs/model.md 12.4).
UNSTATED_LINK_WEIGHT = 1e-3
DAYS_PER_YEAR = 365.25  # docs/model.md 12.12: trends are utility per year of 365.25 days


@dataclass
class RetailerSide:
    """What events change (docs/model.md section 7), at one step, after that step's events."""

    accepts: list[set[str]]  # per retailer: the providers whose single sign-on it accepts (L_j)
    migrate_cost: list[float | None]  # per retailer: the migration offer, if any
    g: dict[tuple[str, int], float]  # (layer provider, retailer) -> social factor g_pj (absent = 1)
    promotions: list[tuple[int, str | None, float]]  # active: (retailer, audience provider or None, utility)
    price: list[float]
    removed_now: list[tuple[int, str, float | None]] = field(default_factory=list)  # remove_login at this step


def primitive_actions(event):
    """An event's primitive actions: an equity stake does what its effects do, and nothing else."""
    a = event.action
    return list(a.effects) if a.type == "equity_stake" else [a]


def retailer_side(sc, t: int) -> RetailerSide:
    """Replay the scenario's events of steps 0..t (in file order within a step) from the retailers' initial
    settings; promotions are active from their step up to ``until`` (exclusive)."""
    names = [r.name for r in sc.retailers]
    side = RetailerSide(
        accepts=[set(r.logins) for r in sc.retailers],
        migrate_cost=[None] * len(names),
        g={},
        promotions=[],
        price=[r.price_index for r in sc.retailers],
    )
    for ev in sc.events:
        if ev.step > t:
            continue
        for a in primitive_actions(ev):
            if a.type == "remove_login":
                j = names.index(a.retailer)
                side.accepts[j].discard(a.provider)
                if a.migration_cost is not None:
                    side.migrate_cost[j] = a.migration_cost
                if ev.step == t:
                    side.removed_now.append((j, a.provider, a.migration_cost))
            elif a.type == "add_login":
                side.accepts[names.index(a.retailer)].add(a.provider)
            elif a.type == "social_boost":
                side.g[(a.layer, names.index(a.retailer))] = a.factor
            elif a.type == "promotion":
                if a.until_step is None or t < a.until_step:
                    side.promotions.append((names.index(a.retailer), a.audience, a.utility))
            elif a.type == "price_change":
                side.price[names.index(a.retailer)] = a.price_index
            else:
                raise AssertionError(a.type)
    return side


def apply_removals(side: RetailerSide, access: list[list[tuple]]) -> list[int]:
    """The consumer side of this step's remove_login events: sso(p) at j becomes migrate (with a migration offer)
    or none. Returns, per retailer, how many consumers lost their access."""
    lost = [0] * len(side.accepts)
    for j, p, cost in side.removed_now:
        for row in access:
            if row[j] == ("sso", p):
                row[j] = NONE if cost is None else MIGRATE
                lost[j] += 1
    return lost


def series_at(points, date) -> float:
    """A dated series (linear between points, constant outside), from its (date, value) points."""
    pts = sorted(points)
    if date <= pts[0][0]:
        return pts[0][1]
    for (d0, v0), (d1, v1) in pairwise(pts):
        if date <= d1:
            return v0 + (v1 - v0) * (date - d0).days / (d1 - d0).days
    return pts[-1][1]


def date_of(sc, t: int):
    import datetime as dt

    return sc.calendar.start + dt.timedelta(days=sc.calendar.step_days * t)


def exposure(
    sc, side: RetailerSide, neighbours: dict[str, list[list[int]]], last: list[int], i: int
) -> dict[str, list[float]]:
    """S_p[i, j] per layer p (docs/model.md 3): w_p g_pj n_p(i, j) / deg_p(i), 0 where i has no tie on layer p."""
    R = len(sc.retailers)
    out = {}
    for prov in sc.providers:
        if prov.network is None:
            continue
        nb = neighbours[prov.name][i]
        row = [0.0] * R
        if nb:
            for j in range(R):
                n_ij = sum(1 for k in nb if last[k] == j)
                row[j] = prov.weight * side.g.get((prov.name, j), 1.0) * n_ij / len(nb)
        out[prov.name] = row
    return out


def friction(sc, side: RetailerSide, acc: tuple, holds: set[str], j: int) -> tuple[float, str]:
    """(F[i, j], path) of docs/model.md section 5: path is 'native', 'sso', 'link', 'create' or 'migrate'."""
    f = sc.friction
    linkable = bool(holds & side.accepts[j])
    no_access = (f.link, "link") if linkable else (f.create, "create")
    if acc == NATIVE:
        return f.native, "native"
    if acc[0] == "sso" and acc[1] in side.accepts[j]:
        return f.sso, "sso"
    if acc == MIGRATE and side.migrate_cost[j] is not None and side.migrate_cost[j] < no_access[0]:
        return side.migrate_cost[j], "migrate"
    return no_access


def utilities(sc, side: RetailerSide, t: int, state: State, i: int) -> dict:
    """Every term of V[i, j] (docs/model.md section 6) for consumer i at step t, and V itself."""
    b = sc.behaviour
    R = len(sc.retailers)
    years = t * sc.calendar.step_days / DAYS_PER_YEAR
    alpha = [r.attractiveness + (r.trend or 0.0) * years for r in sc.retailers]
    layers = exposure(sc, side, state.neighbours, state.last, i)
    S = [sum(row[j] for row in layers.values()) for j in range(R)]
    habit = [1.0 if state.last[i] == j else 0.0 for j in range(R)]
    FP = [friction(sc, side, state.access[i][j], state.holds[i], j) for j in range(R)]
    M = [0.0] * R
    for j, aud, u in side.promotions:
        if aud is None or aud in state.holds[i]:
            M[j] += u
    V = [
        alpha[j]
        - b.beta_price * math.log(side.price[j])
        + b.beta_social * S[j]
        + b.beta_habit * habit[j]
        - b.beta_friction * FP[j][0]
        + M[j]
        for j in range(R)
    ]
    return {
        "alpha": alpha,
        "layers": layers,
        "S": S,
        "habit": habit,
        "F": [x[0] for x in FP],
        "path": [x[1] for x in FP],
        "M": M,
        "V": V,
    }


def probabilities(V: list[float]) -> list[float]:
    """[no purchase, retailer 0, ...]: exp(V_j) / (1 + sum_k exp(V_k)) (docs/model.md section 6)."""
    e = [1.0] + [math.exp(v) for v in V]
    tot = sum(e)
    return [x / tot for x in e]


def link_provider(sc, side: RetailerSide, holds: set[str], pref: float, j: int) -> str:
    """Which provider a one-click sign-up at j goes through (docs/model.md 12.4): among the accepted providers
    the consumer holds, in provider order, drawn in proportion to j's sso_share of each (UNSTATED_LINK_WEIGHT for
    an accepted provider without a stated share) by the consumer's own uniform ``pref``."""
    shares = dict(sc.retailers[j].sso_share)
    cands = [
        (p.name, max(shares.get(p.name, 0.0), UNSTATED_LINK_WEIGHT))
        for p in sc.providers
        if p.name in holds and p.name in side.accepts[j]
    ]
    total = sum(w for _, w in cands)
    acc = 0.0
    for name, w in cands:
        acc += w
        if pref * total < acc:
            return name
    return cands[-1][0]


@dataclass
class State:
    """The consumers' state at the end of a step, as plain Python values."""

    last: list[int]  # -1: none yet
    access: list[list[tuple]]
    holds: list[set[str]]
    basket: list[float]  # relative basket (mean 1)
    login_pref: list[float]
    neighbours: dict[str, list[list[int]]]  # per layer provider: each consumer's neighbours


def after_purchases(sc, side: RetailerSide, state: State, purchases: list[tuple[int, int]], paths) -> State:
    """The state after all of a step's purchases, applied together (docs/model.md section 6): the buyer's last
    retailer, and access by the purchase's path (link: sso(p); create, migrate: native; docs/model.md section 5).
    ``paths[i][j]`` is the path of consumer i at j computed before any purchase."""
    last = list(state.last)
    access = [list(row) for row in state.access]
    for i, j in purchases:
        last[i] = j
        path = paths[i][j]
        if path == "link":
            access[i][j] = ("sso", link_provider(sc, side, state.holds[i], state.login_pref[i], j))
        elif path in ("create", "migrate"):
            access[i][j] = NATIVE
    return State(last, access, state.holds, state.basket, state.login_pref, state.neighbours)
