"""Parameter sweeps: the sweep file, its design, and the runner (local processes or a Dask cluster).

A sweep file (``schema: marketsim-sweep/v1``) names a base scenario, the parameters to vary by their
dotted path in the scenario, a design (full grid, Latin hypercube, Sobol or Morris), replicates per
point and the outputs to record. Every (point, replicate) pair is one run with its own seed, spawned
from the sweep seed and the run's index (``SeedSequence(seed, spawn_key=(run_id,))``), so the numbers do
not depend on the executor or on the number of workers.

Designs come from scipy.stats.qmc (Latin hypercube) and SALib (Saltelli/Sobol and Morris samplers), in
the unit hypercube; each parameter maps its unit coordinate through the inverse CDF of its distribution
(uniform over ``range``, or ``normal``/``lognormal``/``triangular``), or through its list of ``values``.

Execution uses one code path, the ``concurrent.futures`` interface: local worker processes by default, or
a Dask cluster (:mod:`marketsim.runtime.executor`).

Everything is checked before the first run: the file, the size of the design (computed from the spec,
before any point is built), every parameter value (each must make a valid scenario that keeps what the
outputs refer to: retailers, events, providers and the number of steps), and, when resuming, every stored
row against the spec (:func:`check_stored`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.errors import Interrupted, UserError
from marketsim.experiments.tasks import run_forked
from marketsim.fit.cache import cache_dir, fitted
from marketsim.io import dataset, store
from marketsim.runtime.digest import digest
from marketsim.runtime.executor import WorkerLost, deferred_interrupt
from marketsim.scenario import bundled, yamlsafe
from marketsim.scenario import schema as S
from marketsim.scenario.core import Scenario, ScenarioError, Validator, did_you_mean, load_scenario, read_yaml
from marketsim.scenario.distributions import FAMILIES, OLD_SPELLINGS, Distribution, Lognormal, make, old_spelling_note
from marketsim.scenario.labels import output_quantity, parameter_quantity
from marketsim.scenario.schema import DESIGNS, METRICS, STAND_INS, SWEEP_SCHEMA  # noqa: F401  (the file format: schema.py)

MAX_RUNS = 1_000_000
#: Spec keys that do not change any stored row: editing them keeps the spec hash (and resuming works).
NEUTRAL_KEYS = ("name", "description", "batch_runs", "base")
#: Keys of one parameter that change no stored row (display only).
NEUTRAL_PARAMETER_KEYS = ("label",)
#: Design points checked against the scenario schema before a run starts (beyond that: the corners only).
MAX_CHECKED_POINTS = 100_000


@dataclass(frozen=True)
class Parameter:
    path: str
    kind: str  # "range" | "values" | "normal" | "lognormal" | "triangular"
    args: tuple  # as the manifest records them: (lo, hi) | values | (mean, sd) | (mu, sigma) | (lo, mode, hi)
    label: str | None = None  # for tables and charts; None: a readable form of the path (labels.py)
    #: The distribution drawn from (:mod:`marketsim.distributions`); None: the one ``kind`` and ``args`` give.
    law: Distribution | None = field(default=None, compare=False)

    def distribution(self) -> Distribution | None:
        """The distribution the values are drawn from (a ``range`` is uniform); None for a list of ``values``.
        The manifest records a lognormal as (mu, sigma): median = exp(mu)."""
        if self.law is not None or self.kind == "values":
            return self.law
        if self.kind == "lognormal":
            return Lognormal((math.exp(self.args[0]), self.args[1]))
        return make("uniform" if self.kind == "range" else self.kind, self.args)

    def from_unit(self, u: np.ndarray) -> np.ndarray | list:
        """Map unit-hypercube coordinates to parameter values (inverse CDF)."""
        if self.kind == "values":
            u = np.clip(np.asarray(u, dtype=float), 1e-9, 1 - 1e-9)
            idx = np.minimum((u * len(self.args)).astype(int), len(self.args) - 1)
            return [self.args[i] for i in idx]
        return self.distribution().ppf(u, eps=1e-9)

    @property
    def name(self) -> str:
        return self.path


@dataclass(frozen=True)
class Sweep:
    name: str
    source: str
    seed: int
    model: str  # "marketsim" or a stand-in
    base: Scenario | None
    parameters: tuple[Parameter, ...]
    design: str
    size: int  # grid: levels per range parameter; lhs: points; sobol: base samples N; morris: trajectories
    levels: int  # morris levels
    replicates: int
    outputs: tuple[str, ...]
    shift_against: tuple[str, ...] | None  # event ids removed for the baseline; () = all events; None = no shift
    record_every: int | None  # None = the horizon only
    average_last: int  # horizon outputs are means over the last K steps (1 = the horizon week alone)
    batch_runs: int
    raw: dict

    def digest(self) -> str:
        """Hash of everything the stored rows depend on: the resolved base scenario (after the consumers/steps
        overrides) and the spec minus the keys that change nothing in a row (name, description, batch_runs,
        the base file's path: its content is hashed instead; a parameter's label)."""
        spec = {k: v for k, v in self.raw.items() if k not in NEUTRAL_KEYS}
        if isinstance(spec.get("parameters"), list):
            spec["parameters"] = [
                {k: v for k, v in p.items() if k not in NEUTRAL_PARAMETER_KEYS} if isinstance(p, dict) else p
                for p in spec["parameters"]
            ]
        d = {"spec": spec, "base": self.base.digest() if self.base else None}
        return digest(d, 16, spaced=True)

    @property
    def n_runs(self) -> int:
        """Runs in the sweep, computed from the spec alone (nothing is built): see :func:`design_runs`."""
        return design_runs(self.design, self.size, self.parameters) * self.replicates

    def unit_design(self) -> np.ndarray:
        """(points, D) coordinates in the unit hypercube (deterministic for the sweep seed)."""
        D = len(self.parameters)
        if self.design == "grid":
            axes = []
            for p in self.parameters:
                k = len(p.args) if p.kind == "values" else self.size
                axes.append((np.arange(k) + 0.5) / k)
            return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, D)
        if self.design == "lhs":
            from scipy.stats import qmc

            return qmc.LatinHypercube(d=D, seed=np.random.default_rng(self.seed)).random(self.size)
        problem = self.problem_unit()
        if self.design == "sobol":
            from SALib.sample import sobol

            return sobol.sample(problem, self.size, calc_second_order=False, seed=self.seed)
        from SALib.sample import morris

        return morris.sample(problem, self.size, num_levels=self.levels, seed=self.seed)

    def problem_unit(self) -> dict:
        return {
            "num_vars": len(self.parameters),
            "names": [p.path for p in self.parameters],
            "bounds": [[0.0, 1.0]] * len(self.parameters),
        }

    def points(self) -> list[dict[str, Any]]:
        U = self.unit_design()
        cols = [p.from_unit(U[:, k]) for k, p in enumerate(self.parameters)]
        return [{p.path: _plain(cols[k][i]) for k, p in enumerate(self.parameters)} for i in range(len(U))]


def design_runs(design: str, size: int, parameters: tuple[Parameter, ...]) -> int:
    """Design points of a design (exact Python integer; builds nothing): a grid multiplies the levels of
    every parameter, Sobol (Saltelli, first and total order) takes N (D + 2), Morris N (D + 1)."""
    D = len(parameters)
    if design == "grid":
        return math.prod(len(p.args) if p.kind == "values" else size for p in parameters)
    if design == "lhs":
        return size
    if design == "sobol":
        return size * (D + 2)
    return size * (D + 1)


def _plain(x):
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


# --------------------------------------------------------------------------- loading and validation


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file: per-field and per-container checks from its declared format (``schema.SWEEP``),
    then the rules between fields and against the base scenario. Raises :class:`ScenarioError` (one line)."""
    T = S.SWEEP
    path = bundled.resolve(str(path))  # a bare name means the bundled sweep of that name
    data, lines = read_yaml(path)
    v = Validator(str(path), lines)
    v.wrong_kind(data, "sweep")
    d = v.block(T, data, "")
    v.version(T, d)
    name = v.get(T, d, "name", "")
    model = v.get(T, d, "model", "")
    base = None
    if model == "marketsim":
        if "base" not in d:
            v.fail("(top level)", "missing required key 'base' (the scenario file the sweep varies)")
        bname = v.get(T, d, "base", "")
        bpath = Path(path).parent / bname
        # what the path is, and that it holds a YAML mapping, reported at this file's 'base:' line
        yamlsafe.load_file(
            bpath, referrer=yamlsafe.Referrer(str(path), lines.get("base"), "base", f"base scenario {bname[:200]!r}")
        )
        base = load_scenario(bpath)
        over = {}
        if "consumers" in d:
            over["consumers.count"] = v.get(T, d, "consumers", "")
        if "steps" in d:
            over["calendar.steps"] = v.get(T, d, "steps", "")
        base = base.with_values(over) if over else base
    D = T["design"]
    dd = v.block(D, d["design"], "design")
    design = v.get(D, dd, "method", "design")
    size = v.get(D, dd, "size", "design", default={"grid": 3, "lhs": 16, "sobol": 8, "morris": 4}[design])
    if design == "sobol" and size & (size - 1):
        v.fail(
            "design.size",
            f"{size} is not a power of 2; allowed: 2, 4, 8, 16, ... (Sobol sequences balance at powers of 2)",
        )
    levels = v.get(D, dd, "levels", "design")
    replicates = v.get(T, d, "replicates", "")
    params, probes = _parameters(v, d["parameters"], design, model)
    n = design_runs(design, size, params) * replicates  # before anything is built or run
    if n > MAX_RUNS:
        v.fail(
            "design",
            f"{n:,} runs ({design} design, size {size}, {len(params)} parameters, {replicates} replicates); "
            f"allowed: at most {MAX_RUNS:,}",
        )
    if model == "marketsim":
        for i, (par, par_probes) in enumerate(zip(params, probes, strict=True)):
            _probe_parameter(v, par, par_probes, base, f"parameters[{i}]")
    outputs = _outputs(v, d.get("outputs"), base, model)
    shift = d.get("shift_against")
    if shift is not None:
        if shift == "all":
            shift = ()
        elif isinstance(shift, list):
            known = [e.id for e in base.events] if base else []
            for i, e in enumerate(shift):
                v.string(e, f"shift_against[{i}]", tuple(known), what="event id")
            shift = tuple(shift)
        else:
            v.fail("shift_against", "expected 'all' or a list of event ids")
    if any(o.startswith("shift.") for o in outputs) and shift is None:
        v.fail("outputs", "shift.* outputs need 'shift_against' (the events removed in the baseline, or 'all')")
    if model == "marketsim":
        _check_corners(v, params, base)
    sweep = Sweep(
        name=name,
        source=str(path),
        seed=v.get(T, d, "seed", ""),
        model=model,
        base=base,
        parameters=params,
        design=design,
        size=size,
        levels=levels,
        replicates=replicates,
        outputs=outputs,
        shift_against=shift,
        record_every=v.get(T, d, "record_every", ""),
        average_last=v.get(T, d, "average_last", ""),
        batch_runs=v.get(T, d, "batch_runs", ""),
        raw=data,
    )
    return sweep


