"""Figures (matplotlib, drawn off-screen with the Agg backend). Every figure shows its text as written, never
as TeX math: see :mod:`marketsim.figures.style` (:func:`subplots` and :class:`PlainTextFigure` are its half here).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.text as mtext
import pandas as pd
from matplotlib.figure import Figure

from marketsim.figures.style import STYLE, figure_function
from marketsim.scenario.core import Scenario


class PlainTextFigure(Figure):
    """A figure drawn under :data:`STYLE`, every text in it set to plain first (also one added to it later)."""

    #: What :func:`marketsim.figures.style.figure_function` checks that a figure function returned.
    plain_text_figure = True

    def draw(self, renderer):
        with matplotlib.rc_context(STYLE):
            for t in self.findobj(mtext.Text):
                t.set_parse_math(False)
                t.set_usetex(False)
            return super().draw(renderer)


def subplots(*args, **kwargs):
    """``plt.subplots`` for marketsim figures: a :class:`PlainTextFigure` and its axes, built under :data:`STYLE`."""
    with matplotlib.rc_context(STYLE):
        return plt.subplots(*args, FigureClass=PlainTextFigure, **kwargs)


#: One colour per retailer, in scenario order (colour-blind-safe Okabe-Ito palette).
PALETTE = ["#E69F00", "#D55E00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def retailer_colors(scenario: Scenario) -> dict[str, str]:
    return {n: PALETTE[j % len(PALETTE)] for j, n in enumerate(scenario.retailer_names)}


def mark_events(ax, scenario: Scenario, steps: int | None = None) -> None:
    """Dashed vertical lines with labels at the scenario's events (within the first ``steps`` steps)."""
    for ev in scenario.events:
        if steps is not None and ev.step >= steps:
            continue
        x = pd.Timestamp(scenario.calendar.date_of(ev.step))
        ax.axvline(x, color="0.4", ls="--", lw=0.9)
        ax.annotate(
            ev.id.replace("_", " "),
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="0.3",
        )


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
    import datetime as dt

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
