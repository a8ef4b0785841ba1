"""The scenario and sweep file formats, declared once.

Every field of a scenario file (``schema: marketsim/v2``) and of a sweep file (``schema: marketsim-sweep/v1``)
is one spec object below, with its key, type, unit, allowed range or values, default, whether it may be
an uncertain number (a range or prior mapping), its meaning and the source of its default. From these:

* the validator (:class:`marketsim.scenario.core._Validator`, and :func:`marketsim.experiments.sweep.runner.load_sweep`) takes
  every per-field and per-container check: types, ranges, allowed values, patterns, unknown keys with "did you
  mean", required keys and defaults; lists and mappings (non-empty, at most ``max_items``, their keys), a
  variant's tag, unique merge keys (rules between fields, such as shares summing to 1, stay in the validator);
* :func:`json_schema` generates the JSON Schema (draft 2020-12) published in ``schema/`` for editors;
* :func:`reference_markdown` generates the field reference in ``docs/scenarios.md``.

``marketsim schema --write`` regenerates the published files; ``tests/test_schema.py`` fails while they
differ from what these definitions generate. The generated JSON Schema uses only keywords whose meaning
draft 7 shares (no ``prefixItems``, no ``$ref`` beside other keywords), so editors that implement draft 7
(VS Code's YAML extension) check it fully.

This module is pure data and text: it declares the formats with :mod:`marketsim.fieldspec` and takes the event
types' fields from :mod:`marketsim.eventtypes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, NoReturn

from marketsim.scenario.distributions import FAMILIES
from marketsim.scenario.eventtypes import REGISTRY
from marketsim.scenario.fieldspec import (  # (public here as before)
    UTILITY,
    Block,
    Field,
    ListOf,
    MapOf,
    Node,
    Variants,
    expect,
)

SCHEMA = "marketsim/v2"
#: v2 (turnover, dated series, trends, observations, uncertain parameters) reads every v1 file unchanged:
#: the new fields are optional and their defaults reproduce v1.
SCHEMAS = ("marketsim/v1", SCHEMA)
SWEEP_SCHEMA = "marketsim-sweep/v1"

#: What each ``schema:`` value is, and the commands that take such a file (for "wrong kind of file" errors).
FILE_KINDS = {
    **{s: ("scenario", "marketsim run | validate | calibrate | project | viz") for s in SCHEMAS},
    SWEEP_SCHEMA: ("sweep", "marketsim sweep"),
}

#: Hard limits: anything beyond these is refused before work starts.
MAX_CONSUMERS = (
    10_000_000  # 10^7 rows x (a few int8/float arrays + two graph layers) ~ 5 GB: the most one 24 GB machine takes
)
MAX_STEPS = 5_200  # a century of weeks
MAX_MARKET_SIZE = 1e10  # more shoppers than people on Earth is a typo
MAX_RETAILERS = 50
MAX_PROVIDERS = 50

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
SCENARIO_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
PERIOD_PATTERN = r"^[0-9]{4}(Q[1-4]|H[12])?$"
#: An event id is free text without '.': dotted paths (--set, uncertain parameters, sweeps) address events by id.
EVENT_ID_PATTERN = r"^[^.]+$"

#: Prior families for uncertain numbers: name -> (required keys in order, the key of the default central value)
#: (the table of distributions, :mod:`marketsim.distributions`).
PRIORS: dict[str, tuple[tuple[str, ...], str]] = {n: (c.keys, c.centre_key) for n, c in FAMILIES.items()}

# Sweep vocabulary (experiment.py imports these).
DESIGNS = ("grid", "lhs", "sobol", "morris")
METRICS = ("gmv_share", "gmv", "revenue", "buyer_share", "accounts_created")
#: Closed-form stand-ins with known answers, for checking designs and sensitivity analysis end to end.
STAND_INS = ("ishigami",)
#: A sweep parameter's distributions (a ``range`` is the uniform one): name -> keys in order.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {n: c.keys for n, c in FAMILIES.items() if n != "uniform"}


# --------------------------------------------------------------------------- shared pieces

#: The mapping an uncertain number may be written as (docs/model.md section 8, "Uncertain parameters").
UNCERTAIN = Block(
    "uncertain",
    "A number no source pins, as a range or a prior with its reason. A run uses `value` "
    "(default: the middle of the range, or the prior's centre); `marketsim project` draws from the "
    "range or prior. Exactly one of `range` or `prior`, and exactly one of `assumption` or `source`.",
    (
        Field(
            "value",
            "number",
            "The central value a single run uses (within the field's allowed range and the range).",
            default_text="middle of `range`; the prior's `mean`, `median` or `mode` (uniform: the middle)",
        ),
        Field("range", "pair", "[lo, hi]: uniform over this interval (both ends within the field's allowed range)."),
        Field(
            "prior",
            "string",
            "A prior family instead of a range, with its parameters as keys; or `{posterior: FILE, parameter: PATH}`: "
            "the weighted draws of PATH in the posterior `marketsim fit` stored in FILE (relative to this file; "
            "its unit and allowed range must be this field's; the value defaults to the weighted median).",
            choices=tuple(PRIORS),
            what="prior",
        ),
        Field("assumption", "string", "Why this range: no source pins the number (the explanation)."),
        Field("source", "string", "Where the prior comes from (a key of docs/sources.md, or a citation)."),
        Field("unit", "string", "The unit, for readers (not used in computation)."),
        Field("hi", "number", "Upper end (uniform, triangular)."),
        Field("lo", "number", "Lower end (uniform, triangular)."),
        Field("mean", "number", "Mean (normal)."),
        Field("median", "number", "Median (lognormal; > 0).", lo=0, lo_open=True),
        Field("mode", "number", "Most likely value (triangular; lo <= mode <= hi)."),
        Field("sd", "number", "Standard deviation (normal; > 0).", lo=0, lo_open=True),
        Field("sigma", "number", "Log standard deviation (lognormal; > 0).", lo=0, lo_open=True),
    ),
    one_of=(("range", "prior"), ("assumption", "source")),
)


def _share(key: str, doc: str, **kw) -> Field:
    return Field(key, "number", doc, unit="fraction of 1", lo=0, hi=1, **kw)


# --------------------------------------------------------------------------- the scenario format

CALENDAR = Block(
    "calendar",
    "Discrete time (docs/model.md section 1): step 0 starts on `start`; a step lasts `step_days` days.",
    (
        Field(
            "start", "date", "First day of step 0. Observations used by a fit must start on or after it.", required=True
        ),
        Field(
            "step_days",
            "integer",
            "Length of one step.",
            unit="days",
            lo=1,
            hi=366,
            default=7,
            source="docs/model.md section 1: one step is one week",
        ),
        Field(
            "steps",
            "integer",
            "Steps simulated and reported. Every event of the file must fall before the last "
            "step ends (lengthen it to place a later event).",
            unit="steps",
            required=True,
            lo=1,
            hi=MAX_STEPS,
        ),
        Field(
            "warmup",
            "integer",
            "Unreported steps run before step 0 without events, so habits, accounts and ties "
            "settle from the initial draw (docs/model.md section 12.2).",
            unit="steps",
            lo=0,
            hi=MAX_STEPS,
            default=0,
            source="docs/model.md section 12.2; the bundled 2013 scenarios use 26",
        ),
    ),
    required=True,
)

MARKET = Block(
    "market",
    "The real market the agents stand for.",
    (
        Field(
            "size",
            "number",
            "Real shoppers: each agent stands for size / consumers.count of them, so totals are "
            "in real units. A number, or a dated series {YYYY-MM-DD: value} (linear in between, constant outside).",
            unit="shoppers",
            required=True,
            lo=0,
            lo_open=True,
            hi=MAX_MARKET_SIZE,
            series=True,
        ),
        Field(
            "currency",
            "string",
            "Currency of basket values and money totals (a label).",
            default="RMB",
            source="the founding case is China",
        ),
    ),
    required=True,
)

CONSUMERS = Block(
    "consumers",
    "The consumer agents (docs/model.md section 2).",
    (
        Field(
            "count",
            "integer",
            "N agents simulated (results are scaled to market.size; shares do not depend on N beyond sampling noise).",
            unit="agents",
            required=True,
            lo=1,
            hi=MAX_CONSUMERS,
        ),
        Field(
            "shopping_rate",
            "number",
            "Probability that a consumer shops in a step.",
            unit="probability per step",
            required=True,
            lo=0,
            lo_open=True,
            hi=1,
            uncertain=True,
        ),
        Field(
            "conversion",
            "number",
            "Share of shoppers who buy in a step; pins the level of fitted attractiveness "
            "(docs/model.md section 8). Required when any attractiveness is 'calibrate'.",
            unit="fraction of shoppers",
            lo=0.001,
            hi=0.999,
            uncertain=True,
            default_text="none (required when something is fitted)",
        ),
        Field(
            "turnover",
            "number",
            "Probability per step that a consumer leaves and a newcomer (no history, no "
            "accounts at retailers) takes its slot (docs/model.md section 2).",
            unit="probability per step",
            lo=0,
            hi=0.5,
            default=0.0,
            uncertain=True,
            source="a closed market, as in v1",
        ),
        Block(
            "basket",
            "Basket value per purchase: LogNormal with mean `mean` and log-sd `sigma`.",
            (
                Field(
                    "mean",
                    "number",
                    "Mean basket value; a number or a dated series {YYYY-MM-DD: value}.",
                    unit="currency per order",
                    required=True,
                    lo=0,
                    lo_open=True,
                    hi=1e7,
                    series=True,
                ),
                Field(
                    "sigma",
                    "number",
                    "Log-sd of basket values across consumers (0 = everyone the same).",
                    unit="log-sd",
                    lo=0,
                    hi=5,
                    default=0.0,
                    uncertain=True,
                    source="identical baskets",
                ),
            ),
            required=True,
        ),
    ),
    required=True,
)

NETWORK = Variants(
    "network",
    "The provider's social layer: a graph over its holders (docs/model.md section 3). Absent or null: no layer.",
    "model",
    "Graph generator.",
    "network model",
    {
        "barabasi_albert": Block(
            "barabasi_albert",
            "Preferential attachment: broadcast follow graphs, e.g. Weibo.",
            (Field("m", "integer", "Ties each new member makes.", unit="ties", required=True, lo=1, hi=100),),
        ),
        "watts_strogatz": Block(
            "watts_strogatz",
            "Small world: friend circles, e.g. QQ.",
            (
                Field(
                    "k",
                    "integer",
                    "Neighbours per member on the ring (even).",
                    unit="neighbours",
                    required=True,
                    lo=2,
                    hi=200,
                    multiple_of=2,
                    hint="k/2 neighbours on each side of the ring",
                ),
                Field(
                    "rewire",
                    "number",
                    "Probability that a tie is rewired at random.",
                    unit="probability",
                    required=True,
                    lo=0.0,
                    hi=1.0,
                ),
            ),
        ),
        "erdos_renyi": Block(
            "erdos_renyi",
            "Random graph.",
            (Field("mean_degree", "number", "Mean ties per member.", unit="ties", required=True, lo=0.0, hi=200.0),),
        ),
    },
    nullable=True,
    default_text="no social layer",
)

PROVIDER = Block(
    "provider",
    "An identity provider (weibo, qq, sohu, taobao, ...): each consumer holds an account "
    "with probability `penetration`, independently.",
    (
        _share("penetration", "Share of consumers holding an account.", required=True, uncertain=True),
        NETWORK,
        Field(
            "weight",
            "number",
            "Influence weight w_p of its social layer (docs/model.md section 3).",
            unit="relative weight",
            lo=0,
            hi=100,
            default=1.0,
            uncertain=True,
            source="docs/model.md section 3: every layer weighs the same",
        ),
    ),
)

PROVIDERS = MapOf(
    "providers",
    "Identity providers by name (a letter, then letters, digits or _). A retailer's "
    "`logins`, an event's `provider`, `layer` or `audience` must name one of them.",
    "name",
    PROVIDER,
    required=True,
    min_items=1,
    max_items=MAX_PROVIDERS,
    what="of provider name -> settings",
)

RETAILER = Block(
    "retailer",
    "A retailer (docs/model.md section 4).",
    (
        Field(
            "name",
            "name",
            "Its name; events, observations and --set paths refer to it (retailers.NAME.field).",
            required=True,
        ),
        Field(
            "kind",
            "string",
            "`platform` earns take_rate x GMV; `direct` earns margin x GMV.",
            required=True,
            choices=("platform", "direct"),
            what="kind",
        ),
        _share(
            "initial_share",
            "GMV share at the start of the burn-in (where the initial last-retailer draw comes "
            "from). The retailers' initial shares sum to 1.",
            required=True,
        ),
        Field(
            "attractiveness",
            "number",
            "alpha_j: the retailer's own utility, or 'calibrate' to fit it to the "
            "observed shares (docs/model.md section 8).",
            unit=UTILITY,
            lo=-50,
            hi=50,
            uncertain=True,
            calibrate=True,
            default="calibrate",
            source="fitted: the shares fix it, with consumers.conversion",
        ),
        Field(
            "trend",
            "number",
            "Utility per year added to the attractiveness from the calendar start (docs/model.md section 4), "
            "or 'calibrate' to fit it (needs two periods of the retailer from one source).",
            unit="utility per year",
            lo=-10,
            hi=10,
            uncertain=True,
            calibrate=True,
            default=0.0,
            source="no drift beyond what the model explains",
        ),
        Field(
            "price_index",
            "number",
            "P_j: the retailer's prices relative to the market (enters as -beta_price x ln P).",
            unit="1 = market price",
            lo=0.01,
            hi=100,
            default=1.0,
            uncertain=True,
            source="market prices",
        ),
        _share(
            "take_rate",
            "Commission and fees as a share of GMV.",
            default=0.0,
            uncertain=True,
            only_if=("kind", "platform"),
            source="state it: the bundled scenarios use 0.05, an assumption",
        ),
        _share(
            "margin",
            "Gross margin as a share of GMV.",
            default=0.0,
            uncertain=True,
            only_if=("kind", "direct"),
            source="state it: the bundled scenarios use 0.08-0.10, assumptions",
        ),
        Field(
            "logins",
            "names",
            "Providers whose single sign-on it accepts (its own native accounts always work), "
            "in the order of its login page.",
            refers="provider",
            default=[],
            source="native accounts only",
        ),
        Field(
            "enters_later",
            "boolean",
            "True: the retailer is not in the market at the calendar start (no share, no customers, no access); an "
            "`entry` event brings it in (docs/model.md section 4). Its initial_share must be 0 and its "
            "attractiveness a number (no data before it enters can fit it).",
            default=False,
            source="in the market from the start",
        ),
        _share(
            "target_share",
            "Shorthand for one observation: the GMV share to fit over the steps before the "
            "first one-off event (recurring effects do not count). Not together with `observations`.",
            default_text="initial_share",
        ),
        MapOf(
            "sso_share",
            "Share of its current customers who log in through each accepted provider (the rest use "
            "native accounts); shares sum to at most 1.",
            "provider",
            _share("PROVIDER", "Share of its customers logging in through this provider.", uncertain=True),
            nullable=True,
            default_text="{} (everyone native)",
            what="provider -> share",
        ),
    ),
)

BEHAVIOUR = Block(
    "behaviour",
    "Coefficients of the choice rule (docs/model.md section 6), in utility.",
    (
        Field(
            "beta_price",
            "number",
            "Price sensitivity: utility lost per unit of ln(price_index).",
            unit="utility per log price",
            lo=0,
            hi=100,
            default=2.0,
            uncertain=True,
            source="assumption; prices are fixed unless a price_change fires",
        ),
        Field(
            "beta_social",
            "number",
            "Utility for j when every friend on a layer last bought at j (Brock & Durlauf form).",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=1.0,
            uncertain=True,
            source="assumption; [bapna-umyarov-2015] implies about 4 at 10 friends, [brock-durlauf-2001]",
        ),
        Field(
            "beta_habit",
            "number",
            "Utility of returning to the last retailer (switching costs).",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=1.0,
            uncertain=True,
            source="assumption [klemperer-1995]; the bundled scenarios use 2",
        ),
        Field(
            "beta_friction",
            "number",
            "Weight of the login friction costs below.",
            unit="x friction costs",
            lo=0,
            hi=100,
            default=1.0,
            uncertain=True,
            source="frictions are stated in utility",
        ),
    ),
)

FRICTION = Block(
    "friction",
    "Utility costs of reaching checkout (docs/model.md section 5), times beta_friction.",
    (
        Field(
            "native",
            "number",
            "Logging in with the retailer's own password (forgotten passwords).",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=0.2,
            uncertain=True,
            source="assumption [janrain-harris-2012]",
        ),
        Field(
            "sso",
            "number",
            "Logging in through an accepted provider one already uses there.",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=0.0,
            uncertain=True,
            source="about free",
        ),
        Field(
            "link",
            "number",
            "One-click sign-up with a held, accepted provider.",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=0.5,
            uncertain=True,
            source="assumption [janrain-2011]; the bundled scenarios use 0.3",
        ),
        Field(
            "create",
            "number",
            "Creating a new account (no accepted provider held).",
            unit=UTILITY,
            lo=0,
            hi=100,
            default=2.0,
            uncertain=True,
            source="assumption [baymard]; the bundled scenarios use 1.5, range 0.5-3",
        ),
    ),
)


#: The event types' fields, by type (the registry in eventtypes.py holds them), and the types an equity stake may
#: carry as effects.
ACTIONS: dict[str, Block] = REGISTRY.actions
EFFECT_TYPES = REGISTRY.effect_types
EFFECTS = REGISTRY.effects_spec


def events_spec(actions: dict[str, Block]) -> ListOf:
    """The ``events`` list of a scenario file whose event types have the fields ``actions`` (type -> block)."""
    return ListOf(
        "events",
        "The timeline (docs/model.md section 7): each event has a `type`, a `date` or a `step`, an "
        "optional `id`, and the fields of its type. A file's events must fall inside its calendar.",
        Variants(
            "event",
            "An event.",
            "type",
            "What happens.",
            "event type",
            actions,
            common=(
                Field(
                    "id",
                    "string",
                    "Its name: `--baseline-without ID`, --set paths (events.ID.field) and "
                    "merging with a base file use it; no '.'.",
                    default_text="type:retailer:provider (its first two fields)",
                    pattern=EVENT_ID_PATTERN,
                ),
                Field(
                    "date",
                    "date",
                    "When it applies: at the start of the step containing the date. Give exactly one of date or step.",
                ),
                Field(
                    "step", "integer", "When it applies, as a step number (0-based).", unit="step", lo=0, hi=MAX_STEPS
                ),
                Field("note", "string", "Free text."),
                Field(
                    "every",
                    "string",
                    "`year`: a recurring effect (docs/model.md section 7): it fires every year on the day and month "
                    "of its date, for `days` days, from its date to the end of the calendar (Singles' Day, 11 "
                    "November; JD's 18 June sale). Only temporary effects recur: promotion, price_change, "
                    "attractiveness_change and shopping_rate.",
                    choices=("year",),
                    what="recurrence",
                    nullable=True,
                    default_text="once (not recurring)",
                ),
                Field(
                    "days",
                    "integer",
                    "How long each firing of a recurring effect lasts, in days (at most a year). Within a step, "
                    "the shoppers of the covered days see it: each shopper's day within the step is drawn from its "
                    "own random stream.",
                    unit="days",
                    lo=1,
                    hi=365,
                    nullable=True,
                    default_text="required with `every`",
                ),
            ),
            one_of=(("date", "step"),),
        ),
        nullable=True,
        merge_key="id",
        default_text="[] (no events)",
    )


EVENTS = events_spec(ACTIONS)

OBSERVATION = Block(
    "observation",
    "Observed GMV shares of some retailers over a period, from one source (docs/model.md section 8).",
    (
        Field(
            "source",
            "name",
            "Who published it (a short name, e.g. iresearch); one source sets the level, the "
            "others get fitted offsets.",
            required=True,
        ),
        Field(
            "period",
            "period",
            "A year (2012), a half (2013H1), a quarter (2012Q3), or {start, end} (inclusive dates).",
            required=True,
        ),
        MapOf(
            "shares",
            "Observed share of each retailer named (fractions, not percent; a rest-of-market retailer may "
            "be left out).",
            "retailer",
            _share("RETAILER", "Observed GMV share.", lo_open=True),
            required=True,
            min_items=1,
            what="retailer -> share (a fraction)",
        ),
        Field("note", "string", "Free text.", default=""),
        Field(
            "holdout",
            "boolean",
            "True: held out. No fit ever uses it, whatever the cut-off (calibrate, run, project, fit, sweep); "
            "`marketsim backtest` compares its predictions with it (docs/model.md section 8, Held-out "
            "observations). For figures published after the decision a scenario is about (validation/).",
            default=False,
            source="fitted when it ends on or before the cut-off",
        ),
    ),
)

#: How trends continue after the fit cut-off (docs/model.md section 4, "Trends beyond the data").
TREND_AFTER = ("linear", "hold", "damped")

FORECAST = Block(
    "forecast",
    'What the model carries beyond the data (docs/model.md section 4, "Trends beyond the data"): how every '
    "retailer's trend continues after the fit cut-off (`fit_until`, or its default). The fit itself simulates "
    "only up to its last observation, before the cut-off, so it is the same under every rule.",
    (
        Field(
            "trend_after",
            "string",
            "`linear`: the trend continues at full strength after the cut-off; `hold`: each retailer's "
            "attractiveness stays at its value at the cut-off; `damped`: the trend's slope halves every "
            "`half_life_years` after the cut-off (its contribution then approaches trend x half_life / ln 2). "
            "Not stated: `run`, `calibrate`, `project` and `backtest` choose among hold, damped (half-life 1 "
            "year, an assumption) and linear by rolling-origin skill on the observations before the cut-off "
            "(the lowest mean absolute error; a tie or no scorable origin: hold) and say which and why.",
            choices=TREND_AFTER,
            what="trend rule",
            default_text="chosen by rolling-origin skill on the decision-time observations (hold if none can "
            "be scored)",
            source="docs/model.md section 8: a trend is carried past the data only as far as the data before "
            "the cut-off show it forecasts better",
        ),
        Field(
            "half_life_years",
            "number",
            "Half-life of the trend's slope after the cut-off. Required with `trend_after: damped`.",
            unit="years",
            lo=0,
            lo_open=True,
            hi=100,
            only_if=("trend_after", "damped"),
            default_text="none (required with damped)",
        ),
        Field(
            "trend_uncertainty",
            "boolean",
            "True: `marketsim project` draws every fitted trend within its standard error (each parameter draw "
            "adds a normal with the fit's standard error to the trend fitted in that draw, turning the line about "
            "the middle of the retailer's observations), so the intervals widen away from the data as far as "
            "`trend_after` lets a trend act (also `project --trend-uncertainty`). False (the default, or `project "
            "--no-trend-uncertainty`): the fitted trends at their point values.",
            default=False,
            source="docs/model.md section 8: a fitted trend is known only within its standard error; off by default "
            "because each draw's own standard error can be far too large where its market is near tipping "
            "(measured on battle_lines_2013: draws' JD shares at the calendar start from 11% to 72%)",
        ),
    ),
    default_text="{trend_after: chosen by rolling-origin skill, trend_uncertainty: false}",
)

SCENARIO = Block(
    "scenario",
    "A scenario file.",
    (
        Field("schema", "string", "The format version.", required=True, choices=SCHEMAS, what="schema"),
        Field(
            "base",
            "string",
            "Another scenario file this one starts from (a path relative to this file); this "
            "file then gives only what differs (docs/scenarios.md, Building on a file).",
            file_only=True,
        ),
        Field(
            "name",
            "string",
            "Names the results folder: letters, digits, '_', '-', '.'.",
            required=True,
            pattern=SCENARIO_NAME_PATTERN,
            what="scenario name",
            hint="letters, digits, '_', '-', '.' (it names the results folder)",
        ),
        Field("description", "string", "One sentence for people.", default=""),
        Field(
            "seed",
            "integer",
            "Seed of every random stream of a run (numpy SeedSequence).",
            lo=0,
            hi=2**63 - 1,
            default=0,
        ),
        CALENDAR,
        MARKET,
        CONSUMERS,
        PROVIDERS,
        ListOf(
            "retailers",
            "The retailers (at least one; their initial shares sum to 1: add one for the rest of the market).",
            RETAILER,
            required=True,
            min_items=1,
            max_items=MAX_RETAILERS,
            merge_key="name",
        ),
        BEHAVIOUR,
        FRICTION,
        EVENTS,
        ListOf(
            "observations",
            "Observed share series to fit (docs/model.md section 8). Without them, `target_share` (or "
            "`initial_share`) is one observation over the steps before the first one-off event (recurring "
            "effects do not count).",
            OBSERVATION,
            nullable=True,
            default_text="[] (target_share is the one observation)",
        ),
        Field(
            "primary_source",
            "string",
            "The observations' source that sets the level (the others get offsets "
            "per retailer). Required when observations come from more than one source.",
            refers="source",
            what="source",
            nullable=True,
            default_text="the only source",
        ),
        Field(
            "fit_until",
            "date",
            "Fit cut-off: observations ending on or before it are fitted (never a `holdout` one).",
            nullable=True,
            default_text="the first one-off event's date (recurring effects do not count)",
        ),
        FORECAST,
    ),
)

# --------------------------------------------------------------------------- the sweep format

PARAMETER = Block(
    "parameter",
    "A scenario number the sweep varies: its dotted path and one of range, values or distribution.",
    (
        Field(
            "path",
            "string",
            "Dotted scenario path, as --set takes it (retailers.JD.sso_share.weibo, "
            "events.ID.field; list items by name or id).",
            required=True,
        ),
        Field("range", "pair", "[lo, hi]: uniform over the interval."),
        Field("values", "list", "A list of values (grid and lhs designs only)."),
        Variants(
            "distribution",
            "A distribution instead of a range.",
            "type",
            "Its family.",
            "distribution",
            {
                "normal": Block(
                    "normal",
                    "Normal.",
                    (
                        Field("mean", "number", "Mean.", required=True),
                        Field("sd", "number", "Standard deviation (> 0).", required=True),
                    ),
                ),
                "lognormal": Block(
                    "lognormal",
                    "Lognormal: exp of a normal.",
                    (
                        Field(
                            "median",
                            "number",
                            "Median (> 0): exp of the mean of the log.",
                            required=True,
                            lo=0,
                            lo_open=True,
                        ),
                        Field("sigma", "number", "Standard deviation of the log (> 0).", required=True),
                        Field(
                            "mu",
                            "number",
                            "Old spelling: the mean of the log, read as median = exp(mu) with a note; write "
                            "`median` instead.",
                        ),
                    ),
                ),
                "triangular": Block(
                    "triangular",
                    "Triangular.",
                    (
                        Field("lo", "number", "Lower end.", required=True),
                        Field("mode", "number", "Most likely value.", required=True),
                        Field("hi", "number", "Upper end.", required=True),
                    ),
                ),
            },
        ),
        Field(
            "label",
            "string",
            "Name on tables and charts (changes no stored row).",
            default_text="a readable form of the path",
        ),
    ),
    one_of=(("range", "values", "distribution"),),
)

SWEEP = Block(
    "sweep",
    "A sweep file (docs/sweeps.md).",
    (
        Field("schema", "string", "The format version.", required=True, choices=(SWEEP_SCHEMA,), what="schema"),
        Field("name", "name", "Names the results folder.", required=True),
        ListOf(
            "parameters",
            "The numbers varied.",
            PARAMETER,
            required=True,
            min_items=1,
            what="parameters, each with 'path' and one of range, values, distribution",
        ),
        Block(
            "design",
            "How the points are chosen.",
            (
                Field(
                    "method",
                    "string",
                    "grid, lhs (Latin hypercube), sobol (Saltelli) or morris.",
                    required=True,
                    choices=DESIGNS,
                    what="design",
                ),
                Field(
                    "size",
                    "integer",
                    "grid: levels per range parameter; lhs: points; sobol: base sample N (a power "
                    "of 2); morris: trajectories.",
                    lo=1,
                    hi=100_000,
                    default_text="grid 3, lhs 16, sobol 8, morris 4",
                ),
                Field("levels", "integer", "Morris grid levels.", lo=2, hi=100, default=4),
            ),
            required=True,
        ),
        Field("description", "string", "One sentence for people.", default=""),
        Field(
            "seed", "integer", "Every run's seed is spawned from it and the run's index.", lo=0, hi=2**63 - 1, default=0
        ),
        Field(
            "base",
            "string",
            "The scenario file varied (relative to this file). Required unless model is a stand-in.",
            default_text="required for model marketsim",
        ),
        Field(
            "model",
            "string",
            "`marketsim`, or a closed-form stand-in for testing the analysis.",
            choices=("marketsim",) + STAND_INS,
            what="model",
            default="marketsim",
        ),
        Field("replicates", "integer", "Runs per design point (different seeds).", lo=1, hi=10_000, default=1),
        Field(
            "consumers",
            "integer",
            "Overrides the base scenario's consumers.count.",
            unit="agents",
            lo=1,
            hi=MAX_CONSUMERS,
            default_text="the base scenario's",
        ),
        Field(
            "steps",
            "integer",
            "Overrides the base scenario's calendar.steps.",
            unit="steps",
            lo=1,
            hi=MAX_STEPS,
            default_text="the base scenario's",
        ),
        Field(
            "outputs",
            "strings",
            "METRIC.RETAILER or shift.METRIC.RETAILER, METRIC one of " + ", ".join(METRICS) + ".",
            default_text="gmv_share of every retailer",
        ),
        Field(
            "shift_against",
            "all_or_strings",
            "'all' or a list of event ids: the events removed in the baseline of shift.* outputs.",
            default_text="none (no shift outputs)",
        ),
        Field(
            "record_every",
            "integer",
            "Also record every k-th step back from the horizon.",
            unit="steps",
            lo=1,
            hi=MAX_STEPS,
            nullable=True,
            default_text="the horizon only",
        ),
        Field(
            "average_last",
            "integer",
            "Horizon outputs are means over the last K steps.",
            unit="steps",
            lo=1,
            hi=MAX_STEPS,
            default=1,
        ),
        Field("batch_runs", "integer", "Finished runs per stored part file.", unit="runs", lo=1, hi=100_000, default=8),
    ),
)

FORMATS = {"scenario": SCENARIO, "sweep": SWEEP}


def field_at(path: str, root: Block = SCENARIO) -> Node:
    """The spec at a spec path such as ``consumers.basket.sigma``, ``retailers.trend``, ``events.promotion.until``,
    ``providers.network.watts_strogatz.k`` (lists and name maps are stepped through; variants by their tag)."""
    node: Node = root
    for part in path.split("."):
        while isinstance(node, (ListOf, MapOf)):
            node = node.item if isinstance(node, ListOf) else node.value
        if isinstance(node, Variants):
            if part in node.variants:
                node = node.block(part)
                continue
            node = next((f for f in node.common if f.key == part), None) or _raise(path)
            continue
        if not isinstance(node, Block):
            _raise(path)
        node = node[part]
    return node


def _raise(path: str) -> NoReturn:
    raise KeyError(path)


# --------------------------------------------------------------------------- JSON Schema


def json_schema(kind: str = "scenario") -> dict:
    """The JSON Schema (draft 2020-12, using only keywords draft 7 reads the same way) of a scenario or sweep
    file. A scenario file with ``base:`` gives only what differs from its base: for it, no key is required and
    list items that merge by name or id may be partial or ``{name|id: X, remove: true}``; ``marketsim validate``
    checks the merged result."""
    if kind == "sweep":
        body = _json(SWEEP, partial=False)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"marketsim sweep file ({SWEEP_SCHEMA})",
            "description": "A parameter sweep over a base scenario (docs/sweeps.md, docs/scenarios.md). "
            "Generated from src/marketsim/scenario/schema.py by `marketsim schema --write`.",
            **{k: v for k, v in body.items() if k != "description"},
            "$defs": {"uncertain": _uncertain_def()},
        }
    if kind != "scenario":
        raise ValueError(kind)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"marketsim scenario file ({SCHEMA})",
        "description": "A market and its timeline (docs/scenarios.md). A file with `base:` gives only what "
        "differs from its base (nothing is required; retailers merge by name, events by id). "
        "Generated from src/marketsim/scenario/schema.py by `marketsim schema --write`.",
        "type": "object",
        "if": {"required": ["base"]},
        "then": {"$ref": "#/$defs/scenario_over_base"},
        "else": {"$ref": "#/$defs/scenario"},
        "$defs": {
            "scenario": _json(SCENARIO, partial=False),
            "scenario_over_base": _json(SCENARIO, partial=True),
            "uncertain": _uncertain_def(),
        },
    }


def _describe(node: Node) -> str:
    """One paragraph for an editor's hover: meaning, unit, allowed values, default and its source."""
    parts = [node.doc]
    if isinstance(node, Field):
        if node.unit:
            parts.append(f"Unit: {node.unit}.")
        allowed = _allowed_text(node)
        if allowed:
            parts.append(f"Allowed: {allowed}.")
        if node.only_if:
            parts.append(f"Only where {node.only_if[0]} is {node.only_if[1]}.")
    d = _default_text(node)
    if d:
        source = getattr(node, "source", "")
        parts.append(f"Default: {d}" + (f" ({source})." if source else "."))
    elif getattr(node, "required", False):
        parts.append("Required.")
    return " ".join(parts)


