"""The scenario timeline (MODEL.md section 7): what each event action does to the market state.

Each handler is ``handler(market, action, step)`` and changes only the retailer-side state of the
market it is given (accepted logins, social factors, promotions, prices) and, for a removed login,
the access of the consumers who used it. ``HANDLERS`` is the explicit registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from marketsim.engine.choice import MIGRATE, NONE, SSO
from marketsim.scenario.core import AddLogin, EquityStake, PriceChange, Promotion, RemoveLogin, SocialBoost

if TYPE_CHECKING:  # pragma: no cover
    from marketsim.engine.market import Market


def remove_login(m: "Market", a: RemoveLogin, step: int) -> None:
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


def add_login(m: "Market", a: AddLogin, step: int) -> None:
    """p joins L_j."""
    m.accepts[m.provider_index[a.provider], m.retailer_index[a.retailer]] = True
    m.logins_changed()


def social_boost(m: "Market", a: SocialBoost, step: int) -> None:
    """g_pj <- factor on layer p for retailer j."""
    m.set_social_factor(a.layer, a.retailer, a.factor)


def promotion(m: "Market", a: Promotion, step: int) -> None:
    """Adds ``utility`` to M[i,j] for holders of the audience provider (or everyone) until ``until_step``."""
    aud = -1 if a.audience is None else m.provider_index[a.audience]
    m.promotions.append((m.retailer_index[a.retailer], aud, a.utility, a.until_step))


def price_change(m: "Market", a: PriceChange, step: int) -> None:
    m.price[m.retailer_index[a.retailer]] = a.price_index


def equity_stake(m: "Market", a: EquityStake, step: int) -> None:
    """A fact on the timeline; it does what its attached effects do."""
    for eff in a.effects:
        HANDLERS[eff.type](m, eff, step)


HANDLERS: dict[str, Callable[["Market", object, int], None]] = {
    "remove_login": remove_login,
    "add_login": add_login,
    "social_boost": social_boost,
    "promotion": promotion,
    "price_change": price_change,
    "equity_stake": equity_stake,
}


def apply(m: "Market", action: object, step: int) -> None:
    HANDLERS[action.type](m, action, step)  # type: ignore[attr-defined]

