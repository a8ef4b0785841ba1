"""Event types: one class per kind of event on a scenario's timeline (docs/model.md section 7), each holding
everything about its kind.

An event type is a frozen dataclass (the action a scenario's :class:`~marketsim.scenario.core.Event` carries) whose
class also says:

* ``format_fields``: its fields in the file format (:mod:`marketsim.fieldspec` objects), from which the
  validator takes every per-field check, :mod:`marketsim.schema` the JSON Schema and the field reference;
* :meth:`EventType.parse`: how the validated fields become the action, with the rules between its fields
  (one-line errors ``file:line: field: what is wrong; what would be right``);
* :meth:`EventType.apply`: what it does to a market, through the :class:`MarketState` interface only;
* :meth:`EventType.file_fields` and :meth:`EventType.business_terms`: how ``marketsim validate`` writes it
  back and translates its utilities into choice probabilities;
* :meth:`EventType.live_text`: how the live page names it (its sliders come from ``format_fields``, less the
  ``inert`` ones);
* ``labels``: chart labels of its numeric fields (``events.ID.FIELD`` as a sweep parameter).

A :class:`Registry` is built explicitly from a tuple of these classes (:data:`REGISTRY`, from :data:`TYPES` and
:data:`EFFECT_TYPES`); the validator, the format (schema.py), the engine, ``validate``, the live page and the chart
labels all go through it or through the action's own methods. Adding an event type means writing its class,
adding it to :data:`TYPES`, its test, and regenerating the published format (``marketsim schema --write``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from marketsim.scenario.access import MIGRATE, NONE, SSO
from marketsim.scenario.fieldspec import UTILITY, Block, Field, ListOf, Node, Variants


class MarketState(Protocol):
    """What an event may read and change of a market (:class:`marketsim.engine.market.Market` implements it).

    Read only: ``retailer_index``, ``provider_index``. Changed by events: ``accepts``, ``access``,
    ``migrate_cost``, ``lost_login``, ``pending_access_lost``, ``promotions``, ``price``; and through methods,
    the social factors (:meth:`set_social_factor`) and the caches that depend on logins
    (:meth:`logins_changed`, :meth:`forget_lost_index`)."""

    @property
    def retailer_index(self) -> Mapping[str, int]:
        """Retailer name -> column j."""

    @property
    def provider_index(self) -> Mapping[str, int]:
        """Provider name -> row p."""

    accepts: np.ndarray  # (P, R) bool: retailer j accepts provider p's single sign-on
    access: np.ndarray  # (n, R) access code of each consumer at each retailer (marketsim.choice NONE .. SSO + p)
    migrate_cost: np.ndarray  # (R,) utility: cost of migrating an account after a removed login (inf: no offer)
    lost_login: np.ndarray  # (n,) bool: the consumer lost a login by an event
    pending_access_lost: np.ndarray  # (R,) accesses lost by events since the last step's record
    promotions: list[tuple[int, int, float, int | None]]  # (retailer j, audience provider or -1, utility, until step)
    price: np.ndarray  # (R,) price index, 1 = market price

    def logins_changed(self) -> None:
        """Call after changing ``accepts`` or ``migrate_cost``."""

    def forget_lost_index(self) -> None:
        """Call after changing ``lost_login``."""

    def set_social_factor(self, layer: str, retailer: str, factor: float) -> None:
        """g_pj <- ``factor``: ties on ``layer`` weigh that much for ``retailer``."""

    def enter(self, retailer: str) -> None:
        """The retailer becomes an option (nobody has access or habit there yet)."""

    def leave(self, retailer: str, step: int) -> None:
        """The retailer stops being an option: its customers lose access and habit there."""

    def acquire(self, acquirer: str, target: str, retention: float, keep_brand: bool, step: int) -> None:
        """The target's customers become the acquirer's with probability ``retention`` (docs/model.md 7)."""

    def shift_attractiveness(self, retailer: str, utility: float, step: int, days: int | None) -> None:
        """alpha_j moves by ``utility`` from ``step``: at once, or linearly over ``days``."""

    def set_shopping_factor(self, factor: float) -> None:
        """Every consumer's shopping rate is ``factor`` x consumers.shopping_rate from now on."""


