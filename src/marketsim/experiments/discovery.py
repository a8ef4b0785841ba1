"""Scenario discovery: under which assumptions does an option lose (or gain) more than a threshold?

Given the uncertain parameters' values of many draws (or a sweep's design points) and, for each, whether the
outcome went beyond the threshold (a *case*), PRIM (the patient rule induction method, Friedman & Fisher 1999,
"Bump hunting in high-dimensional data", Statistics and Computing 9:123-143) finds boxes: ranges of a few
parameters inside which most draws are cases. Scenario discovery (Bryant & Lempert 2010, "Thinking inside the
box", Technological Forecasting & Social Change 77:34-49) reads each box by two numbers:

- **coverage**: of all the cases, the share inside the box (how much of the problem the box explains);
- **density**: of the draws inside the box, the share that are cases (how sure the box is).

The search is the EMA workbench's PRIM (``ema_workbench.analysis.prim``, BSD licence; the optional extra
``pip install 'marketsim[decide]'``), imported only when a search runs. Its settings and why:

- ``peel_alpha = 0.05``: each peeling step cuts 5% of the draws left in the box off one side of one
  parameter (Friedman & Fisher's recommended 0.05-0.10; the workbench's default; small steps give a finely
  resolved trajectory of boxes to choose from);
- ``paste_alpha = 0.05``: the same step when pasting back (the workbench's default);
- ``mass_min = 0.05``: peeling stops at a box holding 5% of the draws (the workbench's default);
- the density PRIM must reach, ``MIN_DENSITY = 0.5`` (assumption): a box in which fewer than half the draws
  are cases is no description of where the cases are.

**Which box.** PRIM peels from the whole space down to ``mass_min``; every box on that peeling trajectory
trades coverage for density (Bryant & Lempert: the analyst picks one). The rule here, stated and
reproducible: the box that maximises the harmonic mean of coverage and density (the box read as a classifier
of the cases: coverage is its recall, density its precision, the harmonic mean their F1 score), among the
boxes whose density is at least ``MIN_DENSITY``. That is the knee of the trade-off: further peeling loses
more coverage than it gains density. Then each restriction that does not raise that score is dropped (Bryant
& Lempert's advice to keep only the restrictions that matter: a dimension peeled by chance at the end of the
trajectory is not reported).

**Several boxes.** The draws inside a box found are set aside and PRIM runs again on the rest, for as many
boxes as asked or until no box reaches ``MIN_DENSITY`` (Friedman & Fisher's covering). Coverage, density and
mass of each box are stated over all draws: coverage is of all cases, density is among the draws of the box
that no earlier box holds.

Every draw counts once: the boxes describe the draws, not a posterior's weights on them.

Numbers here are in stored units (shares as fractions of 1); the words for people are in
:mod:`marketsim.report.discovery`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marketsim.errors import UserError
from marketsim.experiments.sweep.analysis import point_means, quantities
from marketsim.io import dataset
from marketsim.scenario.labels import Quantity, output_quantity

if TYPE_CHECKING:
    from marketsim.experiments.decision import Outcomes

#: PRIM's peeling and pasting steps and its smallest box (docstring: Friedman & Fisher 1999; the workbench's defaults).
PEEL_ALPHA, PASTE_ALPHA, MASS_MIN = 0.05, 0.05, 0.05
#: The least density of a box reported (assumption: a box that holds fewer cases than not describes nothing).
MIN_DENSITY = 0.5
#: Fewer draws than this cannot be searched for boxes (assumption: with fewer, a box rests on one or two draws).
MIN_DRAWS = 8
#: The quantile of the outcome suggested as a threshold when none (or every) draw is a case: a quarter of the
#: draws beyond it (assumption).
SUGGEST_QUANTILE = 0.25

#: PRIM's threshold on a 0/1 outcome: the ones are the cases (see _one_box).
_CASE = 1e-9

INSTALL_HINT = "pip install 'marketsim[decide]'"


@dataclass(frozen=True)
class Box:
    """One box of assumptions: ``limits`` gives for each *restricted* parameter (a column of X) its range
    ``(lo, hi)`` in stored units, ``-inf`` or ``inf`` where the box is open on that side; a draw is in the box
    when ``lo <= value <= hi`` for each. ``coverage``: share of all cases inside the box; ``density``: share of
    cases among the box's draws (those no earlier box holds); ``mass``: share of all draws inside it; ``n``:
    draws inside it; ``cases``: cases inside it."""

    limits: dict[str, tuple[float, float]]
    coverage: float
    density: float
    mass: float
    n: int
    cases: int

    def contains(self, X: pd.DataFrame) -> np.ndarray:
        """Which rows of ``X`` lie in the box (boolean array)."""
        inside = np.ones(len(X), dtype=bool)
        for c, (lo, hi) in self.limits.items():
            v = X[c].to_numpy(dtype=float)
            inside &= (v >= lo) & (v <= hi)
        return inside

    def to_dict(self) -> dict:
        """Plain data (JSON): an open side of a limit is None."""
        return {
            "limits": {
                c: [None if math.isinf(lo) else lo, None if math.isinf(hi) else hi]
                for c, (lo, hi) in self.limits.items()
            },
            "coverage": self.coverage,
            "density": self.density,
            "mass": self.mass,
            "n": self.n,
            "cases": self.cases,
        }


@dataclass(frozen=True)
class Discovery:
    """The boxes found for one question, with what is needed to say them in words.

    ``outcome``: the output's label, unit and scale (display = stored x scale); ``threshold``: in the output's
    display unit (points for a share shift); ``below``: cases are outcomes below the threshold (a threshold < 0:
    "loses more than"), else above it; ``retailer``/``option``: whose outcome under which option, when the output
    is a retailer's share shift; ``parameters``: label, unit and scale of each column of X; ``draws``: how many
    draws (or design points) were searched, ``cases`` how many of them were cases; ``unit_of_draw``: "draws" or
    "design points"; ``outcomes``: each draw's outcome in display units (for the suggestions of a threshold)."""

    boxes: list[Box]
    outcome: Quantity
    threshold: float
    below: bool
    parameters: dict[str, Quantity]
    draws: int
    cases: int
    retailer: str | None = None
    option: str | None = None
    unit_of_draw: str = "draws"
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome.to_dict(),
            "threshold": self.threshold,
            "direction": "below" if self.below else "above",
            "retailer": self.retailer,
            "option": self.option,
            "draws": self.draws,
            "cases": self.cases,
            "unit_of_draw": self.unit_of_draw,
            "parameters": {c: q.to_dict() for c, q in self.parameters.items()},
            "settings": self.settings,
            "boxes": [b.to_dict() for b in self.boxes],
        }


