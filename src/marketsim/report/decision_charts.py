"""The decision desk's charts: matplotlib Figures built from the decision core's plain data
(:mod:`marketsim.experiments.decision`), in the style of every marketsim figure (plain text, the retailer palette,
16:9 at 150 dpi). They write no file: the caller saves or embeds them.

- :func:`tornado_figure`: what drives an option's result: one bar per uncertain parameter, from the result with the
  parameter at the low end of its range to the result at the high end (the others held central), around the central
  result; each bar labelled with the parameter's label, the ends in its display unit, and its share of the variance;
- :func:`options_figure`: per option, the retailer's GMV share path (median, 50% and 90% bands over the draws x
  replicates) against the baseline's median, with the observed shares and the dates beyond the data marked;
- :func:`ranking_figure`: the options ranked for a retailer (mean shift and 95% interval, the chance of being the
  best) beside the matrix of the chances that each option beats each other.

Every number is written by :mod:`marketsim.report.numbers`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from marketsim.experiments.uncertainty import weighted_quantile
from marketsim.figures.plots import PALETTE, mark_beyond_data, mark_dates, mark_observed, panels_legend, subplots
from marketsim.figures.style import figure_function
from marketsim.report.numbers import interval, part, points, probability, value
from marketsim.report.projection import DPI, FIGSIZE, fit_axis, wrap
from marketsim.scenario.core import Observation
from marketsim.scenario.labels import Quantity

#: Colours of the bar halves of a tornado: the parameter at the low end of its range, at the high end.
TORNADO_COLORS = ("#56B4E9", "#E69F00")


@figure_function
def tornado_figure(tornado: dict, title: str):
    """``tornado``: the decision core's ``tornado()`` (rows sorted by swing, ``at_low_pp``/``at_high_pp`` the result
    in points with the parameter at its ``low``/``high`` end, ``central_pp`` with all central). One bar per row from
    ``at_low_pp`` to ``at_high_pp``, the low end's half in one colour and the high end's in another, largest swing on
    top; the vertical line is the central result. The y labels name the parameter, its ends in display units and its
    share of the variance; the footnote says how the ends were estimated."""
    rows = list(tornado["rows"])
    n = max(len(rows), 1)
    fig, ax = subplots(figsize=(FIGSIZE[0], max(2.6, 1.2 + 0.55 * n)), dpi=DPI)
    c = float(tornado["central_pp"])
    y = np.arange(len(rows))[::-1]
    ends = [c]
    labels = []
    for yi, r in zip(y, rows, strict=True):
        q = Quantity(r["label"], r.get("unit", ""), float(r.get("scale", 1.0)))
        lo_pp, hi_pp = float(r["at_low_pp"]), float(r["at_high_pp"])
        ax.barh(yi, lo_pp - c, left=c, height=0.6, color=TORNADO_COLORS[0])
        ax.barh(yi, hi_pp - c, left=c, height=0.6, color=TORNADO_COLORS[1])
        ends += [lo_pp, hi_pp]
        for x, end, side in ((lo_pp, r["low"], lo_pp < hi_pp), (hi_pp, r["high"], hi_pp <= lo_pp)):
            ax.annotate(
                f"{value(end, q)}: {points(x)}",
                xy=(x, yi),
                xytext=(-4 if side else 4, 0),
                textcoords="offset points",
                ha="right" if side else "left",
                va="center",
                fontsize=8,
            )
        share = r.get("variance_share")
        note = f"; {part(share)} of the variance" if share is not None and np.isfinite(share) else ""
        labels.append(wrap(f"{q.label} ({value(r['low'], q)} to {value(r['high'], q)}{note})", 48))
    ax.axvline(c, color="black", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    fit_axis(ax, ends, margin=0.35)  # room for the ends' values written beside the bars
    ax.set_xlabel(f"result (percentage points); central {points(c)}: every parameter at its central value")
    r2 = tornado.get("r2")
    method = tornado.get("method", "")
    # the method names the fit's R^2 (decision.tornado); a hand-made input without it gets it added
    shown = r2 is not None and np.isfinite(r2) and "R²" not in method
    said = f"{method}" + (f" (R² {r2:.2f})" if shown else "")
    ax.set_title(wrap(title, 100), fontsize=10)
    handles = [
        Patch(color=TORNADO_COLORS[0], label="parameter at the low end of its range"),
        Patch(color=TORNADO_COLORS[1], label="at the high end"),
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower right")
    if said:
        fig.text(0.005, 0.005, wrap(said, 160), ha="left", va="bottom", fontsize=7, color="0.3")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0.05 if said else 0, 1, 1))
    return fig


def _bands(x: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """``x``: (K, R, T) values; each draw k weighs ``w[k]``, shared by its R replicates. Median and the 50% and 90%
    bands at each step."""
    K, R, T = x.shape
    wr = np.repeat(np.asarray(w, float) / R, R)
    flat = x.reshape(K * R, T)
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    got = {q: np.array([weighted_quantile(flat[:, t], wr, q) for t in range(T)]) for q in qs}
    return {"lo90": got[0.05], "lo50": got[0.25], "median": got[0.5], "hi50": got[0.75], "hi90": got[0.95]}


@figure_function
def options_figure(
    outcomes,
    retailer: str,
    observed: Sequence[Observation | dict] | None = None,
    data_end: dt.date | str | None = None,
    events: Sequence[tuple[str | dt.date, str]] = (),
):
    """One panel per option of ``outcomes`` (the decision core's Outcomes): ``retailer``'s GMV share (percent) over
    the dates, the median with its 50% (dark) and 90% (light) bands over the draws x replicates (draw weights), the
    baseline's median dashed; ``observed``: observations (default: the outcomes' own, ``outcomes.observed``) as
    points, one marker per source; ``data_end``: the last day of the fitted data (default: ``outcomes.fit_until``),
    the dates after it shaded "beyond the data"; ``events``: (date, words) marked on every panel, numbered, with
    their key below."""
    j = list(outcomes.retailers).index(retailer)
    dates = pd.to_datetime(list(outcomes.dates))
    opts = list(outcomes.options)
    fig, axes = subplots(1, len(opts), figsize=FIGSIZE, dpi=DPI, sharey=True, squeeze=False)
    base = _bands(outcomes.share["baseline"][..., j] * 100, outcomes.weights)["median"]
    if observed is None:
        observed = getattr(outcomes, "observed", ())
    end = data_end if data_end is not None else getattr(outcomes, "fit_until", None)
    end = pd.Timestamp(end) if end is not None else None
    for i, (ax, opt) in enumerate(zip(axes[0], opts, strict=True)):
        col = PALETTE[i % len(PALETTE)]
        b = _bands(outcomes.share[opt][..., j] * 100, outcomes.weights)
        ax.fill_between(dates, b["lo90"], b["hi90"], color=col, alpha=0.18, lw=0, label="90% band")
        ax.fill_between(dates, b["lo50"], b["hi50"], color=col, alpha=0.4, lw=0, label="50% band")
        ax.plot(dates, b["median"], color=col, lw=1.8, label="median")
        ax.plot(dates, base, "--", color="0.4", lw=1.2, label="baseline: median")
        mark_observed(ax, observed, retailer, fitted_until=end)
        mark_beyond_data(ax, end, dates[-1])
        if events:
            mark_dates(ax, [(pd.Timestamp(d), str(k + 1)) for k, (d, _) in enumerate(events)])
        ax.set_title(wrap(opt, 40), fontsize=10)
        ax.set_ylabel(f"{retailer}: GMV share (%)" if i == 0 else "")
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(alpha=0.3)
    panels_legend(fig, axes[0], y=0.035, ncol=4)
    if events:
        key = "; ".join(f"{k + 1} {d} {words}" for k, (d, words) in enumerate(events))
        fig.text(0.5, 0.005, wrap(f"events: {key}", 170), ha="center", va="bottom", fontsize=7, color="0.25")
    fig.suptitle(
        wrap(f"{retailer}'s GMV share under each option: median, 50% and 90% of the draws x replicates", 120),
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.16, 1, 0.95))
    return fig


@figure_function
def ranking_figure(ranking: list[dict], p_beats: dict[str, dict[str, float]], retailer: str = ""):
    """Left: the options best first (``ranking``: the decision core's ``ranking()``), each its mean shift with the
    95% interval, in points, and its chance of being the best; right: ``p_beats[a][b]``, the chance that option a
    (row) leaves the retailer a higher share than option b (column), written in each cell."""
    fig, (ax, ax2) = subplots(1, 2, figsize=FIGSIZE, dpi=DPI, gridspec_kw={"width_ratios": [3, 2]})
    names = [r["option"] for r in ranking]
    y = np.arange(len(names))[::-1]
    ends = [0.0]
    for i, (yi, r) in enumerate(zip(y, ranking, strict=True)):
        m, (lo, hi) = float(r["mean_pp"]), (float(r["ci95_pp"][0]), float(r["ci95_pp"][1]))
        ax.barh(yi, m, color=PALETTE[i % len(PALETTE)], alpha=0.8, height=0.5)
        ax.errorbar([m], [yi], xerr=[[m - lo], [hi - m]], fmt="none", ecolor="black", capsize=5)
        ends += [m, lo, hi]
        ax.annotate(
            f"{points(m)} {interval(lo, hi)}; best in {probability(r['p_best'])}",
            xy=(0.0, yi + 0.3),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=8,
        )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [wrap(n, 28) for n in names], fontsize=9)
    ax.set_ylim(-0.6, len(names) - 0.2)
    fit_axis(ax, ends)
    who = f"{retailer}'s " if retailer else ""
    ax.set_xlabel(f"{who}GMV share shift at the horizon (points, 95% interval)")
    ax.grid(axis="x", alpha=0.3)
    order = names
    mat = np.array([[p_beats.get(a, {}).get(b, np.nan) for b in order] for a in order], dtype=float)
    ax2.imshow(np.nan_to_num(mat, nan=0.5), cmap="RdBu", vmin=0, vmax=1)
    for a in range(len(order)):
        for b in range(len(order)):
            ax2.text(b, a, "-" if a == b else probability(mat[a, b]), ha="center", va="center", fontsize=9)
    ax2.set_xticks(range(len(order)), [wrap(n, 14) for n in order], fontsize=8)
    ax2.set_yticks(range(len(order)), [wrap(n, 18) for n in order], fontsize=8)
    ax2.set_title("chance that the row beats the column", fontsize=9)
    fig.suptitle(f"The options ranked for {retailer or 'the retailer'}", fontsize=11)
    fig.tight_layout()
    return fig
