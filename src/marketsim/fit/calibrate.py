"""Calibration to an observed share series (docs/model.md section 8, version 2).

The fitted parameters are the attractiveness alpha_j of every retailer marked ``attractiveness: calibrate`` and
the trend of every retailer marked ``trend: calibrate`` (utility per year). Each retailer has a level source:
the primary source where it observes that retailer; else (a retailer the primary source never observes) the
non-primary source with the most observations of it (ties: the first name in sort order), which the fit reports
(``level_sources``). Every other source that observes the retailer gets a constant offset for it, in points,
relative to its level source (so relative to the primary source wherever that observes it). The equations:

* for every observation that ends on or before the cut-off, and every retailer it gives: the simulated GMV
  share over the observation's period (expected GMV of the period's steps; the shoppers' choice
  probabilities weighted by their baskets, which has the mean of the sampled choices and far less noise)
  plus the source's offset equals the observed share;
* the conversion (buyers / shoppers over the fitted steps) equals ``consumers.conversion``, which pins the
  level of alpha (shares fix it only up to a constant).

Offsets enter linearly, so they are solved in closed form (the mean gap of their source and retailer) for
any alpha and trend ("profiled out"). What remains is a small nonlinear least-squares problem in alpha and
trend, solved by Gauss-Newton with Broyden updates of the Jacobian and a backtracking line search on the
sum of squares (Dennis & Schnabel 1996, chapters 6 and 8). The Jacobian starts from finite differences with
a wide step (0.15 utility units; the map is simulated on one fixed seed, so it is deterministic, but it has
small jumps wherever a consumer's sampled choice flips, and a wide step averages over them).

Multi-fidelity: the solver first runs on COARSE_CONSUMERS consumers (cheap evaluations, same equations), then
polishes on ``min(N, FIT_CONSUMERS)`` consumers starting from the coarse solution and its Jacobian (typically two
to four evaluations). Shares do not depend on N beyond sampling noise (docs/model.md property 4), so a fit at
FIT_CONSUMERS serves every larger N; a run at full N reports its own residuals. Most of an evaluation's time is
its burn-in pilot (engine.run_pilot: min(N, 20,000) consumers over two lifetimes), so evaluations that share
their alphas share their pilot, and no point is simulated twice.

Identifiability (docs/model.md section 8): one retailer's trend is the reference (fixed); a trend needs two or more
non-nested periods of its retailer from one source; an offset for (source, j) needs j observed by its level source
(the primary source, or for a retailer the primary never observes the non-primary source that observes it most);
at most one calibrated retailer may go unobserved (its share is the rest). The fit counts equations
and parameters and refuses, naming what is missing, when the residual degrees of freedom are negative.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from marketsim.engine.market import PILOT_CONSUMERS, Market, PilotInputs, PilotState, pilot_inputs, run_pilot
from marketsim.engine.population import build_world
from marketsim.errors import UserError
from marketsim.fit.options import FitOptions, fit_options
from marketsim.runtime.digest import digest
from marketsim.scenario.core import Observation, Scenario, set_path

#: Default solver accuracy: the fit stops when one more step would move no fitted share (or the conversion)
#: by more than this many percentage points (docs/model.md section 8: 0.2 points) ...
DEFAULT_TOL_PP = 0.2
#: ... or, on fewer consumers, by more than the size of the jumps of the simulated shares there (a consumer's
#: flipped choice moves a share by 1/N and the habit, account and social feedback carry it on): measured
#: about 30 / sqrt(N) points for the bundled market (1 point at 1,000 consumers, 0.4 at 5,000).
NOISE_PP_SQRT_N = 30.0


def default_tolerance(scenario: Scenario) -> float:
    """The solver accuracy a fit of ``scenario`` can reach: 0.2 points, or its final stage's noise if larger."""
    return max(DEFAULT_TOL_PP, NOISE_PP_SQRT_N / math.sqrt(fit_consumers(scenario)))


#: Consumers of the coarse stage and (at most) of the final stage; see the module docstring. The final stage's
#: size is the burn-in pilot's (engine.PILOT_CONSUMERS): its pilot is then the very pilot of every larger run at
#: the fitted values, and the noise of one simulated share there (30 / sqrt(20,000) = 0.21 points) is the default
#: tolerance. Measured on the bundled fit: an evaluation costs 0.6 s at 20,000 consumers and 0.8 s at 50,000
#: (0.41 s of either is the pilot).
COARSE_CONSUMERS = 5_000
FIT_CONSUMERS = PILOT_CONSUMERS
#: Solver budget (simulations) per stage.
MAX_EVALS = {"coarse": 30, "fine": 24}
#: After the coarse stage, a root-mean-square residual above this many points means no fit: the fine stage
#: is not tried. A share whose simulated values spread over more than TIPPING_SPREAD (a fraction) across
#: the fit's simulations is evidence that the market tips.
NO_FIT_PP = 5.0
STALL_ACCEPT_PP = 1.5
TIPPING_SPREAD = 0.5
#: Finite-difference step of the starting Jacobian, in utility units (alpha) and utility per year (trend).
FD_STEP = 0.15
#: ... and at the final size, where the map is smoother and shares move 40-60 points per utility unit near the
#: bundled fit: a step that moves them by about two points.
FD_STEP_FINE = 0.04
#: A finite difference that moves an equation by more than this many points is retried with a smaller step.
FD_MAX_PP = 4.0
#: The coarse stage stops within this many points: its own sampling noise is about a point (5,000 consumers).
COARSE_TOL_PP = 1.0
#: |alpha| beyond this means the observation is unreachable (exp(40) ~ 2e17).
ALPHA_LIMIT = 40.0
#: Largest |size| of a fitted recurring effect (utility): the range its field allows.
EVENT_LIMIT = 20.0
TREND_LIMIT = 10.0
#: Bump when the calibration procedure changes, so cached fits are not reused. (6: a fit whose shares do not
#: respond to its parameters, or whose market has no shoppers or purchases, fails instead of "converging".)
METHOD_VERSION = 6
#: Simulated shoppers (agents, not real units) an observation's period needs at the fit's size: a share from
#: fewer purchase decisions has a sampling error above 9 points (sqrt(0.25 / 30)), so no fit can mean anything.
MIN_SHOPPERS = 30
#: Below this simulated conversion (buyers / shoppers) the market has, for a fit, no purchases: the shares are
#: ratios of vanishing numbers and no attractiveness within +-ALPHA_LIMIT brings buyers back.
MIN_CONVERSION = 1e-4


class CalibrationError(UserError):
    """The fit is impossible or failed; the message names the observation or the missing data, and why."""


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class Equation:
    """One share equation: observation ``obs`` (index into FitProblem.observations), retailer index ``j``."""

    obs: int
    j: int
    observed: float  # fraction


