"""The market's state and its step (docs/model.md sections 5, 6, 7 and 9), on numpy arrays.

:class:`Market` is the one place the dynamic state lives: last retailer and access per consumer,
accepted logins, social factors, promotions, prices, and per-layer counts of each consumer's
neighbours by last retailer (kept up to date incrementally: only the neighbours of consumers who
switched are touched). The decision rule itself is the pure functions of :mod:`marketsim.engine.choice`.

Every step draws the same random numbers whatever the state (one uniform per consumer: shop?; R+1 per
shopper: which option?; one per consumer: does it leave?; a basket per newcomer), so a scenario and its
counterfactual on the same seed use the same random numbers for the same consumer at the same step
(common random numbers, docs/model.md section 10).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np

from marketsim.engine import choice, events, kernel, login_mix
from marketsim.engine.choice import MIGRATE, NATIVE, NONE, SSO
from marketsim.engine.population import World, build_world, child_seed, relative_baskets, seed_streams, step_stream
from marketsim.runtime.memo import Memo
from marketsim.scenario.core import Scenario

#: Days per year for trends (utility per year, docs/model.md section 4).
DAYS_PER_YEAR = 365.25
#: Burn-in pilot (docs/model.md 12.2): consumers, and its length in expected lifetimes (1 / turnover).
PILOT_CONSUMERS = 20000
PILOT_LIFETIMES = 2.0
MAX_PILOT_STEPS = 5_000
#: How a step is computed: one compiled pass (engine.kernel, the default) or numpy calls (the reference path).
KERNELS = ("compiled", "numpy")


@dataclass(frozen=True)
class StepRecord:
    """The outputs of one step (docs/model.md section 9). Totals are in real units (x market.size / N)."""

    step: int
    shoppers: float
    buyers: np.ndarray  # (R,)
    gmv: np.ndarray  # (R,) currency
    revenue: np.ndarray  # (R,) currency: take_rate or margin x GMV
    accounts_created: np.ndarray  # (R,) new native accounts (created, or migrated after a login removal)
    logins_linked: np.ndarray  # (R,) one-click sign-ups through an accepted provider
    access_lost: np.ndarray  # (R,) consumer accesses lost by events this step
    flows: np.ndarray  # (R+1, R): from last retailer (row R = none) to this step's retailer, buyers
    lost_login_last: np.ndarray  # (R,) consumers who lost a login by an event, by their current last retailer
    newcomers: float  # consumers who left at the end of this step, each replaced by a newcomer (docs/model.md 2)
    expected_gmv: np.ndarray | None  # (R,) GMV expected from the choice probabilities (if Market.track_expected)
    expected_buyers: np.ndarray | None  # (R,) buyers expected from the choice probabilities (idem)

    @property
    def gmv_share(self) -> np.ndarray:
        tot = self.gmv.sum()
        return self.gmv / tot if tot > 0 else np.full_like(self.gmv, np.nan)

    @property
    def buyer_share(self) -> np.ndarray:
        tot = self.buyers.sum()
        return self.buyers / tot if tot > 0 else np.full_like(self.buyers, np.nan)

    @property
    def no_purchase_rate(self) -> float:
        return float(1 - self.buyers.sum() / self.shoppers) if self.shoppers > 0 else math.nan


@dataclass(frozen=True)
class MoveRecord:
    """What a move that changes who is in the market did (docs/model.md 7): an ``entry``, an ``exit`` or an
    ``acquisition`` at ``step``; ``moved``: shoppers whose habit moved to ``retailer`` (the acquirer) from
    ``other`` (the target); ``lost``: shoppers who lost their habit (the target's customers not retained, or an
    exiting retailer's customers). Real units (x market.size / N)."""

    step: int
    kind: str
    retailer: str
    other: str | None = None
    moved: float = 0.0
    lost: float = 0.0


@dataclass(frozen=True)
class LoginLoss:
    """A login removal (docs/model.md 7) at ``step``: ``retailer`` stopped accepting ``provider``. ``customers``:
    the retailer's customers (c_i = retailer) whose login it was, out of ``base`` customers; ``accounts``: every
    consumer whose access it was (former customers too). Real units (x market.size / N); ``stated``: the
    retailer's stated sso_share of the provider (None if not stated)."""

    step: int
    retailer: str
    provider: str
    customers: float
    base: float
    accounts: float
    stated: float | None


@dataclass(frozen=True)
class _Firing:
    """One firing of a recurring effect in days since the calendar start, [lo, hi), and what it does."""

    lo: int
    hi: int
    retailer: int  # -1: market-wide
    audience: int  # -1: everyone
    utility: float
    price: float | None
    shop_factor: float
    event: object


@dataclass(frozen=True)
class ConsumerState:
    """The consumers' dynamic state at one moment (arrays are copies): where each last bought, its access at
    every retailer, its relative basket and login preference (these two change when a newcomer arrives)."""

    last: np.ndarray
    access: np.ndarray
    basket: np.ndarray
    login_pref: np.ndarray
    route_weight: np.ndarray | None = None  # (1 + P, R) the sign-up route weights in force (engine.login_mix)


class Market:
    """A running market: a :class:`World` plus the state that changes. Use :meth:`step`."""

    def __init__(
        self,
        scenario: Scenario,
        world: World,
        alpha: np.ndarray,
        seed: int,
        *,
        trend: np.ndarray | None = None,
        track_expected: bool = False,
        settle: bool = True,
        start: ConsumerState | None = None,
        pilot: PilotState | None = None,
        trend_cut: dt.date | None = None,
        kernel: str = "compiled",
    ):
        """``alpha``: attractiveness per retailer at the calendar start; ``trend``: utility per year added from
        the start (default: the scenario's trends, 0 where a trend is 'calibrate'). The market settles (burn-in
        pilot and warm-up, docs/model.md 12.2) unless ``settle`` is False or it starts from ``start``, the state
        of another market of the same World (e.g. a settled one: :meth:`consumer_state`). ``pilot`` is a burn-in
        pilot already run for these values and this seed (:func:`run_pilot`); by default the market runs its own.
        ``trend_cut``: the fit cut-off after which trends follow the scenario's ``forecast.trend_after`` (default:
        the scenario's own cut-off, :meth:`Scenario.fit_cutoff`; a fit passes its own). ``kernel``: how a step is
        computed, ``"compiled"`` (:mod:`marketsim.engine.kernel`) or ``"numpy"`` (the reference path); both give
        the same choices and state from the same seed."""
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self.kernel = kernel
        if len(alpha) != len(scenario.retailers) or not np.all(np.isfinite(alpha)):
            raise ValueError(f"alpha must be {len(scenario.retailers)} finite numbers, got {alpha!r}")
        trend = np.array([r.trend or 0.0 for r in scenario.retailers]) if trend is None else np.asarray(trend, float)
        if trend.shape != (len(scenario.retailers),) or not np.all(np.isfinite(trend)):
            raise ValueError(f"trend must be {len(scenario.retailers)} finite numbers, got {trend!r}")
        self.scenario, self.world = scenario, world
        self.n = world.n
        self.retailer_index = {r.name: j for j, r in enumerate(scenario.retailers)}
        self.provider_index = {p.name: k for k, p in enumerate(scenario.providers)}
        R, P = len(scenario.retailers), len(scenario.providers)
        self.R, self.P = R, P
        self.alpha = np.asarray(alpha, dtype=np.float64).copy()
        self.trend = trend.copy()
        self.forecast = scenario.forecast
        cut = scenario.fit_cutoff() if trend_cut is None else trend_cut
        #: the cut-off in years since the calendar start (docs/model.md section 4, "Trends beyond the data")
        self.trend_cut_years = max((cut - scenario.calendar.start).days, 0) / DAYS_PER_YEAR
        self.turnover = scenario.consumers.turnover
        self.basket = world.basket.copy()  # relative baskets; newcomers draw fresh ones (the World is shared)
        self.track_expected = track_expected  # also report purchases in expectation (calibration uses them)
        self.price = np.array([r.price_index for r in scenario.retailers])
        self.revenue_rate = np.array([r.revenue_rate for r in scenario.retailers])
        self.accepts = np.zeros((P, R), dtype=bool)
        for j, r in enumerate(scenario.retailers):
            for p in r.logins:
                self.accepts[self.provider_index[p], j] = True
        self.login_pref = world.login_pref.copy()  # newcomers draw their own (the World is shared)
        self.holds_bits = choice.provider_bits(world.holds)
        # route_weight[r, j]: how likely a one-click sign-up at j takes route r (row 0 native, row 1 + p provider p)
        # among the routes the consumer can take, solved so that j keeps its stated login mix (engine.login_mix,
        # docs/model.md 12.4). A consumer's login_pref (a uniform) picks by inverse CDF. Until the burn-in pilot
        # measures how routes keep customers, the weights give the stated mix among sign-ups of this World's
        # holding patterns; a settled market takes the pilot's (every market of one run: the same weights).
        self.route_weight, self.login_shortfalls, self.login_mix_expected = self._sign_up_weights()
        self.login_losses: list[LoginLoss] = []
        self._tables: tuple | None = None  # friction lookup tables; rebuilt after an event changes logins
        self._bits: np.ndarray | None = None  # accepted logins as bits per retailer (idem)
        self.migrate_cost = np.full(R, np.inf)
        self.social_factor = np.ones((len(world.layers), R))
        self.promotions: list[tuple[int, int, float, int | None]] = []
        self.last = world.last0.copy()
        self.access = world.access0.copy()
        self.lost_login = np.zeros(self.n, dtype=bool)
        self._lost_index: np.ndarray | None = None
        self.pending_access_lost = np.zeros(R, dtype=np.int64)
        self.counts = [self._full_counts(layer.graph) for layer in world.layers]
        self.rng = np.random.default_rng(seed_streams(seed)["dynamics"])
        self.seed = seed
        self.t = 0
        # who is in the market (docs/model.md 4), moves of alpha, the market-wide shopping factor, and what the
        # moves that change who is in the market did (events change them)
        self.available = np.array([not r.enters_later for r in scenario.retailers])
        self.alpha_moves: list[tuple[int, float, int, int | None]] = []  # (j, utility, from step, over days)
        self.shop_factor = 1.0
        self.moves: list[MoveRecord] = []
        self._set_timeline(scenario)
        self.last_record: StepRecord | None = None
        self.warmup_records: list[StepRecord] = []
        self._purchases: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.fired: list = []  # events applied so far
        self.pilot_steps = 0
        if start is not None:
            self.last, self.access = start.last.copy(), start.access.copy()
            self.basket, self.login_pref = start.basket.copy(), start.login_pref.copy()
            if start.route_weight is not None:
                self.route_weight = start.route_weight.copy()
            self.counts = self.recount()
        elif settle:
            if self.turnover > 0:
                if pilot is None:
                    pilot = run_pilot(scenario, self.alpha, self.trend, seed, self.n, kernel=kernel)
                self.adopt_pilot_state(pilot, seed)
            if scenario.calendar.warmup:
                self.warm_up(scenario.calendar.warmup, seed)

    def _sign_up_weights(self) -> tuple[np.ndarray, list[login_mix.Shortfall], np.ndarray]:
        """Route weights that give the stated mix among sign-ups with this World's holding patterns (every
        consumer counted once, each account kept alike): the weights before a burn-in pilot measures better."""
        pats, counts = np.unique(self.holds_bits, return_counts=True)
        ones = np.ones((len(pats), 2))
        ms = [login_mix.Measured(pats, counts.astype(np.float64), ones) for _ in range(self.R)]
        return login_mix.solve_market(self.scenario, self.provider_index, self.accepts, ms)

    def friction_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The friction lookup tables for the current logins and migration offers (cached)."""
        if self._tables is None:
            f = self.scenario.friction
            self._tables = choice.friction_tables(
                self.accepts,
                f_native=f.native,
                f_sso=f.sso,
                f_link=f.link,
                f_create=f.create,
                f_migrate=self.migrate_cost,
            )
        return self._tables

    def logins_changed(self) -> None:
        """Call after changing ``accepts`` or ``migrate_cost`` (events do): the friction tables are rebuilt."""
        self._tables = None
        self._bits = None

    def consumer_state(self) -> ConsumerState:
        """A copy of the consumers' dynamic state (to start another market from it)."""
        return ConsumerState(
            self.last.copy(), self.access.copy(), self.basket.copy(), self.login_pref.copy(), self.route_weight.copy()
        )

    # --- state helpers ------------------------------------------------------
    def _full_counts(self, g) -> np.ndarray:
        """counts[v, j] = number of v's neighbours whose last retailer is j (one compiled pass over the CSR)."""
        return kernel.neighbour_counts(g.indptr, g.indices, self.last, self.R)

    def recount(self) -> list[np.ndarray]:
        """Neighbour counts recomputed from scratch (the incremental ones must equal these)."""
        return [self._full_counts(layer.graph) for layer in self.world.layers]

    def lost_index(self) -> np.ndarray:
        """Indices of the consumers who lost a login by an event (cached until the next removal)."""
        if self._lost_index is None:
            self._lost_index = np.flatnonzero(self.lost_login)
        return self._lost_index

    def forget_lost_index(self) -> None:
        self._lost_index = None

    def set_social_factor(self, layer: str, retailer: str, factor: float) -> None:
        for li, lay in enumerate(self.world.layers):
            if lay.name == layer:
                self.social_factor[li, self.retailer_index[retailer]] = factor

    def social_exposure(self, idx: np.ndarray) -> np.ndarray:
        """S[i, j] for consumers ``idx`` (docs/model.md section 3)."""
        S = np.zeros((len(idx), self.R), dtype=np.float32)
        for li, (lay, cnt) in enumerate(zip(self.world.layers, self.counts, strict=True)):
            if lay.weight == 0:
                continue
            w = (lay.weight * self.social_factor[li]).astype(np.float32)
            S += np.take(cnt, idx, axis=0).astype(np.float32) * (lay.inv_degree[idx, None] * w[None, :])
        return S

    def link_route(self, who: np.ndarray, retailer: np.ndarray) -> np.ndarray:
        """The route by which consumers ``who`` open an account at ``retailer`` in one click: -1 for a native
        account, else the provider index; among native and the providers each holds that the retailer accepts,
        drawn in proportion to ``route_weight`` by the consumer's ``login_pref`` uniform (docs/model.md 12.4;
        every consumer given must hold at least one accepted provider)."""
        can = np.concatenate(
            [np.ones((len(who), 1), dtype=bool), self.world.holds[who] & self.accepts[:, retailer].T], axis=1
        )
        w = np.where(can, self.route_weight[:, retailer].T, 0.0)
        cum = np.cumsum(w, axis=1)
        target = self.login_pref[who].astype(np.float64)[:, None] * cum[:, -1:]
        return np.minimum((cum <= target).sum(axis=1), self.P) - 1

    def alpha_at(self, t: int) -> np.ndarray:
        """alpha_j(t) = alpha_j + trend_j x years since the calendar start (docs/model.md section 4), plus the
        attractiveness changes of events so far (each at once, or linearly over its days); the burn-in uses
        t = 0. After the fit cut-off the years of trend follow ``forecast.trend_after``
        (:meth:`marketsim.scenario.core.Forecast.trend_years`: linear, hold or damped)."""
        sd = self.scenario.calendar.step_days
        years = self.forecast.trend_years(max(t, 0) * sd / DAYS_PER_YEAR, self.trend_cut_years)
        a = self.alpha + self.trend * years
        if self.alpha_moves:
            a = a.copy()
            for j, u, s, days in self.alpha_moves:
                if t >= s:
                    a[j] += u if days is None else u * min(1.0, (t - s + 1) * sd / days)
        return a

    def scale_at(self, t: int) -> float:
        """Real shoppers per agent at step t: market.size(date) / N (docs/model.md section 2)."""
        return self.scenario.market_size.at(self.scenario.calendar.date_of(max(t, 0))) / self.n

    def basket_mean_at(self, t: int) -> float:
        """Mean spend per order at step t, in the market's currency."""
        return self.scenario.consumers.basket.mean.at(self.scenario.calendar.date_of(max(t, 0)))

    def _update_counts(self, who: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        """Neighbour counts after consumers ``who`` changed last retailer from ``old`` to ``new`` (-1 = none)."""
        R = self.R
        for lay, cnt in zip(self.world.layers, self.counts, strict=True):
            g = lay.graph
            starts, ends = g.indptr[who], g.indptr[who + 1]
            lens = ends - starts
            tot = int(lens.sum())
            if tot == 0:
                continue
            offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
            nb = g.indices[offs + np.arange(tot)].astype(np.int64)
            flat = cnt.reshape(-1)
            o, w = np.repeat(old, lens), np.repeat(new, lens)
            has_old, has_new = o >= 0, w >= 0
            keys = np.concatenate([nb[has_old] * R + o[has_old], nb[has_new] * R + w[has_new]])
            signs = np.ones(len(keys), dtype=np.int32)
            signs[: int(has_old.sum())] = -1
            np.add.at(flat, keys, signs)

    # --- the step -----------------------------------------------------------
    def step(self) -> StepRecord:
        """Apply this step's events, then one synchronous round of choices; returns the step's outputs."""
        t = self.t
        for ev in self.schedule.get(t, ()):
            for act in ev.actions():
                if getattr(act, "revokes_logins", False):
                    self._record_login_loss(act, t)
                events.apply(self, act, t)
            self.fired.append(ev)
        self.fired.extend(self._first_firing.get(t, ()))  # recurring effects: listed from their first firing
        self.promotions = [p for p in self.promotions if p[3] is None or t < p[3]]
        rec = self._shop(self.rng)
        self.last_record = rec
        self.t += 1
        return rec

    def _record_login_loss(self, act, t: int) -> None:
        """Before a login removal: how many of the retailer's customers, and of all consumers, log in there
        through the provider (:class:`LoginLoss`)."""
        j, p = self.retailer_index[act.retailer], self.provider_index[act.provider]
        had = self.access[:, j] == SSO + p
        cust = self.last == j
        scale = self.scale_at(t)
        stated = dict(self.scenario.retailers[j].sso_share).get(act.provider)
        self.login_losses.append(
            LoginLoss(
                t,
                act.retailer,
                act.provider,
                float((had & cust).sum()) * scale,
                float(cust.sum()) * scale,
                float(had.sum()) * scale,
                None if stated is None else float(stated),
            )
        )

    def fork(self, scenario: Scenario) -> Market:
        """A copy of this market, from its current step on, that follows ``scenario``'s events instead (the same
        World, values and random stream state). A scenario and its counterfactual are identical until the first
        step where their events differ, so a projection runs that common part once and forks there; the fork
        is exactly the market a fresh run of ``scenario`` would have at this step (the test suite checks)."""
        keep = {id(self.world): self.world, id(self.scenario): self.scenario, id(self.warmup_records): []}
        m = copy.deepcopy(self, memo=keep)
        m.scenario = scenario
        m._set_timeline(scenario)
        return m

    def _set_timeline(self, scenario: Scenario) -> None:
        """The one-off events by step, and every firing of the recurring effects (docs/model.md 7)."""
        self.schedule: dict[int, list] = {}
        self.firings: list[_Firing] = []
        self._first_firing: dict[int, list] = {}
        cal = scenario.calendar
        for ev in scenario.events:
            if not ev.recurring:
                self.schedule.setdefault(ev.step, []).append(ev)
                continue
            self._first_firing.setdefault(ev.step, []).append(ev)
            w = ev.action.window()
            j = -1 if w.retailer is None else self.retailer_index[w.retailer]
            aud = -1 if w.audience is None else self.provider_index[w.audience]
            for first, last in ev.firings(cal):
                lo, hi = (first - cal.start).days, (last - cal.start).days + 1
                self.firings.append(_Firing(lo, hi, j, aud, w.utility, w.price, w.shop_factor, ev))

    def firings_at(self, t: int) -> list[tuple[float, float, _Firing]]:
        """The recurring effects on during step ``t``: (first day, end day) within the step, and the firing."""
        sd = self.scenario.calendar.step_days
        a = t * sd
        out = []
        for f in self.firings:
            lo, hi = max(f.lo - a, 0), min(f.hi - a, sd)
            if hi > lo and t >= 0:
                out.append((float(lo), float(hi), f))
        return out

    # --- what events do (MarketState) -----------------------------------------
    def enter(self, retailer: str) -> None:
        j = self.retailer_index[retailer]
        self.available[j] = True
        self.moves.append(MoveRecord(self.t, "entry", retailer))

    def leave(self, retailer: str, step: int, record: bool = True) -> None:
        j = self.retailer_index[retailer]
        self.available[j] = False
        who = np.flatnonzero(self.last == j)
        if len(who):
            self.last[who] = -1
            self._update_counts(who, np.full(len(who), j, np.int64), np.full(len(who), -1, np.int64))
        had = self.access[:, j] != NONE
        self.pending_access_lost[j] += int(had.sum())
        self.access[:, j] = NONE
        if record:
            self.moves.append(MoveRecord(step, "exit", retailer, lost=len(who) * self.scale_at(step)))

    def acquire(self, acquirer: str, target: str, retention: float, keep_brand: bool, step: int) -> None:
        ja, jb = self.retailer_index[acquirer], self.retailer_index[target]
        u = step_stream(seed_streams(self.seed)["events"], max(step, 0)).random(self.n)
        cust = np.flatnonzero(self.last == jb)
        kept = u[cust] < retention
        moved, lost = cust[kept], cust[~kept]
        # access carries over where the retained customer has none at the acquirer: the same single sign-on
        # where the acquirer accepts it, else a native account (the target's account, or a migration offer,
        # becomes an account at the acquirer); no access stays no access
        free = moved[self.access[moved, ja] == NONE]
        ab = self.access[free, jb].astype(np.int64)
        p = np.clip(ab - SSO, 0, self.P - 1)
        sso_ok = (ab >= SSO) & self.accepts[p, ja]
        self.access[free, ja] = np.where(
            sso_ok, ab, np.where((ab == NATIVE) | (ab == MIGRATE) | (ab >= SSO), NATIVE, NONE)
        )
        self.logins_changed()
        self.last[moved] = ja
        self.last[lost] = -1
        if len(cust):
            new = np.where(kept, ja, -1).astype(np.int64)
            self._update_counts(cust, np.full(len(cust), jb, np.int64), new)
        scale = self.scale_at(step)
        self.moves.append(MoveRecord(step, "acquisition", acquirer, target, len(moved) * scale, len(lost) * scale))
        if not keep_brand:
            self.leave(target, step, record=False)

    def shift_attractiveness(self, retailer: str, utility: float, step: int, days: int | None) -> None:
        self.alpha_moves.append((self.retailer_index[retailer], utility, step, days))

    def set_shopping_factor(self, factor: float) -> None:
        self.shop_factor = factor

    def adopt_pilot_state(self, pilot: PilotState, seed: int) -> None:
        """Start from the stationary state of the event-free market (docs/model.md 12.2): each consumer here
        takes the last retailer and access of a random consumer of the burn-in pilot (:func:`run_pilot`) with the
        same identity accounts (the state's distribution given the accounts is what the pilot learned; ties
        between friends are then restored by the warm-up at full size). Consumers whose accounts no pilot
        consumer has keep their initial draw."""
        bits = np.int64(1) << np.arange(self.P, dtype=np.int64)
        kp = pilot.world.holds.astype(np.int64) @ bits
        kh = self.world.holds.astype(np.int64) @ bits
        order = np.argsort(kp, kind="stable")
        lo, hi = np.searchsorted(kp[order], kh, "left"), np.searchsorted(kp[order], kh, "right")
        found = hi > lo
        u = np.random.default_rng(seed_streams(seed)["pilot"]).random(self.n)
        src = order[np.minimum(lo + (u * (hi - lo)).astype(np.int64), len(order) - 1)]
        self.last[found] = pilot.state.last[src[found]]
        self.access[found] = pilot.state.access[src[found]]
        self.counts = self.recount()
        self.pilot_steps = pilot.steps
        if pilot.state.route_weight is not None:  # the weights solved on the pilot (engine.login_mix)
            self.route_weight = pilot.state.route_weight.copy()
            self.login_shortfalls = list(pilot.shortfalls)
            if pilot.mix is not None:
                self.login_mix_expected = pilot.mix.copy()

    def warm_up(self, steps: int, seed: int) -> None:
        """Run ``steps`` unreported steps before step 0 (no events), from their own random stream, so that
        habits, accounts and social counts settle from the initial draw. Step 0 starts from the result."""
        rng = np.random.default_rng(seed_streams(seed)["warmup"])
        t0 = self.t
        self.warmup_records = []
        for k in range(steps):
            self.t = k - steps  # negative: the burn-in runs at the calendar start's values
            self.warmup_records.append(self._shop(rng))
        self.t = t0
        self.pending_access_lost[:] = 0

    def _draw(self, rng: np.random.Generator) -> _Draws:
        """The step's random numbers (:func:`draw_step`), with this step's shopping rate: the scenario's, times a
        market-wide factor and the factors of the recurring effects on each consumer's day (docs/model.md 7)."""
        sc, t = self.scenario, self.t
        on = self.firings_at(t)
        if not on and self.shop_factor == 1.0:
            return _STEP_DRAWS.draw(
                rng, self.n, self.R, sc.consumers.shopping_rate, self.turnover, sc.consumers.basket.sigma
            )
        thresh = np.full(self.n, sc.consumers.shopping_rate * self.shop_factor)
        inside: list[np.ndarray] = []
        if on:  # each consumer's day within the step, from a stream of its own for this step
            day = step_stream(seed_streams(self.seed)["days"], t).random(self.n) * sc.calendar.step_days
            inside = [(day >= lo) & (day < hi) for lo, hi, _ in on]
            for (_, _, f), w in zip(on, inside, strict=True):
                if f.shop_factor != 1.0:
                    thresh[w] *= f.shop_factor
        d = draw_step(rng, self.n, self.R, thresh, self.turnover, sc.consumers.basket.sigma)
        return dataclasses.replace(d, on=on, inside=inside)

    def run_quiet(self, draws: QuietDraws) -> None:
        """Run the steps of ``draws`` (:func:`pilot_inputs`) unrecorded, as the burn-in pilot does: no events, no
        promotions, at the calendar start's values (t < 0). The compiled path calls :func:`kernel.shop` once a step
        with the same arguments but the step's slice of the random numbers (a loop inside compiled code would save
        about 2 ms a pilot, and add a second to the first compilation on a machine)."""
        if self.fired or self.promotions or self.alpha_moves or self.shop_factor != 1.0:  # (no event fires at t < 0)
            raise ValueError("quiet steps run only before any event (the burn-in pilot)")
        steps = len(draws.k_off) - 1
        if self.kernel == "numpy":
            for k in range(steps):
                self.t = k - steps
                self._shop_numpy(draws.step(k))
            return
        self.t = -1
        R = self.R
        promo, lost = np.zeros((0, R), np.float32), np.zeros(0, np.int64)
        pick = np.empty(len(draws.idx), np.int64)
        counts, sums = np.zeros((4, R), np.int64), np.zeros((3, R))  # (not read)
        # kernel.shop's counters in its order: buyers, gmv, flows, created, linked, lost_last, expected gmv, buyers
        sinks = (counts[0], sums[0], np.zeros((R + 1, R), np.int64), counts[1], counts[2], counts[3], sums[1], sums[2])
        state = self._kernel_state(-1)
        k_off, m_off, d = draws.k_off, draws.m_off, draws
        for k in range(steps):
            a, b, c, e = k_off[k], k_off[k + 1], m_off[k], m_off[k + 1]
            step = (d.idx[a:b], d.g[a:b], promo, False, lost, d.gone[c:e], d.gone_basket[c:e], d.gone_pref[c:e])
            kernel.shop(*step, pick[a:b], *sinks, *state)

    def _kernel_state(self, t: int) -> tuple:
        """What the compiled pass reads and updates at step ``t``, in the order of :func:`kernel.shop`'s common
        block: the consumers' state, the friction tables, the base utilities and betas (float32), who is in the
        market, the social layers (:meth:`_layer_pack`) and the sign-up route weights."""
        b = self.scenario.behaviour
        F, path = self.friction_tables()
        return (
            self.access,
            self.last,
            self.basket,
            self.login_pref,
            self.holds_bits,
            self._accept_bits(),
            F.astype(np.float32),
            path,
            self._base_utility(t),
            np.float32(b.beta_social),
            np.float32(b.beta_friction),
            np.float32(b.beta_habit),
            self.available,
            *self._layer_pack(),
            self.route_weight,
        )

    def _base_utility(self, t: int) -> np.ndarray:
        """float32 (R,) alpha_j(t) - beta_price ln P_j, in the float32 arithmetic of choice.utilities."""
        return self.alpha_at(t).astype(np.float32) - self.scenario.behaviour.beta_price * np.log(self.price).astype(
            np.float32
        )

    def _promotions(self, d: _Draws) -> np.ndarray | float:
        """(k, R) utility of promotions and recurring effects for the step's shoppers, or 0.0 where none is on."""
        b, R, idx = self.scenario.behaviour, self.R, d.idx
        promo: np.ndarray | float = 0.0
        if self.promotions:
            promo = np.zeros((len(idx), R), dtype=np.float32)
            for j, aud, util, _ in self.promotions:
                promo[:, j] += util if aud < 0 else util * self.world.holds[idx, aud]
        if d.on:  # recurring effects, for the shoppers of the days they cover
            extra = np.zeros((len(idx), R), dtype=np.float32)
            for (_, _, f), w in zip(d.on, d.inside, strict=True):
                if f.retailer < 0:
                    continue
                wi = w[idx]
                if f.audience >= 0:
                    wi = wi & self.world.holds[idx, f.audience]
                u = f.utility
                if f.price is not None:  # the sale price instead of the retailer's current price
                    u += -b.beta_price * (math.log(f.price) - math.log(self.price[f.retailer]))
                extra[:, f.retailer] += np.float32(u) * wi
            promo = promo + extra
        return promo

    def _shop(self, rng: np.random.Generator) -> StepRecord:
        """One synchronous round of choices and its outputs, by the compiled pass (:mod:`marketsim.engine.kernel`)
        or, for ``kernel="numpy"``, by the reference numpy path; both from the same draws, to the same state."""
        d = self._draw(rng)
        if self.kernel == "numpy":
            return self._shop_numpy(d)
        return self._shop_compiled(d)

    def _layer_pack(self) -> tuple:
        """The social layers as the compiled pass takes them: tuples of arrays (a placeholder when there are
        none), the weights w_p x social factor as float32 (L, R), and which layers count."""
        L, R = len(self.world.layers), self.R
        if L == 0:
            ph_i, ph_n = np.zeros(self.n + 1, np.int64), np.zeros(0, np.int32)
            ph_c, ph_d = np.zeros((0, R), np.int32), np.zeros(0, np.float32)
            return (ph_i,), (ph_n,), (ph_c,), (ph_d,), np.zeros((1, R), np.float32), np.zeros(1, bool), 0
        lays = self.world.layers
        w = np.stack([(lay.weight * self.social_factor[li]).astype(np.float32) for li, lay in enumerate(lays)])
        on = np.array([lay.weight != 0 for lay in lays]) & bool(self.scenario.behaviour.beta_social)
        return (
            tuple(lay.graph.indptr for lay in lays),
            tuple(lay.graph.indices for lay in lays),
            tuple(self.counts),
            tuple(lay.inv_degree for lay in lays),
            w,
            on,
            L,
        )

    def _shop_compiled(self, d: _Draws) -> StepRecord:
        t, R = self.t, self.R
        idx = d.idx
        k = len(idx)
        promo = self._promotions(d)
        promo_arr = promo if isinstance(promo, np.ndarray) else np.zeros((0, R), np.float32)
        pick = np.empty(k, dtype=np.int64)
        buyers, created, linked, lost_last = (np.zeros(R, np.int64) for _ in range(4))
        gmv, exp_gmv, exp_buyers = np.zeros(R), np.zeros(R), np.zeros(R)
        flows = np.zeros((R + 1, R), np.int64)
        lost = self.lost_index()
        step = (idx, d.g, np.ascontiguousarray(promo_arr, dtype=np.float32), self.track_expected, lost)
        leave = (d.gone, d.gone_basket, d.gone_pref)
        out = (pick, buyers, gmv, flows, created, linked, lost_last, exp_gmv, exp_buyers)
        args: tuple = (*step, *leave, *out, *self._kernel_state(t))  # kernel.shop's order
        kernel.shop(*args)
        self._purchases = (idx, pick)
        if len(d.gone) and len(lost) and self.lost_login[d.gone].any():
            self.lost_login[d.gone] = False
            self.forget_lost_index()
        scale = self.scale_at(t)
        money = self.basket_mean_at(t) * scale
        gmv = gmv * money
        rec = StepRecord(
            step=t,
            shoppers=k * scale,
            buyers=buyers * scale,
            gmv=gmv,
            revenue=gmv * self.revenue_rate,
            accounts_created=created * scale,
            logins_linked=linked * scale,
            access_lost=self.pending_access_lost * scale,
            flows=flows * scale,
            lost_login_last=lost_last * scale if len(lost) else np.zeros(R),
            newcomers=len(d.gone) * scale,
            expected_gmv=exp_gmv * money if self.track_expected else None,
            expected_buyers=exp_buyers * scale if self.track_expected else None,
        )
        self.pending_access_lost = np.zeros(R, dtype=np.int64)
        return rec

    def _accept_bits(self) -> np.ndarray:
        """(R,) uint64: the providers each retailer accepts, as bits (cached with the friction tables)."""
        if self._bits is None:
            self._bits = choice.provider_bits(self.accepts.T)
        return self._bits

    @property
    def last_purchases(self) -> tuple[np.ndarray, np.ndarray]:
        """This step's purchases, read-only: (consumer, retailer) of each."""
        idx, pick = self._purchases
        bought = pick >= 0
        return idx[bought], pick[bought]

    def _shop_numpy(self, d: _Draws) -> StepRecord:
        sc, t, R = self.scenario, self.t, self.R
        idx = d.idx
        b = sc.behaviour
        F, path = choice.friction_lookup(
            self.friction_tables(), self.access[idx], choice.can_link(self.holds_bits[idx], self.accepts)
        )
        last = self.last[idx].astype(np.int64)
        habit = (last[:, None] == np.arange(R)[None, :]).astype(np.float32)
        promo = self._promotions(d)
        social = self.social_exposure(idx) if b.beta_social else 0.0
        V = choice.utilities(
            self.alpha_at(t).astype(np.float32),
            np.log(self.price).astype(np.float32),
            habit,
            social,
            F.astype(np.float32),
            promo,
            beta_price=b.beta_price,
            beta_social=b.beta_social,
            beta_habit=b.beta_habit,
            beta_friction=b.beta_friction,
        )
        if not self.available.all():  # retailers not (or no longer) in the market are no option
            V[:, ~self.available] = -np.inf
        pick = choice.gumbel_pick(V, d.g)
        prob = choice.logit_probabilities(V) if self.track_expected else None

        bought = pick >= 0
        bi, bj = idx[bought], pick[bought]
        self._purchases = (idx, pick)
        bpath = path[np.flatnonzero(bought), bj]
        scale = self.scale_at(t)
        money = self.basket_mean_at(t) * scale  # currency per unit of relative basket, in real units

        # counters: a one-click sign-up that takes the native route opens a native account
        route = np.full(len(bj), -2, dtype=np.int64)
        one_click = np.flatnonzero(bpath == choice.PATH_LINK)
        if len(one_click):
            route[one_click] = self.link_route(bi[one_click], bj[one_click])
        new_native = (bpath == choice.PATH_CREATE) | (bpath == choice.PATH_MIGRATE) | (route == -1)
        linked = route >= 0
        accounts_created = np.bincount(bj[new_native], minlength=R) * scale
        logins_linked = np.bincount(bj[linked], minlength=R) * scale
        from_row = np.where(last[bought] >= 0, last[bought], R)
        flows = np.bincount(from_row * R + bj, minlength=(R + 1) * R).reshape(R + 1, R) * scale
        gmv = np.bincount(bj, weights=self.basket[bi], minlength=R) * money

        # synchronous update: access, then last retailer, then neighbour counts
        if linked.any():
            self.access[bi[linked], bj[linked]] = SSO + route[linked]
        self.access[bi[new_native], bj[new_native]] = NATIVE
        switched = self.last[bi] != bj
        who, old, new = bi[switched], self.last[bi[switched]].astype(np.int64), bj[switched]
        self.last[who] = new

        lost = self.lost_index()
        lost_last = (
            np.bincount(self.last[lost][self.last[lost] >= 0], minlength=R) * scale if len(lost) else np.zeros(R)
        )
        expected_gmv = expected_buyers = None
        if prob is not None:  # (tracking expected values)
            expected_gmv = (self.basket[idx] @ prob[:, 1:]) * money
            expected_buyers = prob[:, 1:].sum(axis=0, dtype=np.float64) * scale
        gone, gone_last = self._turnover(d)
        if self.counts and (len(who) or len(gone)):  # one pass for purchases and departures (additive)
            self._update_counts(
                np.concatenate([who, gone]),
                np.concatenate([old, gone_last]),
                np.concatenate([new, np.full(len(gone), -1, dtype=np.int64)]),
            )
        rec = StepRecord(
            step=t,
            shoppers=len(idx) * scale,
            buyers=np.bincount(bj, minlength=R) * scale,
            gmv=gmv,
            revenue=gmv * self.revenue_rate,
            accounts_created=accounts_created,
            logins_linked=logins_linked,
            access_lost=self.pending_access_lost * scale,
            flows=flows,
            lost_login_last=lost_last[:R],
            newcomers=len(gone) * scale,
            expected_gmv=expected_gmv,
            expected_buyers=expected_buyers,
        )
        self.pending_access_lost = np.zeros(R, dtype=np.int64)
        return rec

    def _turnover(self, d: _Draws) -> tuple[np.ndarray, np.ndarray]:
        """Each consumer leaves with probability ``turnover`` at the end of the step; a newcomer takes the slot
        with its identity accounts and social ties, a fresh basket, no last retailer and no access anywhere
        (docs/model.md section 2). Returns who left and their last retailer (the caller updates neighbour counts)."""
        gone = d.gone
        if not len(gone):
            return gone, gone
        self.basket[gone] = d.gone_basket
        self.login_pref[gone] = d.gone_pref
        old = self.last[gone].astype(np.int64)
        self.last[gone] = -1
        self.access[gone] = NONE
        if self.lost_login[gone].any():
            self.lost_login[gone] = False
            self.forget_lost_index()
        return gone, old


def draw_step(
    rng: np.random.Generator, n: int, R: int, thresh: float | np.ndarray, turnover: float, sigma: float
) -> _Draws:
    """One step's random numbers in the documented order (docs/model.md 12.8): one float32 uniform per consumer
    (shop? below ``thresh``), R+1 per shopper (which option?), one per consumer (leave? below ``turnover``), then
    a basket (lognormal ``sigma``) and a route uniform per newcomer. None of the counts depends on the market's
    state, so a scenario and its counterfactual draw the same numbers for the same consumers (common random
    numbers), and every numerical path consumes the same numbers."""
    idx = np.flatnonzero(rng.random(n, dtype=np.float32) < thresh)
    g = choice.gumbel(rng.random((len(idx), R + 1), dtype=np.float32))
    gone, gone_basket, gone_pref = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.float32)
    if turnover > 0:
        gone = np.flatnonzero(rng.random(n, dtype=np.float32) < turnover)
        if len(gone):
            gone_basket = relative_baskets(rng, sigma, len(gone))
            gone_pref = rng.random(len(gone), dtype=np.float32)
    for a in (idx, g, gone, gone_basket, gone_pref):  # read-only: shared by the memo, and one kind of array
        a.flags.writeable = False  # for the compiled step (one compilation of kernel.shop, not one per kind)
    return _Draws(idx, g, [], [], gone, gone_basket, gone_pref)


class _StepDrawMemo:
    """The step draws (:func:`draw_step`) a process made last, by the generator's state before them: markets that
    share a seed (a fit's evaluations at other values, a projection replicate's runs under other draws) draw
    the same numbers step after step, and take them from here instead, with their generator moved on to the
    state after the draw, as drawing would. A function of its key alone: it changes no number. Holds the most
    recent draws up to ``budget`` bytes (an assumption: 200 MB, about 20 fits' windows at 20,000 consumers), each
    step's at most ``entry_limit`` (4 MB: markets up to about 500,000 consumers; a larger one is run alone)."""

    FIELDS = ("idx", "g", "gone", "gone_basket", "gone_pref")

    def __init__(self, budget: int = 200 * 2**20, entry_limit: int = 4 * 2**20):
        self.memo = Memo(budget, entry_limit)

    def draw(self, rng: np.random.Generator, n: int, R: int, thresh: float, turnover: float, sigma: float) -> _Draws:
        st = rng.bit_generator.state
        if st.get("bit_generator") != "PCG64":  # (only the default generator's state is keyed)
            return draw_step(rng, n, R, thresh, turnover, sigma)
        key = (
            n,
            R,
            float(thresh),
            float(turnover),
            float(sigma),
            st["state"]["state"],
            st["state"]["inc"],
            st["has_uint32"],
            st["uinteger"],
        )
        hit = self.memo.get(key)
        if hit is not None:
            rng.bit_generator.state = hit[1]
            return hit[0]
        d = draw_step(rng, n, R, thresh, turnover, sigma)
        self.memo.put(key, (d, rng.bit_generator.state), sum(getattr(d, f).nbytes for f in self.FIELDS))
        return d


_STEP_DRAWS = _StepDrawMemo()


@dataclass(frozen=True)
class QuietDraws:
    """The random numbers of ``steps`` event-free steps (:func:`pilot_inputs`), each step's arrays end to end:
    step k's shoppers are ``idx[k_off[k]:k_off[k+1]]`` and its leavers ``gone[m_off[k]:m_off[k+1]]``."""

    k_off: np.ndarray
    idx: np.ndarray
    g: np.ndarray  # float32 (sum k, R+1) the shoppers' Gumbel noise (choice.gumbel of their uniforms)
    m_off: np.ndarray
    gone: np.ndarray
    gone_basket: np.ndarray
    gone_pref: np.ndarray

    def step(self, k: int) -> _Draws:
        a, b, c, d = self.k_off[k], self.k_off[k + 1], self.m_off[k], self.m_off[k + 1]
        return _Draws(self.idx[a:b], self.g[a:b], [], [], self.gone[c:d], self.gone_basket[c:d], self.gone_pref[c:d])


def _concat_draws(ds: list[_Draws], R: int) -> QuietDraws:
    """Steps' draws end to end (:class:`QuietDraws`)."""

    def off(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)

    def cat(xs: list[np.ndarray], dt) -> np.ndarray:
        return np.concatenate(xs).astype(dt, copy=False) if xs else np.empty(0, dt)

    return QuietDraws(
        off([d.idx for d in ds]),
        cat([d.idx for d in ds], np.int64),
        np.concatenate([d.g for d in ds]) if ds else np.empty((0, R + 1), np.float32),
        off([d.gone for d in ds]),
        cat([d.gone for d in ds], np.int64),
        cat([d.gone_basket for d in ds], np.float64),
        cat([d.gone_pref for d in ds], np.float32),
    )


@dataclass(frozen=True)
class _Draws:
    """One step's random numbers (:meth:`Market._draw`): the shoppers and their R+1 uniforms, the recurring effects
    on and which consumers' days they cover, who leaves, and their successors' baskets and route uniforms."""

    idx: np.ndarray
    g: np.ndarray  # float32 (k, R+1) Gumbel noise of the shoppers' uniforms (choice.gumbel), column 0 no purchase
    on: list
    inside: list
    gone: np.ndarray
    gone_basket: np.ndarray
    gone_pref: np.ndarray


# --------------------------------------------------------------------------- whole runs


@dataclass(frozen=True)
class PilotState:
    """A burn-in pilot (docs/model.md 12.2) after ``steps`` steps: its consumers and their state."""

    world: World
    state: ConsumerState  # its route_weight: the weights solved on this pilot (engine.login_mix)
    steps: int
    shortfalls: tuple[login_mix.Shortfall, ...] = ()  # stated login shares no weights keep
    mix: np.ndarray | None = None  # (1 + P, R) the customer mix the solved weights keep


@dataclass(frozen=True)
class PilotInputs:
    """What the burn-in pilot of one run (a seed and a size) is given before any value matters: its consumers and
    the random numbers of its steps (:func:`pilot_inputs`). A fit's evaluations, which share the seed and differ
    only in attractiveness and trends, share them (their pilots are the same simulation as before, drawn once)."""

    world: World
    draws: QuietDraws
    steps: int


def pilot_inputs(
    scenario: Scenario, seed: int, n: int, *, world: World | None = None, steps: int | None = None
) -> PilotInputs:
    """The burn-in pilot's World (min(n, PILOT_CONSUMERS) consumers on the pilot's own seed, spawned from
    ``seed``; or ``world``) and the random numbers of its ``steps`` steps (default: :func:`pilot_steps`)."""
    pilot_seed = child_seed(seed_streams(seed)["pilot"])
    world = build_world(scenario, pilot_seed, n=min(n, PILOT_CONSUMERS)) if world is None else world
    steps = pilot_steps(scenario.consumers.turnover) if steps is None else steps
    c = scenario.consumers
    draws = _pilot_draws(
        pilot_seed, world.n, len(scenario.retailers), steps, c.shopping_rate, c.turnover, c.basket.sigma
    )
    return PilotInputs(world, draws, steps)


@functools.lru_cache(maxsize=2)
def _pilot_draws(
    pilot_seed: int, n: int, R: int, steps: int, shopping_rate: float, turnover: float, sigma: float
) -> QuietDraws:
    """The random numbers of a burn-in pilot: a function of these arguments alone, so a process keeps the last
    two it drew (read-only) for the next pilots of the same run, whose values differ (a fit's evaluations, the
    draws of a projection's replicate: about 30 MB each at PILOT_CONSUMERS). Caching changes no number."""
    rng = np.random.default_rng(seed_streams(pilot_seed)["warmup"])
    ds = [draw_step(rng, n, R, shopping_rate, turnover, sigma) for _ in range(steps)]
    draws = _concat_draws(ds, R)
    for f in dataclasses.fields(draws):
        getattr(draws, f.name).flags.writeable = False
    return draws


def run_pilot(
    scenario: Scenario,
    alpha: np.ndarray,
    trend: np.ndarray,
    seed: int,
    n: int,
    *,
    start: PilotState | None = None,
    steps: int | None = None,
    kernel: str = "compiled",
    inputs: PilotInputs | None = None,
) -> PilotState:
    """Run the burn-in pilot of the run with ``seed`` and ``n`` consumers (docs/model.md 12.2).

    With turnover the state relaxes on the time scale of a consumer's lifetime (1 / turnover steps: years),
    far longer than a warm-up at full size could afford. So a pilot market of min(n, PILOT_CONSUMERS)
    consumers, on its own seed spawned from ``seed``, runs PILOT_LIFETIMES lifetimes without events at the
    calendar start's values, from the initial draw (or, for ``start``, continues an earlier pilot of the same
    run for ``steps`` more steps: a fit moving between nearby values does that); a market then draws its
    consumers' state from it (:meth:`Market.adopt_pilot_state`). ``inputs``: :func:`pilot_inputs` of this
    scenario, seed and size, drawn before (by default the pilot draws them)."""
    pilot_seed = child_seed(seed_streams(seed)["pilot"])
    if inputs is None:
        inputs = pilot_inputs(scenario, seed, n, world=None if start is None else start.world, steps=steps)
    world, steps = inputs.world, inputs.steps
    pm = Market(
        scenario,
        world,
        alpha,
        pilot_seed,
        trend=trend,
        settle=False,
        start=None if start is None else start.state,
        kernel=kernel,
    )
    pm.run_quiet(inputs.draws)  # negative steps: the calendar start's values
    # the login mix (docs/model.md 12.4): measure how each route keeps customers, solve the weights that keep the
    # stated mix, and redraw the pilot's routes as those weights would have drawn them
    measured = [login_mix.measure(pm.holds_bits, pm.access[:, j], pm.last, j) for j in range(pm.R)]
    weights, short, mix = login_mix.solve_market(scenario, pm.provider_index, pm.accepts, measured)
    u = np.random.default_rng(seed_streams(pilot_seed)["routes"]).random((pm.n, pm.R))
    login_mix.reassign(pm.access, pm.last, pm.holds_bits, pm.accepts, weights, measured, u)
    pm.route_weight = weights
    return PilotState(world, pm.consumer_state(), steps, tuple(short), mix)


def login_shortfalls(
    scenario: Scenario, alpha: np.ndarray, trend: np.ndarray, seed: int, n: int
) -> list[login_mix.Shortfall]:
    """The stated login shares a run with these values cannot keep (docs/model.md 12.4): from its burn-in pilot
    (with turnover), else from the sign-up mix of its World. For a fit's report; a run has them in
    :attr:`Market.login_shortfalls`."""
    if scenario.consumers.turnover > 0:
        return list(run_pilot(scenario, alpha, trend, seed, n).shortfalls)
    world = build_world(scenario, seed, n=min(n, PILOT_CONSUMERS))
    return Market(scenario, world, alpha, seed, trend=trend, settle=False).login_shortfalls


def pilot_steps(turnover: float) -> int:
    """Length of the burn-in pilot: PILOT_LIFETIMES expected lifetimes (0 without turnover)."""
    return 0 if turnover <= 0 else min(MAX_PILOT_STEPS, int(math.ceil(PILOT_LIFETIMES / turnover)))


def initial_alpha(scenario: Scenario) -> np.ndarray:
    """Given attractiveness, or for 'calibrate' a start: the closed-form static logit ln(conv*s_j/(1-conv)),
    less the habit bonus that every consumer has at its own last retailer."""
    conv = scenario.consumers.conversion or 0.5
    out = []
    for r in scenario.retailers:
        if r.attractiveness is not None:
            out.append(r.attractiveness)
        else:
            out.append(math.log(conv * max(r.target_share, 1e-9) / (1 - conv)) - scenario.behaviour.beta_habit)
    return np.array(out)
