"""Analysis of a finished sweep: which parameter matters (SALib Sobol or Morris indices, or per-point intervals
for grid and LHS designs) and by how much it moves each output (binned main effects), as tables, ``analysis.json``
and charts sized for a slide.

Numbers in ``analysis.json`` are in the dataset's units (shares as fractions of 1); tables and charts show them
in display units (shares in %, share shifts in percentage points), with the labels and units the manifest
stores (``labels.py``; manifests written before labels existed get the same defaults).
"""

from __future__ import annotations

import math
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from marketsim.errors import UserError
from marketsim.experiments.sweep.runner import Parameter
from marketsim.figures import plots
from marketsim.figures.plots import close, plt
from marketsim.figures.style import figure_function
from marketsim.io import store
from marketsim.scenario.labels import Quantity, output_quantity, parameter_quantity

#: Main effects: "low" and "high" are the mean output over this fraction of the lowest and highest parameter values.
EFFECT_FRACTION = 0.2
#: Main-effect curves: one bin per distinct value up to this many values (grid, Morris levels); else quantile bins.
MAX_LEVELS = 12
#: Quantile bins hold about this many design points each, between MIN_BINS and MAX_BINS bins.
POINTS_PER_BIN, MIN_BINS, MAX_BINS = 30, 3, 30
#: The band around a main-effect curve: these quantiles of the output within each bin (the other parameters' spread).
BAND = (0.1, 0.9)
#: Slide-sized figures: 16:9, 10 x 5.6 inches at 150 dpi (1500 x 840 pixels).
FIGSIZE, DPI = (10.0, 5.6), 150
_RC = {
    "font.size": 11,
    "axes.titlesize": 11.5,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 14,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_BLUE, _ORANGE, _GREY = "#0072B2", "#E69F00", "0.35"


# --------------------------------------------------------------------------- labels and units


def quantities(manifest: dict) -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    """Display label, unit and scale of each parameter (by path) and each output (by name), from the manifest,
    or the defaults of ``labels.py`` for a manifest written before labels existed."""
    params = {}
    for spec in manifest["parameters"]:
        params[spec["path"]] = Quantity.from_dict(spec) if "label" in spec else parameter_quantity(spec["path"])
    stored = manifest.get("output_labels") or {}
    outs = {o: Quantity.from_dict(stored[o]) if o in stored else output_quantity(o) for o in manifest["outputs"]}
    return params, outs


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


# --------------------------------------------------------------------------- numbers


def point_means(df: pd.DataFrame, outputs: list[str], params: list[str]) -> pd.DataFrame:
    """Per design point: the parameter values and each output's mean over replicates at the last recorded step."""
    last = df[df["step"] == df["step"].max()]
    agg = last.groupby("point_id", sort=True)
    means = agg[outputs].mean()
    pars = agg[[f"param.{p}" for p in params]].first()
    return pd.concat([pars, means], axis=1)


def resume_command(manifest: dict, path: str | Path | None = None) -> str:
    """The command that finishes this sweep: its sweep file (the manifest's ``source``) and results folder."""
    src = manifest.get("source") or "SWEEP.yaml"
    out = f" --out {shlex.quote(str(path))}" if path is not None else ""
    return f"marketsim sweep {shlex.quote(str(src))}{out}"


def sensitivity(manifest: dict, df: pd.DataFrame, path: str | Path | None = None) -> dict:
    """Indices per output: Sobol S1/ST with 95% CIs, or Morris mu*/sigma with mu* CI (unit-scaled parameters:
    mu* is in output units per full range of the parameter). ``path`` (the results folder) names where to resume
    in the error for an incomplete sweep."""
    method = manifest["design"]["method"]
    params = [p["path"] for p in manifest["parameters"]]
    outputs = manifest["outputs"]
    pm = point_means(df, outputs, params)
    expected = manifest["points"]
    if len(pm) != expected:
        raise UserError(
            f"the sweep is incomplete: {len(pm)} of {expected} points stored; the {method} indices need "
            f"every point; finish it with `{resume_command(manifest, path)}`"
        )
    problem = {"num_vars": len(params), "names": params, "bounds": [[0.0, 1.0]] * len(params)}
    res: dict = {}
    for o in outputs:
        Y = pm[o].to_numpy(dtype=float)
        if method == "sobol":
            from SALib.analyze import sobol

            si = sobol.analyze(problem, Y, calc_second_order=False, print_to_console=False, seed=manifest["seed"])
            res[o] = {
                p: {
                    "S1": float(si["S1"][k]),
                    "S1_ci95": float(si["S1_conf"][k]),
                    "ST": float(si["ST"][k]),
                    "ST_ci95": float(si["ST_conf"][k]),
                }
                for k, p in enumerate(params)
            }
        else:
            from SALib.analyze import morris

            X = _unit_x(manifest, pm, params)
            si = morris.analyze(
                problem, X, Y, num_levels=manifest["design"]["levels"], print_to_console=False, seed=manifest["seed"]
            )
            res[o] = {
                p: {
                    "mu_star": float(si["mu_star"][k]),
                    "mu_star_ci95": float(si["mu_star_conf"][k]),
                    "sigma": float(si["sigma"][k]),
                }
                for k, p in enumerate(params)
            }
    return res


def _unit_x(manifest: dict, pm: pd.DataFrame, params: list[str]) -> np.ndarray:
    """Parameter values back in the unit hypercube (Morris works on the design's own grid)."""
    cols = []
    for spec in manifest["parameters"]:
        p = Parameter(spec["path"], spec["kind"], tuple(spec["args"]))
        x = pm[f"param.{p.path}"].to_numpy(dtype=float)
        if p.kind == "range":
            lo, hi = p.args
            cols.append((x - lo) / (hi - lo))
        else:
            cols.append(p.distribution().cdf(x))
    return np.column_stack(cols)


def _numeric(x: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)


def _bins(x: pd.Series, order: list | None = None) -> tuple[np.ndarray, list, bool]:
    """Bin of every design point, each bin's x (its mean value, or the category), and whether bins are distinct
    values. Up to MAX_LEVELS distinct values (grid, Morris, ``values``) or non-numeric values: one bin per value,
    in ``order`` if given; otherwise quantile bins of about POINTS_PER_BIN points."""
    if not _numeric(x):
        cats = [v for v in (order or []) if v in set(x)] or sorted(set(x), key=str)
        pos = {v: k for k, v in enumerate(cats)}
        return np.array([pos[v] for v in x]), cats, True
    v = x.to_numpy(dtype=float)
    distinct = np.unique(v)
    if len(distinct) <= MAX_LEVELS:
        return np.searchsorted(distinct, v), [float(d) for d in distinct], True
    k = int(np.clip(len(v) // POINTS_PER_BIN, MIN_BINS, MAX_BINS))
    edges = np.unique(np.quantile(v, np.linspace(0, 1, k + 1)))
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    used = np.unique(idx)
    idx = np.searchsorted(used, idx)  # drop empty bins (ties at an edge)
    return idx, [float(v[idx == b].mean()) for b in range(len(used))], False


def main_effects(manifest: dict, df: pd.DataFrame) -> dict:
    """How much each parameter moves each output (its main effect), in the dataset's units, from the per-point
    means (replicates averaged, last recorded step). Per output and parameter:

    - ``curve``: the output's mean against the parameter, per bin of its values (``x``: the bin's mean value,
      or the value itself for up to MAX_LEVELS distinct values), with the BAND quantiles of the outcomes in the
      bin (``lo``, ``hi``: the spread that the other parameters and noise give) and the points per bin ``n``;
    - ``range``: max - min of the curve, the size of the effect whatever its shape;
    - ``low``, ``high``: the curve's mean over the lowest and highest EFFECT_FRACTION of the parameter's values
      (the lowest and highest value for distinct levels), ``change`` = high - low (the direction of the effect)
      with a 95% interval half-width ``change_ci95``.

    The curves of all parameters are fitted together as an additive model (one step function per parameter
    over its bins; least squares). With independent parameters, as every design here has (Sobol's A, B and
    mixed matrices, Morris trajectories, Latin hypercube, grid), each step function is the binned main effect
    E[output | parameter], but the other parameters' main effects are not counted as noise in it: a parameter
    that does nothing gets a flat curve even beside one that does everything."""
    specs = manifest["parameters"]
    params = [p["path"] for p in specs]
    pm = point_means(df, manifest["outputs"], params)
    binned = [_bins(pm[f"param.{p['path']}"], list(p["args"]) if p["kind"] == "values" else None) for p in specs]
    cols = [np.ones(len(pm))]
    for idx, centers, _ in binned:  # one indicator per bin but the first
        cols.extend((idx == b).astype(float) for b in range(1, len(centers)))
    X = np.column_stack(cols)
    res: dict = {}
    for o in manifest["outputs"]:
        y = pm[o].to_numpy(dtype=float)
        ok = np.isfinite(y)
        coef, *_ = np.linalg.lstsq(X[ok], y[ok], rcond=None)
        resid = y[ok] - X[ok] @ coef
        s2 = float(resid @ resid / max(1, ok.sum() - np.linalg.matrix_rank(X[ok])))
        res[o] = {}
        at = 1
        for (idx, centers, discrete), p in zip(binned, params, strict=True):
            k = len(centers)
            step = np.concatenate([[0.0], coef[at : at + k - 1]])
            at += k - 1
            # the curve: the output's mean with the parameter in bin b, the others as they were drawn
            curve = float(y[ok].mean()) + step - float(step[idx[ok]].mean())
            mean, lo, hi, n = [], [], [], []
            for b in range(k):
                yb = y[ok & (idx == b)]
                mean.append(float(curve[b]) if len(yb) else math.nan)
                lo.append(float(np.quantile(yb, BAND[0])) if len(yb) else math.nan)
                hi.append(float(np.quantile(yb, BAND[1])) if len(yb) else math.nan)
                n.append(int(len(yb)))
            if discrete:
                sel_lo, sel_hi = ok & (idx == 0), ok & (idx == k - 1)
            else:
                v = pm[f"param.{p}"].to_numpy(dtype=float)
                sel_lo = ok & (v <= np.quantile(v[ok], EFFECT_FRACTION))
                sel_hi = ok & (v >= np.quantile(v[ok], 1 - EFFECT_FRACTION))
            n_lo, n_hi = int(sel_lo.sum()), int(sel_hi.sum())
            low = float(curve[idx[sel_lo]].mean()) if n_lo else math.nan
            high = float(curve[idx[sel_hi]].mean()) if n_hi else math.nan
            finite = [m for m in mean if math.isfinite(m)]
            res[o][p] = {
                "range": float(max(finite) - min(finite)) if finite else math.nan,
                "low": low,
                "high": high,
                "change": high - low,
                "change_ci95": 1.96 * math.sqrt(s2 / n_lo + s2 / n_hi) if n_lo and n_hi else math.nan,
                "curve": {"x": centers, "mean": mean, "lo": lo, "hi": hi, "n": n},
            }
    return res


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


# --------------------------------------------------------------------------- figures


def _plt():
    return plt


def _plots():
    return plots


def influence_order(manifest: dict, indices: dict | None, effects: dict, output: str) -> list[str]:
    """Parameters, most influential first: by ST (Sobol) or mu* (Morris), else by the main effect's range."""
    params = [p["path"] for p in manifest["parameters"]]
    if indices is not None:
        key = "ST" if manifest["design"]["method"] == "sobol" else "mu_star"
        return sorted(params, key=lambda p: -_finite(indices[output][p][key]))
    return sorted(params, key=lambda p: -_finite(effects[output][p]["range"]))


def _finite(x: float) -> float:
    return x if x == x else -math.inf


def _header(fig, title: str, handles: list, labels: list) -> None:
    """Bold title at the top left, the legend on one line under it."""
    fig.suptitle(title, x=0.01, y=0.985, ha="left", va="top", fontweight="bold")
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.003, 0.935), ncols=len(handles), frameon=False)


def _footer(fig, manifest: dict, text: str) -> None:
    """Small grey notes under the panels: what the marks mean, then which sweep it is."""
    runs = manifest.get("runs", manifest["points"])
    fig.text(
        0.01,
        0.01,
        f"{text}\nSweep {manifest['name']}: {manifest['design']['method']} design, {runs:,} runs.",
        fontsize=9,
        color=_GREY,
        ha="left",
        va="bottom",
        linespacing=1.4,
    )


@figure_function
def sensitivity_figure(manifest: dict, indices: dict):
    """Bar chart per output (panels side by side, parameters down the shared y axis, most influential on top):
    Sobol total (ST, with its 95% interval) and first-order (S1) indices in % of the output's variance, or Morris
    mu* in the output's display unit per full range of the parameter. Returns the matplotlib figure."""
    plt = _plt()
    pq, oq = quantities(manifest)
    sobol = manifest["design"]["method"] == "sobol"
    outs = list(indices)
    order = influence_order(manifest, indices, {}, outs[0])[::-1]  # barh draws bottom-up: most influential last, on top
    ncols = min(3, len(outs))
    nrows = math.ceil(len(outs) / ncols)
    with plt.rc_context(_RC):
        # Sobol: one 0-100 % scale for every panel, so that the panels compare
        fig, axes = _plots().subplots(nrows, ncols, figsize=FIGSIZE, dpi=DPI, sharey=True, sharex=sobol, squeeze=False)
        y = np.arange(len(order))
        for k, ax in enumerate(axes.flat):
            if k >= len(outs):
                ax.set_visible(False)
                continue
            o = outs[k]
            per = indices[o]
            if sobol:
                err = {"ecolor": _GREY, "capsize": 3, "lw": 1}
                ax.barh(
                    y + 0.19,
                    [per[p]["ST"] * 100 for p in order],
                    xerr=[per[p]["ST_ci95"] * 100 for p in order],
                    height=0.38,
                    color=_BLUE,
                    error_kw=err,
                    label="total, with interactions (ST)",
                )
                ax.barh(
                    y - 0.19,
                    [per[p]["S1"] * 100 for p in order],
                    xerr=[per[p]["S1_ci95"] * 100 for p in order],
                    height=0.38,
                    color=_ORANGE,
                    error_kw=err,
                    label="alone (S1)",
                )
                ax.set_xlabel("% of the variance explained")
                vals = [
                    indices[o2][p][k] + sign * indices[o2][p][f"{k}_ci95"]
                    for o2 in outs
                    for p in order
                    for k in ("S1", "ST")
                    for sign in (-1, 1)
                ]
                ax.set_xlim(min(0.0, np.nanmin(vals) * 100) - 2, max(100.0, np.nanmax(vals) * 100) + 2)
                ax.xaxis.set_tick_params(labelbottom=True)
            else:
                s = oq[o].scale
                ax.barh(
                    y,
                    np.array([per[p]["mu_star"] for p in order]) * s,
                    xerr=np.array([per[p]["mu_star_ci95"] for p in order]) * s,
                    height=0.6,
                    color=_BLUE,
                    error_kw={"ecolor": _GREY, "capsize": 3, "lw": 1},
                    label="mean |effect| (mu*)",
                )
                ax.plot(
                    np.array([per[p]["sigma"] for p in order]) * s,
                    y,
                    "D",
                    color=_ORANGE,
                    ms=6,
                    label="spread of the effect (sigma)",
                )
                ax.set_xlabel(
                    _wrap(f"change over the parameter's range{f' ({oq[o].diff_unit})' if oq[o].unit else ''}", 34)
                )
            ax.axvline(0, color=_GREY, lw=0.8)
            ax.set_title(_wrap(oq[o].axis(), 34 if ncols > 1 else 70), loc="left")
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="y", length=0)
        axes[0][0].set_yticks(y, [_wrap(pq[p].label, 26) for p in order])
        handles, labels = axes[0][0].get_legend_handles_labels()
        if not sobol:  # the bars first
            handles, labels = handles[::-1], labels[::-1]
        _header(
            fig,
            "Which assumption matters" + (": Sobol sensitivity indices" if sobol else ": Morris elementary effects"),
            handles,
            labels,
        )
        _footer(fig, manifest, "Whiskers: 95% intervals.")
        fig.tight_layout(rect=(0, 0.06, 1, 0.91), w_pad=2.5)
    return fig


