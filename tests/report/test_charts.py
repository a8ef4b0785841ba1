"""The charts and the wording of the decision desk, checked on rendered figures and exact strings.

One small fitted market (monthly steps, 600 consumers) with four events on near dates, two observation sources and
two uncertain parameters is projected once (6 draws x 2 replicates). Its figures are drawn and read back: the event
labels' boxes as drawn never intersect, the shift axis fits what it shows, the flows legend's swatches are its bars'
colours, the fan chart carries the observed shares, no text names an event by its id, the terminal names parameters
by their labels. The wording functions are checked against exact strings; the decision desk's tornado chart against
its input bar by bar.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import matplotlib.colors as mcolors
import matplotlib.text as mtext
import numpy as np
import pandas as pd
import pytest

from marketsim.experiments.projection import project, summary
from marketsim.experiments.uncertainty import prior_draws
from marketsim.figures.labels import overlaps, rows, spread
from marketsim.figures.plots import close, mark_events, subplots
from marketsim.report import projection as report
from marketsim.report.numbers import part, probability, shift_with_interval, value, value_range
from marketsim.scenario.core import parse_text
from marketsim.scenario.labels import parameter_quantity
from tests.helpers import fit_market_yaml

OBS = (
    "primary_source: P\nobservations:\n"
    "  - {source: P, period: 2012, shares: {A: 0.5, B: 0.3}}\n"
    "  - {source: Q, period: 2012Q4, shares: {A: 0.52}}\n"
)
#: four events within two monthly steps, with long ids that must never show in a chart
EVENTS = (
    "events:\n"
    "  - {id: drop_weibo_login_now, type: remove_login, step: 14, retailer: B, provider: weibo,\n"
    "     migration_cost: {value: 0.8, range: [0.4, 1.6], assumption: test}}\n"
    "  - {id: a_cuts_prices_hard, type: price_change, step: 14, retailer: A, price_index: 0.9}\n"
    "  - {id: b_cuts_prices_soft, type: price_change, step: 15, retailer: B, price_index: 0.95}\n"
    "  - {id: c_cuts_prices_too, type: price_change, step: 15, retailer: C, price_index: 0.9}\n"
)
IDS = ("drop_weibo_login_now", "a_cuts_prices_hard", "b_cuts_prices_soft", "c_cuts_prices_too")
SSO = "sso_share: {weibo: {value: 0.3, range: [0.2, 0.4], assumption: test}, qq: 0.2}"


@pytest.fixture(scope="module")
def projected(tmp_path_factory):
    text = fit_market_yaml(OBS, n=600, alpha=("calibrate", "calibrate", -1.0), extra=EVENTS)
    text = text.replace("sso_share: {weibo: 0.3, qq: 0.2}", SSO)
    sc = parse_text(text)
    assert len(sc.uncertain) == 2
    proj = project(
        sc, draws=prior_draws(sc, 6, seed=3), replicates=2, steps=20, cache_dir=tmp_path_factory.mktemp("fits")
    )
    return proj, summary(proj)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(mtext.Text) if t.get_text()]


# --------------------------------------------------------------------------- event labels


def test_event_labels_on_near_dates_never_overlap(projected):
    """The scenario's four events (two on one date, two a month later) and eight more a few days apart, labelled in
    words on one narrow axes: the labels' boxes as drawn (after tight_layout, at the saved size) do not intersect."""
    proj, _ = projected
    sc = proj.scenario
    fig, ax = subplots(figsize=(5, 3), dpi=100)
    dates = pd.to_datetime([sc.calendar.date_of(t) for t in range(20)])
    ax.plot(dates, np.linspace(0, 1, 20))
    mark_events(ax, sc, 20)
    texts = list(ax.texts)
    fig.tight_layout()
    for size in ((5, 3), (8, 4)):
        fig.set_size_inches(*size)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        boxes = [tuple(t.get_window_extent(r).extents) for t in texts]
        assert not overlaps(boxes), (size, boxes)
    assert [t.get_text() for t in texts] == [
        "B stops accepting Weibo login",
        "A price index to 0.9",
        "B price index to 0.95",
        "C price index to 0.9",
    ]
    close(fig)


def test_a_cut_off_marked_with_the_events_is_laid_out_with_them(projected):
    """The back-test marks its fit's cut-off (a solid line) among the events: one layout, no overlap."""
    proj, _ = projected
    sc = proj.scenario
    fig, ax = subplots(figsize=(5, 3), dpi=100)
    ax.plot(pd.to_datetime([sc.calendar.date_of(t) for t in range(20)]), np.linspace(0, 1, 20))
    cut = (pd.Timestamp(sc.calendar.date_of(14)) - pd.Timedelta(days=3), "fit until 2013-02-21", {"color": "black"})
    texts = mark_events(ax, sc, 20, extra=[cut])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert len(texts) == 5 and texts[-1].get_text() == "fit until 2013-02-21"
    assert not overlaps([tuple(t.get_window_extent(r).extents) for t in texts])
    close(fig)


