"""An independent reference of one market step, written from docs/model.md (sections 2, 3, 5, 6 and 7)
and the choices its section 12 documents, in plain Python loops over consumers.

Version 3 of section 7 adds the moves that shape a market: ``entry`` and ``exit`` (which retailers are options,
:func:`available`; an exit's consumer side, :func:`leave`), ``acquisition`` (:func:`acquire`: given one uniform
per consumer, the draws the engine documents), ``attractiveness_change`` at once or linearly over days
(:func:`alpha_at`), ``shopping_rate`` (:func:`shop_factor`) and recurring effects (``every: year``, ``days``:
:func:`firing_dates`; a shopper sees one if its own day within the step falls inside a firing:
:func:`shop_threshold` and :func:`recurring_terms`).

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
#: The event types of docs/model.md 7 (v3) that leave the retailer side above alone.
MOVES = ("entry", "exit", "acquisition", "attractiveness_change", "shopping_rate")
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
        if ev.step > t or ev.every is not None:  # recurring effects: see recurring_terms
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
            elif a.type in MOVES:
                pass  # who is in the market, alpha and the shopping rate: see available, alpha_at, shop_factor
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


def utilities(sc, side: RetailerSide, t: int, state: State, i: int, day: float | None = None) -> dict:
    """Every term of V[i, j] (docs/model.md section 6) for consumer i at step t, and V itself. ``day``: the
    consumer's day within the step (in [0, step_days)), for the recurring effects (none if not given). ``V`` is
    the formula for every retailer; ``available`` says which are options (the others cannot be picked)."""
    b = sc.behaviour
    R = len(sc.retailers)
    alpha = alpha_at(sc, t)
    layers = exposure(sc, side, state.neighbours, state.last, i)
    S = [sum(row[j] for row in layers.values()) for j in range(R)]
    habit = [1.0 if state.last[i] == j else 0.0 for j in range(R)]
    FP = [friction(sc, side, state.access[i][j], state.holds[i], j) for j in range(R)]
    M = [0.0] * R
    for j, aud, u in side.promotions:
        if aud is None or aud in state.holds[i]:
            M[j] += u
    if day is not None:
        for j, u in enumerate(recurring_terms(sc, side, t, state.holds[i], day)):
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
        "available": available(sc, t),
    }


def probabilities(V: list[float], avail: list[bool] | None = None) -> list[float]:
    """[no purchase, retailer 0, ...]: exp(V_j) / (1 + sum_k exp(V_k)) (docs/model.md section 6), over the
    retailers that are options (``avail``; all by default): the others have probability 0."""
    avail = [True] * len(V) if avail is None else avail
    e = [1.0] + [math.exp(v) if ok else 0.0 for v, ok in zip(V, avail, strict=True)]
    tot = sum(e)
    return [x / tot for x in e]


def link_route(sc, side: RetailerSide, holds: set[str], pref: float, j: int, weights: dict[str, float]):
    """The access a one-click sign-up at j opens (docs/model.md 12.4): native, or sso through one of the accepted
    providers the consumer holds, in that order (native, then provider order), drawn in proportion to the route
    weights ``weights`` ({"native": w, provider: w}: the engine's solved weights, engine.login_mix, whose solve is
    tested on its own) by the consumer's own uniform ``pref``."""
    cands = [("native", weights["native"])] + [
        (p.name, weights[p.name]) for p in sc.providers if p.name in holds and p.name in side.accepts[j]
    ]
    total = sum(w for _, w in cands)
    acc = 0.0
    pick = cands[-1][0]
    for name, w in cands:
        acc += w
        if pref * total < acc:
            pick = name
            break
    return NATIVE if pick == "native" else ("sso", pick)


@dataclass
class State:
    """The consumers' state at the end of a step, as plain Python values."""

    last: list[int]  # -1: none yet
    access: list[list[tuple]]
    holds: list[set[str]]
    basket: list[float]  # relative basket (mean 1)
    login_pref: list[float]
    neighbours: dict[str, list[list[int]]]  # per layer provider: each consumer's neighbours
    route_weight: list[dict[str, float]] | None = None  # per retailer: the sign-up route weights (link_route)


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
            access[i][j] = link_route(sc, side, state.holds[i], state.login_pref[i], j, state.route_weight[j])
        elif path in ("create", "migrate"):
            access[i][j] = NATIVE
    return State(last, access, state.holds, state.basket, state.login_pref, state.neighbours, state.route_weight)


# --------------------------------------------------------------------------- v3: the moves that shape a market


def _one_offs(sc, t: int, kind: str):
    """The one-off events of type ``kind`` at steps 0..t, in timeline order, with their step."""
    return [(ev.step, ev.action) for ev in sc.events if ev.every is None and ev.step <= t and ev.action.type == kind]


def available(sc, t: int) -> list[bool]:
    """Which retailers are options at step t (after its events): those in the market from the start, or since
    their entry; not after their exit, nor after an acquisition without keep_brand of them."""
    names = [r.name for r in sc.retailers]
    out = [not r.enters_later for r in sc.retailers]
    for ev in sc.events:
        if ev.every is not None or ev.step > t:
            continue
        a = ev.action
        if a.type == "entry":
            out[names.index(a.retailer)] = True
        elif a.type == "exit":
            out[names.index(a.retailer)] = False
        elif a.type == "acquisition" and not a.keep_brand:
            out[names.index(a.target)] = False
    return out


