"""What a scenario says, for the people who write it: the resolved scenario as a file, where each part of it comes
from, its uncertain parameters, and its utilities in business terms (``marketsim validate``).

* :func:`scenario_document` is the resolved scenario in the file format (defaults filled in, bases merged,
  uncertain parameters in their range or prior form): a file that loads back to the same scenario.
* :func:`provenance` says which file (and line) sets each top-level block, retailer and event.
* :func:`utility_effects` translates every promotion, migration cost, friction cost, social boost and price
  change into the change it makes to a typical shopper's probability of choosing the retailer
  (docs/scenarios.md, "Utilities in business terms"):

      p'_j / p_j - 1 = e^d / (1 + p_j (e^d - 1)) - 1

  where p_j is the shopper's probability of buying at j in a shopping week (``consumers.conversion`` times j's
  share in the latest observation of the primary source before the fit cut-off) and d the utility change.
* :func:`render` writes it all as one YAML document with comments.

Pure functions of a :class:`~marketsim.scenario.core.Scenario` (and of the files' own contents for provenance).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from marketsim.scenario.core import MERGE_KEYS, Event, Scenario, Series, Uncertain, item_key
from marketsim.scenario.eventtypes import Terms
from marketsim.scenario.schema import PRIORS, SCHEMA

WIDTH = 79  # comment lines fit an 80-column terminal
#: How the reason of a prior taken from a stored posterior begins (marketsim.scenario.posterior_file.provenance):
#: the provenance the validator prepends, dropped when the file is written back (it is made again on reading).
PROVENANCE = ("posterior of ", "ex-post posterior of ")


# --------------------------------------------------------------------------- the resolved scenario as a file


def _tidy(x: float) -> Any:
    """A float that is a whole number prints without ``.0`` (the validator reads both the same)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return int(x)
    return x


def uncertain_mapping(u: Uncertain) -> dict:
    """An uncertain parameter in the form a file writes it: ``{value, range, assumption}`` or ``{value, prior, ...,
    source}``."""
    m: dict[str, Any] = {"value": _tidy(u.value)}
    reason = u.reason
    if u.prior == "uniform":
        m["range"] = [_tidy(a) for a in u.args]
    elif u.posterior:  # taken from a stored posterior: name it (the draws are the file's), not its numbers
        m["prior"] = {"posterior": u.posterior[0], "parameter": u.posterior[1]}
        reason = reason.split("; ", 1)[1] if reason.startswith(PROVENANCE) and "; " in reason else reason
    else:
        m["prior"] = u.prior
        m.update({k: _tidy(a) for k, a in zip(PRIORS[u.prior][0], u.args, strict=True)})
    if reason.startswith("assumption: "):
        m["assumption"] = reason[len("assumption: ") :]
    else:
        m["source"] = reason
    return m


def _series(s: Series) -> Any:
    if s == Series.constant(float(s)):
        return _tidy(float(s))
    return {d: _tidy(v) for d, v in s.points}


def _action(a: Any, key: str, num, cal) -> dict:
    """The fields of one event action (or effect) in file form; ``key`` is its dotted path for uncertain values."""
    return a.file_fields(key, num, cal)


def events_in_file_order(sc: Scenario) -> list[Event]:
    """The events in the order the (merged) file lists them: the order they were validated in, so a file written
    in this order records its uncertain parameters in the same order (events themselves are sorted by step)."""
    by_id = {e.id: e for e in sc.events}
    raw = sc.raw.get("events") or []
    ids = [item_key(ev, "id") for ev in raw]
    if sorted(map(str, ids)) != sorted(by_id):
        return list(sc.events)
    return [by_id[i] for i in ids]


def has_observations(sc: Scenario) -> bool:
    """True if the scenario gives ``observations`` (not the ``target_share`` shorthand)."""
    return bool(sc.raw.get("observations"))