def _parameters(
    v: Validator, d: Any, design: str, model: str
) -> tuple[tuple[Parameter, ...], list[list[tuple[Any, str]]]]:
    """The parameters' shapes (no scenario is built yet) and, per parameter, the values to probe with
    :func:`_probe_parameter` (each with the sweep field it comes from)."""
    P = S.PARAMETER
    out = []
    all_probes = []
    for i, p in enumerate(v.container(S.SWEEP["parameters"], d, "parameters")):
        fp = f"parameters[{i}]"
        p = v.block(P, p, fp)
        path = v.get(P, p, "path", fp)
        label = v.get(P, p, "label", fp) if "label" in p else None
        given = [k for k in ("range", "values", "distribution") if k in p]
        if len(given) != 1:
            v.fail(fp, "give exactly one of 'range: [lo, hi]', 'values: [...]' or 'distribution: {type: ..., ...}'")
        kind = given[0]
        if kind == "range":
            r = v.check(P["range"], p["range"], f"{fp}.range")
            lo, hi = v.number(r[0], f"{fp}.range[0]"), v.number(r[1], f"{fp}.range[1]")
            if not lo < hi:
                v.fail(f"{fp}.range", f"lo {lo} is not below hi {hi}")
            par = Parameter(path, "range", (lo, hi), label)
            probes = [(lo, f"{fp}.range[0]"), (hi, f"{fp}.range[1]")]
        elif kind == "values":
            vals = v.check(P["values"], p["values"], f"{fp}.values")
            if design in ("sobol", "morris"):
                v.fail(f"{fp}.values", f"a {design} design needs continuous parameters; use 'range' or 'distribution'")
            par = Parameter(path, "values", tuple(vals), label)
            probes = [(x, f"{fp}.values[{k}]") for k, x in enumerate(vals)]
        else:
            DV, dp = P["distribution"], f"{fp}.distribution"
            dist = p["distribution"]
            B = v.container(DV, dist, dp)  # its keys: below (an old spelling lacks the required ones)
            t = dist[DV.tag]
            F = FAMILIES[t]
            keys = F.keys
            old = OLD_SPELLINGS.get(t)
            v.mapping(dist, dp, (DV.tag,), B.required_keys[1:] + B.optional_keys)
            if old and not any(k in dist for k in keys if k not in old[0]) and all(k in dist for k in old[0]):
                given = tuple(v.check(B[k], dist[k], f"{dp}.{k}") for k in old[0])
                source, line = v.lines.find(dp)
                print(
                    f"marketsim: note: {old_spelling_note(f'{source}:{line}: {dp}' if line else dp, t, dict(zip(old[0], given, strict=True)))}",
                    file=sys.stderr,
                )
                args = old[1](*given)
                if t == "lognormal" and args[1] <= 0:
                    v.fail(dp, "the spread must be > 0")
                par = Parameter(path, t, given, label, make(t, args))
            else:
                for k in old[0] if old else ():
                    if k in dist and k not in keys:
                        new = [n for n in keys if n not in old[0]]
                        v.fail(
                            f"{dp}.{k}",
                            f"{k!r} is the old spelling of {', '.join(map(repr, new))} ({old[2]}); "
                            f"give only {', '.join(map(repr, new))}",
                        )
                for k in keys:
                    if k not in dist:
                        v.fail(dp, f"a {t} distribution needs {', '.join(keys)}")
                args = tuple(v.check(B[k], dist[k], f"{dp}.{k}") for k in keys)
                law = make(t, args)
                if t in ("normal", "lognormal") and args[-1] <= 0:
                    v.fail(dp, "the spread must be > 0")
                if F.rule and not law.ok():
                    v.fail(dp, f"need {F.rule}")
                # the manifest records a lognormal as (mu, sigma), as it always has
                par = Parameter(path, t, (math.log(args[0]), args[1]) if t == "lognormal" else args, label, law)
            probes = [(float(x), f"{fp}.distribution") for x in par.from_unit(np.array([0.001, 0.999]))]
        if model != "marketsim" and path not in ("x1", "x2", "x3"):
            v.fail(f"{fp}.path", f"the ishigami stand-in has parameters x1, x2, x3, not {path!r}")
        out.append(par)
        all_probes.append(probes)
    paths = [p.path for p in out]
    if len(set(paths)) != len(paths):
        v.fail("parameters", "a path is listed twice")
    return tuple(out), all_probes


