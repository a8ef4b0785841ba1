"""Analysis of a finished sweep: SALib sensitivity indices (Sobol, Morris) or per-point intervals (grid, LHS)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import dataset, store
from .errors import UserError


def point_means(df: pd.DataFrame, outputs: list[str], params: list[str]) -> pd.DataFrame:
    """Per design point: the parameter values and each output's mean over replicates at the last recorded step."""
    last = df[df["step"] == df["step"].max()]
    agg = last.groupby("point_id", sort=True)
    means = agg[outputs].mean()
    pars = agg[[f"param.{p}" for p in params]].first()
    return pd.concat([pars, means], axis=1)


def sensitivity(manifest: dict, df: pd.DataFrame) -> dict:
    """Indices per output: Sobol S1/ST with 95% CIs, or Morris mu*/sigma with mu* CI (unit-scaled parameters)."""
    method = manifest["design"]["method"]
    params = [p["path"] for p in manifest["parameters"]]
    outputs = manifest["outputs"]
    pm = point_means(df, outputs, params)
    expected = manifest["points"]
    if len(pm) != expected:
        raise UserError(f"the sweep is incomplete: {len(pm)} of {expected} points stored; finish it with `marketsim sweep --resume`")
    problem = {"num_vars": len(params), "names": params, "bounds": [[0.0, 1.0]] * len(params)}
    res: dict = {}
    for o in outputs:
        Y = pm[o].to_numpy(dtype=float)
        if method == "sobol":
            from SALib.analyze import sobol

            si = sobol.analyze(problem, Y, calc_second_order=False, print_to_console=False, seed=manifest["seed"])
            res[o] = {p: {"S1": float(si["S1"][k]), "S1_ci95": float(si["S1_conf"][k]),
                          "ST": float(si["ST"][k]), "ST_ci95": float(si["ST_conf"][k])} for k, p in enumerate(params)}
        else:
            from SALib.analyze import morris

            X = _unit_x(manifest, pm, params)
            si = morris.analyze(problem, X, Y, num_levels=manifest["design"]["levels"], print_to_console=False,
                                seed=manifest["seed"])
            res[o] = {p: {"mu_star": float(si["mu_star"][k]), "mu_star_ci95": float(si["mu_star_conf"][k]),
                          "sigma": float(si["sigma"][k])} for k, p in enumerate(params)}
    return res


def _unit_x(manifest: dict, pm: pd.DataFrame, params: list[str]) -> np.ndarray:
    """Parameter values back in the unit hypercube (Morris works on the design's own grid)."""
    from .experiment import Parameter

    cols = []
    for spec in manifest["parameters"]:
        p = Parameter(spec["path"], spec["kind"], tuple(spec["args"]))
        x = pm[f"param.{p.path}"].to_numpy(dtype=float)
        if p.kind == "range":
            lo, hi = p.args
            cols.append((x - lo) / (hi - lo))
        else:
            from scipy import stats as st

            dist = {"normal": lambda: st.norm(p.args[0], p.args[1]),
                    "lognormal": lambda: st.lognorm(s=p.args[1], scale=math.exp(p.args[0])),
                    "triangular": lambda: st.triang(c=(p.args[1] - p.args[0]) / (p.args[2] - p.args[0]), loc=p.args[0], scale=p.args[2] - p.args[0])}[p.kind]()
            cols.append(dist.cdf(x))
    return np.column_stack(cols)