def _number_json(f: Field) -> dict:
    s: dict[str, Any] = {"type": "integer" if f.type == "integer" else "number"}
    if f.lo is not None:
        s["exclusiveMinimum" if f.lo_open else "minimum"] = f.lo
    if f.hi is not None:
        s["maximum"] = f.hi
    if f.multiple_of:
        s["multipleOf"] = f.multiple_of
    return s


def _one_of(node, partial: bool) -> list[dict]:
    """JSON rules for the node's "exactly one of these keys" groups (none over a base: the base may give one)."""
    if partial:
        return []
    return [{"oneOf": [{"required": [k]} for k in group]} for group in node.one_of]


def _only_if(block: Block) -> list[dict]:
    """JSON rules for fields allowed only when a sibling has a given value (margin only for direct retailers)."""
    rules = []
    for f in block.fields:
        if isinstance(f, Field) and f.only_if:
            k, v = f.only_if
            rules.append(
                {
                    "if": {"required": [k], "properties": {k: {"not": {"const": v}}}},
                    "then": {"properties": {f.key: False}},
                }
            )
    return rules


#: ``prior: {posterior: FILE, parameter: PATH}``: a prior taken from a stored posterior (a weighted sample).
POSTERIOR_PRIOR_JSON: dict = {
    "type": "object",
    "required": ["posterior", "parameter"],
    "additionalProperties": False,
    "properties": {
        "posterior": {
            "type": "string",
            "description": "The posterior file `marketsim fit` stored (relative to this file).",
        },
        "parameter": {"type": "string", "description": "The parameter's path in that posterior."},
    },
    "description": "The weighted draws of one parameter of another scenario's stored posterior (a `posterior` "
    "distribution: its quantiles are the weighted sample's, its default value the weighted median).",
}


