"""validation/skill.py's renderer: back-test JSON documents (the shapes ``marketsim backtest ... --json`` prints)
in, the "How good are the forecasts" section out, with plain met / not-met sentences; README.md carries the section
between its markers, as the renderer makes it. Nothing here runs a back-test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("skill", ROOT / "validation" / "skill.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


skill = _load()
SETTINGS = {"draws": 4, "replicates": 2, "consumers": 5000, "seconds": 30, "cpus": 2}


def horizon(q, n, model, persistence, drift, c50, c90):
    return {
        "quarters": q,
        "n": n,
        "mae": {"model": model, "persistence": persistence, "drift": drift},
        "coverage": {"50": c50, "90": c90},
    }


def row(observed, predicted, persistence, lo90, hi90, lo50, hi50, trend=None):
    return {
        "source": "cecrc",
        "period": {"label": "2014", "start": "2014-01-01", "end": "2014-12-31"},
        "holdout": True,
        "retailer": "JD",
        "observed": observed,
        "predicted": predicted,
        "lo50": lo50,
        "hi50": hi50,
        "lo90": lo90,
        "hi90": hi90,
        "persistence": persistence,
        "trend": trend,
    }


def validation_doc(rows, mae, mae_n, cover90):
    return {
        "scenario": "china_b2c_2012_2015",
        "until": "2013-09-26",
        "heldout": rows,
        "mae": mae,
        "mae_n": mae_n,
        "coverage90": None,
        "coverage90_count": cover90,
        "holdout": {"mae": mae, "mae_n": mae_n, "coverage90": None, "coverage90_count": cover90},
    }


def test_model_losing_to_persistence_and_poor_coverage_is_said_plainly():
    rolling = {
        "horizons": [horizon(1, 2, 1.0, 5.0, 5.0, 0.5, 1.0), horizon(2, 4, 3.98, 3.13, 3.5, 0.25, 0.25)],
        "heldout": [],
    }
    rows = [
        row(20.0, 25.0, 21.0, 23.0, 27.0, 24.0, 26.0, trend=19.0),
        row(50.0, 45.0, 51.0, 49.0, 52.0, 44.0, 46.0),
        row(30.0, 31.0, None, 29.0, 33.0, 29.5, 31.5),
    ]
    val = validation_doc(
        rows, {"model": 11 / 3, "persistence": 1.0, "trend": 1.0}, {"model": 3, "persistence": 2, "trend": 1}, "2 of 3"
    )
    md = skill.render(skill.summarize(rolling, val, SETTINGS))
    assert md.startswith("## How good are the forecasts\n")
    assert skill.ROLLING_HEADER in md and skill.VALIDATION_HEADER in md
    assert "| 1 | 2 | 1.00 | 5.00 | 5.00 | 50% | 100% |" in md
    assert "| 2 | 4 | 3.98 | 3.13 | 3.50 | 25% | 25% |" in md
    # the horizon with 2 values is not judged; the one with 4 is, and the model loses there
    assert "Does the model beat persistence? No:" in md
    assert "the only horizon with 3 or more values, 2 quarters ahead (3.98 against 3.13 points)" in md
    assert "not met." in md
    # pooled coverage: 90% (2 x 1.0 + 4 x 0.25) / 6 = 50%; 50% (2 x 0.5 + 4 x 0.25) / 6 = 33%
    assert "the 90% intervals hold 50% (target 80-97%: not met)" in md
    assert "the 50% intervals 33% (target 35-65%: not met)" in md
    # validation: the model's MAE over the two values persistence predicts: (5 + 5) / 2 = 5 against 1
    assert "| model | 3 | 3.67 | 2 of 3 |" in md
    assert "| model, on the values persistence predicts | 2 | 5.00 | |" in md
    assert "| persistence | 2 | 1.00 | |" in md and "| trend | 1 | 1.00 | |" in md
    assert (
        "Does the model beat persistence on the held-out figures? No: over the 2 that persistence predicts" not in md
    )  # 2 < 3 values: cannot tell
    assert "Does the model beat persistence on the held-out figures? Cannot tell" in md
    assert "2 of 3 held-out figures lie inside the 90% intervals (target 80-97%: not met)" in md
    assert "1 of 3 inside the 50% intervals (target 35-65%: not met)" in md
    assert "--draws 4 --replicates 2 --consumers 5000" in md
    assert "`marketsim backtest baseline_2013q2 --rolling --draws 4 --replicates 2 --consumers 5000`" in md
    assert "marketsim backtest validation/china_b2c_2012_2015.yaml --until 2013-09-26" in md


def test_model_beating_persistence_with_calibrated_intervals_meets_the_targets():
    rolling = {
        "horizons": [horizon(1, 5, 2.0, 3.0, 3.5, 0.6, 0.8), horizon(3, 5, 3.0, 3.0, 4.0, 0.4, 0.9)],
        "heldout": [],
    }
    rows = [row(20.0 + i, 20.5 + i, 22.0 + i, 18.0 + i, 30.0 + i, 20.0 + i, 21.0 + i) for i in range(9)]
    rows.append(row(40.0, 40.5, 42.0, 41.0, 45.0, 41.0, 42.0))  # outside both intervals
    val = validation_doc(
        rows, {"model": 0.5, "persistence": 2.0, "trend": None}, {"model": 10, "persistence": 10, "trend": 0}, "9 of 10"
    )
    md = skill.render(skill.summarize(rolling, val, SETTINGS))
    assert "Does the model beat persistence? Yes" in md and "target: met." in md
    assert "the 90% intervals hold 85% (target 80-97%: met) and the 50% intervals 50% (target 35-65%: met)" in md
    assert "Do the intervals cover what they claim? Yes" in md
    assert "| trend | 0 | - | |" in md
    assert "model, on the values persistence predicts" not in md  # the same 10 values
    assert "Does the model beat persistence on the held-out figures? Yes: over the 10" in md
    assert "0.50 points against persistence's 2.00 (target: met)" in md
    assert "9 of 10 held-out figures lie inside the 90% intervals (target 80-97%: met)" in md
    assert "9 of 10 inside the 50% intervals (target 35-65%: not met)" in md  # 90% is too many for a 50% interval


def test_a_tie_with_persistence_counts_as_no_worse_and_a_loss_over_several_horizons_is_counted():
    rolling = {
        "horizons": [
            horizon(1, 3, 2.0, 2.0, 2.0, 0.5, 0.9),
            horizon(2, 3, 4.0, 2.0, 2.0, 0.5, 0.9),
            horizon(3, 3, 5.0, 2.5, 2.0, 0.5, 0.9),
        ],
        "heldout": [],
    }
    val = validation_doc(
        [], {"model": 3.0, "persistence": 3.0, "trend": 4.0}, {"model": 5, "persistence": 5, "trend": 5}, "5 of 5"
    )
    md = skill.render(skill.summarize(rolling, val, SETTINGS))
    assert "worse than persistence's at 2 of the 3 horizons with 3 or more values" in md
    assert "2 quarters ahead (4.00 against 2.00 points), 3 quarters ahead (5.00 against 2.50 points)" in md
    # no rows: the summary's numbers; a tie is no worse; 5 of 5 is above 97%
    assert "Does the model beat persistence on the held-out figures? Yes" in md
    assert "5 of 5 held-out figures lie inside the 90% intervals (target 80-97%: not met)" in md


def test_the_section_round_trips_through_the_markers():
    summary = skill.summarize(
        {"horizons": [horizon(1, 3, 1.0, 2.0, 2.0, 0.5, 0.9)], "heldout": []},
        validation_doc(
            [], {"model": 1.0, "persistence": 2.0, "trend": 3.0}, {"model": 3, "persistence": 3, "trend": 3}, "3 of 3"
        ),
        SETTINGS,
    )
    section = skill.render(summary)
    text = skill.replace_section(f"# x\n\nbefore\n\n{skill.BEGIN}\nSTALE TEXT\n{skill.END}\n\nafter\n", section)
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "STALE TEXT" not in text
    parsed = skill.parse_section(text)
    assert parsed["data"] == summary and parsed["markdown"] == section
    with pytest.raises(ValueError):
        skill.parse_section("no markers")


def test_readme_carries_a_section_the_renderer_made():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    parsed = skill.parse_section(text)
    rolling, validation = parsed["tables"]
    assert "| " + " | ".join(rolling[0]) + " |" == skill.ROLLING_HEADER
    assert "| " + " | ".join(validation[0]) + " |" == skill.VALIDATION_HEADER
    assert len(rolling) >= 2 and [r[0] for r in validation[1:]][0] == "model"
    assert {"persistence", "trend"} <= {r[0] for r in validation[1:]}
    # exactly what the renderer makes of the numbers the section carries
    assert skill.render(parsed["data"]) == parsed["markdown"]
    assert "## How good are the forecasts" in parsed["markdown"]
    assert "Does the model beat persistence?" in parsed["markdown"]
    assert "Do the intervals cover what they claim?" in parsed["markdown"]