@dataclass(frozen=True)
class FitProblem:
    """What a fit fits: the observations before the cut-off, the free parameters, the offsets, the horizon."""

    scenario: Scenario
    until: dt.date
    observations: tuple[Observation, ...]
    primary: str
    free_alpha: tuple[int, ...]  # retailer indices whose alpha is fitted
    free_trend: tuple[int, ...]  # retailer indices whose trend is fitted
    offsets: tuple[tuple[str, int], ...]  # (source, retailer index) pairs with a fitted offset
    equations: tuple[Equation, ...]
    horizon: int  # steps simulated (0 .. horizon-1): through the end of the last observation
    weights: np.ndarray = field(repr=False)  # (observations, horizon): share of each step's days inside the period
    conversion: float | None = None
    free_events: tuple[str, ...] = ()  # paths of recurring effects' sizes fitted (events.ID.utility)
    #: retailer -> the non-primary source that sets its level, for every observed retailer the primary source
    #: never observes (in the fit's observations); that pair has no offset, and other sources observing the
    #: retailer get offsets relative to it
    level_sources: dict[str, str] = field(default_factory=dict)

    def level_source(self, retailer: str) -> str:
        """The source that sets ``retailer``'s level: the primary source unless named in ``level_sources``."""
        return self.level_sources.get(retailer, self.primary)

    @property
    def n_params(self) -> int:
        return len(self.free_alpha) + len(self.free_trend) + len(self.free_events)

    @property
    def n_equations(self) -> int:
        """Independent equations: share equations (an observation of every retailer counts one less, its shares
        sum to 1) plus the conversion."""
        per_obs: dict[int, int] = {}
        for e in self.equations:
            per_obs[e.obs] = per_obs.get(e.obs, 0) + 1
        R = len(self.scenario.retailers)
        n = sum(k - 1 if k == R else k for k in per_obs.values())
        return n + (1 if self.conversion is not None else 0)

    @property
    def dof(self) -> int:
        """Residual degrees of freedom: independent equations minus fitted parameters (alpha, trend, offsets)."""
        return self.n_equations - self.n_params - len(self.offsets)

    def param_names(self) -> list[str]:
        names = self.scenario.retailer_names
        return (
            [f"alpha[{names[j]}]" for j in self.free_alpha]
            + [f"trend[{names[j]}]" for j in self.free_trend]
            + list(self.free_events)
        )


def fit_problem(
    scenario: Scenario, until: dt.date | None = None, *, drop_unidentified: bool = False, allow_fixed: bool = False
) -> FitProblem:
    """The fit problem of ``scenario`` with cut-off ``until`` (default: docs/model.md section 8). Raises
    :class:`CalibrationError` naming what is missing when a fitted parameter is not identified or the degrees of
    freedom are negative. ``drop_unidentified`` (the back-test, which fits on less data than the scenario was
    written for) fixes unidentified trends at 0 and drops unidentified offsets instead of refusing.
    ``allow_fixed``: a scenario with nothing to fit is a problem with no parameters (its residuals are then
    those of the given values: conditioning uses that)."""
    sc = scenario
    names = sc.retailer_names
    R = len(names)
    cut = sc.fit_cutoff(until)
    obs = sc.fit_observations(until)
    _check_room(sc, obs)
    free_alpha = tuple(j for j, r in enumerate(sc.retailers) if r.calibrate)
    free_trend = [j for j, r in enumerate(sc.retailers) if r.calibrate_trend]
    free_events = tuple(
        p for p in sc.calibrated_events if not (drop_unidentified and not _season_identified(sc, obs, p))
    )  # (the back-test, on less data, holds an unidentified one at 0)
    if not free_alpha and not free_trend and not free_events and not allow_fixed:
        raise CalibrationError(f"{sc.source}: no retailer has attractiveness or trend 'calibrate'; nothing to fit")
    if not obs:
        have = (
            ", ".join(
                f"{o.source} {o.label} ({'held out, never fitted' if o.holdout else f'ends {o.end}'})"
                for o in sc.observations
            )
            or "none"
        )
        raise CalibrationError(f"{sc.source}: no observation ends on or before the cut-off {cut}; observations: {have}")
    primary = sc.primary_source or obs[0].source
    where = f"{sc.source}: fit until {cut}"
    if len(free_trend) == R:
        raise CalibrationError(
            f"{where}: every retailer's trend is 'calibrate'; one must be the reference (a number, "
            f"usually 0: shares fix trends only relative to each other)"
        )
    for j in list(free_trend):
        if not _two_periods(obs, names[j]):
            if drop_unidentified:
                free_trend.remove(j)
                continue
            seen = ", ".join(f"{o.source} {o.label}" for o in obs if o.share(names[j]) is not None) or "none"
            raise CalibrationError(
                f"{where}: retailers.{names[j]}.trend: 'calibrate' needs {names[j]} observed in two periods (neither inside "
                f"the other) by one source; observations of {names[j]} used: {seen}; add one, or give the trend a number"
            )
    observed = {n for o in obs for n, _ in o.shares}
    unobserved = [names[j] for j in free_alpha if names[j] not in observed]
    level_sources = _level_sources(obs, primary, names)
    offsets = sorted(
        {(o.source, names.index(n)) for o in obs for n, _ in o.shares if o.source != level_sources.get(n, primary)}
    )
    equations = tuple(Equation(k, names.index(n), v) for k, o in enumerate(obs) for n, v in o.shares)
    cal = sc.calendar
    horizon = max(cal.step_of(o.end) for o in obs) + 1
    W = np.array([period_weights(cal, o, horizon) for o in obs]).reshape(len(obs), horizon)
    prob = FitProblem(
        sc,
        cut,
        obs,
        primary,
        free_alpha,
        tuple(free_trend),
        tuple(offsets),
        equations,
        horizon,
        W,
        sc.consumers.conversion if free_alpha else None,
        free_events,
        level_sources,
    )
    for path in free_events:
        if not _season_identified(sc, obs, path):
            _refuse_season(sc, obs, path, where)
    missing = f"; never observed: {', '.join(unobserved)}" if unobserved else ""
    if prob.dof < 0:
        raise CalibrationError(
            f"{where}: {prob.n_equations} independent equations ({len(equations)} observed shares in {len(obs)} "
            f"observations{' + the conversion' if prob.conversion is not None else ''}) for {prob.n_params + len(offsets)} "
            f"parameters ({', '.join(prob.param_names())}{', ' if offsets else ''}"
            f"{', '.join(f'offset[{s},{names[j]}]' for s, j in offsets)}): {-prob.dof} short{missing}; add "
            f"observations, or fix some trends or attractiveness at a number"
        )
    if len(unobserved) > 1:
        raise CalibrationError(
            f"{where}: {', '.join(unobserved)} are calibrated but never observed; at most one "
            f"retailer (the rest of the market) may go unobserved; add observations of the others"
        )
    return prob


def _level_sources(obs: tuple[Observation, ...], primary: str, names: Sequence[str]) -> dict[str, str]:
    """retailer -> its level source, for every retailer observed in ``obs`` but never by ``primary``: the source
    with the most observations of it (ties: the first name in sort order). A source's numbers differ from
    another's by a constant per retailer (docs/model.md section 8), so such a retailer's fitted shares are at
    that source's level: said, not silently taken as the primary's."""
    out: dict[str, str] = {}
    for n in names:
        count: dict[str, int] = {}
        for o in obs:
            if o.share(n) is not None:
                count[o.source] = count.get(o.source, 0) + 1
        if count and primary not in count:
            out[n] = min(count, key=lambda s: (-count[s], s))
    return out


def period_weights(cal, o: Observation, horizon: int) -> np.ndarray:
    """(horizon,) the share of each step's days (steps 0 .. horizon-1) inside observation ``o``'s period: the weights
    that average simulated per-step GMV over the period."""
    w = np.zeros(horizon)
    for t in range(max(cal.step_of(o.start), 0), horizon):
        a, b = cal.date_of(t), cal.date_of(t + 1)
        days = (min(b, o.end + dt.timedelta(days=1)) - max(a, o.start)).days
        if days > 0:
            w[t] = days / cal.step_days
    return w