#: Paths that identify a scenario or its parts rather than describe the market: never swept.
IDENTITY_PATHS = ("schema", "name", "description", "seed")
IDENTITY_KEYS = ("name", "id")


def _probe_parameter(v: Validator, par: Parameter, probes: list[tuple[Any, str]], base: Scenario, fp: str) -> None:
    """A parameter must be a field that can vary: every value a number, a date or an option (text), making a
    valid scenario (checked before any run) that keeps what outputs and runs refer to (the retailers' names
    and order, the events' ids, the providers, calendar.steps), and its values must change what is simulated
    (not only a name, a description or the seed, which each run takes from the sweep)."""
    path = par.path
    parts = path.split(".")
    if path in IDENTITY_PATHS or parts[-1] in IDENTITY_KEYS:
        v.fail(
            f"{fp}.path",
            f"{path} cannot vary: it names or identifies something (outputs, events and runs refer to it); "
            f"allowed: numbers, dates and options of the market",
        )
    seen = []
    for val, field_path in probes:
        val = _plain(val)
        if isinstance(val, bool) or not isinstance(val, (int, float, str, dt.date)):
            v.fail(field_path, f"{path} cannot take {_what(val)}; a sweep varies numbers, dates and options")
        try:
            sc = base.with_values({path: val})
        except KeyError as e:
            v.fail(f"{fp}.path", f"{e.args[0]} (in the base scenario {base.source})")
        except ScenarioError as e:
            v.fail(field_path, f"value {val!r} for {path} makes an invalid scenario: {e.path}: {e.problem}")
        problem = _identity_change(base, sc)
        if problem:
            v.fail(f"{fp}.path", f"{path} cannot vary: {problem}")
        seen.append(_simulated(sc))
    if len(set(seen)) == 1 and len({repr(_plain(x)) for x, _ in probes}) > 1:
        v.fail(
            f"{fp}.path",
            f"{path} cannot vary: its values change nothing that is simulated "
            f"(allowed: numbers, dates and options of the market)",
        )


