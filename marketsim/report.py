"""The projection report: figures a strategist would put in a deck, and report.md tying them together."""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd

from . import store
from .plots import close, mark_events, plt, retailer_colors


def fan_figure(proj):
    """Each retailer's GMV share over dates: scenario vs baseline, median and 95% band, events marked."""
    sc = proj.scenario
    names = proj.names
    dates = pd.to_datetime([sc.calendar.date_of(t) for t in range(proj.steps)])
    colors = retailer_colors(sc)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), dpi=110, sharex=True)
    axes = np.atleast_1d(axes)
    for j, (ax, n) in enumerate(zip(axes, names)):
        for arm, style, col in (("baseline", "--", "0.45"), ("scenario", "-", colors[n])):
            x = proj.arrays[arm]["gmv_share"][:, :, j] * 100
            lo, med, hi = np.percentile(x, [2.5, 50, 97.5], axis=0)
            ax.fill_between(dates, lo, hi, color=col, alpha=0.18, lw=0)
            ax.plot(dates, med, style, color=col, lw=1.6, label=f"{arm} (median, 95% band)")
        mark_events(ax, sc, proj.steps)
        ax.set_title(n)
        ax.set_ylabel("GMV share (%)" if j == 0 else "")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b"))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=7, frameon=False)
    fig.suptitle(f"{sc.name}: GMV share, {proj.replicates} replicates (scenario vs counterfactual baseline)", fontsize=10)
    fig.tight_layout()
    return fig