def scenario_document(sc: Scenario) -> dict:
    """The resolved scenario in the file format: every default filled in, ``base:`` files merged, events placed by
    date, 'calibrate' kept, uncertain parameters in their range or prior form. It loads back (without any base)
    to a scenario equal to ``sc``."""
    unc = {u.path: u for u in sc.uncertain}

    fit = set(sc.calibrated_events)

    def num(x: float, key: str) -> Any:
        if key in fit:
            return "calibrate"
        return uncertain_mapping(unc[key]) if key in unc else _tidy(x)

    cal, c = sc.calendar, sc.consumers
    doc: dict[str, Any] = {"schema": SCHEMA, "name": sc.name}
    if sc.description:
        doc["description"] = sc.description
    doc["seed"] = sc.seed
    doc["calendar"] = {"start": cal.start, "step_days": cal.step_days, "steps": cal.steps, "warmup": cal.warmup}
    doc["market"] = {"size": _series(sc.market_size), "currency": sc.currency}
    cons: dict[str, Any] = {"count": c.count, "shopping_rate": num(c.shopping_rate, "consumers.shopping_rate")}
    if c.conversion is not None:
        cons["conversion"] = num(c.conversion, "consumers.conversion")
    cons["turnover"] = num(c.turnover, "consumers.turnover")
    cons["basket"] = {"mean": _series(c.basket.mean), "sigma": num(c.basket.sigma, "consumers.basket.sigma")}
    doc["consumers"] = cons
    provs = {}
    for p in sc.providers:
        k = f"providers.{p.name}"
        d: dict[str, Any] = {"penetration": num(p.penetration, f"{k}.penetration")}
        if p.network is not None:
            d["network"] = {"model": p.network.model, **{n: _tidy(v) for n, v in p.network.params}}
        d["weight"] = num(p.weight, f"{k}.weight")
        provs[p.name] = d
    doc["providers"] = provs
    targets = not has_observations(sc)
    rets = []
    for r in sc.retailers:
        k = f"retailers.{r.name}"
        rate = "take_rate" if r.kind == "platform" else "margin"
        d = {
            "name": r.name,
            "kind": r.kind,
            rate: num(r.revenue_rate, f"{k}.{rate}"),
            "attractiveness": "calibrate" if r.attractiveness is None else num(r.attractiveness, f"{k}.attractiveness"),
            "trend": "calibrate" if r.trend is None else num(r.trend, f"{k}.trend"),
            "price_index": num(r.price_index, f"{k}.price_index"),
            "logins": list(r.logins),
            "initial_share": _tidy(r.initial_share),
        }
        if targets:
            d["target_share"] = _tidy(r.target_share)
        d["sso_share"] = {p: num(s, f"{k}.sso_share.{p}") for p, s in r.sso_share}
        if r.enters_later:
            d["enters_later"] = True
        rets.append(d)
    doc["retailers"] = rets
    b, f = sc.behaviour, sc.friction
    doc["behaviour"] = {
        n: num(getattr(b, n), f"behaviour.{n}") for n in ("beta_price", "beta_social", "beta_habit", "beta_friction")
    }
    doc["friction"] = {n: num(getattr(f, n), f"friction.{n}") for n in ("native", "sso", "link", "create")}
    doc["events"] = [
        {
            "id": e.id,
            "type": e.action.type,
            "date": e.date,
            **({"every": e.every, "days": e.days} if e.recurring else {}),
            **_action(e.action, f"events.{e.id}", num, cal),
        }
        for e in events_in_file_order(sc)
    ]
    if not targets:
        obs = []
        for o in sc.observations:
            if re.fullmatch(r"\d{4}", o.label):
                period: Any = int(o.label)
            elif re.fullmatch(r"\d{4}[QH]\d", o.label):
                period = o.label
            else:
                period = {"start": o.start, "end": o.end}
            d = {"source": o.source, "period": period, "shares": {n: _tidy(v) for n, v in o.shares}}
            if o.note:
                d["note"] = o.note
            if o.holdout:
                d["holdout"] = True
            obs.append(d)
        doc["observations"] = obs
        doc["primary_source"] = sc.primary_source
    doc["fit_until"] = sc.fit_until
    fc = sc.forecast
    doc["forecast"] = {} if fc.trend_after is None else {"trend_after": fc.trend_after}  # None: chosen by skill
    if fc.half_life_years is not None:
        doc["forecast"]["half_life_years"] = _tidy(fc.half_life_years)
    doc["forecast"]["trend_uncertainty"] = fc.trend_uncertainty
    return doc


# --------------------------------------------------------------------------- where each part comes from


