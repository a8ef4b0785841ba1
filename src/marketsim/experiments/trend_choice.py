"""How trends continue past the data when a scenario does not say (docs/model.md section 8, "Trends beyond the
data"): the default ``forecast.trend_after`` is chosen by rolling-origin skill on the observations a decision
maker had, and the same numbers say how good the model's forecasts are (every projection report states them).

**Data.** Only the decision-time observations: those a fit at the scenario's cut-off uses
(:meth:`Scenario.fit_observations`: ending on or before the cut-off, never a ``holdout: true`` one). Nothing after
the cut-off and no held-out figure is ever read, so a choice cannot be tuned to what it is later judged on.

**Origins** are planned as the rolling back-test plans them (:func:`marketsim.experiments.rolling.plan_origins`)
on those observations alone: every end date plus one day at which the fit is identified and a decision-time
observation ends on or after it. At each origin the scenario is fitted once at its central values (through the
fit cache, ``FitOptions(until=origin - 1 day, drop_unidentified=True)``: the rolling back-test's fits, so the two
share them), and one expected path per candidate rule is simulated from the same seed (common random numbers):
the candidates differ only after the origin. Each later decision-time share is predicted by the path's share
over its period plus the source's fitted offset (a point forecast: no draws or replicates, to keep it cheap).

**Candidates**: ``hold``, ``damped`` with a half-life of :data:`DAMPED_HALF_LIFE_YEARS` (an assumption: a year,
the span of the yearly reports the trends are fitted to) and ``linear``. The rule with the lowest mean absolute
error (points of share) over the shares that persistence can also forecast wins; on a tie (to 1e-9 points) the
one that carries less trend (hold, then damped, then linear). When no origin can be scored the rule is
:data:`FALLBACK`, ``hold``: a trend is not carried past the data without evidence that it goes on (a fitted
trend rests on a few points of one or two sources; carried at full strength it moves the level by itself).

A scenario that states ``forecast.trend_after`` keeps it; its skill is still measured the same way. The result is
stored next to the fits (``<key>.trend-choice.json`` in the fit cache folder; the key hashes the scenario with
its decision-time observations only, its cut-off and the candidates), so the same scenario gets the same choice without simulating again, whatever the
number of workers (paths are seeded from the scenario seed and collected in order).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marketsim.experiments.backtest import path_task
from marketsim.experiments.projection import replicate_seeds
from marketsim.experiments.rolling import OriginPlan, baselines, horizon_quarters, plan_origins
from marketsim.experiments.tasks import fit_task, map_jobs
from marketsim.fit.calibrate import fit_consumers, period_weights, with_event_values
from marketsim.fit.options import FitOptions
from marketsim.io.store import write_json
from marketsim.runtime.digest import digest
from marketsim.scenario.core import Scenario

#: Half-life (years) of the ``damped`` candidate's slope. Assumption: one year, the span of the yearly and
#: half-yearly reports the trends are fitted to.
DAMPED_HALF_LIFE_YEARS = 1.0

#: The candidates in order of how much trend they carry past the cut-off (ties go to the earlier one).
CANDIDATES: tuple[tuple[str, float | None], ...] = (
    ("hold", None),
    ("damped", DAMPED_HALF_LIFE_YEARS),
    ("linear", None),
)

#: The rule when no origin can be scored: no trend is carried past the data without evidence.
FALLBACK: tuple[str, float | None] = ("hold", None)

FORMAT = "marketsim-trend-choice/v1"
TIE_PP = 1e-9


def rule_label(rule: str, half_life_years: float | None = None) -> str:
    """``hold``, ``linear`` or ``damped (half-life 1 year)``."""
    if rule != "damped":
        return rule
    h = half_life_years
    return f"damped (half-life {h:g} year{'s' if h != 1 else ''})"


@dataclass
class TrendChoice:
    """The rule trends follow after the cut-off, how it was decided, and the rolling-origin skill behind it.

    ``how``: ``stated`` (the scenario's own ``forecast.trend_after``), ``chosen`` (lowest MAE, ``tie`` True when
    it won a tie) or ``fallback`` (no origin could be scored). ``mae``: per candidate label (points), over the
    ``n`` decision-time shares also scored for ``persistence`` (points; None when n is 0); ``model``: the MAE of
    the rule in use; ``horizons``: the quarters ahead of the scored shares; ``origins``: the dates fitted at;
    ``until``: the cut-off whose observations were used; ``skipped``: one line per origin left out."""

    rule: str
    half_life_years: float | None
    how: str
    until: str
    n: int = 0
    mae: dict[str, float] = field(default_factory=dict)
    model: float | None = None
    persistence: float | None = None
    horizons: list[int] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tie: bool = False

    @property
    def label(self) -> str:
        return rule_label(self.rule, self.half_life_years)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "label": self.label}

    @classmethod
    def from_dict(cls, d: dict) -> TrendChoice:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def trend_stated(sc: Scenario) -> bool:
    """True if the scenario (or a file it is based on, or a ``--set``) states ``forecast.trend_after``."""
    return sc.forecast.trend_after is not None


def with_trend(sc: Scenario, choice: TrendChoice) -> Scenario:
    """``sc`` with the chosen rule written in (a scenario that states its own keeps it)."""
    if trend_stated(sc):
        return sc
    return sc.with_forecast(choice.rule, choice.half_life_years)


def choice_path(sc: Scenario, cache_dir: str | Path, until: dt.date | None = None) -> Path:
    return Path(cache_dir) / f"{_key(sc, until)}.trend-choice.json"


def _key(sc: Scenario, until: dt.date | None) -> str:
    """The scenario at the fits' size with its decision-time observations only (a held-out or later one cannot
    change the key, as it cannot change the choice), the cut-off, the candidates and whether the rule is stated."""
    return digest(
        {
            "format": FORMAT,
            "scenario": dataclasses.replace(_at_fit_size(sc), observations=sc.fit_observations(until)).to_dict(),
            "until": sc.fit_cutoff(until).isoformat(),
            "candidates": CANDIDATES,
            "stated": trend_stated(sc),
        },
        20,
        spaced=True,
    )


def choose_trend(
    sc: Scenario,
    *,
    cache_dir: str | Path | None = None,
    executor: Executor | None = None,
    until: dt.date | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> TrendChoice:
    """The rule for ``sc``'s trends after its cut-off (``until``, else the scenario's own) and the rolling-origin
    skill behind it (module docstring); read from ``cache_dir`` when stored there, else computed and stored."""
    path = None if cache_dir is None else choice_path(sc, cache_dir, until)
    if path is not None and path.is_file() and not path.is_symlink():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") == FORMAT and doc.get("key") == path.name.split(".")[0]:
                return TrendChoice.from_dict(doc["choice"])
        except (OSError, ValueError, TypeError, KeyError):
            pass  # a damaged entry costs a recomputation, never a wrong answer
    choice = _compute(sc, cache_dir, executor, until, on_progress)
    if path is not None:
        try:
            write_json(path, {"format": FORMAT, "key": path.name.split(".")[0], "choice": choice.to_dict()})
        except OSError:
            pass  # an unwritable cache folder: the choice is computed again next time
    return choice


def _at_fit_size(sc: Scenario) -> Scenario:
    """``sc`` with the consumers its fits simulate (:func:`marketsim.fit.calibrate.fit_consumers`): the choice is
    made at that size whatever size the scenario then runs at (shares do not depend on N beyond sampling noise,
    docs/model.md property 4), so one choice serves every N, as one fit does."""
    n = fit_consumers(sc)
    return sc if n == sc.consumers.count else sc.with_values({"consumers.count": n})


def _compute(sc, cache_dir, executor, until, on_progress) -> TrendChoice:
    sc = _at_fit_size(sc)
    cut = sc.fit_cutoff(until)
    decision = sc.fit_observations(until)  # ending on or before the cut-off, never a held-out one
    stated = trend_stated(sc)
    own = (sc.forecast.trend_after, sc.forecast.half_life_years)
    rules = list(CANDIDATES) + ([own] if stated and own not in CANDIDATES else [])
    plans, skipped = plan_origins(dataclasses.replace(sc, observations=decision)) if decision else ([], [])
    cache = None if cache_dir is None else str(cache_dir)
    fits = map_jobs(
        executor,
        fit_task,
        [(sc, cache, FitOptions(until=p.cut, drop_unidentified=True)) for p in plans],
        "trend choice: fits",
        on_progress,
    )
    used = []
    for p, f in zip(plans, fits, strict=True):
        if "error" in f:
            skipped.append(f"origin {p.origin}: the fit failed: {f['error']}")
        else:
            used.append((p, f))
    horizon = max((sc.calendar.step_of(o.end) for o in decision), default=0) + 1
    seed = replicate_seeds(sc.seed, 1)[0]
    arms = [sc.with_forecast(r, h) for r, h in rules]
    jobs = [
        (with_event_values(arm, f["event_values"]), f["alpha"], f["trend"], seed, horizon, p.cut)
        for p, f in used
        for arm in arms
    ]
    paths = map_jobs(executor, path_task, jobs, "trend choice: paths", on_progress)
    names = sc.retailer_names
    errors: list[list[float]] = [[] for _ in rules]
    pers_err: list[float] = []
    horizons: set[int] = set()
    for i, (p, f) in enumerate(used):
        for o in p.later:
            wts = period_weights(sc.calendar, o, horizon)[None, :]
            for rn, obs in o.shares:
                pers, _ = baselines(p.past, o, rn)
                if pers is None:
                    continue  # no baseline: scored for neither (as the rolling back-test)
                off = (f["offsets"] or {}).get(o.source, {}).get(rn, 0.0)
                j = names.index(rn)
                for r in range(len(rules)):
                    pred = paths[i * len(rules) + r].period_shares(wts)[0, j] * 100 + off
                    errors[r].append(abs(pred - obs * 100))
                pers_err.append(abs(pers - obs) * 100)
                horizons.add(horizon_quarters(p.origin, o.end))
    n = len(pers_err)
    mae = {rule_label(*rules[r]): float(np.mean(errors[r])) for r in range(len(rules))} if n else {}
    base = dict(
        until=cut.isoformat(),
        n=n,
        mae=mae,
        persistence=float(np.mean(pers_err)) if n else None,
        horizons=sorted(horizons),
        origins=[p.origin.isoformat() for p, _ in used],
        skipped=skipped,
    )
    if stated:
        return TrendChoice(own[0], own[1], "stated", model=mae.get(rule_label(*own)), **base)  # type: ignore[arg-type]
    if not n:
        return TrendChoice(FALLBACK[0], FALLBACK[1], "fallback", model=None, **base)  # type: ignore[arg-type]
    cand = [(mae[rule_label(*c)], k) for k, c in enumerate(CANDIDATES)]
    best_mae, best = min(cand)
    tie = sum(1 for m, _ in cand if m - best_mae <= TIE_PP) > 1
    best = min(k for m, k in cand if m - best_mae <= TIE_PP)
    rule, h = CANDIDATES[best]
    return TrendChoice(rule, h, "chosen", model=mae[rule_label(rule, h)], tie=tie, **base)  # type: ignore[arg-type]


def per_origin(
    sc: Scenario,
    plans: list[OriginPlan],
    *,
    cache_dir: str | Path | None = None,
    executor: Executor | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[TrendChoice]:
    """For a rolling back-test of ``sc``: at each origin the rule chosen on the observations before it (as a
    decision at that date would have chosen it), written into ``plan.scenario``; a scenario that states its
    rule keeps it everywhere (and nothing is computed). Returns the choices, one per plan (none when stated)."""
    if trend_stated(sc):
        return []
    out = []
    for p in plans:
        c = choose_trend(sc, cache_dir=cache_dir, executor=executor, until=p.cut, on_progress=on_progress)
        p.scenario = with_trend(sc, c)
        out.append(c)
    return out
