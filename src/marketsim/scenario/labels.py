"""Human labels and display units of sweep parameters (dotted scenario paths) and outputs.

Tables and charts show ``retailers.JD.sso_share.weibo`` as "JD: share of customers logging in with Weibo"
in "%", and ``shift.gmv_share.JD`` as "JD: GMV share shift from the events" in "pp". A :class:`Quantity`
says how: ``display = stored value x scale``, then ``unit``. Shares (fractions of 1) are shown x100 in "%",
differences of shares x100 in "pp" (percentage points), money in millions of the market's currency.
Utilities are in logit units ("utility", docs/model.md section 12.8).

Known schema fields have an explicit entry below; any other path gets a readable form of the path itself
and no unit. A sweep file's ``label:`` replaces the label, never the unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from marketsim.scenario.eventtypes import REGISTRY

#: Provider names as they are written in prose.
PROVIDER_NAMES = {
    "qq": "QQ",
    "weibo": "Weibo",
    "wechat": "WeChat",
    "taobao": "Taobao",
    "sohu": "Sohu",
    "alipay": "Alipay",
    "baidu": "Baidu",
}


@dataclass(frozen=True)
class Quantity:
    """How a number is shown: ``label``, then values x ``scale`` in ``unit`` ("" = no unit)."""

    label: str
    unit: str = ""
    scale: float = 1.0

    def axis(self) -> str:
        """Axis or column label with its unit, e.g. "JD: GMV share (%)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def diff_unit(self) -> str:
        """Unit of a difference of two such values: a difference of shares in % is in percentage points."""
        return "pp" if self.unit == "%" else self.unit

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Quantity:
        return cls(str(d["label"]), str(d.get("unit", "")), float(d.get("scale", 1.0)))


PCT, PP = 100.0, 100.0

#: Top-level scenario fields: path -> (label, unit, scale). "{cur}" is the market's currency.
_FIELDS = {
    "friction.native": ("Cost of logging in with the retailer's own password", "utility", 1.0),
    "friction.sso": ("Cost of logging in with an accepted account", "utility", 1.0),
    "friction.link": ("Cost of a one-click sign-up with an accepted account", "utility", 1.0),
    "friction.create": ("Cost of creating a new account", "utility", 1.0),
    "behaviour.beta_price": ("Price sensitivity", "utility per log price", 1.0),
    "behaviour.beta_social": ("Social influence: weight of friends' purchases", "utility", 1.0),
    "behaviour.beta_habit": ("Habit: pull of the last retailer", "utility", 1.0),
    "behaviour.beta_friction": ("Weight of login friction", "x friction costs", 1.0),
    "consumers.count": ("Consumer agents simulated", "agents", 1.0),
    "consumers.shopping_rate": ("Share of consumers shopping each week", "%", PCT),
    "consumers.conversion": ("Share of shoppers who buy", "%", PCT),
    "consumers.basket.mean": ("Mean basket value", "{cur}", 1.0),
    "consumers.basket.sigma": ("Spread of basket values", "log-sd", 1.0),
    "market.size": ("Market size", "shoppers", 1.0),
    "calendar.steps": ("Weeks simulated", "steps", 1.0),
    "calendar.warmup": ("Warm-up before the first reported week", "steps", 1.0),
    "seed": ("Random seed", "", 1.0),
}

#: retailers.<R>.<field>: label template ({r} = retailer), unit, scale.
_RETAILER_FIELDS = {
    "initial_share": ("{r}: GMV share at the start", "%", PCT),
    "target_share": ("{r}: target GMV share of the fit", "%", PCT),
    "take_rate": ("{r}: take rate", "%", PCT),
    "margin": ("{r}: margin", "%", PCT),
    "price_index": ("{r}: price index", "1 = market price", 1.0),
    "attractiveness": ("{r}: attractiveness", "utility", 1.0),
}

#: providers.<P>.<field>: label template ({p} = provider), unit, scale.
_PROVIDER_FIELDS = {
    "penetration": ("Share of consumers with a {p} account", "%", PCT),
    "weight": ("Influence of {p} ties", "relative weight", 1.0),
    "network.m": ("{p} network: ties per new member", "ties", 1.0),
    "network.k": ("{p} network: neighbours per member", "neighbours", 1.0),
    "network.rewire": ("{p} network: rewired ties", "%", PCT),
    "network.mean_degree": ("{p} network: mean ties per member", "ties", 1.0),
}

#: events.<id>.<field> (also inside an event's effects): label template ({e} = event), unit, scale.
#: Each event type's fields come from its class (eventtypes.py); ``step`` is every event's.
_EVENT_FIELDS = {
    **REGISTRY.labels(),
    "step": ("{e}: week of the event", "step", 1.0),
}

#: Outputs METRIC.RETAILER: (level label, shift label, unit of a level, unit of a shift, scale).
_METRICS = {
    "gmv_share": ("{r}: GMV share", "{r}: GMV share shift from the events", "%", "pp", PCT),
    "buyer_share": ("{r}: share of buyers", "{r}: buyer share shift from the events", "%", "pp", PCT),
    "gmv": ("{r}: GMV per {step}", "{r}: GMV shift per {step} from the events", "{cur} m", "{cur} m", 1e-6),
    "revenue": ("{r}: revenue per {step}", "{r}: revenue shift per {step} from the events", "{cur} m", "{cur} m", 1e-6),
    "accounts_created": (
        "{r}: new accounts per {step}",
        "{r}: extra new accounts per {step} from the events",
        "accounts",
        "accounts",
        1.0,
    ),
}


