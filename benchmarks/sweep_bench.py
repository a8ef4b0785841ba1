"""Sweep benchmark: 64 runs on 1 and 2 local worker processes, and on a Dask LocalCluster (2 workers).

    python benchmarks/sweep_bench.py      (also run by benchmarks/bench.py)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = f"""
schema: marketsim-sweep/v1
name: bench64
base: {ROOT / 'scenarios' / 'jd_drops_weibo_login.yaml'}
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
    from marketsim.experiment import load_sweep, run_sweep

    tmp = Path(tempfile.mkdtemp(prefix="marketsim-bench-"))
    try:
        spec = tmp / "bench64.yaml"
        spec.write_text(SPEC)
        sweep = load_sweep(spec)
        root = ROOT / "results"
        run_sweep(sweep, tmp / "warm", None, results_root=root)  # calibrates once (cached), outside the timings
        rows = []

        def timed(label, executor, workers=1):
            t = time.perf_counter()
            run_sweep(sweep, tmp / label, executor, results_root=root, workers=workers)
            rows.append({"executor": label, "runs": 64, "seconds": time.perf_counter() - t})

        timed("inline (1 process)", None)
        with ProcessPoolExecutor(max_workers=1) as ex:
            timed("local pool, 1 worker", ex)
        with ProcessPoolExecutor(max_workers=2) as ex:
            timed("local pool, 2 workers", ex, 2)
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(2)
            timed("Dask LocalCluster, 2 workers", client.get_executor(), 2)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict]) -> None:
    by = {r["executor"]: r["seconds"] for r in rows}
    one, two = by["local pool, 1 worker"], by["local pool, 2 workers"]
    print(f"{'executor':<30} {'runs':>5} {'wall s':>8} {'s/run':>7}")
    for r in rows:
        print(f"{r['executor']:<30} {r['runs']:>5} {r['seconds']:>8.2f} {r['seconds'] / r['runs']:>7.3f}")
    print(f"speed-up 2 vs 1 local workers: {one / two:.2f}x (2-core machine)")
    dask = by["Dask LocalCluster, 2 workers"]
    print(f"Dask overhead per run against the local pool (2 workers each): {(dask - two) / 64 * 1000:+.1f} ms")


if __name__ == "__main__":
    print_table(bench_sweep())