def _identity_change(base: Scenario, sc: Scenario) -> str | None:
    if sc.retailer_names != base.retailer_names:
        return "it changes the retailers' names (outputs and the fitted attractiveness refer to them)"
    if [e.id for e in sc.events] != [e.id for e in base.events]:
        return "it changes the events' ids (shift_against refers to them)"
    if sc.provider_names != base.provider_names:
        return "it changes the identity providers"
    if sc.calendar.steps != base.calendar.steps:
        return (
            "it changes calendar.steps, so runs would end at different steps and their outputs could not be "
            "compared; set the sweep's 'steps' instead"
        )
    return None


def _simulated(sc: Scenario) -> str:
    """Digest of what a run simulates: the resolved scenario without its labels and seed."""
    d = {k: v for k, v in sc.to_dict().items() if k not in ("name", "description", "seed", "currency")}
    return digest(d, spaced=True)


def _what(x: Any) -> str:
    if x is None:
        return "nothing (null)"
    if isinstance(x, bool):
        return f"a boolean ({x})"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "a mapping"
    return type(x).__name__


def _check_corners(v: Validator, params: tuple[Parameter, ...], base: Scenario) -> None:
    """Each value alone may be valid but not together (two sso_share values summing over 1): try every corner
    of the box (the smallest and largest value of each parameter), up to 2^10 corners."""
    if len(params) < 2 or len(params) > 10:
        return
    ends = []
    for p in params:
        if p.kind == "range":
            ends.append(p.args)
        elif p.kind == "values":
            nums = [x for x in p.args if isinstance(x, (int, float)) and not isinstance(x, bool)]
            ends.append((min(nums), max(nums)) if len(nums) == len(p.args) else (p.args[0], p.args[-1]))
        else:
            ends.append(tuple(float(x) for x in p.from_unit(np.array([0.001, 0.999]))))
    for corner in itertools.product(*ends):
        vals = {p.path: _plain(x) for p, x in zip(params, corner, strict=True)}
        try:
            base.with_values(vals)
        except ScenarioError as e:
            shown = ", ".join(f"{k}={x:g}" if isinstance(x, (int, float)) else f"{k}={x!r}" for k, x in vals.items())
            v.fail("parameters", f"the corner {shown} of the design makes an invalid scenario: {e.path}: {e.problem}")


