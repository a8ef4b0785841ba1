"""The observation model (docs/model.md section 8, "v3: observation error"): how far a published share may sit from
the simulated share plus its source's offset.

An observed share of retailer j from source s is, in points of share,

    y = m_j(theta) + offset_(s, j) + e,    e ~ Normal(0, sigma_s^2),

with m_j the simulated share over the observation's period (the parameter draws and the replicates carry its
uncertainty), offset_(s, j) the source's constant level difference for j (fitted: :mod:`marketsim.fit.calibrate`)
and sigma_s the error of one figure of source s around its own level.

**sigma_s** is estimated from the fit's residuals of source s with a conjugate prior (Gelman et al. 2013, "Bayesian
Data Analysis", 3rd ed., section 2.6, normal model with unknown variance): sigma_s^2 ~ Scaled-Inv-chi^2(nu0, tau0^2)
(:data:`SIGMA_PRIOR_SCALE_PP`, :data:`SIGMA_PRIOR_DOF`). The residuals of a fit are smaller than the errors: the
fitted parameters and offsets absorb part of them. Source s is therefore credited with its residual degrees of
freedom d_s = sum over its residuals of (1 - h_ii), h the leverages of the fit's linearised least-squares problem (the
hat matrix of the offsets' indicator columns and the Jacobian of the fitted attractiveness, trends and season sizes,
plus one column per observation that gives every retailer, whose residuals sum to 0): E[SS_s] = sigma^2 d_s for
equal errors, and the d_s add up to the fit's residual degrees of freedom. The posterior is

    sigma_s^2 | residuals ~ Scaled-Inv-chi^2(nu0 + d_s, (nu0 tau0^2 + SS_s) / (nu0 + d_s)),

SS_s the sum of the squared residuals of s. A source without residual degrees of freedom (one observation, every
residual absorbed by its offset, or a source the fit never saw) keeps the prior. Without a stored Jacobian the
fitted parameters' leverage is spread evenly over the fit's equations.

**Offsets** carry their uncertainty: a fitted offset is the mean gap of its n_g observations, so its standard
error is sigma_s / sqrt(n_g) (the part of its error that comes from the fitted parameters is not in it: the
parameter draws refit every offset and carry that part). The level source of a retailer (the primary source, or
``level_sources``) has offset 0 by definition. A (source, retailer) pair the fit never saw has no offset that could
be fitted: its offset is a draw from the spread of offsets between sources, Normal(0, tau_off^2) with
tau_off^2 ~ Scaled-Inv-chi^2 whose prior (:data:`OFFSET_PRIOR_SCALE_PP`, :data:`OFFSET_PRIOR_DOF`) is updated with
the fit's own offsets (each one a draw of that spread, one degree of freedom each).

**Predictive samples** (:meth:`ObservationModel.noise`): per sample, sigma_s^2 is drawn from its posterior, then
the offset's error (Normal(0, sigma_s^2 / n_g), or the unseen pair's draw) and the figure's error Normal(0,
sigma_s^2) are added: marginally a Student t (the posterior predictive) for a level pair, with scale
s_n sqrt(1 + 1/n_g) for a fitted offset. A shift between two arms of a projection is a model quantity: no
observation error enters it.

``--sigma PP`` (``marketsim fit``, ``marketsim backtest``) overrides sigma_s with PP points for every source
(no draw); the offsets keep their uncertainty (PP / sqrt(n_g); the unseen pairs' spread).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from marketsim.fit.calibrate import Calibration

#: Prior scale tau0 of each source's error sigma_s (points of share). Assumption, anchored on docs/sources.md:
#: sources disagree by 3-8 points for the same period; a constant offset per (source, retailer) takes the steady
#: part (CECRC puts JD 3-4 points above iResearch, [cecrc-2012]); what is left moves from one period to the next:
#: CECRC and iResearch put Tmall 7.8 points apart in Q3 2012 (46.8 against 54.6, [cecrc-2012q3],
#: [iresearch-2012q3]) and 0.2 apart in H1/Q2 2013 (50.4 against 50.6, [cecrc-2013h1], [iresearch-2013q2]). That
#: change of 7.6 points is a difference of four figures' errors (sd 2 sigma): a 1.5-sigma change at 2.5 points.
SIGMA_PRIOR_SCALE_PP = 2.5
#: Prior degrees of freedom nu0 of sigma_s: the prior is worth 4 residuals (assumption: weak, so a source with
#: more than a few residual degrees of freedom is set by its own residuals; at 4 the prior predictive, a Student t
#: with 4 degrees of freedom, has a finite variance).
SIGMA_PRIOR_DOF = 4.0
#: Prior scale of the spread of offsets between sources (points), for a (source, retailer) pair no fit saw:
#: CECRC's definitions put JD 3-4 points above iResearch (docs/sources.md [cecrc-2012]); the midpoint. Assumption.
OFFSET_PRIOR_SCALE_PP = 3.5
#: Prior degrees of freedom of that spread (assumption: worth 3 offsets; with scale 3.5 the prior predictive 90%
#: interval is +-8.2 points, the range of the sources' disagreement, 3-8 points, docs/sources.md).
OFFSET_PRIOR_DOF = 3.0
#: Residual degrees of freedom under which a source is said to keep its prior (a rounding floor of the leverages).
DOF_FLOOR = 0.05


@dataclass(frozen=True)
class Prior:
    """The stated priors (module docstring): scale (points) and degrees of freedom of each source's error, and of
    the spread of offsets between sources."""

    scale_pp: float = SIGMA_PRIOR_SCALE_PP
    dof: float = SIGMA_PRIOR_DOF
    offset_scale_pp: float = OFFSET_PRIOR_SCALE_PP
    offset_dof: float = OFFSET_PRIOR_DOF

    def describe(self) -> str:
        """The prior in a few words (the outputs' captions)."""
        return f"prior {self.scale_pp:g} pp worth {self.dof:g} residuals, an assumption"


def scaled_inv_chi2(ss: float, dof: float, prior_scale: float, prior_dof: float) -> tuple[float, float]:
    """The conjugate update of a variance: prior Scaled-Inv-chi^2(prior_dof, prior_scale^2) and a sum of squares
    ``ss`` on ``dof`` degrees of freedom give Scaled-Inv-chi^2(nu, scale^2) with nu = prior_dof + dof and
    scale^2 = (prior_dof prior_scale^2 + ss) / nu. Returns (nu, scale)."""
    nu = prior_dof + dof
    return nu, math.sqrt((prior_dof * prior_scale**2 + ss) / nu)


@dataclass(frozen=True)
class ErrorScale:
    """A standard deviation (points) with its uncertainty: sigma^2 ~ Scaled-Inv-chi^2(nu, scale_pp^2) (``nu``
    infinite: exactly ``scale_pp``). ``n``, ``dof`` and ``ss``: the residuals it was estimated from; ``origin``:
    "estimated", "prior" or "override"."""

    scale_pp: float
    nu: float
    n: int = 0
    dof: float = 0.0
    ss: float = 0.0
    origin: str = "prior"

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws of sigma (points) from its posterior: sigma^2 = nu scale^2 / chi^2_nu."""
        if not math.isfinite(self.nu):
            return np.full(size, self.scale_pp)
        return self.scale_pp * np.sqrt(self.nu / rng.chisquare(self.nu, size=size))

    def describe(self) -> str:
        """How it was set, in a few words (the output's caption)."""
        if self.origin == "override":
            return "--sigma (override)"
        if self.origin == "estimated":
            return f"estimated from {self.n} residuals ({self.dof:.1f} dof) and the prior"
        why = f"{self.n} residual{'s' if self.n != 1 else ''}, no dof left" if self.n else "never fitted"
        return f"the prior, an assumption: {why}"

    def to_dict(self) -> dict:
        return {
            "sigma_pp": self.scale_pp,
            "nu": self.nu if math.isfinite(self.nu) else None,
            "n": self.n,
            "dof": self.dof,
            "ss": self.ss,
            "from": self.origin,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ErrorScale:
        nu = d["nu"]
        return cls(float(d["sigma_pp"]), math.inf if nu is None else float(nu), d["n"], d["dof"], d["ss"], d["from"])


@dataclass(frozen=True)
class ObservationModel:
    """Per source its error (:class:`ErrorScale`), the fitted offsets (value in points, observations behind it), the
    (source, retailer) pairs the fit saw, and the spread of offsets for the pairs it did not (module docstring)."""

    errors: dict[str, ErrorScale]
    offsets: dict[str, dict[str, tuple[float, int]]]  # source -> retailer -> (offset pp, observations behind it)
    seen: frozenset[tuple[str, str]]  # (source, retailer) pairs in the fit's observations
    offset_spread: ErrorScale
    prior: Prior = field(default_factory=Prior)
    override: float | None = None

    def error(self, source: str) -> ErrorScale:
        """Source ``source``'s error: its estimate, the override, or (a source the fit never saw) the prior."""
        if self.override is not None:
            return ErrorScale(self.override, math.inf, origin="override")
        e = self.errors.get(source)
        return e if e is not None else ErrorScale(self.prior.scale_pp, self.prior.dof)

    def offset(self, source: str, retailer: str) -> tuple[float, str]:
        """(offset in points, kind): kind "fitted" (with its standard error), "level" (the retailer's level source:
        0 exactly) or "unseen" (no fit saw the pair: 0 plus a draw from the offsets' spread)."""
        d = self.offsets.get(source, {})
        if retailer in d:
            return d[retailer][0], "fitted"
        return 0.0, "level" if (source, retailer) in self.seen else "unseen"

    def offset_se(self, source: str, retailer: str) -> float:
        """Standard error (points) of a fitted offset: sigma_s / sqrt(n_g), sigma_s at its posterior mean (its scale
        where that has no mean); 0 for a level pair; the predictive sd of the spread for an unseen pair."""
        _, kind = self.offset(source, retailer)
        if kind == "level":
            return 0.0
        if kind == "unseen":
            return _sd(self.offset_spread)
        return _sd(self.error(source)) / math.sqrt(self.offsets[source][retailer][1])

    def noise(self, source: str, retailer: str, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` predictive draws (points, centred) of a figure of ``retailer`` from ``source`` around the
        simulated share plus the fitted offset: the offset's error plus the figure's own (module docstring)."""
        sigma = self.error(source).draw(rng, size)
        _, kind = self.offset(source, retailer)
        if kind == "fitted":
            off = sigma / math.sqrt(self.offsets[source][retailer][1]) * rng.standard_normal(size)
        elif kind == "unseen":
            off = self.offset_spread.draw(rng, size) * rng.standard_normal(size)
        else:
            off = np.zeros(size)
        return off + sigma * rng.standard_normal(size)

    def kernel_sigma(self, sources: Sequence[str]) -> np.ndarray:
        """Per residual of the given sources, the sigma (points) of a Gaussian kernel: each source's posterior scale
        (or the override)."""
        return np.array([self.error(s).scale_pp for s in sources], dtype=float)

    def summary(self) -> dict[str, dict]:
        """Per source the fit saw: its error as plain data with a "described" phrase (the output's caption)."""
        return {s: {**self.error(s).to_dict(), "described": self.error(s).describe()} for s in sorted(self.errors)}

    def to_dict(self) -> dict:
        return {
            "errors": {s: e.to_dict() for s, e in sorted(self.errors.items())},
            "offsets": {s: {r: list(v) for r, v in d.items()} for s, d in self.offsets.items()},
            "seen": sorted([s, r] for s, r in self.seen),
            "offset_spread": self.offset_spread.to_dict(),
            "prior": [self.prior.scale_pp, self.prior.dof, self.prior.offset_scale_pp, self.prior.offset_dof],
            "override": self.override,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ObservationModel:
        return cls(
            {s: ErrorScale.from_dict(e) for s, e in d["errors"].items()},
            {s: {r: (float(v[0]), int(v[1])) for r, v in x.items()} for s, x in d["offsets"].items()},
            frozenset((s, r) for s, r in d["seen"]),
            ErrorScale.from_dict(d["offset_spread"]),
            Prior(*d["prior"]),
            d["override"],
        )


def _sd(e: ErrorScale) -> float:
    """The posterior mean of sigma^2, square-rooted (its scale where nu <= 2: no finite mean)."""
    if not math.isfinite(e.nu) or e.nu <= 2:
        return e.scale_pp
    return e.scale_pp * math.sqrt(e.nu / (e.nu - 2))


def residual_dof(
    n_rows: int,
    groups: Sequence[Sequence[int]],
    jacobian: np.ndarray | None = None,
    n_params: int = 0,
    extra_rows: int = 0,
) -> np.ndarray:
    """Per row of a least-squares fit, 1 - h_ii (clipped at 0): the row's share of the residual degrees of freedom.
    ``groups``: rows (indices < ``n_rows``) that a fitted constant absorbs (an offset, or an observation whose
    residuals sum to 0); ``jacobian`` (rows x parameters, ``n_rows`` rows or more: extra rows, e.g. the conversion,
    count in the hat matrix and are not returned) of the other fitted parameters. Without a Jacobian, ``n_params``
    parameters' leverage is spread evenly over the rows and ``extra_rows`` more."""
    m = n_rows + extra_rows if jacobian is None else len(jacobian)
    cols = []
    for g in groups:
        c = np.zeros(m)
        c[list(g)] = 1.0
        cols.append(c)
    if jacobian is not None and np.size(jacobian):
        J = np.asarray(jacobian, dtype=float).reshape(m, -1)
        cols += [J[:, k] for k in range(J.shape[1]) if np.any(J[:, k] != 0)]
    h = np.zeros(m)
    if cols:
        A = np.column_stack([c / np.linalg.norm(c) for c in cols])
        U, s, _ = np.linalg.svd(A, full_matrices=False)
        rank = int(np.sum(s > s.max() * 1e-8))
        h = np.sum(U[:, :rank] ** 2, axis=1)
    if jacobian is None and n_params > 0:
        h = h + n_params / m
    return np.clip(1.0 - h[:n_rows], 0.0, 1.0)


def estimate(
    sources: Sequence[str],
    retailers: Sequence[str],
    residuals: Sequence[float] | np.ndarray,
    *,
    offsets: Mapping[str, Mapping[str, float]] | None = None,
    jacobian: np.ndarray | None = None,
    n_params: int = 0,
    extra_rows: int = 0,
    sum_zero: Sequence[Sequence[int]] = (),
    prior: Prior | None = None,
    override: float | None = None,
) -> ObservationModel:
    """The observation model of a fit from its residual rows (``sources``, ``retailers``, ``residuals`` in points,
    one per fitted share), its fitted ``offsets`` (source -> retailer -> points), the Jacobian of its other fitted
    parameters (see :func:`residual_dof`; without one, ``n_params`` over the rows and ``extra_rows`` more) and the rows of each observation whose residuals sum to 0
    (``sum_zero``). Module docstring for the model."""
    prior = prior or Prior()
    offsets = offsets or {}
    r = np.asarray(residuals, dtype=float)
    src, ret = list(sources), list(retailers)
    groups: list[list[int]] = []
    fitted: dict[str, dict[str, tuple[float, int]]] = {}
    for s, d in offsets.items():
        for rn, v in d.items():
            rows = [i for i in range(len(r)) if src[i] == s and ret[i] == rn]
            if rows:
                groups.append(rows)
                fitted.setdefault(s, {})[rn] = (float(v), len(rows))
    dof = residual_dof(len(r), groups + [list(g) for g in sum_zero], jacobian, n_params, extra_rows)
    errors = {}
    for s in sorted(set(src)):
        rows = [i for i in range(len(r)) if src[i] == s]
        d_s, ss = float(dof[rows].sum()), float(np.sum(r[rows] ** 2))
        if d_s < DOF_FLOOR:
            errors[s] = ErrorScale(prior.scale_pp, prior.dof, len(rows), d_s, ss, "prior")
        else:
            nu, scale = scaled_inv_chi2(ss, d_s, prior.scale_pp, prior.dof)
            errors[s] = ErrorScale(scale, nu, len(rows), d_s, ss, "estimated")
    values = [v for d in fitted.values() for v, _ in d.values()]
    ss_off = float(np.sum(np.square(values))) if values else 0.0
    nu_off, scale_off = scaled_inv_chi2(ss_off, len(values), prior.offset_scale_pp, prior.offset_dof)
    spread = ErrorScale(scale_off, nu_off, len(values), float(len(values)), ss_off, "estimated" if values else "prior")
    return ObservationModel(errors, fitted, frozenset(zip(src, ret, strict=True)), spread, prior, override)


def from_calibration(
    cal: Calibration, *, override: float | None = None, prior: Prior | None = None
) -> ObservationModel:
    """The observation model of a stored fit (:class:`marketsim.fit.calibrate.Calibration`): its residual rows, its
    offsets, its Jacobian (rows: the observed shares, then the conversion where it is fitted) and, where none is
    stored, its parameter count from its degrees of freedom."""
    rows = cal.observations
    n_retailers = len(cal.alpha)
    by_obs: dict[tuple, list[int]] = {}
    for i, o in enumerate(rows):
        by_obs.setdefault((o["source"], o["period"]["start"], o["period"]["end"]), []).append(i)
    full = [g for g in by_obs.values() if len(g) == n_retailers]  # every retailer given: residuals sum to 0
    J = None
    if cal.jacobian is not None and len(cal.jacobian) >= len(rows):
        J = np.asarray(cal.jacobian, dtype=float).reshape(len(cal.jacobian), -1)
    n_offsets = sum(len(d) for d in cal.offsets.values())
    conversion = 0 if math.isnan(cal.conversion_residual_pp) else 1
    n_params = max(len(rows) - len(full) + conversion - cal.dof - n_offsets, 0)
    return estimate(
        [o["source"] for o in rows],
        [o["retailer"] for o in rows],
        [o["residual_pp"] for o in rows],
        offsets=cal.offsets,
        jacobian=J,
        n_params=n_params,
        extra_rows=conversion,
        sum_zero=full,
        prior=prior,
        override=override,
    )
