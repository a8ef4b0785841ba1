"""The login mix a retailer states, kept by the sign-up rule (docs/model.md sections 2 and 12.4, property 10).

A retailer's ``sso_share`` of provider p is a fact about its customers: the share of them (c_i = j) whose access at
j is sso(p); the rest of its customers are ``native``. A shopper who opens an account at j by the one-click path
(it holds some provider j accepts: friction f_link) takes one *route*: ``native`` or one of the accepted providers
it holds, drawn in proportion to per-(route, retailer) weights by the consumer's own ``login_pref`` uniform. A
shopper who holds no accepted provider always goes native (f_create). This module solves the weights so that the
stationary no-event market keeps the stated mix.

Two facts make the solve simple:

* The friction at the moment of sign-up is f_link whatever the route, so *who* signs up at j (the holding
  patterns of j's sign-ups) does not depend on the weights.
* After the sign-up the route matters only through the friction at j afterwards (f_native or f_sso, docs/model.md
  5): every sso route costs the same. So a consumer's chance of being j's customer at a given moment, given its
  holding pattern h and that it has an account at j, depends on the route's *class* (native or sso) only:
  ``keep[h, class]``. Accounts are lost only by turnover, which does not depend on the route, so the accounts of
  pattern h at j are split between routes exactly as its sign-ups are.

Hence j's customers on route r are proportional to sum_h accounts_h x q_h(r; w) x keep[h, class(r)], where
q_h(r; w) = w_r / (sum of w over the routes pattern h can take), and the weights are the fixed point of
w_r <- w_r x stated_r / mix_r(w) (iterative proportional fitting). With f_native > f_sso a native customer is kept
less well than an sso one, so the sign-up mix is not the customer mix: ``keep`` is measured on the market's
burn-in pilot (:func:`measure`), the one place the stationary state is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketsim.engine.choice import NATIVE, SSO

#: Relative weight (x the largest weight at the retailer) of a provider the retailer accepts at the start without a
#: stated sso_share, where it states a share for another: the file says none of its customers use it, so almost no
#: sign-up does (assumption). A retailer that states no sso_share at all states no mix: none is kept, and a
#: one-click sign-up goes through one of the accepted providers it holds, each alike (:func:`solve_market`).
UNSTATED_WEIGHT = 1e-3
#: Relative weight (x the largest weight at the retailer) of a provider the retailer starts accepting by an event: no
#: share can be stated for it, so a holder takes it as readily as the retailer's most taken route (assumption).
ADDED_WEIGHT = 1.0
#: Accounts of one (holding pattern, class) below which its keep factor is pooled over the retailer's patterns.
MIN_ACCOUNTS = 30
#: A stated share the solved mix misses by more than this (absolute) is reported as one the market cannot keep.
MIX_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Shortfall:
    """A stated share the market cannot keep: the most of ``retailer``'s customers that can log in through
    ``provider`` (``most``, a share) is below the stated ``stated``; ``kept`` is what the solved rule keeps."""

    retailer: str
    provider: str
    stated: float
    kept: float
    most: float

    def text(self) -> str:
        return (
            f"retailers.{self.retailer}.sso_share.{self.provider} states {self.stated:.1%} of {self.retailer}'s "
            f"customers log in with {self.provider}, but at most {self.most:.1%} can (too few of them hold "
            f"{self.provider}); the run keeps {self.kept:.1%}"
        )


def summarize_shortfalls(found: list[list[dict]]) -> list[str]:
    """One warning per stated share out of reach over several runs (each run's shortfalls as
    ``dataclasses.asdict`` of :class:`Shortfall`), with the range of what the runs could keep and in how many runs:
    a projection's draws and replicates each solve their own weights."""
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for run in found:
        for d in run:
            groups.setdefault((d["retailer"], d["provider"], d["stated"]), []).append(d)

    def span(xs: list[float]) -> str:
        lo, hi = min(xs), max(xs)
        return f"{lo:.1%}" if round(lo, 3) == round(hi, 3) else f"{lo:.1%}-{hi:.1%}"

    out = []
    for (r, p, stated), ds in groups.items():
        if len(found) == 1:
            out.append(Shortfall(r, p, stated, ds[0]["kept"], ds[0]["most"]).text())
            continue
        out.append(
            f"retailers.{r}.sso_share.{p} states {stated:.1%} of {r}'s customers log in with {p}, but at most "
            f"{span([d['most'] for d in ds])} can (too few of them hold {p}; in {len(ds)} of {len(found)} runs); "
            f"the runs keep {span([d['kept'] for d in ds])}"
        )
    return out


