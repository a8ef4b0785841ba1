"""One table of the distributions a number may be drawn from: scenario priors (``uncertain``), sweep
parameters (``range``, ``distribution``) and the draws of a projection all use it.

One class per family holds its parameters (in file order, one spelling in both file formats), the check that
they make a distribution, its inverse CDF from the unit interval and its one-line description:

=============  =====================  ==============================================
family         parameters             distribution
=============  =====================  ==============================================
``uniform``    ``lo``, ``hi``         uniform on [lo, hi] (a ``range: [lo, hi]``)
``normal``     ``mean``, ``sd``       normal (sd > 0)
``lognormal``  ``median``, ``sigma``  exp of a normal with mean ln(median), sd sigma (both > 0)
``triangular`` ``lo``, ``mode``, ``hi``  triangular (lo <= mode <= hi, lo < hi)
=============  =====================  ==============================================

A stored posterior's weighted draws of one parameter are the one further kind, :class:`Empirical`
(``posterior``): a file names it as ``prior: {posterior: FILE, parameter: PATH}``, never by its values.

Sweep files written before wrote a lognormal as ``mu`` (the mean of the log): :data:`OLD_SPELLINGS` says how
such a value is read (median = exp(mu), the same distribution) and :func:`old_spelling_note` the one line that
says how to write it now.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: Unit coordinates are kept this far inside (0, 1) by default, so that no draw is an infinite tail value.
EPS = 1e-12


@dataclass(frozen=True)
class Distribution:
    """A family's parameters (``args``, in the order of :attr:`keys`). Subclasses give :meth:`frozen`."""

    args: tuple[float, ...]

    #: The family's name in files.
    family: ClassVar[str] = ""
    #: Its parameters in file order.
    keys: ClassVar[tuple[str, ...]] = ()
    #: The parameter whose value is the central value a point run uses ("" : the middle of lo and hi).
    centre_key: ClassVar[str] = ""
    #: The cross-parameter rule, as a reader would write it (None: each parameter's own range suffices).
    rule: ClassVar[str | None] = None

    def ok(self) -> bool:
        """Whether the parameters satisfy :attr:`rule` (and every spread is > 0)."""
        return True

    @property
    def centre(self) -> float:
        """The central value: the middle of lo and hi (uniform), else the parameter :attr:`centre_key`."""
        return self.args[self.keys.index(self.centre_key)]

    def frozen(self):
        """The distribution as a frozen ``scipy.stats`` distribution (cdf, moments)."""
        raise NotImplementedError

    def cdf(self, x):
        """P(X <= x)."""
        return self.frozen().cdf(x)

    def ppf(self, u, bounds: tuple[float, float] = (-math.inf, math.inf), eps: float = EPS) -> np.ndarray:
        """Values at unit-interval coordinates ``u`` (clipped to [eps, 1 - eps]): the inverse CDF of the
        distribution truncated to ``bounds`` (a field's allowed interval; draws are also clipped to it)."""
        lo, hi = bounds
        flo, fhi = self.cdf(lo), self.cdf(hi)
        u = np.clip(np.asarray(u, dtype=float), eps, 1 - eps)
        return np.clip(self._ppf(flo + u * (fhi - flo)), lo, hi)

    def _ppf(self, q: np.ndarray) -> np.ndarray:
        return self.frozen().ppf(q)

    def describe(self) -> str:
        """One line, e.g. ``lognormal(median 0.4, sigma 0.5)``."""
        return f"{self.family}(" + ", ".join(f"{k} {v:g}" for k, v in zip(self.keys, self.args, strict=True)) + ")"


@dataclass(frozen=True)
class Uniform(Distribution):
    family: ClassVar[str] = "uniform"
    keys: ClassVar[tuple[str, ...]] = ("lo", "hi")
    rule: ClassVar[str | None] = "lo < hi"

    def ok(self) -> bool:
        return self.args[0] < self.args[1]

    @property
    def centre(self) -> float:
        return (self.args[0] + self.args[1]) / 2

    def frozen(self):
        from scipy import stats

        return stats.uniform(loc=self.args[0], scale=self.args[1] - self.args[0])

    def _ppf(self, q: np.ndarray) -> np.ndarray:
        lo, hi = self.args
        return lo + q * (hi - lo)  # what scipy's uniform computes (q * scale + loc), without its overhead

    def describe(self) -> str:
        """``range lo .. hi`` (as a scenario's ``range`` is written)."""
        return f"range {self.args[0]:g} .. {self.args[1]:g}"


@dataclass(frozen=True)
class Normal(Distribution):
    family: ClassVar[str] = "normal"
    keys: ClassVar[tuple[str, ...]] = ("mean", "sd")
    centre_key: ClassVar[str] = "mean"

    def ok(self) -> bool:
        return self.args[1] > 0

    def frozen(self):
        from scipy import stats

        return stats.norm(loc=self.args[0], scale=self.args[1])


@dataclass(frozen=True)
class Lognormal(Distribution):
    family: ClassVar[str] = "lognormal"
    keys: ClassVar[tuple[str, ...]] = ("median", "sigma")
    centre_key: ClassVar[str] = "median"

    def ok(self) -> bool:
        return self.args[0] > 0 and self.args[1] > 0

    def frozen(self):
        from scipy import stats

        return stats.lognorm(s=self.args[1], scale=self.args[0])