def _check_room(sc: Scenario, obs: tuple[Observation, ...]) -> None:
    """Refuse an observation whose shares sum to 100% or more while it leaves a retailer out: that retailer
    (the rest of the market, or one the source does not report) would need a share of zero or less, which no
    attractiveness gives (every retailer keeps a positive share in a logit market). One line naming the
    observation and who is left with nothing."""
    names = sc.retailer_names
    for i, o in enumerate(sc.observations):
        if o not in obs:
            continue
        left = [n for n in names if o.share(n) is None]
        total = sum(v for _, v in o.shares)
        if left and total >= 1 - 1e-9:
            raise CalibrationError(
                f"{sc.source}: observations[{i}].shares: the observed shares for {o.source} {o.label} sum to "
                f"{total * 100:.1f}%: nothing is left for {', '.join(left)} (not observed there, so its share is the "
                f"rest of the market); allowed: less than 100% in all when a retailer is left out; give "
                f"{', '.join(left)}'s share too, or correct the others"
            )


#: Two observations' exposures to a recurring effect (the share of their days it covers) must differ by this much,
#: relative to the larger, to identify its size: a year against the next (1/366 against 1/365) does not.
SEASON_CONTRAST = 0.1


def season_exposure(sc: Scenario, event_id: str, o: Observation) -> float:
    """The share of an observation's days that a recurring effect's firings cover."""
    ev = next(e for e in sc.events if e.id == event_id)
    covered = 0
    for first, last in ev.firings(sc.calendar, until=o.end + dt.timedelta(days=1)):
        lo, hi = max(first, o.start), min(last, o.end)
        covered += max((hi - lo).days + 1, 0)
    return covered / ((o.end - o.start).days + 1)


def _exposures(sc: Scenario, obs: tuple[Observation, ...], path: str) -> dict[str, list[tuple[float, Observation]]]:
    event_id = path.split(".")[1]
    by_source: dict[str, list[tuple[float, Observation]]] = {}
    for o in obs:
        by_source.setdefault(o.source, []).append((season_exposure(sc, event_id, o), o))
    return by_source


def _season_identified(sc: Scenario, obs: tuple[Observation, ...], path: str) -> bool:
    """A recurring effect's size is identified only by observations of one source, of a common retailer, that
    cover its days unequally (a quarter without 11 November against the year that contains it: docs/model.md
    section 8)."""
    for group in _exposures(sc, obs, path).values():
        for xa, a in group:
            for xb, b in group:
                common = {n for n, _ in a.shares} & {n for n, _ in b.shares}
                if common and abs(xa - xb) > SEASON_CONTRAST * max(xa, xb):
                    return True
    return False


def _refuse_season(sc: Scenario, obs: tuple[Observation, ...], path: str, where: str) -> None:
    """One line naming the observations and the share of their days the effect covers."""
    seen = ", ".join(f"{o.source} {o.label} {x * 100:.2g}%" for g in _exposures(sc, obs, path).values() for x, o in g)
    raise CalibrationError(
        f"{where}: {path}: 'calibrate' needs observations from one source that cover the effect's days "
        f"unequally (a quarter without it against the year that contains it); the observations used cover "
        f"these shares of their days: {seen}; add one, or give it a number"
    )


def _two_periods(obs: tuple[Observation, ...], retailer: str) -> bool:
    """True if one source observes ``retailer`` in two periods neither of which contains the other."""
    by_source: dict[str, list[Observation]] = {}
    for o in obs:
        if o.share(retailer) is not None:
            by_source.setdefault(o.source, []).append(o)
    for group in by_source.values():
        for a in group:
            for b in group:
                if (
                    a is not b
                    and not (a.start <= b.start and b.end <= a.end)
                    and not (b.start <= a.start and a.end <= b.end)
                ):
                    return True
    return False


# --------------------------------------------------------------------------- evaluating a parameter vector


@dataclass(frozen=True)
class FitPath:
    """Expected outcomes of the fitted steps 0 .. horizon-1 (real units)."""

    gmv: np.ndarray  # (T, R) expected GMV per step and retailer
    buyers: np.ndarray  # (T,) expected buyers
    shoppers: np.ndarray  # (T,)

    def period_shares(self, weights: np.ndarray) -> np.ndarray:
        """(observations, R) GMV shares over each observation's period."""
        g = weights @ self.gmv
        return g / np.maximum(g.sum(axis=1, keepdims=True), 1e-300)

    @property
    def conversion(self) -> float:
        return float(self.buyers.sum() / self.shoppers.sum()) if self.shoppers.sum() > 0 else 0.0

    @property
    def shares(self) -> np.ndarray:
        """(T, R) expected GMV share per step."""
        return self.gmv / np.maximum(self.gmv.sum(axis=1, keepdims=True), 1e-300)


def expected_path(
    scenario: Scenario,
    alpha: np.ndarray,
    trend: np.ndarray,
    seed: int,
    n: int,
    horizon: int,
    *,
    world=None,
    pilot: PilotState | None = None,
    trend_cut: dt.date | None = None,
) -> FitPath:
    """Simulate ``horizon`` steps (after the burn-in, with the events dated before them) at ``n`` consumers and
    return the expected outcomes per step. ``world`` may be given (built for ``seed`` and ``n``), and ``pilot``
    (the burn-in pilot of ``seed`` and ``n`` at these alphas: :func:`engine.run_pilot`); ``trend_cut``: the
    cut-off after which trends follow the scenario's ``forecast`` (default: the scenario's own)."""
    world = build_world(scenario, seed, n=n) if world is None else world
    m = Market(scenario, world, alpha, seed, trend=trend, track_expected=True, pilot=pilot, trend_cut=trend_cut)
    gmv, buyers, shoppers = np.zeros((horizon, len(alpha))), np.zeros(horizon), np.zeros(horizon)
    for t in range(horizon):
        rec = m.step()
        assert rec.expected_buyers is not None  # (the market tracks expected values)
        gmv[t], buyers[t], shoppers[t] = rec.expected_gmv, rec.expected_buyers.sum(), rec.shoppers
    return FitPath(gmv, buyers, shoppers)


class _Objective:
    """theta (free alphas, then free trends) -> residual vector in points, with offsets profiled out."""

    def __init__(self, prob: FitProblem, alpha0: np.ndarray, trend0: np.ndarray, seed: int):
        self.prob, self.alpha0, self.trend0, self.seed = prob, alpha0, trend0, seed
        self.evals = 0
        self.seen: list[np.ndarray] = []  # mean simulated share per retailer of every simulation (tipping evidence)
        eq = prob.equations
        self.rows = np.array([e.obs for e in eq])
        self.cols = np.array([e.j for e in eq])
        self.observed = np.array([e.observed for e in eq])
        self.groups = [
            np.array([k for k, e in enumerate(eq) if prob.observations[e.obs].source == s and e.j == j])
            for s, j in prob.offsets
        ]

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, tr = self.alpha0.copy(), self.trend0.copy()
        na, nt = len(self.prob.free_alpha), len(self.prob.free_trend)
        a[list(self.prob.free_alpha)] = theta[:na]
        tr[list(self.prob.free_trend)] = theta[na : na + nt]
        return a, tr

    def event_values(self, theta: np.ndarray) -> dict[str, float]:
        """The fitted recurring effects' sizes in ``theta``, by path."""
        k = len(self.prob.free_alpha) + len(self.prob.free_trend)
        return {p: float(v) for p, v in zip(self.prob.free_events, theta[k:], strict=True)}

    def scenario(self, theta: np.ndarray) -> Scenario:
        """The scenario to simulate at ``theta``: with the recurring effects' sizes it holds."""
        values = self.event_values(theta)
        return with_event_values(self.prob.scenario, values) if values else self.prob.scenario

    def from_path(self, path: FitPath) -> np.ndarray:
        sim = path.period_shares(self.prob.weights)[self.rows, self.cols]
        gap = self.observed - sim
        for g in self.groups:
            gap[g] -= gap[g].mean()  # the offset absorbs the mean gap of its source and retailer
        r = -gap * 100
        if self.prob.conversion is not None:
            r = np.append(r, (path.conversion - self.prob.conversion) * 100)
        return r

    def offsets(self, path: FitPath) -> dict[str, dict[str, float]]:
        sim = path.period_shares(self.prob.weights)[self.rows, self.cols]
        gap = (self.observed - sim) * 100
        out: dict[str, dict[str, float]] = {}
        names = self.prob.scenario.retailer_names
        for (s, j), g in zip(self.prob.offsets, self.groups, strict=True):
            out.setdefault(s, {})[names[j]] = float(gap[g].mean())
        return out