@dataclass(frozen=True)
class Origin:
    """One file's contribution to a block or item: ``source:line`` and the keys it sets there."""

    source: str
    line: int | None
    keys: tuple[str, ...] = ()

    def text(self, with_keys: bool) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where} ({', '.join(self.keys)})" if with_keys and self.keys else where


@dataclass(frozen=True)
class Provenance:
    """Which files set each top-level key and each retailer (by name) and event (by id): origins root base first."""

    files: tuple[str, ...]
    blocks: dict[str, tuple[Origin, ...]]
    items: dict[tuple[str, str], tuple[Origin, ...]]
    removed: tuple[tuple[str, str, Origin], ...]  # (list, item key, where the removal is)

    def says(self, origins: Iterable[Origin]) -> str:
        """ "A:13" for one file; "B:7 (start, steps) over A:13" when a later file changes what an earlier set."""
        origins = list(origins)
        if not origins:
            return "a default (no file sets it)"
        top, rest = origins[-1], origins[:-1]
        out = top.text(with_keys=bool(rest))
        for o in reversed(rest):
            out += f" over {o.text(with_keys=o is not origins[0])}"
        return out


def provenance(layers) -> Provenance:
    """From the files a scenario is built of (:func:`marketsim.scenario.core.scenario_files`, root base first)."""
    blocks: dict[str, list[Origin]] = {}
    items: dict[tuple[str, str], list[Origin]] = {}
    removed = []
    for layer in layers:
        data, lines = layer.data, layer.lines
        for k, v in data.items():
            if k in ("base",):
                continue
            keys = tuple(map(str, v)) if isinstance(v, dict) else ()
            blocks.setdefault(str(k), []).append(Origin(layer.source, lines.lines.get(str(k)), keys))
        for lst, key in MERGE_KEYS.items():
            listed = data.get(lst)
            for i, item in enumerate(listed if isinstance(listed, list) else []):
                k = item_key(item, key)
                if k is None:
                    continue
                o = Origin(
                    layer.source,
                    lines.lines.get(f"{lst}[{i}]"),
                    tuple(str(x) for x in item if x != key) if isinstance(item, dict) else (),
                )
                if isinstance(item, dict) and item.get("remove") is True:
                    removed.append((lst, str(k), o))
                    items.pop((lst, str(k)), None)
                else:
                    items.setdefault((lst, str(k)), []).append(o)
    return Provenance(
        tuple(layer.source for layer in layers),
        {k: tuple(v) for k, v in blocks.items()},
        {k: tuple(v) for k, v in items.items()},
        tuple(removed),
    )


# --------------------------------------------------------------------------- utilities in business terms


@dataclass(frozen=True)
class Shopper:
    """A typical shopper: buys in ``conversion`` of its shopping weeks, at each retailer in proportion to
    ``shares``; ``basis`` says where these numbers come from."""

    conversion: float
    shares: dict[str, float]
    basis: str

    def p(self, retailer: str) -> float:
        """Probability of buying at ``retailer`` in a shopping week."""
        return self.conversion * self.shares[retailer]


def typical_shopper(sc: Scenario) -> Shopper:
    """Conversion and shares at the fit's targets: the latest observation of the primary source that the fit uses
    (retailers it leaves out share the rest in proportion to their initial shares); without a conversion (nothing
    fitted) the static logit of the given attractiveness."""
    names = sc.retailer_names
    init = {r.name: r.initial_share for r in sc.retailers}
    if sc.consumers.conversion is None:
        ex = {}
        for r in sc.retailers:
            assert r.attractiveness is not None  # nothing to fit without a conversion (the validator's rule)
            ex[r.name] = math.exp(r.attractiveness)
        tot = sum(ex.values())
        return Shopper(tot / (1 + tot), {n: ex[n] / tot for n in names}, "shares of the given attractiveness (logit)")
    obs = [o for o in sc.fit_observations() if o.source == sc.primary_source] or list(sc.fittable_observations)
    shares, basis = dict(init), "initial shares"  # (no fit: nothing calibrates)
    if obs:
        last = max(obs, key=lambda o: o.end)
        given = {n: v for n, v in last.shares if n in init}
        others = [n for n in names if n not in given]
        rest = max(0.0, 1 - sum(given.values()))
        w = sum(init[n] for n in others)
        shares = {**given, **{n: rest * (init[n] / w if w > 0 else 1 / len(others)) for n in others}}
        basis = "target shares" if last.source == "target_share" else f"{last.source} {last.label} shares"
    return Shopper(sc.consumers.conversion, shares, basis)