def shift_figure(proj, summary):
    """Horizon share shift (percentage points) per retailer with its 95% interval."""
    names = list(proj.names)
    colors = retailer_colors(proj.scenario)
    mean = np.array([summary["shift"][n]["mean"] for n in names]) * 100
    lo = np.array([summary["shift"][n]["ci95"][0] for n in names]) * 100
    hi = np.array([summary["shift"][n]["ci95"][1] for n in names]) * 100
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.7 * len(names)), dpi=110)
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, color=[colors[n] for n in names], alpha=0.85)
    ax.errorbar(mean, y, xerr=[mean - lo, hi - mean], fmt="none", ecolor="black", capsize=4, lw=1.2)
    for yi, m, h in zip(y, mean, hi):
        ax.annotate(f"{m:+.2f} pp", xy=(max(h, m), yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"GMV share shift at {summary['horizon']} (percentage points, 95% interval)")
    ax.set_title(f"{proj.scenario.name}: effect of {', '.join(summary['baseline_without']) or 'nothing'}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def flows_figure(proj, summary):
    """Where the consumers who lost a login bought last at the horizon, with and without the events."""
    names = list(proj.names)
    colors = retailer_colors(proj.scenario)
    ll = summary["lost_login"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=110)
    x = np.arange(len(names))
    s = [ll["destinations_scenario"][n] * 100 for n in names]
    b = [ll["destinations_baseline"][n] * 100 for n in names]
    ax.bar(x - 0.2, b, 0.4, color="0.7", label="without the events (same consumers, same seeds)")
    ax.bar(x + 0.2, s, 0.4, color=[colors[n] for n in names], label="with the events")
    ax.set_xticks(x, names)
    ax.set_ylabel("% of consumers who lost a login")
    if ll["consumers"] > 0:
        ax.set_title(f"Where the {ll['consumers']:,.0f} shoppers who lost a login bought last at {summary['horizon']}", fontsize=9)
    else:
        ax.set_title("No consumer lost a login in this scenario", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(proj, summary: dict, out: Path) -> None:
    out = Path(out)
    for name, fig in (("fan.png", fan_figure(proj)), ("shift.png", shift_figure(proj, summary)),
                      ("flows.png", flows_figure(proj, summary))):
        store.save_figure(fig, out / name)
        close(fig)
    store.write_text(out / "report.md", report_markdown(proj, summary))


def report_markdown(proj, summary: dict) -> str:
    sc = proj.scenario
    names = proj.names
    pct = lambda v: f"{v * 100:.1f}%"  # noqa: E731
    pp = lambda v: f"{v * 100:+.2f}"  # noqa: E731
    lines = [f"# {sc.name}: projection report", "", sc.description.strip(), ""]
    lines += ["## What was assumed", ""]
    lines += [f"- Market: {sc.market_size:,.0f} online shoppers simulated by {sc.consumers.count:,} consumer agents "
              f"(each stands for {sc.market_size / sc.consumers.count:,.0f}); one step is {sc.calendar.step_days} days "
              f"from {sc.calendar.start} to {summary['horizon']}, after {sc.calendar.warmup} warm-up weeks."]
    lines += ["- Retailers (initial and calibration target GMV shares; the bundled 2013 scenarios use iResearch Q2 2013: "
              "Tmall 50.6%, JD 17.1%):"]
    for r in sc.retailers:
        lines.append(f"  - {r.name} ({r.kind}, {'take rate' if r.kind == 'platform' else 'margin'} {r.revenue_rate:.0%}): "
                     f"share {pct(r.initial_share)}, accepts {', '.join(r.logins) or 'no'} single sign-on")
    lines += ["- Identity providers: " + ", ".join(f"{p.name} {p.penetration:.0%} of shoppers"
                                                   + (f" ({p.network.model.replace('_', '-')} network)" if p.network else "")
                                                   for p in sc.providers) + "."]
    b, f = sc.behaviour, sc.friction
    lines += [f"- Behaviour: habit {b.beta_habit}, social influence {b.beta_social}, price {b.beta_price}; "
              f"login friction (utility): native password {f.native}, single sign-on {f.sso}, one-click link {f.link}, "
              f"new account {f.create}."]
    lines += ["- Events (the scenario file cites a source beside each):"]
    for e in sc.events:
        mark = "" if e.id in summary["baseline_without"] else " (kept in the baseline)"
        lines.append(f"  - {e.date} `{e.id}`: {e.action.type.replace('_', ' ')}{mark}")
    lines += [f"- Counterfactual baseline: the same market without {', '.join(summary['baseline_without']) or 'no event'}, "
              f"on the same {summary['replicates']} seeds (common random numbers), so each difference is paired."]
    if summary.get("calibration"):
        c = summary["calibration"]
        lines += [f"- Attractiveness calibrated to the target shares before the first event (Berry contraction, "
                  f"{c['iterations']} iterations, largest residual {max(map(abs, c['residual_pp'].values())):.3f} pp)."]
    lines += ["", "## What moved", ""]
    lines += ["| retailer | scenario | baseline | shift (pp) | 95% interval (pp) |", "|---|---:|---:|---:|---:|"]
    for n in names:
        sh = summary["shift"][n]
        lines.append(f"| {n} | {pct(summary['share_scenario'][n])} | {pct(summary['share_baseline'][n])} | {pp(sh['mean'])} | "
                     f"[{pp(sh['ci95'][0])}, {pp(sh['ci95'][1])}] |")
    lines += [""]
    for n in names:
        sh = summary["shift"][n]
        lo, hi = sh["ci95"]
        sure = ("the interval excludes zero: the direction is clear" if lo > 0 or hi < 0
                else "the interval includes zero: no clear effect at this precision")
        lines.append(f"- **{n}**: {pp(sh['mean'])} points of GMV share at {summary['horizon']} ({sure}).")
    rv = summary["revenue_shift"]
    lines += ["", f"Revenue shift from {rv['period'][0]} to {rv['period'][1]} ({rv['currency']}, millions): "
              + "; ".join(f"{n} {rv[n]['mean'] / 1e6:+,.0f} [{rv[n]['ci95'][0] / 1e6:+,.0f}, {rv[n]['ci95'][1] / 1e6:+,.0f}]" for n in names) + "."]
    ll = summary["lost_login"]
    if ll["consumers"] > 0:
        lines += ["", f"About {ll['consumers']:,.0f} shoppers lost a login. At the horizon they last bought at: "
                  + ", ".join(f"{n} {pct(ll['destinations_scenario'][n])}" for n in names)
                  + " (the same shoppers without the events: "
                  + ", ".join(f"{n} {pct(ll['destinations_baseline'][n])}" for n in names) + ")."]
    lines += ["", "## Figures", "", "![GMV share fan chart](fan.png)", "", "![Share shift](shift.png)", "",
              "![Where consumers who lost a login went](flows.png)", "",
              f"Data: `replicates.parquet` (one row per replicate, arm, step and retailer); numbers: `projection.json`. "
              f"Scenario hash `{summary['scenario_hash'][:12]}`, seed {summary['seed']}.", ""]
    return "\n".join(lines)
