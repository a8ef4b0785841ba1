"""The step, size and scale benchmarks: prints tables of figures next to their targets; nothing here is a
test. The issue asks for these on a quiet machine; on a busy one the ratios hold better than the seconds.

    python benchmarks/step_bench.py                # every section (the big one needs 3-6 GB and about 7 minutes)
    python benchmarks/step_bench.py --only floor   # per step at 10^6: Market.step() against the fused floor kernel
    python benchmarks/step_bench.py --only big     # `marketsim run` at 10^7 x 52 weeks (and 10^6): wall s, peak RSS
    python benchmarks/step_bench.py --only scale   # a projection on 1 and 2 local workers and a Dask LocalCluster

Targets: per simulated step at 10^6 consumers no more than 1.1x the floor (a fused compiled kernel
of the same step, benchmarks/floor_kernel.py; world build, settling and compilation reported separately);
10^7 consumers x 52 weeks under 120 s and under 8 GB peak memory; the projection scales from 1 to 2 workers
and to a LocalCluster with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = ROOT / "src" / "marketsim" / "scenarios" / "battle_lines_2013.yaml"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _load() -> str:
    """The machine's load, to print beside the figures (the targets are for a quiet machine)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _env(**extra: str) -> dict:
    """The environment of a child `marketsim`: this checkout's package, one BLAS thread."""
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **extra}


def _warm_fit_cache() -> Path:
    """The fit cache folder bench.py uses (results/calibration of this checkout, or $MARKETSIM_FIT_CACHE), with the
    headline's fit in it (fitted now if missing: a cold fit takes a minute or so)."""
    from marketsim.fit.cache import cache_dir, fitted
    from marketsim.scenario.core import load_scenario

    folder = cache_dir(ROOT / "results")
    fitted(load_scenario(HEADLINE), folder)
    return folder


# --------------------------------------------------------------------------- floor


class _Floor:
    """The floor's own copy of a market's consumer state and random stream, stepped by floor_kernel.step."""

    def __init__(self, m, rng_state: dict, bases: list):
        import numpy as np

        self.np = np
        self.n, self.R = m.n, m.R
        sc = m.scenario
        c = sc.consumers
        self.rate, self.turnover, self.sigma = c.shopping_rate, c.turnover, c.basket.sigma
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = rng_state
        self.last, self.access = m.last.copy(), m.access.copy()
        self.basket, self.login_pref = m.basket.copy(), m.login_pref.copy()
        self.counts = tuple(cnt.copy() for cnt in m.counts)
        lays = m.world.layers
        self.indptrs = tuple(lay.graph.indptr for lay in lays)
        self.nbs = tuple(lay.graph.indices for lay in lays)
        self.invd = tuple(lay.inv_degree for lay in lays)
        self.weights = np.stack([(lay.weight * m.social_factor[q]).astype(np.float32) for q, lay in enumerate(lays)])
        F, path = m.friction_tables()
        self.F, self.path = np.ascontiguousarray(F, dtype=np.float32), path
        self.holds_bits = m.holds_bits
        self.accept_bits = m._accept_bits()
        self.route_weight = m.route_weight.copy()
        b = sc.behaviour
        self.bs, self.bf, self.bh = np.float32(b.beta_social), np.float32(b.beta_friction), np.float32(b.beta_habit)
        self.bases = bases  # float32 (R,) per step, from t = 0
        self.t = 0
        scratch = 2 * self.n + 1
        self.who, self.old, self.new = (np.empty(scratch, np.int64) for _ in range(3))
        self.cum, self.v = np.empty(m.P + 1), np.empty(self.R, np.float32)

    def step(self):
        """One step: the random numbers as the engine draws them (draw_step, Gumbel noise included), then the fused kernel."""
        import floor_kernel

        from marketsim.engine.market import draw_step

        np, R = self.np, self.R
        d = draw_step(self.rng, self.n, R, self.rate, self.turnover, self.sigma)
        g = d.g  # the shoppers' Gumbel noise, made from their uniforms as they are drawn
        pick = np.empty(len(d.idx), np.int64)
        buyers, created, linked = (np.zeros(R, np.int64) for _ in range(3))
        gmv, flows = np.zeros(R), np.zeros((R + 1, R), np.int64)
        floor_kernel.step(
            d.idx, g, self.access, self.last, self.basket, self.login_pref, self.holds_bits, self.accept_bits,
            self.F, self.path, self.bases[self.t], self.bs, self.bf, self.bh, self.indptrs, self.nbs, self.counts,
            self.invd, self.weights, self.route_weight, d.gone, d.gone_basket, d.gone_pref, self.who, self.old,
            self.new, self.cum, self.v, pick, buyers, gmv, flows, created, linked,
        )  # fmt: skip
        self.t += 1
        return d.idx, pick