@dataclass(frozen=True)
class Window:
    """What a recurring effect does while it is on, to the shoppers of the days it covers (docs/model.md 7):
    ``utility`` added to retailer ``retailer`` for holders of provider ``audience`` (None: everyone), the
    retailer's price index set to ``price`` during the firing, or the shopping rate multiplied by
    ``shop_factor``."""

    retailer: str | None = None
    audience: str | None = None
    utility: float = 0.0
    price: float | None = None
    shop_factor: float = 1.0


@dataclass(frozen=True)
class Reading:
    """What an event type's :meth:`EventType.parse` gets from the validator for one item of ``events`` (or of an
    equity stake's ``effects``)."""

    get: Callable[[str], Any]  # a field's value, checked against its spec (ranges, this file's names, default)
    fail: Callable[[str, str], None]  # fail(path, what is wrong; what would be right): raises the one-line error
    path: str  # the item's path: events[3], events[3].effects[0]
    calendar: Any  # the scenario's Calendar (dates to steps)
    nested: bool  # the item is an effect of another event
    effects: Callable[[], tuple]  # the item's ``effects`` list, each effect parsed (types that carry effects)


@dataclass(frozen=True)
class Terms:
    """What :meth:`EventType.business_terms` needs from ``marketsim validate``: the scenario, its typical shopper
    (:class:`marketsim.scenario.describe.Shopper`) and ``change(path, value, delta, retailer)``, the relative change of the
    shopper's probability of choosing ``retailer`` when its utility changes by ``delta(value)`` (with the ends
    of ``path``'s range or prior if it is uncertain), as text."""

    scenario: Any
    shopper: Any
    change: Callable[[str, float, Callable[[float], float], str], str]


class EventType:
    """The base of every event type (see the module's docstring). Subclasses are frozen dataclasses whose last field
    is ``type: str = "<name>"``, the value of the file's ``type:`` key."""

    type: str
    doc: ClassVar[str]  # one paragraph for the reference and editors
    format_fields: ClassVar[tuple[Node, ...]] = ()  # its own fields, besides type/id/date/step/note
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {}  # numeric field -> (label with {e}, unit, scale)
    revokes_logins: ClassVar[bool] = False  # it takes logins away (its consumers count as having lost one)
    recurs: ClassVar[bool] = False  # it may carry every: year (a temporary effect: see :meth:`window`)
    inert: ClassVar[tuple[str, ...]] = ()  # numeric fields that change nothing in a market (records): no live slider

    @classmethod
    def spec(cls, registry: Registry) -> Block:
        """Its block in the file format (``registry``: for types whose fields name other types)."""
        return Block(cls.type, cls.doc, cls.format_fields)

    @classmethod
    def parse(cls, r: Reading) -> EventType:  # pragma: no cover - every type defines it
        """The action from the validated fields; the rules between fields raise through ``r.fail``."""
        raise NotImplementedError(cls.type)

    def apply(self, m: MarketState, step: int) -> None:  # pragma: no cover - every type defines it
        """What it does to the market at the start of ``step``."""
        raise NotImplementedError(self.type)

    def actions(self) -> tuple[EventType, ...]:
        """The primitive actions it performs (itself; an equity stake: its effects)."""
        return (self,)

    def retailers_needed(self) -> tuple[str, ...]:
        """The retailers that must be in the market when it happens (docs/model.md section 4)."""
        r = getattr(self, "retailer", None)
        return (r,) if isinstance(r, str) else ()

    def leaves(self) -> tuple[tuple[str, str], ...]:
        """The retailers it takes out of the market, each with the reason in words."""
        return ()

    def window(self) -> Window:  # pragma: no cover - every type with recurs defines it
        """What it does during each firing, if it recurs."""
        raise NotImplementedError(self.type)

    def recurring_conflict(self) -> tuple[str, str] | None:
        """A field that a recurring firing cannot have: (field, what is wrong; what would be right)."""
        return None

    def file_fields(self, key: str, num: Callable[[float, str], Any], cal: Any) -> dict:
        """Its fields in file form (``marketsim validate``); ``num(x, path)`` writes a number (or its uncertain
        mapping), ``key`` is its dotted path (``events.ID``)."""
        return {}

    def business_terms(self, key: str, when: str, t: Terms) -> list[tuple[str, float, str]]:
        """Its utilities in business terms: (dotted path, value, sentence) for ``marketsim validate``."""
        return []

    def live_text(self) -> str:
        """It in a few words, for the live page."""
        return self.type.replace("_", " ")