def test_many_labels_a_day_apart_are_staggered_without_overlap():
    """Twelve labels on twelve consecutive days of a year-long axis: rows, never overlapping, each beside its line."""
    from marketsim.figures.plots import mark_dates

    fig, ax = subplots(figsize=(6, 4), dpi=100)
    ax.plot(pd.to_datetime(["2013-01-01", "2013-12-31"]), [0, 1])
    days = pd.date_range("2013-06-01", periods=12, freq="D")
    texts = mark_dates(ax, [(d, f"event number {k} happens here") for k, d in enumerate(days)])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [tuple(t.get_window_extent(r).extents) for t in texts]
    assert not overlaps(boxes)
    x = [ax.transData.transform((mdate, 0))[0] for mdate in ax.convert_xunits(days)]
    for (x0, _, x1, _), xi in zip(boxes, x, strict=True):  # each label starts or ends at its own line
        assert min(abs(x0 - xi), abs(x1 - xi)) < 6
    close(fig)


def test_placement_routines():
    """rows: same-row labels keep their padding; spread: gap kept, order kept, pushed down from a ceiling."""
    spans = [(0, 10), (5, 12), (11, 20), (12.5, 14), (30, 31)]
    r = rows(spans, pad=1)
    assert r == [0, 1, 0, 2, 0]
    for i in range(len(spans)):
        for j in range(i + 1, len(spans)):
            if r[i] == r[j]:
                a, b = sorted((spans[i], spans[j]))
                assert b[0] >= a[1] + 1
    assert spread([10, 11, 12], 5) == [10, 15, 20]
    assert spread([12, 10, 11], 5) == [20, 10, 15]
    assert spread([10, 11, 12], 5, hi=18) == [8, 13, 18]
    assert spread([10, 11, 12], 5, lo=9, hi=15) == [9, 14, 19]  # no room: the column starts at lo
    assert overlaps([(0, 0, 2, 2), (2, 0, 4, 2), (1, 1, 3, 3)]) == [(0, 2), (1, 2)]


# --------------------------------------------------------------------------- the projection's charts


def test_no_chart_text_names_an_event_by_its_id(projected):
    proj, s = projected
    for fig in (report.fan_figure(proj), report.shift_figure(proj, s), report.flows_figure(proj, s)):
        said = " ".join(_texts(fig))
        for eid in IDS:
            assert eid not in said and eid.replace("_", " ") not in said, (eid, said)
        close(fig)
    shift_title = " ".join(report.shift_figure(proj, s).axes[0].get_title().split())
    assert "B stops accepting Weibo login" in shift_title and "C price index to 0.9" in shift_title


def test_the_shift_axis_fits_its_largest_bar_and_interval(projected):
    proj, s = projected
    fig = report.shift_figure(proj, s)
    ax = fig.axes[0]
    ends = [abs(x) for n in proj.names for x in (s["shift"][n]["mean"] * 100, *np.array(s["shift"][n]["ci95"]) * 100)]
    for line in ax.lines:  # the noise-only bars drawn too
        ends += [abs(x) for x in line.get_xdata() if np.isfinite(x)]
    lo, hi = ax.get_xlim()
    assert lo <= -min(ends) or lo <= 0  # zero is in view
    assert max(abs(lo), abs(hi)) <= 1.3 * max(ends), (ax.get_xlim(), max(ends))
    for n in proj.names:  # every interval end is inside
        a, b = np.array(s["shift"][n]["ci95"]) * 100
        assert lo < a and b < hi
    close(fig)


def test_the_flows_legend_colours_are_its_bars_colours(projected):
    proj, s = projected
    fig = report.flows_figure(proj, s)
    ax = fig.axes[0]
    legend = ax.get_legend()
    for handle, container in zip(legend.legend_handles, ax.containers, strict=True):
        swatch = mcolors.to_rgba(handle.get_facecolor())
        for bar in container.patches:
            assert mcolors.to_rgba(bar.get_facecolor()) == swatch
    close(fig)


def test_the_fan_chart_shows_the_observed_shares_and_where_the_data_end(projected):
    proj, _ = projected
    sc = proj.scenario
    fig = report.fan_figure(proj)
    for ax, n in zip(fig.axes, proj.names, strict=True):
        points = {
            (pd.Timestamp(line.get_xdata()[0]), float(line.get_ydata()[0]))
            for line in ax.lines
            if line.get_label().startswith("observed (")
        }
        want = {
            (pd.Timestamp(o.start + (o.end - o.start) / 2), o.share(n) * 100)
            for o in sc.observations
            if o.share(n) is not None
        }
        assert points == want, n
    assert {len([ln for ln in ax.lines if ln.get_label().startswith("observed (")]) for ax in fig.axes} == {2, 1, 0}
    said = _texts(fig)
    assert said.count("beyond the data") == 3
    assert any(t.startswith("events: 1 2013-02-24 B stops accepting Weibo login; 2 ") for t in said)
    close(fig)