class _Stage:
    """Evaluations at one size: the World is built once for the seed, and the burn-in pilot's World and random
    numbers (:func:`engine.pilot_inputs`: they depend on the seed and size, not on the values fitted); each
    evaluation runs its own burn-in pilot, except that one whose alphas equal a recent evaluation's reuses its pilot (the pilot runs at the
    calendar start's values, where trends have not acted yet: a finite difference in a trend needs none), and a
    point evaluated before is not simulated again. Neither changes any number: both are the same simulation."""

    #: Pilots kept (by their alphas): a Jacobian's trend columns come after its alpha columns.
    PILOTS_KEPT = 8

    def __init__(self, obj: _Objective, n: int, name: str, on_progress):
        self.obj, self.n, self.name, self.on_progress = obj, n, name, on_progress
        self.world = build_world(obj.prob.scenario, obj.seed, n=n)
        self.budget = obj.evals + MAX_EVALS[name]
        self.best: tuple = (math.inf, None, None, None)  # (sum of squares, theta, residuals, path) of the best one
        self._pilots: dict[bytes, PilotState] = {}  # alphas -> their pilot, the most recent PILOTS_KEPT
        self._done: dict[bytes, tuple[np.ndarray, FitPath]] = {}  # theta -> (residuals, path), this stage's points
        self._pilot_inputs: PilotInputs | None = None  # the pilot's World and random numbers: one seed, one size

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, FitPath]:
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if key in self._done:
            return self._done[key]
        if self.obj.evals >= self.budget:
            raise _Exhausted
        obj = self.obj
        sc = obj.scenario(theta)
        a, tr = obj.unpack(theta)
        obj.evals += 1
        pilot = None
        if sc.consumers.turnover > 0:
            pilot = self._pilots.pop(a.tobytes(), None)
            if pilot is None:
                if self._pilot_inputs is None:
                    self._pilot_inputs = pilot_inputs(sc, obj.seed, self.n)
                pilot = run_pilot(sc, a, tr, obj.seed, self.n, inputs=self._pilot_inputs)
            self._pilots[a.tobytes()] = pilot
            while len(self._pilots) > self.PILOTS_KEPT:
                del self._pilots[next(iter(self._pilots))]
        # the fit's own cut-off: its steps all start on or before it (the horizon ends with the last observation
        # used, which ends on or before the cut-off), so the forecast rule never acts inside the fit
        path = expected_path(
            sc, a, tr, obj.seed, self.n, obj.prob.horizon, world=self.world, pilot=pilot, trend_cut=obj.prob.until
        )
        thin = _too_few_shoppers(obj.prob, path, self.n)
        if thin is not None:  # no attractiveness or trend changes who shops: fail now, naming the cause
            raise CalibrationError(f"{sc.source}: {thin}")
        r = obj.from_path(path)
        self._done[key] = (r, path)
        obj.seen.append(path.period_shares(obj.prob.weights).mean(axis=0))
        if r @ r < self.best[0]:
            self.best = (float(r @ r), theta.copy(), r, path)
        if self.on_progress:
            self.on_progress(self.name, obj.evals, float(np.max(np.abs(r))))
        return r, path


class _Exhausted(Exception):
    """A stage used its simulation budget."""


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Calibration:
    """A fit (docs/model.md section 8): parameters, per-observation residuals, offsets, degrees of freedom."""

    alpha: dict[str, float]  # fitted (and given) attractiveness per retailer at the calendar start
    trend: dict[str, float]  # fitted (and given) trend per retailer, utility per year
    offsets: dict[str, dict[str, float]]  # source -> retailer -> points added to the simulated share
    observations: list[dict]  # per (observation, retailer): source, period, retailer, observed, simulated, residual_pp
    conversion_residual_pp: float  # simulated minus target conversion, points (nan if nothing pins it)
    dof: int  # residual degrees of freedom
    iterations: int  # solver steps (coarse + fine)
    evaluations: int  # simulations run
    consumers: int  # N of the final stage
    seed: int
    tol_pp: float
    until: str  # the cut-off (ISO date)
    primary_source: str
    horizon: int  # steps simulated in the fit
    path: list[list[float]]  # expected GMV share per step of the fit (steps x retailers), for fit.png
    key: str
    method: int = METHOD_VERSION
    jacobian: list[list[float]] | None = None  # d residuals / d (fitted alphas, trends, event sizes) at the fit
    event_values: dict[str, float] = field(default_factory=dict)  # fitted recurring effects' sizes, by path
    event_se: dict[str, float] = field(default_factory=dict)  # their standard errors (from the Jacobian), by path
    #: retailer -> the non-primary source that sets its level (the primary source never observes it; that pair has
    #: no offset). Empty in fits stored before it existed (their retailers were all observed by the primary, or
    #: silently at their one source's level)
    level_sources: dict[str, str] = field(default_factory=dict)
    #: retailer -> standard error of its fitted trend (utility per year; from the Jacobian and residuals, as
    #: event_se). Empty when no trend is fitted, and in fits stored before it existed
    trend_se: dict[str, float] = field(default_factory=dict)

    def level_notes(self) -> list[str]:
        """One line per retailer not levelled by the primary source (``marketsim calibrate`` prints them)."""
        out = []
        for n, s in self.level_sources.items():
            others = sorted(src for src, d in self.offsets.items() if n in d)
            rel = f"; {', '.join(others)} offset relative to {s}" if others else ""
            out.append(f"{n}: observed only by {' and '.join([s, *others])}, fitted at {s}'s level (no offset){rel}")
        return out

    def alpha_vector(self, scenario: Scenario) -> np.ndarray:
        return np.array([self.alpha[name] for name in scenario.retailer_names])

    def trend_vector(self, scenario: Scenario) -> np.ndarray:
        return np.array([self.trend[name] for name in scenario.retailer_names])

    @property
    def residual_pp(self) -> dict[str, float]:
        """Largest absolute residual per retailer, in points (summary tables)."""
        out: dict[str, float] = {}
        for o in self.observations:
            r = o["residual_pp"]
            if abs(r) >= abs(out.get(o["retailer"], 0.0)):
                out[o["retailer"]] = r
        return out

    @property
    def max_residual_pp(self) -> float:
        return max((abs(o["residual_pp"]) for o in self.observations), default=0.0)

    def to_dict(self) -> dict:
        """As plain data; a fit without recurring effects' sizes has no event keys, and one without fitted trends
        no trend_se (as fits stored before)."""
        d = asdict(self)
        for k in ("event_values", "event_se", "trend_se"):
            if not d[k]:
                del d[k]
        return d

    def summary(self) -> dict:
        """The fit as the ``calibrate --json`` document (without the per-step path)."""
        d = self.to_dict()
        d.pop("path")
        if not d["level_sources"]:  # every retailer at the primary's level: the document as before the field
            d.pop("level_sources")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**d)  # (a stored fit without level_sources gets the default: none)