def _uncertain_def() -> dict:
    """The generic uncertain-number mapping (each field adds its own bounds for ``value`` and ``range``)."""
    props = {}
    for f in UNCERTAIN.plain_fields:
        if f.key == "range":
            props[f.key] = {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
                "description": f.doc,
            }
        elif f.key == "prior":
            props[f.key] = {"oneOf": [{"enum": list(PRIORS)}, POSTERIOR_PRIOR_JSON], "description": f.doc}
        elif f.type == "string":
            props[f.key] = {"type": "string", "description": f.doc}
        else:
            props[f.key] = {**_number_json(f), "description": f.doc}
    prior_keys = sorted({k for ks, _ in PRIORS.values() for k in ks})
    rules: list[dict] = _one_of(UNCERTAIN, False) + [
        {"if": {"required": ["range"]}, "then": {"properties": {k: False for k in prior_keys}}}
    ]
    for name, (keys, _) in PRIORS.items():
        rules.append(
            {
                "if": {"required": ["prior"], "properties": {"prior": {"const": name}}},
                "then": {"required": list(keys), "properties": {k: False for k in prior_keys if k not in keys}},
            }
        )
    return {
        "type": "object",
        "description": UNCERTAIN.doc,
        "properties": props,
        "additionalProperties": False,
        "allOf": rules,
    }


