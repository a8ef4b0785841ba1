"""marketsim benchmark: prints tables of speed and memory against the targets below (the engine's and the
sweeps').

    python benchmarks/bench.py                 # core table + headline run + naive Mesa comparison + sweeps
    python benchmarks/bench.py --only core     # just the core table and headline run

Each size runs in a fresh subprocess so its peak memory (max RSS) is its own. All on one core unless the
section says otherwise (the sweep section uses 1 and 2 worker processes).

Targets (one core of the 2-core machine): 10^6 consumers, 52 weeks (about 10^7 social ties, graph build
included) under 10 s end to end; under 80 ms per step at 10^6; peak memory under 1 GB; at least 50x a
plain Mesa model with one agent object per consumer (about 6 us per consumer-step).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = ROOT / "src" / "marketsim" / "scenarios" / "battle_lines_2013.yaml"


def _core_one(n: int, steps: int) -> dict:
    """Build + steps at n consumers (runs inside a fresh subprocess)."""
    import resource

    from marketsim.engine.market import Market
    from marketsim.engine.population import build_world
    from marketsim.fit.cache import cache_dir, fitted
    from marketsim.scenario.core import load_scenario

    base = load_scenario(HEADLINE)
    fit = fitted(base, cache_dir(ROOT / "results"))  # a fit at 20,000 consumers serves any N (docs/model.md property 4)
    sc = base.with_values({"consumers.count": n})
    t0 = time.perf_counter()
    world = build_world(sc)
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = Market(sc, world, fit.alpha, sc.seed, trend=fit.trend)  # includes the burn-in: pilot and warm-up weeks
    t_warm = time.perf_counter() - t1
    t2 = time.perf_counter()
    for _ in range(steps):
        m.step()
    t_steps = time.perf_counter() - t2
    ties = sum(layer.graph.n_edges for layer in world.layers)
    return {
        "consumers": n,
        "ties": ties,
        "build_s": t_build,
        "warmup_steps": sc.calendar.warmup,
        "pilot_steps": m.pilot_steps,
        "warmup_s": t_warm,
        "steps": steps,
        "ms_per_step": 1000 * t_steps / steps,
        "us_per_consumer_step": 1e6 * t_steps / steps / n,
        "total_s": time.perf_counter() - t0,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _naive_one(n: int, steps: int) -> dict:
    """The same decision rule as a plain Mesa model: one agent object per consumer, Python per agent."""
    import math

    import mesa

    from marketsim.engine.population import build_world
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(HEADLINE).with_values({"consumers.count": n})
    world = build_world(sc)
    R = len(sc.retailers)
    alpha = [-4.1, -4.4, -4.2]
    accepts = [[p in r.logins for r in sc.retailers] for p in sc.provider_names]
    b, f = sc.behaviour, sc.friction
    neigh = [[lay.graph.neighbours(i).tolist() for lay in world.layers] for i in range(n)]

    class Consumer(mesa.Agent):
        def __init__(self, model, i):
            super().__init__(model)
            self.i = i
            self.last = int(world.last0[i])
            self.access = [int(a) for a in world.access0[i]]
            self.holds = world.holds[i].tolist()
            self.next_last = self.last

        def step(self):
            rng = self.model.random
            u_shop, u_pick = rng.random(), rng.random()
            if u_shop >= sc.consumers.shopping_rate:
                return
            ex = [1.0]
            for j in range(R):
                a = self.access[j]
                link = any(h and accepts[p][j] for p, h in enumerate(self.holds))
                F = f.native if a == 1 else (f.sso if a >= 3 and accepts[a - 3][j] else (f.link if link else f.create))
                S = 0.0
                for li, nb in enumerate(neigh[self.i]):
                    if nb:
                        S += world.layers[li].weight * sum(self.model.agent_list[k].last == j for k in nb) / len(nb)
                V = alpha[j] + b.beta_social * S + b.beta_habit * (self.last == j) - b.beta_friction * F
                ex.append(math.exp(V))
            tot, acc = sum(ex), 0.0
            for j, e in enumerate(ex):
                acc += e / tot
                if u_pick < acc:
                    self.next_last = self.last if j == 0 else j - 1
                    return

    class Naive(mesa.Model):
        def __init__(self):
            super().__init__(rng=1)
            self.agent_list = [Consumer(self, i) for i in range(n)]

        def step(self):
            self.agents.do("step")  # synchronous: compute all, then apply
            for a in self.agent_list:
                a.last = a.next_last

    model = Naive()
    t = time.perf_counter()
    for _ in range(steps):
        model.step()
    dt = time.perf_counter() - t
    return {"consumers": n, "steps": steps, "us_per_consumer_step": 1e6 * dt / steps / n}


def _in_subprocess(fn: str, **kw) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench; "
        f"print(json.dumps(bench.{fn}(**{kw!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    if out.returncode:
        raise SystemExit(f"benchmark {fn}({kw}) failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def core_table(sizes=(10_000, 100_000, 1_000_000), steps=52) -> list[dict]:
    rows = []
    for n in sizes:
        print(f"  running {n:,} consumers x {steps} steps ...", file=sys.stderr, flush=True)
        rows.append(_in_subprocess("_core_one", n=n, steps=steps))
    return rows


def print_core(rows: list[dict]) -> None:
    print("\n## Core engine (one core; headline scenario battle_lines_2013.yaml, events included)")
    print(
        f"{'consumers':>10} {'ties':>11} {'build s':>8} {'burn-in s':>10} {'ms/step':>8} {'us/cons-step':>13} {'total s':>8} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['consumers']:>10,} {r['ties']:>11,} {r['build_s']:>8.2f} {r['warmup_s']:>10.2f} {r['ms_per_step']:>8.1f} "
            f"{r['us_per_consumer_step']:>13.3f} {r['total_s']:>8.2f} {r['peak_mb']:>8.0f}"
        )
    big = [r for r in rows if r["consumers"] == 1_000_000]
    if big:
        r = big[0]
        print(
            f"\nheadline 52-week run at 10^6 (build + a {r['pilot_steps']}-week pilot at 20,000 + {r['warmup_steps']} warm-up "
            f"weeks + 52 weeks): {r['total_s']:.2f} s "
            f"(target < 10 s); {r['ms_per_step']:.1f} ms/step (target < 80); peak {r['peak_mb']:.0f} MB (target < 1024)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["core", "naive", "sweep"], help="run one section")
    args = ap.parse_args()
    core_rows = None
    if args.only in (None, "core"):
        core_rows = core_table()
        print_core(core_rows)
    if args.only in (None, "naive"):
        naive = _in_subprocess("_naive_one", n=5_000, steps=5)
        ours = (core_rows or [_in_subprocess("_core_one", n=1_000_000, steps=20)])[-1]
        print("\n## Plain Mesa (one agent object per consumer, same rule) vs marketsim arrays")
        print(f"plain Mesa, 5,000 consumers: {naive['us_per_consumer_step']:.2f} us per consumer-step")
        print(f"marketsim, {ours['consumers']:,} consumers: {ours['us_per_consumer_step']:.3f} us per consumer-step")
        print(f"speed-up: {naive['us_per_consumer_step'] / ours['us_per_consumer_step']:.0f}x (target >= 50x)")
    if args.only in (None, "sweep"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        try:
            import sweep_bench
        except ImportError as e:
            print(f"\n## Sweeps: skipped ({e})")
        else:
            print("\n## Sweeps")
            sweep_bench.print_table(sweep_bench.bench_sweep())


if __name__ == "__main__":
    main()