def generic_labels() -> list[str]:
    """The label templates of the known fields that name no retailer, provider or event first ("Social influence:
    ...", "Cost of ...", "Share of consumers with a {p} account")."""
    return [v[0] for v in _FIELDS.values()] + [v[0] for v in _PROVIDER_FIELDS.values()]


def provider_name(p: str) -> str:
    return PROVIDER_NAMES.get(p.lower(), p[:1].upper() + p[1:])


def readable(path: str) -> str:
    """The generic fallback: ``behaviour.beta_foo`` -> "Behaviour: beta foo"; a single name stays as it is."""
    parts = [s.replace("_", " ") for s in path.split(".") if s]
    if len(parts) < 2:
        return path
    return f"{parts[0][:1].upper() + parts[0][1:]}: {' '.join(parts[1:])}"


def parameter_quantity(
    path: str, label: str | None = None, *, currency: str = "RMB", events: Mapping[str, str] | None = None
) -> Quantity:
    """Label and display unit of a scenario field given by its dotted path (a sweep parameter).

    ``label`` (the sweep file's, if given) replaces the default label; the unit stays that of the field.
    ``events`` (:func:`event_names` of the scenario) names an event's field by what the event does ("Alibaba buys
    18% of Weibo, effect 1 (social boost): factor") instead of by its id ("alibaba buys weibo stake (effect 0):
    factor")."""
    q = _known_parameter(path.split("."), currency, events or {}) or Quantity(readable(path))
    return Quantity(label, q.unit, q.scale) if label else q


def event_names(scenario) -> dict[str, str]:
    """What :func:`parameter_quantity` calls each event of ``scenario`` (``id`` -> :func:`event_label`) and each
    effect of an equity stake (``id.effects.K`` -> "EVENT, effect K+1 (its type in words)")."""
    out = {}
    for e in scenario.events:
        words = event_label(e, scenario.provider_names)
        out[e.id] = words
        for k, a in enumerate(e.actions()):
            if a is not e.action:
                out[f"{e.id}.effects.{k}"] = f"{words}, effect {k + 1} ({a.type.replace('_', ' ')})"
    return out


def _known_parameter(parts: list[str], currency: str, events: Mapping[str, str]) -> Quantity | None:
    def make(spec, **names) -> Quantity:
        lab, unit, scale = spec
        return Quantity(lab.format(**names), unit.format(cur=currency), scale)

    path = ".".join(parts)
    if path in _FIELDS:
        return make(_FIELDS[path])
    if len(parts) == 4 and parts[0] == "retailers" and parts[2] == "sso_share":
        return Quantity(f"{parts[1]}: share of customers logging in with {provider_name(parts[3])}", "%", PCT)
    if len(parts) == 3 and parts[0] == "retailers" and parts[2] in _RETAILER_FIELDS:
        return make(_RETAILER_FIELDS[parts[2]], r=parts[1])
    if len(parts) >= 3 and parts[0] == "providers" and ".".join(parts[2:]) in _PROVIDER_FIELDS:
        return make(_PROVIDER_FIELDS[".".join(parts[2:])], p=provider_name(parts[1]))
    if len(parts) >= 3 and parts[0] == "events" and parts[-1] in _EVENT_FIELDS:
        event = events.get(parts[1]) or parts[1].replace("_", " ")
        if len(parts) == 5 and parts[2] == "effects":  # events.<id>.effects.<k>.<field>
            event = events.get(".".join(parts[1:4])) or f"{event} (effect {parts[3]})"
        elif len(parts) != 3:
            return None
        return make(_EVENT_FIELDS[parts[-1]], e=event)
    return None


def output_quantity(name: str, *, currency: str = "RMB", step_days: int = 7) -> Quantity:
    """Label and display unit of a sweep output (``METRIC.RETAILER`` or ``shift.METRIC.RETAILER``)."""
    parts = name.split(".")
    shift = parts[0] == "shift"
    if shift:
        parts = parts[1:]
    if len(parts) != 2 or parts[0] not in _METRICS:
        return Quantity(readable(name))
    level, moved, unit, shift_unit, scale = _METRICS[parts[0]]
    step = "week" if step_days == 7 else f"{step_days} days"
    lab = (moved if shift else level).format(r=parts[1], step=step)
    return Quantity(lab, (shift_unit if shift else unit).format(cur=currency), scale)


def event_label(event, providers: tuple[str, ...] | list[str] = ()) -> str:
    """An event in a few words for a chart or a title, never its id: what its action does
    (``EventType.live_text``: "JD stops accepting Weibo login", "Alibaba buys 18% of Weibo"), each of the scenario's
    ``providers`` written as in prose (:func:`provider_name`)."""
    text = event.action.live_text()
    for p in providers:
        text = re.sub(rf"\b{re.escape(p)}\b", provider_name(p), text)
    return text


def events_label(events, providers: tuple[str, ...] | list[str] = (), none: str = "no event") -> str:
    """Several events in words, joined by "; " (``none`` if there are none)."""
    return "; ".join(event_label(e, providers) for e in events) or none