def _uncertain_json(f: Field, partial: bool) -> dict:
    num = _number_json(f)
    bounds = {"type": "object", "properties": {"value": num, "range": {"items": num}}}
    if partial:  # over a base, a mapping may update part of the base's (e.g. only its value)
        props = {
            u.key: (
                {"type": "array", "items": num, "minItems": 2, "maxItems": 2}
                if u.key == "range"
                else {"$ref": "#/$defs/uncertain/properties/prior"}
                if u.key == "prior"
                else {"type": "string"}
                if u.type == "string"
                else num
                if u.key == "value"
                else {"type": "number"}
            )
            for u in UNCERTAIN.plain_fields
        }
        return {"type": "object", "properties": props, "additionalProperties": False}
    return {"allOf": [{"$ref": "#/$defs/uncertain"}, bounds]}


def _field_json(f: Field, partial: bool) -> dict:
    t = f.type
    alts: list[dict] = []
    if t in ("number", "integer"):
        num = _number_json(f)
        alts.append(num)
        if f.series:
            alts.append(
                {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": DATE_PATTERN},
                    "additionalProperties": num,
                }
            )
        if f.calibrate:
            alts.append({"const": "calibrate"})
        if f.uncertain:
            alts.append(_uncertain_json(f, partial))
    elif t == "string":
        s: dict[str, Any] = {"type": "string"}
        if f.choices:
            s["enum"] = list(f.choices)
        if f.pattern:
            s["pattern"] = f.pattern
        if f.refers in ("provider", "retailer") and not f.extra_choices:
            s["pattern"] = NAME_PATTERN
        alts.append(s)
    elif t == "name":
        alts.append({"type": "string", "pattern": NAME_PATTERN})
    elif t == "date":
        alts.append({"type": "string", "format": "date", "pattern": DATE_PATTERN})
    elif t == "period":
        alts += [
            {"type": "integer", "minimum": 1000, "maximum": 9999},
            {"type": "string", "pattern": PERIOD_PATTERN},
            {
                "type": "object",
                "required": ["start", "end"],
                "additionalProperties": False,
                "properties": {
                    k: {"type": "string", "format": "date", "pattern": DATE_PATTERN} for k in ("start", "end")
                },
            },
        ]
    elif t == "date_or_step":
        alts += [
            {"type": "integer", "minimum": 0, "maximum": MAX_STEPS},
            {"type": "string", "format": "date", "pattern": DATE_PATTERN},
        ]
    elif t == "names":
        alts.append({"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "uniqueItems": True})
    elif t == "pair":
        alts.append({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2})
    elif t == "list":
        alts.append({"type": "array", "minItems": 1})
    elif t == "boolean":
        alts.append({"type": "boolean"})
    elif t == "strings":
        pattern = rf"^(shift\.)?({'|'.join(METRICS)})\.[A-Za-z][A-Za-z0-9_]*$"
        alts.append({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": pattern}})
    elif t == "all_or_strings":
        alts += [{"const": "all"}, {"type": "array", "items": {"type": "string"}}]
    else:  # pragma: no cover - a new type needs a JSON form here
        raise AssertionError(t)
    if f.nullable:
        alts.append({"type": "null"})
    out = alts[0] if len(alts) == 1 else {"anyOf": alts}
    out = {"title": f.key, "description": _describe(f), **out}
    if f.default is not None and not isinstance(f.default, (list, dict)) and not partial:
        out["default"] = f.default
    return out


def _json(node: Node, partial: bool) -> dict:
    """JSON Schema of one spec node. ``partial``: the node is in a file with ``base:``, where keys are optional."""
    if isinstance(node, Field):
        return _field_json(node, partial)
    if isinstance(node, Block):
        s: dict[str, Any] = {
            "type": "object",
            "description": _describe(node),
            "properties": {f.key: _json(f, partial) for f in node.fields},
            "additionalProperties": False,
        }
        req = [f.key for f in node.fields if getattr(f, "required", False)]
        if req and not partial:
            s["required"] = req
        rules = _one_of(node, partial) + _only_if(node)
        if rules:
            s["allOf"] = rules
        return _nullable(s, node)
    if isinstance(node, MapOf):
        s = {
            "type": "object",
            "description": _describe(node),
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": _json(node.value, partial),
        }
        if node.min_items and not partial:
            s["minProperties"] = node.min_items
        if node.max_items:
            s["maxProperties"] = node.max_items
        return _nullable(s, node)
    if isinstance(node, ListOf):
        merged = partial and node.merge_key is not None
        item = _json(node.item, merged)  # a list that replaces its base's holds complete items
        if merged:
            remove = {
                "type": "object",
                "required": [node.merge_key, "remove"],
                "additionalProperties": False,
                "properties": {
                    node.merge_key: {"type": "string"},
                    "remove": {"const": True, "description": f"Remove the base's item with this {node.merge_key}."},
                },
            }
            item = {"anyOf": [remove, item]}
        s = {"type": "array", "description": _describe(node), "items": item}
        if node.min_items and not partial:
            s["minItems"] = node.min_items
        if node.max_items:
            s["maxItems"] = node.max_items
        return _nullable(s, node)
    if isinstance(node, Variants):
        tags = list(node.variants)
        props: dict[str, Any] = {node.tag: {"enum": tags, "description": node.tag_doc}}
        for f in node.common:
            props[f.key] = _json(f, partial)
        for v in node.variants.values():  # every key any variant has: editors complete and describe them all
            for vf in v.fields:
                props.setdefault(vf.key, _json(vf, partial))
        rules = []
        for t in tags:
            b = node.block(t)
            then: dict[str, Any] = {"properties": {f.key: True for f in b.fields}, "additionalProperties": False}
            req = [f.key for f in b.fields if getattr(f, "required", False)]
            if req and not partial:
                then["required"] = req
            rules.append({"if": {"required": [node.tag], "properties": {node.tag: {"const": t}}}, "then": then})
        s = {
            "type": "object",
            "description": _describe(node),
            "properties": props,
            "allOf": _one_of(node, partial) + rules,
        }
        if not partial:
            s["required"] = [node.tag]
        return _nullable(s, node)
    raise AssertionError(node)  # pragma: no cover


def _nullable(s: dict, node) -> dict:
    if getattr(node, "nullable", False):
        desc = s.pop("description", None)
        return {**({"description": desc} if desc else {}), "anyOf": [s, {"type": "null"}]}
    return s


def schema_text(kind: str) -> str:
    """The published file's text: the JSON Schema, indented, with a final newline."""
    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- the markdown reference


def _fmt(x: Any) -> str:
    if x == 2**63 - 1:
        return "2^63-1"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        x = int(x)
    if isinstance(x, int) and abs(x) >= 100_000:
        return f"{x:.0e}".replace("e+0", "e").replace("e+", "e") if x % 10 ** (len(str(x)) - 1) == 0 else f"{x:,}"
    return str(x) if not isinstance(x, str) else x


def _allowed_text(f: Field) -> str:
    t = f.type
    if t in ("number", "integer"):
        kind = "integer" if t == "integer" else "number"
        if f.lo is not None and f.hi is not None:
            rng = f"{_fmt(f.lo)} {'<' if f.lo_open else '<='} x <= {_fmt(f.hi)}"
        elif f.lo is not None:
            rng = f"x {'>' if f.lo_open else '>='} {_fmt(f.lo)}"
        elif f.hi is not None:
            rng = f"x <= {_fmt(f.hi)}"
        else:
            rng = ""
        text = f"{kind} {rng}".strip()
        if f.series:
            text += ", or {date: value, ...}"
        if f.calibrate:
            text += ", or 'calibrate'"
        if f.uncertain:
            text += ", or a range/prior"
        return text
    if t == "string":
        if f.choices:
            return " | ".join(f"`{c}`" for c in f.choices)
        if f.refers:
            return f"a {f.refers} of this file" + "".join(f", or `{c}`" for c in f.extra_choices)
        return "text" + (f" matching `{f.pattern}`" if f.pattern else "")
    return {
        "name": "a letter, then letters, digits or _",
        "date": "YYYY-MM-DD",
        "period": "2012, 2013H1, 2012Q3 or {start: DATE, end: DATE}",
        "date_or_step": "YYYY-MM-DD or a step",
        "names": "a list of providers of this file",
        "pair": "[lo, hi], lo < hi",
        "list": "a non-empty list",
        "boolean": "`true` or `false`",
        "strings": "a list of METRIC.RETAILER or shift.METRIC.RETAILER",
        "all_or_strings": "`all` or a list of event ids",
    }[t]


def _default_text(node: Node) -> str:
    if getattr(node, "default_text", ""):
        return node.default_text
    d = getattr(node, "default", None)
    if d is None:
        return ""
    if isinstance(d, str):
        return f"`{d}`" if d else '"" (empty)'
    if isinstance(d, list):
        return "[]"
    return _fmt(d)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    """(dotted path, field) of every leaf under ``node``, in declaration order; sections come out separately."""
    if isinstance(node, Block):
        for f in node.fields:
            yield from _rows(f, f"{path}.{f.key}" if path else f.key)
    elif isinstance(node, MapOf) and isinstance(node.value, Field):
        yield f"{path}.{node.value.key}", node.value
    else:
        yield path, node


def _table(rows: list[tuple[str, Node]]) -> list[str]:
    out = ["| field | meaning | unit | allowed | default (its source) |", "|---|---|---|---|---|"]
    for path, f in rows:
        if isinstance(f, Field):
            req = " **required**" if f.required else ""
            only = f" Only where `{f.only_if[0]}` is `{f.only_if[1]}`." if f.only_if else ""
            d = _default_text(f)
            d = (f"{d} ({f.source})" if f.source else d) if d else ("required" if f.required else "-")
            unc = " †" if f.uncertain else ""
            out.append(
                f"| `{path}`{req}{unc} | {_cell(f.doc + only)} | {_cell(f.unit) or '-'} | "
                f"{_cell(_allowed_text(f))} | {_cell(d)} |"
            )
        else:
            req = " **required**" if getattr(f, "required", False) else ""
            d = _default_text(f) or ("required" if req else "-")
            out.append(f"| `{path}`{req} | {_cell(f.doc)} See below. | - | {_kind_text(f)} | {_cell(d)} |")
    return out


def _kind_text(node: Node) -> str:
    if isinstance(node, Block):
        return "a mapping"
    if isinstance(node, MapOf):
        return f"a mapping {node.keys} -> value"
    if isinstance(node, ListOf):
        return "a list"
    if isinstance(node, Variants):
        return f"a mapping with `{node.tag}`"
    return ""


def reference_markdown() -> str:
    """The field reference of docs/scenarios.md (scenario and sweep files), generated from the definitions."""
    L: list[str] = []

    def section(title: str, intro: str, rows: list[tuple[str, Node]]):
        L.extend([f"### {title}", "", intro, "", *_table(rows), ""])

    def leaves(block: Block, prefix: str) -> list[tuple[str, Node]]:
        return [(f"{prefix}.{f.key}" if prefix else f.key, f) for f in block.fields]

    L += [
        "Columns: the field's dotted path (`NAME` is a name you choose, `[]` an item of a list), its meaning, "
        "unit, allowed values, and its default with the default's source (keys in brackets are entries of "
        "[sources.md](sources.md)). **required**: the file (after merging with its base) must give it. "
        "†: may be an uncertain number, a range or prior mapping (below).",
        "",
    ]
    section("Top level", SCENARIO.doc, leaves(SCENARIO, ""))
    section("calendar", CALENDAR.doc, leaves(CALENDAR, "calendar"))
    section("market", MARKET.doc, leaves(MARKET, "market"))
    basket = CONSUMERS.at("basket", Block)
    section("consumers", CONSUMERS.doc, leaves(CONSUMERS, "consumers") + leaves(basket, "consumers.basket"))
    section("providers", PROVIDERS.doc, leaves(PROVIDER, "providers.NAME"))
    L += [
        f"**`providers.NAME.network`**: {NETWORK.doc} `model` is one of "
        + ", ".join(f"`{m}` ({b.doc[:1].lower() + b.doc[1:].rstrip('.')})" for m, b in NETWORK.variants.items())
        + ", with its parameters:",
        "",
    ]
    L += _table(
        [
            (f"providers.NAME.network.{f.key}", replace(f, doc=f"{m}: {f.doc}"))
            for m, b in NETWORK.variants.items()
            for f in b.fields
        ]
    )
    L += [""]
    section(
        "retailers",
        RETAILER.doc + " A list; a file with `base:` merges it into the base's by `name`.",
        leaves(RETAILER, "retailers[]") + [("retailers[].sso_share.PROVIDER", RETAILER.at("sso_share", MapOf).value)],
    )
    section("behaviour", BEHAVIOUR.doc, leaves(BEHAVIOUR, "behaviour"))
    section("friction", FRICTION.doc, leaves(FRICTION, "friction"))
    ev = expect(EVENTS.item, Variants)
    section(
        "events",
        EVENTS.doc + " A file with `base:` merges the list into the base's by `id`.",
        [("events[].type", ev.block(next(iter(ev.variants)))["type"])] + [(f"events[].{f.key}", f) for f in ev.common],
    )
    for t, b in ev.variants.items():
        L += [f"**`type: {t}`**: {b.doc}" + (" Also an effect of an equity_stake." if t in EFFECT_TYPES else ""), ""]
        L += _table([(f"events[].{f.key}", f) for f in b.fields])
        L += [""]
    L += [
        f"**`effects[]`** of an equity_stake: each has a `type` ({', '.join(EFFECT_TYPES)}) and the fields of "
        "that type above; no `id`, `date` or `step`: it happens with the stake. Its uncertain numbers are "
        "addressed as `events.ID.effects.K.FIELD` (K counts from 0).",
        "",
    ]
    section(
        "observations",
        OBSERVATION.doc + " A list (a file's list replaces its base's).",
        leaves(OBSERVATION, "observations[]")[:2]
        + [
            (
                "observations[].shares.RETAILER",
                replace(
                    expect(OBSERVATION.at("shares", MapOf).value, Field), required=True, doc=OBSERVATION["shares"].doc
                ),
            )
        ]
        + leaves(OBSERVATION, "observations[]")[3:],
    )
    section("forecast", FORECAST.doc, leaves(FORECAST, "forecast"))
    section(
        "Uncertain numbers (range or prior)",
        UNCERTAIN.doc
        + " Priors: "
        + "; ".join(f"`{p}` ({', '.join(k)})" for p, (k, _) in PRIORS.items())
        + "; or `prior: {posterior: FILE, parameter: PATH}` (another scenario's stored posterior: its weighted "
        "draws of PATH, the reason line saying which scenario, how many draws, the ESS and the fit's cut-off)"
        + ". Draws are truncated to the field's allowed range.",
        leaves(UNCERTAIN, "FIELD"),
    )
    L += [
        "### Sweep files (`schema: " + SWEEP_SCHEMA + "`)",
        "",
        SWEEP.doc + " Each sweep parameter path names a scenario field above.",
        "",
        *_table(
            leaves(SWEEP, "")
            + leaves(SWEEP.at("design", Block), "design")
            + leaves(PARAMETER, "parameters[]")
            + [
                (f"parameters[].distribution.{f.key}", replace(f, doc=f"{t}: {f.doc}"))
                for t, b in PARAMETER.at("distribution", Variants).variants.items()
                for f in b.fields
            ]
        ),
        "",
    ]
    return "\n".join(L).rstrip() + "\n"


#: Markers around the generated reference in docs/scenarios.md.
BEGIN = "<!-- BEGIN GENERATED REFERENCE (marketsim schema --write; edit src/marketsim/scenario/schema.py, not this) -->"
END = "<!-- END GENERATED REFERENCE -->"


def with_reference(doc: str) -> str:
    """``doc`` (the text of docs/scenarios.md) with the generated reference between its markers replaced."""
    a, b = doc.find(BEGIN), doc.find(END)
    if a < 0 or b < a:
        raise ValueError(f"the markers {BEGIN!r} ... {END!r} are missing")
    return doc[: a + len(BEGIN)] + "\n\n" + reference_markdown() + "\n" + doc[b:]


def kind_of(data: Any) -> str | None:
    """``scenario``, ``sweep`` or None, from a file's ``schema:`` value."""
    if isinstance(data, dict) and isinstance(data.get("schema"), str):
        return FILE_KINDS.get(data["schema"], (None,))[0]
    return None