def with_event_values(scenario: Scenario, values: dict[str, float]) -> Scenario:
    """``scenario`` with its 'calibrate' recurring effects' sizes set to ``values`` (by path): the market a fit
    describes. Built without validating again (the values are in their fields' range: the fit clips them)."""
    if not values:
        return scenario
    events = []
    for e in scenario.events:
        fields = {p.split(".")[2]: v for p, v in values.items() if p.split(".")[1] == e.id}
        events.append(dataclasses.replace(e, action=dataclasses.replace(e.action, **fields)) if fields else e)
    left = tuple(p for p in scenario.calibrated_events if p not in values)
    raw = copy.deepcopy(dict(scenario.raw))
    for p, v in values.items():
        set_path(raw, p, v)
    return dataclasses.replace(scenario, events=tuple(events), calibrated_events=left, raw=raw)


def cache_key(scenario: Scenario, until: dt.date | None = None, tol_pp: float | None = None) -> str:
    """Hash of everything a fit depends on: the market (without name, description, run length and the ranges
    of uncertain parameters), the events inside the fitted horizon, the observations used, the cut-off, the
    seed, the consumers of the final stage and the method."""
    d = scenario.to_dict()
    for k in ("name", "description", "uncertain", "observations", "forecast"):  # (a fit never sees the forecast)
        d.pop(k, None)
    d["calendar"].pop("steps", None)
    cut = scenario.fit_cutoff(until)
    obs = scenario.fit_observations(until)
    horizon = max((scenario.calendar.step_of(o.end) for o in obs), default=-1) + 1
    d["events"] = [e for e, ev in zip(d["events"], scenario.events, strict=True) if ev.step < horizon]
    d["fit_until"] = cut.isoformat()
    d["_observations"] = [[o.source, o.start.isoformat(), o.end.isoformat(), list(map(list, o.shares))] for o in obs]
    d["consumers"]["count"] = fit_consumers(scenario)
    # offsets relative to a non-primary level source (a retailer the primary never observes, seen by two sources or
    # more) are new with level_sources: such a fit differs from one stored before, so its key does too; every other
    # key is unchanged (the fit is the same)
    levels = _level_sources(obs, scenario.primary_source or obs[0].source, scenario.retailer_names) if obs else {}
    relative = sorted({(o.source, n) for o in obs for n, _ in o.shares if n in levels and o.source != levels[n]})
    if relative:
        d["_relative_offsets"] = [list(p) for p in relative]
    d["_method"] = [METHOD_VERSION, tol_pp or default_tolerance(scenario), COARSE_CONSUMERS, FIT_CONSUMERS]
    return digest(d, 20, spaced=True)


def fit_consumers(scenario: Scenario) -> int:
    """Consumers of the final stage: the scenario's N, within [COARSE_CONSUMERS, FIT_CONSUMERS]. Shares do not
    depend on N beyond sampling noise (docs/model.md property 4), so a large run reuses a fit made at FIT_CONSUMERS
    and a small one gets a fit less noisy than its own size would allow."""
    return max(COARSE_CONSUMERS, min(scenario.consumers.count, FIT_CONSUMERS))


def mean_observed(prob: FitProblem) -> np.ndarray:
    """(R,) each retailer's mean observed share; an unobserved retailer gets an equal part of the rest."""
    sc = prob.scenario
    names = sc.retailer_names
    R = len(names)
    mean = np.full(R, np.nan)
    for j, n in enumerate(names):
        vals = [s for o in prob.observations if (s := o.share(n)) is not None]
        if vals:
            mean[j] = np.mean(vals)
    missing = np.isnan(mean)
    if missing.any():
        mean[missing] = max(1 - np.nansum(mean), 0.01) / missing.sum()
    return mean


