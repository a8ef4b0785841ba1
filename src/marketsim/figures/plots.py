"""Figures (matplotlib, drawn off-screen with the Agg backend). Every figure shows its text as written, never
as TeX math: see :mod:`marketsim.figures.style` (:func:`subplots` and :class:`PlainTextFigure` are its half here).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.text as mtext
import pandas as pd
from matplotlib.figure import Figure

from marketsim.figures.labels import rows
from marketsim.figures.style import STYLE, figure_function
from marketsim.scenario.core import Observation, Scenario
from marketsim.scenario.labels import event_label


class PlainTextFigure(Figure):
    """A figure drawn under :data:`STYLE`, every text in it set to plain first (also one added to it later).

    Layouts that need the sizes of texts as drawn (event labels staggered so that none overlaps another,
    :func:`mark_events`) register a callable in ``before_draw``: each is called with the renderer before every
    draw, after any ``tight_layout``, so the placement holds for the figure as saved."""

    #: What :func:`marketsim.figures.style.figure_function` checks that a figure function returned.
    plain_text_figure = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.before_draw: list = []

    def draw(self, renderer):
        with matplotlib.rc_context(STYLE):
            for t in self.findobj(mtext.Text):
                t.set_parse_math(False)
                t.set_usetex(False)
            for layout in self.before_draw:
                layout(renderer)
            return super().draw(renderer)


def subplots(*args, **kwargs):
    """``plt.subplots`` for marketsim figures: a :class:`PlainTextFigure` and its axes, built under :data:`STYLE`."""
    with matplotlib.rc_context(STYLE):
        return plt.subplots(*args, FigureClass=PlainTextFigure, **kwargs)


#: One colour per retailer, in scenario order (colour-blind-safe Okabe-Ito palette).
PALETTE = ["#E69F00", "#D55E00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def retailer_colors(scenario: Scenario) -> dict[str, str]:
    return {n: PALETTE[j % len(PALETTE)] for j, n in enumerate(scenario.retailer_names)}


def mark_events(ax, scenario: Scenario, steps: int | None = None, numbered: bool = False, extra=()) -> list:
    """Dashed vertical lines at the scenario's events (within the first ``steps`` steps), each labelled in words
    (:func:`marketsim.scenario.labels.event_label`, never its id) or, with ``numbered``, by its number 1, 2, ... (the
    caller writes the key: :func:`event_key`). Labels are horizontal, next to their line at the top of the axes;
    labels on near dates are staggered into rows (:func:`marketsim.figures.labels.rows`) when the figure is drawn, so
    that none overlaps another whatever the figure's final size. ``extra``: more marks laid out with them (see
    :func:`mark_dates`: a fit's cut-off, say). Returns the label texts, in event order, then ``extra``'s."""
    marks = [
        (
            pd.Timestamp(scenario.calendar.date_of(ev.step)),
            str(k + 1) if numbered else event_label(ev, scenario.provider_names),
        )
        for k, ev in enumerate(shown_events(scenario, steps))
    ]
    return mark_dates(ax, [*marks, *extra])


def mark_dates(ax, marks) -> list:
    """Vertical lines at dates, each with its label: ``marks`` is (date, text) pairs, or (date, text, line style)
    with the style's ``axvline`` keywords (default: dashed grey). The one placement of date labels for every chart
    (:func:`mark_events` for a scenario's events): horizontal, next to their line at the top of the axes, staggered
    into rows when the figure is drawn so that none overlaps another. Returns the texts."""
    texts = []
    for x, text, *style in marks:
        x = pd.Timestamp(x)
        ax.axvline(x, **(style[0] if style else {"color": "0.4", "ls": "--", "lw": 0.9}))
        texts.append(
            ax.annotate(
                text,
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                va="top",
                ha="left",
                fontsize=7,
                color="0.25",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        )
    fig = ax.figure
    if texts and hasattr(fig, "before_draw"):
        fig.before_draw.append(functools.partial(_stagger, ax, texts))
    return texts


def shown_events(scenario: Scenario, steps: int | None = None) -> list:
    """The scenario's events within the first ``steps`` steps (all of them if None): those :func:`mark_events` marks."""
    return [ev for ev in scenario.events if steps is None or ev.step < steps]


def event_key(scenario: Scenario, steps: int | None = None) -> str:
    """The key of numbered event marks: "1 2013-04-29 Alibaba buys 18% of Weibo; 2 ..."."""
    return "; ".join(
        f"{k + 1} {ev.date} {event_label(ev, scenario.provider_names)}"
        for k, ev in enumerate(shown_events(scenario, steps))
    )


#: Marker of each observation source, in order of first appearance (a source keeps its marker across panels).
SOURCE_MARKERS = ["o", "s", "D", "^", "v", "P"]


def mark_observed(ax, observations: Sequence, retailer: str, fitted_until=None, color: str = "black") -> list[str]:
    """The observed GMV shares of ``retailer`` (percent) as points at the middle of each period, a thin line spanning
    the period; one marker per source (:data:`SOURCE_MARKERS`), labelled "observed (SOURCE)" for a legend.
    ``observations``: a scenario's (:class:`marketsim.scenario.core.Observation`) or their plain form (dicts with
    source, start, end as ISO dates, shares, and optionally holdout). One the fit did not use (held out, or ending
    after ``fitted_until``, the last day of the fitted data) is hollow, labelled "not fitted". Returns the sources
    drawn."""
    obs = [_plain_observation(o) for o in observations]
    sources = list(dict.fromkeys(o["source"] for o in obs))
    cut = pd.Timestamp(fitted_until) if fitted_until is not None else None
    drawn = []
    for o in obs:
        v = o["shares"].get(retailer)
        if v is None:
            continue
        mid = pd.Timestamp(o["start"] + (o["end"] - o["start"]) / 2)  # a date: the middle day of the period
        a, b = pd.Timestamp(o["start"]), pd.Timestamp(o["end"])
        unused = o["holdout"] or (cut is not None and b > cut)
        m = SOURCE_MARKERS[sources.index(o["source"]) % len(SOURCE_MARKERS)]
        label = f"observed ({o['source']}{', not fitted' if unused else ''})"
        ax.plot([a, b + pd.Timedelta(days=1)], [v * 100] * 2, color=color, lw=1)
        ax.plot(
            [mid],
            [v * 100],
            m,
            ms=5,
            color=color,
            mfc="white" if unused else color,
            mew=1.2,
            ls="none",
            label=label,
            zorder=5,
        )
        drawn.append(o["source"])
    return drawn


def _plain_observation(o) -> dict:
    """An observation as plain data: source, start, end (dates), shares (retailer -> fraction), holdout."""
    if isinstance(o, Observation):
        return {"source": o.source, "start": o.start, "end": o.end, "shares": dict(o.shares), "holdout": o.holdout}
    return {
        "source": o["source"],
        "start": dt.date.fromisoformat(str(o["start"])),
        "end": dt.date.fromisoformat(str(o["end"])),
        "shares": dict(o["shares"]),
        "holdout": bool(o.get("holdout", False)),
    }


def data_end(scenario: Scenario) -> dt.date | None:
    """The last day of the data the fit uses: the end of its last fitted observation (as
    :func:`marketsim.experiments.projection.fit_until`), else (a fit to target shares) the fit's cut-off; None when
    nothing is fitted. After it the model extrapolates."""
    fitted = scenario.fit_observations()
    if fitted:
        return max(o.end for o in fitted)
    if scenario.needs_fit:
        return scenario.fit_cutoff()
    return None


def mark_beyond_data(ax, end, until) -> bool:
    """Shade the part of the date axis after ``end`` (:func:`data_end`; None: nothing) up to ``until`` (a date),
    labelled "beyond the data" at its foot: there the model extrapolates. Returns whether anything was shaded."""
    if end is None or pd.Timestamp(end) >= pd.Timestamp(until):
        return False
    ax.axvspan(pd.Timestamp(end), pd.Timestamp(until), color="0.5", alpha=0.08, lw=0, zorder=0)
    ax.annotate(  # at the foot of the shaded part, ending at its right: inside the axes however narrow it is
        "beyond the data",
        xy=(pd.Timestamp(until), 0.0),
        xycoords=("data", "axes fraction"),
        xytext=(-3, 3),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.35",
        fontstyle="italic",
    )
    return True


def _stagger(ax, texts: list, renderer) -> None:
    """Lay the event labels of ``ax`` out in rows (at draw time: the sizes are those drawn). A label goes right of its
    line, or left of it where it would leave the axes; rows go down from the top, one text height plus a gap each."""
    to_pt = 72.0 / ax.figure.dpi
    box = ax.get_window_extent(renderer)
    spans, sides = [], []
    for t in texts:
        t.xyann = (2, -2)
        t.set_ha("left")
        x = ax.transData.transform((mdates.date2num(t.xy[0]), 0))[0]
        w = t.get_window_extent(renderer).width
        right = x + 2 / to_pt + w <= box.x1 or x - 2 / to_pt - w < box.x0
        sides.append(right)
        spans.append((x, x + 2 / to_pt + w) if right else (x - 2 / to_pt - w, x))
    heights = [t.get_window_extent(renderer).height for t in texts]
    step = (max(heights) + 2) * to_pt
    for t, right, r in zip(texts, sides, rows(spans, pad=3), strict=True):
        t.set_ha("left" if right else "right")
        t.xyann = (2 if right else -2, -2 - r * step)


@figure_function
def shares_figure(scenario: Scenario, ts: pd.DataFrame, title: str | None = None):
    """GMV share of each retailer over dates, events marked. ``ts`` is the tidy time series."""
    fig, ax = subplots(figsize=(9, 4.8), dpi=110)
    colors = retailer_colors(scenario)
    for name, g in ts.groupby("retailer", sort=False):
        ax.plot(pd.to_datetime(g["date"]), g["gmv_share"] * 100, label=name, color=colors.get(name), lw=1.6)
    mark_events(ax, scenario, int(ts["step"].max()) + 1)
    ax.set_ylabel("GMV share (%)")
    ax.set_title(title or f"{scenario.name}: GMV share by week")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)