def choice_change(p: float, d: float) -> float:
    """Relative change of the probability ``p`` of choosing one option of a logit when its utility changes by ``d``
    (the others unchanged): ``e^d / (1 + p (e^d - 1)) - 1``."""
    e = math.exp(d)
    return e / (1 + p * (e - 1)) - 1


@dataclass(frozen=True)
class Effect:
    """One utility translated: ``path``: ``value``; ``text`` (the change, and over the range for an uncertain one)."""

    path: str
    value: float
    text: str


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%" if abs(x) >= 0.095 else f"{x * 100:+.1f}%"


def _ends(u: Uncertain | None) -> tuple[float, float] | None:
    """The ends of an uncertain parameter: its range, or the 5% and 95% points of its prior."""
    if u is None:
        return None
    if u.prior == "uniform":
        lo, hi = u.args
        return lo, hi
    lo, hi = (float(x) for x in u.ppf([0.05, 0.95]))
    return lo, hi


def utility_effects(sc: Scenario) -> tuple[Shopper, list[Effect]]:
    """Every promotion, migration cost, friction cost, social boost and price change as the change it makes to the
    typical shopper's probability of choosing the retailer (relative), at the scenario's own numbers."""
    shop = typical_shopper(sc)
    unc = {u.path: u for u in sc.uncertain}
    bf, fr = sc.behaviour.beta_friction, sc.friction
    out: list[Effect] = []

    def change(path: str, value: float, delta, retailer: str) -> str:
        """The relative change at ``value`` and, for an uncertain ``path``, at the ends of its range or prior."""
        text = _pct(choice_change(shop.p(retailer), delta(value)))
        ends = _ends(unc.get(path))
        if ends:
            a, b = (choice_change(shop.p(retailer), delta(x)) for x in ends)
            text += f" ({_pct(a)} .. {_pct(b)} over {ends[0]:.3g} .. {ends[1]:.3g})"
        return text

    def add(path: str, value: float, text: str):
        out.append(Effect(path, value, text))

    for name in ("native", "link", "create"):
        path, v = f"friction.{name}", getattr(fr, name)
        what = {
            "native": "logs in with its own password",
            "link": "signs up in one click with an accepted account",
            "create": "must create a new account",
        }[name]
        per = "; ".join(f"{r} {change(path, v, lambda x: -bf * (x - fr.sso), r)}" for r in sc.retailer_names)
        add(
            path,
            v,
            f"a shopper who {what} there (instead of a free single sign-on) is less likely to choose "
            f"the retailer: {per}",
        )
    terms = Terms(sc, shop, change)
    for e in sc.events:
        for k, a in enumerate(e.actions()):
            key = f"events.{e.id}" if a is e.action else f"events.{e.id}.effects.{k}"
            for path, value, text in a.business_terms(key, f"from {e.date}", terms):
                add(path, value, text)
    return shop, out


# --------------------------------------------------------------------------- the validate output


def timeline(sc: Scenario) -> list[str]:
    """Each event in words with its date (and step); a recurring effect with every date it fires in the calendar."""
    out = []
    for e in sc.events:
        what = e.action.live_text()
        if not e.recurring:
            out.append(f"{e.date} (step {e.step}) {e.id}: {what}")
            continue
        dates = [f"{a}" if a == b else f"{a}..{b}" for a, b in e.firings(sc.calendar)]
        each = "1 day" if e.days == 1 else f"{e.days} days"
        fires = ", ".join(dates) if dates else "never within the calendar"
        out.append(f"{e.id}: {what}, every year from {e.date} for {each}; fires {fires}")
    return out


def _comment(text: str, indent: str = "", bullet: bool = False) -> list[str]:
    """``text`` as comment lines within WIDTH columns (``bullet``: an item of a list under a comment heading)."""
    first, rest = (f"{indent}#   - ", f"{indent}#     ") if bullet else (f"{indent}# ", f"{indent}#   ")
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False, break_long_words=False
    )


