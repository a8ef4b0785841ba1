"""The decision rule (docs/model.md sections 5 and 6) as pure functions over arrays.

Shapes: k shoppers (rows), R retailers (columns), P identity providers.
Access codes per (consumer, retailer): :data:`NONE`, :data:`NATIVE`, :data:`MIGRATE`, or
``SSO + p`` for single sign-on through provider index p.
"""

from __future__ import annotations

import numpy as np

from marketsim.scenario.access import MIGRATE, NATIVE, NONE, SSO  # noqa: F401  (the codes, public here too)

ACCESS_DTYPE = np.int16

# How a purchase reached checkout (decides the access update and the counters).
PATH_NATIVE, PATH_SSO, PATH_LINK, PATH_CREATE, PATH_MIGRATE = 0, 1, 2, 3, 4


def provider_bits(flags: np.ndarray) -> np.ndarray:
    """Bit masks of boolean provider flags along the last axis (provider p is bit p; at most 64 providers):
    (k, P) holdings -> (k,) uint64, or (R, P) accepted logins -> (R,) uint64."""
    flags = np.asarray(flags, dtype=bool)
    return (flags.astype(np.uint64) << np.arange(flags.shape[-1], dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)


def can_link(holds: np.ndarray, accepts: np.ndarray) -> np.ndarray:
    """(k, R) bool: the consumer holds some provider that retailer j accepts (a one-click sign-up).
    holds: (k, P) bool, or (k,) uint64 bit masks (:func:`provider_bits`); accepts: (P, R) bool."""
    hb = holds if holds.ndim == 1 else provider_bits(holds)
    return (hb[:, None] & provider_bits(accepts.T)[None, :]) != 0


def friction_tables(
    accepts: np.ndarray,
    *,
    f_native: float,
    f_sso: float,
    f_link: float,
    f_create: float,
    f_migrate: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables of the friction and purchase path (docs/model.md section 5), indexed [can link?, access code,
    retailer]: (2, SSO + P, R) float64 costs in utility units and int8 path codes. They change only when an
    event changes the accepted logins or a migration offer, so a market builds them once per change."""
    P, R = accepts.shape
    f_migrate = np.broadcast_to(np.asarray(f_migrate, dtype=np.float64), (R,))
    n_codes = SSO + P
    tables = []
    for link in (False, True):
        no_access_f, no_access_p = (f_link, PATH_LINK) if link else (f_create, PATH_CREATE)
        F = np.full((n_codes, R), no_access_f, dtype=np.float64)
        path = np.full((n_codes, R), no_access_p, dtype=np.int8)
        F[NATIVE], path[NATIVE] = f_native, PATH_NATIVE
        better = f_migrate < no_access_f  # migrate: min(f_migrate, f_link where it applies)
        F[MIGRATE] = np.where(better, f_migrate, no_access_f)
        path[MIGRATE] = np.where(better, PATH_MIGRATE, no_access_p)
        for p in range(P):  # sso(p) works only where p is still accepted
            F[SSO + p] = np.where(accepts[p], f_sso, no_access_f)
            path[SSO + p] = np.where(accepts[p], PATH_SSO, no_access_p)
        tables.append((F, path))
    return np.stack([t[0] for t in tables]), np.stack([t[1] for t in tables])


def friction_lookup(
    tables: tuple[np.ndarray, np.ndarray], access: np.ndarray, linkable: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(F, path) for consumers with ``access`` codes (k, R) and ``linkable`` (k, R) bool, from
    :func:`friction_tables`: one gather per cell instead of a mask per case."""
    F_all, path_all = tables
    _, n_codes, R = F_all.shape
    flat = (linkable * n_codes + access) * R + np.arange(R, dtype=np.intp)[None, :]
    return F_all.ravel().take(flat), path_all.ravel().take(flat)


def friction(
    access: np.ndarray,
    holds: np.ndarray,
    accepts: np.ndarray,
    *,
    f_native: float,
    f_sso: float,
    f_link: float,
    f_create: float,
    f_migrate: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Login friction F[i, j] and the path a purchase would take (docs/model.md section 5).

    access: (k, R) access codes; holds: (k, P) bool; accepts: (P, R) bool (L_j as columns);
    f_migrate: (R,) migration cost offered by each retailer (inf where none is offered).
    Returns (F, path): float64 (k, R) costs in utility units, int8 (k, R) path codes.
    """
    tables = friction_tables(
        accepts, f_native=f_native, f_sso=f_sso, f_link=f_link, f_create=f_create, f_migrate=f_migrate
    )
    return friction_lookup(tables, access, can_link(holds, accepts))


def utilities(
    alpha: np.ndarray,
    log_price: np.ndarray,
    habit: np.ndarray,
    social: np.ndarray | float,
    friction_cost: np.ndarray,
    promo: np.ndarray | float,
    *,
    beta_price: float,
    beta_social: float,
    beta_habit: float,
    beta_friction: float,
) -> np.ndarray:
    """V[i,j] = alpha_j - beta_price ln P_j + beta_social S + beta_habit 1[c_i=j] - beta_friction F + M
    (docs/model.md section 6)."""
    V = (alpha - beta_price * log_price)[None, :] + beta_social * social - beta_friction * friction_cost + promo
    if beta_habit:
        V = V + beta_habit * habit
    return V


def logit_probabilities(V: np.ndarray) -> np.ndarray:
    """(k, R+1) choice probabilities; column 0 is "no purchase" (utility 0). Numerically stable
    (the largest utility of each row is subtracted before exponentiating).

    Rows have only R+1 entries, so the work is done column by column on contiguous vectors: numpy's
    reductions along a short axis are several times slower than R elementwise operations."""
    k, R = V.shape
    dt = np.result_type(V.dtype, np.float32)
    cols = [np.zeros(k, dtype=dt)] + [np.ascontiguousarray(V[:, j], dtype=dt) for j in range(R)]
    mx = cols[0].copy()
    for c in cols[1:]:
        np.maximum(mx, c, out=mx)
    tot = np.zeros(k, dtype=dt)
    for c in cols:
        c -= mx
        np.exp(c, out=c)
        tot += c
    full = np.empty((k, R + 1), dtype=dt)
    for j, c in enumerate(cols):
        full[:, j] = c / tot
    return full


def gumbel(u: np.ndarray) -> np.ndarray:
    """float32 Gumbel(0, 1) noise -ln(-ln u) from uniforms ``u`` (clipped away from 0 and 1)."""
    return np.ascontiguousarray(-np.log(-np.log(np.clip(u, 1e-7, 1 - 6e-8))), dtype=np.float32)


def gumbel_choice(V: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Multinomial logit draw by the Gumbel-max rule: -1 for no purchase, else the retailer index.

    ``u``: (k, R+1) uniforms, column 0 for "no purchase" (utility 0). The option with the largest
    utility + Gumbel(0, 1) noise is chosen, which has exactly the logit probabilities (McFadden 1974).
    With the same uniforms in a scenario and its counterfactual, a consumer changes its choice only if
    the events changed the utilities of the options it was choosing between: the tightest common
    random numbers coupling (an inverse-CDF draw would also move consumers whose options did not change).
    """
    return gumbel_pick(V, gumbel(u))


def gumbel_pick(V: np.ndarray, g: np.ndarray) -> np.ndarray:
    """:func:`gumbel_choice` given the Gumbel noise ``g`` = :func:`gumbel` (u) itself."""
    k, R = V.shape
    best = g[:, 0].copy()
    pick = np.full(k, -1, dtype=np.int64)
    for j in range(R):
        x = V[:, j] + g[:, j + 1]
        better = x > best
        best[better] = x[better]
        pick[better] = j
    return pick