@figure_function
def effects_figure(manifest: dict, effects: dict, output: str):
    """Main effects of every parameter on ``output``: one panel per parameter (most influential first, shared
    output axis so that panels compare), the mean output against the parameter in its unit, with the BAND of
    outcomes over the other parameters as a shaded band. Returns the matplotlib figure."""
    plt = _plt()
    pq, oq = quantities(manifest)
    q = oq[output]
    order = influence_order(manifest, None, effects, output)
    specs = {p["path"]: p for p in manifest["parameters"]}
    d = decimals([effects[output][p][k] * q.scale for p in order for k in ("range", "low", "high")])
    ncols = min(len(order), 4 if len(order) in (4, 7, 8) else 3)
    nrows = math.ceil(len(order) / ncols)
    with plt.rc_context(_RC):
        fig, axes = _plots().subplots(nrows, ncols, figsize=FIGSIZE, dpi=DPI, sharey=True, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= len(order):
                ax.set_visible(False)
                continue
            p = order[k]
            e = effects[output][p]
            c = e["curve"]
            cat = specs[p]["kind"] == "values" and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in c["x"]
            )
            x = np.arange(len(c["x"])) if cat else np.array(c["x"], dtype=float) * pq[p].scale
            mean, lo, hi = (np.array(c[key], dtype=float) * q.scale for key in ("mean", "lo", "hi"))
            ax.fill_between(x, lo, hi, color=_BLUE, alpha=0.18, lw=0, label=f"{BAND[0]:.0%}–{BAND[1]:.0%} of the runs")
            ax.plot(x, mean, "-o", color=_BLUE, lw=2.2, ms=4, label="mean over the other parameters")
            if cat:
                ax.set_xticks(x, [str(v) for v in c["x"]])
            elif specs[p]["kind"] == "range":  # the parameter's whole range, not just the bins' centres
                ax.set_xlim(*(np.array(specs[p]["args"], dtype=float) * pq[p].scale))
            lo_all, hi_all = np.nanmin(lo), np.nanmax(hi)
            if lo_all < 0 < hi_all or output.startswith("shift."):
                ax.axhline(0, color=_GREY, lw=0.8)
            ax.set_title(_wrap(pq[p].label, 30 if ncols <= 3 else 24), loc="left", pad=22)
            ax.text(
                0,
                1.02,
                f"effect: {e['range'] * q.scale:.{d}f}{unit_suffix(q, diff=True)}",
                transform=ax.transAxes,
                va="bottom",
                ha="left",
                fontsize=10.5,
                fontweight="bold",
                color=_BLUE,
            )
            ax.set_xlabel(pq[p].unit or "value")
            ax.grid(alpha=0.3)
            if k % ncols == 0:
                ax.set_ylabel(_wrap(q.axis(), 30))
        handles, labels = axes[0][0].get_legend_handles_labels()
        _header(fig, f"What moves {q.label}", handles[::-1], labels[::-1])
        _footer(
            fig,
            manifest,
            "Effect: max - min of the line over the parameter's range. Band: the spread of "
            "outcomes that the other parameters (and noise) give.",
        )
        fig.tight_layout(rect=(0, 0.06, 1, 0.91), w_pad=2.5)
    return fig