def _dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=WIDTH, default_flow_style=False)


def render(sc: Scenario, *, given: str, prov: Provenance | None, settings: Iterable[str] = ()) -> str:
    """The ``marketsim validate`` output: a header of comments (where the scenario comes from, its uncertain
    parameters, its utilities in business terms), then the resolved scenario as a file, each block and each
    retailer and event with a comment saying which file sets it."""
    L: list[str] = _comment(f"{given}: valid ({sc.name}, schema {SCHEMA}, digest {sc.digest()[:12]})")
    L += _comment(
        "Below: the resolved scenario, itself a scenario file (defaults filled in, base files merged, "
        "events by date); `marketsim validate` reads it back to the same scenario."
    )
    if prov is not None and len(prov.files) > 1:
        L += _comment(
            "Built from: " + " <- ".join(prov.files) + " (each file changes what the ones before it "
            "set; retailers merge by name, events by id)."
        )
    settings = list(settings)
    if settings:
        L += _comment("Set on the command line: " + ", ".join(settings) + ".")
    if sc.events_outside:
        L += _comment(
            f"{len(sc.events_outside)} event(s) fall after the last step of this "
            f"{sc.calendar.steps}-step calendar: shown commented out (they never fire; a file may not hold them)."
        )
    L.append("#")
    if sc.uncertain:
        L += _comment(
            f"Uncertain parameters ({len(sc.uncertain)}): a run uses the value; `marketsim project` draws "
            "from the range or prior."
        )
        for u in sc.uncertain:
            L += _comment(f"{u.path}: {u.value:g}, {u.describe()}; {u.reason}", bullet=True)
    else:
        L += _comment("Uncertain parameters: none (every number is a point value).")
    L.append("#")
    shop, effects = utility_effects(sc)
    L += _comment(
        f"Utilities in business terms (docs/scenarios.md): a typical shopper buys in "
        f"{shop.conversion * 100:.0f}% of its shopping weeks, at the {shop.basis} ("
        + ", ".join(f"{n} {s * 100:.1f}%" for n, s in shop.shares.items())
        + "); each line is the relative change of its probability of choosing the retailer."
    )
    for e in effects:
        L += _comment(f"{e.path}: {e.value:g}; {e.text}", bullet=True)
    if sc.events:
        L.append("#")
        L += _comment(f"Timeline ({len(sc.events)} events, in the order they happen):")
        for line in timeline(sc):
            L += _comment(line, bullet=True)
    L.append("")
    doc = scenario_document(sc)
    outside = {e.id for e in sc.events_outside}
    for key, value in doc.items():
        origins = prov.blocks.get(key, ()) if prov is not None else ()
        if key in ("retailers", "events") and isinstance(value, list):
            if prov is not None:
                L += _comment(
                    f"{key}: merged by {MERGE_KEYS[key]}" + (f"; listed in {prov.says(origins)}" if origins else "")
                )
            if not value:
                L.append(f"{key}: []")
                continue
            L.append(f"{key}:")
            merge = MERGE_KEYS[key]
            for item in value:
                k = str(item[merge])
                if prov is not None:
                    L += _comment(f"{k}: {prov.says(prov.items.get((key, k), ()))}", "  ")
                text = textwrap.indent(_dump([item]), "  ")
                if key == "events" and k in outside:
                    text = textwrap.indent(text, "# ")
                L.append(text.rstrip("\n"))
            if prov is not None:
                for lst, k, o in prov.removed:
                    if lst == key:
                        L += _comment(f"{k}: removed by {o.text(False)}", "  ")
            continue
        text = _dump({key: value}).rstrip("\n")
        if not isinstance(value, dict):  # a value or a list that replaces the base's: only the last file counts
            origins = origins[-1:]
        if prov is not None and isinstance(value, (dict, list)):
            L += _comment(f"{key}: {prov.says(origins)}")
            L.append(text)
        elif prov is not None and "\n" not in text and len(f"{text}  # {prov.says(origins)}") <= WIDTH:
            L.append(f"{text}  # {prov.says(origins)}")
        else:
            if prov is not None:
                L += _comment(f"{key}: {prov.says(origins)}")
            L.append(text)
    return "\n".join(L) + "\n"
