"""Scenario files: the versioned schema, checked once at the boundary.

A scenario is a YAML file (``schema: marketsim/v1``) describing everything in
MODEL.md sections 1-7: calendar, market size, consumers, identity providers and
their social networks, retailers, behaviour coefficients, friction costs and
the event timeline. :func:`load_scenario` reads it with :mod:`marketsim.yamlsafe`
(plain data only; alias bombs, deep nesting and duplicate keys refused), validates every
field and returns a frozen :class:`Scenario`. Inside the package the types are
trusted: nothing re-checks them.

Every problem raises :class:`ScenarioError` with one line::

    scenarios/x.yaml:14: retailers[1].logins[0]: unknown provider 'wechat'; allowed: qq, sohu, taobao, weibo

Unknown keys are errors with a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import yamlsafe
from .errors import ScenarioError  # noqa: F401  (defined in errors.py so yamlsafe can raise it; re-exported here)

SCHEMA = "marketsim/v1"
SCHEMAS = (SCHEMA,)

#: Hard limits: anything beyond these is refused before work starts.
MAX_CONSUMERS = 10_000_000  # 10^7 rows x (a few int8/float arrays + two graph layers) ~ 5 GB: the most one 24 GB machine takes
MAX_STEPS = 5_200  # a century of weeks
MAX_MARKET_SIZE = 1e10  # more shoppers than people on Earth is a typo
MAX_RETAILERS = 50
MAX_PROVIDERS = 50

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- typed, frozen objects


@dataclass(frozen=True)
class Calendar:
    """Discrete time (MODEL.md section 1): step 0 starts on ``start``; a step lasts ``step_days`` days."""

    start: dt.date
    step_days: int
    steps: int
    warmup: int = 0  # unreported steps run before step 0 (no events) so habits and accounts settle

    def date_of(self, step: int) -> dt.date:
        return self.start + dt.timedelta(days=self.step_days * int(step))

    def step_of(self, date: dt.date) -> int:
        """The step during which ``date`` falls (floor)."""
        return (date - self.start).days // self.step_days

    def dates(self, steps: int | None = None) -> list[dt.date]:
        return [self.date_of(t) for t in range(self.steps if steps is None else steps)]


@dataclass(frozen=True)
class Basket:
    """Basket value per purchase, in the market's currency: LogNormal with this mean and log-sd ``sigma``."""

    mean: float
    sigma: float


@dataclass(frozen=True)
class Consumers:
    count: int  # N agents; each stands for market.size / N real shoppers
    shopping_rate: float  # probability a consumer shops in a step
    conversion: float | None  # share of shoppers who buy (pins calibration); None if nothing calibrates
    basket: Basket


@dataclass(frozen=True)
class Network:
    model: str  # a key of marketsim.network.GENERATORS
    params: tuple[tuple[str, float], ...]

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)


@dataclass(frozen=True)
class Provider:
    """An identity provider (``weibo``, ``qq``, ...): holders ~ Bernoulli(penetration); optional social layer."""

    name: str
    penetration: float
    network: Network | None
    weight: float  # influence weight w_p of its social layer


@dataclass(frozen=True)
class Retailer:
    name: str
    kind: str  # "platform" (earns take_rate x GMV) or "direct" (earns margin x GMV)
    revenue_rate: float  # take_rate or margin
    attractiveness: float | None  # alpha_j; None = fit by calibration
    price_index: float
    logins: tuple[str, ...]  # providers whose single sign-on it accepts
    initial_share: float
    target_share: float  # calibration target (defaults to initial_share)
    sso_share: tuple[tuple[str, float], ...]  # share of current customers logging in through p

    @property
    def calibrate(self) -> bool:
        return self.attractiveness is None


@dataclass(frozen=True)
class Behaviour:
    beta_price: float
    beta_social: float
    beta_habit: float
    beta_friction: float


@dataclass(frozen=True)
class Friction:
    """Login friction costs in utility units (MODEL.md section 5)."""

    native: float
    sso: float
    link: float
    create: float