@figure_function
def response_figure(manifest: dict, df: pd.DataFrame, order: list[str]):
    """The first output over the two most influential parameters (``order``): one dot per design point, colour =
    output in its display unit (a diverging scale centred on 0 for shifts that change sign). Returns the figure."""
    plt = _plt()
    pq, oq = quantities(manifest)
    main = manifest["outputs"][0]
    q = oq[main]
    params = [p["path"] for p in manifest["parameters"]]
    pm = point_means(df, manifest["outputs"], params)
    val = pm[main].to_numpy(dtype=float) * q.scale
    with plt.rc_context(_RC):
        fig, ax = _plots().subplots(figsize=FIGSIZE, dpi=DPI)
        xs = pm[f"param.{order[0]}"]
        x = xs.to_numpy(dtype=float) * pq[order[0]].scale if _numeric(xs) else xs.astype(str)
        if len(order) > 1:
            ys = pm[f"param.{order[1]}"]
            yv = ys.to_numpy(dtype=float) * pq[order[1]].scale if _numeric(ys) else ys.astype(str)
            lim = np.nanmax(np.abs(val)) if len(val) else 1.0
            kw = (
                {"cmap": "RdBu", "vmin": -lim, "vmax": lim}
                if np.nanmin(val) < 0 < np.nanmax(val)
                else {"cmap": "viridis"}
            )
            sc = ax.scatter(x, yv, c=val, s=40, edgecolors="white", linewidths=0.4, **kw)
            fig.colorbar(sc, ax=ax, label=_wrap(q.axis(), 40))
            ax.set_ylabel(_wrap(pq[order[1]].axis(), 40))
        else:
            ax.scatter(x, val, s=40, color=_BLUE)
            ax.set_ylabel(_wrap(q.axis(), 40))
        ax.set_xlabel(pq[order[0]].axis())
        ax.grid(alpha=0.3)
        fig.suptitle(
            f"{q.label} over the two most influential parameters" if len(order) > 1 else q.label,
            x=0.01,
            ha="left",
            fontweight="bold",
        )
        _footer(fig, manifest, "One dot per design point.")
        fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def effects_file(manifest: dict, output: str) -> str:
    """``effects.png`` for the first output, ``effects-<output>.png`` for each other."""
    return "effects.png" if output == manifest["outputs"][0] else f"effects-{output}.png"


def write_figures(manifest: dict, df: pd.DataFrame, indices: dict | None, effects: dict, out: Path) -> list[str]:
    """Draw and store (atomically) every chart of the analysis; returns the file names."""
    figs = []
    if indices is not None:
        figs.append(("sensitivity.png", sensitivity_figure(manifest, indices)))
    for o in manifest["outputs"]:
        figs.append((effects_file(manifest, o), effects_figure(manifest, effects, o)))
    figs.append(
        (
            "response.png",
            response_figure(manifest, df, influence_order(manifest, indices, effects, manifest["outputs"][0])[:2]),
        )
    )
    for name, fig in figs:
        store.save_figure(fig, out / name)
        close(fig)
    return [name for name, _ in figs]


# --------------------------------------------------------------------------- the command


def decimals(values) -> int:
    """Decimals that give the largest of ``values`` three significant digits (0 to 4)."""
    top = max((abs(v) for v in values if v == v and v != 0), default=1.0)
    return int(np.clip(2 - math.floor(math.log10(top)), 0, 4))


def unit_suffix(q: Quantity, diff: bool = False) -> str:
    """`` unit`` (or the unit of a difference, ``diff``), or nothing."""
    u = q.diff_unit if diff else q.unit
    return f" {u}" if u else ""
