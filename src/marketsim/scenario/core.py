"""Scenario files: the versioned schema, checked once at the boundary.

A scenario is a YAML file (``schema: marketsim/v2``; v1 files are read unchanged) describing everything in
docs/model.md sections 1-8: calendar, market size, consumers, identity providers and
their social networks, retailers, behaviour coefficients, friction costs and
the event timeline. :func:`load_scenario` reads it with :mod:`marketsim.scenario.yamlsafe`
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
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NoReturn

from marketsim.errors import ScenarioError  # defined in errors.py so yamlsafe can raise it; public here too
from marketsim.runtime.digest import digest
from marketsim.scenario import bundled, yamlsafe
from marketsim.scenario import schema as S
from marketsim.scenario.distributions import Distribution, Empirical, make
from marketsim.scenario.eventtypes import (  # noqa: F401  (the event actions, public here as before)
    REGISTRY,
    AddLogin,
    EquityStake,
    PriceChange,
    Promotion,
    Reading,
    Registry,
    RemoveLogin,
    SocialBoost,
)
from marketsim.scenario.fieldspec import ListOf, MapOf, Node, Variants, example, expect, number_fix
from marketsim.scenario.posterior_file import BadPosterior, ex_post_refusal, read_document
from marketsim.scenario.posterior_file import provenance as posterior_provenance
from marketsim.scenario.schema import (  # noqa: F401  (the format's constants, public here as before)
    MAX_CONSUMERS,
    MAX_MARKET_SIZE,
    MAX_PROVIDERS,
    MAX_RETAILERS,
    MAX_STEPS,
    PRIORS,
    SCHEMA,
    SCHEMAS,
)

NAME_RE = re.compile(S.NAME_PATTERN)

#: The names a file refers to that the file itself declares, by kind (a field's ``refers``, a name map's ``keys``):
#: the top-level key that declares them, and a rule a new one must keep. An unknown name is told where and how
#: to declare it (:meth:`_Validator.declaration`).
DECLARED: dict[str, tuple[str, str]] = {
    "provider": ("providers", ""),
    "retailer": ("retailers", "lower the others' initial_share so that all still sum to 1"),
    "source": ("observations", ""),
}


# --------------------------------------------------------------------------- typed, frozen objects


@dataclass(frozen=True)
class Calendar:
    """Discrete time (docs/model.md section 1): step 0 starts on ``start``; a step lasts ``step_days`` days."""

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
class Series:
    """A number that may change over time: ``(date, value)`` points, linear in between and constant before
    the first and after the last point (docs/model.md section 2: a dated ``market.size``). One point = a constant."""

    points: tuple[tuple[dt.date, float], ...]

    @classmethod
    def constant(cls, value: float) -> Series:
        return cls(((dt.date(2000, 1, 1), float(value)),))

    @property
    def is_constant(self) -> bool:
        return len(self.points) == 1

    def at(self, date: dt.date) -> float:
        pts = self.points
        if date <= pts[0][0]:
            return pts[0][1]
        for (d0, v0), (d1, v1) in pairwise(pts):
            if date <= d1:
                return v0 + (v1 - v0) * (date - d0).days / (d1 - d0).days
        return pts[-1][1]

    def __float__(self) -> float:  # the value of a constant series (or the first point)
        return self.points[0][1]


@dataclass(frozen=True)
class Basket:
    """Basket value per purchase, in the market's currency: LogNormal with mean ``mean`` (a :class:`Series`:
    spend per order may grow) and log-sd ``sigma``. A consumer keeps its relative basket; the mean scales it."""

    mean: Series
    sigma: float


@dataclass(frozen=True)
class Consumers:
    count: int  # N agents; each stands for market.size / N real shoppers
    shopping_rate: float  # probability a consumer shops in a step
    conversion: float | None  # share of shoppers who buy (pins calibration); None if nothing calibrates
    basket: Basket
    turnover: float = 0.0  # probability per step that a consumer leaves and a newcomer takes its slot (docs/model.md 2)


@dataclass(frozen=True)
class Network:
    model: str  # a key of marketsim.engine.network.GENERATORS
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
    trend: float | None = 0.0  # utility per year added to alpha from the calendar start; None = fit (docs/model.md 4)
    enters_later: bool = False  # not in the market at the start: an entry event brings it in (docs/model.md 4)

    @property
    def calibrate(self) -> bool:
        return self.attractiveness is None

    @property
    def calibrate_trend(self) -> bool:
        return self.trend is None


@dataclass(frozen=True)
class Behaviour:
    beta_price: float
    beta_social: float
    beta_habit: float
    beta_friction: float


@dataclass(frozen=True)
class Friction:
    """Login friction costs in utility units (docs/model.md section 5)."""

    native: float
    sso: float
    link: float
    create: float


# Event actions (docs/model.md section 7): one class per event type, in eventtypes.py.


@dataclass(frozen=True)
class Event:
    """An action placed on the timeline at ``step`` (0-based; applied before that step's choices).

    A recurring effect (``every == "year"``, docs/model.md section 7) fires every year on the day and month of
    ``date`` for ``days`` days, from ``date`` on; ``step`` is then the step of its first firing."""

    id: str
    step: int
    date: dt.date
    action: Any
    every: str | None = None
    days: int | None = None

    def actions(self) -> tuple[Any, ...]:
        """The primitive actions this event performs (an equity stake performs its effects)."""
        return self.action.actions()

    @property
    def recurring(self) -> bool:
        return self.every is not None

    def firings(self, calendar: Calendar, until: dt.date | None = None) -> tuple[tuple[dt.date, dt.date], ...]:
        """Every firing as (first day, last day), inclusive, that starts before ``until`` (default: the day
        after the calendar's last step). A one-off event fires once, on its date, for a day. A recurring one
        fires on the same day and month each year (29 February: on 28 February in other years)."""
        end = calendar.date_of(calendar.steps) if until is None else until
        if not self.recurring:
            return ((self.date, self.date),) if self.date < end else ()
        assert self.days is not None  # (the validator requires days with every)
        out = []
        year = self.date.year
        while True:
            try:
                first = self.date.replace(year=year)
            except ValueError:  # 29 February in a common year
                first = dt.date(year, 2, 28)
            if first >= end:
                break
            out.append((first, first + dt.timedelta(days=self.days - 1)))
            year += 1
        return tuple(out)


#: The trend rule when a scenario states none and no rolling-origin choice was made (and the choice's own
#: fallback): a trend is not carried past the data without evidence that it goes on (docs/model.md section 8).
UNSTATED_TREND_AFTER = "hold"


@dataclass(frozen=True)
class Forecast:
    """How trends continue after the fit cut-off (docs/model.md section 8, "Trends beyond the data"): ``linear``
    (at full strength), ``hold`` (attractiveness frozen at its value at the cut-off) or ``damped`` (the slope
    halves every ``half_life_years`` after the cut-off). ``trend_after`` None: the scenario does not say; the
    commands that report a forecast choose the rule by rolling-origin skill on the decision-time observations
    (:mod:`marketsim.experiments.trend_choice`) and write it in (:meth:`Scenario.with_forecast`); where nothing
    chose one, the trends hold (:data:`UNSTATED_TREND_AFTER`)."""

    trend_after: str | None = None
    half_life_years: float | None = None  # with damped only
    trend_uncertainty: bool = False  # projections draw the fitted trends within their standard errors (opt-in)

    @property
    def rule(self) -> str:
        """The rule the engine applies: the stated one, else :data:`UNSTATED_TREND_AFTER`."""
        return self.trend_after or UNSTATED_TREND_AFTER

    def trend_years(self, years: float, cut_years: float) -> float:
        """The years of trend accumulated ``years`` after the calendar start when the cut-off lies ``cut_years``
        after it: alpha_j(t) = alpha_j + trend_j x this. ``linear``: ``years``; after the cut-off ``hold`` stops
        at ``cut_years`` and ``damped`` adds the integral of 2^(-(s - cut) / h) ds, h / ln 2 x (1 - 2^(-d / h))
        for d = years - cut_years."""
        if self.rule == "linear" or years <= cut_years:
            return years
        if self.rule == "hold":
            return cut_years
        h = self.half_life_years
        assert h is not None  # (the validator requires it with damped)
        return cut_years + h / math.log(2) * -math.expm1(-math.log(2) * (years - cut_years) / h)


@dataclass(frozen=True)
class Observation:
    """Observed GMV shares (fractions) of some retailers over a period, from one source (docs/model.md section 8)."""

    source: str
    label: str  # the period as written: "2012Q3", "2013H1", "2012", or "START..END"
    start: dt.date  # first day (inclusive)
    end: dt.date  # last day (inclusive)
    shares: tuple[tuple[str, float], ...]  # (retailer, share)
    note: str = ""
    holdout: bool = False  # held out: no fit ever uses it; back-tests compare predictions with it

    def share(self, retailer: str) -> float | None:
        return dict(self.shares).get(retailer)


@dataclass(frozen=True)
class Uncertain:
    """A number no source pins, given as a range or a prior (docs/model.md section 8, "Uncertain parameters").

    ``path`` is the dotted scenario path (``retailers.JD.sso_share.weibo``, ``events.<id>.effects.0.factor``)
    that :meth:`Scenario.with_values` sets; ``value`` is the central value a point run uses; ``prior`` is
    ``uniform`` (a ``range``), ``normal``, ``lognormal`` or ``triangular`` with ``args`` in the order of
    :data:`PRIORS`; draws are truncated to the field's allowed interval ``bounds``. ``reason`` is the
    source or the word "assumption" with its explanation; a prior taken from a stored posterior
    (``prior: {posterior: FILE, parameter: PATH}``) is ``posterior`` with the weighted draws as ``args``
    (:class:`marketsim.scenario.distributions.Empirical`) and its provenance as ``reason``."""

    path: str
    value: float
    prior: str
    args: tuple[float, ...]
    reason: str
    bounds: tuple[float, float]
    integer: bool = False
    unit: str = ""  # the field's unit (its spec's), recorded in a stored posterior
    posterior: tuple[str, ...] = ()  # (file, parameter) of a prior taken from a stored posterior

    @property
    def law(self) -> Distribution:
        """The range or prior as a distribution of the table (:mod:`marketsim.distributions`)."""
        return make(self.prior, self.args)

    def ppf(self, u):
        """Values at unit-interval coordinates ``u`` (inverse CDF of the prior truncated to ``bounds``)."""
        return self.law.ppf(u, self.bounds)

    def distribution(self):
        """The prior (untruncated) as a frozen ``scipy.stats`` distribution."""
        return self.law.frozen()

    def describe(self) -> str:
        """One line: the range or prior, e.g. ``range 1 .. 2.5`` or ``lognormal(median 0.4, sigma 0.5)``."""
        return self.law.describe()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    calendar: Calendar
    market_size: Series
    currency: str
    consumers: Consumers
    providers: tuple[Provider, ...]
    retailers: tuple[Retailer, ...]
    behaviour: Behaviour
    friction: Friction
    events: tuple[Event, ...]
    observations: tuple[Observation, ...] = ()  # observed shares to fit (or the target_share shorthand)
    primary_source: str | None = None  # the source that sets the level; others get per-retailer offsets
    fit_until: dt.date | None = None  # fit cut-off: observations ending on or before it (default: first event)
    uncertain: tuple[Uncertain, ...] = ()  # parameters given as a range or prior (their central value is used)
    calibrated_events: tuple[str, ...] = ()  # paths of recurring effects' sizes given as 'calibrate' (held at 0)
    forecast: Forecast = Forecast()  # how trends continue after the fit cut-off (docs/model.md 4)
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
    def one_off_events(self) -> tuple[Event, ...]:
        """The events that happen once (not recurring effects, which are part of how the market behaves every
        year: the fit simulates them, and a counterfactual keeps them)."""
        return tuple(e for e in self.events if not e.recurring)

    @property
    def first_event_step(self) -> int | None:
        """The step of the first one-off event (recurring effects do not end the calibration window)."""
        return min((e.step for e in self.one_off_events), default=None)

    @property
    def calibration_window(self) -> int:
        """Steps before the first event (at least 1; all steps if there is no event)."""
        first = self.first_event_step
        return max(1, self.calendar.steps if first is None else min(first, self.calendar.steps))

    @property
    def events_outside(self) -> tuple[Event, ...]:
        """Events placed after the last step (a run shortened by ``--steps``): they never fire in this run."""
        return tuple(e for e in self.events if e.step >= self.calendar.steps)

    @property
    def needs_fit(self) -> bool:
        """True if some attractiveness, trend or recurring effect's size is 'calibrate'."""
        return any(r.calibrate or r.calibrate_trend for r in self.retailers) or bool(self.calibrated_events)

    def fit_cutoff(self, until: dt.date | None = None) -> dt.date:
        """The fit cut-off (docs/model.md section 8): ``until``, else ``fit_until``, else the first one-off event's
        date (recurring effects do not count), else the day after the calendar ends."""
        if until is not None:
            return until
        if self.fit_until is not None:
            return self.fit_until
        first = min((e.date for e in self.one_off_events), default=None)
        return first if first is not None else self.calendar.date_of(self.calendar.steps)

    def fit_observations(self, until: dt.date | None = None) -> tuple[Observation, ...]:
        """The observations a fit uses: those that end on or before the cut-off, never a held-out one
        (``holdout: true``, docs/model.md section 8), whatever the cut-off."""
        cut = self.fit_cutoff(until)
        return tuple(o for o in self.observations if o.end <= cut and not o.holdout)

    @property
    def holdout_observations(self) -> tuple[Observation, ...]:
        """The held-out observations (``holdout: true``): never fitted; back-tests compare predictions with them."""
        return tuple(o for o in self.observations if o.holdout)

    @property
    def fittable_observations(self) -> tuple[Observation, ...]:
        """Every observation a fit may use with some cut-off (all but the held-out ones)."""
        return tuple(o for o in self.observations if not o.holdout)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario (defaults filled in) as plain JSON-able data. Fields added by later versions of
        the format are left out where they hold their default (a retailer in the market from the start, an event
        that does not recur, an observation that is not held out), and an uncertain parameter's unit and
        posterior file (records, not the model: its draws and reason are in), so that the digest of a scenario that does not use them stays what it was: fit
        caches and result folders keyed by it stay valid."""
        quiet: dict[str, Any] = {
            "enters_later": False,
            "every": None,
            "days": None,
            "calibrated_events": (),
            "holdout": False,
            "forecast": dataclasses.asdict(Forecast()),
        }
        return _jsonable(
            dataclasses.asdict(
                self,
                dict_factory=lambda kv: {
                    k: v
                    for k, v in kv
                    if k not in ("raw", "source", "unit", "posterior")
                    and not (k in quiet and type(v) is type(quiet[k]) and v == quiet[k])
                },
            )
        )

    def digest(self) -> str:
        """sha256 of the resolved scenario: two scenarios with the same digest simulate identically."""
        return digest(self.to_dict(), default=None)

    # --- derived scenarios (always re-validated) --------------------------
    def with_values(self, values: Mapping[str, Any]) -> Scenario:
        """A new scenario with fields set by dotted path, e.g. ``{"retailers.JD.sso_share.weibo": 0.1}``.

        List items may be addressed by their ``name`` (retailers) or ``id`` (events) or by index.
        The result is validated again, so an impossible value raises :class:`ScenarioError`.
        """
        raw = copy.deepcopy(dict(self.raw))
        for path, value in values.items():
            set_path(raw, path, value)
        return parse_scenario(raw, source=f"{self.source} (with {', '.join(values)})")

    def with_forecast(self, trend_after: str, half_life_years: float | None = None) -> Scenario:
        """A new scenario that states ``forecast.trend_after`` (and the half-life with ``damped``); its other
        forecast settings are kept."""
        raw = copy.deepcopy(dict(self.raw))
        fc = dict(raw.get("forecast") or {})
        fc["trend_after"] = trend_after
        fc.pop("half_life_years", None)
        if half_life_years is not None:
            fc["half_life_years"] = half_life_years
        raw["forecast"] = fc
        return parse_scenario(raw, source=self.source)

    def with_overrides(
        self, *, seed: int | None = None, consumers: int | None = None, steps: int | None = None
    ) -> Scenario:
        vals: dict[str, Any] = {}
        if seed is not None:
            vals["seed"] = seed
        if consumers is not None:
            vals["consumers.count"] = consumers
        if steps is not None:
            vals["calendar.steps"] = steps
        return self.with_values(vals) if vals else self

    def without_events(self, ids: list[str] | None = None, *, given_as: str = "--baseline-without") -> Scenario:
        """The counterfactual: this scenario minus the named events (if ``ids`` is None, every one-off event:
        recurring effects, such as a yearly sale, stay in both arms). An unknown id is refused in one line that
        names the option it was ``given_as``, the scenario's event ids and where its file lists them."""
        known = [e.id for e in self.events]
        if ids is not None:
            for i in ids:
                if i not in known:
                    at = _declared_at(self.source, "events") if known else None
                    raise ScenarioError(
                        f"unknown event {i!r}{_suggest(i, known)}; allowed: the ids of {self.name}'s events: "
                        f"{', '.join(known) or '(none: it has no events)'}"
                        f"{f' (listed under events: at {at[0]}:{at[1]})' if at else ''}",
                        source=given_as,
                    )
        raw = copy.deepcopy(dict(self.raw))
        evs = raw.get("events") or []
        recurring = {e.id for e in self.events if e.recurring}
        keep = [
            ev for ev in evs if (item_key(ev, "id") in recurring if ids is None else item_key(ev, "id") not in ids)
        ]  # raw order != step order
        raw["events"] = keep
        if self.forecast.rule != "linear" and self.fit_until is None:
            # the counterfactual keeps the fit, and so the cut-off after which its trends hold or fade (without
            # the events its default cut-off would move to the calendar's end); a linear trend has no cut-off
            raw["fit_until"] = self.fit_cutoff()
        return parse_scenario(raw, source=self.source)


# --------------------------------------------------------------------------- loading


#: The line map of a loaded file (field path -> file and line): see :class:`marketsim.scenario.yamlsafe.LineMap`.
_Lines = yamlsafe.LineMap


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` (one line) on any problem.

    A file may start from another with ``base: other.yaml`` (a path relative to the file): see :func:`_merge`.
    A file's own events must fall inside its own calendar (a derived scenario, e.g. a shorter ``--steps``,
    may leave events beyond its horizon: :attr:`Scenario.events_outside`).
    A bare name that is not a file here (``"battle_lines_2013"``) means the bundled scenario of that name
    (:func:`marketsim.scenario.bundled.resolve`).
    """
    path = bundled.resolve(str(path))
    _refuse_other_kinds(path)
    data, lines = _read_with_bases(Path(path))
    return parse_scenario(data, source=str(path), lines=lines, strict_horizon=True)


def load_lines(path: str | Path) -> _Lines:
    """The line map of a scenario file with its bases (field path -> the file and line that set it), for a
    message about a field found after loading (e.g. consumers.count too large for memory)."""
    return _read_with_bases(Path(path))[1]


def _declared_at(source: str, path: str) -> tuple[str, int] | None:
    """The file and line where the scenario file ``source`` (with its bases) writes ``path``; None if ``source``
    is not a readable scenario file (a derived scenario's source, a file since changed)."""
    try:
        where, line = load_lines(source).find(path) if Path(source).is_file() else (source, None)
    except (ScenarioError, OSError, ValueError):
        return None
    return None if line is None else (where, line)


def _refuse_other_kinds(path: str | Path) -> None:
    """A sweep file given where a scenario goes gets one line naming the command that takes it (checked on the
    file itself, before its ``base:`` would be merged under it)."""
    data, lines = read_yaml(path)
    _Validator(str(path), lines).wrong_kind(data, "scenario")


def _read_text(p: Path, source: str) -> str:
    """The text of a scenario file: only a regular UTF-8 file of bounded size (see :func:`marketsim.scenario.yamlsafe.read_file`)."""
    return yamlsafe.read_file(p, source=source)


def _safe_load(text: str, source: str) -> Any:
    """Plain data from YAML text, refusing hostile or ambiguous YAML (see :mod:`marketsim.scenario.yamlsafe`)."""
    return yamlsafe.load(text, source)[0]


#: Most files one scenario may be built of through ``base:`` (the file given included; a real scenario uses
#: 2 or 3). A longer chain is refused with one line at the ``base:`` that would exceed it.
MAX_BASE_FILES = 32


def _read_with_bases(p: Path) -> tuple[Any, _Lines]:
    """The data of a scenario file merged over its bases (:func:`_merge`), and a line map that sends each field
    of the merged data to the file and line that wrote it (a base's event is reported in the base file)."""
    layers = _base_chain(p)
    data = layers[0].data
    # merged path -> (file, line, its path in that file): an item a base or the merge moved keeps its own path
    places = {k: (layers[0].source, n, k) for k, n in layers[0].lines.lines.items()}
    for layer in layers[1:]:
        top = {k: v for k, v in layer.data.items() if k != "base"}
        tr = _Track(places, {k: (layer.source, n, k) for k, n in layer.lines.lines.items()})
        try:
            data = _merge(data, top, tr=tr)
        except ScenarioError as e:  # at the field of this file that the merge refused (its path in this file)
            where = e.path or next((k for k in MERGE_KEYS if k in top), "base")
            raise ScenarioError(e.problem, source=layer.source, path=where, line=layer.lines.get(where)) from None
        places = tr.out
    lines = _Lines(source=layers[-1].source, lines={k: n for k, (_, n, _) in places.items()})
    lines.sources = {k: f for k, (f, _, _) in places.items() if f != lines.source}
    lines.paths = {k: q for k, (_, _, q) in places.items() if q != k}
    return data, lines


def _base_chain(path: str | Path) -> list[FileLayer]:
    """The files a scenario file is built from through ``base:``, root base first and the file given last, each
    with its own data and lines. Iterative; refuses (one line, at the offending ``base:`` line) a base that is
    not a usable path (not text, empty, a NUL character), a cycle (on real paths, so through symbolic links
    too), a chain of more than :data:`MAX_BASE_FILES` files, and a base that is not a readable YAML mapping
    (:func:`marketsim.scenario.yamlsafe.load_file`, which also names a symbolic-link loop). Paths of bases are joined to
    their file's folder; a layer's ``source`` is the path as reached from the file given (normalised: a '..' after
    a symbolic link is still read as the system resolves it)."""
    p, referrer = Path(path), None
    layers: list[FileLayer] = []
    seen: dict[str, str] = {}  # real path -> the path it was reached as
    while True:
        source = str(p) if not layers else os.path.normpath(p)
        data, lines = yamlsafe.load_file(p, source=source, referrer=referrer)
        layers.append(FileLayer(source, data, lines))
        seen[_real_path(p)] = source
        if "base" not in data:
            return layers[::-1]
        base, line = data["base"], lines.get("base")

        def fail(problem: str, source: str = source, line: int | None = line) -> NoReturn:  # this file's values
            raise ScenarioError(problem, source=source, path="base", line=line)

        if not isinstance(base, str):
            fail(f"expected the path of a base scenario file, got {_kind(base)}")
        if not base.strip():
            fail("is empty; allowed: the path of a base scenario file, relative to this file")
        if "\0" in base:
            fail(
                f"{base[:200]!r} contains a NUL character; allowed: the path of a base scenario file, relative to this file"
            )
        try:
            os.fsencode(base)
        except ValueError:  # a lone surrogate (a "\udXXX" escape): no file system path can hold it
            fail(f"{base[:200]!r} cannot be a file name on this system; allowed: the path of a base scenario file")
        bp = p.parent / base
        real = _real_path(bp)
        if real in seen:
            chain = " -> ".join([layer.source for layer in layers] + [os.path.normpath(bp)])
            fail(
                f"{base[:200]!r} is already being read: bases form a cycle ({chain[:400]}); allowed: a chain of "
                f"bases that ends in a file without 'base:'"
            )
        if len(layers) >= MAX_BASE_FILES:
            fail(
                f"{base[:200]!r} would be file {len(layers) + 1} of the chain of bases from {layers[0].source}; allowed: "
                f"at most {MAX_BASE_FILES} files in one chain (marketsim.scenario.core.MAX_BASE_FILES)"
            )
        referrer = yamlsafe.Referrer(source, line, "base", f"base scenario {base[:200]!r}")
        p = bp


def _real_path(p: Path) -> str:
    """The path with symbolic links resolved (a loop is left as it is: reading it is refused later)."""
    try:
        return os.path.realpath(p)
    except (OSError, ValueError, RuntimeError):
        return os.path.abspath(p)


class _Track:
    """Where each field of a merged scenario is written, built alongside :func:`_merge`: ``base`` and ``top``
    map field paths of the two inputs to (file, line, path in that file); ``out`` the paths of the merged data."""

    def __init__(self, base: dict[str, tuple[str, int, str]], top: dict[str, tuple[str, int, str]]):
        self.base, self.top = base, top
        self.out: dict[str, tuple[str, int, str]] = {}

    @staticmethod
    def _under(p: str, prefix: str) -> bool:
        return not prefix or p == prefix or p.startswith((prefix + ".", prefix + "["))

    def take(self, table: dict, src: str, dst: str) -> None:
        """Copy the places of ``src`` and everything under it in ``table`` to ``dst``."""
        for p, v in table.items():
            if self._under(p, src):
                self.out[dst + p[len(src) :]] = v  # src and dst are both the root (""), or both not

    def drop(self, prefix: str, *, keep_self: bool = False) -> None:
        for p in [p for p in self.out if self._under(p, prefix) and not (keep_self and p == prefix)]:
            del self.out[p]


#: Lists a file merges into its base item by item, by this key (docs/scenarios.md, "Building on a file").
MERGE_KEYS = {n.key: n.merge_key for n in S.SCENARIO.fields if isinstance(n, ListOf) and n.merge_key}


def _merge(
    base: dict, top: dict, path: str = "", *, tr: _Track | None = None, bp: str = "", tp: str = "", op: str = ""
) -> dict:
    """``top`` over ``base``: mappings merge key by key; ``retailers`` merge by ``name`` and ``events`` by ``id``
    (an item with a known key updates that item field by field, ``{id: X, remove: true}`` removes it, a new key
    is appended); any other value (numbers, other lists such as ``observations``) replaces the base's.

    With ``tr``, also records in ``tr.out`` where each field of the result is written (``bp``, ``tp``, ``op``:
    the paths of ``base``, ``top`` and the result in their documents)."""
    out = copy.deepcopy(base)
    if tr is not None:
        tr.take(tr.base, bp, op)
    for k, v in top.items():
        where = f"{path}.{k}" if path else str(k)
        bk, tk, ok = (f"{x}.{k}" if x else str(k) for x in (bp, tp, op))
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, where, tr=tr, bp=bk, tp=tk, op=ok)
        elif where in MERGE_KEYS and isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = _merge_list(out[k], v, MERGE_KEYS[where], tr=tr, bp=bk, tp=tk, op=ok)
        else:
            out[k] = copy.deepcopy(v)
            if tr is not None:
                tr.drop(ok)
                tr.take(tr.top, tk, ok)
        if tr is not None and tk in tr.top:
            tr.out[ok] = tr.top[tk]
    if tr is not None and tp in tr.top:
        tr.out[op] = tr.top[tp]
    return out


def item_key(item: Any, key: str) -> Any:
    """The merge key of a list item: its ``name``/``id``, or for an event without ``id`` the id the validator
    gives it (type:retailer:provider, from its first two required fields)."""
    if not isinstance(item, dict):
        return None
    if key in item:
        return item[key]
    if key == "id" and item.get("type") in REGISTRY:
        req = REGISTRY.required_keys(item["type"])
        return ":".join([item["type"]] + [str(item.get(k)) for k in req[:2]])
    return None


def _merge_list(
    base: list, top: list, key: str, *, tr: _Track | None = None, bp: str = "", tp: str = "", op: str = ""
) -> list:
    """``top``'s items over ``base``'s, by ``key``. Two items of ``top`` with the same key are not merged into one:
    both stay, and the validator reports the duplicate. ``tr``, ``bp``, ``tp``, ``op``: see :func:`_merge`."""
    out = [copy.deepcopy(b) for b in base]
    origin: list[tuple[int | None, int | None]] = [(i, None) for i in range(len(base))]  # (base index, top index)
    mine: set[int] = set()  # positions in ``out`` that this file gave (never merged into again)
    for t, item in enumerate(top):
        k = item_key(item, key)
        idx = next((i for i, b in enumerate(out) if i not in mine and k is not None and item_key(b, key) == k), None)
        if isinstance(item, dict) and item.get("remove") is True:
            if idx is None:
                known = ", ".join(str(item_key(b, key)) for b in out) or "none"
                at = tr.base.get(bp) if tr is not None else None  # where the base lists its items
                raise ScenarioError(
                    f"'remove: true' names {key} {k!r}, which the base does not have"
                    f"{_suggest(str(k), [str(item_key(b, key)) for b in out])}; allowed: its {key}s: {known}"
                    f"{f' (listed under {bp}: at {at[0]}:{at[1]})' if at else ''}",
                    path=f"{tp}[{t}].{key}" if tp and key in item else f"{tp}[{t}]" if tp else "",
                )
            del out[idx]
            del origin[idx]
            mine = {j - (j > idx) for j in mine}
            continue
        if idx is None:
            out.append(copy.deepcopy(item))
            origin.append((None, t))
            mine.add(len(out) - 1)
        else:
            both = isinstance(out[idx], dict) and isinstance(item, dict)
            out[idx] = _merge(out[idx], item) if both else copy.deepcopy(item)
            origin[idx] = (origin[idx][0] if both else None, t)
            mine.add(idx)
    if tr is not None:  # where each item now is: from the base, from top, or top's fields over the base's
        tr.drop(op, keep_self=True)
        for j, (bi, ti) in enumerate(origin):
            if ti is None:
                tr.take(tr.base, f"{bp}[{bi}]", f"{op}[{j}]")
            elif bi is None:
                tr.take(tr.top, f"{tp}[{ti}]", f"{op}[{j}]")
            else:
                _merge(base[bi], top[ti], tr=tr, bp=f"{bp}[{bi}]", tp=f"{tp}[{ti}]", op=f"{op}[{j}]")
    return out


def parse_text(text: str, source: str = "<scenario>", *, events: Registry = REGISTRY) -> Scenario:
    """Validate a scenario file's text; ``events``: the event types it may use."""
    data, lines = yamlsafe.load(text, source)
    return parse_scenario(data, source=source, lines=lines, strict_horizon=True, events=events)


def parse_scenario(
    data: Any,
    source: str = "<scenario>",
    lines: _Lines | None = None,
    *,
    strict_horizon: bool = False,
    events: Registry = REGISTRY,
) -> Scenario:
    """Validate plain data (as from ``yaml.safe_load``) into a frozen :class:`Scenario`; ``events``: the event types
    it may use."""
    v = _Validator(source, lines or _Lines(None, source), strict_horizon=strict_horizon, events=events)
    return v.scenario(data)


# --------------------------------------------------------------------------- the validator


def _suggest(key: str, allowed: list[str] | tuple[str, ...]) -> str:
    m = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


_MISSING = object()


class _Validator:
    """Checks plain data against the declared format (:mod:`marketsim.scenario.schema`) and builds the frozen objects.

    Per-field and per-container checks (type, range, allowed values, patterns, defaults, unknown and required
    keys; kind of container, non-empty, at most max_items, a variant's tag, duplicate merge keys) come from the
    spec (:meth:`get`, :meth:`check`, :meth:`block`, :meth:`container`, :meth:`unique`); the rules between fields
    (shares summing to 1, sso_share within logins, event dates inside the calendar, observations'
    identifiability) are written out below."""

    def __init__(self, source: str, lines: _Lines, *, strict_horizon: bool = False, events: Registry = REGISTRY):
        self.source, self.lines = source, lines
        self.types = events  # the event types files may use (eventtypes.REGISTRY)
        self.strict_horizon = strict_horizon  # a file's own events must fall inside its own calendar
        self.uncertain: list[Uncertain] = []  # uncertain parameters met so far (scenario files only)
        self.enters_later: dict[str, bool] = {}  # retailer -> not in the market at the start
        self.calibrated_events: list[str] = []  # paths of recurring effects' sizes given as 'calibrate'
        self.event_paths: dict[str, str] = {}  # event id -> its path in the file (events[3])
        self.posterior_uses: list[tuple[str, str, str, dict]] = []  # (path, file, parameter, body) of posterior priors

    def fail(self, path: str, msg: str) -> NoReturn:
        """Raise the one-line error at the file and line that write ``path``, naming the field by its path in that
        file (a merged scenario's ``events[2]`` may be the first event of the file that writes it)."""
        source, line, local = self.lines.where(path)
        raise ScenarioError(msg, source=source if line is not None else self.source, path=local, line=line)

    # --- primitives -------------------------------------------------------
    def mapping(self, x: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(x, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(required + optional)}, got {_kind(x)}")
        allowed = required + optional
        for k in x:
            if k not in allowed:
                self.fail(
                    f"{path}.{k}" if path else str(k),
                    f"unknown key {k!r}{_suggest(k, allowed)}; allowed: {', '.join(allowed)}",
                )
        for k in required:
            if k not in x:
                self.fail(path or "(top level)", f"missing required key {k!r}")
        return x

    def block(self, spec: S.Block, x: Any, path: str) -> dict:
        """``x`` as a mapping with the keys ``spec`` allows (unknown keys: "did you mean"; required keys present)."""
        return self.mapping(x, path, spec.required_keys, spec.optional_keys)

    def container(self, node: Node, x: Any, path: str, names: Mapping[str, tuple[str, ...]] | None = None) -> Any:
        """``x`` checked against the container ``node`` declares: a list or a mapping (null is empty where it may be
        null), non-empty and at most ``max_items`` where declared, a name map's keys (names, or the file's own
        ``names[node.keys]``); a variant's mapping and tag, returning the variant's full block."""
        if isinstance(node, Variants):
            if not isinstance(x, dict) or node.tag not in x:
                got = "" if isinstance(x, dict) else f", got {_kind(x)}"
                self.fail(
                    path, f"expected a mapping with '{node.tag}' ({', '.join(node.variants)}) and its parameters{got}"
                )
            return node.block(self.string(x[node.tag], f"{path}.{node.tag}", tuple(node.variants), what=node.what))
        if not isinstance(node, (ListOf, MapOf)):
            raise TypeError(f"{node.key!r} is declared as a {type(node).__name__}, not a container")
        is_list = isinstance(node, ListOf)
        x = _or(x, [] if is_list else {}) if node.nullable else x
        if not isinstance(x, list if is_list else dict) or len(x) < node.min_items:
            what = f"list of {node.what or node.key}" if is_list else f"mapping {node.what}"
            self.fail(path, f"expected a {'non-empty ' if node.min_items else ''}{what}, got {_kind(x)}")
        if node.max_items is not None and len(x) > node.max_items:
            self.fail(path, f"{len(x)} {node.key}; allowed: at most {node.max_items}")
        if isinstance(node, MapOf):
            for k in x:
                if node.keys == "name":
                    self.name(k, f"{path}.{k}")
                else:
                    assert names is not None, f"{node.key}: its keys name the file's own {node.keys}s"
                    self.string(k, f"{path}.{k}", names[node.keys], what=node.keys, declared=node.keys)
        return x

    def unique(self, node: ListOf, seen: set, key: Any, path: str) -> None:
        """The merge key of the item at ``path`` (a retailer's name, an event's id) must differ from earlier items'."""
        if key in seen:
            noun, k = node.item.key, node.merge_key
            self.fail(f"{path}.{k}", f"duplicate {noun} {k} {key!r}; give each {noun} a unique '{k}'")
        seen.add(key)

    def get(
        self,
        spec: S.Block,
        d: dict,
        key: str,
        path: str,
        *,
        ukey: str | None = None,
        choices: tuple[str, ...] | None = None,
        default: Any = _MISSING,
    ) -> Any:
        """Field ``key`` of the mapping ``d`` (at ``path``), checked against its spec in ``spec``; its default when
        the key is absent, or null where the field may be null. ``ukey``: the dotted scenario path under which an
        uncertain value is recorded; ``choices``: the allowed names when the field refers to the file's own
        providers or retailers; ``default``: a default that depends on other fields (target_share)."""
        f = spec.field(key)
        fp = f"{path}.{key}" if path else key
        if key not in d or (d[key] is None and f.nullable):
            dv = f.default if default is _MISSING else default
            return None if dv is None else self.check(f, copy.deepcopy(dv), fp, ukey=ukey, choices=choices)
        return self.check(f, d[key], fp, ukey=ukey, choices=choices)

    def check(
        self, f: S.Field, x: Any, path: str, *, ukey: str | None = None, choices: tuple[str, ...] | None = None
    ) -> Any:
        """One value against its field spec: the value the dataclasses hold (None for 'calibrate')."""
        t = f.type
        if t in ("number", "integer"):
            if f.calibrate and x == "calibrate":
                return None
            if f.calibrate and isinstance(x, str):
                fix = number_fix(x, f.lo, f.hi, f.lo_open)
                self.fail(path, f"expected a number ({f.unit}) or 'calibrate', got {x!r}{'; ' + fix if fix else ''}")
            if f.series:
                return self.series(x, path, f.lo, f.hi, lo_open=f.lo_open)
            v = self.number(
                x,
                path,
                f.lo,
                f.hi,
                lo_open=f.lo_open,
                integer=t == "integer",
                key=ukey if f.uncertain else None,
                unit=f.unit or "",
            )
            if f.multiple_of and v % f.multiple_of:
                self.fail(
                    path,
                    f"{v} is odd; allowed: an even number ({f.hint})"
                    if f.multiple_of == 2
                    else f"{v} is not a multiple of {f.multiple_of}; allowed: {f.multiple_of}, {2 * f.multiple_of}, ...",
                )
            return v
        if t == "string":
            allowed = choices if choices is not None else (f.choices or None)
            s = self.string(
                x, path, None if allowed is None else tuple(allowed) + f.extra_choices, what=f.what, declared=f.refers
            )
            if f.pattern and not re.match(f.pattern, s):
                self.fail(path, f"invalid {f.what} {s!r}; allowed: {f.hint or f'text matching {f.pattern}'}")
            return s
        if t == "boolean":
            if not isinstance(x, bool):
                self.fail(path, f"expected true or false, got {x!r}; allowed: true or false (unquoted)")
            return x
        if t == "name":
            return self.name(x, path)
        if t == "date":
            return self.date(x, path)
        if t == "period":
            return self.period(x, path)
        if t == "date_or_step":
            if isinstance(x, int) and not isinstance(x, bool):
                return self.number(x, path, 0, S.MAX_STEPS, integer=True)
            return self.date(x, path)
        if t == "names":
            if not isinstance(x, list):
                self.fail(path, f"expected a list of {f.refers} names, got {_kind(x)}")
            for k, p in enumerate(x):
                self.string(p, f"{path}[{k}]", choices, what=f.refers, declared=f.refers)
            if len(set(x)) != len(x):
                self.fail(path, f"a {f.refers} is listed twice")
            return tuple(x)
        if t in ("pair", "list"):  # a pair's numbers: its reader checks them (their bounds depend on the use)
            if not isinstance(x, list) or (len(x) != 2 if t == "pair" else not x):
                self.fail(path, f"expected {'[lo, hi]' if t == 'pair' else 'a non-empty list'}, got {_kind(x)}")
            return x
        raise AssertionError(t)  # pragma: no cover - every scenario field type is handled above

    def number(
        self,
        x: Any,
        path: str,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        integer: bool = False,
        key: str | None = None,
        unit: str = "",
    ) -> float:
        """A number in [lo, hi]. With ``key`` (the field's dotted scenario path) the field may instead be an
        uncertain parameter: ``{value, range, assumption|source}`` or ``{prior, <its parameters>, value?,
        assumption|source}``; it is recorded and its central value returned."""
        if key is not None and isinstance(x, dict):
            return self.uncertain_number(x, path, lo, hi, lo_open=lo_open, integer=integer, key=key, unit=unit)
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            fix = number_fix(x, lo, hi, lo_open)  # 15% where a fraction goes: "write 0.15"
            self.fail(
                path, f"expected {'an integer' if integer else 'a number'}, got {_kind(x)}{'; ' + fix if fix else ''}"
            )
        if isinstance(x, float) and not math.isfinite(x):
            self.fail(path, f"expected a finite number, got {x}")
        if integer and not float(x).is_integer():
            self.fail(path, f"expected an integer, got {x}")
        rng = _range_text(lo, hi, lo_open)
        if lo is not None and (x < lo or (lo_open and x == lo)):
            self.fail(path, f"{x} is out of range; allowed: {rng}")
        if hi is not None and x > hi:
            fix = number_fix(x, lo, hi, lo_open)
            self.fail(path, f"{x} is out of range; allowed: {rng}{'; ' + fix if fix else ''}")
        return int(x) if integer else float(x)

    def uncertain_number(
        self, x: dict, path: str, lo, hi, *, lo_open: bool, integer: bool, key: str, unit: str = ""
    ) -> float:
        U = S.UNCERTAIN
        self.block(U, x, path)
        if ("range" in x) == ("prior" in x):
            self.fail(
                path,
                "an uncertain number needs exactly one of 'range: [lo, hi]' or 'prior: "
                f"{' | '.join(PRIORS)}' (with its parameters); or write a plain number",
            )
        if ("assumption" in x) == ("source" in x):
            self.fail(
                path,
                "say why the number is uncertain: give exactly one of 'assumption: <why this range>' "
                "or 'source: <where the prior comes from>'",
            )
        reason_key = "assumption" if "assumption" in x else "source"
        reason = self.check(U.field(reason_key), x[reason_key], f"{path}.{reason_key}")
        reason = reason if reason_key == "source" else f"assumption: {reason}"
        if "unit" in x:
            self.check(U.field("unit"), x["unit"], f"{path}.unit")
        bounds = (-math.inf if lo is None else lo, math.inf if hi is None else hi)
        prior_keys = {k for ks, _ in PRIORS.values() for k in ks}
        args: tuple[float, ...]  # (lo, hi) of a range, else the prior's parameters in its order
        origin: tuple[str, ...] = ()  # (file, parameter) of a prior taken from a stored posterior
        if "range" in x:
            r = self.check(U.field("range"), x["range"], f"{path}.range")
            a = self.number(r[0], f"{path}.range[0]", lo, hi, lo_open=lo_open)
            b = self.number(r[1], f"{path}.range[1]", lo, hi, lo_open=lo_open)
            if not a < b:
                self.fail(f"{path}.range", f"lo {a:g} is not below hi {b:g}")
            extra = [k for k in x if k in prior_keys]
            if extra:
                self.fail(
                    f"{path}.{extra[0]}",
                    f"{extra[0]!r} belongs to a prior; with 'range' give only value and the reason",
                )
            prior, args, central = "uniform", (a, b), (a + b) / 2
        elif isinstance(x["prior"], dict):
            for k in x:
                if k in prior_keys:
                    self.fail(f"{path}.{k}", f"a prior from a posterior has no {k!r}; it takes posterior, parameter")
            emp, origin, provenance = self.posterior_prior(x["prior"], f"{path}.prior", lo, hi, lo_open, integer, unit)
            prior, args, central = emp.family, emp.args, emp.centre
            if integer:
                central = round(central)
            reason = f"{provenance}; {reason}"
        else:
            prior = self.check(U.field("prior"), x["prior"], f"{path}.prior")
            keys = PRIORS[prior][0]
            for k in x:
                if k in prior_keys and k not in keys:
                    self.fail(f"{path}.{k}", f"a {prior} prior has no {k!r}; it takes {', '.join(keys)}")
            for k in keys:
                if k not in x:
                    self.fail(path, f"a {prior} prior needs {', '.join(keys)} (missing {k!r})")
            args = tuple(self.number(x[k], f"{path}.{k}") for k in keys)
            if prior == "uniform" and not args[0] < args[1]:
                self.fail(path, f"lo {args[0]:g} is not below hi {args[1]:g}")
            for k, v in zip(keys, args, strict=True):  # sd, sigma, median: > 0 (their specs say so)
                lo_k = U.field(k).lo
                if lo_k is not None and v <= lo_k:
                    self.fail(f"{path}.{k}", f"{v:g} is out of range; allowed: x > {lo_k:g}")
            law = make(prior, args)
            if law.rule and not law.ok():
                self.fail(path, f"a {prior} prior needs {law.rule}")
            central = law.centre
        value = self.number(x.get("value", central), f"{path}.value", lo, hi, lo_open=lo_open, integer=integer)
        if prior in ("uniform", "triangular") and not args[0] <= value <= args[-1]:
            self.fail(f"{path}.value", f"{value:g} lies outside its own range {args[0]:g} .. {args[-1]:g}")
        if prior == Empirical.family:
            a, b = make(prior, args).frozen().support()
            if not a <= value <= b:
                self.fail(f"{path}.value", f"{value:g} lies outside the posterior's draws {a:g} .. {b:g}")
        if lo is not None and lo_open:
            bounds = (math.nextafter(lo, math.inf), bounds[1])
        self.uncertain.append(
            Uncertain(key, value, prior, args, reason, bounds, integer, unit, origin if prior == "posterior" else ())
        )
        return value

    def posterior_prior(
        self, spec: Any, path: str, lo, hi, lo_open: bool, integer: bool, unit: str
    ) -> tuple[Empirical, tuple[str, str], str]:
        """``prior: {posterior: FILE, parameter: PATH}``: the weighted draws of PATH in the posterior file FILE
        (relative to this scenario's file) as a distribution, (FILE, PATH), and the provenance line. Refused in
        one line: a missing or damaged file, a parameter the file lacks, a parameter of another unit or allowed
        interval than this field, or draws outside this field's range."""
        spec = self.mapping(spec, path, ("posterior", "parameter"))
        name = self.string(spec["posterior"], f"{path}.posterior", what="posterior file")
        param = self.string(spec["parameter"], f"{path}.parameter", what="parameter path")
        file = Path(name).expanduser()
        if not file.is_absolute():
            src = Path(self.lines.find(path)[0] or self.source)
            file = Path(os.path.normpath((src.parent if src.suffix else Path.cwd()) / file))
        try:
            body = read_document(file)
        except BadPosterior as e:
            what = (
                "give the posterior file `marketsim fit OTHER.yaml` stored (relative to this scenario's file)"
                if str(e) == "is missing"
                else "run `marketsim fit` on its scenario again to remake it"
            )
            self.fail(f"{path}.posterior", f"{file}: the posterior {e}; {what}")
        params = body["params"]
        if param not in params:
            self.fail(
                f"{path}.parameter",
                f"{param!r} is not a parameter of the posterior {name}{_suggest(param, params)}; "
                f"it has: {', '.join(params) or '(none)'}",
            )
        xs = [float(v[param]) for v in body["samples"]]
        law = Empirical.of(xs, body["weights"])
        a, b = law.frozen().support()
        fitted: dict = body["fitted"] if isinstance(body.get("fitted"), dict) else {}
        theirs = (fitted.get("fields") or {}).get(param) if isinstance(fitted.get("fields"), dict) else None
        mine = _range_text(lo, hi, lo_open)
        if isinstance(theirs, dict):
            t_unit = theirs.get("unit") or ""
            t_lo, t_hi = (list(theirs.get("bounds") or [None, None]) + [None, None])[:2]
            t_range = _range_text(t_lo, t_hi, False)
            lo_ok = (lo is None and t_lo is None) or (
                lo is not None and t_lo is not None and t_lo in (lo, math.nextafter(lo, math.inf))
            )
            same_bounds = lo_ok and t_hi == hi
            if t_unit != unit or not same_bounds:
                self.fail(
                    f"{path}.parameter",
                    f"{param} in {name} is a {t_unit or 'number'} ({t_range}), this field a {unit or 'number'} "
                    f"({mine}); what would be right: a parameter of the same kind as this field",
                )
        if (lo is not None and (a < lo or (lo_open and a <= lo))) or (hi is not None and b > hi):
            self.fail(
                f"{path}.parameter",
                f"{param} in {name} has draws {a:g} .. {b:g}, outside this field's range ({mine}); "
                f"what would be right: a parameter of the same kind as this field",
            )
        if integer and not all(float(v).is_integer() for v in law.values):
            self.fail(f"{path}.parameter", f"{param} in {name} has non-integer draws; this field is an integer")
        self.posterior_uses.append((path, name, param, body))  # checked against the scenario once it is built
        return law, (str(file), param), posterior_provenance(name, param, body)

    def series(self, x: Any, path: str, lo: float | None, hi: float | None, *, lo_open: bool = False) -> Series:
        """A number, or a dated series ``{YYYY-MM-DD: value, ...}`` (linear in between, constant outside)."""
        if not isinstance(x, dict):
            return Series.constant(self.number(x, path, lo, hi, lo_open=lo_open))
        if not x:
            self.fail(path, "expected a number or a mapping of dates to numbers, got an empty mapping")
        pts = []
        for k, v in x.items():
            d = self.date(k, f"{path}.{k}")
            pts.append((d, self.number(v, f"{path}.{k}", lo, hi, lo_open=lo_open)))
        pts.sort()
        for (d0, _), (d1, _) in pairwise(pts):
            if d0 == d1:
                self.fail(path, f"the date {d0} is given twice")
        return Series(tuple(pts))

    def string(
        self, x: Any, path: str, choices: tuple[str, ...] | None = None, what: str = "value", declared: str = ""
    ) -> str:
        """A string, one of ``choices`` if given. ``declared``: the kind of name the choices are (``provider``,
        ``retailer``): an unknown one is then also told where the file declares them and how to declare it."""
        if not isinstance(x, str):
            self.fail(path, f"expected a string, got {_kind(x)}")
        if choices is not None and x not in choices:
            self.fail(
                path,
                f"unknown {what} {x!r}{_suggest(x, choices)}; allowed: {', '.join(choices)}"
                f"{self.declaration(declared, x, path)}",
            )
        return x

    def declaration(self, kind: str, x: str, path: str) -> str:
        """Where the file declares the names of ``kind`` (:data:`DECLARED`) and the shortest declaration of ``x``
        there, from the format's required fields (:func:`marketsim.scenario.fieldspec.example`), as a clause
        to end a message with; "" for names that are not declared by the file."""
        if kind not in DECLARED:
            return ""
        key, rule = DECLARED[kind]
        src, line = self.lines.find(key)
        here = self.lines.find(path)[0]
        at = "" if line is None else f" at line {line}" if src == here else f" at {src}:{line}"
        if kind == "source":  # named by the observations themselves
            return f"; sources are the observations' `source:` values (`{key}:`{at}): give one of them, or add observations from {x}"
        if not NAME_RE.match(x):  # not a name a file could declare: the list above is what it can be
            return f"; {kind}s are declared under `{key}:`{at}"
        node = S.SCENARIO[key]
        whole = example(node, x)  # "{wechat: {...}}" or "[{name: Suning, ...}]"
        item = whole[1:-1] if isinstance(node, MapOf) else f"- {whole[1:-1]}"
        notes = ["its numbers are placeholders"] + (
            [f"the base's {key} stay"] if line is not None and src != here else []
        )
        after = f" ({'; '.join(notes)}){'; ' + rule if rule else ''}"
        if line is not None and src == here:
            return f"; {kind}s are declared under `{key}:`{at}: to use {x}, add `{item}` there{after}"
        if line is None:  # a scenario derived without its files' lines (--set, a sweep's design point)
            return f"; {kind}s are declared under `{key}:`: to use {x}, declare it in the file: `{key}: {whole}`{after}"
        return (
            f"; {kind}s are declared under `{key}:`{at}: to use {x}, declare it in this file as `{key}: {whole}`{after}"
        )

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

    def version(self, spec: S.Block, d: dict) -> None:
        """The file's ``schema:`` must be a version its format (``spec``) reads."""
        choices = spec.field("schema").choices
        if d["schema"] not in choices:
            self.fail("schema", f"unsupported schema {d['schema']!r}; allowed: {', '.join(choices)}")

    def wrong_kind(self, d: Any, expected: str) -> None:
        """Refuse a file of another kind (a sweep given where a scenario goes, or the reverse), naming the command
        that takes it, before any other check would call its keys unknown."""
        kind = S.kind_of(d)
        if kind is not None and kind != expected:
            schema = d["schema"]
            self.fail(
                "schema",
                f"this is a {kind} file ({schema}), not a {expected} file; "
                f"use it with: {S.FILE_KINDS[schema][1]} {self.source}",
            )

    # --- sections ---------------------------------------------------------
    def scenario(self, d: Any) -> Scenario:
        T = S.SCENARIO
        self.wrong_kind(d, "scenario")
        d = self.block(T, d, "")
        self.version(T, d)
        name = self.get(T, d, "name", "")
        description = self.get(T, d, "description", "")
        seed = self.get(T, d, "seed", "")
        cal = self.calendar(d["calendar"])
        market = self.block(S.MARKET, d["market"], "market")
        size = self.get(S.MARKET, market, "size", "market")
        currency = self.get(S.MARKET, market, "currency", "market")
        providers = self.providers(d["providers"])
        pnames = tuple(p.name for p in providers)
        retailers = self.retailers(d["retailers"], pnames)
        consumers = self.consumers(d["consumers"], any(r.calibrate for r in retailers))
        behaviour = self.behaviour(d.get("behaviour", {}))
        friction = self.friction(d.get("friction", {}))
        events = self.events(d.get("events"), cal, pnames, tuple(r.name for r in retailers))
        for ev in events:  # a shopping rate above 1 a step is no probability
            for act in ev.actions():
                f = getattr(act, "factor", None)
                if act.type == "shopping_rate" and f is not None and f * consumers.shopping_rate > 1 + 1e-12:
                    self.fail(
                        f"{self.event_paths.get(ev.id, 'events')}.factor",
                        f"factor {f:g} x consumers.shopping_rate {consumers.shopping_rate:g} = "
                        f"{f * consumers.shopping_rate:.3g}: a consumer shops at most once a step; allowed: at most "
                        f"{1 / consumers.shopping_rate:.3g}",
                    )
        fit_until = self.get(T, d, "fit_until", "")
        observations, primary = self.observations(d, cal, retailers, events, fit_until)
        forecast = self.forecast(d.get("forecast", {}))
        sc = Scenario(
            name=name,
            description=description,
            seed=seed,
            calendar=cal,
            market_size=size,
            currency=currency,
            consumers=consumers,
            providers=providers,
            retailers=retailers,
            behaviour=behaviour,
            friction=friction,
            events=events,
            observations=observations,
            primary_source=primary,
            fit_until=fit_until,
            uncertain=tuple(self.uncertain),
            calibrated_events=tuple(self.calibrated_events),
            forecast=forecast,
            source=self.source,
            raw=copy.deepcopy(d),
        )
        held = [(o.source, o.start, o.end) for o in observations]
        for path, file, param, body in self.posterior_uses:  # an ex-post posterior must not leak into this scenario
            why = ex_post_refusal(body, file, param, name, sc.fit_cutoff(), held)
            if why:
                self.fail(f"{path}.posterior", why)
        return sc

    def calendar(self, d: Any) -> Calendar:
        C = S.CALENDAR
        d = self.block(C, d, "calendar")
        cal = Calendar(**{k: self.get(C, d, k, "calendar") for k in ("start", "step_days", "steps", "warmup")})
        last = dt.date.max - dt.timedelta(days=cal.step_days * (S.MAX_STEPS + 1))
        if cal.start > last:
            self.fail(
                "calendar.start", f"{cal.start} leaves no room for the calendar; allowed: a start on or before {last}"
            )
        return cal

    def consumers(self, d: Any, needs_conversion: bool) -> Consumers:
        C, B = S.CONSUMERS, S.CONSUMERS.at("basket", S.Block)
        d = self.block(C, d, "consumers")
        b = self.block(B, d["basket"], "consumers.basket")
        if d.get("conversion") is None and needs_conversion:
            self.fail(
                "consumers",
                "missing required key 'conversion' (share of shoppers who buy): a retailer's attractiveness is 'calibrate', and shares alone fix it only up to a constant",
            )
        k = "consumers"
        return Consumers(
            count=self.get(C, d, "count", k),
            shopping_rate=self.get(C, d, "shopping_rate", k, ukey=f"{k}.shopping_rate"),
            conversion=None if d.get("conversion") is None else self.get(C, d, "conversion", k, ukey=f"{k}.conversion"),
            basket=Basket(
                mean=self.get(B, b, "mean", f"{k}.basket"),
                sigma=self.get(B, b, "sigma", f"{k}.basket", ukey=f"{k}.basket.sigma"),
            ),
            turnover=self.get(C, d, "turnover", k, ukey=f"{k}.turnover"),
        )

    def observations(self, d: dict, cal: Calendar, retailers: tuple[Retailer, ...], events, fit_until):
        """Observed share series (docs/model.md section 8), or the ``target_share`` shorthand as one observation."""
        OB = S.OBSERVATION
        rnames = tuple(r.name for r in retailers)
        raw = d.get("observations")
        given_targets = [i for i, r in enumerate(self.raw_retailers) if isinstance(r, dict) and "target_share" in r]
        if _or(raw, []) != []:
            if given_targets:
                i = given_targets[0]
                self.fail(
                    f"retailers[{i}].target_share",
                    "give calibration targets either as 'observations' or as "
                    "target_share, not both (target_share is shorthand for one observation)",
                )
            raw = self.container(S.SCENARIO["observations"], raw, "observations")
            out, seen = [], set()
            for i, o in enumerate(raw):
                path = f"observations[{i}]"
                o = self.block(OB, o, path)
                src = self.get(OB, o, "source", path)
                label, start, end = self.get(OB, o, "period", path)
                if start < cal.start:
                    self.fail(
                        f"{path}.period",
                        f"{label} starts {start}, before the calendar ({cal.start}); allowed: move "
                        f"calendar.start back (a burn-in runs before it) or drop the observation",
                    )
                sh = self.container(OB["shares"], o["shares"], f"{path}.shares", {"retailer": rnames})
                shares = [
                    (rn, self.check(expect(OB.at("shares", S.MapOf).value, S.Field), v, f"{path}.shares.{rn}"))
                    for rn, v in sh.items()
                ]
                if sum(v for _, v in shares) > 1.05:  # sources round, and define the market differently (offsets)
                    self.fail(
                        f"{path}.shares",
                        f"shares sum to {sum(v for _, v in shares):.4g}; allowed: at most 1.05 "
                        f"(fractions, not percent)",
                    )
                if (src, start, end) in seen:
                    self.fail(path, f"{src} {label} is given twice")
                seen.add((src, start, end))
                note = self.get(OB, o, "note", path)
                holdout = self.get(OB, o, "holdout", path)
                out.append(Observation(src, label, start, end, tuple(shares), note, holdout))
            # the level is set by a source a fit can use: held-out observations' sources count only where every
            # observation is held out (then no fit is possible anyway)
            sources = sorted({o.source for o in out if not o.holdout} or {o.source for o in out})
            if d.get("primary_source") is None:
                if len(sources) > 1:
                    self.fail(
                        "primary_source",
                        f"missing: observations come from {', '.join(sources)}; name the one "
                        "that sets the level (the others get per-retailer offsets)",
                    )
                primary = sources[0]
            else:
                primary = self.get(S.SCENARIO, d, "primary_source", "", choices=tuple(sources))
            return tuple(out), primary
        if d.get("primary_source") is not None:
            self.fail("primary_source", "there are no observations to take a primary source from")
        if not any(r.calibrate or r.calibrate_trend for r in retailers):
            return (), None
        # the shorthand: target shares over the steps before the first one-off event (recurring effects do not end
        # the calibration window), or the cut-off, or the calendar's end
        ends = (
            [cal.date_of(cal.steps)] + [e.date for e in events if not e.recurring] + ([fit_until] if fit_until else [])
        )
        end = min(ends) - dt.timedelta(days=1)
        if end < cal.start:
            end = cal.date_of(1) - dt.timedelta(days=1)
        label = f"{cal.start}..{end}"
        return (
            Observation("target_share", label, cal.start, end, tuple((r.name, r.target_share) for r in retailers)),
        ), "target_share"

    def period(self, x: Any, path: str) -> tuple[str, dt.date, dt.date]:
        """A period: a year (2012), a half (2013H1), a quarter (2012Q3), or {start, end} (inclusive dates)."""
        if isinstance(x, dict):
            x = self.mapping(x, path, ("start", "end"))
            a, b = self.date(x["start"], f"{path}.start"), self.date(x["end"], f"{path}.end")
            if b < a:
                self.fail(path, f"end {b} is before start {a}")
            return f"{a}..{b}", a, b
        text = str(x) if isinstance(x, int) and not isinstance(x, bool) else x
        if isinstance(text, str):
            m = re.fullmatch(r"(\d{4})(?:([QH])([1-4]))?", text.strip())
            if m:
                y = int(m.group(1))
                if m.group(2) is None:
                    return text, dt.date(y, 1, 1), dt.date(y, 12, 31)
                k = int(m.group(3))
                months = 3 if m.group(2) == "Q" else 6
                if m.group(2) == "H" and k > 2:
                    self.fail(path, f"{text!r}: a year has halves H1 and H2")
                first = dt.date(y, 1 + months * (k - 1), 1)
                nxt = dt.date(y + 1, 1, 1) if months * k == 12 else dt.date(y, 1 + months * k, 1)
                return text, first, nxt - dt.timedelta(days=1)
        self.fail(
            path,
            f"expected a period: a year (2012), a half (2013H1), a quarter (2012Q3) or "
            f"{{start: YYYY-MM-DD, end: YYYY-MM-DD}}, got {x!r}",
        )
        raise AssertionError

    def providers(self, d: Any) -> tuple[Provider, ...]:
        P = S.PROVIDER
        out = []
        for pname, spec in self.container(S.PROVIDERS, d, "providers").items():
            path = f"providers.{pname}"
            spec = self.block(P, spec, path)
            net, nd, npath = None, spec.get("network"), f"{path}.network"
            if nd is not None:
                V = self.container(S.NETWORK, nd, npath)
                self.block(V, nd, npath)
                params = tuple((f.key, self.check(f, nd[f.key], f"{npath}.{f.key}")) for f in V.fields[1:])
                net = Network(nd[S.NETWORK.tag], params)
            out.append(
                Provider(
                    name=pname,
                    penetration=self.get(P, spec, "penetration", path, ukey=f"{path}.penetration"),
                    network=net,
                    weight=self.get(P, spec, "weight", path, ukey=f"{path}.weight"),
                )
            )
        return tuple(out)

    def retailers(self, d: Any, pnames: tuple[str, ...]) -> tuple[Retailer, ...]:
        L, R = S.SCENARIO.at("retailers", S.ListOf), S.RETAILER
        self.raw_retailers = d = self.container(L, d, "retailers")
        out: list[Retailer] = []
        seen: set[str] = set()
        for i, r in enumerate(d):
            path = f"retailers[{i}]"
            r = self.block(R, r, path)
            name = self.get(R, r, "name", path)
            key = f"retailers.{name}"
            self.unique(L, seen, name, path)
            kind = self.get(R, r, "kind", path)
            rate_key, other = ("take_rate", "margin") if kind == "platform" else ("margin", "take_rate")
            if other in r:
                self.fail(f"{path}.{other}", f"a {kind} retailer earns by {rate_key}, not {other}; use {rate_key}")
            rate = self.get(R, r, rate_key, path, ukey=f"{key}.{rate_key}")
            alpha = self.get(R, r, "attractiveness", path, ukey=f"{key}.attractiveness")
            trend = self.get(R, r, "trend", path, ukey=f"{key}.trend")
            logins = self.get(R, r, "logins", path, choices=pnames)
            sso_items = []
            for p, s in self.container(
                R["sso_share"], r.get("sso_share"), f"{path}.sso_share", {"provider": pnames}
            ).items():
                if p not in logins:
                    src, line = self.lines.find(f"{path}.logins")
                    at = (
                        ""
                        if line is None
                        else f" at line {line}"
                        if src == self.lines.find(f"{path}.sso_share")[0]
                        else f" at {src}:{line}"
                    )
                    self.fail(
                        f"{path}.sso_share.{p}",
                        f"{name} does not accept {p} login; allowed: providers in its logins ({', '.join(logins) or 'none'}"
                        f"), or add {p} to its logins{at}: logins: [{', '.join([*logins, p])}]",
                    )
                sso_items.append(
                    (
                        p,
                        self.check(
                            expect(R.at("sso_share", S.MapOf).value, S.Field),
                            s,
                            f"{path}.sso_share.{p}",
                            ukey=f"{key}.sso_share.{p}",
                        ),
                    )
                )
            if sum(s for _, s in sso_items) > 1 + 1e-9:
                self.fail(
                    f"{path}.sso_share",
                    f"shares sum to {sum(s for _, s in sso_items):.4g}; allowed: at most 1 (the rest use native accounts)",
                )
            init = self.get(R, r, "initial_share", path)
            target = self.get(R, r, "target_share", path, default=init)
            later = self.get(R, r, "enters_later", path)
            self.enters_later[name] = later
            if later and init > 0:
                self.fail(
                    f"{path}.initial_share",
                    f"{name} enters later (enters_later: true), so it has no customers at the start; allowed: 0",
                )
            if later and (alpha is None or trend is None):
                self.fail(
                    f"{path}.{'attractiveness' if alpha is None else 'trend'}",
                    f"{name} enters later (enters_later: true): no observation before it enters can fit it; "
                    f"allowed: a number (with a range if it is uncertain)",
                )
            if alpha is None and target <= 0:
                self.fail(
                    f"{path}.target_share",
                    "a retailer calibrated to a zero share has attractiveness minus infinity; allowed: a share > 0, or give 'attractiveness'",
                )
            out.append(
                Retailer(
                    name=name,
                    kind=kind,
                    revenue_rate=rate,
                    attractiveness=alpha,
                    price_index=self.get(R, r, "price_index", path, ukey=f"{key}.price_index"),
                    logins=logins,
                    initial_share=init,
                    target_share=target,
                    sso_share=tuple(sso_items),
                    trend=trend,
                    enters_later=later,
                )
            )
        for key in ("initial_share", "target_share"):
            tot = sum(getattr(r, key) for r in out)
            if abs(tot - 1) > 1e-6:  # at the last retailer's field that a file gives, naming each value and its line
                last = f"retailers[{max((i for i in range(len(out)) if key in d[i]), default=len(out) - 1)}].{key}"
                here = self.lines.find(last)[0]
                parts = []
                for i, r in enumerate(out):
                    src, line = self.lines.find(f"retailers[{i}].{key}" if key in d[i] else f"retailers[{i}]")
                    given = "" if key in d[i] else " from initial_share" if key == "target_share" else " by default"
                    at = "" if line is None else f" at line {line}" if src == here else f" at {src}:{line}"
                    parts.append(f"{r.name} {getattr(r, key):g}{given}{at}")
                self.fail(
                    last,
                    f"{key} values sum to {tot:.6g} ({', '.join(parts)}); they must sum to 1: "
                    f"{'add' if tot < 1 else 'take'} {abs(1 - tot):.6g} {'to' if tot < 1 else 'from'} them, "
                    f"or add a retailer for the rest of the market",
                )
        return tuple(out)

    def behaviour(self, d: Any) -> Behaviour:
        B = S.BEHAVIOUR
        d = self.block(B, d, "behaviour")
        return Behaviour(**{f.key: self.get(B, d, f.key, "behaviour", ukey=f"behaviour.{f.key}") for f in B.fields})

    def forecast(self, d: Any) -> Forecast:
        F = S.FORECAST
        d = self.block(F, d, "forecast")
        rule = self.get(F, d, "trend_after", "forecast")
        half = self.get(F, d, "half_life_years", "forecast")
        if rule == "damped" and half is None:
            self.fail("forecast", "trend_after: damped needs 'half_life_years' (years for the trend's slope to halve)")
        if rule != "damped" and half is not None:
            self.fail(
                "forecast.half_life_years",
                f"a half-life is for trend_after: damped, not {rule or 'a rule left unstated'}; remove it or "
                f"write trend_after: damped",
            )
        return Forecast(rule, half, self.get(F, d, "trend_uncertainty", "forecast"))

    def friction(self, d: Any) -> Friction:
        F = S.FRICTION
        d = self.block(F, d, "friction")
        return Friction(**{f.key: self.get(F, d, f.key, "friction", ukey=f"friction.{f.key}") for f in F.fields})

    # --- events -------------------------------------------------------------
    def events(self, d: Any, cal: Calendar, pnames, rnames) -> tuple[Event, ...]:
        L = S.events_spec(self.types.actions)
        item = expect(L.item, S.Variants)
        out: list = []
        ids: set = set()
        for i, e in enumerate(self.container(L, d, "events")):
            path = f"events[{i}]"
            V = self.container(L.item, e, path)
            self.block(V, e, path)
            etype = e[item.tag]
            if ("date" in e) == ("step" in e):
                self.fail(path, "give exactly one of 'date' (YYYY-MM-DD) or 'step' (0-based)")
            if "date" in e:
                date = self.get(V, e, "date", path)
                if date < cal.start:
                    self.fail(
                        f"{path}.date",
                        f"{date} is before the scenario starts ({cal.start}); allowed: on or after {cal.start}",
                    )
                step = cal.step_of(date)
            else:
                step = self.get(V, e, "step", path)
                date = cal.date_of(step)
            if self.strict_horizon and step >= cal.steps:
                where = "date" if "date" in e else "step"
                self.fail(
                    f"{path}.{where}",
                    f"{date} (step {step}) is after the calendar's last step ({cal.steps - 1}, "
                    f"{cal.date_of(cal.steps - 1)}): the event would never fire; allowed: a date "
                    f"before {cal.date_of(cal.steps)}, or lengthen calendar.steps",
                )
            if "note" in e:
                self.get(V, e, "note", path)
            req = self.types.required_keys(etype)
            default_id = ":".join([etype] + [str(e[k]) for k in req[:2]])
            eid = self.string(e["id"], f"{path}.id") if "id" in e else default_id  # its pattern: the rule below
            if "id" in e and not re.match(V["id"].pattern, str(eid)):
                self.fail(
                    f"{path}.id",
                    f"event id {eid!r} contains '.'; allowed: any text without '.' (paths such as "
                    f"events.ID.field address an event by its id), e.g. {str(eid).replace('.', '_')!r}",
                )
            action = self.action(etype, e, path, cal, pnames, rnames, allow_effects=True, key=f"events.{eid}")
            self.event_paths[eid] = path
            if "id" not in e and not re.match(V.field("id").pattern, str(eid)):
                self.fail(
                    path,
                    f"its default id {eid!r} contains '.', which paths such as events.ID.field cannot "
                    f"address; allowed: give the event an 'id' without '.'",
                )
            self.unique(L, ids, eid, path)
            every, days = self.recurrence(V, e, path, action)
            action = self.calibrated_sizes(etype, action, eid, path, every)
            out.append(Event(id=eid, step=step, date=date, action=action, every=every, days=days))
        out.sort(key=lambda ev: ev.step)  # stable: file order within a step
        self.presence(out, rnames)
        return tuple(out)

    def recurrence(self, V, e, path: str, action) -> tuple[str | None, int | None]:
        """``every`` and ``days`` of one event: both or neither, only on a type that can recur, at most a year."""
        every = self.get(V, e, "every", path)
        days = self.get(V, e, "days", path)
        if every is None and days is not None:
            self.fail(
                f"{path}.days",
                "days without every: days is how long each firing of a recurring effect lasts; allowed: add "
                "every: year, or remove days",
            )
        if every is None:
            return None, None
        kinds = [n for n in self.types if self.types[n].recurs]
        if not action.recurs:
            self.fail(
                f"{path}.every",
                f"{'an' if action.type[0] in 'aeiou' else 'a'} {action.type} cannot recur (it changes the market for "
                f"good); allowed: every on a temporary "
                f"effect ({', '.join(kinds)})",
            )
        if days is None:
            raw = e.get("days")
            self.fail(
                f"{path}.days" if raw is not None else path,
                "every: year without days: a recurring effect needs how long each firing lasts; allowed: days: N, "
                "1 <= N <= 365 (1 for a one-day sale)",
            )
        why = action.recurring_conflict()
        if why:
            self.fail(f"{path}.{why[0]}", why[1])
        return every, days

    def calibrated_sizes(self, etype: str, action, eid: str, path: str, every: str | None):
        """The fields of an event given as 'calibrate' (the validator gives them as None): only a recurring
        effect's size may be fitted (observations of different lengths identify it, docs/model.md section 8).
        Each is recorded by its path and held at 0 until a fit sets it."""
        free = [
            f.key
            for f in self.types.actions[etype].fields
            if isinstance(f, S.Field) and f.calibrate and getattr(action, f.key, 0) is None
        ]
        if not free:
            return action
        if every is None:
            self.fail(
                f"{path}.{free[0]}",
                "'calibrate' fits the size of a recurring effect (every: year), which observations of different "
                "lengths identify; allowed: a number (with a range if it is uncertain), or make the effect recur",
            )
        self.calibrated_events.extend(f"events.{eid}.{k}" for k in free)
        return dataclasses.replace(action, **{k: 0.0 for k in free})

    def presence(self, events: list[Event], rnames) -> None:
        """The rules between events about which retailers are in the market (docs/model.md sections 4 and 7):
        an entry brings in a retailer declared ``enters_later`` that is not in yet; an exit or an acquisition's
        target must be in the market then; any other event about a retailer needs it in the market then."""
        later = {r for r, flag in self.enters_later.items() if flag}
        present = {r: r not in later for r in rnames}
        gone: dict[str, str] = {}  # retailer -> why it is not there (for the message)
        entered: dict[str, str] = {}  # retailer -> when it entered
        for ev in events:
            path = self.event_paths.get(ev.id, f"events.{ev.id}")
            many = ev.actions() != (ev.action,)  # an equity stake's effects
            for k, act in enumerate(ev.actions()):
                at = f"{path}.effects[{k}]" if many else path
                when = f"on {ev.date} (step {ev.step})"
                for r in act.retailers_needed():
                    if not present.get(r, True):
                        why = gone.get(r, "it enters later (enters_later: true) and has not entered yet")
                        field = next(
                            (f for f in ("retailer", "acquirer", "target") if getattr(act, f, None) == r), None
                        )
                        self.fail(
                            f"{at}.{field}" if field else at,
                            f"{r} is not in the market {when}: {why}; allowed: an event about {r} while it is in "
                            f"the market, or remove this event",
                        )
                if act.type == "entry":
                    if act.retailer not in later:
                        self.fail(
                            f"{path}.retailer",
                            f"{act.retailer} is in the market from the start; allowed: an entry of a retailer with "
                            f"enters_later: true (add it to {act.retailer}), or remove this event",
                        )
                    if act.retailer in entered:
                        self.fail(
                            f"{path}.retailer",
                            f"{act.retailer} already entered {entered[act.retailer]}; allowed: one entry per "
                            f"retailer (remove this event)",
                        )
                    present[act.retailer] = True
                    entered[act.retailer] = when
                for r, why in act.leaves():
                    present[r] = False
                    gone[r] = f"{why} {when}"

    def action(self, etype, e, path, cal, pnames, rnames, allow_effects, key):
        """The action of one event (or effect) of type ``etype``: its fields checked against their spec, then built
        by the event type, which checks the rules between them."""
        A = self.types.actions[etype]

        def get(k, **kw):
            f = A.field(k)
            choices = {"retailer": rnames, "provider": pnames}.get(f.refers)
            return self.get(A, e, k, path, ukey=f"{key}.{k}", choices=choices, **kw)

        def effects() -> tuple:
            L = A.at("effects", S.ListOf)
            item = expect(L.item, S.Variants)
            acts = []
            for k, eff in enumerate(self.container(L, e.get("effects"), f"{path}.effects")):
                ep = f"{path}.effects[{k}]"
                self.block(self.container(item, eff, ep), eff, ep)
                acts.append(
                    self.action(
                        eff[item.tag], eff, ep, cal, pnames, rnames, allow_effects=False, key=f"{key}.effects.{k}"
                    )
                )
            return tuple(acts)

        return self.types[etype].parse(
            Reading(get=get, fail=self.fail, path=path, calendar=cal, nested=not allow_effects, effects=effects)
        )


# --------------------------------------------------------------------------- helpers


def _or(x: Any, empty: Any) -> Any:
    """``x``, or ``empty`` when it is null: a field that may be null means "none" then (an empty list or mapping),
    while any other value must have the field's type (``events: 0`` is an error, not "no events")."""
    return empty if x is None else x


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
    if lo is None and hi is None:
        return "any number"
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


def with_settings(scenario: Scenario, settings: list[tuple[str, str]]) -> Scenario:
    """``scenario`` with command-line ``--set PATH=VALUE`` settings applied (each VALUE read as a YAML scalar or
    flow value: ``2.5``, ``2013-09-25``, ``[1, 2]``). Raises :class:`ScenarioError` naming the setting."""
    values: dict[str, Any] = {}
    for path, text in settings:
        try:  # the same safe reader as files: a value cannot be an alias bomb or an impossible date either
            values[path] = yamlsafe.load(text, f"--set {path}")[0] if text else None
        except ScenarioError as e:
            raise ScenarioError(f"{text!r} is not a value ({e.problem})", source="--set", path=path) from None
        try:
            set_path(copy.deepcopy(dict(scenario.raw)), path, values[path])
        except KeyError as e:
            top = path.split(".")[0]  # where the file lists the items or fields the path could name
            at = _declared_at(scenario.source, top) if top in MERGE_KEYS else None
            listed = f" (listed under {top}: at {at[0]}:{at[1]})" if at else ""
            raise ScenarioError(f"no such field in {scenario.source}: {e.args[0]}{listed}", source="--set") from None
    try:
        return scenario.with_values(values)
    except ScenarioError as e:
        raise ScenarioError(e.problem, source="--set", path=e.path) from None


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
                    if (
                        parts[depth + 1 :]
                        and depth + 1 == len(parts) - 1
                        and part in ("sso_share", "behaviour", "friction")
                    ):
                        node[part] = {}
                    else:
                        raise KeyError(
                            f"{where}: no such field{_suggest(part, list(node))}; fields: {', '.join(map(str, node))}"
                        )
                node = node[part]
        else:
            raise KeyError(f"{where}: cannot go inside a {_kind(node)}")


# --------------------------------------------------------------------------- shared with other file schemas

#: The validation helpers, public for the other versioned file formats (sweep files) so they report
#: errors the same way: ``file:line: field.path: problem; allowed: ...``.
Validator = _Validator
did_you_mean = _suggest


@dataclass(frozen=True)
class FileLayer:
    """One file of a scenario built on bases: its path (as reached from the file given), its own data, its lines."""

    source: str
    data: dict
    lines: _Lines


def scenario_files(path: str | Path) -> list[FileLayer]:
    """The files a scenario file is built from, root base first and the file itself last, each with its own content
    (to say which file sets what: ``marketsim validate``). Paths of bases are joined to their file's folder.
    Raises :class:`ScenarioError` as :func:`load_scenario` does for a bad chain of bases."""
    return _base_chain(path)


def read_yaml(path: str | Path) -> tuple[Any, _Lines]:
    """Read a YAML file safely: (data, line map for error messages). The top level must be a mapping.
    Raises :class:`ScenarioError`."""
    return yamlsafe.load_file(path, source=str(path))
