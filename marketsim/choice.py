"""The decision rule (MODEL.md sections 5 and 6) as pure functions over arrays.

Shapes: k shoppers (rows), R retailers (columns), P identity providers.
Access codes per (consumer, retailer): :data:`NONE`, :data:`NATIVE`, :data:`MIGRATE`, or
``SSO + p`` for single sign-on through provider index p.
"""

from __future__ import annotations

import numpy as np

NONE, NATIVE, MIGRATE, SSO = 0, 1, 2, 3
ACCESS_DTYPE = np.int16

# How a purchase reached checkout (decides the access update and the counters).
PATH_NATIVE, PATH_SSO, PATH_LINK, PATH_CREATE, PATH_MIGRATE = 0, 1, 2, 3, 4


def can_link(holds: np.ndarray, accepts: np.ndarray) -> np.ndarray:
    """(k, R) bool: the consumer holds some provider that retailer j accepts (a one-click sign-up)."""
    return (holds.astype(np.uint8) @ accepts.astype(np.uint8)) > 0


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
    """Login friction F[i, j] and the path a purchase would take (MODEL.md section 5).

    access: (k, R) access codes; holds: (k, P) bool; accepts: (P, R) bool (L_j as columns);
    f_migrate: (R,) migration cost offered by each retailer (inf where none is offered).
    Returns (F, path): float64 (k, R) costs in utility units, int8 (k, R) path codes.
    """
    k, R = access.shape
    link = can_link(holds, accepts)
    # Base case: no working access -> link (if possible) or create an account.
    F = np.where(link, f_link, f_create).astype(np.float64)
    path = np.where(link, PATH_LINK, PATH_CREATE).astype(np.int8)
    native = access == NATIVE
    F[native], path[native] = f_native, PATH_NATIVE
    sso = access >= SSO
    if sso.any():
        rows, cols = np.nonzero(sso)
        ok = accepts[access[rows, cols] - SSO, cols]
        F[rows[ok], cols[ok]], path[rows[ok], cols[ok]] = f_sso, PATH_SSO
    mig = access == MIGRATE
    if mig.any():
        fm = np.broadcast_to(f_migrate, (k, R))
        better = mig & (fm < F)  # min(f_migrate, f_link where it applies)
        F[better], path[better] = fm[better], PATH_MIGRATE
    return F, path


def utilities(
    alpha: np.ndarray,
    log_price: np.ndarray,
    habit: np.ndarray,
    social: np.ndarray,
    friction_cost: np.ndarray,
    promo: np.ndarray,
    *,
    beta_price: float,
    beta_social: float,
    beta_habit: float,
    beta_friction: float,
) -> np.ndarray:
    """V[i,j] = alpha_j - beta_price ln P_j + beta_social S + beta_habit 1[c_i=j] - beta_friction F + M (MODEL.md 6)."""
    V = (alpha - beta_price * log_price)[None, :] + beta_social * social - beta_friction * friction_cost + promo
    if beta_habit:
        V = V + beta_habit * habit
    return V


def logit_probabilities(V: np.ndarray) -> np.ndarray:
    """(k, R+1) choice probabilities; column 0 is "no purchase" (utility 0). Numerically stable."""
    k, R = V.shape
    full = np.empty((k, R + 1))
    full[:, 0] = 0.0
    full[:, 1:] = V
    full -= full.max(axis=1, keepdims=True)
    np.exp(full, out=full)
    full /= full.sum(axis=1, keepdims=True)
    return full


def sample_choice(prob: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: returns -1 for no purchase, else the retailer index.

    Using one uniform per consumer in a fixed order of alternatives makes the draw monotone in the
    probabilities, so a scenario and its counterfactual on the same uniforms differ only where the
    probabilities differ (common random numbers).
    """
    cdf = np.cumsum(prob, axis=1)
    cdf[:, -1] = 1.0
    return (u[:, None] >= cdf).sum(axis=1).astype(np.int64) - 1