# Event actions (MODEL.md section 7) ---------------------------------------


@dataclass(frozen=True)
class RemoveLogin:
    retailer: str
    provider: str
    migration_cost: float | None = None
    type: str = "remove_login"


@dataclass(frozen=True)
class AddLogin:
    retailer: str
    provider: str
    type: str = "add_login"


@dataclass(frozen=True)
class SocialBoost:
    layer: str
    retailer: str
    factor: float
    type: str = "social_boost"


@dataclass(frozen=True)
class Promotion:
    retailer: str
    audience: str | None  # a provider name, or None for everyone
    utility: float
    until_step: int | None = None  # last step (exclusive) the promotion is active; None = for ever
    type: str = "promotion"


@dataclass(frozen=True)
class PriceChange:
    retailer: str
    price_index: float
    type: str = "price_change"


@dataclass(frozen=True)
class EquityStake:
    investor: str
    target: str
    stake: float
    amount_usd: float | None
    effects: tuple[Any, ...]
    type: str = "equity_stake"


@dataclass(frozen=True)
class Event:
    """An action placed on the timeline at ``step`` (0-based; applied before that step's choices)."""

    id: str
    step: int
    date: dt.date
    action: Any

    def actions(self) -> tuple[Any, ...]:
        """The primitive actions this event performs (an equity stake performs its effects)."""
        if isinstance(self.action, EquityStake):
            return self.action.effects
        return (self.action,)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    calendar: Calendar
    market_size: float
    currency: str
    consumers: Consumers
    providers: tuple[Provider, ...]
    retailers: tuple[Retailer, ...]
    behaviour: Behaviour
    friction: Friction
    events: tuple[Event, ...]
    source: str = field(default="<scenario>", compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- convenience -----------------------------------------------------
    @property
    def retailer_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.retailers)

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.providers)

    def retailer_index(self, name: str) -> int:
        return self.retailer_names.index(name)

    def provider_index(self, name: str) -> int:
        return self.provider_names.index(name)

    @property
    def first_event_step(self) -> int | None:
        return min((e.step for e in self.events), default=None)

    @property
    def calibration_window(self) -> int:
        """Steps before the first event (at least 1; all steps if there is no event)."""
        first = self.first_event_step
        return max(1, self.calendar.steps if first is None else min(first, self.calendar.steps))

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario (defaults filled in) as plain JSON-able data."""
        return _jsonable(dataclasses.asdict(self, dict_factory=lambda kv: {k: v for k, v in kv if k not in ("raw", "source")}))

    def digest(self) -> str:
        """sha256 of the resolved scenario: two scenarios with the same digest simulate identically."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # --- derived scenarios (always re-validated) --------------------------
    def with_values(self, values: Mapping[str, Any]) -> "Scenario":
        """A new scenario with fields set by dotted path, e.g. ``{"retailers.JD.sso_share.weibo": 0.1}``.

        List items may be addressed by their ``name`` (retailers) or ``id`` (events) or by index.
        The result is validated again, so an impossible value raises :class:`ScenarioError`.
        """
        raw = copy.deepcopy(dict(self.raw))
        for path, value in values.items():
            set_path(raw, path, value)
        return parse_scenario(raw, source=f"{self.source} (with {', '.join(values)})")

    def with_overrides(self, *, seed: int | None = None, consumers: int | None = None, steps: int | None = None) -> "Scenario":
        vals: dict[str, Any] = {}
        if seed is not None:
            vals["seed"] = seed
        if consumers is not None:
            vals["consumers.count"] = consumers
        if steps is not None:
            vals["calendar.steps"] = steps
        return self.with_values(vals) if vals else self

    def without_events(self, ids: list[str] | None = None) -> "Scenario":
        """The counterfactual: this scenario minus the named events (all events if ``ids`` is None)."""
        known = [e.id for e in self.events]
        if ids is not None:
            for i in ids:
                if i not in known:
                    raise ScenarioError(f"unknown event {i!r}; events are: {', '.join(known) or '(none)'}{_suggest(i, known)}", source=self.source, path="events")
        raw = copy.deepcopy(dict(self.raw))
        evs = raw.get("events") or []
        keep = [] if ids is None else [ev for ev, e in zip(evs, self.events) if e.id not in ids]
        raw["events"] = keep
        return parse_scenario(raw, source=self.source)