def initial_theta(prob: FitProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start: the static logit constant ln(conv s_j / (1 - conv)) minus the habit bonus for calibrated alphas
    (s_j = the mean observed share), trends 0."""
    sc = prob.scenario
    conv = sc.consumers.conversion or 0.5
    mean = mean_observed(prob)
    alpha0 = np.array(
        [
            r.attractiveness
            if r.attractiveness is not None
            else math.log(conv * max(mean[j], 1e-6) / (1 - conv)) - sc.behaviour.beta_habit
            for j, r in enumerate(sc.retailers)
        ]
    )
    trend0 = np.array([r.trend if r.trend is not None else 0.0 for r in sc.retailers])
    theta0 = np.concatenate(
        [alpha0[list(prob.free_alpha)], trend0[list(prob.free_trend)], np.zeros(len(prob.free_events))]
    )
    return alpha0, trend0, theta0


# --------------------------------------------------------------------------- the solver


def calibrate(
    scenario: Scenario,
    *,
    options: FitOptions | None = None,
    on_progress: Callable[[str, int, float], None] | None = None,
    **fields,
) -> Calibration:
    """Fit the scenario's calibrated attractiveness and trends to its observations up to the cut-off.

    ``options``: :class:`marketsim.fit.options.FitOptions` (cut-off, tolerance, ...); keyword ``fields`` change
    single ones (``calibrate(sc, until=d)``). Deterministic for the scenario's seed (and ``start``). ``on_progress(stage, simulations, worst_pp)`` after
    each simulation. ``start``: the fit of a nearby scenario (the central values of a projection's draws): its
    values and Jacobian start the final stage directly, skipping the coarse one; if that does not converge, the
    fit starts over. Raises :class:`CalibrationError` (one line) when the fit is not identified or cannot meet
    an observation.
    """
    options = fit_options(options, fields)
    start = options.start
    if start is not None and start.jacobian is not None:
        try:
            return _calibrate(scenario, options, on_progress)
        except CalibrationError:
            pass
    return _calibrate(scenario, options.but(start=None), on_progress)


def _calibrate(scenario: Scenario, options: FitOptions, on_progress) -> Calibration:
    until, tol_pp, start = options.until, options.tol_pp, options.start
    prob = fit_problem(scenario, until, drop_unidentified=options.drop_unidentified, allow_fixed=options.allow_fixed)
    tol_pp = tol_pp or default_tolerance(scenario)
    alpha0, trend0, theta = initial_theta(prob)
    obj = _Objective(prob, alpha0, trend0, scenario.seed)
    n_fit = fit_consumers(scenario)
    iterations, J = 0, None
    if prob.n_params == 0:  # nothing to fit: the given values' residuals
        r, path = _Stage(obj, n_fit, "fine", on_progress).evaluate(theta)
        return _result(scenario, prob, obj, theta, r, path, 0, tol_pp, until)
    if start is not None:
        assert start.jacobian is not None  # calibrate() passes a start only with its Jacobian
        names = scenario.retailer_names
        if len(start.jacobian[0]) != prob.n_params or len(start.jacobian) != len(prob.equations) + (
            prob.conversion is not None
        ):
            raise CalibrationError("the start's Jacobian does not fit this problem")
        theta = np.array(
            [start.alpha[names[j]] for j in prob.free_alpha]
            + [start.trend[names[j]] for j in prob.free_trend]
            + [start.event_values.get(p, 0.0) for p in prob.free_events]
        )
        J = np.array(start.jacobian)
    else:
        stage = _Stage(obj, min(COARSE_CONSUMERS, n_fit), "coarse", on_progress)
        theta, iterations = _berry(stage, theta)
    if (
        start is None and n_fit > COARSE_CONSUMERS
    ):  # a start and a Jacobian from the coarse stage, for the few costly steps
        try:
            r, path = stage.evaluate(theta)
            theta, J, r, path, its = _gauss_newton(stage, theta, None, r, path, COARSE_TOL_PP, strict=False)
            iterations += its
        except _Exhausted:
            theta = stage.best[1]
        ss, best_theta, best_r, best_path = stage.best
        if math.sqrt(ss / len(best_r)) > NO_FIT_PP:  # hopeless: say so now, not after costly steps
            raise _no_fit(
                obj,
                best_theta,
                best_r,
                best_path,
                stage.n,
                f"the coarse stage found no point within {NO_FIT_PP:g} points of the observations",
            )
    stage = _Stage(obj, n_fit, "fine", on_progress)
    try:
        r, path = stage.evaluate(theta)
        theta, J, r, path, its = _gauss_newton(stage, theta, J, r, path, tol_pp)
        iterations += its
    except _Exhausted:
        _, best_theta, best_r, best_path = stage.best
        raise _no_fit(
            obj, best_theta, best_r, best_path, stage.n, f"no convergence in {MAX_EVALS[stage.name]} simulations"
        ) from None
    return _result(scenario, prob, obj, theta, r, path, iterations, tol_pp, until, J)


def _result(scenario, prob, obj, theta, r, path, iterations, tol_pp, until, J=None) -> Calibration:
    a, tr = obj.unpack(theta)
    names = scenario.retailer_names
    offsets = obj.offsets(path)
    rows = observation_rows(prob, path, offsets)
    return Calibration(
        alpha=dict(zip(names, map(float, a), strict=True)),
        trend=dict(zip(names, map(float, tr), strict=True)),
        offsets=offsets,
        observations=rows,
        conversion_residual_pp=float(r[-1]) if prob.conversion is not None else math.nan,
        dof=prob.dof,
        iterations=iterations,
        evaluations=obj.evals,
        consumers=fit_consumers(scenario),
        seed=scenario.seed,
        tol_pp=tol_pp,
        until=prob.until.isoformat(),
        primary_source=prob.primary,
        horizon=prob.horizon,
        path=[[float(x) for x in row] for row in path.shares],
        key=cache_key(scenario, until, tol_pp),
        jacobian=None if J is None else [[float(x) for x in row] for row in J],
        event_values=obj.event_values(theta),
        event_se=_event_se(prob, J, r),
        level_sources=dict(prob.level_sources),
        trend_se=_trend_se(prob, J, r),
    )


def _param_se(prob: FitProblem, J, r: np.ndarray) -> np.ndarray | None:
    """Standard errors of every fitted parameter (theta's order: alphas, trends, event sizes): the square roots
    of the diagonal of the Gauss-Newton covariance s^2 (J'J)^-1, with s^2 the residual variance per degree of
    freedom (in points^2; with no degree of freedom left, the simulation noise floor of the fit,
    NOISE_PP_SQRT_N / sqrt(N), stands in). Offsets are profiled out of the residuals, so this holds them at
    their fitted values: a lower bound where they are uncertain. None without a Jacobian; nan where the
    pseudo-inverse fails."""
    if J is None:
        return None
    J = np.asarray(J, dtype=float)
    n_fit = fit_consumers(prob.scenario)
    s2 = float(r @ r) / prob.dof if prob.dof > 0 else (NOISE_PP_SQRT_N / math.sqrt(n_fit)) ** 2
    try:
        cov = np.linalg.pinv(J.T @ J) * s2
    except np.linalg.LinAlgError:
        return np.full(J.shape[1], math.nan)
    return np.sqrt(np.maximum(np.diag(cov), 0.0))


def _event_se(prob: FitProblem, J, r: np.ndarray) -> dict[str, float]:
    """Standard errors of the fitted recurring effects' sizes, by path (:func:`_param_se`)."""
    se = _param_se(prob, J, r) if prob.free_events else None
    if se is None:
        return {}
    k = len(prob.free_alpha) + len(prob.free_trend)
    return {p: float(se[k + i]) for i, p in enumerate(prob.free_events)}


def stored_trend_se(scenario: Scenario, cal: Calibration) -> dict[str, float]:
    """The trends' standard errors of a fit stored before ``Calibration.trend_se`` existed, from its stored
    Jacobian and residuals (the residuals of its observation rows, then the conversion's): the numbers
    :func:`_trend_se` gives. Empty if it has no Jacobian or fitted trend, or its Jacobian does not fit the
    problem."""
    if cal.jacobian is None:
        return {}
    try:
        prob = fit_problem(scenario, dt.date.fromisoformat(cal.until), drop_unidentified=True, allow_fixed=True)
    except CalibrationError:
        return {}
    r = [o["residual_pp"] for o in cal.observations]
    if prob.conversion is not None:
        r.append(cal.conversion_residual_pp)
    J = np.asarray(cal.jacobian, dtype=float)
    if J.shape != (len(r), prob.n_params) or len(cal.observations) != len(prob.equations):
        return {}
    return _trend_se(prob, J, np.asarray(r, dtype=float))


def _trend_se(prob: FitProblem, J, r: np.ndarray) -> dict[str, float]:
    """Standard errors of the fitted trends (utility per year), by retailer (:func:`_param_se`): how far the
    observations pin each trend relative to the reference trend (given, usually 0). A trend at the end of its
    range (TREND_LIMIT) gets one from a Jacobian the clip flattened: it says little."""
    se = _param_se(prob, J, r) if prob.free_trend else None
    if se is None:
        return {}
    names, na = prob.scenario.retailer_names, len(prob.free_alpha)
    return {names[j]: float(se[na + i]) for i, j in enumerate(prob.free_trend)}


def at_limit(value: float) -> bool:
    """A fitted recurring effect's size at the end of its range: the data push it further than the field allows,
    and its standard error (from a Jacobian flattened by the clip) says nothing."""
    return abs(value) >= EVENT_LIMIT - 1e-9


def observation_rows(
    prob: FitProblem, path: FitPath, offsets: dict[str, dict[str, float]], steps: int | None = None
) -> list[dict]:
    """Per (observation, retailer): source, period, retailer, observed, simulated (with its source's offset) and
    residual, in points (over the first ``steps`` steps of the path, default all)."""
    names = prob.scenario.retailer_names
    sim = path.period_shares(prob.weights[:, : steps or prob.horizon])
    rows = []
    for e in prob.equations:
        o = prob.observations[e.obs]
        simulated = float(sim[e.obs, e.j] * 100 + offsets.get(o.source, {}).get(names[e.j], 0.0))
        rows.append(
            {
                "source": o.source,
                "period": {"label": o.label, "start": o.start.isoformat(), "end": o.end.isoformat()},
                "retailer": names[e.j],
                "observed": e.observed * 100,
                "simulated": simulated,
                "residual_pp": simulated - e.observed * 100,
            }
        )
    return rows


def residuals_at(scenario: Scenario, cal: Calibration, records=None) -> dict:
    """The fit's observations against a run of ``scenario`` at its own N and seed (sampled purchases, the fitted
    offsets): how well a fit made at fewer consumers carries over (docs/model.md property 4). ``records`` are the
    run's step records when it already ran (only observations inside them are compared); else it runs now."""
    prob = fit_problem(scenario, dt.date.fromisoformat(cal.until), drop_unidentified=True)
    if records is None:
        run_sc = with_event_values(scenario, cal.event_values)  # (the fitted recurring effects' sizes)
        m = Market(
            run_sc,
            build_world(run_sc),
            cal.alpha_vector(scenario),
            scenario.seed,
            trend=cal.trend_vector(scenario),
            trend_cut=prob.until,
        )
        records = [m.step() for _ in range(prob.horizon)]
    T = min(len(records), prob.horizon)
    path = FitPath(
        np.array([r.gmv for r in records[:T]]),
        np.array([r.buyers.sum() for r in records[:T]]),
        np.array([r.shoppers for r in records[:T]]),
    )
    inside = [k for k, o in enumerate(prob.observations) if scenario.calendar.step_of(o.end) < T]
    rows = [
        row
        for row, e in zip(observation_rows(prob, path, cal.offsets, steps=T), prob.equations, strict=True)
        if e.obs in inside
    ]
    return {"consumers": scenario.consumers.count, "seed": scenario.seed, "observations": rows}


def _berry(stage: _Stage, theta: np.ndarray, *, good_log: float = 0.05, max_steps: int = 8) -> tuple[np.ndarray, int]:
    """Bring a far start close, where Gauss-Newton's linear model holds, on few consumers (the result is only a
    start). The calibrated alphas solve ln q_j(alpha) = ln q*_j, with q_j = conversion x share_j averaged over
    the observation periods and q*_j its observed counterpart: Berry's (1994) equations, in the log space
    where a logit market is nearly linear. Berry's plain contraction (a unit Jacobian) overshoots here: habit,
    accounts and social ties multiply a share's response to its alpha several times over, and a retailer's
    gain is another's loss; so this is Newton's method with the Jacobian measured by finite differences,
    updated by Broyden, and steps capped at 1 utility unit and halved when the largest log error grows.
    Stops when every ln q_j is within ``good_log`` (5%) of its target: close enough for Gauss-Newton on the
    full problem (trends and offsets included)."""
    obj = stage.obj
    prob = obj.prob
    free = list(prob.free_alpha)
    if not free or prob.conversion is None:
        return theta, 0
    target = np.log(mean_observed(prob)[free] * prob.conversion)
    na = len(free)

    def err(path):
        q = path.period_shares(prob.weights).mean(axis=0)[free] * path.conversion
        return np.log(np.maximum(q, 1e-12)) - target

    steps = 0
    try:
        e = err(stage.evaluate(theta)[1])
        J = np.empty((na, na))
        for k in range(na):
            t2 = theta.copy()
            t2[k] += 2 * FD_STEP
            J[:, k] = (err(stage.evaluate(t2)[1]) - e) / (2 * FD_STEP)
        for steps in range(1, max_steps + 1):  # noqa: B007  (returned: the number of steps taken)
            if np.max(np.abs(e)) < good_log:
                break
            step = -np.linalg.lstsq(J, e, rcond=None)[0]
            step *= min(1.0, 1.0 / max(np.max(np.abs(step)), 1e-12))
            lam = 1.0
            while lam >= 1 / 8:
                trial = theta.copy()
                trial[:na] = np.clip(theta[:na] + lam * step, -ALPHA_LIMIT, ALPHA_LIMIT)
                e_new = err(stage.evaluate(trial)[1])
                d = trial[:na] - theta[:na]
                if d @ d > 0:  # (a zero step: the measured Jacobian was flat; _gauss_newton names why)
                    J = J + np.outer(e_new - e - J @ d, d) / (d @ d)
                if np.max(np.abs(e_new)) < np.max(np.abs(e)):
                    theta, e = trial, e_new
                    break
                lam /= 2
            else:
                break
    except _Exhausted:
        pass
    return theta, steps


def _gauss_newton(
    stage: _Stage,
    theta: np.ndarray,
    J: np.ndarray | None,
    r: np.ndarray,
    path: FitPath,
    tol: float,
    strict: bool = True,
):
    """Gauss-Newton with Broyden updates and backtracking. Returns (theta, J, residuals, path, steps).

    Converged when the Gauss-Newton step would move no equation by ``tol`` points or more (for a square system
    that is every residual under ``tol``; with residual degrees of freedom it is the least-squares optimum, and
    :func:`_settled` also stops where the step would move the fitted shares by less than the simulations' noise
    can confirm).
    When no step along the current direction improves, the Jacobian is measured again by finite differences
    at the current point; if that does not help either, the fit fails naming the worst observation (or, not
    ``strict``, hands back its best point: the coarse stage)."""
    obj = stage.obj

    def jacobian(th, r0):
        """Finite differences, one simulation per parameter; a step that moves some equation by more than
        FD_MAX_PP points (the response is no longer linear: near tipping, shares move tens of points per
        utility unit) is retried at a quarter of its size."""
        out = np.empty((len(r0), len(th)))
        for k in range(len(th)):
            h = FD_STEP if stage.name == "coarse" else FD_STEP_FINE
            for _ in range(3):
                t2 = th.copy()
                t2[k] += h
                d = stage.evaluate(t2)[0] - r0
                if (
                    stage.name == "coarse" or np.max(np.abs(d)) <= FD_MAX_PP
                ):  # the coarse stage's noise needs wide steps
                    break
                h /= 4
            out[:, k] = d / h
        return out

    fresh = J is None
    if J is None:
        J = jacobian(theta, r)
    steps = 0
    while True:
        step = -np.linalg.lstsq(J, r, rcond=None)[0]
        move = J @ step
        _check_moves(obj, theta, J, r, path, tol, stage.n)
        if np.max(np.abs(move)) < tol:
            return theta, J, r, path, steps
        # with residual degrees of freedom: the optimum is where the step would barely move the fitted shares,
        # or by less than the simulations' jumps can confirm (see _settled)
        if obj.prob.dof > 0 and _settled(r, move, tol, stage.n):
            return theta, J, r, path, steps
        lam, accepted = 1.0, False
        while lam >= 1 / 16:
            # a shorter step along a failed direction is tried only while the decrease it promises (by the
            # Jacobian as updated by the failed trials) is one a simulation could confirm; else it is renewed
            if lam < 1:
                promised = r + lam * (J @ step)
                if not _confirmable(float(r @ r - promised @ promised), r, stage.n):
                    break
            trial = _clip(obj, theta + lam * step)
            r_new, path_new = stage.evaluate(trial)
            dth, dr = trial - theta, r_new - r
            if dth @ dth > 0:  # Broyden's rank-one update: the secant condition J dth = dr
                J = J + np.outer(dr - J @ dth, dth) / (dth @ dth)
            if r_new @ r_new < r @ r:
                theta, r, path, accepted = trial, r_new, path_new, True
                break
            lam *= 0.5
        steps += 1
        if not accepted:
            if fresh:
                # A fresh Jacobian and still no step improves: a least-squares optimum, as far as the map's small
                # jumps let anyone tell. With residual degrees of freedom that is the fit (its residuals are the
                # sources' disagreement, reported); with none, every residual must be within the tolerance.
                # A square system stalled within STALL_ACCEPT_PP (or twice the tolerance) is at the noise floor of
                # its size and window (a short window at a few thousand consumers): accepted, its residuals reported.
                worst = np.max(np.abs(r))
                if (
                    not strict
                    or (stage.obj.prob.dof > 0 and worst < NO_FIT_PP)
                    or worst < max(2 * tol, STALL_ACCEPT_PP)
                ):
                    return theta, J, r, path, steps
                raise _no_fit(
                    obj,
                    theta,
                    r,
                    path,
                    stage.n,
                    "no step brings the simulated shares closer (the shares "
                    "respond to attractiveness by jumps: the market tips between states)",
                )
            J, fresh = jacobian(theta, r), True


def _check_moves(obj: _Objective, theta, J: np.ndarray, r: np.ndarray, path: FitPath, tol: float, n: int) -> None:
    """A fit whose residuals are not within the tolerance but whose Jacobian is flat (no fitted parameter moves
    any equation by ``tol`` points per unit) cannot converge: the model cannot move (no shoppers, no purchases,
    shares pinned by something else). Raises the failure, naming the cause; never "converged"."""
    worst = float(np.max(np.abs(r)))
    if worst > max(2 * tol, STALL_ACCEPT_PP) and float(np.max(np.abs(J), initial=0.0)) < tol:
        raise _no_fit(
            obj,
            theta,
            r,
            path,
            n,
            "the simulated shares and conversion do not respond to the fitted "
            f"parameters (none moves any of them by {tol:.2g} points per unit): the model cannot move",
        )


def _too_few_shoppers(prob: FitProblem, path: FitPath, n: int) -> str | None:
    """The cause, in the scenario's own values, when an observation's period had fewer than MIN_SHOPPERS
    simulated shoppers at ``n`` consumers (the shopping rate is too low for any share to mean anything), else
    None. Who shops does not depend on attractiveness, so no fit can change it."""
    sc = prob.scenario
    cal = sc.calendar
    scale = np.array([sc.market_size.at(cal.date_of(t)) / n for t in range(prob.horizon)])
    agents = prob.weights @ (path.shoppers / np.maximum(scale, 1e-300))
    k = int(np.argmin(agents))
    if agents[k] >= MIN_SHOPPERS:
        return None
    o = prob.observations[k]
    buyers = float(prob.weights[k] @ (path.buyers / np.maximum(scale, 1e-300)))
    return (
        f"consumers.shopping_rate {sc.consumers.shopping_rate:g} per {cal.step_days}-day step: the simulated "
        f"market had {agents[k]:.0f} shoppers and {buyers:.0f} purchases in {o.source} {o.label} at {n:,} "
        f"consumers (a share needs at least {MIN_SHOPPERS}), whatever the attractiveness; raise "
        f"consumers.shopping_rate"
    )


def _no_purchases(prob: FitProblem, path: FitPath, alpha_max: float) -> str | None:
    """The cause, in the scenario's own values, when the simulated shoppers (almost) never buy (conversion
    below MIN_CONVERSION at the fit's best point, whose largest attractiveness is ``alpha_max``), else None."""
    conv = path.conversion
    if conv >= MIN_CONVERSION:
        return None
    sc = prob.scenario
    f, b = sc.friction, sc.behaviour
    target = f" against consumers.conversion {prob.conversion:g}" if prob.conversion is not None else ""
    cheapest = min(f.native, f.sso, f.link, f.create) * b.beta_friction
    if cheapest > ALPHA_LIMIT / 4:
        return (
            f"every retailer's friction (native {f.native:g}, sso {f.sso:g}, link {f.link:g}, create {f.create:g} "
            f"utility, times behaviour.beta_friction {b.beta_friction:g}) makes the purchase probability ~0: the "
            f"simulated conversion is {conv:.2g}{target} with attractiveness up to {alpha_max:.3g} (the fit's "
            f"limit is {ALPHA_LIMIT:g}); lower the frictions"
        )
    return (
        f"the simulated shoppers almost never buy (conversion {conv:.2g}{target}) with attractiveness up to "
        f"{alpha_max:.3g}: check the prices (behaviour.beta_price {b.beta_price:g}) and frictions"
    )


def _settled(r: np.ndarray, move: np.ndarray, tol: float, n: int) -> bool:
    """Whether a fit with residual degrees of freedom is at its least-squares optimum, as far as simulations at
    ``n`` consumers can tell: the Gauss-Newton step would move the fitted equations by ``move`` (J @ step,
    points) and lower the sum of squares by |move|^2. Settled when that move is under half the tolerance in
    root-mean-square over the equations; or under the tolerance, and the decrease smaller than 2 sigma |r|,
    the spread that jumps of size sigma (NOISE_PP_SQRT_N / sqrt(n) points per simulated share) put on the
    comparison of two sums of squares: no simulation could confirm such a step. There the residuals are the
    sources' disagreement and the step slides along the flat floor of the sum of squares (measured on the
    bundled fit at 20,000 consumers: 6 more simulations to lower the root-mean-square residual from 0.52 to
    0.51 points)."""
    m, dS = len(r), float(move @ move)
    return dS < m * (tol / 2) ** 2 or (dS < m * tol**2 and not _confirmable(dS, r, n))


def _confirmable(decrease: float, r: np.ndarray, n: int) -> bool:
    """Whether one simulation at ``n`` consumers can confirm that a step lowers the sum of squares of the
    residuals ``r`` (points) by ``decrease``: jumps of sigma = NOISE_PP_SQRT_N / sqrt(n) points on each
    simulated share spread a comparison of two sums of squares by about 2 sigma |r|."""
    return decrease >= 2 * NOISE_PP_SQRT_N / math.sqrt(n) * math.sqrt(float(r @ r))


def _clip(obj: _Objective, theta: np.ndarray) -> np.ndarray:
    na, nt = len(obj.prob.free_alpha), len(obj.prob.free_trend)
    out = theta.copy()
    out[:na] = np.clip(out[:na], -ALPHA_LIMIT, ALPHA_LIMIT)
    out[na : na + nt] = np.clip(out[na : na + nt], -TREND_LIMIT, TREND_LIMIT)
    out[na + nt :] = np.clip(out[na + nt :], -EVENT_LIMIT, EVENT_LIMIT)
    return out


def _no_fit(obj: _Objective, theta, r, path: FitPath, n: int, why: str) -> CalibrationError:
    """One line: the observation (or the conversion) furthest from being met, and why. Where the simulated
    shares jumped between far-apart values across the fit's simulations, that is the reason: the market tips
    (a stable state with the observed shares does not exist for these parameters)."""
    prob = obj.prob
    sc = prob.scenario
    names = sc.retailer_names
    k = int(np.argmax(np.abs(r)))
    na = len(prob.free_alpha)
    at_limit = [names[prob.free_alpha[i]] for i in range(na) if abs(theta[i]) >= ALPHA_LIMIT - 1e-9]
    seen = np.array(obj.seen) if obj.seen else np.zeros((0, len(names)))
    worst = float(np.max(np.abs(r)))
    dead = _too_few_shoppers(prob, path, n) or _no_purchases(prob, path, float(np.max(obj.unpack(theta)[0])))
    if dead:
        why = dead
    elif at_limit:
        why = f"{', '.join(at_limit)} would need an attractiveness beyond +-{ALPHA_LIMIT:g} (unreachable with these frictions)"
    elif worst < 5 * default_tolerance(sc):
        why = (
            f"it gets within {worst:.2f} points but no closer: at {n:,} consumers the simulated shares move by small "
            f"jumps; give more consumers or a larger --tolerance"
        )
    elif len(seen) and np.max(seen.max(axis=0) - seen.min(axis=0)) > TIPPING_SPREAD:
        j = int(np.argmax(seen.max(axis=0) - seen.min(axis=0)))
        b = sc.behaviour
        why = (
            f"the simulated market tips: across the fit's simulations {names[j]}'s share jumped between "
            f"{seen[:, j].min() * 100:.0f}% and {seen[:, j].max() * 100:.0f}%, with no stable state in between "
            f"(social influence {b.beta_social:g}, habit {b.beta_habit:g} and account lock-in reinforce whoever "
            f"leads); with weaker social influence a fit exists"
        )
    if k < len(prob.equations):
        e = prob.equations[k]
        o = prob.observations[e.obs]
        sim = path.period_shares(prob.weights)[e.obs, e.j] * 100
        what = (
            f"observation {o.source} {o.label} {names[e.j]} {e.observed * 100:.1f}% cannot be met "
            f"(closest simulated {sim:.1f}%, residual {r[k]:+.2f} pp)"
        )
    else:
        what = (
            f"the conversion {prob.conversion:.3f} cannot be met (closest simulated {path.conversion:.3f}, "
            f"residual {r[k]:+.2f} pp)"
        )
    return CalibrationError(f"{sc.source}: {what} at {n:,} consumers: {why}")