# --------------------------------------------------------------------------- wording


def test_wording_functions_write_exact_strings():
    share_q = parameter_quantity("retailers.JD.sso_share.weibo")
    factor = parameter_quantity("events.x.effects.0.factor")
    utility = parameter_quantity("friction.create")
    assert value(0.05, share_q) == "5%" and value(0.123456, share_q) == "12.3%" and value(0.3, share_q) == "30%"
    assert value(1.5, factor) == "1.5 x" and value(0.2, utility) == "0.2 utility" and value(3.0, utility) == "3 utility"
    assert value_range(0.02, 0.1, share_q) == "2% to 10%" and value_range(1, 2.5, factor) == "1 to 2.5 x"
    assert shift_with_interval(-0.031, -0.060, -0.009) == "-3.1 points [-6.0, -0.9]"
    assert shift_with_interval(0.002, -0.0003, 0.0046, 2) == "+0.20 points [-0.03, +0.46]"
    assert part(0) == "0%" and part(0.003) == "<1%" and part(0.003, words=True) == "less than 1%"
    assert part(0.996) == ">99%" and part(1.0) == "100%" and part(0.42) == "42%" and part(float("nan")) == "n/a"
    assert probability(0.004) == "<1%" and probability(0.424) == "42%"


def test_a_small_part_from_assumptions_is_not_called_zero_nor_given_drivers():
    """The old table said "0%" from assumptions while the next line named the assumptions that drove the spread."""
    s = {
        "drivers": {"friction.create": 0.7, "retailers.JD.sso_share.weibo": 0.3},
        "drivers_r2": 0.5,
        "variance": {"share_assumptions": 0.003},
    }
    said = report.drivers_text(s)
    assert said.startswith("The assumptions give less than 1% of the spread") and "new account" not in said
    s["variance"]["share_assumptions"] = 0.4
    said = report.drivers_text(s)
    assert said.startswith("Driven by Cost of creating a new account (70%), JD: share of customers logging in with")
    assert "(40% of the spread; a linear reading explains 50% of that part)" in said


def test_the_terminal_and_the_report_name_parameters_by_label_and_show_display_units(projected, capsys):
    proj, s = projected
    report.print_summary(s, proj)
    out = " ".join(capsys.readouterr().out.split())
    assert "drop_weibo_login_now" not in out  # the title names the events in words, no parameter is a bare path
    assert "B: share of customers logging in with Weibo = 30.0% (retailers.B.sso_share.weibo, range 20.0% to" in out
    assert "B dropping Weibo login on 2013-02-24" in out
    md = report.report_markdown(proj, s)
    row = next(ln for ln in md.splitlines() if ln.startswith("| ") and "`retailers.B.sso_share.weibo`" in ln)
    assert "| B: share of customers logging in with Weibo | `retailers.B.sso_share.weibo` | 30% | 20% to 40% |" in row
    row = next(
        ln for ln in md.splitlines() if ln.startswith("| ") and "`events.drop_weibo_login_now.migration_cost`" in ln
    )
    assert row.startswith("| B stops accepting Weibo login: cost of migrating the account |") and (
        "| 0.8 utility | 0.4 to 1.6 utility |" in row
    )
    assert "drop weibo login now" not in md  # a parameter of an event is named by what the event does
    assert " 0% | 100% |" not in md or "The assumptions give 0% of the spread" in md


# --------------------------------------------------------------------------- the decision desk's charts

TORNADO = {
    "rows": [
        {
            "path": "events.x.effects.0.factor",
            "label": "Weibo ties' weight for Tmall",
            "unit": "x",
            "scale": 1.0,
            "low": 1.0,
            "high": 2.5,
            "central": 1.5,
            "at_low_pp": -2.1,
            "at_high_pp": -4.6,
            "swing_pp": 2.5,
            "variance_share": 0.62,
        },
        {
            "path": "retailers.JD.sso_share.weibo",
            "label": "JD: share of customers logging in with Weibo",
            "unit": "%",
            "scale": 100.0,
            "low": 0.02,
            "high": 0.1,
            "central": 0.05,
            "at_low_pp": -2.6,
            "at_high_pp": -3.9,
            "swing_pp": 1.3,
            "variance_share": 0.25,
        },
        {
            "path": "friction.create",
            "label": "Cost of creating a new account",
            "unit": "utility",
            "scale": 1.0,
            "low": 0.5,
            "high": 3.0,
            "central": 1.5,
            "at_low_pp": -3.3,
            "at_high_pp": -2.9,
            "swing_pp": 0.4,
            "variance_share": 0.003,
        },
    ],
    "central_pp": -3.1,
    "method": "a linear regression of the result on the draws' parameters",
    "r2": 0.81,
}