def alpha_at(sc, t: int) -> list[float]:
    """alpha_j(t): attractiveness plus trend x years since the start (section 4), plus every one-off
    attractiveness_change of steps <= t: all of it at once, or the fraction min(1, (t - s + 1) x step_days / over)
    of it at step t of one dated at step s (linear over ``over`` days, complete at the end of the step)."""
    sd = sc.calendar.step_days
    years = t * sd / DAYS_PER_YEAR
    names = [r.name for r in sc.retailers]
    alpha = [r.attractiveness + (r.trend or 0.0) * years for r in sc.retailers]
    for s, a in _one_offs(sc, t, "attractiveness_change"):
        frac = 1.0 if a.over_days is None else min(1.0, (t - s + 1) * sd / a.over_days)
        alpha[names.index(a.retailer)] += a.utility * frac
    return alpha


def shop_factor(sc, t: int) -> float:
    """The market-wide shopping factor at step t: that of the last one-off shopping_rate event so far (1 if none)."""
    ev = _one_offs(sc, t, "shopping_rate")
    return ev[-1][1].factor if ev else 1.0


def firing_dates(sc, ev) -> list[tuple]:
    """Each firing of recurring event ``ev`` as (first day, last day), inclusive: every year from its date, on the
    same day and month (29 February: 28 February in a common year), for ``days`` days, while the first day is
    before the day after the calendar's last step."""
    import calendar as _cal
    import datetime as dt

    end = date_of(sc, sc.calendar.steps)
    out = []
    y = ev.date.year
    while True:
        d = ev.date.day
        if ev.date.month == 2 and d == 29 and not _cal.isleap(y):
            d = 28
        first = dt.date(y, ev.date.month, d)
        if first >= end:
            return out
        out.append((first, first + dt.timedelta(days=ev.days - 1)))
        y += 1


def consumer_date(sc, t: int, day: float):
    """The calendar date of a shopper whose day within step t is ``day`` (in [0, step_days))."""
    import datetime as dt

    return date_of(sc, t) + dt.timedelta(days=math.floor(day))


def firing_on(sc, t: int, day: float) -> list:
    """The recurring effects a shopper of step t on its day ``day`` sees: those with a firing covering its date."""
    d = consumer_date(sc, t, day)
    return [ev for ev in sc.events if ev.every is not None and any(a <= d <= b for a, b in firing_dates(sc, ev))]


def shop_threshold(sc, t: int, day: float) -> float:
    """A consumer shops at step t if its uniform is below this: shopping_rate x the shopping factor x the factors
    of the recurring shopping_rate effects on its day."""
    x = sc.consumers.shopping_rate * shop_factor(sc, t)
    for ev in firing_on(sc, t, day):
        if ev.action.type == "shopping_rate":
            x *= ev.action.factor
    return x


def recurring_terms(sc, side: RetailerSide, t: int, holds: set[str], day: float) -> list[float]:
    """What the recurring effects on a shopper's day add to its utilities, per retailer: a promotion's utility (if
    it holds the audience), an attractiveness change's utility, and for a sale price P' instead of P_j the change
    -beta_price (ln P' - ln P_j) (the engine folds these into M; so does the reference)."""
    names = [r.name for r in sc.retailers]
    out = [0.0] * len(names)
    for ev in firing_on(sc, t, day):
        a = ev.action
        if a.type == "promotion" and (a.audience is None or a.audience in holds):
            out[names.index(a.retailer)] += a.utility
        elif a.type == "attractiveness_change":
            out[names.index(a.retailer)] += a.utility
        elif a.type == "price_change":
            j = names.index(a.retailer)
            out[j] += -sc.behaviour.beta_price * (math.log(a.price_index) - math.log(side.price[j]))
    return out


def leave(state: State, j: int) -> tuple[State, int, int]:
    """The consumer side of an exit of retailer j: its customers lose their habit (c_i <- none), everyone loses
    access there. Returns the new state, how many lost their habit and how many had access there."""
    last = [-1 if c == j else c for c in state.last]
    access = [list(row) for row in state.access]
    had = 0
    for row in access:
        had += row[j] != NONE
        row[j] = NONE
    lost = sum(1 for c in state.last if c == j)
    return (
        State(last, access, state.holds, state.basket, state.login_pref, state.neighbours, state.route_weight),
        lost,
        had,
    )


def acquire(
    state: State, side: RetailerSide, ja: int, jb: int, retention: float, keep_brand: bool, u: list[float]
) -> tuple[State, int, int, int]:
    """An acquisition of jb by ja (docs/model.md 7, v3), given one uniform per consumer: a customer of jb
    (c_i = jb) with u_i < retention becomes ja's (c_i <- ja); if it has no access at ja, its access at jb carries
    over: sso(p) where ja accepts p, else a native account (no access stays none); the other customers lose their
    habit (c_i <- none). Without keep_brand jb then exits. Returns (state, moved, lost, accesses lost at jb)."""
    last = list(state.last)
    access = [list(row) for row in state.access]
    moved = lost = 0
    for i, c in enumerate(state.last):
        if c != jb:
            continue
        if u[i] < retention:
            moved += 1
            last[i] = ja
            if access[i][ja] == NONE:
                acc = access[i][jb]
                if acc[0] == "sso" and acc[1] in side.accepts[ja]:
                    access[i][ja] = acc
                elif acc != NONE:
                    access[i][ja] = NATIVE
        else:
            lost += 1
            last[i] = -1
    out = State(last, access, state.holds, state.basket, state.login_pref, state.neighbours, state.route_weight)
    had = 0
    if not keep_brand:
        out, _, had = leave(out, jb)
    return out, moved, lost, had