def _compile_probe() -> dict:
    """First and second call of each compiled kernel on a small market (runs in a fresh subprocess, so the first
    call compiles, or loads the on-disk cache when NUMBA_CACHE_DIR already holds it)."""
    t0 = time.perf_counter()
    from marketsim.engine.market import Market
    from marketsim.engine.population import build_world
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(HEADLINE).with_values({"consumers.count": 2000})
    alpha = [-4.0] * len(sc.retailers)
    t_import = time.perf_counter() - t0
    world = build_world(sc)
    out = {"import_s": t_import}
    m = Market(sc, world, alpha, sc.seed, settle=False)
    for k in range(2):
        t = time.perf_counter()
        m.step()
        out[f"engine_{k}"] = time.perf_counter() - t
    import numpy as np

    m2 = Market(sc, world, alpha, sc.seed, settle=False)
    state = np.random.default_rng(1).bit_generator.state
    fl = _Floor(m2, state, [m2._base_utility(t) for t in range(2)])
    for k in range(2):
        t = time.perf_counter()
        fl.step()
        out[f"floor_{k}"] = time.perf_counter() - t
    return out


def _probe_subprocess(cache: str) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import step_bench; "
    code += "print(json.dumps(step_bench._compile_probe()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(NUMBA_CACHE_DIR=cache))
    if r.returncode:
        raise SystemExit(f"compile probe failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def floor(n: int = 1_000_000, steps: int = 20, repeats: int = 3) -> None:
    """Per simulated step at ``n`` consumers: the engine's Market.step() against the floor kernel, from the same
    state and the same random numbers; medians of ``repeats`` runs of ``steps`` steps each."""
    import numpy as np

    from marketsim.engine.market import Market, draw_step
    from marketsim.engine.population import build_world
    from marketsim.fit.cache import cache_dir, fitted
    from marketsim.scenario.core import load_scenario

    print(f"\n## Per step: Market.step() vs the floor (benchmarks/floor_kernel.py), battle_lines_2013, {n:,} consumers")
    print(f"({_load()} at the start)")
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = _probe_subprocess(cache), _probe_subprocess(cache)
    print("compilation, seconds (a fresh process each, 2,000 consumers): first call / second call of a step")
    for side in ("engine", "floor"):
        print(
            f"  {side:<7} cold numba cache {cold[side + '_0']:6.2f} / {cold[side + '_1']:.4f}; "
            f"warm cache {warm[side + '_0']:6.2f} / {warm[side + '_1']:.4f}"
        )
    print(
        "  (engine: Market.step(), its compiled shop kernel; the social layers' CSR build and the neighbour "
        f"recount compile when a World is first built; import of marketsim {warm['import_s']:.1f} s)"
    )

    base = load_scenario(HEADLINE)
    fit = fitted(base, cache_dir(ROOT / "results"))
    sc = base.with_values({"consumers.count": n})
    # warm both kernels in this process (a small market), so the sizes below time no compilation
    w0 = build_world(sc.with_values({"consumers.count": 2000}))
    Market(sc.with_values({"consumers.count": 2000}), w0, fit.alpha, sc.seed, trend=fit.trend).step()
    _Floor(Market(sc.with_values({"consumers.count": 2000}), w0, fit.alpha, sc.seed, settle=False),
           np.random.default_rng(0).bit_generator.state, [fit.alpha.astype(np.float32)]).step()  # fmt: skip

    t = time.perf_counter()
    world = build_world(sc)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    m = Market(sc, world, fit.alpha, sc.seed, trend=fit.trend)
    t_settle = time.perf_counter() - t
    total = 1 + repeats * steps
    if any(s < total for s in m.schedule) or any(m.firings_at(s) for s in range(total)) or not m.available.all():
        print(f"note: an event or recurring effect falls within the first {total} steps; the floor has none")
    ties = sum(lay.graph.n_edges for lay in world.layers)
    print(
        f"world build {t_build:.1f} s ({ties:,} ties); settle {t_settle:.1f} s "
        f"(burn-in pilot of {m.pilot_steps} steps at up to 20,000 consumers + {sc.calendar.warmup} warm-up weeks)"
    )

    fl = _Floor(m, m.rng.bit_generator.state, [m._base_utility(s) for s in range(total)])
    shadow = np.random.default_rng()  # the random numbers alone, drawn the same way, for scale
    shadow.bit_generator.state = m.rng.bit_generator.state
    m.step()
    e_idx, e_pick = m._purchases
    f_idx, f_pick = fl.step()
    same_first = np.array_equal(e_idx, f_idx) and np.array_equal(e_pick, f_pick)
    first = f"engine {int((e_pick >= 0).sum()):,} purchases, floor {int((f_pick >= 0).sum()):,}"
    rc = sc.consumers
    draw_step(shadow, n, m.R, rc.shopping_rate, rc.turnover, rc.basket.sigma)

    eng, flo, drw = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            m.step()
        eng.append(1000 * (time.perf_counter() - t) / steps)
        t = time.perf_counter()
        for _ in range(steps):
            fl.step()
        flo.append(1000 * (time.perf_counter() - t) / steps)
        t = time.perf_counter()
        for _ in range(steps):
            draw_step(shadow, n, m.R, rc.shopping_rate, rc.turnover, rc.basket.sigma)
        drw.append(1000 * (time.perf_counter() - t) / steps)
    same_end = (
        np.array_equal(m.last, fl.last)
        and np.array_equal(m.access, fl.access)
        and all(np.array_equal(a, b) for a, b in zip(m.counts, fl.counts, strict=True))
    )
    e, f, r = statistics.median(eng), statistics.median(flo), statistics.median(drw)
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(f"ms per step, median of {repeats} x {steps} steps (steps 1-{total - 1}, no events):")
    print(f"  engine Market.step()   {e:7.1f}   (runs {runs(eng)})")
    print(f"  floor  fused kernel    {f:7.1f}   (runs {runs(flo)})")
    print(f"  ratio engine / floor   {e / f:7.2f}   (target <= 1.1)")
    print(
        f"  both sides draw each step's random numbers with draw_step (docs/model.md 12.8), included in "
        f"both: {r:.1f} ms of each step; the ratio compares everything else (engine {e - r:.1f} ms, floor "
        f"{f - r:.1f} ms, ratio {(e - r) / max(f - r, 1e-9):.2f})"
    )
    print(
        f"same step: first step {first}, identical choices: {'yes' if same_first else 'NO'}; "
        f"state (last retailer, access, neighbour counts) identical after {total} steps: {'yes' if same_end else 'NO'}"
    )
    if not (same_first and same_end):
        print("WARNING: the floor does not make the engine's choices: the ratio compares different steps")


# --------------------------------------------------------------------------- big


def _run_measured(args: list, cwd: str, env: dict) -> tuple[float, float, int, str, str]:
    """Run ``args``; return wall seconds, the child's peak RSS in GB (its own, from wait4), exit code, stdout and
    stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, ru.ru_maxrss / 1024**2, p.returncode, out.read(), err.read()


def big(sizes: tuple[int, ...] = (1_000_000, 10_000_000), steps: int = 52) -> None:
    """`marketsim run battle_lines_2013 --consumers N --steps 52 --json`, twice per size in a fresh folder with the
    headline's fit cached: wall seconds and each child's peak memory. The first run at a size also pays what is
    not cached yet (numba's compilation in a fresh checkout; the fit and the trend-after-cut-off choice are made at
    the fits' size, so one serves every size); the second has everything cached, as the "with the fit cached"
    targets do: the target applies to it."""
    cache = _warm_fit_cache()
    print(f"\n## Size: `marketsim run battle_lines_2013 --consumers N --steps {steps} --json`, fit cached, one process")
    print(f"({_load()} at the start)")
    print(f"{'consumers':>11} {'first run s':>12} {'peak GB':>8} {'cached s':>9} {'peak GB':>8}  target (cached run)")
    for n in sizes:
        cmd = [sys.executable, "-m", "marketsim.cli", "run", str(HEADLINE), "--consumers", str(n)]
        cmd += ["--steps", str(steps), "--json"]
        runs = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as d:
                wall, gb, rc, _, err = _run_measured(cmd, d, _env(MARKETSIM_FIT_CACHE=str(cache)))
            if rc:
                print(f"{n:>11,} refused or failed (exit {rc}) after {wall:.0f} s, peak {gb:.2f} GB; it said:")
                print("    " + "\n    ".join(err.strip().splitlines()[-10:]))
                break
            runs.append((wall, gb))
        if len(runs) < 2:
            continue
        target = "< 120 s and < 8 GB" if n >= 10_000_000 else "(for scale)"
        (w1, g1), (w2, g2) = runs
        print(f"{n:>11,} {w1:>12.1f} {g1:>8.2f} {w2:>9.1f} {g2:>8.2f}  {target}", flush=True)
    print("(wall: the whole command, import, world build, settling and writing results included)")


# --------------------------------------------------------------------------- scale

_PROJECT = ["project", str(HEADLINE), "--consumers", "20000", "--draws", "16", "--replicates", "2", "--json"]


def _numbers(x, path: str = "") -> dict:
    """Every number of a projection's JSON output by its path, less the timings and the settings."""
    if isinstance(x, dict):
        return {
            k: v
            for key, val in x.items()
            if key not in ("seconds", "settings")
            for k, v in _numbers(val, f"{path}/{key}").items()
        }
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in _numbers(val, f"{path}[{i}]").items()}
    if isinstance(x, bool) or not isinstance(x, int | float):
        return {}
    return {path: x}


def scale() -> None:
    """The projection's draws on 1 and 2 local worker processes and on a 2-worker Dask LocalCluster, each with a
    fresh fit cache: wall seconds, speed-up against 1 worker, and whether the numbers are the same."""
    from distributed import LocalCluster

    print(f"\n## Scale: `marketsim {' '.join(_PROJECT).replace(str(HEADLINE), 'battle_lines_2013')}`, fresh fit cache")
    print(f"({_load()} at the start)")
    env = _env()
    env.pop("MARKETSIM_FIT_CACHE", None)
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the Dask workers import this checkout's marketsim

    def project(label: str, extra: list) -> tuple:
        # a fresh results folder and fit cache: no fit cached. The cache is named by an absolute path: a relative
        # results/calibration would be resolved by each Dask worker in its own working folder (this one's)
        with tempfile.TemporaryDirectory() as d:
            cache = {"MARKETSIM_FIT_CACHE": str(Path(d) / "calibration")}
            wall, _, rc, out, err = _run_measured(
                [sys.executable, "-m", "marketsim.cli", *_PROJECT, *extra], d, {**env, **cache}
            )
        if rc:
            raise SystemExit(f"{label}: project failed (exit {rc}):\n{err[-2000:]}")
        res = json.loads(out)
        return label, wall, res["seconds"], _numbers(res)

    rows = [project("1 local worker", ["--workers", "1"]), project("2 local workers", ["--workers", "2"])]
    t = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        started = time.perf_counter() - t
        # a cluster's workers are started once and kept: the first projection on them also pays their imports
        # (marketsim, numba's kernels from its cache), which the local pool's forked workers inherit; reported apart
        first = project("Dask LocalCluster, first run", ["--scheduler", cluster.scheduler_address])
        rows.append(project("Dask LocalCluster, 2 workers", ["--scheduler", cluster.scheduler_address]))
    print(f"(the LocalCluster's first projection, its workers importing marketsim: {first[1]:.1f} s)")
    one = rows[0][1]
    print(f"{'where':<30} {'wall s':>7} {'speed-up':>9} {'fits s':>7} {'replicates s':>13}")
    for label, wall, sec, _ in rows:
        print(f"{label:<30} {wall:>7.1f} {one / wall:>8.2f}x {sec['fits']:>7.1f} {sec['replicates']:>13.1f}")
    print(f"(the LocalCluster took {started:.1f} s to start, not counted; fits s and replicates s: the JSON's seconds)")
    ref = rows[0][3]
    same = True
    for label, _, _, nums in rows[1:]:
        diff = sorted(k for k in ref.keys() | nums.keys() if ref.get(k) != nums.get(k))
        if diff:
            same = False
            eg = "; ".join(f"{k}: {ref.get(k)} vs {nums.get(k)}" for k in diff[:3])
            print(f"  {label}: {len(diff)} of {len(ref)} numbers differ from 1 worker's, e.g. {eg}")
    print(f"same numbers: {'yes' if same else 'no'} ({len(ref)} numbers of the JSON compared: shares, shifts, fits)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["floor", "big", "scale"])
    ap.add_argument("--consumers", type=int, help="floor: consumers (default 10^6); big: the largest size (10^7)")
    ap.add_argument("--steps", type=int, default=20, help="floor: steps per repetition (default 20)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's marketsim, for the sections that import it here
    if a.only in (None, "floor"):
        floor(a.consumers or 1_000_000, a.steps)
    if a.only in (None, "big"):
        big((1_000_000, a.consumers) if a.consumers else (1_000_000, 10_000_000))
    if a.only in (None, "scale"):
        scale()


if __name__ == "__main__":
    main()
