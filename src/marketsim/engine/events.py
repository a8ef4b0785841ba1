"""The scenario timeline (MODEL.md section 7): what each event action does to the market state.

Each handler is ``handler(market, action, step)`` and changes only the retailer-side state of the
market it is given (accepted logins, social factors, promotions, prices) and, for a removed login,
the access of the consumers who used it. ``HANDLERS`` is the explicit registry.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from marketsim.engine.choice import MIGRATE, NONE, SSO
from marketsim.scenario.core import AddLogin, EquityStake, PriceChange, Promotion, RemoveLogin, SocialBoost


class MarketState(Protocol):
    """What an event handler may read and change in a :class:`marketsim.engine.market.Market` (and nothing else):
    the retailer-side state and, for a removed login, the consumers' access. Declared here so that this module
    does not import the market that calls it."""

    retailer_index: dict[str, int]  # retailer name -> column j
    provider_index: dict[str, int]  # provider name -> row p
    accepts: np.ndarray  # bool (providers, retailers): p in L_j
    access: np.ndarray  # per consumer and retailer: the access code (choice.NONE, NATIVE, SSO + p, MIGRATE)
    lost_login: np.ndarray  # bool per consumer: lost an SSO login to an event
    migrate_cost: np.ndarray  # per retailer: utility cost of the migration offer (inf: none)
    pending_access_lost: np.ndarray  # per retailer: consumers who lost access this step (reported with it)
    price: np.ndarray  # per retailer: price index
    promotions: list  # (retailer j, audience provider or -1, utility, until step or None)

    def logins_changed(self) -> None: ...
    def forget_lost_index(self) -> None: ...
    def set_social_factor(self, layer: str, retailer: str, factor: float) -> None: ...


def remove_login(m: "MarketState", a: RemoveLogin, step: int) -> None:
    """p leaves L_j; every A[i,j] = sso(p) loses access (to ``migrate`` if a migration cost is offered)."""
    j, p = m.retailer_index[a.retailer], m.provider_index[a.provider]
    m.accepts[p, j] = False
    col = m.access[:, j]
    hit = col == SSO + p
    col[hit] = NONE if a.migration_cost is None else MIGRATE
    if a.migration_cost is not None:
        m.migrate_cost[j] = a.migration_cost
    m.lost_login |= hit
    m.forget_lost_index()
    m.logins_changed()
    m.pending_access_lost[j] += int(hit.sum())


def add_login(m: "MarketState", a: AddLogin, step: int) -> None:
    """p joins L_j."""
    m.accepts[m.provider_index[a.provider], m.retailer_index[a.retailer]] = True
    m.logins_changed()


def social_boost(m: "MarketState", a: SocialBoost, step: int) -> None:
    """g_pj <- factor on layer p for retailer j."""
    m.set_social_factor(a.layer, a.retailer, a.factor)


def promotion(m: "MarketState", a: Promotion, step: int) -> None:
    """Adds ``utility`` to M[i,j] for holders of the audience provider (or everyone) until ``until_step``."""
    aud = -1 if a.audience is None else m.provider_index[a.audience]
    m.promotions.append((m.retailer_index[a.retailer], aud, a.utility, a.until_step))


def price_change(m: "MarketState", a: PriceChange, step: int) -> None:
    m.price[m.retailer_index[a.retailer]] = a.price_index


def equity_stake(m: "MarketState", a: EquityStake, step: int) -> None:
    """A fact on the timeline; it does what its attached effects do."""
    for eff in a.effects:
        HANDLERS[eff.type](m, eff, step)


HANDLERS: dict[str, Callable[["MarketState", object, int], None]] = {
    "remove_login": remove_login,
    "add_login": add_login,
    "social_boost": social_boost,
    "promotion": promotion,
    "price_change": price_change,
    "equity_stake": equity_stake,
}


def apply(m: "MarketState", action: object, step: int) -> None:
    HANDLERS[action.type](m, action, step)  # type: ignore[attr-defined]

