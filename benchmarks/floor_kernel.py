"""The floor for the per-step speed target: one simulated step of an event-free market as a single fused
compiled pass (numba), written here independently of :mod:`marketsim.engine.kernel` (not imported).

Decide: for each shopper, the utility of every retailer (friction lookup by [can link?, access code, retailer],
social exposure over the CSR layers' neighbour counts, habit), then the Gumbel-max pick over "no purchase" and
the retailers. Apply, in the same pass: the purchase counters, the shopper's access (a one-click sign-up takes
a route by the consumer's route uniform, docs/model.md 12.4) and last retailer, remembering who switched; then
the leavers (a newcomer in the slot); then one pass over the ties of the switchers and leavers for the
neighbour counts. The float32 arithmetic is in the order of docs/model.md section 5 as the engine writes it,
so from the same state and the same random numbers it makes the same choices (step_bench.py checks).

What it leaves out because the benchmark's steps have none: events, promotions and recurring effects,
expected-value tracking, login-loss counters. Scratch arrays are allocated once by the caller.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NONE, _NATIVE, _SSO = 0, 1, 3  # access codes (docs/model.md 6)
_PATH_LINK, _PATH_CREATE, _PATH_MIGRATE = 2, 3, 4  # purchase paths


@njit(cache=True, nogil=True)
def step(
    idx,  # int64 (k,) shoppers, ascending
    g,  # float32 (k, R+1) Gumbel noise, column 0 "no purchase"
    access,  # int16 (n, R), in place
    last,  # int16 (n,), in place
    basket,  # float64 (n,), in place (newcomers)
    login_pref,  # float32 (n,), in place (newcomers)
    holds_bits,  # uint64 (n,)
    accept_bits,  # uint64 (R,)
    f_table,  # float32 (2, codes, R)
    p_table,  # int8 (2, codes, R)
    base,  # float32 (R,) alpha_j(t) - beta_price ln P_j
    beta_social,  # float32
    beta_friction,  # float32
    beta_habit,  # float32
    indptrs,  # tuple of int64 (n+1,)
    neighbours,  # tuple of int32
    counts,  # tuple of int32 (n, R), in place
    inv_degrees,  # tuple of float32 (n,)
    weights,  # float32 (L, R) layer weight x social factor
    route_weight,  # float64 (1+P, R)
    gone,  # int64 leavers, ascending
    gone_basket,  # float64
    gone_pref,  # float32
    who,  # scratch int64 (>= k + len(gone),)
    old,  # scratch int64
    new,  # scratch int64
    cum,  # scratch float64 (1+P,)
    v,  # scratch float32 (R,)
    pick,  # out int64 (k,)
    buyers,  # out int64 (R,)
    gmv,  # out float64 (R,)
    flows,  # out int64 (R+1, R)
    created,  # out int64 (R,)
    linked,  # out int64 (R,)
):
    k = idx.shape[0]
    R = access.shape[1]
    P = route_weight.shape[0] - 1
    L = len(counts)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    moved = 0
    for s in range(k):
        i = idx[s]
        li = last[i]
        hb = holds_bits[i]
        for j in range(R):
            f = f_table[1 if (hb & accept_bits[j]) != 0 else 0, access[i, j], j]
            S = zero
            for q in range(L):
                S = S + np.float32(counts[q][i, j]) * (inv_degrees[q][i] * weights[q, j])
            x = base[j] + beta_social * S
            x = x - beta_friction * f
            v[j] = x + beta_habit * (one if li == j else zero)
        best = g[s, 0]
        b = -1
        for j in range(R):
            x = v[j] + g[s, j + 1]
            if x > best:
                best = x
                b = j
        pick[s] = b
        if b < 0:
            continue
        buyers[b] += 1
        gmv[b] += basket[i]
        flows[li if li >= 0 else R, b] += 1
        path = p_table[1 if (hb & accept_bits[b]) != 0 else 0, access[i, b], b]
        if path == _PATH_LINK:
            c = 0.0
            for r in range(P + 1):
                bit = np.uint64(1) << np.uint64(max(r - 1, 0))
                if r == 0 or ((hb & bit) != 0 and (accept_bits[b] & bit) != 0):
                    c += route_weight[r, b]
                cum[r] = c
            target = np.float64(login_pref[i]) * cum[P]
            route = -1
            for r in range(P + 1):
                if cum[r] <= target:
                    route += 1
            route = min(route, P - 1)
            if route < 0:
                created[b] += 1
                access[i, b] = _NATIVE
            else:
                linked[b] += 1
                access[i, b] = _SSO + route
        elif path == _PATH_CREATE or path == _PATH_MIGRATE:
            created[b] += 1
            access[i, b] = _NATIVE
        if li != b:
            who[moved] = i
            old[moved] = li
            new[moved] = b
            moved += 1
            last[i] = b
    for q in range(gone.shape[0]):
        i = gone[q]
        basket[i] = gone_basket[q]
        login_pref[i] = gone_pref[q]
        who[moved] = i
        old[moved] = last[i]
        new[moved] = -1
        moved += 1
        last[i] = -1
        for j in range(R):
            access[i, j] = _NONE
    for m in range(moved):
        i = who[m]
        o = old[m]
        w = new[m]
        if o == w:
            continue
        for q in range(L):
            ip = indptrs[q]
            nb = neighbours[q]
            cnt = counts[q]
            for e in range(ip[i], ip[i + 1]):
                u = nb[e]
                if o >= 0:
                    cnt[u, o] -= 1
                if w >= 0:
                    cnt[u, w] += 1
