"""``marketsim sweep``: run (or resume) a sweep file's design and store its dataset; a bar while it runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from marketsim.engine.population import check_memory
from marketsim.experiments.sweep.runner import check_folder, load_sweep, run_sweep
from marketsim.io import names, resultsindex, store
from marketsim.report.progress import bar, stderr
from marketsim.runtime.executor import open_executor


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep)
    if sweep.base is not None:  # refused before any run, not in every worker
        check_memory(sweep.base)

    out = Path(args.out) if args.out else names.inside("results", Path("results") / names.scenario_folder(sweep.name))
    store.check_output_dir(out)  # before any work: a bad --out costs nothing
    pending = sweep.n_runs - len(check_folder(sweep, out))
    t0 = time.perf_counter()
    with open_executor(pending, workers=args.workers, scheduler=args.scheduler) as pool:
        with bar(f"sweep {sweep.name} on {pool.where}", None, "runs") as update:
            counts = run_sweep(
                sweep,
                out,
                pool.executor,
                workers=pool.slots,
                on_progress=lambda k, n: update(completed=k, total=n),
                on_note=lambda m: stderr.print(m, soft_wrap=True),
                announce_resume=not args.resume,
            )
    resultsindex.update(Path("results"))  # results/index.md lists every result (the sweep's too, if it is there)
    stderr.print(
        f"{counts['ran']} runs in {time.perf_counter() - t0:.1f} s ({counts['skipped']} already stored); "
        f"{counts['total']} runs in {out}/ (part-*.parquet, manifest.json); next: marketsim analyze {out}",
        soft_wrap=True,
    )
    return 0