def _retailer_ref(key="retailer", doc="The retailer it applies to.") -> Field:
    return Field(key, "string", doc, required=True, refers="retailer", what="retailer")


def _provider_ref(key="provider", doc="The identity provider.") -> Field:
    return Field(key, "string", doc, required=True, refers="provider", what="provider")


# --------------------------------------------------------------------------- the event types


@dataclass(frozen=True)
class RemoveLogin(EventType):
    retailer: str
    provider: str
    migration_cost: float | None = None
    type: str = "remove_login"

    doc: ClassVar[str] = (
        "The retailer stops accepting the provider's single sign-on: every customer logging in "
        "through it loses access (docs/model.md section 7)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        _retailer_ref(),
        _provider_ref(),
        Field(
            "migration_cost",
            "number",
            "With it, the retailer offers to keep the account at this cost (state "
            "`migrate`); without it, those customers have no access.",
            unit=UTILITY,
            lo=0,
            hi=100,
            uncertain=True,
            nullable=True,
            default_text="no migration offer",
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {
        "migration_cost": ("{e}: cost of migrating the account", "utility", 1.0)
    }
    revokes_logins: ClassVar[bool] = True

    @classmethod
    def parse(cls, r: Reading) -> RemoveLogin:
        return cls(r.get("retailer"), r.get("provider"), r.get("migration_cost"))

    def apply(self, m: MarketState, step: int) -> None:
        """p leaves L_j; every A[i,j] = sso(p) loses access (to ``migrate`` if a migration cost is offered)."""
        j, p = m.retailer_index[self.retailer], m.provider_index[self.provider]
        m.accepts[p, j] = False
        col = m.access[:, j]
        hit = col == SSO + p
        col[hit] = NONE if self.migration_cost is None else MIGRATE
        if self.migration_cost is not None:
            m.migrate_cost[j] = self.migration_cost
        m.lost_login |= hit
        m.forget_lost_index()
        m.logins_changed()
        m.pending_access_lost[j] += int(hit.sum())

    def file_fields(self, key, num, cal) -> dict:
        out = {"retailer": self.retailer, "provider": self.provider}
        if self.migration_cost is not None:
            out["migration_cost"] = num(self.migration_cost, f"{key}.migration_cost")
        return out

    def business_terms(self, key, when, t):
        if self.migration_cost is None:
            return []
        sc = t.scenario
        bf, fr = sc.behaviour.beta_friction, sc.friction
        p, c, r = f"{key}.migration_cost", self.migration_cost, self.retailer
        vs_before = t.change(p, c, lambda x: -bf * (x - fr.sso), r)
        vs_new_account = t.change(p, c, lambda x: bf * (fr.create - min(x, fr.create)), r)
        return [
            (
                p,
                c,
                f"{r} drops {self.provider} login {when}; for a customer who logged in with it, the migration offer "
                f"changes the probability of choosing {r} by {vs_before} against logging in as before, and by "
                f"{vs_new_account} against no offer (a new account)",
            )
        ]

    def live_text(self) -> str:
        return f"{self.retailer} stops accepting {self.provider} login"


@dataclass(frozen=True)
class AddLogin(EventType):
    retailer: str
    provider: str
    type: str = "add_login"

    doc: ClassVar[str] = "The retailer starts accepting the provider's single sign-on."
    format_fields: ClassVar[tuple[Node, ...]] = (_retailer_ref(), _provider_ref())

    @classmethod
    def parse(cls, r: Reading) -> AddLogin:
        return cls(r.get("retailer"), r.get("provider"))

    def apply(self, m: MarketState, step: int) -> None:
        """p joins L_j."""
        m.accepts[m.provider_index[self.provider], m.retailer_index[self.retailer]] = True
        m.logins_changed()

    def file_fields(self, key, num, cal) -> dict:
        return {"retailer": self.retailer, "provider": self.provider}

    def live_text(self) -> str:
        return f"{self.retailer} accepts {self.provider} login"


@dataclass(frozen=True)
class SocialBoost(EventType):
    layer: str
    retailer: str
    factor: float
    type: str = "social_boost"

    doc: ClassVar[str] = (
        "Ties on a layer weigh `factor` times as much for the retailer (g_pj <- factor, docs/model.md section 3)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        _provider_ref("layer", "The provider whose social layer changes (it needs a `network`)."),
        _retailer_ref(),
        Field(
            "factor",
            "number",
            "New weight factor of the layer's ties for the retailer (1 = unchanged).",
            unit="x",
            required=True,
            lo=0,
            hi=100,
            uncertain=True,
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {"factor": ("{e}: factor", "x", 1.0)}

    @classmethod
    def parse(cls, r: Reading) -> SocialBoost:
        return cls(r.get("layer"), r.get("retailer"), r.get("factor"))

    def apply(self, m: MarketState, step: int) -> None:
        """g_pj <- factor on layer p for retailer j."""
        m.set_social_factor(self.layer, self.retailer, self.factor)

    def file_fields(self, key, num, cal) -> dict:
        return {"layer": self.layer, "retailer": self.retailer, "factor": num(self.factor, f"{key}.factor")}

    def business_terms(self, key, when, t):
        sc = t.scenario
        w = sc.providers[sc.provider_index(self.layer)].weight
        s = t.shopper.shares[self.retailer]
        bs = sc.behaviour.beta_social
        return [
            (
                f"{key}.factor",
                self.factor,
                f"{self.layer} ties weigh x{self.factor:g} for {self.retailer} {when}: for a {self.layer} user whose "
                f"friends buy like the market ({s * 100:.0f}% of them last at {self.retailer}), the probability of "
                f"choosing {self.retailer} changes by "
                f"{t.change(f'{key}.factor', self.factor, lambda x: bs * w * (x - 1) * s, self.retailer)}",
            )
        ]

    def live_text(self) -> str:
        return f"{self.retailer} ties on {self.layer} weigh x{self.factor:g}"


@dataclass(frozen=True)
class Promotion(EventType):
    retailer: str
    audience: str | None  # a provider name, or None for everyone
    utility: float
    until_step: int | None = None  # last step (exclusive) the promotion is active; None = for ever
    type: str = "promotion"

    doc: ClassVar[str] = (
        "Adds `utility` to the retailer for consumers holding the audience provider (or everyone), "
        "from the event until `until` (docs/model.md section 7)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        _retailer_ref(),
        Field(
            "utility",
            "number",
            "Utility added for the audience (negative: a penalty). `marketsim validate` "
            "translates it into a change of a typical shopper's choice probability. On a recurring promotion, "
            "'calibrate' fits it to observations of different lengths (docs/model.md section 8).",
            unit=UTILITY,
            required=True,
            lo=-20,
            hi=20,
            uncertain=True,
            calibrate=True,
        ),
        Field(
            "audience",
            "string",
            "A provider: only its holders see the promotion; or `everyone`.",
            refers="provider",
            extra_choices=("everyone",),
            what="audience",
            default="everyone",
        ),
        Field(
            "until",
            "date_or_step",
            "When it ends, exclusive: a date (the promotion stops at the start of the "
            "step containing it) or a step number. `marketsim validate` writes it back as the first day of that "
            "step; the scenario object holds the step number as `until_step`.",
            nullable=True,
            default_text="never ends",
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {"utility": ("{e}: utility added", "utility", 1.0)}
    recurs: ClassVar[bool] = True

    def window(self) -> Window:
        return Window(retailer=self.retailer, audience=self.audience, utility=self.utility)

    def recurring_conflict(self):
        if self.until_step is not None:
            return "until", "a recurring promotion lasts `days` each year; allowed: days, without until"
        return None

    @classmethod
    def parse(cls, r: Reading) -> Promotion:
        aud = r.get("audience")
        until = r.get("until")
        if isinstance(until, dt.date):  # the step containing the date
            until = r.calendar.step_of(until)
        return cls(r.get("retailer"), None if aud == "everyone" else aud, r.get("utility"), until)

    def apply(self, m: MarketState, step: int) -> None:
        """Adds ``utility`` to M[i,j] for holders of the audience provider (or everyone) until ``until_step``."""
        aud = -1 if self.audience is None else m.provider_index[self.audience]
        m.promotions.append((m.retailer_index[self.retailer], aud, self.utility, self.until_step))

    def file_fields(self, key, num, cal) -> dict:
        out = {
            "retailer": self.retailer,
            "utility": num(self.utility, f"{key}.utility"),
            "audience": self.audience or "everyone",
        }
        if self.until_step is not None:
            out["until"] = cal.date_of(self.until_step)
        return out

    def business_terms(self, key, when, t):
        who = "everyone" if self.audience is None else f"{self.audience} holders"
        until = "" if self.until_step is None else f" until {t.scenario.calendar.date_of(self.until_step)}"
        return [
            (
                f"{key}.utility",
                self.utility,
                f"promotion of {self.retailer} to {who} {when}{until}: changes such a shopper's probability of "
                f"choosing {self.retailer} by {t.change(f'{key}.utility', self.utility, lambda x: x, self.retailer)}",
            )
        ]

    def live_text(self) -> str:
        return f"{self.retailer} promotion to {(self.audience + ' users') if self.audience else 'everyone'}"


@dataclass(frozen=True)
class PriceChange(EventType):
    retailer: str
    price_index: float
    type: str = "price_change"

    doc: ClassVar[str] = "The retailer's price index changes."
    format_fields: ClassVar[tuple[Node, ...]] = (
        _retailer_ref(),
        Field(
            "price_index",
            "number",
            "The new price index.",
            unit="1 = market price",
            required=True,
            lo=0.01,
            hi=100,
            uncertain=True,
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {
        "price_index": ("{e}: new price index", "1 = market price", 1.0)
    }
    recurs: ClassVar[bool] = True

    def window(self) -> Window:
        return Window(retailer=self.retailer, price=self.price_index)

    @classmethod
    def parse(cls, r: Reading) -> PriceChange:
        return cls(r.get("retailer"), r.get("price_index"))

    def apply(self, m: MarketState, step: int) -> None:
        m.price[m.retailer_index[self.retailer]] = self.price_index

    def file_fields(self, key, num, cal) -> dict:
        return {"retailer": self.retailer, "price_index": num(self.price_index, f"{key}.price_index")}

    def business_terms(self, key, when, t):
        sc = t.scenario
        p0 = sc.retailers[sc.retailer_index(self.retailer)].price_index
        bp = sc.behaviour.beta_price
        by = t.change(f"{key}.price_index", self.price_index, lambda x: -bp * math.log(x / p0), self.retailer)
        return [
            (
                f"{key}.price_index",
                self.price_index,
                f"{self.retailer}'s price index {p0:g} -> {self.price_index:g} {when}: changes a typical shopper's "
                f"probability of choosing {self.retailer} by {by}",
            )
        ]

    def live_text(self) -> str:
        return f"{self.retailer} price index to {self.price_index:g}"


@dataclass(frozen=True)
class EquityStake(EventType):
    investor: str
    target: str
    stake: float
    amount_usd: float | None
    effects: tuple[Any, ...]
    type: str = "equity_stake"

    doc: ClassVar[str] = (
        "A fact on the timeline: an investor buys a stake. It does nothing by itself; its `effects` are what happens."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        Field("investor", "string", "Who buys (free text, e.g. Alibaba).", required=True),
        Field(
            "target",
            "string",
            "What is bought (free text: a provider, a retailer, a company; nothing checks or uses it).",
            required=True,
        ),
        Field("stake", "number", "Share bought.", unit="fraction of 1", required=True, lo=0, lo_open=True, hi=1),
        Field(
            "amount_usd",
            "number",
            "Price paid, for the record.",
            unit="USD",
            lo=0,
            hi=1e13,
            nullable=True,
            default_text="not stated",
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {
        "stake": ("{e}: stake", "%", 100.0),
        "amount_usd": ("{e}: amount", "USD m", 1e-6),
    }
    inert: ClassVar[tuple[str, ...]] = ("stake", "amount_usd")  # a record: only its effects act

    @classmethod
    def spec(cls, registry: Registry) -> Block:
        """Its fields, then ``effects``: a list of actions of the registry's effect types."""
        names = registry.effect_types
        kinds = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        effects = ListOf(
            "effects",
            f"What the deal does: a list of actions of type {kinds}, dated with the stake.",
            registry.effects_spec,
            nullable=True,
            default_text="[] (none)",
        )
        return Block(cls.type, cls.doc, (*cls.format_fields, effects))

    @classmethod
    def parse(cls, r: Reading) -> EquityStake:
        if r.nested:
            r.fail(r.path, "an equity_stake cannot be the effect of another")
        acts = r.effects()
        return cls(
            investor=r.get("investor"),
            target=r.get("target"),
            stake=r.get("stake"),
            amount_usd=r.get("amount_usd"),
            effects=acts,
        )

    def apply(self, m: MarketState, step: int) -> None:
        """A fact on the timeline; it does what its attached effects do."""
        for eff in self.effects:
            eff.apply(m, step)

    def actions(self) -> tuple[EventType, ...]:
        return self.effects

    def file_fields(self, key, num, cal) -> dict:
        out = {"investor": self.investor, "target": self.target, "stake": num(self.stake, f"{key}.stake")}
        if self.amount_usd is not None:
            out["amount_usd"] = num(self.amount_usd, f"{key}.amount_usd")
        out["effects"] = [
            {"type": eff.type, **eff.file_fields(f"{key}.effects.{k}", num, cal)} for k, eff in enumerate(self.effects)
        ]
        return out

    def live_text(self) -> str:
        return f"{self.investor} buys {self.stake:.0%} of {self.target}"


@dataclass(frozen=True)
class Entry(EventType):
    retailer: str
    type: str = "entry"

    doc: ClassVar[str] = (
        "The retailer becomes an option from this date, with the attributes its `retailers` entry gives "
        "(declare it there with `enters_later: true`); nobody has access or habit there yet (docs/model.md 7)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (_retailer_ref(doc="The retailer that enters (enters_later: true)."),)

    @classmethod
    def parse(cls, r: Reading) -> Entry:
        return cls(r.get("retailer"))

    def retailers_needed(self) -> tuple[str, ...]:
        return ()  # (it brings the retailer in: the validator checks it is not in yet)

    def apply(self, m: MarketState, step: int) -> None:
        """The retailer becomes an option."""
        m.enter(self.retailer)

    def file_fields(self, key, num, cal) -> dict:
        return {"retailer": self.retailer}

    def live_text(self) -> str:
        return f"{self.retailer} enters the market"


@dataclass(frozen=True)
class Exit(EventType):
    retailer: str
    type: str = "exit"

    doc: ClassVar[str] = (
        "The retailer stops being an option: its customers lose access and habit there and choose among the "
        "others (docs/model.md 7)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (_retailer_ref(doc="The retailer that leaves the market."),)

    @classmethod
    def parse(cls, r: Reading) -> Exit:
        return cls(r.get("retailer"))

    def leaves(self) -> tuple[tuple[str, str], ...]:
        return ((self.retailer, "it left the market"),)

    def apply(self, m: MarketState, step: int) -> None:
        """The retailer stops being an option; A[i,j] <- none and c_i <- none for its customers."""
        m.leave(self.retailer, step)

    def file_fields(self, key, num, cal) -> dict:
        return {"retailer": self.retailer}

    def live_text(self) -> str:
        return f"{self.retailer} leaves the market"


@dataclass(frozen=True)
class Acquisition(EventType):
    acquirer: str
    target: str
    retention: float
    keep_brand: bool = False
    type: str = "acquisition"

    doc: ClassVar[str] = (
        "The acquirer buys the target's business: each of the target's customers becomes the acquirer's with "
        "probability `retention` (its habit moves, and its access carries over: as the same single sign-on where "
        "the acquirer accepts that provider, else as a native account); the others lose their habit. Without "
        "`keep_brand` the target then leaves the market. No consumer is created or lost (docs/model.md 7)."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        _retailer_ref("acquirer", "The retailer that buys."),
        _retailer_ref("target", "The retailer whose customers it takes over."),
        Field(
            "retention",
            "number",
            "Share of the target's customers who stay with the acquirer (the rest lose their habit and choose afresh).",
            unit="fraction of 1",
            required=True,
            lo=0,
            hi=1,
            uncertain=True,
        ),
        Field(
            "keep_brand",
            "boolean",
            "True: the target stays an option under the acquirer's ownership; false: it leaves the market.",
            default=False,
            source="the target's site closes",
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {"retention": ("{e}: customers retained", "%", 100.0)}

    @classmethod
    def parse(cls, r: Reading) -> Acquisition:
        a, t = r.get("acquirer"), r.get("target")
        if a == t:
            r.fail(f"{r.path}.target", f"{a} cannot buy itself; allowed: another retailer of this file")
        return cls(a, t, r.get("retention"), r.get("keep_brand"))

    def retailers_needed(self) -> tuple[str, ...]:
        return (self.acquirer, self.target)

    def leaves(self) -> tuple[tuple[str, str], ...]:
        return () if self.keep_brand else ((self.target, f"{self.acquirer} bought it"),)

    def apply(self, m: MarketState, step: int) -> None:
        """c_i <- acquirer for a retained share of the target's customers (access carried over), c_i <- none for
        the others; the target leaves unless it keeps its brand."""
        m.acquire(self.acquirer, self.target, self.retention, self.keep_brand, step)

    def file_fields(self, key, num, cal) -> dict:
        return {
            "acquirer": self.acquirer,
            "target": self.target,
            "retention": num(self.retention, f"{key}.retention"),
            "keep_brand": self.keep_brand,
        }

    def live_text(self) -> str:
        brand = "keeps its brand" if self.keep_brand else "closes"
        return f"{self.acquirer} buys {self.target} ({self.retention:.0%} of its customers retained; {self.target} {brand})"


@dataclass(frozen=True)
class AttractivenessChange(EventType):
    retailer: str
    utility: float
    over_days: int | None = None
    type: str = "attractiveness_change"

    doc: ClassVar[str] = (
        "The retailer's attractiveness alpha_j moves by `utility`: at once, or linearly over `over` days "
        "(logistics, assortment, service; docs/model.md 7). Recurring (every: year), it is a sale-like boost "
        "for the days it covers."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        _retailer_ref(),
        Field(
            "utility",
            "number",
            "Change of alpha_j (negative: worse). `marketsim validate` translates it into a change of a typical "
            "shopper's choice probability. On a recurring change, 'calibrate' fits it to observations of "
            "different lengths (docs/model.md section 8).",
            unit=UTILITY,
            required=True,
            lo=-20,
            hi=20,
            uncertain=True,
            calibrate=True,
        ),
        Field(
            "over",
            "integer",
            "Days over which the change builds up linearly from the event's date.",
            unit="days",
            lo=1,
            hi=36_500,
            nullable=True,
            default_text="at once",
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {
        "utility": ("{e}: utility added", "utility", 1.0),
        "over": ("{e}: days to build up", "days", 1.0),
    }
    recurs: ClassVar[bool] = True

    @classmethod
    def parse(cls, r: Reading) -> AttractivenessChange:
        return cls(r.get("retailer"), r.get("utility"), r.get("over"))

    def apply(self, m: MarketState, step: int) -> None:
        """alpha_j(t) += utility x min(1, days since the event / over) from this step."""
        m.shift_attractiveness(self.retailer, self.utility, step, self.over_days)

    def window(self) -> Window:
        return Window(retailer=self.retailer, utility=self.utility)

    def recurring_conflict(self):
        if self.over_days is not None:
            return (
                "over",
                "a recurring change lasts `days` each year and does not build up; allowed: days, without over",
            )
        return None

    def file_fields(self, key, num, cal) -> dict:
        out = {"retailer": self.retailer, "utility": num(self.utility, f"{key}.utility")}
        if self.over_days is not None:
            out["over"] = self.over_days
        return out

    def business_terms(self, key, when, t):
        how = "at once" if self.over_days is None else f"over {self.over_days} days"
        by = t.change(f"{key}.utility", self.utility, lambda x: x, self.retailer)
        return [
            (
                f"{key}.utility",
                self.utility,
                f"{self.retailer}'s attractiveness changes by {self.utility:+g} {when} ({how}): changes a typical "
                f"shopper's probability of choosing {self.retailer} by {by}",
            )
        ]

    def live_text(self) -> str:
        how = "" if self.over_days is None else f" over {self.over_days} days"
        return f"{self.retailer} attractiveness {self.utility:+.2f}{how}"


@dataclass(frozen=True)
class ShoppingRate(EventType):
    factor: float
    type: str = "shopping_rate"

    doc: ClassVar[str] = (
        "Market-wide: every consumer's shopping rate is multiplied by `factor` (no retailer). Recurring (every: "
        "year, days: N), it is a seasonal profile: more shoppers on the days of a big sale (docs/model.md 7); "
        "once, a lasting change from its date."
    )
    format_fields: ClassVar[tuple[Node, ...]] = (
        Field(
            "factor",
            "number",
            "Multiplier of consumers.shopping_rate (1 = unchanged); factor x shopping_rate must stay at most 1.",
            unit="x",
            required=True,
            lo=0,
            hi=100,
            uncertain=True,
        ),
    )
    labels: ClassVar[dict[str, tuple[str, str, float]]] = {"factor": ("{e}: factor", "x", 1.0)}
    recurs: ClassVar[bool] = True

    @classmethod
    def parse(cls, r: Reading) -> ShoppingRate:
        return cls(r.get("factor"))

    def apply(self, m: MarketState, step: int) -> None:
        m.set_shopping_factor(self.factor)

    def window(self) -> Window:
        return Window(shop_factor=self.factor)

    def file_fields(self, key, num, cal) -> dict:
        return {"factor": num(self.factor, f"{key}.factor")}

    def live_text(self) -> str:
        return f"shopping rate x{self.factor:g}"


# --------------------------------------------------------------------------- the registry


class Registry:
    """The event types a scenario file may use, by name, in the order the format lists them; ``effects``: those an
    event may carry as its effects (an equity stake's), in the order the format lists them there."""

    def __init__(self, types: Iterable[type[EventType]], effects: Iterable[type[EventType]] = ()):
        self.types: dict[str, type[EventType]] = {}
        for t in types:
            if t.type in self.types:
                raise ValueError(f"two event types named {t.type!r}")
            self.types[t.type] = t
        self.effect_types: tuple[str, ...] = tuple(t.type for t in effects)
        unknown = [n for n in self.effect_types if n not in self.types]
        if unknown:
            raise ValueError(f"effect types not registered: {', '.join(unknown)}")
        self._labels: dict[str, tuple[str, str, float]] = {}
        for t in self.types.values():
            for k, spec in t.labels.items():
                if self._labels.setdefault(k, spec) != spec:
                    raise ValueError(f"two event types label field {k!r} differently")
        self.effects_spec = Variants(
            "effects[]",
            "One effect of an equity stake.",
            "type",
            "What the effect does.",
            "effect type",
            {n: self.types[n].spec(self) for n in self.effect_types},
        )
        self.actions: dict[str, Block] = {n: t.spec(self) for n, t in self.types.items()}

    def with_types(self, *types: type[EventType], effect: bool = False) -> Registry:
        """A new registry: this one's types, then ``types`` (also as effect types if ``effect``)."""
        eff = [self.types[n] for n in self.effect_types] + (list(types) if effect else [])
        return Registry([*self.types.values(), *types], eff)

    def __getitem__(self, name: str) -> type[EventType]:
        return self.types[name]

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def required_keys(self, name: str) -> tuple[str, ...]:
        """The required fields of type ``name`` besides ``type``, in order (the first two name an event without id)."""
        return self.actions[name].required_keys

    def labels(self) -> dict[str, tuple[str, str, float]]:
        """Chart labels of every type's numeric fields: field -> (label with {e} = event, unit, scale)."""
        return dict(self._labels)


#: The event types, in the order the format and its reference list them.
TYPES: tuple[type[EventType], ...] = (
    RemoveLogin,
    AddLogin,
    SocialBoost,
    Promotion,
    PriceChange,
    EquityStake,
    Entry,
    Exit,
    Acquisition,
    AttractivenessChange,
    ShoppingRate,
)
#: The types an equity stake may carry as effects, in the order the format lists them.
EFFECT_TYPES: tuple[type[EventType], ...] = (SocialBoost, Promotion, AddLogin)
REGISTRY = Registry(TYPES, EFFECT_TYPES)
