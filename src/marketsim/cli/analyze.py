"""``marketsim analyze``: sensitivity indices, main effects and per-point intervals of a stored sweep; the
figures and analysis.json it writes, the tables it prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from marketsim.errors import UserError
from marketsim.experiments.sweep.analysis import (
    EFFECT_FRACTION,
    decimals,
    influence_order,
    intervals,
    main_effects,
    quantities,
    resume_command,
    sensitivity,
    unit_suffix,
    write_figures,
)
from marketsim.io import dataset, store
from marketsim.report.numbers import interval, share
from marketsim.report.progress import console, table


def _tables(manifest: dict, indices: dict | None, effects: dict, points: pd.DataFrame | None) -> list:
    """Rich tables that read at 80 columns: per output, the parameters (most influential first) with their
    indices and effect sizes in the output's display unit; for grid and LHS also the per-point intervals."""
    pq, oq = quantities(manifest)
    method = manifest["design"]["method"]
    out = []
    for o in manifest["outputs"]:
        q = oq[o]
        ef = effects[o]
        d = decimals([ef[p][k] * q.scale for p in ef for k in ("range", "low", "high")])
        sign = "+" if o.startswith("shift.") else ""
        t = table(
            f"{q.axis()}, {method.capitalize()} indices and effect sizes" if indices else f"{q.axis()}, effect sizes"
        )
        t.add_column("parameter")
        if method == "sobol" and indices:
            t.add_column("S1 %", justify="right", no_wrap=True)
            t.add_column("ST %", justify="right", no_wrap=True)
        elif indices:
            md = decimals([indices[o][p]["mu_star"] * q.scale for p in ef])
            t.add_column(f"mu*{unit_suffix(q, diff=True)}", justify="right", no_wrap=True)
            t.add_column(f"sigma{unit_suffix(q, diff=True)}", justify="right", no_wrap=True)
        t.add_column(f"range{unit_suffix(q, diff=True)}", justify="right", no_wrap=True)
        t.add_column(f"low → high{unit_suffix(q)}", justify="right", no_wrap=True)
        for p in influence_order(manifest, indices, effects, o):
            e = ef[p]
            cells = []
            if method == "sobol" and indices:
                v = indices[o][p]
                cells = [
                    f"{share(v['S1'], 0, '')} ± {share(v['S1_ci95'], 0, '')}",
                    f"{share(v['ST'], 0, '')} ± {share(v['ST_ci95'], 0, '')}",
                ]
            elif indices:
                v = indices[o][p]
                cells = [
                    f"{v['mu_star'] * q.scale:.{md}f} ± {v['mu_star_ci95'] * q.scale:.{md}f}",
                    f"{v['sigma'] * q.scale:.{md}f}",
                ]
            t.add_row(
                pq[p].label,
                *cells,
                f"{e['range'] * q.scale:.{d}f}",
                f"{e['low'] * q.scale:{sign}.{d}f} → {e['high'] * q.scale:{sign}.{d}f}",
            )
        out.append(t)
    if points is not None:
        params = [p["path"] for p in manifest["parameters"]]
        for o in manifest["outputs"]:
            q = oq[o]
            d = decimals([v * q.scale for v in points[o]])
            t = table(f"{q.axis()}: mean and 95% interval per point ({method})")
            t.add_column("point", justify="right", no_wrap=True)
            num = {p: all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in points[p]) for p in params}
            pd_ = {p: decimals([v * pq[p].scale for v in points[p]]) for p in params if num[p]}
            for p in params:
                t.add_column(pq[p].axis(), justify="right")
            t.add_column(f"mean{unit_suffix(q)}", justify="right", no_wrap=True)
            t.add_column(f"95% interval{unit_suffix(q)}", justify="right", no_wrap=True)
            for _, r in points.iterrows():
                lo, hi = r[f"{o}.ci95"]
                t.add_row(
                    str(r["point_id"]),
                    *[f"{r[p] * pq[p].scale:.{pd_[p]}f}" if num[p] else str(r[p]) for p in params],
                    f"{r[o] * q.scale:.{d}f}",
                    interval(lo * q.scale, hi * q.scale, f"{{:.{d}f}}") if lo == lo else "(1 replicate)",
                )
            out.append(t)
    return out


_NOTES = {
    "sobol": "S1: % of the output's variance the parameter explains alone; ST: with its interactions (± 95%).",
    "morris": "mu*: mean absolute change of the output when the parameter moves over its range (± 95%); sigma: "
    "how much that change varies (interactions, non-linearity).",
}


_EFFECT_NOTE = (
    "range: max - min of the mean output across the parameter's values (the main effect); low → high: "
    f"mean output over the lowest and highest {EFFECT_FRACTION:.0%} of the parameter's values."
)


def cmd_analyze(args: argparse.Namespace) -> int:
    path = Path(args.path)
    manifest = dataset.read_manifest(path) if (path / "manifest.json").is_file() else None
    if manifest is None:
        raise UserError(
            f"{path}: not a sweep results folder (no manifest.json); run `marketsim sweep SWEEP.yaml` first"
        )
    df = dataset.load_results(path)
    if df.empty:
        raise UserError(f"{path}: no finished runs stored yet; run `{resume_command(manifest, path)}`")
    method = manifest["design"]["method"]
    pq, oq = quantities(manifest)
    idx = sensitivity(manifest, df, path) if method in ("sobol", "morris") else None
    effects = main_effects(manifest, df)
    tab = None if idx is not None else intervals(manifest, df)
    figs = write_figures(manifest, df, idx, effects, path)
    result = {
        "method": method,
        "sweep": manifest["name"],
        "runs_stored": int(df["run_id"].nunique()),
        "parameters": {p: q.to_dict() for p, q in pq.items()},
        "outputs": {o: q.to_dict() for o, q in oq.items()},
    }
    if idx is not None:
        result["indices"] = idx
    else:
        result["points"] = json.loads(tab.to_json(orient="records"))
    result["effects"] = effects
    result["figures"] = figs
    store.write_json(path / "analysis.json", result)
    if args.json:
        print(store.dumps(result))
        return 0
    con = console()
    for t in _tables(manifest, idx, effects, tab):
        con.print(t)
        con.print()
    con.print(
        " ".join(
            ([_NOTES[method]] if method in _NOTES else [])
            + [_EFFECT_NOTE]
            + ["Shares are in %, share shifts in percentage points (pp)."]
        )
    )
    con.print(f"wrote {path}/: analysis.json, {', '.join(figs)}")
    return 0