def solve_weights(
    mass: np.ndarray,
    avail: np.ndarray,
    keep: np.ndarray,
    target: np.ndarray,
    *,
    tol: float = 1e-10,
    max_iter: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """Route weights that give the ``target`` customer mix, and the mix they give.

    ``mass[h]``: accounts (or sign-ups) of holding pattern h at the retailer; ``avail[h, r]``: pattern h can take
    route r (column 0, native, always); ``keep[h, r]``: relative chance that an account of pattern h on route r is
    a current customer (1 everywhere: the sign-up mix); ``target[r]``: the stated mix (sums to 1; routes with target 0
    get weight 0). Returns (weights, mix); the weights' largest is 1. Where no weights reach the target (a provider
    too few hold) the iteration ends at the boundary: the mix is the closest it gets."""
    mass, keep, target = (np.asarray(x, dtype=np.float64) for x in (mass, keep, target))
    avail = np.asarray(avail, dtype=bool)
    w = np.where(target > 0, 1.0, 0.0)

    def mix_of(w: np.ndarray) -> np.ndarray:
        c = (mass[:, None] * _route_probs(avail, w) * keep).sum(axis=0)
        s = c.sum()
        return c / s if s > 0 else c

    m = mix_of(w)
    for _ in range(max_iter):
        ok = (target > 0) & (m > 0)
        w_new = w.copy()
        w_new[ok] = w[ok] * target[ok] / m[ok]
        w_new /= w_new.max()
        w_new = np.maximum(w_new, np.where(target > 0, 1e-12, 0.0))
        m_new = mix_of(w_new)
        done = np.max(np.abs(w_new - w)) < tol
        w, m = w_new, m_new
        if done:
            break
    return w, m


def _route_probs(avail: np.ndarray, w: np.ndarray) -> np.ndarray:
    """q[h, r]: the chance pattern h takes route r, w_r over the sum of w over its routes (a pattern whose routes all
    weigh 0, e.g. one that can only go native where the native weight is 0, splits evenly: it has no choice)."""
    a = avail * w[None, :]
    tot = a.sum(axis=1, keepdims=True)
    return np.where(tot > 0, a / np.where(tot > 0, tot, 1.0), avail / avail.sum(axis=1, keepdims=True))


def most_share(mass: np.ndarray, avail: np.ndarray, keep: np.ndarray, w: np.ndarray, r: int) -> float:
    """The largest customer share route ``r`` can have: every pattern that can take it does, the others split by
    ``w``."""
    big = w.copy()
    big[r] = 1e12 * max(w.max(), 1.0)
    c = (np.asarray(mass)[:, None] * _route_probs(avail, big) * keep).sum(axis=0)
    return float(c[r] / c.sum()) if c.sum() > 0 else 0.0


def stated_targets(scenario, provider_index: dict[str, int]) -> np.ndarray:
    """(1 + P, R): the stated customer mix per retailer, row 0 native (the rest), row 1 + p provider p."""
    P, R = len(scenario.providers), len(scenario.retailers)
    t = np.zeros((1 + P, R))
    for j, r in enumerate(scenario.retailers):
        for p, share in r.sso_share:
            t[1 + provider_index[p], j] = share
        t[0, j] = max(0.0, 1.0 - t[1:, j].sum())
    return t


@dataclass(frozen=True)
class Measured:
    """What the pilot says about retailer j's accounts, per holding pattern: ``patterns`` (bit masks), ``mass``
    (accounts), ``keep`` ((K, 2): share of the native / sso accounts that are current customers)."""

    patterns: np.ndarray
    mass: np.ndarray
    keep: np.ndarray


def measure(holds_bits: np.ndarray, access_j: np.ndarray, last: np.ndarray, j: int) -> Measured:
    """Accounts at retailer j by holding pattern, and the share of them that are j's customers, per class
    (whole numbers counted by ``np.bincount`` over (pattern, class) cells)."""
    has = (access_j == NATIVE) | (access_j >= SSO)
    held = holds_bits[has]
    pats = np.unique(held)
    cell = np.searchsorted(pats, held) * 2 + (access_j[has] >= SSO)
    size = 2 * len(pats)
    n = np.bincount(cell, minlength=size).reshape(-1, 2).astype(np.float64)
    c = np.bincount(cell[last[has] == j], minlength=size).reshape(-1, 2).astype(np.float64)
    pooled = np.where(n.sum(axis=0) > 0, c.sum(axis=0) / np.maximum(n.sum(axis=0), 1), 1.0)
    keep = np.where(n >= MIN_ACCOUNTS, c / np.maximum(n, 1), pooled[None, :])
    return Measured(pats, n.sum(axis=1), keep)


def route_table(patterns: np.ndarray, accepts_j: np.ndarray) -> np.ndarray:
    """(K, 1 + P) bool: the routes each holding pattern can take at a retailer accepting ``accepts_j`` (P,)."""
    P = len(accepts_j)
    bits = (patterns[:, None].astype(np.uint64) >> np.arange(P, dtype=np.uint64)[None, :]) & np.uint64(1)
    prov = (bits == 1) & accepts_j[None, :]
    return np.concatenate([np.ones((len(patterns), 1), dtype=bool), prov], axis=1)


def solve_market(
    scenario, provider_index: dict[str, int], accepts: np.ndarray, measured: list[Measured]
) -> tuple[np.ndarray, list[Shortfall], np.ndarray]:
    """Weights (1 + P, R) for every retailer from what was measured, the stated shares no weights keep, and the
    customer mix the weights give (1 + P, R)."""
    P, R = accepts.shape
    target = stated_targets(scenario, provider_index)
    weights = np.zeros((1 + P, R))
    mix = np.zeros((1 + P, R))
    short: list[Shortfall] = []
    names = [p.name for p in scenario.providers]
    for j in range(R):
        ms = measured[j]
        avail = route_table(ms.patterns, accepts[:, j])
        keep = np.concatenate([ms.keep[:, :1], np.repeat(ms.keep[:, 1:], P, axis=1)], axis=1)
        t = target[:, j]
        if not scenario.retailers[j].sso_share and accepts[:, j].any():
            # no mix stated: none to keep; a one-click sign-up goes through a provider it holds, each alike
            # (one the retailer starts accepting by an event too: the routes a shopper can take are masked by the
            # logins accepted at the time, Market.link_route)
            w = np.concatenate([[0.0], np.ones(P)])
            m = np.zeros(1 + P)
            if len(ms.mass) and ms.mass.sum() > 0:
                c = (ms.mass[:, None] * _route_probs(avail, w) * keep).sum(axis=0)
                m = c / c.sum() if c.sum() > 0 else m
            weights[:, j], mix[:, j] = w, m
            continue
        if len(ms.mass) == 0 or ms.mass.sum() == 0:  # nobody has an account: the sign-up mix is the target
            w, m = t / max(t.max(), 1e-300), t.copy()
        else:
            w, m = solve_weights(ms.mass, avail, keep, t)
            for p in range(P):
                r = 1 + p
                if t[r] > 0 and m[r] < t[r] - MIX_TOLERANCE:
                    most = most_share(ms.mass, avail, keep, w, r)
                    short.append(Shortfall(scenario.retailers[j].name, names[p], float(t[r]), float(m[r]), most))
        top = w.max() if w.max() > 0 else 1.0
        w = w / top
        for p in range(P):
            if t[1 + p] == 0:
                w[1 + p] = UNSTATED_WEIGHT if accepts[p, j] else ADDED_WEIGHT
        weights[:, j] = w
        mix[:, j] = m
    return weights, short, mix


def reassign(
    access: np.ndarray,
    last: np.ndarray,
    holds_bits: np.ndarray,
    accepts: np.ndarray,
    weights: np.ndarray,
    measured: list[Measured],
    u: np.ndarray,
) -> None:
    """Redraw the route of every one-click account (in place) as the solved ``weights`` would have given it, given
    whether its holder is the retailer's customer now: P(route r | pattern h, customer) is proportional to
    q_h(r) x keep[h, class(r)] (x (1 - keep) for a non-customer). So a pilot run under other weights leaves the
    stationary state of the solved ones. ``u``: one uniform per consumer and retailer (N, R). The cumulative
    probabilities depend only on the holder's pattern and whether it is a customer: one table row each (2K rows),
    each holder picks by inverse CDF on its row."""
    P, R = accepts.shape
    for j in range(R):
        ms = measured[j]
        col = access[:, j]
        has = (col == NATIVE) | (col >= SSO)
        K = len(ms.patterns)
        if not has.any() or K == 0:
            continue
        avail = route_table(ms.patterns, accepts[:, j])  # (K, 1 + P)
        keep = np.concatenate([ms.keep[:, :1], np.repeat(ms.keep[:, 1:], P, axis=1)], axis=1)
        # rows 2k (not a customer) and 2k + 1 (a customer) of pattern k
        pr = (avail * weights[None, :, j])[:, None, :] * np.stack([1.0 - keep, keep], axis=1)  # (K, 2, 1 + P)
        cum = np.cumsum(pr.reshape(2 * K, 1 + P), axis=1)
        linkable = np.asarray(avail[:, 1:].any(axis=1))
        ok = np.logical_and(linkable[:, None], pr.sum(axis=2) > 0).reshape(2 * K)  # linkable, and a route open
        who = np.flatnonzero(has)
        row = np.minimum(np.searchsorted(ms.patterns, holds_bits[who]), K - 1) * 2 + (last[who] == j)
        keep_rows = ok[row]
        who, row = who[keep_rows], row[keep_rows]
        c = cum[row]
        pick = np.minimum((c <= u[who, j][:, None] * c[:, -1:]).sum(axis=1), P)
        col[who] = np.where(pick == 0, NATIVE, SSO + pick - 1).astype(col.dtype)