def check_points(sweep: Sweep, todo: list[Task]) -> None:
    """Every design point must make a valid scenario (distributions have unbounded tails): checked before any
    run starts, for up to MAX_CHECKED_POINTS points (about 0.2 ms each)."""
    if sweep.model != "marketsim":
        return
    seen: set[int] = set()
    for t in todo:
        if t.point_id in seen:
            continue
        seen.add(t.point_id)
        if len(seen) > MAX_CHECKED_POINTS:
            return
        try:
            sweep.base.with_values(t.values)
        except ScenarioError as e:
            shown = ", ".join(
                f"{k}={x:g}" if isinstance(x, (int, float)) else f"{k}={x!r}" for k, x in t.values.items()
            )
            raise ScenarioError(
                f"design point {t.point_id} ({shown}) makes an invalid scenario: {e.path}: {e.problem}; "
                f"narrow the parameter's range or distribution",
                source=sweep.source,
                path="parameters",
            ) from None


def _outputs(v: Validator, d: Any, base: Scenario | None, model: str) -> tuple[str, ...]:
    if model != "marketsim":
        return ("y",)
    names = base.retailer_names
    allowed = [f"{m}.{n}" for m in METRICS for n in names] + [f"shift.{m}.{n}" for m in METRICS for n in names]
    if d is None:
        return tuple(f"gmv_share.{n}" for n in names)
    if not isinstance(d, list) or not d:
        v.fail("outputs", "expected a list of output names, e.g. [gmv_share.JD, shift.gmv_share.JD]")
    for i, o in enumerate(d):
        if o not in allowed:
            v.fail(
                f"outputs[{i}]",
                f"unknown output {o!r}{did_you_mean(o, allowed)}; allowed: METRIC.RETAILER or shift.METRIC.RETAILER "
                f"with METRIC in {', '.join(METRICS)} and RETAILER in {', '.join(names)}",
            )
    return tuple(d)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Task:
    run_id: int
    point_id: int
    replicate: int
    seed: int
    values: dict


