"""The live browser page: a scenario and its counterfactual stepping side by side, with the controls.

Run it with ``marketsim viz SCENARIO [--host 127.0.0.1] [--port 8765] [--consumers N] [--max-sessions N]``, or Solara's
way: ``solara run marketsim.viz.page`` (scenario from $MARKETSIM_VIZ_SCENARIO, default
the bundled battle_lines_2013). With :mod:`marketsim.viz.server` the only modules that import solara; the model
(:mod:`marketsim.mesa_model.live`) does not know it exists.

The page is built from Solara components around :class:`~marketsim.mesa_model.live.LiveModel` (a ``mesa.Model``): two
:class:`~marketsim.engine.market.Market` s on one World, attractiveness and seed, the scenario and the same
scenario without its events (common random numbers, as in :mod:`marketsim.experiments.projection`), so that the gap
between them is the effect of the events and not noise. Mesa's SolaraViz is not used: its page always
shows its own controls (play interval, render interval, threads, page tabs) that mean nothing here.

The pictures are SVG written here from a few arrays (no plotting library in the step's path): a step
reaches the screen in tens of milliseconds at 100,000 consumers (``benchmarks/viz_latency.py``).
The agent picture draws a sample of a few hundred consumers chosen once per model (a snowball sample over
the social layers, so that it has ties), laid out once; only their colours change as the model steps.

Importing this module imports solara (it defines the ``Page`` component ``solara run`` looks for) but
builds nothing: each browser session builds its own model, in a background thread, when its page first
renders.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import solara
import solara.lab

from marketsim.engine.outputs import move_event
from marketsim.errors import UserError
from marketsim.figures import labels as placement  # where labels go (one routine for every chart)
from marketsim.figures.plots import retailer_colors  # the colours of every other chart
from marketsim.fit.calibrate import CalibrationError
from marketsim.mesa_model.live import MODELS, LiveModel, fitted_alpha, fitted_events
from marketsim.report import numbers
from marketsim.report.numbers import count, points, share
from marketsim.scenario import bundled, eventtypes, fieldspec, labels
from marketsim.scenario.core import Scenario, load_scenario
from marketsim.viz.decide import DecidePage, StoredPage, query_value

#: Seconds between steps while playing.
PLAY_PERIOD = 0.25
#: Seeds the scenario format accepts.
SEED_MAX = 2**63 - 1
#: Live sessions (browser tabs) a server holds a model for, unless $MARKETSIM_VIZ_MAX_SESSIONS says otherwise.
MAX_SESSIONS = 4


def _env_scenario() -> Path:
    return Path(os.environ.get("MARKETSIM_VIZ_SCENARIO") or bundled.path(bundled.HEADLINE))


def _env_consumers() -> int | None:
    v = os.environ.get("MARKETSIM_VIZ_CONSUMERS")
    return int(v) if v else None


# --------------------------------------------------------------------------- the model behind the page


# --------------------------------------------------------------------------- the knobs


@dataclass(frozen=True)
class Knob:
    """A control of the page: what it sets (``path`` in the scenario), its range and how its value reads.

    ``kind``: ``number`` (a slider over ``lo`` .. ``hi`` in stored units, e.g. a fraction), ``week`` (a slider over
    the steps of the calendar that moves a one-off event: ``path`` is its ``date`` or ``step``) or ``switch`` (an
    event on or off: value 1 or 0; ``path`` is ``events.ID``). ``group``: the event it belongs to ("" for the
    market's general settings). ``unit`` and ``scale`` are the display unit (``display = value x scale``,
    :func:`marketsim.scenario.labels.parameter_quantity`); ``note`` says where the range comes from (the
    scenario's stated range or prior and its reason, or the assumption behind a range the page chose)."""

    key: str
    label: str
    path: str
    value: float  # the scenario's own value
    lo: float
    hi: float
    step: float
    fmt: Callable[[float], str]  # value -> text with its unit
    integer: bool = False
    kind: str = "number"
    group: str = ""
    unit: str = ""
    scale: float = 1.0
    note: str = ""


def _utils(x: float) -> str:
    return f"{x:.2f} utils"


#: The behaviour every scenario has, always offered: (path, low, high). The range 0 to 5 utility units is an
#: assumption (it covers the values docs/model.md section 12.8 discusses); a scenario that states a range for one
#: of them (its ``uncertain`` block) gets that range instead.
CORE_KNOBS = (("behaviour.beta_social", 0.0, 5.0), ("behaviour.beta_habit", 0.0, 5.0), ("friction.create", 0.0, 5.0))
#: A number of an event the scenario states without a range gets a slider over its allowed values (the format's)
#: within this many times max(|value|, 1) on either side of its value: an assumption (a slider over utility
#: -20 .. 20 could not set 0.1 by hand).
EVENT_SPAN = 2.0


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 2


def _formatter(unit: str, scale: float, step: float, integer: bool) -> Callable[[float], str]:
    """Value (stored units) -> text in the display unit: utilities as "0.50 utils", shares as "5.0%", factors
    as "x1.50", others as "<number> <unit>"."""
    if unit == "utility":
        return _utils
    d = 0 if integer else _decimals(step * scale)
    if unit == "%":
        return lambda v: f"{v * scale:.{d}f}%"
    if unit == "x":
        return lambda v: f"x{v * scale:.{max(d, 1)}f}"
    if " " in unit:  # a unit in words ("1 = market price")
        return lambda v: f"{v * scale:.{d}f} ({unit})"
    return lambda v: f"{v * scale:.{d}f} {unit}".rstrip()


def _number_knob(
    path: str,
    value: float,
    lo: float,
    hi: float,
    note: str,
    currency: str,
    group: str = "",
    integer: bool = False,
    events: dict[str, str] | None = None,
) -> Knob:
    q = labels.parameter_quantity(path, currency=currency, events=events)
    lo, hi = min(lo, value), max(hi, value)
    step = max(1.0, round(_nice_step(hi - lo, 100))) if integer else _nice_step(hi - lo, 100)
    return Knob(
        path,
        q.label,
        path,
        value,
        lo,
        hi,
        step,
        _formatter(q.unit, q.scale, step, integer),
        integer,
        "number",
        group,
        q.unit,
        q.scale,
        note,
    )


def _uncertain_knob(u, currency: str, group: str = "", events: dict[str, str] | None = None) -> Knob:
    """A slider over an uncertain parameter's stated range (a uniform range's ends; for another prior its 2.5% and
    97.5% points, within the field's bounds)."""
    if u.prior == "uniform":
        lo, hi = float(u.args[0]), float(u.args[1])
    else:
        lo, hi = (float(v) for v in u.ppf(np.array([0.025, 0.975])))
    what = "" if u.prior == "uniform" else "95% of the prior: "
    note = f"{what}{u.describe()}; {u.reason}"
    return _number_knob(u.path, float(u.value), lo, hi, note, currency, group, u.integer, events)


def _raw_item(items: Any, key: str) -> dict:
    """The item of a raw list named or identified ``key`` ({} if none)."""
    return next((i for i in items or [] if isinstance(i, dict) and key in (i.get("id"), i.get("name"))), {})


def _field_knobs(
    action, raw: dict, prefix: str, uncertain: dict, currency: str, group: str, events: dict[str, str] | None = None
) -> list[Knob]:
    """Sliders for the numbers of one action (its type's format fields, from the registry), set in the file at
    ``prefix`` (``events.ID`` or ``events.ID.effects.K``) as ``raw``; a field the type declares ``inert`` (a record
    that changes nothing) has none, nor a field the file leaves out or gives as 'calibrate'."""
    cls = eventtypes.REGISTRY[action.type]
    out = []
    for f in cls.format_fields:
        if not isinstance(f, fieldspec.Field) or f.type not in ("number", "integer") or f.key in cls.inert:
            continue
        path = f"{prefix}.{f.key}"
        if path in uncertain:
            out.append(_uncertain_knob(uncertain[path], currency, group, events))
            continue
        v = raw.get(f.key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        w = EVENT_SPAN * max(abs(v), 1.0)
        lo = v - w if f.lo is None else max(f.lo, v - w)
        hi = v + w if f.hi is None else min(f.hi, v + w)
        lo = v if f.lo_open and lo <= f.lo else lo
        note = (
            f"range: the values the format allows ({f.lo:g} to {f.hi:g}) within {EVENT_SPAN:g} x max(|value|, 1) of "
            f"the scenario's {v:g} (assumption: the scenario states no range)"
        )
        out.append(_number_knob(path, float(v), lo, hi, note, currency, group, f.type == "integer", events))
    return out


def knobs(scenario: Scenario) -> list[Knob]:
    """The page's controls for ``scenario``, derived from it and the format's definitions (nothing per scenario):
    first the market's general settings (the behaviour every scenario has, :data:`CORE_KNOBS`, and each of the
    scenario's own uncertain parameters outside its events, over their stated ranges), then per event in time order
    its on/off switch, the week of a one-off event, and a slider for each number its type declares
    (:data:`marketsim.scenario.eventtypes.REGISTRY`; an equity stake's effects too), over the scenario's stated
    range where it gives one. Labels and units: :func:`marketsim.scenario.labels.parameter_quantity`."""
    cal, cur = scenario.calendar, scenario.currency
    names = labels.event_names(scenario)  # an event's number is named by what the event does, never by its id
    uncertain = {u.path: u for u in scenario.uncertain}
    out: list[Knob] = []
    for path, lo, hi in CORE_KNOBS:
        if path in uncertain:
            out.append(_uncertain_knob(uncertain[path], cur))
            continue
        value: Any = scenario
        for part in path.split("."):
            value = getattr(value, part)
        out.append(_number_knob(path, float(value), lo, hi, f"range {lo:g} to {hi:g}: assumption", cur))
    core = {p for p, _, _ in CORE_KNOBS}
    out += [
        _uncertain_knob(u, cur) for u in scenario.uncertain if u.path not in core and u.path.split(".")[0] != "events"
    ]
    raw_events = (getattr(scenario, "raw", {}) or {}).get("events") or []
    for e in scenario.events:
        raw = _raw_item(raw_events, e.id)
        when = f"every year from {e.date.isoformat()}" if e.recurring else e.date.isoformat()
        out.append(
            Knob(
                f"event:{e.id}",
                f"{when} · {_describe(e, scenario.provider_names)}",
                f"events.{e.id}",
                1.0,
                0.0,
                1.0,
                1.0,
                lambda v: "on" if v else "off",
                True,
                "switch",
                e.id,
                note=e.id,
            )
        )
        if not e.recurring:
            path = f"events.{e.id}.{'step' if 'step' in raw else 'date'}"
            q = labels.parameter_quantity(f"events.{e.id}.step", currency=cur, events=names)
            out.append(
                Knob(
                    path,
                    q.label,
                    path,
                    float(e.step),
                    0.0,
                    float(max(cal.steps - 1, e.step)),
                    1.0,
                    lambda w: f"week {int(w)} · {cal.date_of(int(w)).isoformat()}",
                    True,
                    "week",
                    e.id,
                    note="any week of the calendar",
                )
            )
        prefix = f"events.{e.id}"
        out += _field_knobs(e.action, raw, prefix, uncertain, cur, e.id, names)
        acts = e.actions()
        if acts != (e.action,):  # the effects it carries (an equity stake's)
            effects = raw.get("effects") or []
            for k, a in enumerate(acts):
                item = effects[k] if k < len(effects) and isinstance(effects[k], dict) else {}
                out += _field_knobs(a, item, f"{prefix}.effects.{k}", uncertain, cur, e.id, names)
    covered = {k.path for k in out}  # an uncertain number of an event no field above reached: still its slider
    for u in scenario.uncertain:
        if u.path not in covered and u.path.split(".")[0] == "events":
            out.append(_uncertain_knob(u, cur, group=u.path.split(".")[1]))
    return out


def baseline_choices(scenario: Scenario) -> list[tuple[str, str]]:
    """The baselines the page offers, as (value, words): "" is the default, the same market without its one-off
    events (recurring effects stay in both arms); an event's id is the same market without that event alone (named by what it does)."""
    stays = " (yearly effects stay)" if any(e.recurring for e in scenario.events) else ""
    return [("", f"without its events{stays}")] + [
        (e.id, f"without {_describe(e, scenario.provider_names)} only") for e in scenario.events
    ]


def baseline_words(model: LiveModel) -> str:
    """What the dashed arm of ``model`` is, in words ("without its events", "without JD stops accepting Weibo
    login")."""
    if model.baseline is None:
        return "without its events"
    if not model.baseline:
        return "with every event (nothing dropped)"
    sc = model.market_scenario
    named = {e.id: _describe(e, sc.provider_names) for e in sc.events}
    return "without " + "; ".join(named.get(i, i.replace("_", " ")) for i in model.baseline)


def parse_seed(text: str) -> int:
    """The seed typed on the page, or ValueError saying what is wrong (one line)."""
    s = (text or "").strip()
    try:
        v = int(s)
    except ValueError:
        raise ValueError(f"seed must be a whole number from 0 to {SEED_MAX}; got {s[:30]!r}") from None
    if not 0 <= v <= SEED_MAX:
        raise ValueError(f"seed must be from 0 to {SEED_MAX}; got {s[:30]}")
    return v


def scenario_with(base: Scenario, values: dict[str, float], seed: int) -> Scenario:
    """``base`` with the knobs' values (by key) and the seed: numbers set at their paths, a moved week as the
    event's date (or step, if the file placed it by step), the events switched off left out."""
    by_key = {k.key: k for k in knobs(base)}
    paths: dict[str, Any] = {}
    off = []
    for key, v in values.items():
        k = by_key.get(key)
        if k is None or v == k.value:
            continue
        if k.kind == "switch":
            off.append(k.group)
        elif k.kind == "week":
            paths[k.path] = int(v) if k.path.endswith(".step") else base.calendar.date_of(int(v)).isoformat()
        else:
            paths[k.path] = int(v) if k.integer else float(v)
    paths = {p: v for p, v in paths.items() if by_key[p].group not in off}
    sc = base.with_values(paths) if paths else base
    sc = sc.without_events(off) if off else sc
    return sc.with_overrides(seed=seed) if seed != sc.seed else sc


def baseline_for(scenario: Scenario, choice: str) -> list[str] | None:
    """The events the counterfactual of ``scenario`` drops for the page's baseline ``choice`` (:func:`
    baseline_choices`): None for the default; [] when the chosen event is switched off (the baseline is then the
    scenario itself)."""
    if not choice:
        return None
    return [choice] if choice in {e.id for e in scenario.events} else []


def one_line(e: BaseException) -> str:
    """An exception as one line a user can read (never a traceback)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    if not isinstance(e, UserError):
        msg = f"{type(e).__name__}: {msg}"
    return msg if len(msg) <= 300 else msg[:297] + "..."


def build_failure(e: BaseException, base: Scenario, values: dict[str, float], continuing: bool) -> tuple[str, str]:
    """What the page says when the model for the sliders' ``values`` cannot be built, in words, and the full
    technical reason ("" when the words are it). A failed fit is said plainly (where the market tips: that it
    does, and which way to move the slider), never as a cut-off calibration message."""
    keep = "; the previous run continues" if continuing else ""
    if not isinstance(e, CalibrationError):
        return f"Could not build the market{keep}: {one_line(e)}", ""
    detail = " ".join(str(e).split())
    knob = {k.key: k for k in knobs(base)}.get("behaviour.beta_social")
    social = values.get("behaviour.beta_social") if knob is not None else None
    raised = social is not None and social > knob.value
    if "market tips" in detail:  # calibrate's diagnosis: simulated shares jump between far-apart values
        at = f"at social influence {knob.fmt(social)}" if raised else "with these settings"
        lower = (
            f"Lower the social influence (this scenario's own: {knob.fmt(knob.value)})"
            if raised
            else "Move the settings back toward the scenario's own values"
        )
        return (
            f"No market to run {at}: the market tips. Friends' choices, habit and account lock-in reinforce "
            f"whichever retailer leads until it has nearly every shopper, so no attractiveness reproduces the "
            f"observed shares. {lower} and press Reset{keep}.",
            detail,
        )
    return (
        f"No market to run with these settings: no attractiveness reproduces the observed shares. Move the "
        f"settings back toward the scenario's own values and press Reset{keep}.",
        detail,
    )


# --------------------------------------------------------------------------- pictures (SVG and HTML text)


def _colors(scenario: Scenario) -> list[str]:
    c = retailer_colors(scenario)
    return [c[n] for n in scenario.retailer_names]


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _describe(ev, providers: tuple[str, ...] | list[str] = ()) -> str:
    """An event in words, as every chart and label names it (:func:`marketsim.scenario.labels.event_label`:
    providers written as in prose, "Weibo")."""
    return labels.event_label(ev, providers)


def share_chart_svg(
    scenario: Scenario,
    share: np.ndarray,
    t: int,
    colors: list[str],
    fired_ids: set[str],
    present: np.ndarray | None = None,
    baseline: str = "without its events",
) -> str:
    """GMV share in % by week: the scenario solid, the counterfactual dashed, the gap between them shaded;
    below, the gap in percentage points; the events as vertical lines (dark once fired; a recurring effect at
    each of its firings). ``share`` is (2, steps, R), fractions; ``t`` steps are drawn. ``present`` (same
    shape, bool; default all): whether the retailer was in the market in that arm and week: a line leaves out
    the weeks it was not (an entrant before its entry, a retailer after it left), and its label says so; the
    gap counts an absent retailer's share as 0. ``baseline``: what the dashed arm is, in words. The events' labels
    sit in rows above the plot, never overlapping (:func:`marketsim.figures.labels.place_labels`); the root carries ``data-week="t"``."""
    cal, names = scenario.calendar, scenario.retailer_names
    T = cal.steps
    W, L, Rm = 660, 44, 92
    pw = W - L - Rm

    def x(s):
        return L + (pw * s / (T - 1) if T > 1 else pw / 2)

    marks: dict[int, list[tuple[dt.date, Any]]] = {}  # the events marked in each week: one line, one label
    for step, day, e in _event_marks(scenario):
        marks.setdefault(step, []).append((day, e))
    texts = []
    for group in marks.values():
        days: dict[dt.date, list[str]] = {}
        for day, e in group:
            days.setdefault(day, []).append(labels.event_label(e, scenario.provider_names))  # words, never its id
        texts.append("; ".join(f"{d.isoformat()} {', '.join(ids)}" for d, ids in days.items()))
    placed = placement.place_labels([x(step) for step in marks], [text_width(s, 11) for s in texts], 2.0, W - 2.0)
    rows = max([r for _, r in placed], default=1) + 1
    top, h1 = 15 + _ROW * rows, 220
    gap_top, h2 = top + h1 + 34, 92
    H = gap_top + h2 + 24

    done = share[:, :t, :] * 100
    init = np.array([r.initial_share for r in scenario.retailers]) * 100
    ymax = float(np.concatenate([init, done[np.isfinite(done)]]).max())  # NaN: a week with no purchases
    ystep = _nice_step(ymax, 5)
    ytop = ystep * math.ceil(ymax * 1.08 / ystep)

    def y(v):
        return top + h1 * (1 - v / ytop)

    gap = done[0] - done[1]
    g = max(float(np.abs(gap[np.isfinite(gap)]).max(initial=0.0)), 0.4) * 1.15
    gstep = _nice_step(2 * g, 4)
    glim = gstep * max(1, math.ceil(g / gstep))

    def yg(v):
        return gap_top + h2 / 2 * (1 - v / glim)

    out = [
        f'<svg id="marketsim-share-chart" data-week="{t}" viewBox="0 0 {W} {H}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" style="font:12px sans-serif;display:block">'
    ]
    v = 0.0
    while v <= ytop + 1e-9:
        out.append(
            f'<line x1="{L}" x2="{L + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e6e6e6"/>'
            f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#666">{v:g}%</text>'
        )
        v += ystep
    v = -glim
    while v <= glim + 1e-9:
        zero = abs(v) < 1e-9
        out.append(
            f'<line x1="{L}" x2="{L + pw}" y1="{yg(v):.1f}" y2="{yg(v):.1f}" stroke="{"#999" if zero else "#eee"}"/>'
            f'<text x="{L - 6}" y="{yg(v) + 4:.1f}" text-anchor="end" fill="#666">{"0" if zero else f"{v:+g}"}</text>'
        )
        v += gstep
    out.append(
        f'<text x="{L}" y="{gap_top - 10}" fill="#333" font-weight="bold">'
        f"Gap: scenario minus the same market {escape(baseline)} (percentage points)</text>"
    )
    months = [(s, cal.date_of(s)) for s in range(T) if s == 0 or cal.date_of(s).month != cal.date_of(s - 1).month]
    # a label every `every` months (January always among them), as often as they fit: a year label beside a month's,
    # or from a year apart on, the years alone
    per_month = pw / max(T - 1, 1) * 365.25 / 12 / cal.step_days
    wide, short, year = (text_width(v, 12) for v in ("May 2013", "May", "2013"))
    every = next(
        (k for k in (1, 2, 3, 6, 12, 24, 60, 120) if k * per_month >= ((wide + short) / 2 if k < 12 else year) + 6), 240
    )
    first = True
    for s, d in months:
        label = ""
        if (d.year * 12 + d.month - 1) % every == 0:
            label = (
                d.strftime("%Y") if every >= 12 else d.strftime("%b %Y") if first or d.month == 1 else d.strftime("%b")
            )
            first = False
        out.append(
            f'<line x1="{x(s):.1f}" x2="{x(s):.1f}" y1="{gap_top + h2}" y2="{gap_top + h2 + 4}" stroke="#888"/>'
            + (
                f'<text x="{x(s):.1f}" y="{gap_top + h2 + 17}" text-anchor="middle" fill="#666">{label}</text>'
                if label
                else ""
            )
        )
    for (step, group), text, (x0, row) in zip(marks.items(), texts, placed, strict=True):
        on = any(e.id in fired_ids and (not e.recurring or step < t) for _, e in group)
        col, xe = ("#222" if on else "#aaa"), x(step)
        ly = top - 15 - _ROW * row  # the text's baseline: row 0 just above the plot
        out.append(
            f'<line class="event" x1="{xe:.1f}" x2="{xe:.1f}" y1="{ly + 3}" y2="{gap_top + h2}" stroke="{col}" '
            f'stroke-dasharray="3 3"/><text class="event-label" x="{x0:.1f}" y="{ly}" fill="{col}" '
            f'font-size="11" stroke="#fff" stroke-width="3" paint-order="stroke">{escape(text)}</text>'
        )
    if t:
        xs = [f"{x(s):.1f}" for s in range(t)]
        here = np.ones((2, t, len(names)), dtype=bool) if present is None else present[:, :t, :]
        shown = np.isfinite(done) & here  # weeks a line is drawn: purchases, and the retailer in that arm's market
        ends = [done[0, shown[0, :, j], j] for j in range(len(names))]
        label_y = placement.spread(
            [y(e[-1]) if len(e) else top + h1 for e in ends], 14, top + 4, top + h1
        )  # (left: where)
        for j, c in enumerate(colors):
            ok = [s for s in range(t) if np.isfinite(gap[s, j])]  # weeks where both arms had purchases
            both = [s for s in ok if here[0, s, j] and here[1, s, j]]
            s_pts = " ".join(f"{xs[s]},{y(done[0, s, j]):.1f}" for s in range(t) if shown[0, s, j])
            c_pts = " ".join(f"{xs[s]},{y(done[1, s, j]):.1f}" for s in range(t) if shown[1, s, j])
            fwd = " ".join(f"{xs[s]},{y(done[0, s, j]):.1f}" for s in both)
            back = " ".join(f"{xs[s]},{y(done[1, s, j]):.1f}" for s in reversed(both))
            g_pts = " ".join(f"{xs[s]},{yg(gap[s, j]):.1f}" for s in ok)
            if not here[0, -1, j]:
                last = "left the market" if here[0, :, j].any() else "not in the market yet"
            else:
                last = numbers.share(ends[j][-1] / 100) if len(ends[j]) else "no purchases"  # ends: in percent
            if both:
                out.append(f'<polygon points="{fwd} {back}" fill="{c}" fill-opacity="0.22" stroke="none"/>')
            if c_pts:
                out.append(
                    f'<polyline class="counterfactual" points="{c_pts}" fill="none" stroke="{c}" '
                    f'stroke-width="1.5" stroke-dasharray="5 4"/>'
                )
            if s_pts:
                out.append(f'<polyline class="scenario" points="{s_pts}" fill="none" stroke="{c}" stroke-width="2.2"/>')
            out.append(
                f'<polyline class="gap" points="{g_pts}" fill="none" stroke="{c}" stroke-width="1.8"/>'
                f'<text x="{float(xs[-1]) + 5:.1f}" y="{label_y[j] + 4:.1f}" fill="{c}" font-weight="bold">'
                f"{escape(names[j])} {last}</text>"
            )
        out.append(
            f'<line x1="{xs[-1]}" x2="{xs[-1]}" y1="{top}" y2="{gap_top + h2}" stroke="#000" stroke-opacity="0.2"/>'
        )
    else:
        out.append(
            f'<text x="{L + pw / 2}" y="{top + h1 / 2}" text-anchor="middle" fill="#999">Press Step or Play</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _event_marks(scenario: Scenario) -> list[tuple[int, dt.date, Any]]:
    """Where the chart marks the events: (step, date, event) for each one-off event and for each firing of a
    recurring effect, within the calendar."""
    cal = scenario.calendar
    out = []
    for e in scenario.events:
        if not e.recurring:
            if e.step < cal.steps:
                out.append((e.step, e.date, e))
            continue
        out += [(cal.step_of(first), first, e) for first, _ in e.firings(cal)]
    return out


#: Height of one row of event labels on the share chart (px; 11 px text and its gap).
_ROW = 14
#: Advance of characters in a sans-serif font, in ems (DejaVu Sans, Chromium's sans-serif on Debian, rounded up:
#: its widths exceed Arial's and Liberation Sans'); other characters count as the widest common one.
_EM = {
    **dict.fromkeys("iljI.,:;'|!", 0.32),
    **dict.fromkeys("frt()-[] ", 0.42),
    **dict.fromkeys("0123456789", 0.64),
    **dict.fromkeys("abcdeghknopqsuvxyz", 0.63),
    **dict.fromkeys("mwMW%", 1.0),
}


def text_width(text: str, size: float) -> float:
    """The width of ``text`` at font size ``size`` (px) in the page's sans-serif font, from above (per character,
    :data:`_EM`; 0.78 em for capitals and anything else)."""
    return size * sum(_EM.get(ch, 0.78) for ch in text)


def agents_svg_static(model: LiveModel) -> str:
    """The sampled consumers' ties (drawn once per model): one path per social layer."""
    xy = _screen_xy(model.pos)
    style = ["#CC79A7", "#9a9a9a", "#777"]
    paths: dict[int, list[str]] = {}
    for i, j, li in model.edges:
        paths.setdefault(li, []).append(f"M{xy[i, 0]:.0f} {xy[i, 1]:.0f}L{xy[j, 0]:.0f} {xy[j, 1]:.0f}")
    body = "".join(
        f'<path d="{"".join(p)}" stroke="{style[li % 3]}" stroke-width="0.6" stroke-opacity="0.7" fill="none"/>'
        for li, p in paths.items()
    )
    return f'<svg viewBox="0 0 {_AW} {_AH}" width="100%" xmlns="http://www.w3.org/2000/svg">{body}</svg>'


_AW, _AH = 520, 420


def _screen_xy(pos: np.ndarray) -> np.ndarray:
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return 14 + (pos - lo) / span * np.array([_AW - 28, _AH - 28])


def agents_svg_dynamic(model: LiveModel, colors: list[str]) -> str:
    """The sampled consumers coloured by where they last bought; ringed black when they lost a login,
    haloed red when an event moved them (their last retailer differs from the counterfactual's)."""
    xy = _screen_xy(model.pos)
    last = model.market.last[model.sample]
    lost = model.market.lost_login[model.sample]
    moved = model.switched()[model.sample]
    parts = [
        f'<svg id="marketsim-agents" data-week="{model.t}" data-moved="{int(moved.sum())}" viewBox="0 0 {_AW} {_AH}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in np.flatnonzero(moved):
        parts.append(
            f'<circle class="moved" cx="{xy[i, 0]:.1f}" cy="{xy[i, 1]:.1f}" r="9" fill="#d7191c" fill-opacity="0.25" '
            f'stroke="#d7191c" stroke-width="1.6"/>'
        )
    for i in range(len(model.sample)):
        c = colors[last[i]] if last[i] >= 0 else "#fff"
        ring = ' stroke="#000" stroke-width="1.8"' if lost[i] else ' stroke="#fff" stroke-width="0.6"'
        parts.append(f'<circle cx="{xy[i, 0]:.1f}" cy="{xy[i, 1]:.1f}" r="4.2" fill="{c}"{ring}/>')
    parts.append("</svg>")
    return "".join(parts)


def absence(model: LiveModel, arm: int, j: int) -> str | None:
    """Why retailer ``j`` is not in the market of ``arm`` (0: the scenario, 1: without the events) now, in words
    ("not in the market yet (enters on DATE)", "left on DATE", "left on DATE (bought by JD)"); None if it is in."""
    m = model.market if arm == 0 else model.counterfactual
    if m.available[j]:
        return None
    sc = model.market_scenario
    name, cal = sc.retailer_names[j], sc.calendar
    for mv in reversed(m.moves):
        if mv.kind == "exit" and mv.retailer == name:
            return f"left on {cal.date_of(mv.step).isoformat()}"
        if mv.kind == "acquisition" and mv.other == name:
            return f"left on {cal.date_of(mv.step).isoformat()} (bought by {mv.retailer})"
    entry = next(
        (e for e in m.scenario.events for a in e.actions() if a.type == "entry" and a.retailer == name),
        None,
    )
    if entry is None:  # (the arm without the events never brings it in)
        return "not in the market"
    return f"not in the market yet (enters on {entry.date.isoformat()})"


def numbers_html(model: LiveModel, colors: list[str]) -> str:
    """The numbers table: each retailer's GMV share this week in both arms and the gap; a retailer that is not in
    an arm's market says so in words (:func:`absence`) instead of a share."""
    sc, t = model.market_scenario, model.t
    rows = []
    for j, n in enumerate(sc.retailer_names):
        gone = [absence(model, arm, j) for arm in (0, 1)]
        vals = model.share[:, t - 1, j] if t else np.full(2, np.nan)
        parts = []
        for arm, cls in ((0, "share"), (1, "cf")):
            if gone[arm]:
                parts.append(f"<td class='{cls} absent'>{escape(gone[arm])}</td>")
            else:  # not started, or nobody bought this week: –
                parts.append(f"<td class='{cls}'>{share(vals[arm]) if np.isfinite(vals[arm]) else '–'}</td>")
        in_one = not (gone[0] and gone[1])  # the gap of a retailer in one arm only: its share there
        gap = points(vals[0] * 100 - vals[1] * 100) if t and in_one and np.isfinite(vals).all() else "–"
        cells = "".join(parts) + f"<td class='gap'>{gap}</td>"
        rows.append(
            f"<tr><td><span style='color:{colors[j]}'>&#9679;</span> {escape(n)}</td>{cells}"
            f"<td>{count(model.accounts[j])}</td></tr>"
        )
    lost = model.market.lost_login.sum() * model.world.scale
    moved = model.switched().sum() * model.world.scale
    return (
        f"<table id='marketsim-numbers' data-week='{model.t}'><tr><th>retailer</th><th>GMV share</th>"
        f"<th id='marketsim-baseline-head'>{escape(baseline_words(model))}</th>"
        "<th>gap (points)</th><th>accounts created</th></tr>" + "".join(rows) + "</table>"
        f"<div class='facts'>Shoppers who lost a login: <b id='marketsim-lost'>{count(lost)}</b> · "
        f"buying elsewhere because of the events: <b id='marketsim-moved'>{count(moved)}</b></div>"
    )


def _span(first: dt.date, last: dt.date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"


def firings_html(e, model: LiveModel) -> str:
    """Every firing of the recurring effect ``e`` within the calendar, with its week; those already past
    (the week it starts has been simulated) marked."""
    cal = model.market_scenario.calendar
    spans = []
    for first, last in e.firings(cal):
        step = cal.step_of(first)
        past = step < model.t
        spans.append(
            f"<span class='firing{' past' if past else ''}' data-past='{str(past).lower()}'>"
            f"{_span(first, last)} (week {step}){' ✓' if past else ''}</span>"
        )
    return ", ".join(spans) if spans else "never within the calendar"


def move_text(model: LiveModel, e) -> str:
    """What an entry, exit or acquisition that has happened did, in words ("" for other events or before)."""
    sc = model.market_scenario
    for mv in model.moves:
        if move_event(sc, mv) != e.id:
            continue
        if mv.kind == "acquisition":
            return f": moved {count(mv.moved)} shoppers to {mv.retailer} ({count(mv.lost)} lost their habit)"
        if mv.kind == "exit":
            return f": {count(mv.lost)} shoppers lost their habit there"
    return ""


def events_html(model: LiveModel) -> str:
    """The timeline in words: each event with its date and week; a recurring effect with every date it fires
    within the calendar (those past marked); an acquisition or exit that happened with the shoppers it moved."""
    sc = model.market_scenario
    fired = {e.id for e in model.fired}
    items = []
    for e in sc.events:
        on = e.id in fired
        state = "fired" if on else ("upcoming" if e.step < model.horizon else "after the last week")
        if e.recurring:
            each = "1 day" if e.days == 1 else f"{e.days} days"
            when = f"<b>every year from {e.date.isoformat()}</b> for {each}"
            what = f"{escape(_describe(e, sc.provider_names))}; fires {firings_html(e, model)}"
        else:
            when = f"<b>{e.date.isoformat()}</b> (week {e.step})"
            what = escape(_describe(e, sc.provider_names) + (move_text(model, e) if on else ""))
        items.append(
            f"<li data-id='{escape(e.id)}' data-fired='{str(on).lower()}' class='{'fired' if on else 'upcoming'}'>"
            f"{when} {what} <span class='id'>{escape(e.id)} · {state}</span></li>"
        )
    return (
        f"<ul id='marketsim-events' data-week='{model.t}'>"
        + ("".join(items) or "<li>no events: the two arms stay identical</li>")
        + "</ul>"
    )


def _line_sample(dash: str = "", width: float = 2.2, fill: str = "") -> str:
    if fill:
        return f'<svg width="26" height="10"><rect x="1" y="1" width="24" height="8" fill="{fill}" fill-opacity="0.3"/></svg>'
    return (
        f'<svg width="26" height="10"><line x1="1" x2="25" y1="5" y2="5" stroke="#444" stroke-width="{width}" '
        f'stroke-dasharray="{dash}"/></svg>'
    )


def chart_legend(baseline: str) -> str:
    """The share chart's legend; ``baseline``: what the dashed arm is, in words (:func:`baseline_words`)."""
    return (
        f"<b>GMV share by week</b><span>{_line_sample()} the scenario</span>"
        f"<span>{_line_sample('5 4', 1.5)} the same market {escape(baseline)} (same consumers and seed)</span>"
        f"<span>{_line_sample(fill='#888')} the gap</span>"
    )


_CSS = """
.marketsim table#marketsim-numbers {border-collapse: collapse; margin: 4px 0 8px 0; font-size: 14px}
.marketsim #marketsim-numbers th {font-weight: 600; text-align: right; padding: 2px 10px; color: #444; border-bottom: 1px solid #ccc}
.marketsim #marketsim-numbers th:first-child, .marketsim #marketsim-numbers td:first-child {text-align: left}
.marketsim #marketsim-numbers td {text-align: right; padding: 2px 10px; font-variant-numeric: tabular-nums}
.marketsim #marketsim-numbers td.share {font-weight: 700}
.marketsim .facts {font-size: 14px; color: #333}
.marketsim #marketsim-events {list-style: none; padding-left: 0; font-size: 14px; margin: 0}
.marketsim #marketsim-events li {padding: 3px 0 3px 10px; border-left: 3px solid #ddd; margin-bottom: 4px}
.marketsim #marketsim-events li.fired {border-left-color: #d7191c}
.marketsim #marketsim-events li.upcoming {color: #999}
.marketsim #marketsim-events .id {font-size: 12px; color: #888}
.marketsim #marketsim-events .firing.past {color: #999}
.marketsim #marketsim-numbers td.absent {font-weight: 400; color: #888; font-style: italic}
.marketsim .knob-head {display: flex; justify-content: space-between; font-size: 13px; margin-top: 6px}
.marketsim .knob-value {font-weight: 700; white-space: nowrap; padding-left: 6px}
.marketsim .legend {font-size: 12px; color: #444; display: flex; flex-wrap: wrap; gap: 2px 14px; align-items: center}
.marketsim .legend > span {white-space: nowrap}
.marketsim .views {display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 24px; align-items: start}
@media (max-width: 1100px) {.marketsim .views {grid-template-columns: minmax(0, 1fr)}}
.marketsim h3 {font-size: 15px; font-weight: 600; margin: 0 0 4px 0}
.marketsim .agents {position: relative; width: 100%; max-width: 520px}
.marketsim .agents > div {position: absolute; inset: 0}
.marketsim .agents > div:first-child {position: relative}
"""


# --------------------------------------------------------------------------- the page


class _Holder:
    """A browser session's model (swapped by Reset) and the lock that keeps steps and swaps apart.
    ``closed`` once the session ended: the model is dropped and a build still running is discarded."""

    def __init__(self):
        self.model: LiveModel | None = None
        self.lock = threading.RLock()
        self.colors: list[str] = []
        self.closed = False
        self.play_generation = 0  # which Play loop may step (see Page's play_loop)

    def close(self) -> None:
        """Let the model go (the session ended)."""
        with self.lock:
            self.closed = True
            self.model = None


def _cull_timeout() -> str:
    """Solara's wait before it closes a session whose page is gone without a word, as text ("2m": 2 minutes)."""
    import solara.server.settings

    t = solara.server.settings.kernel.cull_timeout
    return {"s": f"{t[:-1]} seconds", "m": f"{t[:-1]} minutes", "h": f"{t[:-1]} hours"}.get(t[-1:], t)


def _max_sessions() -> int:
    v = os.environ.get("MARKETSIM_VIZ_MAX_SESSIONS")
    return int(v) if v else MAX_SESSIONS


class _Sessions:
    """The browser sessions (tabs) of this server that hold a model, at most ``_max_sessions()``.

    Each session holds a whole market in memory (about 100 MB at 300,000 consumers), so a tab over the cap
    gets a message instead of a model. A session ends when Solara closes its kernel: at once when its tab
    is closed or reloaded (the page's unload beacon), or after Solara's cull timeout when the tab vanished
    without a word (``marketsim viz`` sets $SOLARA_KERNEL_CULL_TIMEOUT to 2 minutes; Solara's own is 24 hours)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: set[int] = set()

    def open(self) -> _Holder | None:
        """A holder for the current kernel's session, released when the kernel closes; None at the cap."""
        with self._lock:
            if len(self._live) >= _max_sessions():
                return None
            holder = _Holder()
            self._live.add(id(holder))

        def release() -> None:
            holder.close()
            with self._lock:
                self._live.discard(id(holder))

        from solara.server.kernel_context import get_current_context

        get_current_context().on_close(release)
        return holder

    def count(self) -> int:
        with self._lock:
            return len(self._live)


_SESSIONS = _Sessions()


def status() -> dict:
    """What this server holds: ``sessions`` (tabs holding a model), ``max_sessions`` and ``models`` (LiveModels
    still in memory after a garbage collection; a closed tab's model must not be among them)."""
    gc.collect()
    return {"sessions": _SESSIONS.count(), "max_sessions": _max_sessions(), "models": len(MODELS)}


@solara.component
def KnobSlider(knob: Knob, settings: solara.Reactive, disabled: bool):
    """One control: a slider with its label and value in its unit (the range's source on hover), or an event's
    on/off switch."""
    value = settings.value.get(knob.key, knob.value)

    def set_value(v):
        settings.set({**settings.value, knob.key: int(v) if knob.integer else round(float(v), 4)})

    if knob.kind == "switch":
        with solara.Div(classes=["marketsim-switch"], attributes={"data-event": knob.group}):
            solara.Checkbox(
                label=knob.label,
                value=bool(value),
                on_value=lambda on: settings.set({**settings.value, knob.key: 1 if on else 0}),
                disabled=disabled,
            )
        return
    with solara.Div(classes=["marketsim-knob"], attributes={"data-path": knob.path}):
        solara.HTML(
            tag="div",
            classes=["knob-head"],
            unsafe_innerHTML=(
                f"<span class='knob-label' title='{escape(knob.note)}'>{escape(knob.label)}</span>"
                f"<span class='knob-value'>{escape(knob.fmt(value))}</span>"
            ),
        )
        if knob.integer:
            solara.SliderInt(
                "",
                value=int(value),
                min=int(knob.lo),
                max=int(knob.hi),
                step=int(knob.step),
                on_value=set_value,
                thumb_label=False,
                disabled=disabled,
            )
        else:
            solara.SliderFloat(
                "",
                value=float(value),
                min=knob.lo,
                max=knob.hi,
                step=knob.step,
                on_value=set_value,
                thumb_label=False,
                disabled=disabled,
            )


@solara.component
def WeekLine(holder: _Holder, tick: solara.Reactive):
    _ = tick.value
    m = holder.model
    if m is None:
        return solara.HTML(tag="div", unsafe_innerHTML="")
    sc = m.market_scenario
    if m.t == 0:
        text = f"<b>Week 0</b> of {m.horizon} · starts {sc.calendar.date_of(0).isoformat()}"
    else:
        text = f"<b>Week {m.t}</b> of {m.horizon} · {sc.calendar.date_of(m.t - 1).isoformat()}"
    if m.t and m.fired and np.isfinite(m.share[:, m.t - 1]).all():
        gaps = (m.share[0, m.t - 1] - m.share[1, m.t - 1]) * 100
        text += " · <b>the events so far</b>: " + ", ".join(
            f"<span style='color:{c}'>{escape(n)}</span> {points(g, 1)} points"
            for n, c, g in zip(sc.retailer_names, holder.colors, gaps, strict=True)
        )
    done = (
        ""
        if m.running
        else (
            f"<div id='marketsim-finished' style='color:#1a7f37;font-weight:600'>Run finished: "
            f"all {m.horizon} weeks simulated. Reset to run again.</div>"
        )
    )
    return solara.HTML(tag="div", unsafe_innerHTML=f"<div id='marketsim-week' data-week='{m.t}'>{text}</div>{done}")


def _guarded(holder: _Holder, render, fallback, prefix: str = ""):
    """``render()`` under the model's lock; an exception gives ``fallback(error box)`` instead: one line on the
    page, never a traceback."""
    with holder.lock:
        try:
            return render()
        except Exception as e:
            return fallback(f"<div class='error'>{prefix}{escape(one_line(e))}</div>")


@solara.component
def ShareChart(holder: _Holder, tick: solara.Reactive):
    _ = tick.value
    m = holder.model
    if m is None:
        return solara.HTML(tag="div", unsafe_innerHTML="")
    svg = _guarded(
        holder,
        lambda: share_chart_svg(
            m.market_scenario,
            m.share,
            m.t,
            holder.colors,
            {e.id for e in m.fired},
            getattr(m, "present", None),
            baseline_words(m),
        ),
        lambda box: box,
        "chart failed: ",
    )
    return solara.HTML(tag="div", unsafe_innerHTML=svg, attributes={"id": "marketsim-share-box"})


@solara.component
def Agents(holder: _Holder, tick: solara.Reactive):
    _ = tick.value
    m = holder.model
    static = solara.use_memo(lambda: "" if m is None else agents_svg_static(m), dependencies=[id(m)])
    if m is None:
        return solara.HTML(tag="div", unsafe_innerHTML="")
    dyn, moved = _guarded(
        holder, lambda: (agents_svg_dynamic(m, holder.colors), int(m.switched()[m.sample].sum())), lambda box: (box, 0)
    )
    names = [lay.name for lay in m.world.layers]
    tie_colors = ["#CC79A7", "#9a9a9a", "#777"]
    legend = "".join(
        f"<span><span style='color:{c}'>&#9679;</span> last bought at {escape(n)}</span>"
        for n, c in zip(m.market_scenario.retailer_names, holder.colors, strict=True)
    )
    legend += (
        "<span>&#9711; lost a login</span>"
        "<span><span style='color:#d7191c'>&#11044;</span> buying elsewhere because of an event</span>"
    )
    legend += "".join(
        f"<span style='color:{tie_colors[i % 3]}'>&#8212; {escape(n)} tie</span>" for i, n in enumerate(names)
    )
    with solara.Column(gap="4px"):
        solara.HTML(
            tag="h3",
            unsafe_innerHTML=(
                f"{len(m.sample)} of {m.world.n:,} consumers and their social ties · "
                f"<span id='marketsim-moved-sample'>{moved}</span> moved by the events"
            ),
        )
        with solara.Div(classes=["agents"]):
            solara.HTML(tag="div", unsafe_innerHTML=static)
            solara.HTML(tag="div", unsafe_innerHTML=dyn)
        solara.HTML(tag="div", classes=["legend"], unsafe_innerHTML=legend)


@solara.component
def Numbers(holder: _Holder, tick: solara.Reactive):
    _ = tick.value
    m = holder.model
    if m is None:
        return solara.HTML(tag="div", unsafe_innerHTML="")
    html = _guarded(
        holder,
        lambda: numbers_html(m, holder.colors) + "<h3 style='margin-top:12px'>Events</h3>" + events_html(m),
        lambda box: box,
    )
    return solara.HTML(tag="div", unsafe_innerHTML=html)


@solara.component
def Page():
    """The page of ``solara run marketsim.viz.page``: one model per browser session, built in the background."""
    from_link = query_value(solara.use_router().search, "result")
    if from_link is not None:  # /?result=<hash>: a stored Decide result, read-only (marketsim.viz.decide)
        return StoredPage(from_link)
    # (the early return above is the same on every render of a session: the hooks below keep their order)
    base, knob_list, load_error = solara.use_memo(_load_base, dependencies=[])  # noqa: SH101
    holder = solara.use_memo(lambda: None if base is None else _SESSIONS.open(), dependencies=[])  # noqa: SH101
    if base is None:
        solara.Title("marketsim")
        return solara.HTML(
            tag="div",
            attributes={"id": "marketsim-error"},
            style="color:#b00020;padding:16px",
            unsafe_innerHTML=escape(f"marketsim: {load_error}"),
        )
    if holder is None:
        solara.Title("marketsim")
        n = _max_sessions()
        return solara.HTML(
            tag="div",
            attributes={"id": "marketsim-full", "role": "alert"},
            style="font-size:16px;padding:24px;max-width:640px",
            unsafe_innerHTML=(
                f"<b>This page is already open in {n} browser tab{'s' if n != 1 else ''}</b>, as many as "
                f"this server runs at once (each tab runs its own market of {base.consumers.count:,} "
                f"consumers in the server's memory). Close one of them, then reload this page "
                f"(a tab that vanished without closing, in a crashed browser, is let go after "
                f"{escape(_cull_timeout())}). <code>marketsim viz --max-sessions</code> sets the number."
            ),
        )
    view = solara.use_reactive("Live market")  # noqa: SH101
    with solara.Column(gap="0px") as main:  # the two views: the live market, and Decide (marketsim.viz.decide)
        with solara.Row(style={"padding": "8px 16px 0 16px"}):
            solara.ToggleButtonsSingle(value=view, values=["Live market", "Decide"])
        if view.value == "Decide":
            DecidePage(_env_scenario(), _env_consumers())
        else:
            LivePage(base, knob_list, holder)
    return main


@solara.component
def LivePage(base: Scenario, knob_list: list[Knob], holder: _Holder):
    """The page for the scenario ``base``: controls in the sidebar, the two arms' pictures and numbers.
    ``holder`` keeps this session's model."""
    tick = solara.use_reactive(0)
    playing = solara.use_reactive(False)
    error = solara.use_reactive("")
    error_detail = solara.use_reactive("")  # the full technical reason behind a message in words
    seed_error = solara.use_reactive("")
    reset_count = solara.use_reactive(0)
    # use_reactive re-syncs to its argument whenever that changes between renders: give it one object
    initial = solara.use_memo(lambda: {k.key: k.value for k in knob_list}, dependencies=[])
    settings = solara.use_reactive(initial)  # what the sliders show
    applied = solara.use_reactive(initial)  # what the running model was built with
    seed_text = solara.use_reactive(str(base.seed))
    finished = solara.use_reactive(False)
    baseline = solara.use_reactive("")  # the baseline chosen (baseline_choices: "" = without its events)
    applied_baseline = solara.use_reactive("")

    def build():
        """Build a model with the current settings (in a thread; the page shows it is busy meanwhile)."""
        values, seed_str, choice = dict(settings.value), seed_text.value, baseline.value
        try:
            sc = scenario_with(base, values, parse_seed(seed_str))
            alpha, trend = fitted_alpha(sc)
            model = LiveModel(fitted_events(sc), alpha, trend, baseline=baseline_for(sc, choice))
            colors = _colors(sc)
        except Exception as e:  # a failed fit, an impossible value: one line, the previous run continues
            said, detail = build_failure(e, base, values, holder.model is not None)
            error.set(said)
            error_detail.set(detail)
            return
        with holder.lock:
            if holder.closed:  # the tab went while this model was built: do not keep it
                return
            holder.model, holder.colors = model, colors
        applied.set(values)
        applied_baseline.set(choice)
        error.set("")
        error_detail.set("")
        finished.set(not model.running)
        tick.set(tick.value + 1)

    building = solara.lab.use_task(build, dependencies=[reset_count.value], raise_error=False)
    busy = building.pending

    def do_step() -> None:
        with holder.lock:
            m = holder.model
            if m is None or not m.running:
                return
            try:
                m.step()
            except Exception as e:
                error.set(f"Step failed: {one_line(e)}")
                playing.set(False)
                return
            done = not m.running
        tick.set(tick.value + 1)
        if done:
            finished.set(True)
            playing.set(False)

    def play_loop():
        """Step every PLAY_PERIOD seconds while Play is on, in a thread of its own.

        A thread, not a coroutine: this effect may be set up from a render in a thread without an event loop
        (one after a build), where a coroutine task cannot start. Each loop holds a generation number, so a loop
        left over from an earlier Play stops instead of stepping alongside the new one."""
        with holder.lock:
            holder.play_generation += 1
            mine = holder.play_generation

        def current() -> bool:
            return playing.value and holder.play_generation == mine and not holder.closed

        while current():
            time.sleep(PLAY_PERIOD)
            if not current():
                break
            do_step()

    solara.lab.use_task(play_loop, dependencies=[playing.value], prefer_threaded=True, raise_error=False)

    def on_seed(text: str) -> None:
        seed_text.set(text)
        try:
            parse_seed(text)
            seed_error.set("")
            if error.value.startswith("Not reset"):
                error.set("")
        except ValueError as e:
            seed_error.set(str(e))

    def on_reset() -> None:
        try:
            parse_seed(seed_text.value)
        except ValueError as e:
            seed_error.set(str(e))
            error.set(f"Not reset: {e}")
            return
        seed_error.set("")
        playing.set(False)
        reset_count.set(reset_count.value + 1)

    model = holder.model
    solara.Title(f"marketsim · {base.name}")
    solara.Style(_CSS)
    with solara.AppBarTitle():
        solara.Text(f"marketsim · {base.name} · {base.consumers.count:,} consumers")

    with solara.Sidebar():
        with solara.Column(classes=["marketsim"], style={"padding": "12px"}):
            with solara.Row(gap="6px", style={"flex-wrap": "wrap"}):
                no_run = busy or model is None or finished.value
                if playing.value:
                    solara.Button("Pause", icon_name="mdi-pause", on_click=lambda: playing.set(False), color="primary")
                else:
                    solara.Button(
                        "Play",
                        icon_name="mdi-play",
                        on_click=lambda: playing.set(True),
                        color="primary",
                        disabled=no_run,
                    )
                solara.Button(
                    "Step",
                    icon_name="mdi-step-forward",
                    on_click=do_step,
                    disabled=no_run or playing.value,
                    outlined=True,
                )
                solara.Button(
                    "Reset", icon_name="mdi-restore", on_click=on_reset, disabled=busy, outlined=True, loading=busy
                )
            solara.HTML(tag="h3", style="margin-top:14px", unsafe_innerHTML="Settings (applied by Reset)")
            choices = baseline_choices(base)
            words = dict(choices)
            solara.Select(
                label="Baseline: the dashed lines are the same market",
                values=[w for _, w in choices],
                value=words.get(baseline.value, choices[0][1]),
                on_value=lambda w: baseline.set(next((c for c, cw in choices if cw == w), "")),
                disabled=busy,
                classes=["marketsim-baseline"],
            )
            for k in knob_list:
                if not k.group:
                    KnobSlider(k, settings, busy)
            groups = [k for k in knob_list if k.kind == "switch"]
            if groups:
                solara.HTML(tag="h3", style="margin-top:14px", unsafe_innerHTML="Events (untick one to leave it out)")
            for sw in groups:
                on = bool(settings.value.get(sw.key, sw.value))
                with solara.Div(classes=["marketsim-event"], attributes={"data-event": sw.group}):
                    KnobSlider(sw, settings, busy)
                    for k in knob_list:
                        if k.group == sw.group and k.kind != "switch":
                            KnobSlider(k, settings, busy or not on)
            solara.InputText(
                "seed",
                value=seed_text.value,
                on_value=on_seed,
                continuous_update=True,
                error=seed_error.value or False,
                disabled=busy,
            )
            if (settings.value != applied.value or baseline.value != applied_baseline.value) and not busy:
                solara.HTML(
                    tag="div",
                    style="font-size:12px;color:#8a5a00",
                    unsafe_innerHTML="Settings changed: press Reset to run with them.",
                )
            solara.HTML(
                tag="div",
                style="font-size:12px;color:#666;margin-top:10px",
                unsafe_innerHTML=(
                    "utils: utility units of the choice model (docs/model.md). Both arms run on the same consumers "
                    "and random numbers; the dashed lines are the baseline chosen above. A slider's range is the "
                    "scenario's stated range where it gives one; hover over its name for the source."
                ),
            )

    with solara.Column(classes=["marketsim"], style={"padding": "8px 16px"}):
        if busy:
            with solara.Div(attributes={"id": "marketsim-busy"}, style={"max-width": "720px"}):
                solara.ProgressLinear(True)
                solara.HTML(
                    tag="div",
                    style="font-size:14px;margin-top:4px",
                    unsafe_innerHTML=(
                        f"<b>Building the market</b>: fitting attractiveness to the target shares, drawing "
                        f"{base.consumers.count:,} consumers and their ties, warming up both arms. This takes a few "
                        "seconds, longer after a setting changed."
                        + (" The current run stays on screen until the new one is ready." if model is not None else "")
                    ),
                )
        if error.value:
            solara.HTML(
                tag="div",
                attributes={"id": "marketsim-error", "role": "alert"},
                style="color:#b00020;font-size:14px;font-weight:500",
                unsafe_innerHTML=escape(error.value),
            )
            if error_detail.value:
                solara.HTML(
                    tag="details",
                    style="font-size:12px;color:#666",
                    unsafe_innerHTML=(f"<summary>the fit's own words</summary>{escape(error_detail.value)}"),
                )
        if model is None:
            return
        WeekLine(holder, tick)
        with solara.Div(classes=["views"]):
            with solara.Column():
                solara.HTML(tag="div", classes=["legend"], unsafe_innerHTML=chart_legend(baseline_words(model)))
                ShareChart(holder, tick)
                Numbers(holder, tick)
            with solara.Column():
                Agents(holder, tick)


def _load_base() -> tuple[Scenario | None, list[Knob], str]:
    """The scenario the server was started with (and --consumers) and its sliders, or the one-line reason
    it cannot load."""
    try:
        base = load_scenario(_env_scenario())
        n = _env_consumers()
        base = base.with_overrides(consumers=n) if n else base
        return base, knobs(base), ""
    except Exception as e:
        return None, [], one_line(e)


# --------------------------------------------------------------------------- CLI