# --------------------------------------------------------------------------- PRIM


def _prim_module():
    """The EMA workbench's PRIM, imported on first use (it takes seconds and warns that ipyparallel, which it
    does not need here, is missing)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ipyparallel.*")
            from ema_workbench.analysis import prim
    except ImportError as e:
        raise UserError(
            f"scenario discovery needs the EMA workbench (ema_workbench), which is not installed; {INSTALL_HINT}"
        ) from e
    return prim


def _score(cases: np.ndarray, n: np.ndarray, total: int, min_density: float) -> np.ndarray:
    """The selection score of boxes with ``cases`` of the ``total`` cases among ``n`` draws: the harmonic mean
    of coverage and density, -1 where the density is below ``min_density`` or the box holds no case."""
    cases, n = np.asarray(cases, dtype=float), np.asarray(n, dtype=float)
    cov = cases / total
    dens = np.divide(cases, n, out=np.zeros_like(cases), where=n > 0)
    f = np.divide(2 * cov * dens, cov + dens, out=np.zeros_like(cov), where=(cov + dens) > 0)
    return np.where((dens >= min_density) & (cases > 0), f, -1.0)


def _one_box(prim, X: pd.DataFrame, y: np.ndarray, min_density: float, settings: dict) -> dict | None:
    """PRIM on the rows ``X``, ``y`` (bool): the chosen box's limits (restricted columns only, open sides
    infinite), or None if no box reaches ``min_density``."""
    lows, highs = X.min(), X.max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecations inside the workbench
        # with a 0/1 outcome any threshold in (0, 1] makes the ones the cases; the workbench 2.x also replaces its
        # box by the whole space when the last box of the trajectory has a density below it, which would hide the
        # earlier boxes the rule here chooses from: the least such threshold (the floor is MIN_DENSITY's). The
        # workbench 3 (Python 3.12+) has no threshold: its outcome is the 0/1 cases themselves.
        extra = {"threshold": _CASE} if "threshold" in inspect.signature(prim.Prim.__init__).parameters else {}
        p = prim.Prim(
            X,
            y.astype(float),
            peel_alpha=settings["peel_alpha"],
            paste_alpha=settings["paste_alpha"],
            mass_min=settings["mass_min"],
            **extra,
        )
        box = p.find_box()
    if box is None:
        return None
    traj = box.peeling_trajectory
    total = int(y.sum())
    score = _score(traj["k"].to_numpy(), traj["n"].to_numpy(), total, min_density)
    if score.max() <= 0:
        return None
    lim = box.box_lims[int(np.argmax(score))]
    limits = {}
    for c in X.columns:
        lo, hi = float(lim.loc[0, c]), float(lim.loc[1, c])
        lo_open, hi_open = lo <= lows[c], hi >= highs[c]
        if not (lo_open and hi_open):
            limits[c] = (-math.inf if lo_open else lo, math.inf if hi_open else hi)

    # keep only the restrictions that matter: drop one whose removal does not lower the score
    def score_of(lims: dict) -> float:
        inside = Box(lims, 0, 0, 0, 0, 0).contains(X)
        return float(_score([y[inside].sum()], [inside.sum()], total, min_density)[0])

    best = score_of(limits)
    changed = True
    while changed and len(limits) > 1:
        changed = False
        for c in sorted(limits, key=lambda c: score_of({k: v for k, v in limits.items() if k != c}), reverse=True):
            rest = {k: v for k, v in limits.items() if k != c}
            s = score_of(rest)
            if s >= best:
                limits, best, changed = rest, s, True
                break
    return limits if best > 0 else None


def discover(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    boxes: int = 1,
    min_density: float = MIN_DENSITY,
    peel_alpha: float = PEEL_ALPHA,
    paste_alpha: float = PASTE_ALPHA,
    mass_min: float = MASS_MIN,
) -> list[Box]:
    """Up to ``boxes`` boxes of the parameters ``X`` (one row per draw, one numeric column per parameter, stored
    units) inside which most draws are cases (``y``, one bool per row), by the rule of the module's docstring.
    An empty list when no box reaches ``min_density``. Columns with one value only are never restricted."""
    y = np.asarray(y, dtype=bool)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must be one bool per row of X ({len(X)}), got shape {y.shape}")
    X = X.loc[:, [c for c in X.columns if X[c].nunique() > 1]].astype(float).reset_index(drop=True)
    total, n_all = int(y.sum()), len(y)
    if total == 0 or X.shape[1] == 0:
        return []
    prim = _prim_module()
    settings = {"peel_alpha": peel_alpha, "paste_alpha": paste_alpha, "mass_min": mass_min}
    found: list[Box] = []
    left = np.ones(n_all, dtype=bool)
    while len(found) < boxes and y[left].sum() > 0 and left.sum() >= 2:
        Xl, yl = X[left].reset_index(drop=True), y[left]
        if yl.all():
            break  # nothing left to tell apart
        limits = _one_box(prim, Xl, yl, min_density, settings)
        if not limits:
            break
        inside = Box(limits, 0, 0, 0, 0, 0).contains(X) & left
        n, cases = int(inside.sum()), int(y[inside].sum())
        found.append(Box(limits, cases / total, cases / n if n else 0.0, n / n_all, n, cases))
        left &= ~inside
    return found


def suggest_threshold(values: np.ndarray, below: bool) -> float:
    """A threshold (same units as ``values``) beyond which about ``SUGGEST_QUANTILE`` of the values lie, in the
    same direction as the one asked."""
    q = SUGGEST_QUANTILE if below else 1 - SUGGEST_QUANTILE
    return float(np.quantile(np.asarray(values, dtype=float), q))


def _search(
    X: pd.DataFrame, values: np.ndarray, threshold: float, what: str, unit: str, boxes: int, unit_of_draw: str
) -> tuple[list[Box], np.ndarray]:
    """Cases (values beyond ``threshold``: below it if it is < 0, else above it), the checks a user hears of
    (too few draws; no case, or only cases: which threshold would have some), and the boxes."""
    if len(values) < MIN_DRAWS:
        raise UserError(
            f"{len(values)} {unit_of_draw} are too few to search for boxes of assumptions; "
            f"at least {MIN_DRAWS} are needed (more than 100 for boxes to trust): "
            + ("project with more --draws" if unit_of_draw == "draws" else "sweep a larger design (design: size:)")
        )
    below = threshold < 0
    y = values < threshold if below else values > threshold
    if not y.any() or y.all():
        which = "none" if not y.any() else "all"
        side = "below" if below else "above"
        span = f"{what} runs from {values.min():+.2f} to {values.max():+.2f}{unit} over the {unit_of_draw}"
        sug = suggest_threshold(values, below)
        if (sug < 0) == below:
            hint = f"--threshold {sug:+.2f} would have about {SUGGEST_QUANTILE:.0%} of them beyond it"
        else:  # nothing on this side of 0 at all: the other direction
            sug = suggest_threshold(values, not below)
            other = "below 0 asks where it falls below" if not below else "of 0 or more asks where it rises above"
            hint = f"a threshold {other} it: --threshold {sug:+.2f} would have about {SUGGEST_QUANTILE:.0%} of them"
        raise UserError(
            f"--threshold {threshold:+g}: {which} of the {len(values)} {unit_of_draw} {'lie' if which == 'all' else 'lies'} "
            f"{side} it ({span}); {hint}"
        )
    return discover(X, y, boxes=boxes), y


def discover_outcomes(o: Outcomes, option: str, retailer: str, threshold_pp: float, *, boxes: int = 1) -> Discovery:
    """The boxes of assumptions under which ``option`` moves ``retailer``'s horizon GMV share against the
    baseline beyond ``threshold_pp`` points: below it when it is < 0 ("loses more than"), above it otherwise
    ("gains more than"). A draw's outcome is its mean shift over its replicates; X is the kept draws' parameter
    values (``o.values``, stored units)."""
    j = o.retailer_index(retailer)
    shift = np.asarray(o.shift(option))  # (K, R, J); both say which retailers and options there are
    if not o.params:
        raise UserError(
            "this projection has no uncertain parameter (one central draw): there are no assumptions to search; "
            "project a scenario with ranges or priors, with --draws"
        )
    per_draw = shift[:, :, j].mean(axis=1) * 100  # (K,) points
    X = pd.DataFrame(np.asarray(o.values, dtype=float), columns=[p.path for p in o.params])
    what = f"{retailer}'s GMV share shift under {option}"
    found, y = _search(X, per_draw, threshold_pp, what, " points", boxes, "draws")
    return Discovery(
        boxes=found,
        outcome=output_quantity(f"shift.gmv_share.{retailer}", currency=o.currency),
        threshold=float(threshold_pp),
        below=threshold_pp < 0,
        parameters={p.path: Quantity(p.label, p.unit, p.scale) for p in o.params},
        draws=len(per_draw),
        cases=int(y.sum()),
        retailer=retailer,
        option=option,
        settings=_settings(),
    )


def sweep_outputs(folder: str | Path) -> list[str]:
    """The outputs a stored sweep records (its manifest's)."""
    return list(dataset.read_manifest(folder)["outputs"])


def discover_sweep(folder: str | Path, output: str, threshold: float, *, boxes: int = 1) -> Discovery:
    """The boxes of a stored sweep's parameters under which ``output`` (its mean over the replicates of a design
    point, at the last recorded step) lies beyond ``threshold``, in the output's display unit (points for a
    share shift): below it when ``threshold`` < 0, else above it. One row per design point."""
    folder = Path(folder)
    manifest = dataset.read_manifest(folder)
    if output not in manifest["outputs"]:
        raise UserError(
            f"--output {output}: not an output of this sweep; its outputs: {', '.join(manifest['outputs'])}"
        )
    df = dataset.load_results(folder)
    if df.empty:
        raise UserError(f"{folder}: no finished runs stored yet; run the sweep first")
    pq, oq = quantities(manifest)
    paths = [p["path"] for p in manifest["parameters"]]
    means = point_means(df, [output], paths)
    X = means[[f"param.{p}" for p in paths]].rename(columns=lambda c: c.removeprefix("param."))
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    X = X[numeric]
    q = oq[output]
    values = means[output].to_numpy(dtype=float) * q.scale
    unit = f" {q.unit}" if q.unit and q.unit != "%" else q.unit
    found, y = _search(X, values, threshold, f"{q.label}", unit, boxes, "design points")
    parts = output.split(".")
    retailer = parts[-1] if parts[0] == "shift" and len(parts) == 3 and parts[1] == "gmv_share" else None
    return Discovery(
        boxes=found,
        outcome=q,
        threshold=float(threshold),
        below=threshold < 0,
        parameters={c: pq[c] for c in numeric},
        draws=len(values),
        cases=int(y.sum()),
        retailer=retailer,
        unit_of_draw="design points",
        settings=_settings(),
    )


def _settings() -> dict:
    return {
        "method": "PRIM (EMA workbench), box of the highest harmonic mean of coverage and density",
        "peel_alpha": PEEL_ALPHA,
        "paste_alpha": PASTE_ALPHA,
        "mass_min": MASS_MIN,
        "min_density": MIN_DENSITY,
    }
