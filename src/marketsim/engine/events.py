"""The scenario timeline (docs/model.md section 7): what each event action does to the market state.

Each event type applies itself (:meth:`marketsim.scenario.eventtypes.EventType.apply`), through the interface a market
offers events (:class:`marketsim.scenario.eventtypes.MarketState`: accepted logins, social factors, promotions, prices and,
for a removed login, the access of the consumers who used it). ``HANDLERS`` names the registered types.
"""

from __future__ import annotations

from collections.abc import Callable

from marketsim.scenario.eventtypes import REGISTRY, EventType, MarketState


def apply(m: MarketState, action: EventType, step: int) -> None:
    """Apply ``action`` to market ``m`` at the start of ``step``."""
    action.apply(m, step)


#: Every registered event type -> its entry point (each type applies itself).
HANDLERS: dict[str, Callable[[MarketState, EventType, int], None]] = {name: apply for name in REGISTRY}