def run_seed(sweep_seed: int, run_id: int) -> int:
    return int(
        np.random.SeedSequence(sweep_seed, spawn_key=(run_id,)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    )


def tasks(sweep: Sweep) -> list[Task]:
    pts = sweep.points()
    return [
        Task(p * sweep.replicates + r, p, r, run_seed(sweep.seed, p * sweep.replicates + r), pts[p])
        for p in range(len(pts))
        for r in range(sweep.replicates)
    ]


def ishigami(x1: float, x2: float, x3: float, a: float = 7.0, b: float = 0.1) -> float:
    """Ishigami & Homma (1990) test function; known Sobol indices (Saltelli et al. 2008, Global Sensitivity
    Analysis: The Primer): S1 = (0.3139, 0.4424, 0), ST = (0.5576, 0.4424, 0.2437) for a=7, b=0.1 on [-pi, pi]^3."""
    return math.sin(x1) + a * math.sin(x2) ** 2 + b * x3**4 * math.sin(x1)


def run_task(sweep: Sweep, alpha, task: Task) -> list[dict]:
    """One run: rows (one per recorded step) with run id, point, parameters, replicate, seed and outputs."""
    head = {
        "run_id": task.run_id,
        "point_id": task.point_id,
        "replicate": task.replicate,
        "seed": task.seed,
        **{f"param.{k}": v for k, v in task.values.items()},
    }
    if sweep.model == "ishigami":
        return [{**head, "step": 0, "date": "", "y": ishigami(**task.values)}]

    sc = sweep.base.with_values(task.values).with_overrides(seed=task.seed)
    # the base scenario's fitted alphas and trends, except where the point itself gives a retailer's
    # attractiveness or trend (a sweep over retailers.X.attractiveness must see its own values)
    alpha, trend = alpha
    trend = np.array([trend[j] if r.trend is None else r.trend for j, r in enumerate(sc.retailers)])
    alpha = np.array([alpha[j] if r.attractiveness is None else r.attractiveness for j, r in enumerate(sc.retailers)])
    world = build_world(sc)
    steps = sc.calendar.steps
    keep = list(range(steps - 1, -1, -sweep.record_every))[::-1] if sweep.record_every else [steps - 1]
    arms = {"": sc}
    if sweep.shift_against is not None:
        arms["shift"] = sc.without_events(list(sweep.shift_against) or None)
    # the arms are one market until their events differ, then it forks (as a projection's arms do)
    lead = Market(sc, world, alpha, task.seed, trend=trend)
    recorded = {arm: recs for arm, (_, recs) in zip(arms, run_forked(lead, list(arms.items()), steps), strict=True)}
    k = min(sweep.average_last, steps)

    def value(arm: str, metric: str, t: int, j: int) -> float:
        recs = recorded[arm][t - k + 1 : t + 1] if (t == steps - 1 and k > 1) else [recorded[arm][t]]
        return float(np.mean([getattr(r, metric)[j] for r in recs]))

    rows = []
    names = sc.retailer_names
    for t in keep:
        row = {**head, "step": t, "date": sc.calendar.date_of(t).isoformat()}
        for o in sweep.outputs:
            parts = o.split(".")
            metric, retailer = parts[-2], parts[-1]
            j = names.index(retailer)
            val = value("", metric, t, j)
            if parts[0] == "shift":
                val -= value("shift", metric, t, j)
            row[o] = val
        rows.append(row)
    return rows


def _run_batch(sweep: Sweep, alpha, batch: list[Task]) -> list[dict]:
    rows = []
    for t in batch:
        rows.extend(run_task(sweep, alpha, t))
    return rows


def sweep_alpha(sweep: Sweep, results_root: Path):
    """(alpha, trend) for every point: the base scenario's fit (the sweep asks "what if" of one calibrated market)."""
    if sweep.model != "marketsim":
        return None

    fit = fitted(sweep.base, cache_dir(results_root))
    if sweep.base.calibrated_events:  # a sweep's points re-read the file, where these stay 'calibrate'
        raise UserError(
            f"{sweep.base.source}: a sweep does not carry the fitted sizes of recurring effects "
            f"({', '.join(sweep.base.calibrated_events)}); write the values `marketsim calibrate` prints into the "
            f"scenario file (with a range if uncertain) and sweep that"
        )
    return fit.alpha, fit.trend


def manifest_data(sweep: Sweep, n_points: int, n_runs: int) -> dict:
    """The manifest: the spec, its hash, and labels and display units of parameters and outputs (labels.py)."""
    cur = sweep.base.currency if sweep.base else ""
    step_days = sweep.base.calendar.step_days if sweep.base else 7
    return {
        "name": sweep.name,
        "spec_hash": sweep.digest(),
        "spec": sweep.raw,
        "source": sweep.source,
        "model": sweep.model,
        "base_scenario": None
        if sweep.base is None
        else {"name": sweep.base.name, "hash": sweep.base.digest(), "source": sweep.base.source},
        "design": {"method": sweep.design, "size": sweep.size, "levels": sweep.levels},
        "parameters": [
            {
                "path": p.path,
                "kind": p.kind,
                "args": list(p.args),
                **parameter_quantity(p.path, p.label, currency=cur).to_dict(),
            }
            for p in sweep.parameters
        ],
        "outputs": list(sweep.outputs),
        "output_labels": {o: output_quantity(o, currency=cur, step_days=step_days).to_dict() for o in sweep.outputs},
        "replicates": sweep.replicates,
        "points": n_points,
        "runs": n_runs,
        "seed": sweep.seed,
        "shift_against": None if sweep.shift_against is None else list(sweep.shift_against),
    }


def _refuse_other(out: Path, why: str) -> UserError:
    return UserError(f"{out}: {why}; use --out for a new folder, or delete {out} to start again")


def check_manifest(sweep: Sweep, out: Path) -> bool:
    """True if ``out/manifest.json`` is sound and describes this sweep; False if it is missing or damaged
    (the rows are then checked one by one, :func:`check_stored`, and the manifest rebuilt); a UserError if it
    describes another sweep (its spec hash differs).

    Rows of two different specs in one folder would be silently mixed by the analysis, so this is refused
    outright. Edits that change no row (name, description, batch_runs, the base file's path; see
    NEUTRAL_KEYS) keep the hash."""
    if not (out / dataset.MANIFEST).is_file() or dataset.manifest_problem(out):
        return False
    old = store.read_json(out / dataset.MANIFEST)
    digest = sweep.digest()
    if old.get("spec_hash") != digest:
        raise _refuse_other(
            out, f"holds results of a different sweep spec (hash {old.get('spec_hash')}, this spec {digest})"
        )
    return True


def check_stored(sweep: Sweep, out: Path, scan: dataset.Scan, all_tasks: list[Task]) -> None:
    """Every stored row must be the row this spec gives its run id: same seed, point, replicate and parameter
    values, written by a sweep with this spec hash, with this sweep's columns. Otherwise the folder holds
    another sweep's results (even with manifest.json gone) and resuming would mix them: UserError naming the
    folder and the first mismatching run."""
    import pandas as pd
    import pyarrow.parquet as pq

    digest = sweep.digest()
    params = [f"param.{p.path}" for p in sweep.parameters]
    key_cols = ["run_id", "seed", "point_id", "replicate"] + params
    need = set(key_cols) | {"step", *sweep.outputs}
    by_id = {t.run_id: t for t in all_tasks}
    for f in scan.good:
        names = set(pq.read_schema(f).names)
        extra = sorted(c for c in names - need if c.startswith("param.") or c in METRIC_COLUMNS(names))
        missing = sorted(need - names)
        if missing or extra:
            raise _refuse_other(
                out,
                f"{f.name} holds other columns than this sweep's "
                f"({'missing ' + ', '.join(missing) if missing else 'extra ' + ', '.join(extra)})",
            )
        df = pd.read_parquet(f, columns=key_cols).drop_duplicates("run_id")
        for row in df.itertuples(index=False, name=None):
            rec = dict(zip(key_cols, row, strict=True))
            rid = int(rec["run_id"])
            t = by_id.get(rid)
            if t is None:
                raise _refuse_other(out, f"stored run {rid} is not a run of this sweep (it has {len(all_tasks)} runs)")
            want = {
                "seed": t.seed,
                "point_id": t.point_id,
                "replicate": t.replicate,
                **{f"param.{k}": x for k, x in t.values.items()},
            }
            for col, x in want.items():
                if not _same(rec[col], x):
                    raise _refuse_other(
                        out,
                        f"stored run {rid} does not match this sweep spec ({col} is {_show(rec[col])} "
                        f"there, {_show(x)} here): the folder holds another sweep's results",
                    )
        spec = scan.spec_hashes.get(f)  # same runs, but other outputs (or how they are averaged)
        if spec is not None and spec != digest:
            raise _refuse_other(
                out, f"{f.name} was written by a different sweep spec (hash {spec}, this spec {digest})"
            )


def METRIC_COLUMNS(names: set[str]) -> set[str]:
    """Output columns among ``names`` (METRIC.RETAILER or shift.METRIC.RETAILER, or the stand-in's y)."""
    return {c for c in names if c == "y" or any(c.startswith(f"{m}.") or c.startswith(f"shift.{m}.") for m in METRICS)}


def _same(stored: Any, want: Any) -> bool:
    """A stored value equals the spec's value (floats to 1e-12 relative; dates whatever pandas made of them)."""
    if isinstance(want, dt.date) and not isinstance(stored, (str, int, float)):
        try:
            import pandas as pd

            return pd.Timestamp(stored).date() == (want if not isinstance(want, dt.datetime) else want.date())
        except (TypeError, ValueError):
            return False
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            s = float(stored)
        except (TypeError, ValueError):
            return False
        return s == float(want) or math.isclose(s, float(want), rel_tol=1e-12, abs_tol=0.0)
    return stored == want


def _show(x: Any) -> str:
    x = _plain(x)
    return f"{x:.6g}" if isinstance(x, float) else str(x)[:40]


def check_sweep_folder(out: Path) -> None:
    """``out`` must be new, empty, or provably a marketsim sweep folder (:func:`dataset.is_sweep_folder`: its
    checksummed manifest, or a sound part file; never file names alone): a sweep never writes its parts
    among files it did not make, nor moves them. Marketsim's own files there must not be links."""
    if out.is_symlink():
        raise UserError(
            f"{out}: is a symbolic link; marketsim writes only into a real folder, never through a link; "
            f"give the folder it points to, or another --out"
        )
    if not out.is_dir():
        return
    if not any(out.iterdir()):
        return
    if not dataset.is_sweep_folder(out):
        raise UserError(
            f"{out}: not empty and not a marketsim sweep folder (no {dataset.MANIFEST} or part file "
            f"written by marketsim); nothing was moved; choose a new or empty folder for --out"
        )
    for name in (".lock", dataset.QUARANTINE):
        if (out / name).is_symlink():
            raise UserError(
                f"{out / name}: is a symbolic link, not marketsim's own; move it away and run again; nothing was moved"
            )


def check_folder(sweep: Sweep, out: Path) -> set[int]:
    """Read-only check before any work (no lock, nothing moved): ``out`` is new, empty, or holds this sweep's
    results (manifest and stored rows); returns the run ids stored in sound parts. :func:`run_sweep` checks
    again under its lock, and sets damaged parts aside."""
    check_sweep_folder(out)
    if not out.is_dir():
        return set()
    check_manifest(sweep, out)
    scan = dataset.scan(out)
    check_stored(sweep, out, scan, tasks(sweep))
    return scan.run_ids


def run_sweep(
    sweep: Sweep,
    out: Path,
    executor: Executor | None,
    *,
    results_root: Path = Path("results"),
    on_progress=None,
    batch_size: int | None = None,
    workers: int | None = None,
    flush_seconds: float = 30.0,
    on_note: Callable[[str], None] | None = None,
    announce_resume: bool = False,
) -> dict:
    """Run every (point, replicate) pair not yet stored in ``out``; store rows in batches as they finish.

    ``executor`` None runs inline; otherwise any ``concurrent.futures.Executor`` (local processes or a Dask
    ``Client.get_executor()``): one code path. ``workers`` (a hint) sizes the chunks handed to it.
    Finished rows are stored as one new part file every ``batch_size`` runs (default: the sweep's
    ``batch_runs``) or every ``flush_seconds``, whichever comes first, and when the sweep stops for any reason
    short of SIGKILL. Only this process writes into ``out``; a lock file refuses a second sweep into the same
    folder at the same time.

    Before the first run, with the lock held: stale temporary files are removed, damaged parts and parts
    repeating a run are moved to ``quarantine/`` (their runs are run again; ``on_note`` hears of each), every
    stored row is checked against the spec (:func:`check_stored`), and the manifest is written (or rebuilt
    if it was lost or damaged). Ctrl-C stores what finished and raises :class:`~marketsim.errors.Interrupted`
    saying how many runs are stored. Returns counts: total, skipped (already stored), ran."""
    note = on_note or (lambda m: None)
    check_sweep_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        all_tasks = tasks(sweep)
        manifest_ok = check_manifest(sweep, out)
        dataset.remove_stray_temp_files(out)  # left by a killed writer; we hold the lock, so none is live
        scan, notes = dataset.repair(out)
        for m in notes:
            note(m)
        check_stored(sweep, out, scan, all_tasks)
        if not manifest_ok:
            if (out / dataset.MANIFEST).exists():
                problem = dataset.manifest_problem(out)
                q = dataset.quarantine(out, out / dataset.MANIFEST)
                note(
                    f"{out / dataset.MANIFEST}: damaged ({problem}); moved to {q} and rebuilt from the spec "
                    f"(the stored rows match it)"
                )
        # written on every run of the same spec too, so that edits that change no row (labels) reach the analysis
        dataset.write_manifest(out, manifest_data(sweep, len(all_tasks) // sweep.replicates, len(all_tasks)))
        done = scan.run_ids
        if done and announce_resume:
            note(f"{out}: {len(done)} runs already stored; resuming (re-running skips them)")
        todo = [t for t in all_tasks if t.run_id not in done]
        check_points(sweep, todo)
        alpha = sweep_alpha(sweep, results_root) if todo else None
        size = batch_size or sweep.batch_runs
        slots = max(1, workers or getattr(executor, "_max_workers", None) or 2)
        # about 4 chunks per worker keeps every worker busy to the end without paying a submission per run
        chunk = max(1, min(size, math.ceil(len(todo) / (4 * slots))))
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        buffer: list[dict] = []
        buffered_runs = 0
        last_flush = time.monotonic()
        finished = stored = len(done)
        digest = sweep.digest()
        if on_progress:
            on_progress(finished, len(all_tasks))

        def flush(force: bool = False):
            nonlocal buffer, buffered_runs, last_flush, stored
            if buffer and (force or buffered_runs >= size or time.monotonic() - last_flush >= flush_seconds):
                rows, n = buffer, buffered_runs
                buffer, buffered_runs, last_flush = [], 0, time.monotonic()  # a failed store is not retried
                dataset.write_part(out, rows, spec_hash=digest)
                stored += n

        def take(rows: list[dict], n: int):
            nonlocal buffered_runs, finished
            buffer.extend(rows)
            buffered_runs += n
            finished += n
            flush()
            if on_progress:
                on_progress(finished, len(all_tasks))

        try:
            try:
                if executor is None:
                    for c in chunks:
                        take(_run_batch(sweep, alpha, c), len(c))
                else:
                    pending = {executor.submit(_run_batch, sweep, alpha, c): len(c) for c in chunks}
                    try:
                        while pending:
                            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                            for f in ready:
                                n = pending.pop(f)
                                take(f.result(), n)
                    finally:
                        for f in pending:
                            f.cancel()
            finally:
                with deferred_interrupt():  # a second Ctrl-C waits for this store (milliseconds), then stops
                    flush(force=True)  # whatever finished is kept, also on an error or Ctrl-C
        except KeyboardInterrupt as e:
            raise Interrupted(
                f"interrupted; {stored} of {len(all_tasks)} runs are stored in {out}; "
                f"run the same command again to resume"
            ) from e
        except WorkerLost as e:  # the finished runs are stored (above): say so, and how to go on from them
            raise UserError(
                f"{e.what}; {stored} of {len(all_tasks)} runs are stored in {out}; {e.advice}, and run "
                f"the same command again (or with --resume) to continue from the stored runs"
            ) from None
    return {"total": len(all_tasks), "skipped": len(all_tasks) - len(todo), "ran": len(todo)}


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold an exclusive lock on ``out/.lock`` (released by the OS even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(
                f"{out}: another `marketsim sweep` is writing there now; wait for it or use another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
