"""How a scenario is fitted to its observations: the options of :func:`marketsim.fit.calibrate.calibrate`, the fit
cache (:func:`marketsim.fit.cache.fitted`) and the experiments' fit task (:func:`marketsim.experiments.tasks.fit_task`).

One frozen value travels through those signatures (and to worker processes: it pickles), passed by keyword,
instead of a tuple of bare booleans."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marketsim.fit.calibrate import Calibration


@dataclass(frozen=True)
class FitOptions:
    """What a fit is asked to do. The defaults are what ``marketsim calibrate`` and a plain run use.

    until: fit cut-off date (inclusive): observations ending on or before it are fitted. None: the scenario's
        own ``fit_until`` (default: the first event), so a fit never sees what the events did.
    tol_pp: the largest residual (percentage points) the fit accepts. None: the scenario's own default
        tolerance (:func:`marketsim.fit.calibrate.default_tolerance`, from its observations' sampling noise).
    drop_unidentified: fix at 0 the trends the observations before ``until`` cannot identify (fewer than two
        periods) instead of refusing. False: a scenario asks for a trend only where its data can pin it; a
        back-test, which fits on less data than the scenario was written for, sets it.
    allow_fixed: a scenario with nothing to fit (no ``calibrate``) still gets its residuals evaluated against
        the observations. False: such a scenario has nothing to fit; the posterior fit sets it so that every
        draw is weighed.
    start: the fit of a nearby scenario (a projection's central values) whose values and Jacobian start the
        final stage; if that does not converge the fit starts over. None: a cold start. It changes the
        iterations, not the answer's tolerance, and it is not part of the cache key.
    """

    until: dt.date | None = None
    tol_pp: float | None = None
    drop_unidentified: bool = False
    allow_fixed: bool = False
    start: Calibration | None = None

    def but(self, **fields: Any) -> FitOptions:
        """A copy with ``fields`` changed (TypeError for a name that is not a field)."""
        return dataclasses.replace(self, **fields) if fields else self


def fit_options(options: FitOptions | None, fields: dict[str, Any]) -> FitOptions:
    """``options`` (default: :class:`FitOptions`) with the keyword ``fields`` a caller gave one by one."""
    return (options or FitOptions()).but(**fields)
