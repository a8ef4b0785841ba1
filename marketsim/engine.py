"""The market's state and its step (MODEL.md sections 5, 6, 7 and 9), on numpy arrays.

:class:`Market` is the one place the dynamic state lives: last retailer and access per consumer,
accepted logins, social factors, promotions, prices, and per-layer counts of each consumer's
neighbours by last retailer (kept up to date incrementally: only the neighbours of consumers who
switched are touched). The decision rule itself is the pure functions of :mod:`marketsim.choice`.

Every step draws exactly two uniforms per consumer from the dynamics stream (shop? which option?),
whatever the state, so a scenario and its counterfactual on the same seed use the same random
numbers for the same consumer at the same step (common random numbers, MODEL.md section 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from . import choice, events
from .choice import NATIVE, SSO
from .population import World, build_world, seed_streams
from .scenario import Scenario


@dataclass(frozen=True)
class StepRecord:
    """The outputs of one step (MODEL.md section 9). Totals are in real units (x market.size / N)."""

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


class Market:
    """A running market: a :class:`World` plus the state that changes. Use :meth:`step`."""

    def __init__(self, scenario: Scenario, world: World, alpha: np.ndarray, seed: int, *, track_expected: bool = False):
        if len(alpha) != len(scenario.retailers) or not np.all(np.isfinite(alpha)):
            raise ValueError(f"alpha must be {len(scenario.retailers)} finite numbers, got {alpha!r}")
        self.scenario, self.world = scenario, world
        self.n = world.n
        self.retailer_index = {r.name: j for j, r in enumerate(scenario.retailers)}
        self.provider_index = {p.name: k for k, p in enumerate(scenario.providers)}
        R, P = len(scenario.retailers), len(scenario.providers)
        self.R, self.P = R, P
        self.alpha = np.asarray(alpha, dtype=np.float64).copy()
        self.track_expected = track_expected  # also report purchases in expectation (calibration uses them)
        self.price = np.array([r.price_index for r in scenario.retailers])
        self.revenue_rate = np.array([r.revenue_rate for r in scenario.retailers])
        self.accepts = np.zeros((P, R), dtype=bool)
        # login_rank[p, j]: position of provider p on retailer j's login page (its `logins` order; added
        # logins go last). A one-click sign-up uses the first listed provider the consumer holds.
        self.login_rank = np.full((P, R), P, dtype=np.int64)
        for j, r in enumerate(scenario.retailers):
            for rank, p in enumerate(r.logins):
                self.accepts[self.provider_index[p], j] = True
                self.login_rank[self.provider_index[p], j] = rank
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
        self.t = 0
        self.schedule: dict[int, list] = {}
        for ev in scenario.events:
            self.schedule.setdefault(ev.step, []).append(ev)
        self.last_record: StepRecord | None = None
        self.warmup_records: list[StepRecord] = []
        self.last_purchases: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.fired: list = []  # events applied so far
        if scenario.calendar.warmup:
            self.warm_up(scenario.calendar.warmup, seed)

    # --- state helpers ------------------------------------------------------
    def _full_counts(self, g) -> np.ndarray:
        """counts[v, j] = number of v's neighbours whose last retailer is j (one pass over the CSR)."""
        counts = np.zeros((self.n, self.R), dtype=np.int32)
        nb_last = self.last[g.indices]
        for j in range(self.R):
            c = np.zeros(len(g.indices) + 1, dtype=np.int64)
            np.cumsum(nb_last == j, out=c[1:])
            counts[:, j] = c[g.indptr[1:]] - c[g.indptr[:-1]]
        return counts

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
        """S[i, j] for consumers ``idx`` (MODEL.md section 3)."""
        S = np.zeros((len(idx), self.R), dtype=np.float32)
        for li, (lay, cnt) in enumerate(zip(self.world.layers, self.counts)):
            if lay.weight == 0:
                continue
            w = (lay.weight * self.social_factor[li]).astype(np.float32)
            S += np.take(cnt, idx, axis=0).astype(np.float32) * (lay.inv_degree[idx, None] * w[None, :])
        return S

    def _update_counts(self, who: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        R = self.R
        for lay, cnt in zip(self.world.layers, self.counts):
            g = lay.graph
            starts, ends = g.indptr[who], g.indptr[who + 1]
            lens = ends - starts
            tot = int(lens.sum())
            if tot == 0:
                continue
            offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
            nb = g.indices[offs + np.arange(tot)].astype(np.int64)
            flat = cnt.reshape(-1)
            o = np.repeat(old, lens)
            has_old = o >= 0
            keys = np.concatenate([nb[has_old] * R + o[has_old], nb * R + np.repeat(new, lens)])
            signs = np.ones(len(keys), dtype=np.int32)
            signs[: int(has_old.sum())] = -1
            np.add.at(flat, keys, signs)

    # --- the step -----------------------------------------------------------
    def step(self) -> StepRecord:
        """Apply this step's events, then one synchronous round of choices; returns the step's outputs."""
        t = self.t
        for ev in self.schedule.get(t, ()):
            for act in ev.actions():
                events.apply(self, act, t)
            self.fired.append(ev)
        self.promotions = [p for p in self.promotions if p[3] is None or t < p[3]]
        rec = self._shop(self.rng)
        self.last_record = rec
        self.t += 1
        return rec

    def warm_up(self, steps: int, seed: int) -> None:
        """Run ``steps`` unreported steps before step 0 (no events), from their own random stream, so that
        habits, accounts and social counts settle from the initial draw. Step 0 starts from the result."""
        rng = np.random.default_rng(seed_streams(seed)["warmup"])
        self.warmup_records = [self._shop(rng) for _ in range(steps)]
        self.pending_access_lost[:] = 0

    def _shop(self, rng: np.random.Generator) -> StepRecord:
        sc, t, R = self.scenario, self.t, self.R
        # One uniform per consumer (shop?), then R+1 per shopper (which option?). The shoppers do not depend
        # on the state, so a scenario and its counterfactual draw the same numbers (common random numbers).
        u_shop = rng.random(self.n, dtype=np.float32)
        idx = np.flatnonzero(u_shop < sc.consumers.shopping_rate)
        u_pick = rng.random((len(idx), R + 1), dtype=np.float32)

        b, f = sc.behaviour, sc.friction
        F, path = choice.friction(
            self.access[idx], self.world.holds[idx], self.accepts,
            f_native=f.native, f_sso=f.sso, f_link=f.link, f_create=f.create, f_migrate=self.migrate_cost,
        )
        last = self.last[idx].astype(np.int64)
        habit = (last[:, None] == np.arange(R)[None, :]).astype(np.float32)
        promo = np.zeros((len(idx), R), dtype=np.float32) if self.promotions else 0.0
        for j, aud, util, _ in self.promotions:
            promo[:, j] += util if aud < 0 else util * self.world.holds[idx, aud]
        social = self.social_exposure(idx) if b.beta_social else 0.0
        V = choice.utilities(self.alpha.astype(np.float32), np.log(self.price).astype(np.float32), habit, social,
                             F.astype(np.float32), promo,
                             beta_price=b.beta_price, beta_social=b.beta_social,
                             beta_habit=b.beta_habit, beta_friction=b.beta_friction)
        pick = choice.gumbel_choice(V, u_pick)
        prob = choice.logit_probabilities(V) if self.track_expected else None

        bought = pick >= 0
        bi, bj = idx[bought], pick[bought]
        self.last_purchases = (bi, bj)  # read-only record of this step's purchases (consumer, retailer)
        bpath = path[np.flatnonzero(bought), bj]
        scale = self.world.scale

        # counters
        new_native = (bpath == choice.PATH_CREATE) | (bpath == choice.PATH_MIGRATE)
        linked = bpath == choice.PATH_LINK
        accounts_created = np.bincount(bj[new_native], minlength=R) * scale
        logins_linked = np.bincount(bj[linked], minlength=R) * scale
        from_row = np.where(last[bought] >= 0, last[bought], R)
        flows = np.bincount(from_row * R + bj, minlength=(R + 1) * R).reshape(R + 1, R) * scale
        gmv = np.bincount(bj, weights=self.world.basket[bi], minlength=R) * scale

        # synchronous update: access, then last retailer, then neighbour counts
        if linked.any():
            li, lj = bi[linked], bj[linked]
            ok = self.world.holds[li] & self.accepts[:, lj].T
            self.access[li, lj] = SSO + np.argmin(np.where(ok, self.login_rank[:, lj].T, 10**9), axis=1)
        self.access[bi[new_native], bj[new_native]] = NATIVE
        switched = self.last[bi] != bj
        who, old, new = bi[switched], self.last[bi[switched]].astype(np.int64), bj[switched]
        self.last[who] = new
        if len(who) and self.counts:
            self._update_counts(who, old, new)

        lost = self.lost_index()
        lost_last = np.bincount(self.last[lost], minlength=R) * scale if len(lost) else np.zeros(R)
        rec = StepRecord(
            step=t, shoppers=len(idx) * scale, buyers=np.bincount(bj, minlength=R) * scale, gmv=gmv,
            revenue=gmv * self.revenue_rate, accounts_created=accounts_created, logins_linked=logins_linked,
            access_lost=self.pending_access_lost * scale, flows=flows, lost_login_last=lost_last[:R],
            expected_gmv=(self.world.basket[idx] @ prob[:, 1:]) * scale if self.track_expected else None,
            expected_buyers=prob[:, 1:].sum(axis=0) * scale if self.track_expected else None,
        )
        self.pending_access_lost = np.zeros(R, dtype=np.int64)
        return rec


# --------------------------------------------------------------------------- whole runs


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    consumers: int
    steps: int
    alpha: np.ndarray
    records: list[StepRecord]

    def timeseries(self) -> pd.DataFrame:
        """Tidy per-step, per-retailer table (one row per step and retailer)."""
        return records_to_frame(self.scenario, self.records)

    def flows(self) -> pd.DataFrame:
        return flows_to_frame(self.scenario, self.records)

    def share(self, step: int) -> dict[str, float]:
        return dict(zip(self.scenario.retailer_names, map(float, self.records[step].gmv_share)))


def records_to_frame(scenario: Scenario, records: Iterable[StepRecord]) -> pd.DataFrame:
    names = scenario.retailer_names
    rows = []
    for rec in records:
        date = scenario.calendar.date_of(rec.step).isoformat()
        share, bshare, npr = rec.gmv_share, rec.buyer_share, rec.no_purchase_rate
        for j, name in enumerate(names):
            rows.append((rec.step, date, name, rec.gmv[j], share[j], rec.buyers[j], bshare[j], rec.revenue[j],
                         rec.accounts_created[j], rec.logins_linked[j], rec.access_lost[j], rec.lost_login_last[j],
                         rec.shoppers, npr))
    return pd.DataFrame(rows, columns=["step", "date", "retailer", "gmv", "gmv_share", "buyers", "buyer_share", "revenue",
                                       "accounts_created", "logins_linked", "access_lost", "lost_login_consumers",
                                       "shoppers", "no_purchase_rate"])


def flows_to_frame(scenario: Scenario, records: Iterable[StepRecord]) -> pd.DataFrame:
    names = scenario.retailer_names
    src = list(names) + ["(none)"]
    rows = []
    for rec in records:
        for a in range(len(src)):
            for j, name in enumerate(names):
                if rec.flows[a, j]:
                    rows.append((rec.step, src[a], name, rec.flows[a, j]))
    return pd.DataFrame(rows, columns=["step", "from", "to", "buyers"])


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


def simulate(
    scenario: Scenario,
    alpha: np.ndarray | None = None,
    *,
    seed: int | None = None,
    steps: int | None = None,
    world: World | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run ``scenario`` for ``steps`` (default: its calendar) with attractiveness ``alpha``.

    ``alpha`` is required when a retailer's attractiveness is 'calibrate' (see :mod:`marketsim.calibrate`).
    ``world`` may be passed to reuse the consumers drawn for the same seed (e.g. a counterfactual).
    ``on_step(done, total)`` is called after each step (progress bars).
    """
    if alpha is None:
        if any(r.calibrate for r in scenario.retailers):
            raise ValueError("retailers marked 'calibrate' need fitted alphas: use marketsim.calibrate.calibrate()")
        alpha = initial_alpha(scenario)
    seed = scenario.seed if seed is None else seed
    steps = scenario.calendar.steps if steps is None else steps
    world = world if world is not None else build_world(scenario, seed)
    m = Market(scenario, world, alpha, seed)
    recs = []
    for t in range(steps):
        recs.append(m.step())
        if on_step is not None:
            on_step(t + 1, steps)
    return RunResult(scenario=scenario, seed=seed, consumers=world.n, steps=steps, alpha=np.asarray(alpha), records=recs)
