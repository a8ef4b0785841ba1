"""Calibration of attractiveness to target shares (MODEL.md section 8).

Berry (1994): for a logit market the alternative-specific constants that reproduce observed shares
are the fixed point of ``alpha_j <- alpha_j + ln s*_j - ln s_hat_j``. Shares among retailers fix
alpha only up to a constant, so the targets here are the *probabilities a shopper buys at j*,
``conversion x s*_j``, which pins the level through the scenario's ``consumers.conversion``.

``s_hat`` is the mean simulated GMV share over the calibration window (the steps before the first
event), on one fixed seed: with common random numbers across iterations the map is deterministic, so
the contraction converges instead of chasing noise. Habit and social feedback can make the plain
contraction overshoot; the step is halved whenever the largest residual grows (a damped contraction).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .engine import Market, initial_alpha
from .errors import UserError
from .population import build_world
from .scenario import Scenario

#: Default tolerance: every |s_hat_j - s*_j| under 0.2 percentage points (MODEL.md section 8).
DEFAULT_TOL_PP = 0.2
DEFAULT_MAX_ITER = 60
#: Bump when the calibration procedure changes, so cached fits are not reused.
METHOD_VERSION = 2
#: |alpha| beyond this means the target is unreachable with the given frictions (exp(40) ~ 2e17).
ALPHA_LIMIT = 40.0


class CalibrationError(UserError):
    """Calibration failed; the message names the retailer and why."""


@dataclass(frozen=True)
class Calibration:
    alpha: dict[str, float]  # fitted (and given) attractiveness per retailer
    iterations: int
    residual_pp: dict[str, float]  # s_hat - s* in percentage points, calibrated retailers
    conversion_residual_pp: float  # conversion_hat - conversion, percentage points
    shares: dict[str, float]  # s_hat at the fit
    window: int  # steps in the calibration window
    seed: int
    consumers: int
    tol_pp: float
    key: str

    def alpha_vector(self, scenario: Scenario) -> np.ndarray:
        return np.array([self.alpha[name] for name in scenario.retailer_names])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(**d)


def cache_key(scenario: Scenario, tol_pp: float = DEFAULT_TOL_PP, max_iter: int = DEFAULT_MAX_ITER) -> str:
    """Hash of everything a fit depends on: the market before its first event, window, seed, N, method."""
    d = scenario.to_dict()
    for k in ("name", "description", "events"):
        d.pop(k, None)
    d["calendar"].pop("steps", None)
    d["_window"] = scenario.calibration_window
    d["_method"] = [METHOD_VERSION, tol_pp, max_iter]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def window_shares(scenario: Scenario, world, alpha: np.ndarray, seed: int, window: int) -> tuple[np.ndarray, float]:
    """Mean GMV share per retailer and conversion (buyers / shoppers) over the calibration window: the second
    half of the warm-up (settled, and before any event) and the first ``window`` steps.

    Purchases are counted in expectation (the choice probabilities of the shoppers of each step, weighted
    by their baskets) rather than as the sampled choices: the same mean with much less noise, which makes
    the contraction's map smooth enough to reach 0.2 pp at a few thousand consumers."""
    m = Market(scenario, world, alpha, seed, track_expected=True)
    gmv = np.zeros(len(alpha))
    buyers = shoppers = 0.0
    settled = m.warmup_records[len(m.warmup_records) // 2:]
    for rec in settled + [m.step() for _ in range(window)]:
        gmv += rec.expected_gmv
        buyers += rec.expected_buyers.sum()
        shoppers += rec.shoppers
    tot = gmv.sum()
    return (gmv / tot if tot > 0 else np.zeros_like(gmv)), (buyers / shoppers if shoppers else 0.0)


def calibrate(
    scenario: Scenario,
    *,
    tol_pp: float = DEFAULT_TOL_PP,
    max_iter: int = DEFAULT_MAX_ITER,
    on_iter: Callable[[int, float], None] | None = None,
) -> Calibration:
    """Fit the attractiveness of retailers marked 'calibrate'. Deterministic for the scenario's seed.

    Raises :class:`CalibrationError` naming the retailer that cannot be fitted and why.
    """
    names = scenario.retailer_names
    alpha = initial_alpha(scenario)
    cal = np.array([r.calibrate for r in scenario.retailers])
    key = cache_key(scenario, tol_pp, max_iter)
    seed, window = scenario.seed, scenario.calibration_window
    if not cal.any():
        world = build_world(scenario)
        s_hat, conv = window_shares(scenario, world, alpha, seed, window)
        return Calibration(dict(zip(names, map(float, alpha))), 0, {}, math.nan, dict(zip(names, map(float, s_hat))),
                           window, seed, world.n, tol_pp, key)
    conv_target = scenario.consumers.conversion
    target = np.array([r.target_share for r in scenario.retailers])
    q_target = conv_target * target
    world = build_world(scenario)
    step_size, best = 1.0, math.inf
    for it in range(1, max_iter + 1):
        s_hat, conv = window_shares(scenario, world, alpha, seed, window)
        resid = np.where(cal, s_hat - target, 0.0)
        worst = float(np.max(np.abs(resid)) * 100)
        conv_resid = (conv - conv_target) * 100
        if on_iter is not None:
            on_iter(it, max(worst, abs(conv_resid)))
        if worst < tol_pp and abs(conv_resid) < tol_pp:
            return Calibration(
                alpha=dict(zip(names, map(float, alpha))), iterations=it,
                residual_pp={n: float(resid[j] * 100) for j, n in enumerate(names) if cal[j]},
                conversion_residual_pp=float(conv_resid), shares=dict(zip(names, map(float, s_hat))),
                window=window, seed=seed, consumers=world.n, tol_pp=tol_pp, key=key,
            )
        zero = cal & (s_hat <= 0)
        if zero.any():
            j = int(np.flatnonzero(zero)[0])
            raise CalibrationError(
                f"retailer {names[j]!r}: no simulated purchases in the {window}-step calibration window at attractiveness "
                f"{alpha[j]:.3g}; its target share {target[j]:.3g} looks unreachable with these frictions and N={world.n} consumers"
            )
        score = max(worst, abs(conv_resid))
        if score > best:
            step_size = max(step_size * 0.5, 1 / 64)
        best = min(best, score)
        alpha = np.where(cal, alpha + step_size * (np.log(q_target) - np.log(s_hat * conv)), alpha)
        bad = cal & (np.abs(alpha) > ALPHA_LIMIT)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise CalibrationError(
                f"retailer {names[j]!r}: attractiveness diverged to {alpha[j]:.3g} chasing target share {target[j]:.3g} "
                f"(simulated {s_hat[j]:.3g}); the target is unreachable with these frictions, habit and the other retailers' fixed values"
            )
    j = int(np.argmax(np.abs(np.where(cal, s_hat - target, 0))))
    raise CalibrationError(
        f"retailer {names[j]!r}: did not converge in {max_iter} iterations (simulated share {s_hat[j]:.4f} vs target "
        f"{target[j]:.4f}, conversion {conv:.4f} vs {conv_target:.4f}); raise consumers.count or the tolerance"
    )

