"""PLACEHOLDER: minimal stand-ins for the parts of the decision desk built elsewhere, so the
"Decide" view (:mod:`marketsim.viz.decide`) runs before they land. Each is used ONLY when the real module cannot
be imported; the lead deletes this file once these are merged:

- scenario discovery ``marketsim.experiments.discovery.discover_outcomes`` (PRIM; here: the densest box of one
  one-sided limit covering at least 30% of the cases, found by a plain search),
- the charts ``marketsim.report.decision_charts`` (tornado_figure, options_figure),
- the exports ``marketsim.report.export`` (export_html, export_xlsx).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from marketsim.experiments.decision import Outcomes, from_folder, ranking
from marketsim.io.store import read_result
from marketsim.report.decision import conclusion


def discover_outcomes(o: Outcomes, option: str, retailer: str, threshold_pp: float) -> list[dict]:
    """The densest box of one one-sided limit on a parameter covering at least 30% of the cases (placeholder)."""
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
    import textwrap

    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.5 * max(1, len(rows))))
    for k, r in enumerate(reversed(rows)):
        ax.barh(k, r["at_high_pp"] - r["at_low_pp"], left=r["at_low_pp"], color="#4477aa")
    ax.set_yticks(range(len(rows)), [textwrap.fill(r["label"], 28) for r in reversed(rows)])
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
