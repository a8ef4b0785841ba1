"""PLACEHOLDER (branch s5-f): minimal stand-ins for the parts of issue 21 that other branches build, so the
"Decide" view (:mod:`marketsim.viz.decide`) runs before they land. Each is used ONLY when the real module cannot
be imported; the lead deletes this file once these are merged:

- the decision core ``marketsim.experiments.decision`` (from_folder, draws_table, ranking, p_beats, p_beyond,
  tornado, conclusion; /work/wt/DECISION_API.md),
- scenario discovery ``marketsim.experiments.discovery.discover_outcomes`` (PRIM; here: the best single box of
  one or two one-sided limits, found by a plain search),
- the charts ``marketsim.report.decision_charts`` (tornado_figure, options_figure),
- the exports ``marketsim.report.export`` (export_html, export_xlsx).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketsim.experiments.projection import BASELINE, Projection


@dataclass(frozen=True)
class Param:
    path: str
    label: str
    unit: str
    scale: float
    low: float
    high: float
    central: float
    reason: str


@dataclass(frozen=True)
class Outcomes:
    scenario: str
    options: tuple[str, ...]
    retailers: tuple[str, ...]
    baseline: str
    dates: tuple[str, ...]
    share: dict
    weights: np.ndarray
    params: tuple[Param, ...]
    values: np.ndarray
    draw_index: np.ndarray
    currency: str

    def shift(self, option: str) -> np.ndarray:
        return self.share[option][:, :, -1, :] - self.share[BASELINE][:, :, -1, :]

    def horizon(self) -> str:
        return self.dates[-1]


def draws_table(proj: Projection) -> pd.DataFrame:
    kd = proj.kept_draws()
    cols: dict = {"draw": np.asarray(proj.kept, dtype=int), "weight": np.asarray(proj.weights, dtype=float)}
    for p in kd.params:
        cols[p.path] = [float(v[p.path]) for v in kd.values]
    return pd.DataFrame(cols)


def from_folder(folder: str | Path) -> Outcomes:
    from marketsim.io.store import read_result

    rs = read_result(folder, ["projection.json", "replicates.parquet", "draws.parquet"])
    doc = rs.json("projection.json")
    tidy = rs.table("replicates.parquet")
    draws = rs.table("draws.parquet")
    retailers = tuple(dict.fromkeys(tidy["retailer"]))
    dates = tuple(dict.fromkeys(tidy["date"]))
    arms = list(dict.fromkeys(tidy["arm"]))
    options = tuple(a for a in arms if a != BASELINE)
    K, R, T, J = tidy["draw"].nunique(), tidy["replicate"].nunique(), len(dates), len(retailers)
    share = {}
    for arm in arms:
        t = tidy[tidy["arm"] == arm].sort_values(["draw", "replicate", "step", "retailer"], kind="stable")
        order = {n: j for j, n in enumerate(retailers)}
        t = t.assign(_j=t["retailer"].map(order)).sort_values(["draw", "replicate", "step", "_j"], kind="stable")
        share[arm] = t["gmv_share"].to_numpy(float).reshape(K, R, T, J)
    paths = [c for c in draws.columns if c not in ("draw", "weight")]
    values = draws[paths].to_numpy(float) if paths else np.zeros((K, 0))
    params = tuple(
        Param(
            p,
            p.split(".")[-1].replace("_", " "),
            "",
            1.0,
            float(values[:, i].min()),
            float(values[:, i].max()),
            float(np.median(values[:, i])),
            "assumption",
        )
        for i, p in enumerate(paths)
    )
    w = draws["weight"].to_numpy(float)
    return Outcomes(
        scenario=options[0],
        options=options,
        retailers=retailers,
        baseline="without " + (", ".join(doc.get("baseline_without") or []) or "any event"),
        dates=dates,
        share=share,
        weights=w / w.sum(),
        params=params,
        values=values,
        draw_index=draws["draw"].to_numpy(int),
        currency="CNY",
    )


def _w(o: Outcomes) -> np.ndarray:
    R = o.share[o.options[0]].shape[1]
    return np.repeat(o.weights, R) / R


def ranking(o: Outcomes, retailer: str) -> list[dict]:
    j = o.retailers.index(retailer)
    w = _w(o)
    s = {a: o.shift(a)[:, :, j].reshape(-1) * 100 for a in o.options}
    stack = np.stack([s[a] for a in o.options])
    best = np.argmax(stack, axis=0)
    rows = []
    for i, a in enumerate(o.options):
        x = s[a]
        order = np.argsort(x)
        cw = np.cumsum(w[order])
        lo, hi = x[order][np.searchsorted(cw, 0.025)], x[order][min(np.searchsorted(cw, 0.975), len(x) - 1)]
        rows.append(
            {
                "option": a,
                "mean_pp": float(w @ x),
                "ci95_pp": [float(lo), float(hi)],
                "p_best": float(w[best == i].sum()),
            }
        )
    return sorted(rows, key=lambda r: -r["mean_pp"])


def p_beats(o: Outcomes, retailer: str) -> dict:
    j = o.retailers.index(retailer)
    w = _w(o)
    h = {a: o.share[a][:, :, -1, j].reshape(-1) for a in o.options}
    return {a: {b: (float("nan") if a == b else float(w[h[a] > h[b]].sum())) for b in o.options} for a in o.options}


def p_beyond(o: Outcomes, retailer: str, threshold_pp: float) -> dict:
    j = o.retailers.index(retailer)
    w = _w(o)
    out = {}
    for a in o.options:
        x = o.shift(a)[:, :, j].reshape(-1) * 100
        out[a] = float(w[x < threshold_pp].sum() if threshold_pp < 0 else w[x > threshold_pp].sum())
    return out


def tornado(o: Outcomes, option: str, retailer: str) -> dict:
    j = o.retailers.index(retailer)
    y = (o.shift(option)[:, :, j] * 100).mean(axis=1)
    rows = []
    X = o.values
    if X.shape[1] and len(y) > X.shape[1] + 1:
        Z = np.column_stack([np.ones(len(y)), X - X.mean(axis=0)])
        coef, *_ = np.linalg.lstsq(Z, y, rcond=None)
        for i, p in enumerate(o.params):
            at_lo = float(coef[0] + coef[i + 1] * (p.low - X[:, i].mean()))
            at_hi = float(coef[0] + coef[i + 1] * (p.high - X[:, i].mean()))
            rows.append(
                {
                    "path": p.path,
                    "label": p.label,
                    "unit": p.unit,
                    "scale": p.scale,
                    "low": p.low,
                    "high": p.high,
                    "central": p.central,
                    "at_low_pp": at_lo,
                    "at_high_pp": at_hi,
                    "swing_pp": abs(at_hi - at_lo),
                    "variance_share": float("nan"),
                }
            )
    rows.sort(key=lambda r: -r["swing_pp"])
    return {
        "rows": rows,
        "central_pp": float(y.mean()),
        "method": "placeholder: a linear fit over the draws",
        "r2": float("nan"),
    }


def conclusion(o: Outcomes, retailer: str, threshold_pp: float) -> str:
    rk = ranking(o, retailer)
    pb = p_beats(o, retailer)
    best, second = rk[0]["option"], (rk[1]["option"] if len(rk) > 1 else None)
    beyond = p_beyond(o, retailer, threshold_pp)
    s = f"For {retailer}, {best} is the best of the {len(rk)} options"
    if second is not None:
        s += f": it beats {second} in {pb[best][second]:.0%} of the draws"
    worst = rk[-1]["option"]
    word = "costs" if threshold_pp < 0 else "gains"
    s += f"; the chance that {worst} {word} {retailer} more than {abs(threshold_pp):.1f} points is {beyond[worst]:.0%}."
    return s


def discover_outcomes(o: Outcomes, option: str, retailer: str, threshold_pp: float) -> list[dict]:
    """The best box of at most two one-sided limits on the parameters (by density, coverage at least 0.3)."""
    j = o.retailers.index(retailer)
    y = (o.shift(option)[:, :, j] * 100).mean(axis=1)
    hit = y < threshold_pp if threshold_pp < 0 else y > threshold_pp
    if not hit.any() or not o.params:
        return []
    X = o.values
    cands = []
    for i in range(X.shape[1]):
        for q in np.unique(X[:, i]):
            cands += [(i, ">=", q), (i, "<=", q)]

    def mask(lims):
        m = np.ones(len(y), bool)
        for i, op, q in lims:
            m &= X[:, i] >= q if op == ">=" else X[:, i] <= q
        return m

    best = None
    for c in cands:
        m = mask([c])
        if m.sum() and hit[m].sum() / hit.sum() >= 0.3:
            d = hit[m].mean()
            if best is None or d > best[0]:
                best = (d, [c])
    if best is None:
        return []
    m = mask(best[1])
    lims = " and ".join(
        f"{o.params[i].label} {'is at least' if op == '>=' else 'is at most'} {q:.3g}" for i, op, q in best[1]
    )
    return [
        {
            "limits": [{"path": o.params[i].path, "op": op, "value": float(q)} for i, op, q in best[1]],
            "coverage": float(hit[m].sum() / hit.sum()),
            "density": float(hit[m].mean()),
            "sentence": f"{option} moves {retailer} beyond {threshold_pp:+.1f} points when {lims}",
        }
    ]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def tornado_figure(t: dict, title: str = ""):
    import matplotlib.pyplot as plt

    rows = t["rows"]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(1, len(rows))))
    for k, r in enumerate(reversed(rows)):
        ax.barh(k, r["at_high_pp"] - r["at_low_pp"], left=r["at_low_pp"], color="#4477aa")
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)])
    ax.axvline(t["central_pp"], color="k", lw=0.8)
    ax.set_xlabel("shift at the horizon (points)")
    ax.set_title(title or "What drives it")
    fig.tight_layout()
    return fig


def options_figure(o: Outcomes, retailer: str, observed=()):
    import matplotlib.pyplot as plt

    j = o.retailers.index(retailer)
    fig, axes = plt.subplots(1, len(o.options), figsize=(4 * len(o.options), 3), sharey=True, squeeze=False)
    t = np.arange(len(o.dates))
    for ax, a in zip(axes[0], o.options, strict=True):
        x = o.share[a][:, :, :, j].reshape(-1, len(t)) * 100
        for lo, hi, al in ((5, 95, 0.2), (25, 75, 0.4)):
            ax.fill_between(t, np.percentile(x, lo, axis=0), np.percentile(x, hi, axis=0), alpha=al, color="#4477aa")
        ax.plot(t, np.median(x, axis=0), color="#4477aa")
        for step, v in observed:
            ax.plot(step, v * 100, "ko", ms=3)
        ax.set_title(a, fontsize=9)
    axes[0][0].set_ylabel(f"{retailer} share of GMV (%)")
    fig.tight_layout()
    return fig


def export_html(folder: str | Path) -> bytes:
    import matplotlib.pyplot as plt

    o = from_folder(folder)
    r = o.retailers[0]
    fig = options_figure(o, r)
    img = _png(fig)
    plt.close(fig)
    rows = "".join(f"<tr><td>{x['option']}</td><td>{x['mean_pp']:+.2f}</td></tr>" for x in ranking(o, r))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{o.scenario}</title></head><body>"
        f"<h1>{o.scenario}</h1><p>{conclusion(o, r, -0.3)}</p><table>{rows}</table>"
        f"<img alt='options' src='data:image/png;base64,{img}'></body></html>"
    ).encode()


def export_xlsx(folder: str | Path) -> bytes:
    from marketsim.io.store import read_result

    doc = read_result(folder, ["projection.json"]).json("projection.json")
    rows = []
    opts = doc.get("options") or {doc["scenario"]: {"shift": doc["shift"]}}
    for arm, by in opts.items():
        for retailer, s in by["shift"].items():
            rows.append(
                {"option": arm, "retailer": retailer, **{k: v for k, v in s.items() if not isinstance(v, (dict, list))}}
            )
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xw:
        pd.DataFrame(rows).to_excel(xw, sheet_name="shift", index=False)
        pd.DataFrame({"projection.json": [json.dumps(doc)[:30000]]}).to_excel(xw, sheet_name="json", index=False)
    return buf.getvalue()
