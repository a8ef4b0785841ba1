"""The step's decide and apply phases as one compiled pass (docs/model.md sections 5, 6 and 9): numba.

:func:`shop` does what :meth:`marketsim.engine.market.Market._shop_numpy` does with numpy calls, over the same
random numbers (drawn before it by the market, in the documented order) and with the same float32 arithmetic in
the same order, so its choices, state and integer counters are those of the numpy path exactly (the test suite
checks, step by step, on a market with every feature and event). The numpy path stays as the reference.

One pass over the shoppers computes each one's utilities (friction lookup, social exposure layer by layer, habit,
promotions), picks by the Gumbel-max rule, adds the choice probabilities when the market tracks expected values,
counts the purchase and updates the shopper's own access and last retailer (the synchronous update holds: no
shopper reads another's access or last retailer, and the neighbour counts the utilities read change only after
the pass). Then departures, then one pass over the ties of everyone whose last retailer changed.

Compiled on first use and cached beside this file (numba ``cache=True``; a read-only install caches in the user's
cache folder instead): the first run on a machine pays a few seconds (each function once: :func:`shop` is given
one kind of array wherever it is called, read-only random numbers, so it compiles once), later processes load
the machine code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# the access codes and purchase paths (marketsim.engine.choice), as literals the compiled code can fold
_NONE, _NATIVE, _SSO = 0, 1, 3
_PATH_SSO, _PATH_LINK, _PATH_CREATE, _PATH_MIGRATE = 1, 2, 3, 4


@njit(cache=True, nogil=True)
def shop(
    idx,  # int64 (k,) shoppers, ascending
    g,  # float32 (k, R+1) Gumbel noise, column 0 for "no purchase"
    promo,  # float32 (k, R) promotions and recurring effects, or (0, R)
    track,  # bool: accumulate expected buyers and GMV
    lost,  # int64 consumers who lost a login by an event (for lost_last), possibly empty
    gone,  # int64 consumers who leave at the end of the step (ascending)
    gone_basket,  # float64 (len(gone),) their successors' baskets
    gone_pref,  # float32 (len(gone),) their successors' route uniforms
    pick,  # out int64 (k,): -1 or the retailer bought at
    buyers,  # out int64 (R,)
    gmv,  # out float64 (R,): sum of relative baskets bought
    flows,  # out int64 (R+1, R): from last retailer (row R = none) to this step's retailer
    created,  # out int64 (R,): native accounts opened (created, migrated, or a one-click sign-up's native route)
    linked,  # out int64 (R,): one-click sign-ups through a provider
    lost_last,  # out int64 (R,): by last retailer, of ``lost``, after purchases
    exp_gmv,  # out float64 (R,): expected relative baskets bought
    exp_buyers,  # out float64 (R,)
    access,  # int16 (n, R) access codes, updated in place
    last,  # int16 (n,) last retailer (-1 none), updated in place
    basket,  # float64 (n,) relative baskets, updated in place (newcomers)
    login_pref,  # float32 (n,) sign-up route uniforms, updated in place (newcomers)
    holds_bits,  # uint64 (n,) identity accounts as bits
    accept_bits,  # uint64 (R,) accepted logins as bits
    f_table,  # float32 (2, SSO + P, R) friction by [can link?, access code, retailer]
    p_table,  # int8 (2, SSO + P, R) purchase path, same index
    base,  # float32 (R,) alpha_j(t) - beta_price ln P_j
    beta_social,  # float32
    beta_friction,  # float32
    beta_habit,  # float32
    available,  # bool (R,)
    indptrs,  # tuple of int64 (n+1,): each layer's CSR rows
    neighbours,  # tuple of int32: each layer's CSR indices
    counts,  # tuple of int32 (n, R): each layer's neighbour counts by last retailer, updated in place
    inv_degrees,  # tuple of float32 (n,)
    weights,  # float32 (L, R) w_p x social factor per layer and retailer; a layer of weight 0 adds nothing
    layer_on,  # bool (L,) the layer counts in the social exposure (weight != 0)
    n_layers,  # int: layers (the tuples may hold a placeholder when there are none)
    route_weight,  # float64 (1 + P, R) sign-up route weights
):
    k = idx.shape[0]
    R = access.shape[1]
    P = route_weight.shape[0] - 1
    has_promo = promo.shape[0] == k and k > 0
    zero = np.float32(0.0)
    one = np.float32(1.0)
    v = np.empty(R, dtype=np.float32)
    ev = np.empty(R, dtype=np.float32)  # exp(v - max), each computed once
    cum = np.empty(P + 1, dtype=np.float64)
    who = np.empty(k + gone.shape[0], dtype=np.int64)
    old = np.empty(k + gone.shape[0], dtype=np.int64)
    new = np.empty(k + gone.shape[0], dtype=np.int64)
    moved = 0
    for s in range(k):
        i = idx[s]
        li = last[i]
        hb = holds_bits[i]
        # utilities in the numpy path's order: ((base + bs S) - bf F) + promo, then + bh habit
        for j in range(R):
            if not available[j]:
                v[j] = -np.inf
                continue
            link = 1 if (hb & accept_bits[j]) != 0 else 0
            f = f_table[link, access[i, j], j]
            S = zero
            for li_ in range(n_layers):
                if layer_on[li_]:
                    S = S + np.float32(counts[li_][i, j]) * (inv_degrees[li_][i] * weights[li_, j])
            x = base[j] + beta_social * S
            x = x - beta_friction * f
            if has_promo:
                x = x + promo[s, j]
            h = one if li == j else zero
            v[j] = x + beta_habit * h
        best = g[s, 0]
        b = -1
        for j in range(R):
            x = v[j] + g[s, j + 1]
            if x > best:
                best = x
                b = j
        pick[s] = b
        if track:
            mx = zero
            for j in range(R):
                if v[j] > mx:
                    mx = v[j]
            tot = zero + np.exp(zero - mx)
            for j in range(R):
                ev[j] = np.exp(v[j] - mx)
                tot = tot + ev[j]
            for j in range(R):
                pr = ev[j] / tot
                exp_buyers[j] += pr
                exp_gmv[j] += basket[i] * np.float64(pr)
        if b < 0:
            continue
        # the purchase: counters, then the shopper's own access and last retailer
        buyers[b] += 1
        gmv[b] += basket[i]
        flows[li if li >= 0 else R, b] += 1
        path = p_table[1 if (hb & accept_bits[b]) != 0 else 0, access[i, b], b]
        native = path == _PATH_CREATE or path == _PATH_MIGRATE
        if path == _PATH_LINK:  # one click: native or a provider, by the consumer's route uniform (Market.link_route)
            c = 0.0
            for r in range(P + 1):
                bit = np.uint64(1) << np.uint64(max(r - 1, 0))
                ok = r == 0 or ((hb & bit) != 0 and (accept_bits[b] & bit) != 0)
                c += route_weight[r, b] if ok else 0.0
                cum[r] = c
            target = np.float64(login_pref[i]) * cum[P]
            nle = 0
            for r in range(P + 1):
                if cum[r] <= target:
                    nle += 1
            route = min(nle, P) - 1
            if route == -1:
                native = True
            else:
                linked[b] += 1
                access[i, b] = _SSO + route
        if native:
            created[b] += 1
            access[i, b] = _NATIVE
        if li != b:
            who[moved] = i
            old[moved] = li
            new[moved] = b
            moved += 1
            last[i] = b
    for q in range(lost.shape[0]):
        c_ = last[lost[q]]
        if c_ >= 0:
            lost_last[c_] += 1
    # departures: a newcomer takes the slot with no last retailer and no access anywhere (docs/model.md 2)
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
    # neighbour counts of everyone whose last retailer changed (additive: a switch, then a departure, nets out)
    for li_ in range(n_layers):
        ip = indptrs[li_]
        nb = neighbours[li_]
        cnt = counts[li_]
        for q in range(moved):
            i = who[q]
            o, w = old[q], new[q]
            if o == w:
                continue
            for e in range(ip[i], ip[i + 1]):
                u = nb[e]
                if o >= 0:
                    cnt[u, o] -= 1
                if w >= 0:
                    cnt[u, w] += 1


@njit(cache=True, nogil=True)
def csr_from_edges(n, src, dst):
    """Simple undirected CSR graph on ``n`` nodes from an edge list (int64 ``src``, ``dst``): both directions,
    self-loops and duplicate ties dropped, each row sorted. Returns (indptr int64 (n+1,), indices int32): by
    counting, then sorting and compacting each row in place (Shell's sort with Knuth's gaps: a few short passes on
    the rows of a few ties most are, O(d^1.5) on a hub's; numba's own sort would add a second to the first
    compilation on a machine)."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(src.shape[0]):
        a, b = src[e], dst[e]
        if a != b:
            ptr[a + 1] += 1
            ptr[b + 1] += 1
    for v in range(n):
        ptr[v + 1] += ptr[v]
    fill = ptr[:n].copy()
    idx = np.empty(ptr[n], dtype=np.int32)
    for e in range(src.shape[0]):
        a, b = src[e], dst[e]
        if a != b:
            idx[fill[a]] = b
            fill[a] += 1
            idx[fill[b]] = a
            fill[b] += 1
    out = np.zeros(n + 1, dtype=np.int64)
    w = 0
    for v in range(n):
        s, t = ptr[v], ptr[v + 1]
        gap = 1
        while gap * 3 + 1 < t - s:  # gaps 1, 4, 13, ... below the row's length; the last pass is an insertion sort
            gap = gap * 3 + 1
        while gap > 0:
            for q in range(s + gap, t):
                x = idx[q]
                r = q - gap
                while r >= s and idx[r] > x:
                    idx[r + gap] = idx[r]
                    r -= gap
                idx[r + gap] = x
            gap //= 3
        out[v] = w
        last = -1
        for q in range(s, t):  # w <= q: compacting in place never overwrites what is still to be read
            x = idx[q]
            if x != last:
                idx[w] = x
                w += 1
                last = x
    out[n] = w
    return out, idx[:w]


@njit(cache=True, nogil=True)
def neighbour_counts(indptr, indices, last, R):
    """counts[v, j] = how many of v's neighbours (CSR ``indptr``, ``indices``) last bought at retailer j, from
    ``last`` (-1: none): one pass over the ties. int32 (n, R)."""
    n = indptr.shape[0] - 1
    counts = np.zeros((n, R), dtype=np.int32)
    for v in range(n):
        for e in range(indptr[v], indptr[v + 1]):
            c = last[indices[e]]
            if c >= 0:
                counts[v, c] += 1
    return counts
