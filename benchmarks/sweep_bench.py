"""Sweep benchmark: 64 runs on 1 and 2 local worker processes, and on a Dask LocalCluster (2 workers).

python benchmarks/sweep_bench.py      (also run by benchmarks/bench.py)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = f"""
schema: marketsim-sweep/v1
name: bench64
base: {ROOT / "src" / "marketsim" / "scenarios" / "jd_drops_weibo_login.yaml"}
seed: 1
consumers: 20000
replicates: 1
design: {{method: lhs, size: 64}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.15]}}
  - {{path: friction.create, range: [0.5, 3.0]}}
outputs: [gmv_share.JD, shift.gmv_share.JD]
shift_against: all
batch_runs: 8
"""


def bench_sweep() -> list[dict]:
    """Rows: executor, runs, seconds (the 64-run sweep, on warm workers), s_per_run, first_use_s (starting the
    executor's processes and a 2-run warm-up sweep: imports, first calibration lookup)."""
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    tmp = Path(tempfile.mkdtemp(prefix="marketsim-bench-"))
    try:
        spec = tmp / "bench64.yaml"
        spec.write_text(SPEC)
        sweep = load_sweep(spec)
        warm_spec = tmp / "warm.yaml"
        warm_spec.write_text(SPEC.replace("name: bench64", "name: warm").replace("size: 64", "size: 2"))
        warm = load_sweep(warm_spec)
        root = ROOT / "results"
        run_sweep(sweep, tmp / "calibrate", None, results_root=root)  # fits once (cached), outside the timings
        rows = []

        def timed(label, make_executor, workers=1):
            t0 = time.perf_counter()
            with make_executor() as executor:
                # processes start lazily (Dask workers by spawn: they import numpy, pandas, marketsim afresh);
                # that one-off cost is reported apart, so 'seconds' compares the executors' per-run overhead
                run_sweep(warm, tmp / f"warm-{len(rows)}", executor, results_root=root, workers=workers)
                first = time.perf_counter() - t0
                t = time.perf_counter()
                run_sweep(sweep, tmp / f"run-{len(rows)}", executor, results_root=root, workers=workers)
                secs = time.perf_counter() - t
            rows.append(
                {
                    "executor": label,
                    "runs": 64,
                    "seconds": round(secs, 3),
                    "s_per_run": round(secs / 64, 4),
                    "first_use_s": round(first, 2),
                }
            )

        timed("inline (1 process)", contextlib.nullcontext)
        timed("local pool, 1 worker", lambda: ProcessPoolExecutor(max_workers=1))
        timed("local pool, 2 workers", lambda: ProcessPoolExecutor(max_workers=2), 2)

        @contextlib.contextmanager
        def dask_executor():
            from distributed import Client, LocalCluster

            with (
                LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(2)
                yield client.get_executor()

        timed("Dask LocalCluster, 2 workers", dask_executor, 2)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict]) -> None:
    by = {r["executor"]: r["seconds"] for r in rows}
    one, two = by["local pool, 1 worker"], by["local pool, 2 workers"]
    print(f"{'executor':<30} {'runs':>5} {'wall s':>8} {'s/run':>7} {'first use s':>12}")
    for r in rows:
        print(
            f"{r['executor']:<30} {r['runs']:>5} {r['seconds']:>8.2f} {r['s_per_run']:>7.3f} {r['first_use_s']:>12.2f}"
        )
    print(f"speed-up 2 vs 1 local workers: {one / two:.2f}x")
    dask = by["Dask LocalCluster, 2 workers"]
    print(f"Dask overhead per run against the local pool (2 workers each): {(dask - two) / 64 * 1000:+.1f} ms")


if __name__ == "__main__":
    print_table(bench_sweep())