@dataclass(frozen=True)
class Triangular(Distribution):
    family: ClassVar[str] = "triangular"
    keys: ClassVar[tuple[str, ...]] = ("lo", "mode", "hi")
    centre_key: ClassVar[str] = "mode"
    rule: ClassVar[str | None] = "lo <= mode <= hi and lo < hi"

    def ok(self) -> bool:
        lo, mode, hi = self.args
        return lo <= mode <= hi and lo < hi

    def frozen(self):
        from scipy import stats

        lo, mode, hi = self.args
        return stats.triang(c=(mode - lo) / (hi - lo), loc=lo, scale=hi - lo)


#: The families by name, in the order the docs list them.
FAMILIES: dict[str, type[Distribution]] = {c.family: c for c in (Uniform, Normal, Lognormal, Triangular)}


def make(family: str, args) -> Distribution:
    """The distribution of ``family`` with ``args`` in the order of its keys."""
    if family == Empirical.family:
        return Empirical(tuple(args))
    return FAMILIES[family](tuple(args))


#: Old spellings still read: family -> (old keys, how to turn them into the family's keys, how to write it now).
OLD_SPELLINGS: dict[str, tuple[tuple[str, ...], Callable[..., tuple[float, ...]], str]] = {
    "lognormal": (("mu", "sigma"), lambda mu, sigma: (math.exp(mu), sigma), "median: exp(mu)"),
}


def old_spelling_note(where: str, family: str, given: dict[str, Any]) -> str:
    """The one line that says a ``family`` at ``where`` was written in its old spelling and how to write it
    now, e.g. ``sweep.yaml: parameters[0].distribution: 'mu' is the old spelling of a lognormal; write
    median: 1.6487 (= exp(mu)), sigma: 0.5``."""
    old, convert, _ = OLD_SPELLINGS[family]
    new = convert(*(given[k] for k in old))
    now = ", ".join(f"{k}: {v:.6g}" for k, v in zip(FAMILIES[family].keys, new, strict=True))
    return (
        f"{where}: {', '.join(repr(k) for k in old if k not in FAMILIES[family].keys)} is the old spelling of "
        f"a {family}; write {now} (median = exp(mu)); the old spelling still loads"
    )


@dataclass(frozen=True)
class Empirical(Distribution):
    """A weighted sample, e.g. a stored posterior's draws of one parameter (``prior: {posterior: FILE,
    parameter: PATH}``): ``args`` are the n values in increasing order, then their n weights (positive, sum 1).
    Its quantiles are the weighted sample's (the midpoint rule of
    :func:`marketsim.experiments.uncertainty.weighted_quantile`: the empirical CDF interpolated between the
    points); its centre is the weighted median. Not a family a file writes by name."""

    family: ClassVar[str] = "posterior"
    rule: ClassVar[str | None] = "values in increasing order, positive weights"

    @classmethod
    def of(cls, values, weights) -> Empirical:
        """The distribution of ``values`` weighted by ``weights`` (zero weights dropped, the rest normalised)."""
        x, w = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
        keep = w > 0
        x, w = x[keep], w[keep]
        order = np.argsort(x, kind="stable")
        x, w = x[order], w[order]
        w = w / w.sum() if w.size else w
        return cls(tuple(float(v) for v in x) + tuple(float(v) for v in w))

    @property
    def values(self) -> np.ndarray:
        return np.asarray(self.args[: len(self.args) // 2], dtype=float)

    @property
    def weights(self) -> np.ndarray:
        return np.asarray(self.args[len(self.args) // 2 :], dtype=float)

    def _grid(self) -> np.ndarray:
        w = self.weights
        return (np.cumsum(w) - 0.5 * w) / w.sum()

    def ok(self) -> bool:
        x, w = self.values, self.weights
        return len(self.args) % 2 == 0 and x.size > 0 and bool(np.all(np.diff(x) >= 0)) and bool(np.all(w > 0))

    @property
    def centre(self) -> float:
        return float(self._ppf(np.array(0.5)))

    def cdf(self, x):
        return np.interp(x, self.values, self._grid(), left=0.0, right=1.0)

    def _ppf(self, q: np.ndarray) -> np.ndarray:
        return np.interp(q, self._grid(), self.values)

    def frozen(self):
        return _FrozenSample(self)

    def describe(self) -> str:
        """``posterior(median m, 90% a .. b, n draws)``."""
        q5, q50, q95 = self._ppf(np.array([0.05, 0.5, 0.95]))
        return f"posterior(median {q50:.4g}, 90% {q5:.4g} .. {q95:.4g}, {self.values.size} draws)"


class _FrozenSample:
    """The few ``scipy.stats`` frozen-distribution methods the code uses, for an :class:`Empirical`."""

    def __init__(self, law: Empirical):
        self.law = law

    def cdf(self, x):
        return self.law.cdf(x)

    def ppf(self, q):
        return self.law._ppf(np.asarray(q, dtype=float))

    def support(self) -> tuple[float, float]:
        x = self.law.values
        return float(x[0]), float(x[-1])

    def mean(self) -> float:
        return float(self.law.weights @ self.law.values)

    def std(self) -> float:
        m = self.mean()
        return math.sqrt(max(float(self.law.weights @ (self.law.values - m) ** 2), 0.0))
