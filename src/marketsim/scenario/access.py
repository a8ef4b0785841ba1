"""How a consumer can reach a retailer's checkout (docs/model.md section 2): the access codes per
(consumer, retailer). :data:`NONE` (no account reachable), :data:`NATIVE` (an account of the retailer's own),
:data:`MIGRATE` (a login the retailer dropped, kept at the migration cost it offered), or ``SSO + p`` (single
sign-on through provider index p).

They are part of the model's vocabulary, so the event types (:mod:`marketsim.scenario.eventtypes`) and the
engine (:mod:`marketsim.engine.choice`) read them from here.
"""

from __future__ import annotations

NONE, NATIVE, MIGRATE, SSO = 0, 1, 2, 3