def test_the_tornado_bars_are_its_input():
    from marketsim.report.decision_charts import TORNADO_COLORS, tornado_figure

    fig = tornado_figure(TORNADO, "What drives JD's shift")
    ax = fig.axes[0]
    bars = [p for c in ax.containers for p in c.patches]
    assert len(bars) == 6
    for k, row in enumerate(TORNADO["rows"]):
        low, high = bars[2 * k], bars[2 * k + 1]
        y = len(TORNADO["rows"]) - 1 - k  # largest swing on top
        for bar, end, colour in (
            (low, row["at_low_pp"], TORNADO_COLORS[0]),
            (high, row["at_high_pp"], TORNADO_COLORS[1]),
        ):
            x0, x1 = sorted((bar.get_x(), bar.get_x() + bar.get_width()))
            assert (x0, x1) == pytest.approx(sorted((TORNADO["central_pp"], end)))
            assert bar.get_y() + bar.get_height() / 2 == pytest.approx(y)
            assert mcolors.to_hex(bar.get_facecolor()) == mcolors.to_hex(colour)
    labels = [" ".join(t.get_text().split()) for t in ax.get_yticklabels()]
    assert labels[::-1][1] == "JD: share of customers logging in with Weibo (2% to 10%; 25% of the variance)"
    said = _texts(fig)
    assert "10%: -3.90" in said and "2%: -2.60" in said and "3 utility: -2.90" in said
    assert any("<1% of the variance" in t for t in labels)
    legend = ax.get_legend()
    assert [mcolors.to_hex(h.get_facecolor()) for h in legend.legend_handles] == [
        mcolors.to_hex(c) for c in TORNADO_COLORS
    ]
    close(fig)


def test_the_options_chart_has_a_panel_per_option_with_bands_and_observations():
    from marketsim.report.decision_charts import options_figure

    K, R, T = 4, 2, 30
    rng = np.random.default_rng(0)
    dates = tuple((dt.date(2013, 1, 6) + dt.timedelta(weeks=t)).isoformat() for t in range(T))
    share = {o: 0.2 + rng.normal(0, 0.01, (K, R, T, 2)) for o in ("keep", "drop", "baseline")}
    o = SimpleNamespace(  # the decision core's Outcomes, in the fields the chart reads
        options=("keep", "drop"),
        retailers=("Tmall", "JD"),
        baseline="without any event",
        dates=dates,
        share=share,
        weights=np.full(K, 1 / K),
        observed=({"source": "cecrc", "start": "2013-01-01", "end": "2013-03-31", "shares": {"JD": 0.207}},),
        fit_until="2013-03-31",
    )
    fig = options_figure(o, "JD", events=[("2013-02-01", "JD stops accepting Weibo login")])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["keep", "drop"]
    for ax, opt in zip(axes, o.options, strict=True):
        median = next(ln for ln in ax.lines if ln.get_label() == "median")
        np.testing.assert_allclose(median.get_ydata(), np.median(share[opt][..., 1].reshape(K * R, T), axis=0) * 100)
        observed = [ln for ln in ax.lines if ln.get_label() == "observed (cecrc)"]
        assert len(observed) == 1 and observed[0].get_ydata()[0] == pytest.approx(20.7)
    assert _texts(fig).count("beyond the data") == 2
    close(fig)


def test_the_decision_charts_draw_the_decision_cores_numbers(projected):
    """From the projection itself (the decision core's Outcomes and tornado): the tornado's bars are its rows, the
    options chart's panels are the options with the scenario's observations, and no text names an event by its id."""
    from marketsim.experiments.decision import from_projection, tornado
    from marketsim.report.decision_charts import options_figure, tornado_figure

    proj, s = projected
    o = from_projection(proj, s)
    t = tornado(o, o.options[0], "B")
    assert t["rows"], t["method"]
    fig = tornado_figure(t, "What drives B's shift")
    bars = [p for c in fig.axes[0].containers for p in c.patches]
    for k, row in enumerate(t["rows"]):
        for bar, end in zip(bars[2 * k : 2 * k + 2], (row["at_low_pp"], row["at_high_pp"]), strict=True):
            assert sorted((bar.get_x(), bar.get_x() + bar.get_width())) == pytest.approx(sorted((t["central_pp"], end)))
    close(fig)
    fig = options_figure(o, "A")
    assert len(fig.axes) == len(o.options)
    assert {ln.get_label() for ln in fig.axes[0].lines if ln.get_label().startswith("observed")} == {
        "observed (P)",
        "observed (Q)",
    }
    said = " ".join(_texts(fig))
    assert not any(eid in said for eid in IDS) and "beyond the data" in said
    close(fig)
