"""The projection report: figures a strategist can paste into a deck, report.md tying them together, and the
terminal summary. Every interval says what it covers; every assumption is listed with its value or range,
its unit and its source (or the word "assumption"); a direction is called clear only when the whole interval
is on one side of zero.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd

from marketsim.experiments.projection import BASELINE, Projection
from marketsim.experiments.uncertainty import weighted_quantile
from marketsim.figures.plots import (
    close,
    data_end,
    event_key,
    mark_beyond_data,
    mark_events,
    mark_observed,
    panels_legend,
    retailer_colors,
    subplots,
)
from marketsim.figures.style import figure_function
from marketsim.io import store
from marketsim.io.names import describe
from marketsim.report.decision import focus_retailer, write_decision_files
from marketsim.report.moves import lost_login_line, move_lines, wrapped
from marketsim.report.numbers import count, interval, part, points, probability, share, shift, value, value_range
from marketsim.report.progress import console, table
from marketsim.scenario.core import Uncertain
from marketsim.scenario.labels import event_label, event_names, events_label, parameter_quantity

FIGSIZE, DPI = (10, 5.6), 150  # 1500 x 840 pixels: a 16:9 slide


def _bands(x: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """x: (draws, replicates, steps). Median, the total 95% band (draws x replicates) and the noise-only band
    (each value's distance from its draw's mean, around the overall median)."""
    K, R, T = x.shape
    wr = np.repeat(w / R, R)
    flat = x.reshape(K * R, T)
    lo, med, hi = (np.array([weighted_quantile(flat[:, t], wr, q) for t in range(T)]) for q in (0.025, 0.5, 0.975))
    noise = (x - x.mean(axis=1, keepdims=True)).reshape(K * R, T)
    nlo, nhi = (np.array([weighted_quantile(noise[:, t], wr, q) for t in range(T)]) for q in (0.025, 0.975))
    return {"median": med, "lo": lo, "hi": hi, "noise_lo": med + nlo, "noise_hi": med + nhi}


@figure_function
def fan_figure(proj: Projection):
    """Each retailer's GMV share over dates: the first option vs the baseline, the median with the 95% band of
    the simulation noise alone (dark) inside the 95% band of the assumptions and the noise together (light); the
    observed shares as points (one marker per source; hollow: not fitted); events numbered (their key at the bottom
    left); the dates after the last fitted observation shaded "beyond the data" (the model extrapolates there)."""
    sc = proj.scenario
    names = proj.names
    first = next(iter(proj.options))
    dates = pd.to_datetime([sc.calendar.date_of(t) for t in range(proj.steps)])
    colors = retailer_colors(sc)
    fig, axes = subplots(1, len(names), figsize=FIGSIZE, dpi=DPI, sharex=True)
    axes = np.atleast_1d(axes)
    w = proj.weights
    total_label = "assumptions + noise" if proj.draws.k > 1 else "noise"
    for j, (ax, n) in enumerate(zip(axes, names, strict=True)):
        for arm, style, col, label in ((BASELINE, "--", "0.45", "baseline"), (first, "-", colors[n], "scenario")):
            b = _bands(proj.arrays[arm]["gmv_share"][:, :, :, j] * 100, w)
            ax.fill_between(
                dates, b["lo"], b["hi"], color=col, alpha=0.15, lw=0, label=f"{label}: 95% band ({total_label})"
            )
            if proj.draws.k > 1:
                ax.fill_between(
                    dates,
                    b["noise_lo"],
                    b["noise_hi"],
                    color=col,
                    alpha=0.3,
                    lw=0,
                    label=f"{label}: 95% band (simulation noise)",
                )
            ax.plot(dates, b["median"], style, color=col, lw=1.6, label=f"{label}: median")
        mark_observed(ax, sc.observations, n, fitted_until=data_end(sc))
        mark_beyond_data(ax, data_end(sc), dates[-1])
        mark_events(ax, sc, proj.steps, numbered=True)
        ax.set_title(n, fontsize=11)
        ax.set_ylabel("GMV share (%)" if j == 0 else "")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(alpha=0.3)
    panels_legend(fig, axes, y=0.05, ncol=3)
    key = event_key(sc, proj.steps)
    if key:
        # bottom left, short lines: the settings note (if any) goes bottom right
        fig.text(0.005, 0.005, wrap(f"events: {key}", 110), ha="left", va="bottom", fontsize=7, color="0.25")
    fig.suptitle(wrap(f"{sc.name}: GMV share with and without {_without(proj)}; {_what(proj)}", 120), fontsize=11)
    fig.tight_layout(rect=(0, 0.16, 1, 0.95))
    return fig


def _without(proj: Projection) -> str:
    """The events the baseline lacks, in words ("JD stops accepting Weibo login; ..."), for titles."""
    gone = [e for e in proj.scenario.events if e not in proj.baseline.events]
    return events_label(gone, proj.scenario.provider_names, none="the same events")


def wrap(title: str, width: int) -> str:
    """A long title (many events named) on lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False)) or title