__all__ = [
    "shares_figure",
    "fit_figure",
    "mark_events",
    "mark_dates",
    "retailer_colors",
    "close",
    "subplots",
    "figure_function",
    "STYLE",
]


@figure_function
def fit_figure(scenario: Scenario, cal):
    """Each observation as a point at the middle of its period (a bar spans the period), against the fitted
    path: the expected GMV share per week of the fit's simulation. A non-primary source's points are hollow,
    with its fitted offset drawn as a dashed path (the simulated share plus the offset)."""
    names = scenario.retailer_names
    colors = retailer_colors(scenario)
    cal_dates = pd.to_datetime([scenario.calendar.date_of(t) for t in range(len(cal.path))])
    path = pd.DataFrame(cal.path, columns=list(names)) * 100
    fig, ax = subplots(figsize=(10, 5.6), dpi=150)
    for n in names:
        ax.plot(cal_dates, path[n], color=colors[n], lw=1.8, label=f"{n}: simulated (fit)")
        for source, offs in cal.offsets.items():
            if n in offs:
                ax.plot(
                    cal_dates,
                    path[n] + offs[n],
                    color=colors[n],
                    lw=1,
                    ls="--",
                    alpha=0.7,
                    label=f"{n}: simulated + {source} offset ({offs[n]:+.1f} pp)",
                )
    for o in cal.observations:
        a, b = dt.date.fromisoformat(o["period"]["start"]), dt.date.fromisoformat(o["period"]["end"])
        mid = pd.Timestamp(a + (b - a) / 2)
        primary = o["source"] == cal.primary_source
        c = colors[o["retailer"]]
        ax.plot([pd.Timestamp(a), pd.Timestamp(b)], [o["observed"]] * 2, color=c, lw=1, alpha=0.6)
        ax.plot([mid], [o["observed"]], "o" if primary else "s", ms=7, color=c, mfc=c if primary else "white", mew=1.5)
        ax.annotate(
            f"{o['source']} {o['period']['label']}",
            (mid, o["observed"]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=7,
            color="0.3",
        )
    mark_events(ax, scenario, len(cal.path))
    ax.set_ylabel("GMV share (%)")
    ax.set_title(
        f"{scenario.name}: fit to the observed GMV shares until {cal.until}\n"
        f"points: observations (filled: {cal.primary_source}, the primary source; hollow: other sources)",
        fontsize=10,
    )
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def panels_legend(fig, axes, *, y: float, ncol: int) -> None:
    """One legend under a figure's panels: every entry of any panel once (a source may observe one retailer only,
    a band may be drawn in one panel only), centred at height ``y`` (figure fraction)."""
    legend: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    fig.legend(
        list(legend.values()),
        list(legend),
        loc="lower center",
        bbox_to_anchor=(0.5, y),
        ncol=ncol,
        fontsize=8,
        frameon=False,
    )