def intervals(manifest: dict, df: pd.DataFrame) -> pd.DataFrame:
    """Grid / LHS: per point, the mean and 95% t interval over replicates of each output (last recorded step)."""
    params = [p["path"] for p in manifest["parameters"]]
    last = df[df["step"] == df["step"].max()]
    rows = []
    for pid, g in last.groupby("point_id", sort=True):
        row = {"point_id": int(pid), **{p: g[f"param.{p}"].iloc[0] for p in params}, "replicates": len(g)}
        for o in manifest["outputs"]:
            y = g[o].to_numpy(dtype=float)
            m = float(y.mean())
            half = float(stats.t.ppf(0.975, len(y) - 1) * y.std(ddof=1) / math.sqrt(len(y))) if len(y) > 1 else math.nan
            row[o] = m
            row[f"{o}.ci95"] = [m - half, m + half]
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(manifest: dict, df: pd.DataFrame, indices: dict | None, out: Path) -> list[str]:
    from .plots import close, plt

    params = [p["path"] for p in manifest["parameters"]]
    main = manifest["outputs"][0]
    written = []
    if indices is not None:
        outs = list(indices)
        fig, axes = plt.subplots(1, len(outs), figsize=(5.2 * len(outs), 0.9 + 0.55 * len(params)), dpi=110, squeeze=False)
        for ax, o in zip(axes[0], outs):
            key, ci = ("ST", "ST_ci95") if manifest["design"]["method"] == "sobol" else ("mu_star", "mu_star_ci95")
            order = sorted(params, key=lambda p: indices[o][p][key])
            vals = [indices[o][p][key] for p in order]
            errs = [indices[o][p][ci] for p in order]
            y = np.arange(len(order))
            ax.barh(y, vals, xerr=errs, color="#0072B2", alpha=0.8, capsize=3, label=key)
            if key == "ST":
                ax.barh(y, [indices[o][p]["S1"] for p in order], height=0.4, color="#E69F00", label="S1")
            ax.set_yticks(y, order, fontsize=8)
            ax.set_title(o, fontsize=9)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(fontsize=7, frameon=False)
        fig.suptitle(f"{manifest['name']}: sensitivity ({manifest['design']['method']})", fontsize=10)
        fig.tight_layout()
        store.save_figure(fig, out / "sensitivity.png")
        close(fig)
        written.append("sensitivity.png")
        key = "ST" if manifest["design"]["method"] == "sobol" else "mu_star"
        top = sorted(params, key=lambda p: -indices[main][p][key])[:2]
    else:
        top = params[:2]
    pm = point_means(df, manifest["outputs"], params)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    x = pm[f"param.{top[0]}"].astype(float)
    if len(top) > 1:
        sc = ax.scatter(x, pm[f"param.{top[1]}"].astype(float), c=pm[main], cmap="viridis", s=28)
        fig.colorbar(sc, ax=ax, label=main)
        ax.set_ylabel(top[1])
    else:
        ax.scatter(x, pm[main], s=28)
        ax.set_ylabel(main)
    ax.set_xlabel(top[0])
    ax.set_title(f"{main} against the most influential parameters", fontsize=9)
    fig.tight_layout()
    store.save_figure(fig, out / "response.png")
    close(fig)
    written.append("response.png")
    return written


def cmd_analyze(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    path = Path(args.path)
    manifest = dataset.read_manifest(path) if (path / "manifest.json").is_file() else None
    if manifest is None:
        raise UserError(f"{path}: not a sweep results folder (no manifest.json); run `marketsim sweep SWEEP.yaml` first")
    df = dataset.load_results(path)
    if df.empty:
        raise UserError(f"{path}: no finished runs stored yet")
    method = manifest["design"]["method"]
    con = Console()
    if method in ("sobol", "morris"):
        idx = sensitivity(manifest, df)
        result = {"method": method, "indices": idx}
        if not args.json:
            for o, per in idx.items():
                t = Table(title=f"{manifest['name']}: {method} indices of {o}")
                cols = ["parameter", "S1", "S1 95%", "ST", "ST 95%"] if method == "sobol" else ["parameter", "mu*", "mu* 95%", "sigma"]
                for c in cols:
                    t.add_column(c, justify="left" if c == "parameter" else "right")
                key = "ST" if method == "sobol" else "mu_star"
                for p, v in sorted(per.items(), key=lambda kv: -kv[1][key]):
                    if method == "sobol":
                        t.add_row(p, f"{v['S1']:.3f}", f"±{v['S1_ci95']:.3f}", f"{v['ST']:.3f}", f"±{v['ST_ci95']:.3f}")
                    else:
                        t.add_row(p, f"{v['mu_star']:.4g}", f"±{v['mu_star_ci95']:.3g}", f"{v['sigma']:.4g}")
                con.print(t)
    else:
        idx = None
        tab = intervals(manifest, df)
        result = {"method": method, "points": json.loads(tab.to_json(orient="records"))}
        if not args.json:
            t = Table(title=f"{manifest['name']}: mean and 95% interval per point ({method})")
            params = [p["path"] for p in manifest["parameters"]]
            for c in ["point"] + params + manifest["outputs"]:
                t.add_column(c, justify="right")
            for _, r in tab.iterrows():
                t.add_row(str(r["point_id"]), *[f"{r[p]:.4g}" if isinstance(r[p], float) else str(r[p]) for p in params],
                          *[f"{r[o]:.4g} [{r[o + '.ci95'][0]:.4g}, {r[o + '.ci95'][1]:.4g}]" for o in manifest["outputs"]])
            con.print(t)
    figs = _figures(manifest, df, idx, path)
    store.write_json(path / "analysis.json", result)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        con.print(f"wrote {path}/: analysis.json, {', '.join(figs)}")
    return 0