def _what(proj: Projection) -> str:
    k, R = len(proj.kept), len(proj.seeds)
    return (
        f"{k} parameter draws x {R} replicates"
        if proj.draws.k > 1
        else f"{R} replicates, assumptions at their central values"
    )


@figure_function
def shift_figure(proj: Projection, summary: dict):
    """Horizon share shift per retailer (points): the total 95% interval (thin) and, with draws, the part the
    simulation noise alone would give (thick), around the mean."""
    names = list(proj.names)
    colors = retailer_colors(proj.scenario)
    fig, ax = subplots(figsize=FIGSIZE, dpi=DPI)
    y = np.arange(len(names))[::-1]
    ends = [0.0]
    for yi, n in zip(y, names, strict=True):
        s = summary["shift"][n]
        m, (lo, hi) = s["mean"] * 100, (s["ci95"][0] * 100, s["ci95"][1] * 100)
        ax.barh(yi, m, color=colors[n], alpha=0.8, height=0.5)
        ax.errorbar([m], [yi], xerr=[[m - lo], [hi - m]], fmt="none", ecolor="black", capsize=6, lw=1.4)
        ends += [m, lo, hi]
        if proj.draws.k > 1:
            half = 1.96 * np.sqrt(s["variance"]["noise"]) * 100
            ax.plot([m - half, m + half], [yi, yi], color="black", lw=5, alpha=0.35, solid_capstyle="butt")
            ends += [m - half, m + half]
        part_ = (
            f"\n{part(s['variance']['share_assumptions'], words=True)} of the spread from assumptions"
            if proj.draws.k > 1
            else ""
        )
        _number_beside(ax, yi, f"{points(m)} pp {interval(lo, hi)}{part_}", fontsize=9)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=11)
    ax.set_xlabel(f"GMV share shift at {summary['horizon']} (percentage points): mean and 95% interval", fontsize=10)
    fit_axis(ax, ends)
    covers = (
        "thin bar: 95% of the draws x replicates (assumptions and noise); thick: simulation noise alone"
        if proj.draws.k > 1
        else "95% t interval of the mean over replicates: simulation noise only"
    )
    ax.set_title(wrap(f"{proj.scenario.name}: effect of {_without(proj)}", 110) + f"\n{covers}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def fit_axis(ax, ends, margin: float = 0.08) -> None:
    """Set a horizontal axis to just hold ``ends`` (every bar end and interval end, and 0): their span plus
    ``margin`` of it on each side (a span of 0: +-1). The numbers go beside the axes (:func:`_number_beside`), so
    the axis needs no room for them."""
    v = np.array([e for e in ends if np.isfinite(e)] or [0.0])
    lo, hi = float(min(v.min(), 0.0)), float(max(v.max(), 0.0))
    pad = (hi - lo) * margin if hi > lo else 1.0
    ax.set_xlim(lo - pad, hi + pad)


def _number_beside(ax, y: float, text: str, fontsize: float = 9) -> None:
    """A row's numbers in a column right of the axes, level with the row at ``y`` (data units)."""
    ax.annotate(
        text,
        xy=(1.0, y),
        xycoords=("axes fraction", "data"),
        xytext=(8, 0),
        textcoords="offset points",
        ha="left",
        va="center",
        fontsize=fontsize,
    )


#: The flows chart's bar colours: the baseline arm (grey), the arm with the events (dark blue, Okabe-Ito).
FLOW_COLORS = ("#BBBBBB", "#0072B2")


@figure_function
def flows_figure(proj: Projection, summary: dict):
    """Where the consumers who lost a login bought last at the horizon, with and without the compared events."""
    names = list(proj.names)
    ll = summary["lost_login"]
    fig, ax = subplots(figsize=FIGSIZE, dpi=DPI)
    x = np.arange(len(names))
    s = [ll["destinations_scenario"][n] * 100 for n in names]
    b = [ll["destinations_baseline"][n] * 100 for n in names]
    base_label = (
        "baseline (the login removal is in both arms here)"
        if ll["removal_in_baseline"]
        else "without the events (same consumers, same seeds)"
    )
    # one colour per arm, the retailers named on the axis: the legend's swatches are the bars' colours
    ax.bar(x - 0.2, b, 0.4, color=FLOW_COLORS[0], label=base_label)
    ax.bar(x + 0.2, s, 0.4, color=FLOW_COLORS[1], label="with the events")
    ax.set_xticks(x, names, fontsize=11)
    top = max([v for v in b + s if v == v] + [1.0])  # NaN when nobody lost a login
    ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
    ax.set_ylabel("% of the consumers who lost a login")
    if ll["consumers"] > 0:
        ax.set_title(
            f"Where the about {count(ll['consumers'])} shoppers who lost a login bought last at {summary['horizon']}",
            fontsize=11,
        )
    else:
        ax.set_title("No consumer lost a login in this scenario", fontsize=11)
    ax.legend(fontsize=9, frameon=False, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


@figure_function
def compare_figure(proj: Projection, summary: dict):
    """Differences between the compared options at the horizon (points, 95% interval), per retailer."""
    names = list(proj.names)
    pairs = list(summary["compare"])
    fig, ax = subplots(figsize=FIGSIZE, dpi=DPI)
    colors = retailer_colors(proj.scenario)
    height = 0.8 / len(pairs)
    ends = [0.0]
    for p, pair in enumerate(pairs):
        for j, n in enumerate(names):
            s = summary["compare"][pair][n]
            m, lo, hi = s["mean"] * 100, s["ci95"][0] * 100, s["ci95"][1] * 100
            yv = len(names) - 1 - j + (p - (len(pairs) - 1) / 2) * height
            ax.barh(yv, m, height=height * 0.9, color=colors[n], alpha=0.5 + 0.5 * (p == 0))
            ax.errorbar([m], [yv], xerr=[[m - lo], [hi - m]], fmt="none", ecolor="black", capsize=4)
            ends += [m, lo, hi]
            _number_beside(ax, yv, f"{pair}: {points(m)} {interval(lo, hi)}", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(names))[::-1], names, fontsize=11)
    ax.set_xlabel(f"difference in GMV share at {summary['horizon']} (percentage points, 95% interval)")
    ax.set_title(f"{proj.scenario.name}: the options compared on the same draws and seeds", fontsize=11)
    fit_axis(ax, ends)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def write_result_files(proj: Projection, summary: dict, out: Path) -> None:
    """Everything a projection's result set holds besides projection.json, for every writer of one (``marketsim
    project``, the Decide view): replicates (.parquet and .csv), the draws and the options' scenario files
    (:func:`marketsim.report.decision.write_decision_files`), the charts and report.md (:func:`write_report`)."""
    store.write_table(proj.tidy(), Path(out) / "replicates")
    write_decision_files(proj, Path(out))
    write_report(proj, summary, Path(out))


def write_report(proj: Projection, summary: dict, out: Path) -> None:
    out = Path(out)
    figs = [
        ("fan.png", fan_figure(proj)),
        ("shift.png", shift_figure(proj, summary)),
        ("flows.png", flows_figure(proj, summary)),
    ]
    if "compare" in summary:
        figs.append(("compare.png", compare_figure(proj, summary)))
    for name, fig in figs:
        note_settings(fig, summary.get("settings"))
        store.save_figure(fig, out / name)
        close(fig)
    store.write_text(out / "report.md", report_markdown(proj, summary))


def settings_text(summary: dict) -> str:
    """The command-line settings recorded in ``summary["settings"]`` (``--set PATH=VALUE``, ``--steps`` ...), as
    one line; "" if none were given."""
    return describe(summary.get("settings"))


def note_settings(fig, settings: dict | None) -> None:
    """Write the command-line settings that made a chart's numbers (if any) in small type at its bottom right."""
    said = describe(settings)
    if said:
        fig.text(0.995, 0.005, f"settings: {said}", ha="right", va="bottom", fontsize=7, color="0.3", wrap=True)


def assumptions(proj: Projection) -> list[dict]:
    """Every uncertain parameter: label, unit, value (stored units, and ``shown`` in its display unit: 0.05 of a
    share is "5%"), range or prior (``range``: in display units), and source (or "assumption: ...")."""
    out = []
    for p in proj.draws.params:
        q = parameter_quantity(p.path, currency=proj.scenario.currency, events=event_names(proj.scenario))
        out.append(
            {
                "path": p.path,
                "label": q.label,
                "unit": q.unit or "-",
                "value": p.value,
                "shown": value(p.value, q),
                "range": range_text(p, q),
                "reason": p.reason,
            }
        )
    return out


def range_text(p: Uncertain, q) -> str:
    """An uncertain parameter's range in display units: "1 to 2.5 x" for a range; for a prior its 5% and 95%
    points, then the prior as the file writes it (stored units)."""
    if p.prior == "uniform":
        lo, hi = p.args
        return value_range(lo, hi, q)
    lo, hi = (float(x) for x in p.ppf([0.05, 0.95]))
    return f"90% within {value_range(lo, hi, q)} ({p.describe()} as written in the file)"


def direction(s: dict) -> str:
    lo, hi = s["ci95"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval (too few replicates)"
    if lo > 0:
        return "the whole interval is above zero: the direction is clear"
    if hi < 0:
        return "the whole interval is below zero: the direction is clear"
    return "the interval includes zero: the direction is not clear"


def _draws_from(summary: dict) -> str:
    """Where the parameter draws came from: the priors, or the posterior's file and effective sample size."""
    d = summary.get("draws_from") or {}
    if d.get("source") == "posterior":
        return (
            f"resampled from the posterior stored by `marketsim fit` at `{d['posterior']}`, effective sample "
            f"size {d['ess']:.1f} of {d['design_draws']} fitted draws, kernel sigma {d['sigma_pp']:g} points"
        )
    return summary["draws"]["source"]


def report_markdown(proj: Projection, summary: dict) -> str:
    sc = proj.scenario
    names = proj.names
    pct, pp = share, shift
    first_shift = summary["shift"][names[0]]
    lines = [f"# {sc.name}: projection report", "", sc.description.strip(), ""]
    for w in summary.get("warnings") or []:
        lines += [f"**Warning:** {w}.", ""]
    if settings_text(summary):
        lines += [f"Settings given on the command line: `{settings_text(summary)}`.", ""]
    lines += [
        "## What the intervals cover",
        "",
        f"Each interval below covers **{first_shift['covers']}**. "
        + (
            f"It comes from {len(proj.kept)} draws of the uncertain parameters ({_draws_from(summary)}) "
            f"x {summary['replicates']} replicates; the part of its spread that comes from the assumptions "
            f"and the part from simulation noise are shown per retailer."
            if proj.draws.k > 1
            else "The assumptions are held at their central values, so the interval says nothing about how "
            "wrong they could be; `--draws` projects over their ranges."
        ),
        "",
    ]
    if proj.failed:
        lines += [
            f"{len(proj.failed)} of {proj.draws.k} parameter draws could not be fitted to the observations and were "
            f"left out (values the data cannot hold, or a fit that did not converge: see the reason); the first: "
            f"{proj.failed[0][1]}",
            "",
        ]
    if summary.get("skill"):
        lines += ["## How good its forecasts are", "", summary["skill"]["sentence"], ""]
    if summary.get("trend_after"):
        t = summary["trend_after"]["sentence"]
        lines += [
            t[0].upper()
            + t[1:]
            + "."
            + (
                " Each draw also moves every fitted trend within its standard error, so the intervals widen "
                "with the horizon as far as the rule lets a trend act."
                if summary.get("trend_uncertainty")
                else ""
            ),
            "",
        ]
    lines += [
        "## What moved",
        "",
        "| retailer | scenario | baseline | shift (pp) | 95% interval (pp) | from assumptions | from noise |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        s = summary["shift"][n]
        v = s["variance"]
        lines.append(
            f"| {n} | {pct(summary['share_scenario'][n])} | {pct(summary['share_baseline'][n])} | "
            f"{pp(s['mean'])} | [{pp(s['ci95'][0])}, {pp(s['ci95'][1])}] | "
            f"{part(v['share_assumptions'])} | {part(1 - v['share_assumptions'])} |"
        )
    lines += [""]
    for n in names:
        s = summary["shift"][n]
        lines.append(f"- **{n}**: {pp(s['mean'])} points of GMV share at {summary['horizon']} ({direction(s)}).")
        said = drivers_text(s, sc.currency, paths=True, events=event_names(sc))
        if said:
            lines.append(f"  {said}")
        for t, prob in s["p_below"].items():
            lines.append(f"  Probability that the shift is below {shift(float(t))} points: {probability(prob)}.")
    rv = summary["revenue_shift"]
    lines += [
        "",
        f"Revenue shift from {rv['from']} (the first event the baseline lacks) to {rv['to']} "
        f"({rv['currency']}, millions, mean and 95% interval): "
        + "; ".join(
            f"{n} {rv[n]['mean'] / 1e6:+,.0f} [{rv[n]['ci95'][0] / 1e6:+,.0f}, {rv[n]['ci95'][1] / 1e6:+,.0f}]"
            for n in names
        )
        + ".",
    ]
    ll = summary["lost_login"]
    if ll["consumers"] > 0:
        both = (
            " The baseline keeps the login removal too, so these consumers lost their login in both arms; "
            "the comparison shows what the other events did to them."
            if ll["removal_in_baseline"]
            else ""
        )
        lines += [
            "",
            f"About {count(ll['consumers'])} shoppers lost a login. At the horizon they last bought "
            "at: "
            + ", ".join(f"{n} {pct(ll['destinations_scenario'][n])}" for n in names)
            + " (the same shoppers in the baseline: "
            + ", ".join(f"{n} {pct(ll['destinations_baseline'][n])}" for n in names)
            + ")."
            + both,
        ]
        # how the number follows from the stated login mix (docs/model.md 2, 12.4)
        lines += ["", *(f"{lost_login_line(d)}." for d in ll.get("removals", ()))]
    if summary.get("moves"):
        lines += [
            "",
            "## Who entered, left and was bought",
            "",
            f"Shoppers in real numbers and shares at the horizon: mean and 95% interval "
            f"({summary['moves'][0][_first_number(summary['moves'][0])]['covers']}).",
            "",
        ]
        lines += [f"- {line}." for line in move_lines(summary["moves"], summary["horizon"])]
    if "compare" in summary:
        lines += [
            "",
            "## Comparing the options",
            "",
            "Each option is projected on the same parameter draws and seeds; the differences are paired.",
            "",
            "| options | retailer | difference (pp) | 95% interval (pp) |",
            "|---|---|---:|---:|",
        ]
        for pair, per in summary["compare"].items():
            for n in names:
                s = per[n]
                lines.append(f"| {pair} | {n} | {pp(s['mean'])} | [{pp(s['ci95'][0])}, {pp(s['ci95'][1])}] |")
        lines += ["", "![Options compared](compare.png)"]
    lines += ["", "## What was assumed", ""]
    lines += [
        f"- Market: about {count(sc.market_size.at(sc.calendar.start))} online shoppers at {sc.calendar.start}, "
        f"{count(sc.market_size.at(sc.calendar.date_of(proj.steps - 1)))} at the horizon (a dated series in the "
        f"scenario), simulated by {sc.consumers.count:,} consumer agents; one step is "
        f"{sc.calendar.step_days} days, from {sc.calendar.start} to {summary['horizon']}, after a burn-in."
    ]
    cal = summary.get("calibration")
    if cal:
        lines += [
            f"- Attractiveness and trends fitted to the observed share series (cut-off {sc.fit_cutoff()}; "
            f"{cal['fits']} fits, {cal['distinct']} distinct; {cal['dof']} residual degree(s) of freedom; "
            f"largest residual {cal['max_residual_pp']:.2f} points)."
        ]
    lines += ["- Events:"]
    for e in sc.events:
        mark = "" if e.id in summary["baseline_without"] else " (kept in the baseline)"
        outside = " (after the horizon: not simulated)" if e.id in summary["events_outside_horizon"] else ""
        lines.append(f"  - {e.date} {event_label(e, sc.provider_names)} (`{e.id}`){mark}{outside}")
    lines += [
        f"- Counterfactual baseline: the same market without {_without(proj)}, "
        f"with the same fitted values and seeds (common random numbers), so each difference is paired."
    ]
    if proj.draws.params:
        lines += [
            "",
            "Uncertain parameters (no source pins them; the projection draws them from these ranges):",
            "",
            "| parameter | path | central value | range or prior | source |",
            "|---|---|---:|---|---|",
        ]
        for a in assumptions(proj):
            lines.append(f"| {a['label']} | `{a['path']}` | {a['shown']} | {a['range']} | {a['reason']} |")
        learned = [a for a in assumptions(proj) if a["reason"].startswith("ex-post posterior of ")]
        if learned:  # a prior taken from history (docs/model.md section 8): where it comes from, and why it may
            lines += [
                "",
                "Priors learned from history: "
                + "; ".join(f"`{a['path']}` from the {a['reason'].split('; ', 1)[0]}" for a in learned)
                + ". An ex-post posterior saw figures published after its own scenario's decision; this scenario's "
                "decision (its fit cut-off) is on or after the date it was conditioned to, and it holds none of "
                "those figures (the validator refuses otherwise).",
            ]
    b, f = sc.behaviour, sc.friction
    lines += [
        "",
        f"Other numbers (central values; each is cited or marked as an assumption in the scenario file): habit "
        f"{b.beta_habit}, social influence {b.beta_social}, price {b.beta_price} (utility); login friction "
        f"(utility): own password {f.native}, single sign-on {f.sso}, one-click sign-up {f.link}, new account "
        f"{f.create}; turnover {sc.consumers.turnover} a week.",
    ]
    lines += [
        "",
        "## Figures",
        "",
        "![GMV share fan chart](fan.png)",
        "",
        "![Share shift](shift.png)",
        "",
        "![Where consumers who lost a login went](flows.png)",
        "",
        f"Data: `replicates.parquet` (one row per draw, replicate, arm, step and retailer); numbers: "
        f"`projection.json`. Scenario hash `{summary['scenario_hash'][:12]}`, seed {summary['seed']}.",
        "",
    ]
    return "\n".join(lines)


def drivers_text(s: dict, currency: str = "RMB", paths: bool = False, events: dict | None = None) -> str:
    """Which assumptions drive a shift's spread, in words with labels (``paths``: each path too; ``events``: the
    scenario's :func:`marketsim.scenario.labels.event_names`), or what is true
    when the assumptions' part of the spread is under 1%: the draws' means then differ no more than simulation
    noise makes them, so a ranking of drivers would rank noise. "" without drivers."""
    if not s.get("drivers"):
        return ""
    sa = s["variance"]["share_assumptions"]
    if sa < 0.01:
        return (
            f"The assumptions give {part(sa, words=True)} of the spread: over their ranges the result moves no "
            "more than the simulation noise moves it, so no assumption drives it."
        )
    top = sorted(s["drivers"].items(), key=lambda kv: -kv[1])[:3]
    named = [
        f"{parameter_quantity(p, currency=currency, events=events).label} ("
        + (f"`{p}`, " if paths else "")
        + f"{part(sh)})"
        for p, sh in top
    ]
    return (
        f"Driven by {', '.join(named)} of the assumptions' part ({part(sa, words=True)} of the spread; a linear "
        f"reading explains {part(s['drivers_r2'])} of that part)."
    )


def _first_number(move: dict) -> str:
    """The key of a move's first summarised number (``moved``, ``lost`` or ``share_at_horizon``)."""
    return next(k for k in ("moved", "lost", "share_at_horizon") if k in move)


def print_summary(summary: dict, proj: Projection) -> None:
    """The terminal table (80 columns): shares, shifts with their interval and its parts, drivers, thresholds."""
    con = console()
    names = proj.names
    first = summary["shift"][names[0]]
    t = table(
        f"{proj.scenario.name}: GMV share at {summary['horizon']} vs without {_without(proj)}",
        caption=f"{_what(proj)}; the 95% interval "
        f"covers {first['covers'].split(':')[0]}"
        + (f"; settings: {settings_text(summary)}" if settings_text(summary) else ""),
    )
    t.add_column("retailer")
    cols = ["scen. %", "base %", "shift pp", "95% pp"] + (["assum."] if proj.draws.k > 1 else [])
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    for n in names:
        s = summary["shift"][n]
        row = [
            n,
            share(summary["share_scenario"][n], unit=""),
            share(summary["share_baseline"][n], unit=""),
            shift(s["mean"]),
            interval(s["ci95"][0] * 100, s["ci95"][1] * 100),
        ]
        if proj.draws.k > 1:
            row.append(part(s["variance"]["share_assumptions"]))
        t.add_row(*row)
    con.print(t)
    if proj.draws.k > 1:  # the retailer whose result the assumptions move most
        worst = max(names, key=lambda n: summary["shift"][n]["variance"]["assumptions"])
        said = drivers_text(summary["shift"][worst], proj.scenario.currency, events=event_names(proj.scenario))
        if said:
            con.print(f"{worst}: {said[0].lower() + said[1:]}", markup=False, soft_wrap=True)
    for n in names:  # a threshold below zero: the chance of a loss beyond it; zero or above: of a gain beyond it
        for th, prob in summary["shift"][n]["p_below"].items():
            t = float(th)
            said = f"< {shift(t)}" if t < 0 else f"> {shift(t)}"
            con.print(f"P({n}'s shift {said} pp) = {probability(prob if t < 0 else 1 - prob)}")
    if proj.failed:
        con.print(
            f"{len(proj.failed)} of {proj.draws.k} draws could not be fitted to the observations and were left "
            f"out (see report.md for why)"
        )
    if "compare" in summary:
        c = table("options compared on the same draws and seeds", caption="difference in GMV share, pp, 95% interval")
        c.add_column("options")
        for n in names:
            c.add_column(n, justify="right", no_wrap=True)
        for pair, per in summary["compare"].items():
            c.add_row(
                pair,
                *[
                    f"{shift(per[n]['mean'])} {interval(per[n]['ci95'][0] * 100, per[n]['ci95'][1] * 100)}"
                    for n in names
                ],
            )
        con.print(c)
    decided = summary.get("decision") or {}
    if len(proj.options) > 1 and decided:  # the options ranked for the retailer the decision is about
        r = focus_retailer(summary, names)
        d = decided[r]
        order = [x["option"] for x in d["ranking"]]
        rk = table(
            f"the options ranked for {r}: shift against the baseline (points)",
            caption=f"P(best): the chance it leaves {r} the highest share; >#k: the chance it leaves {r} a higher "
            "share than option #k, on the same draws and seeds",
        )
        for c in ("#", "option", "shift", "95%", "P(best)", *(f">#{k + 1}" for k in range(len(order)))):
            rk.add_column(c, justify="left" if c == "option" else "right", no_wrap=c != "option")
        for k, x in enumerate(d["ranking"]):
            beats = [d["p_beats"][x["option"]][o] for o in order]
            rk.add_row(
                str(k + 1),
                x["option"],
                points(x["mean_pp"]),
                interval(*x["ci95_pp"]),
                probability(x["p_best"]),
                *("-" if o == x["option"] else probability(p) for o, p in zip(order, beats, strict=True)),
            )
        con.print(rk)
        for ln in wrapped(d["conclusion"], con.width):
            con.print(ln, markup=False, soft_wrap=True)
    for line in move_lines(summary.get("moves"), summary["horizon"]):
        con.print(line, markup=False, soft_wrap=True)
    if summary.get("trend_after"):
        con.print(summary["trend_after"]["sentence"], markup=False)
    if summary.get("skill"):
        con.print(summary["skill"]["sentence"], markup=False)
    ll = summary["lost_login"]
    if ll["consumers"] > 0:
        con.print(
            f"about {count(ll['consumers'])} shoppers lost a login; at the horizon they last bought at "
            + ", ".join(f"{n} {share(ll['destinations_scenario'][n], 0)}" for n in names)
        )
    for d in ll.get("removals", ()):  # how the lost logins follow from the stated login mix
        for ln in wrapped(lost_login_line(d), con.width):
            con.print(ln, markup=False, soft_wrap=True)