# --------------------------------------------------------------------------- loading


#: The line map of a loaded file (field path -> file and line): see :class:`marketsim.yamlsafe.LineMap`.
_Lines = yamlsafe.LineMap


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` (one line) on any problem.

    A file may start from another with ``base: other.yaml`` (a path relative to the file): its mappings
    are merged key by key over the base's, anything else (lists, numbers) replaces the base's value.
    """
    data, lines = _read_with_bases(Path(path), ())
    return parse_scenario(data, source=str(path), lines=lines)


def _read_text(p: Path, source: str) -> str:
    """The text of a scenario file: only a regular UTF-8 file of bounded size (see :func:`marketsim.yamlsafe.read_file`)."""
    return yamlsafe.read_file(p, source=source)


def _safe_load(text: str, source: str) -> Any:
    """Plain data from YAML text, refusing hostile or ambiguous YAML (see :mod:`marketsim.yamlsafe`)."""
    return yamlsafe.load(text, source)[0]


def _read_with_bases(p: Path, seen: tuple[Path, ...], referrer: yamlsafe.Referrer | None = None) -> tuple[Any, "_Lines"]:
    source = str(p)
    data, lines = yamlsafe.load_file(p, source=source, referrer=referrer)
    if "base" not in data:
        return data, lines
    base = data["base"]
    if not isinstance(base, str):
        raise ScenarioError(f"expected the path of a base scenario file, got {_kind(base)}", source=source, path="base", line=lines.get("base"))
    bp = (p.parent / base).resolve()
    if bp in seen or bp == p.resolve():
        raise ScenarioError(f"{base!r} is already being read: bases form a cycle", source=source, path="base", line=lines.get("base"))
    ref = yamlsafe.Referrer(source, lines.get("base"), "base", f"base scenario {base[:200]!r}")
    bdata, blines = _read_with_bases(bp, seen + (p.resolve(),), ref)
    merged = _merge(bdata, {k: v for k, v in data.items() if k != "base"})
    return merged, lines.over(blines)


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def parse_text(text: str, source: str = "<scenario>") -> Scenario:
    data, lines = yamlsafe.load(text, source)
    return parse_scenario(data, source=source, lines=lines)


def parse_scenario(data: Any, source: str = "<scenario>", lines: "_Lines | None" = None) -> Scenario:
    """Validate plain data (as from ``yaml.safe_load``) into a frozen :class:`Scenario`."""
    v = _Validator(source, lines or _Lines(None, source))
    return v.scenario(data)


# --------------------------------------------------------------------------- the validator


def _suggest(key: str, allowed: list[str] | tuple[str, ...]) -> str:
    m = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


_MISSING = object()


class _Validator:
    def __init__(self, source: str, lines: _Lines):
        self.source, self.lines = source, lines

    def fail(self, path: str, msg: str) -> None:
        source, line = self.lines.find(path)
        raise ScenarioError(msg, source=source if line is not None else self.source, path=path, line=line)

    # --- primitives -------------------------------------------------------
    def mapping(self, x: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(x, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(required + optional)}, got {_kind(x)}")
        allowed = required + optional
        for k in x:
            if k not in allowed:
                self.fail(f"{path}.{k}" if path else str(k), f"unknown key {k!r}{_suggest(k, allowed)}; allowed: {', '.join(allowed)}")
        for k in required:
            if k not in x:
                self.fail(path or "(top level)", f"missing required key {k!r}")
        return x

    def number(self, x: Any, path: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, integer: bool = False) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            self.fail(path, f"expected {'an integer' if integer else 'a number'}, got {_kind(x)}")
        if isinstance(x, float) and not math.isfinite(x):
            self.fail(path, f"expected a finite number, got {x}")
        if integer and not float(x).is_integer():
            self.fail(path, f"expected an integer, got {x}")
        rng = _range_text(lo, hi, lo_open)
        if lo is not None and (x < lo or (lo_open and x == lo)):
            self.fail(path, f"{x} is out of range; allowed: {rng}")
        if hi is not None and x > hi:
            self.fail(path, f"{x} is out of range; allowed: {rng}")
        return int(x) if integer else float(x)

    def string(self, x: Any, path: str, choices: tuple[str, ...] | None = None, what: str = "value") -> str:
        if not isinstance(x, str):
            self.fail(path, f"expected a string, got {_kind(x)}")
        if choices is not None and x not in choices:
            self.fail(path, f"unknown {what} {x!r}{_suggest(x, choices)}; allowed: {', '.join(choices)}")
        return x

    def name(self, x: Any, path: str) -> str:
        s = self.string(x, path)
        if not NAME_RE.match(s):
            self.fail(path, f"invalid name {s!r}; allowed: a letter then letters, digits or _")
        return s

    def date(self, x: Any, path: str) -> dt.date:
        if isinstance(x, dt.datetime):
            return x.date()
        if isinstance(x, dt.date):
            return x
        if isinstance(x, str):
            try:
                return dt.date.fromisoformat(x)
            except ValueError:
                pass
        self.fail(path, f"expected a date YYYY-MM-DD, got {x!r}")
        raise AssertionError

    # --- sections ---------------------------------------------------------
    def scenario(self, d: Any) -> Scenario:
        d = self.mapping(
            d, "", ("schema", "name", "calendar", "market", "consumers", "providers", "retailers"),
            ("description", "seed", "behaviour", "friction", "events"),
        )
        schema = d["schema"]
        if schema not in SCHEMAS:
            self.fail("schema", f"unsupported schema {schema!r}; allowed: {', '.join(SCHEMAS)}")
        name = self.string(d["name"], "name")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
            self.fail("name", f"invalid scenario name {name!r}; allowed: letters, digits, '_', '-', '.' (it names the results folder)")
        description = self.string(d.get("description", ""), "description")
        seed = self.number(d.get("seed", 0), "seed", 0, 2**63 - 1, integer=True)
        cal = self.calendar(d["calendar"])
        market = self.mapping(d["market"], "market", ("size",), ("currency",))
        size = self.number(market["size"], "market.size", 0, MAX_MARKET_SIZE, lo_open=True)
        currency = self.string(market.get("currency", "RMB"), "market.currency")
        providers = self.providers(d["providers"])
        pnames = tuple(p.name for p in providers)
        retailers = self.retailers(d["retailers"], pnames)
        consumers = self.consumers(d["consumers"], any(r.calibrate for r in retailers))
        behaviour = self.behaviour(d.get("behaviour", {}))
        friction = self.friction(d.get("friction", {}))
        events = self.events(d.get("events") or [], cal, pnames, tuple(r.name for r in retailers))
        return Scenario(
            name=name, description=description, seed=seed, calendar=cal, market_size=size, currency=currency,
            consumers=consumers, providers=providers, retailers=retailers, behaviour=behaviour, friction=friction,
            events=events, source=self.source, raw=copy.deepcopy(d),
        )

    def calendar(self, d: Any) -> Calendar:
        d = self.mapping(d, "calendar", ("start", "steps"), ("step_days", "warmup"))
        return Calendar(
            start=self.date(d["start"], "calendar.start"),
            step_days=self.number(d.get("step_days", 7), "calendar.step_days", 1, 366, integer=True),
            steps=self.number(d["steps"], "calendar.steps", 1, MAX_STEPS, integer=True),
            warmup=self.number(d.get("warmup", 0), "calendar.warmup", 0, MAX_STEPS, integer=True),
        )

    def consumers(self, d: Any, needs_conversion: bool) -> Consumers:
        d = self.mapping(d, "consumers", ("count", "shopping_rate", "basket"), ("conversion",))
        b = self.mapping(d["basket"], "consumers.basket", ("mean",), ("sigma",))
        conv = d.get("conversion")
        if conv is None and needs_conversion:
            self.fail("consumers", "missing required key 'conversion' (share of shoppers who buy): a retailer's attractiveness is 'calibrate', and shares alone fix it only up to a constant")
        return Consumers(
            count=self.number(d["count"], "consumers.count", 1, MAX_CONSUMERS, integer=True),
            shopping_rate=self.number(d["shopping_rate"], "consumers.shopping_rate", 0, 1, lo_open=True),
            conversion=None if conv is None else self.number(conv, "consumers.conversion", 0.001, 0.999),
            basket=Basket(
                mean=self.number(b["mean"], "consumers.basket.mean", 0, 1e7, lo_open=True),
                sigma=self.number(b.get("sigma", 0.0), "consumers.basket.sigma", 0, 5),
            ),
        )

    NETWORK_PARAMS = {
        "barabasi_albert": {"m": (1, 100, True)},
        "watts_strogatz": {"k": (2, 200, True), "rewire": (0.0, 1.0, False)},
        "erdos_renyi": {"mean_degree": (0.0, 200.0, False)},
    }

    def providers(self, d: Any) -> tuple[Provider, ...]:
        if not isinstance(d, dict) or not d:
            self.fail("providers", f"expected a non-empty mapping of provider name -> settings, got {_kind(d)}")
        if len(d) > MAX_PROVIDERS:
            self.fail("providers", f"{len(d)} providers; allowed: at most {MAX_PROVIDERS}")
        out = []
        for pname, spec in d.items():
            path = f"providers.{pname}"
            self.name(pname, path)
            spec = self.mapping(spec, path, ("penetration",), ("network", "weight"))
            net = None
            if spec.get("network") is not None:
                nd = spec["network"]
                npath = f"{path}.network"
                if not isinstance(nd, dict) or "model" not in nd:
                    self.fail(npath, "expected a mapping with 'model' (barabasi_albert, watts_strogatz, erdos_renyi) and its parameters")
                model = self.string(nd["model"], f"{npath}.model", tuple(self.NETWORK_PARAMS), what="network model")
                pspec = self.NETWORK_PARAMS[model]
                self.mapping(nd, npath, ("model", *pspec))
                params = []
                for k, (lo, hi, integer) in pspec.items():
                    val = self.number(nd[k], f"{npath}.{k}", lo, hi, integer=integer)
                    params.append((k, val))
                if model == "watts_strogatz" and dict(params)["k"] % 2:
                    self.fail(f"{npath}.k", f"{dict(params)['k']} is odd; allowed: an even number (k/2 neighbours on each side of the ring)")
                net = Network(model, tuple(params))
            out.append(Provider(
                name=pname,
                penetration=self.number(spec["penetration"], f"{path}.penetration", 0, 1),
                network=net,
                weight=self.number(spec.get("weight", 1.0), f"{path}.weight", 0, 100),
            ))
        return tuple(out)

    def retailers(self, d: Any, pnames: tuple[str, ...]) -> tuple[Retailer, ...]:
        if not isinstance(d, list) or not d:
            self.fail("retailers", f"expected a non-empty list of retailers, got {_kind(d)}")
        if len(d) > MAX_RETAILERS:
            self.fail("retailers", f"{len(d)} retailers; allowed: at most {MAX_RETAILERS}")
        out, seen = [], set()
        for i, r in enumerate(d):
            path = f"retailers[{i}]"
            r = self.mapping(r, path, ("name", "kind", "initial_share"),
                             ("attractiveness", "price_index", "take_rate", "margin", "logins", "target_share", "sso_share"))
            name = self.name(r["name"], f"{path}.name")
            if name in seen:
                self.fail(f"{path}.name", f"duplicate retailer name {name!r}; names must be unique")
            seen.add(name)
            kind = self.string(r["kind"], f"{path}.kind", ("platform", "direct"), what="kind")
            rate_key, other = ("take_rate", "margin") if kind == "platform" else ("margin", "take_rate")
            if other in r:
                self.fail(f"{path}.{other}", f"a {kind} retailer earns by {rate_key}, not {other}; use {rate_key}")
            rate = self.number(r.get(rate_key, 0.0), f"{path}.{rate_key}", 0, 1)
            att = r.get("attractiveness", "calibrate")
            if att == "calibrate":
                alpha = None
            else:
                if isinstance(att, str):
                    self.fail(f"{path}.attractiveness", f"expected a number or 'calibrate', got {att!r}")
                alpha = self.number(att, f"{path}.attractiveness", -50, 50)
            logins = r.get("logins", [])
            if not isinstance(logins, list):
                self.fail(f"{path}.logins", f"expected a list of provider names, got {_kind(logins)}")
            for k, p in enumerate(logins):
                self.string(p, f"{path}.logins[{k}]", pnames, what="provider")
            if len(set(logins)) != len(logins):
                self.fail(f"{path}.logins", "a provider is listed twice")
            sso = r.get("sso_share", {}) or {}
            if not isinstance(sso, dict):
                self.fail(f"{path}.sso_share", f"expected a mapping provider -> share, got {_kind(sso)}")
            sso_items = []
            for p, s in sso.items():
                self.string(p, f"{path}.sso_share.{p}", pnames, what="provider")
                if p not in logins:
                    self.fail(f"{path}.sso_share.{p}", f"{name} does not accept {p} login; allowed: providers in its logins ({', '.join(logins) or 'none'})")
                sso_items.append((p, self.number(s, f"{path}.sso_share.{p}", 0, 1)))
            if sum(s for _, s in sso_items) > 1 + 1e-9:
                self.fail(f"{path}.sso_share", f"shares sum to {sum(s for _, s in sso_items):.4g}; allowed: at most 1 (the rest use native accounts)")
            init = self.number(r["initial_share"], f"{path}.initial_share", 0, 1)
            target = self.number(r.get("target_share", init), f"{path}.target_share", 0, 1)
            if alpha is None and target <= 0:
                self.fail(f"{path}.target_share", "a retailer calibrated to a zero share has attractiveness minus infinity; allowed: a share > 0, or give 'attractiveness'")
            out.append(Retailer(
                name=name, kind=kind, revenue_rate=rate, attractiveness=alpha,
                price_index=self.number(r.get("price_index", 1.0), f"{path}.price_index", 0.01, 100),
                logins=tuple(logins), initial_share=init, target_share=target, sso_share=tuple(sso_items),
            ))
        for key in ("initial_share", "target_share"):
            tot = sum(getattr(r, key) for r in out)
            if abs(tot - 1) > 1e-6:
                self.fail("retailers", f"{key} values sum to {tot:.6g}; they must sum to 1 (add a retailer for the rest of the market)")
        return tuple(out)

    def behaviour(self, d: Any) -> Behaviour:
        keys = ("beta_price", "beta_social", "beta_habit", "beta_friction")
        d = self.mapping(d, "behaviour", (), keys)
        # Defaults documented in docs/model.md; the bundled scenarios state and source their own.
        dflt = {"beta_price": 2.0, "beta_social": 1.0, "beta_habit": 1.0, "beta_friction": 1.0}
        return Behaviour(**{k: self.number(d.get(k, dflt[k]), f"behaviour.{k}", 0, 100) for k in keys})

    def friction(self, d: Any) -> Friction:
        keys = ("native", "sso", "link", "create")
        d = self.mapping(d, "friction", (), keys)
        dflt = {"native": 0.2, "sso": 0.0, "link": 0.5, "create": 2.0}
        return Friction(**{k: self.number(d.get(k, dflt[k]), f"friction.{k}", 0, 100) for k in keys})

    # --- events -------------------------------------------------------------
    ACTION_KEYS = {
        "remove_login": (("retailer", "provider"), ("migration_cost",)),
        "add_login": (("retailer", "provider"), ()),
        "social_boost": (("layer", "retailer", "factor"), ()),
        "promotion": (("retailer", "utility"), ("audience", "until")),
        "price_change": (("retailer", "price_index"), ()),
        "equity_stake": (("investor", "target", "stake"), ("amount_usd", "effects")),
    }
    EFFECT_TYPES = ("social_boost", "promotion", "add_login")

    def events(self, d: Any, cal: Calendar, pnames, rnames) -> tuple[Event, ...]:
        if not isinstance(d, list):
            self.fail("events", f"expected a list of events, got {_kind(d)}")
        out, ids = [], set()
        for i, e in enumerate(d):
            path = f"events[{i}]"
            if not isinstance(e, dict):
                self.fail(path, f"expected a mapping with 'type' and 'date' or 'step', got {_kind(e)}")
            etype = self.string(e.get("type"), f"{path}.type", tuple(self.ACTION_KEYS), what="event type") if "type" in e else self.fail(path, f"missing required key 'type'; allowed: {', '.join(self.ACTION_KEYS)}")
            req, opt = self.ACTION_KEYS[etype]
            self.mapping(e, path, ("type", *req), ("id", "date", "step", "note", *opt))
            if ("date" in e) == ("step" in e):
                self.fail(path, "give exactly one of 'date' (YYYY-MM-DD) or 'step' (0-based)")
            if "date" in e:
                date = self.date(e["date"], f"{path}.date")
                if date < cal.start:
                    self.fail(f"{path}.date", f"{date} is before the scenario starts ({cal.start}); allowed: on or after {cal.start}")
                step = cal.step_of(date)
            else:
                step = self.number(e["step"], f"{path}.step", 0, MAX_STEPS, integer=True)
                date = cal.date_of(step)
            if "note" in e:
                self.string(e["note"], f"{path}.note")
            action = self.action(etype, e, path, cal, pnames, rnames, allow_effects=True)
            default_id = ":".join([etype] + [str(getattr(action, k)) for k in req[:2]])
            eid = self.string(e["id"], f"{path}.id") if "id" in e else default_id
            if eid in ids:
                self.fail(f"{path}.id", f"duplicate event id {eid!r}; give each event a unique 'id'")
            ids.add(eid)
            out.append(Event(id=eid, step=step, date=date, action=action))
        out.sort(key=lambda ev: ev.step)  # stable: file order within a step
        return tuple(out)

    def action(self, etype, e, path, cal, pnames, rnames, allow_effects):
        def retailer(key="retailer"):
            return self.string(e[key], f"{path}.{key}", rnames, what="retailer")

        def provider(key="provider"):
            return self.string(e[key], f"{path}.{key}", pnames, what="provider")

        if etype == "remove_login":
            mc = e.get("migration_cost")
            return RemoveLogin(retailer(), provider(), None if mc is None else self.number(mc, f"{path}.migration_cost", 0, 100))
        if etype == "add_login":
            return AddLogin(retailer(), provider())
        if etype == "social_boost":
            return SocialBoost(provider("layer"), retailer(), self.number(e["factor"], f"{path}.factor", 0, 100))
        if etype == "promotion":
            aud = e.get("audience", "everyone")
            aud = None if aud == "everyone" else self.string(aud, f"{path}.audience", pnames + ("everyone",), what="audience")
            until = None
            if e.get("until") is not None:
                u = e["until"]
                if isinstance(u, int) and not isinstance(u, bool):
                    until = self.number(u, f"{path}.until", 0, MAX_STEPS, integer=True)
                else:
                    until = cal.step_of(self.date(u, f"{path}.until"))
            return Promotion(retailer(), aud, self.number(e["utility"], f"{path}.utility", -20, 20), until)
        if etype == "price_change":
            return PriceChange(retailer(), self.number(e["price_index"], f"{path}.price_index", 0.01, 100))
        if etype == "equity_stake":
            if not allow_effects:
                self.fail(path, "an equity_stake cannot be the effect of another")
            effects = e.get("effects", []) or []
            if not isinstance(effects, list):
                self.fail(f"{path}.effects", f"expected a list of effects, got {_kind(effects)}")
            acts = []
            for k, eff in enumerate(effects):
                ep = f"{path}.effects[{k}]"
                if not isinstance(eff, dict) or "type" not in eff:
                    self.fail(ep, f"expected a mapping with 'type' ({', '.join(self.EFFECT_TYPES)})")
                et = self.string(eff["type"], f"{ep}.type", self.EFFECT_TYPES, what="effect type")
                req, opt = self.ACTION_KEYS[et]
                self.mapping(eff, ep, ("type", *req), opt)
                acts.append(self.action(et, eff, ep, cal, pnames, rnames, allow_effects=False))
            amt = e.get("amount_usd")
            return EquityStake(
                investor=self.string(e["investor"], f"{path}.investor"),
                target=self.string(e["target"], f"{path}.target"),
                stake=self.number(e["stake"], f"{path}.stake", 0, 1, lo_open=True),
                amount_usd=None if amt is None else self.number(amt, f"{path}.amount_usd", 0, 1e13),
                effects=tuple(acts),
            )
        raise AssertionError(etype)


# --------------------------------------------------------------------------- helpers


def _kind(x: Any) -> str:
    if x is None:
        return "nothing"
    if isinstance(x, bool):
        return f"boolean {x}"
    if isinstance(x, (int, float)):
        return f"number {x}"
    if isinstance(x, str):
        return f"string {x!r}"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "a mapping"
    return type(x).__name__


def _range_text(lo, hi, lo_open) -> str:
    if lo is not None and hi is not None:
        return f"{lo} {'<' if lo_open else '<='} x <= {hi:g}"
    if lo is not None:
        return f"x {'>' if lo_open else '>='} {lo}"
    return f"x <= {hi}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dt.date):
        return x.isoformat()
    return x


def set_path(raw: dict, path: str, value: Any) -> None:
    """Set ``value`` at dotted ``path`` in raw scenario data. List items match by ``name``/``id`` or index.

    Raises :class:`KeyError` with a clear message if a part of the path does not exist (the last key may be new
    only inside a mapping that already exists).
    """
    parts = path.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            idx = None
            for k, item in enumerate(node):
                if isinstance(item, dict) and part in (item.get("name"), item.get("id")):
                    idx = k
            if idx is None and part.isdigit() and int(part) < len(node):
                idx = int(part)
            if idx is None:
                names = [str(i.get("name", i.get("id"))) for i in node if isinstance(i, dict)]
                raise KeyError(f"{where}: no item named {part!r}{_suggest(part, names)}; items: {', '.join(names)}")
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node:
                    if parts[depth + 1:] and depth + 1 == len(parts) - 1 and part in ("sso_share", "behaviour", "friction"):
                        node[part] = {}
                    else:
                        raise KeyError(f"{where}: no such field{_suggest(part, list(node))}; fields: {', '.join(map(str, node))}")
                node = node[part]
        else:
            raise KeyError(f"{where}: cannot go inside a {_kind(node)}")


# --------------------------------------------------------------------------- shared with other file schemas

#: The validation helpers, public for the other versioned file formats (sweep files) so they report
#: errors the same way: ``file:line: field.path: problem; allowed: ...``.
Validator = _Validator
did_you_mean = _suggest


def read_yaml(path: str | Path) -> tuple[Any, _Lines]:
    """Read a YAML file safely: (data, line map for error messages). The top level must be a mapping.
    Raises :class:`ScenarioError`."""
    return yamlsafe.load_file(path, source=str(path))
