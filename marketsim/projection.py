"""Projections (MODEL.md section 10): R replicates of a scenario and of its counterfactual baseline on the
same spawned seeds (common random numbers), the paired shift with a 95% interval, and the report.

Replicate r gets its seed from ``SeedSequence(scenario.seed).spawn(R)[r]``; the scenario and the baseline
of a replicate share that seed and the same drawn consumers and networks, so their difference is the
effect of the removed events and not sampling noise. Replicates run in parallel local processes and are
collected by index: the numbers do not depend on the worker count.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from .engine import Market
from .population import build_world
from .scenario import Scenario

ARMS = ("scenario", "baseline")


def replicate_seeds(seed: int, replicates: int, stream: int = 0) -> list[int]:
    """Integer seeds of the replicates, spawned from the scenario seed (``stream`` 1 gives an independent set)."""
    root = np.random.SeedSequence(seed, spawn_key=(stream,)) if stream else np.random.SeedSequence(seed)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in root.spawn(replicates)]


def _run_arm(sc: Scenario, world, alpha: np.ndarray, seed: int, steps: int, trend=None) -> tuple[Market, dict[str, np.ndarray]]:
    m = Market(sc, world, alpha, seed, trend=trend)
    recs = [m.step() for _ in range(steps)]
    return m, {
        "gmv_share": np.array([r.gmv_share for r in recs]),
        "gmv": np.array([r.gmv for r in recs]),
        "revenue": np.array([r.revenue for r in recs]),
        "accounts_created": np.array([r.accounts_created for r in recs]),
    }


def run_replicate(scenario: Scenario, baseline: Scenario, alpha: np.ndarray, seed: int, baseline_seed: int,
                  steps: int) -> dict:
    """One replicate: both arms (on the same seed and World unless ``baseline_seed`` differs)."""
    world = build_world(scenario, seed)
    ms, s = _run_arm(scenario, world, alpha, seed, steps)
    bworld = world if baseline_seed == seed else build_world(baseline, baseline_seed)
    mb, b = _run_arm(baseline, bworld, alpha, baseline_seed, steps)
    lost = ms.lost_index()
    R = len(alpha)
    # where the consumers who lost a login bought last at the horizon, and where the same consumers are
    # without the events (same seed: the same people)
    dest = {
        "scenario": np.bincount(ms.last[lost], minlength=R).astype(float),
        "baseline": np.bincount(mb.last[lost], minlength=R).astype(float) if bworld is world else np.full(R, np.nan),
    }
    return {"seed": seed, "baseline_seed": baseline_seed, "scenario": s, "baseline": b, "lost": len(lost),
            "destinations": dest, "scale": world.scale}


@dataclass
class Projection:
    scenario: Scenario
    baseline: Scenario
    alpha: np.ndarray
    seeds: list[int]
    baseline_seeds: list[int]
    steps: int
    arrays: dict[str, dict[str, np.ndarray]]  # arm -> metric -> (replicates, steps, retailers)
    lost: np.ndarray  # (replicates,) agents who lost a login
    destinations: dict[str, np.ndarray]  # arm -> (replicates, retailers) agents by last retailer at horizon
    scale: float
    paired: bool

    @property
    def replicates(self) -> int:
        return len(self.seeds)

    @property
    def names(self) -> tuple[str, ...]:
        return self.scenario.retailer_names

    def horizon_share(self, arm: str) -> np.ndarray:
        return self.arrays[arm]["gmv_share"][:, -1, :]

    def shift(self) -> dict[str, dict]:
        """Horizon GMV share shift per retailer: mean of paired differences and its 95% t interval.
        Unpaired (independent baseline seeds): difference of means with a Welch interval."""
        s, b = self.horizon_share("scenario"), self.horizon_share("baseline")
        return {n: _interval(s[:, j], b[:, j], self.paired) for j, n in enumerate(self.names)}

    @property
    def post_start(self) -> int:
        first = self.scenario.first_event_step
        return 0 if first is None else min(first, self.steps - 1)

    def revenue_shift(self) -> dict[str, dict]:
        """Revenue from the first event to the horizon (currency), scenario minus baseline, per retailer."""
        lo = self.post_start
        s = self.arrays["scenario"]["revenue"][:, lo:, :].sum(axis=1)
        b = self.arrays["baseline"]["revenue"][:, lo:, :].sum(axis=1)
        return {n: _interval(s[:, j], b[:, j], self.paired) for j, n in enumerate(self.names)}

    def destination_shares(self) -> dict[str, dict[str, float]]:
        out = {}
        for arm in ARMS:
            d = self.destinations[arm].sum(axis=0)
            tot = d.sum()
            out[arm] = {n: (float(d[j] / tot) if tot > 0 and np.isfinite(tot) else float("nan")) for j, n in enumerate(self.names)}
        return out

    def summary(self, calibration=None) -> dict:
        shift = self.shift()
        rev = self.revenue_shift()
        dest = self.destination_shares()
        return {
            "scenario": self.scenario.name,
            "scenario_hash": self.scenario.digest(),
            "seed": self.scenario.seed,
            "consumers": self.scenario.consumers.count,
            "steps": self.steps,
            "horizon": self.scenario.calendar.date_of(self.steps - 1).isoformat(),
            "replicates": self.replicates,
            "paired_seeds": self.paired,
            "baseline_without": [e.id for e in self.scenario.events if e not in self.baseline.events],
            "share_scenario": {n: float(v) for n, v in zip(self.names, self.horizon_share("scenario").mean(axis=0))},
            "share_baseline": {n: float(v) for n, v in zip(self.names, self.horizon_share("baseline").mean(axis=0))},
            "shift": {n: {"mean": v["mean"], "ci95": v["ci95"]} for n, v in shift.items()},
            "revenue_shift": {
                "period": [self.scenario.calendar.date_of(self.post_start).isoformat(), self.scenario.calendar.date_of(self.steps - 1).isoformat()],
                "currency": self.scenario.currency,
                **{n: {"mean": v["mean"], "ci95": v["ci95"]} for n, v in rev.items()},
            },
            "lost_login": {
                "consumers": float(self.lost.mean() * self.scale),
                "destinations_scenario": dest["scenario"],
                "destinations_baseline": dest["baseline"],
            },
            "calibration": None if calibration is None else {
                "residual_pp": calibration.residual_pp, "iterations": calibration.iterations, "key": calibration.key},
        }

    def tidy(self) -> pd.DataFrame:
        """One row per replicate, arm, step and retailer."""
        reps, T, R = self.arrays["scenario"]["gmv_share"].shape
        dates = [self.scenario.calendar.date_of(t).isoformat() for t in range(T)]
        frames = []
        for arm, seeds in (("scenario", self.seeds), ("baseline", self.baseline_seeds)):
            a = self.arrays[arm]
            frames.append(pd.DataFrame({
                "replicate": np.repeat(np.arange(reps), T * R),
                "seed": np.repeat(np.array(seeds, dtype=np.uint64), T * R),
                "arm": arm,
                "step": np.tile(np.repeat(np.arange(T), R), reps),
                "date": np.tile(np.repeat(np.array(dates), R), reps),
                "retailer": np.tile(np.array(self.names), reps * T),
                **{k: v.reshape(-1) for k, v in a.items()},
            }))
        return pd.concat(frames, ignore_index=True)


def _interval(s: np.ndarray, b: np.ndarray, paired: bool) -> dict:
    n = len(s)
    if paired:
        d = s - b
        mean = float(d.mean())
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        df = n - 1
    else:
        mean = float(s.mean() - b.mean())
        vs, vb = (s.var(ddof=1) / n, b.var(ddof=1) / n) if n > 1 else (math.nan, math.nan)
        se = math.sqrt(vs + vb)
        df = (vs + vb) ** 2 / (vs**2 / (n - 1) + vb**2 / (n - 1)) if (vs + vb) > 0 else max(n - 1, 1)
    if n < 2 or not math.isfinite(se):
        return {"mean": mean, "ci95": [math.nan, math.nan], "se": se}
    half = float(stats.t.ppf(0.975, df)) * se if se > 0 else 0.0
    return {"mean": mean, "ci95": [mean - half, mean + half], "se": se}


def run_projection(
    scenario: Scenario,
    baseline: Scenario,
    alpha: np.ndarray,
    replicates: int,
    *,
    workers: int = 1,
    steps: int | None = None,
    independent_baseline: bool = False,
    on_done: Callable[[int], None] | None = None,
) -> Projection:
    """Run ``replicates`` paired replicates (in ``workers`` processes) and collect them by index."""
    steps = steps or scenario.calendar.steps
    seeds = replicate_seeds(scenario.seed, replicates)
    bseeds = replicate_seeds(scenario.seed, replicates, stream=1) if independent_baseline else seeds
    jobs = [(scenario, baseline, np.asarray(alpha), s, bs, steps) for s, bs in zip(seeds, bseeds)]
    results: list[dict | None] = [None] * replicates
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = run_replicate(*job)
            if on_done:
                on_done(i + 1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = {ex.submit(run_replicate, *job): i for i, job in enumerate(jobs)}
            for k, fut in enumerate(as_completed(futs), 1):
                results[futs[fut]] = fut.result()
                if on_done:
                    on_done(k)
    arrays = {arm: {k: np.stack([r[arm][k] for r in results]) for k in results[0][arm]} for arm in ARMS}
    return Projection(
        scenario=scenario, baseline=baseline, alpha=np.asarray(alpha), seeds=seeds, baseline_seeds=bseeds, steps=steps,
        arrays=arrays, lost=np.array([r["lost"] for r in results]),
        destinations={arm: np.stack([r["destinations"][arm] for r in results]) for arm in ARMS},
        scale=results[0]["scale"], paired=not independent_baseline,
    )


# --------------------------------------------------------------------------- CLI


def cmd_project(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from . import report, store
    from .cli import fitted_alpha, load, results_root
    from .progress import bar, stderr

    full = load(args, steps=False)
    full.without_events(args.baseline_without)  # checks the event ids before any work
    alpha, cal = fitted_alpha(full, args, quiet=args.json)
    sc = load(args)
    baseline = sc.without_events(args.baseline_without)
    workers = args.workers or os.cpu_count() or 1
    R = args.replicates
    t0 = time.perf_counter()
    with bar(f"projecting {sc.name} ({R} replicates x 2 arms, {workers} workers)", R, "replicates") as update:
        proj = run_projection(sc, baseline, alpha, R, workers=workers, independent_baseline=args.independent_baseline,
                              on_done=lambda k: update(completed=k))
    summary = proj.summary(cal)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    out = Path(args.out) if args.out else results_root(args) / sc.name / "projection"
    store.write_table(proj.tidy(), out / "replicates", formats=("parquet",))
    report.write_report(proj, summary, out)
    store.write_json(out / "projection.json", summary)
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
        return 0
    con = Console()
    t = Table(title=f"{sc.name}: GMV share at {summary['horizon']}, scenario vs baseline without "
                    f"{', '.join(summary['baseline_without']) or '(no events)'} ({R} replicates, "
                    f"{'paired seeds' if proj.paired else 'independent seeds'})")
    for col in ("retailer", "scenario", "baseline", "shift pp", "95% CI pp", f"revenue {sc.currency}m", "95% CI"):
        t.add_column(col, justify="left" if col == "retailer" else "right")
    for n in proj.names:
        sh, rv = summary["shift"][n], summary["revenue_shift"][n]
        t.add_row(n, f"{summary['share_scenario'][n] * 100:.2f}%", f"{summary['share_baseline'][n] * 100:.2f}%",
                  f"{sh['mean'] * 100:+.2f}", f"[{sh['ci95'][0] * 100:+.2f}, {sh['ci95'][1] * 100:+.2f}]",
                  f"{rv['mean'] / 1e6:+,.0f}", f"[{rv['ci95'][0] / 1e6:+,.0f}, {rv['ci95'][1] / 1e6:+,.0f}]")
    con.print(t)
    ll = summary["lost_login"]
    if ll["consumers"] > 0:
        dest = ", ".join(f"{n} {ll['destinations_scenario'][n] * 100:.1f}%" for n in proj.names)
        base = ", ".join(f"{n} {ll['destinations_baseline'][n] * 100:.1f}%" for n in proj.names)
        con.print(f"consumers who lost a login: {ll['consumers']:,.0f}; last bought at the horizon: {dest} "
                  f"(without the events: {base})")
    if cal is not None:
        con.print(f"calibration: {cal.iterations} iterations, max residual "
                  f"{max(map(abs, cal.residual_pp.values())):.3f} pp")
    stderr.print(f"wrote {out}/: replicates.parquet, projection.json, fan.png, shift.png, flows.png, report.md")
    return 0
