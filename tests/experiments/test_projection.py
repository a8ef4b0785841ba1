"""Projections: paired intervals that cover known shifts, CRN, worker-count independence, the report."""

import json

import numpy as np
import pytest

from marketsim.experiments.projection import project, replicate_seeds
from marketsim.experiments.uncertainty import central_draws
from marketsim.scenario.core import parse_text
from tests.helpers import SCENARIOS, cli, simple_market_yaml


def marketsim(*args, cwd):
    """``marketsim ARGS`` in this process (tests/helpers.py ``cli``)."""
    return cli(*args, cwd=cwd)


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_project_cli_end_to_end_and_workers(tmp_path):
    outs = []
    for w in (1, 2):
        r = marketsim(
            "project",
            SCENARIOS / "tiny.yaml",
            "--draws",
            1,
            "--replicates",
            4,
            "--workers",
            w,
            "--json",
            "--out",
            tmp_path / f"w{w}",
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    a, b = outs
    for k in ("share_scenario", "share_baseline", "shift", "calibration", "replicates", "interval_covers", "draws"):
        assert k in a
    assert a["replicates"] == 4 and a["calibration"]["fits"] == 1 and "simulation noise only" in a["interval_covers"]
    for k in ("share_scenario", "share_baseline", "shift", "revenue_shift", "lost_login"):
        assert a[k] == b[k], k  # identical whatever the worker count
    assert a["horizon"] == "2013-06-30" and a["revenue_shift"]["from"] == "2013-03-03"
    for f in ("replicates.parquet", "replicates.csv", "projection.json", "report.md"):
        assert (tmp_path / "w1" / f).stat().st_size > 0
    for f in ("fan", "shift", "flows"):  # every chart as PNG and SVG
        assert (tmp_path / "w1" / f"{f}.png").stat().st_size > 0 and (tmp_path / "w1" / f"{f}.svg").stat().st_size > 0
    md = (tmp_path / "w1" / "report.md").read_text()
    assert "## What was assumed" in md and "jd_drops_weibo" in md and "fan.png" in md and "simulation noise only" in md
    import pandas as pd

    df = pd.read_parquet(tmp_path / "w1" / "replicates.parquet")
    assert set(df["arm"]) == {"tiny", "baseline"} and df["replicate"].nunique() == 4 and len(df) == 2 * 4 * 26 * 3
    # the horizon is the last step: the summary's shares are the parquet's last step, averaged
    last = df[(df["step"] == 25) & (df["arm"] == "tiny")].groupby("retailer")["gmv_share"].mean()
    assert all(abs(last[n] - a["share_scenario"][n]) < 1e-12 for n in last.index)


def test_projection_folders_say_what_was_compared(tmp_path):
    r1 = marketsim("project", SCENARIOS / "tiny.yaml", "--draws", 1, "--replicates", 2, "--steps", 12, cwd=tmp_path)
    r2 = marketsim(
        "project",
        SCENARIOS / "tiny.yaml",
        "--draws",
        1,
        "--replicates",
        2,
        "--steps",
        12,
        "--baseline-without",
        "jd_drops_weibo",
        cwd=tmp_path,
    )
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    root = tmp_path / "results" / "tiny"
    # the command-line settings are part of the name, so other settings never replace this result
    assert (root / "projection-vs-no-events--steps12-draws1-replicates2" / "projection.json").is_file()
    assert (root / "projection-vs-without-jd_drops_weibo--steps12-draws1-replicates2" / "projection.json").is_file()
    index = (tmp_path / "results" / "index.md").read_text()
    assert "projection-vs-no-events--steps12" in index and "projection-vs-without-jd_drops_weibo--steps12" in index


def test_event_without_effect_gives_exactly_zero_shift(tmp_path):
    text = (
        f"schema: marketsim/v1\nbase: {SCENARIOS / 'tiny.yaml'}\nname: noop\ncalendar: {{steps: 10}}\n"
        "events:\n  - {id: noop, type: price_change, step: 2, retailer: JD, price_index: 1.0}\n"
        "  - {id: drop, type: remove_login, step: 3, retailer: JD, provider: weibo}\n"
    )
    (tmp_path / "noop.yaml").write_text(text)
    r = marketsim(
        "project",
        tmp_path / "noop.yaml",
        "--replicates",
        3,
        "--workers",
        1,
        "--baseline-without",
        "noop",
        "--draws",
        1,
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["baseline_without"] == ["noop"]
    for v in out["shift"].values():
        assert v["mean"] == 0.0 and v["ci95"] == [0.0, 0.0]
    assert out["revenue_shift"]["from"] == "2013-01-20"  # revenue is compared from the first event the arms differ by


def _closed_form_case(seed):
    # no habit, no social ties, no friction: both arms are static logit markets; B's price rises at step 0
    text = simple_market_yaml(
        n=3000, steps=1, rate=0.6, events="[{id: hike, type: price_change, step: 0, retailer: B, price_index: 1.3}]"
    )
    return parse_text(text).with_overrides(seed=seed)


def test_paired_interval_covers_known_shift_and_crn_narrows_it():
    alpha = np.array([-1.0, -0.5])
    ea, eb0, eb1 = np.exp(alpha[0]), np.exp(alpha[1]), np.exp(alpha[1] - 2.0 * np.log(1.3))
    true_shift_a = ea / (ea + eb1) - ea / (ea + eb0)  # GMV share = buyer share (constant baskets)
    covered, widths_paired, widths_indep = 0, [], []
    trials = 40
    for k in range(trials):
        sc = _closed_form_case(1000 + k)
        p = project(sc, draws=central_draws(sc), replicates=10)
        lo, hi = p.shift("scenario")["A"].interval
        covered += lo <= true_shift_a <= hi
        widths_paired.append(hi - lo)
        if k < 10:
            q = project(sc, draws=central_draws(sc), replicates=10, independent_baseline=True)
            lo2, hi2 = q.shift("scenario")["A"].interval
            widths_indep.append(hi2 - lo2)
    assert covered >= 34, f"95% intervals covered the true shift {covered}/{trials} times"
    assert np.mean(widths_paired) < 0.6 * np.mean(widths_indep)


def test_replicate_seeds_spawned_and_stable():
    s = replicate_seeds(42, 5)
    assert s == replicate_seeds(42, 5) and len(set(s)) == 5
    assert replicate_seeds(42, 7)[:5] == s  # adding replicates keeps the first ones
    assert set(s).isdisjoint(replicate_seeds(42, 5, stream=1))


def test_the_central_fit_made_beside_the_trend_choice_is_the_one_project_makes(tmp_path):
    """workflow.plan_projection fits the first option at its central values in a thread while the trend rule is
    chosen (a fit never sees the forecast): it is the fit project() makes itself from the option with the rule
    written in, and the projection run from it has the same numbers; with one draw there is none to make."""
    from marketsim.experiments.projection import central_fit
    from marketsim.experiments.workflow import ProjectionRequest, plan_projection, run_projection
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(SCENARIOS / "tiny.yaml")
    request = ProjectionRequest(scenario=sc, label="tiny.yaml", cache_dir=tmp_path / "plan", draws=3, replicates=2)
    plan = plan_projection(request)
    assert plan.draws.k == 3 and plan.start is not None
    own = central_fit(plan.scenario, None)  # from the option with the rule written in, no cache
    assert own is not None and plan.start.key == own.key
    assert plan.start.alpha == own.alpha and plan.start.trend == own.trend
    proj, _ = run_projection(plan, executor=None)
    ref = project(
        plan.scenario,
        draws=plan.draws,
        replicates=plan.replicates,
        options=plan.options,
        cache_dir=tmp_path / "ref",
        trend_uncertainty=plan.trends,
    )  # (start: made here)
    for arm, metrics in ref.arrays.items():
        np.testing.assert_array_equal(proj.arrays[arm]["gmv_share"], metrics["gmv_share"])
    one = plan_projection(ProjectionRequest(scenario=sc, label="tiny.yaml", cache_dir=tmp_path / "one", draws=1))
    assert one.start is None
