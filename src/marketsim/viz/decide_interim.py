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
import datetime as dt
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketsim.experiments.decision import Outcomes, from_folder, ranking
from marketsim.io.store import read_result
from marketsim.report.decision import conclusion


@dataclass(frozen=True)
class _Box:
    limits: dict
    coverage: float
    density: float


@dataclass(frozen=True)
class _Discovery:
    boxes: list
    option: str
    retailer: str
    threshold: float
    labels: dict


def box_sentence(d: _Discovery, box: _Box) -> str:
    said = " and ".join(
        f"{d.labels[c]} is {'at least' if hi == math.inf else 'at most'} {(lo if hi == math.inf else hi):.3g}"
        for c, (lo, hi) in box.limits.items()
    )
    verb = "loses" if d.threshold < 0 else "gains"
    return f"With {d.option}, {d.retailer} {verb} more than {abs(d.threshold):.1f} points when {said}"


def discover_outcomes(o: Outcomes, option: str, retailer: str, threshold_pp: float) -> _Discovery:
    """The densest box of one one-sided limit on a parameter covering at least 30% of the cases (placeholder)."""
    j = o.retailers.index(retailer)
    y = (o.shift(option)[:, :, j] * 100).mean(axis=1)
    hit = y < threshold_pp if threshold_pp < 0 else y > threshold_pp
    labels = {p.path: p.label for p in o.params}
    d = _Discovery([], option, retailer, threshold_pp, labels)
    if not hit.any() or not o.params:
        return d
    X = o.values
    best = None
    for i, p in enumerate(o.params):
        for q in np.unique(X[:, i]):
            for lim, m in (((q, math.inf), X[:, i] >= q), ((-math.inf, q), X[:, i] <= q)):
                if m.sum() and hit[m].sum() / hit.sum() >= 0.3 and (best is None or hit[m].mean() > best[0]):
                    best = (hit[m].mean(), _Box({p.path: lim}, float(hit[m].sum() / hit.sum()), float(hit[m].mean())))
    return d if best is None else _Discovery([best[1]], option, retailer, threshold_pp, labels)


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


def options_figure(o: Outcomes, retailer: str):
    import matplotlib.pyplot as plt

    j = o.retailers.index(retailer)
    days = [dt.date.fromisoformat(d).toordinal() for d in o.dates]
    observed = []
    for x in o.observed:
        v = dict(x.get("shares") or {}).get(retailer)
        mid = (dt.date.fromisoformat(x["start"]).toordinal() + dt.date.fromisoformat(x["end"]).toordinal()) / 2
        if v is not None and days[0] <= mid <= days[-1]:
            observed.append((min(range(len(days)), key=lambda t, mid=mid: abs(days[t] - mid)), float(v)))
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


def export_html(folder: str | Path, dest: str | Path, *, retailer: str, threshold_pp: float) -> Path:
    import matplotlib.pyplot as plt

    o = from_folder(folder)
    r = retailer
    fig = options_figure(o, r)
    img = _png(fig)
    plt.close(fig)
    rows = "".join(f"<tr><td>{x['option']}</td><td>{x['mean_pp']:+.2f}</td></tr>" for x in ranking(o, r))
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{o.scenario}</title></head><body>"
        f"<h1>{o.scenario}</h1><p>{conclusion(o, r, threshold_pp)}</p><table>{rows}</table>"
        f"<img alt='options' src='data:image/png;base64,{img}'></body></html>"
    )
    Path(dest).write_text(text, encoding="utf-8")
    return Path(dest)


def export_xlsx(folder: str | Path, dest: str | Path, *, retailer: str, threshold_pp: float) -> Path:
    doc = read_result(folder, ["projection.json"]).json("projection.json")
    rows = []
    opts = doc.get("options") or {doc["scenario"]: {"shift": doc["shift"]}}
    for arm, by in opts.items():
        for r, sh in by["shift"].items():
            lo, hi = sh["ci95"]
            rows.append(
                {
                    "option": arm,
                    "retailer": r,
                    "shift (pp)": sh["mean"] * 100,
                    "95% low (pp)": lo * 100,
                    "95% high (pp)": hi * 100,
                }
            )
    with pd.ExcelWriter(dest, engine="openpyxl") as xw:
        pd.DataFrame(rows).to_excel(xw, sheet_name="Shifts", index=False)
        pd.DataFrame({"projection.json": [json.dumps(doc)[:30000]]}).to_excel(xw, sheet_name="json", index=False)
    return Path(dest)
