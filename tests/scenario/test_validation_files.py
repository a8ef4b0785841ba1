"""The data discipline of validation/ and of the bundled scenarios (validation/README.md, docs/sources.md):
a bundled scenario holds only what a strategist could have known when JD decided (2013-09-25), so none of its
observations ends after that day and none is held out; a validation file marks every observation dated after the
decision `holdout: true`, so that no fit ever uses it."""

from __future__ import annotations

import datetime as dt

import pytest

from marketsim.scenario.core import load_scenario
from tests.helpers import BUNDLED, ROOT

DECISION = dt.date(2013, 9, 25)
VALIDATION = sorted((ROOT / "validation").glob("*.yaml"))


def test_there_is_a_validation_file():
    assert [p.name for p in VALIDATION] >= ["china_b2c_2012_2015.yaml"]
    assert (ROOT / "validation" / "README.md").is_file()


@pytest.mark.parametrize("path", VALIDATION, ids=lambda p: p.name)
def test_a_validation_file_holds_out_everything_after_the_decision(path):
    sc = load_scenario(path)  # validates
    later = [o for o in sc.observations if o.end > DECISION]
    assert later, f"{path.name}: no observation after {DECISION}: nothing to validate against"
    assert all(o.holdout for o in later), [f"{o.source} {o.label}" for o in later if not o.holdout]
    # what the decision-time fit uses: only what was known then
    fitted = sc.fit_observations()
    assert fitted and all(o.end <= DECISION and not o.holdout for o in fitted)
    assert sc.calendar.date_of(sc.calendar.steps) > max(o.end for o in sc.observations)  # it runs past them all


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_a_bundled_scenario_holds_nothing_published_after_the_decision(path):
    sc = load_scenario(path)
    assert not [o for o in sc.observations if o.holdout], f"{path.name}: a bundled scenario holds no holdout"
    late = [f"{o.source} {o.label} (ends {o.end})" for o in sc.observations if o.end > DECISION]
    assert not late, f"{path.name}: observations ending after {DECISION}: {late}"


def test_the_bundled_sweeps_base_holds_nothing_after_the_decision():
    # the sweep files name a bundled scenario as their base: covered above; their own text has no observations
    for p in sorted((ROOT / "src" / "marketsim" / "scenarios").glob("sweep_*.yaml")):
        assert "observations" not in p.read_text(encoding="utf-8"), p.name
