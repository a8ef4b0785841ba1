"""Figures (matplotlib, drawn off-screen with the Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .scenario import Scenario  # noqa: E402

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
        ax.annotate(ev.id.replace("_", " "), xy=(x, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="0.3")


def shares_figure(scenario: Scenario, ts: pd.DataFrame, title: str | None = None):
    """GMV share of each retailer over dates, events marked. ``ts`` is the tidy time series."""
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
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


__all__ = ["shares_figure", "mark_events", "retailer_colors", "close"]
