"""Fit, drift and projection benchmarks (the cold-start, drift and projection targets below). Prints tables;
nothing here is a test.

    python benchmarks/fit_bench.py                 # every section (about 15 minutes on 2 cores)
    python benchmarks/fit_bench.py --only fit      # cold and cached fit next to the run, at 10^5 and 10^6
    python benchmarks/fit_bench.py --only cold     # cold (numba too) vs cached `marketsim run battle_lines --consumers 10^6 --steps 52`
    python benchmarks/fit_bench.py --only drift    # quarterly shares of a 104-week event-free run (trends 0)
    python benchmarks/fit_bench.py --only project  # 64 draws x 4 replicates at 50,000 consumers, 2 workers (x3)
    python benchmarks/fit_bench.py --only headline # the README's headline projection (--compare), cold fit cache (x3)

Targets: a cold 10^6-consumer run in under 2x the same run with the fit cached (median of 3); docs/model.md
property 7 (share slopes under 0.3 points a year); the projection under 60 s on 2 local workers, and the
README's headline projection under 60 s with no fit cached (each the median of 3 runs: this machine's speed
moves by 10% from one minute to the next).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = ROOT / "src" / "marketsim" / "scenarios" / "battle_lines_2013.yaml"
BASELINE = ROOT / "src" / "marketsim" / "scenarios" / "baseline_2013q2.yaml"


def _cli(*args, cwd, env_extra=None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env_extra or {})}
    env.pop("MARKETSIM_FIT_CACHE", None)
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "marketsim.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    if r.returncode:
        raise SystemExit(f"marketsim {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def fit_table() -> None:
    """Cold fit (empty cache), cached fit, and a run, per size."""
    from marketsim.fit.calibrate import FIT_CONSUMERS

    print("\n## Fit (battle_lines_2013.yaml): seconds, one process")
    print(f"{'consumers':>10} {'cold fit':>9} {'cached fit':>11} {'run 105 wk':>11} {'fit at':>8}")
    for n in (100_000, 1_000_000):
        with tempfile.TemporaryDirectory() as d:
            cold = _cli("calibrate", HEADLINE, "--consumers", n, "--json", cwd=d)
            cached = _cli("calibrate", HEADLINE, "--consumers", n, "--json", cwd=d)
            run = _cli("run", HEADLINE, "--consumers", n, "--json", cwd=d)
        print(f"{n:>10,} {cold:>9.1f} {cached:>11.1f} {run:>11.1f} {min(n, FIT_CONSUMERS):>8,}", flush=True)
    print("(calibrate at 10^6 also runs the fit's window once at 10^6 to report its residuals there)")


def cold_vs_cached(repeats: int = 3) -> None:
    """The cold-start target: `marketsim run battle_lines --consumers 1000000 --steps 52` with nothing cached: no
    fit, no trend choice and no compiled code (numba's cache in a fresh folder: compilation counts in the cold
    figure), against the same command with all three cached; median of ``repeats``."""
    cold, warm = [], []
    for _ in range(repeats):
        d = tempfile.mkdtemp()
        numba_cache = {"NUMBA_CACHE_DIR": str(Path(d) / "numba-cache")}
        try:
            cold.append(
                _cli("run", HEADLINE, "--consumers", 1_000_000, "--steps", 52, "--json", cwd=d, env_extra=numba_cache)
            )
            shutil.rmtree(Path(d) / "results" / "battle_lines_2013", ignore_errors=True)
            warm.append(
                _cli("run", HEADLINE, "--consumers", 1_000_000, "--steps", 52, "--json", cwd=d, env_extra=numba_cache)
            )
        finally:
            shutil.rmtree(d, ignore_errors=True)
    c, w = statistics.median(cold), statistics.median(warm)
    print(
        f"\n## Cold vs cached run (battle_lines_2013.yaml, 10^6 consumers, 52 weeks; wall seconds, median of {repeats})"
    )
    print(
        f"cold (no fit, trend choice or compiled code cached) {c:.1f} s (runs {', '.join(f'{x:.1f}' for x in cold)}); "
        f"cached {w:.1f} s (runs {', '.join(f'{x:.1f}' for x in warm)}); ratio {c / w:.2f} (target < 2)"
    )


def drift(n: int = 100_000, seeds: int = 4) -> None:
    """Quarterly GMV shares (expected) of a 104-week event-free run of the calibrated baseline with its trends
    set to 0, and the slope of each share in points a year (docs/model.md property 7), per seed and on average."""
    import numpy as np

    from marketsim.fit.cache import cache_dir, fitted
    from marketsim.fit.calibrate import expected_path
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(BASELINE)
    fit = fitted(sc, cache_dir(ROOT / "results"))
    names = sc.retailer_names
    print(f"\n## Drift: 104 event-free weeks of the calibrated baseline, trends 0, {n:,} consumers")
    slopes, quarters = [], []
    for s in range(seeds):
        path = expected_path(sc, fit.alpha, np.zeros(len(names)), sc.seed + s, n, 104)
        sh = path.shares * 100
        years = np.arange(104) * 7 / 365.25
        slopes.append(np.polyfit(years, sh, 1)[0])
        quarters.append([sh[q * 13 : (q + 1) * 13].mean(axis=0) for q in range(8)])
    q = np.mean(quarters, axis=0)
    print("quarter " + " ".join(f"{n:>8}" for n in names))
    for k, row in enumerate(q):
        print(f"Q{k + 1:<6} " + " ".join(f"{v:8.2f}" for v in row))
    sl = np.array(slopes)
    print("slope pp/yr per seed: " + "; ".join(" ".join(f"{x:+.2f}" for x in row) for row in sl))
    print(
        "mean slope pp/yr: "
        + " ".join(f"{n} {x:+.3f}" for n, x in zip(names, sl.mean(axis=0), strict=True))
        + " (target: under 0.3 in absolute value)"
    )


def _project_once(args: list[str], *, cwd: str) -> tuple[float, dict]:
    """Wall seconds of ``marketsim project ARGS --json`` in ``cwd`` (no fit cached there) and its JSON output."""
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("MARKETSIM_FIT_CACHE", None)
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "marketsim.cli", "project", *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"marketsim project {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return total, json.loads(r.stdout)


def _median_of(repeats: int, run) -> tuple[float, list[float], dict]:
    """``run()`` (-> (seconds, output)) ``repeats`` times: the median seconds, every run's, and the median run's
    output."""
    runs = sorted((run() for _ in range(repeats)), key=lambda x: x[0])
    mid = runs[len(runs) // 2]
    return mid[0], [x[0] for x in runs], mid[1]


def project_bench(repeats: int = 3) -> None:
    """64 draws x 4 replicates of the headline scenario at 50,000 consumers, the three market parameters
    uncertain (every draw refits), on 2 local workers, in a fresh folder (no fit cached): wall time (median of
    ``repeats``) and the part spent fitting."""
    args = [str(HEADLINE), "--consumers", "50000", "--draws", "64", "--replicates", "4", "--workers", "2"]

    def once():
        with tempfile.TemporaryDirectory() as d:
            return _project_once(args, cwd=d)

    total, runs, out = _median_of(repeats, once)
    sec = out["seconds"]
    print("\n## Projection: battle_lines_2013.yaml, 64 draws x 4 replicates, 50,000 consumers, 2 local workers")
    print(
        f"wall {total:.0f} s, median of {repeats} ({', '.join(f'{x:.0f}' for x in runs)}; target < 60 s): fitting "
        f"{sec['fits']:.0f} s ({sec['fits'] / total * 100:.0f}%), replicates {sec['replicates']:.0f} s; "
        f"{out['calibration']['distinct']} distinct fits; {len(out['draws']['failed'])} draws could not be fitted"
    )


def headline_command() -> list[str]:
    """The README's headline projection command (`marketsim project ... --compare ...`), as the README gives it."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"`(marketsim\s+project\s[^`]*--compare[^`]*)`", text)
    if m is None:
        raise SystemExit("README.md: no `marketsim project ... --compare ...` command found")
    return shlex.split(" ".join(m.group(1).split()))


def headline(repeats: int = 3) -> None:
    """The README's headline projection, run as the README gives it (its scenarios/ folder: the bundled files) in a
    fresh folder with no fit cached: wall seconds, median of ``repeats``."""
    cmd = headline_command()

    def once():
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "scenarios").symlink_to(ROOT / "src" / "marketsim" / "scenarios")
            return _project_once(cmd[2:], cwd=d)

    total, runs, out = _median_of(repeats, once)
    sec = out.get("seconds", {})
    print(f"\n## Headline projection (README): `{' '.join(cmd)}`, no fit cached, default workers")
    print(
        f"wall {total:.0f} s, median of {repeats} ({', '.join(f'{x:.0f}' for x in runs)}; target < 60 s)"
        + (f": fitting {sec['fits']:.0f} s, replicates {sec['replicates']:.0f} s" if "fits" in sec else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["fit", "cold", "drift", "project", "headline"])
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's marketsim, for the sections that import it here
    for name, fn in (
        ("fit", fit_table),
        ("cold", cold_vs_cached),
        ("drift", drift),
        ("project", project_bench),
        ("headline", headline),
    ):
        if a.only in (None, name):
            fn()


if __name__ == "__main__":
    main()
