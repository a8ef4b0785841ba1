"""Sweep specs refused at load, before any work: a design too large to build, parameters that cannot vary."""

import time
import tracemalloc

import pytest

from marketsim.errors import ScenarioError
from tests.helpers import ISHIGAMI, SWEEP, cli, one_line_error

# --------------------------------------------------------------------------- 8, 9. sweep sizes and parameters


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_huge_grid_refused_before_building(tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep

    spec = tmp_path / "g.yaml"
    spec.write_text(ISHIGAMI.replace("design: {method: lhs, size: 12}", "design: {method: grid, size: 3000}"))
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ScenarioError) as ei:
            load_sweep(spec)
    finally:
        seconds, peak = time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert (
        "g.yaml:6: design: 27,000,000,000 runs (grid design, size 3000, 3 parameters, 1 replicates); allowed: at most 1,000,000"
        in str(ei.value)
    )
    assert seconds < 0.5 and peak < 4e6, (seconds, peak)
    big = tmp_path / "big.yaml"
    big.write_text(
        SWEEP.replace("design: {method: grid, size: 2}", "design: {method: grid, size: 3000}").replace(
            "outputs:", "  - {path: behaviour.beta_social, range: [0, 2]}\noutputs:"
        )
    )
    one_line_error(cli("sweep", big, cwd=tmp_path), "design: 54,000,000,000 runs")


@pytest.mark.parametrize(
    "param,needle",
    [
        (
            "{path: retailers.JD.name, values: [JD, JE]}",
            "parameters[0].path: retailers.JD.name cannot vary: it names or identifies",
        ),
        ("{path: events.jd_drops_weibo.id, values: [a, b]}", "events.jd_drops_weibo.id cannot vary"),
        ("{path: schema, values: [marketsim/v1]}", "parameters[0].path: schema cannot vary"),
        ("{path: seed, values: [1, 2]}", "parameters[0].path: seed cannot vary"),
        (
            "{path: providers.weibo, values: [{penetration: 0.3}, {penetration: 0.4}]}",
            "providers.weibo cannot take a mapping",
        ),
        ("{path: retailers.JD.logins, values: [[qq], [qq, weibo]]}", "retailers.JD.logins cannot take a list"),
        (
            "{path: market.currency, values: [RMB, USD]}",
            "market.currency cannot vary: its values change nothing that is simulated",
        ),
        (
            "{path: calendar.steps, values: [6, 8]}",
            "calendar.steps cannot vary: it changes calendar.steps, so runs would end at different steps",
        ),
    ],
    ids=lambda x: x.split(",")[0].replace("{path: ", "") if x.startswith("{") else "",
)
def test_parameters_that_cannot_vary_are_refused_at_load(tmp_path, param, needle):
    spec = tmp_path / "p.yaml"
    spec.write_text(
        SWEEP.replace("  - {path: friction.create, range: [0.5, 3.0]}", f"  - {param}").replace(
            "  - {path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}\n", ""
        )
    )
    r = cli("sweep", spec, "--out", tmp_path / "o", cwd=tmp_path)
    one_line_error(r, "p.yaml:11: ", needle)
    assert not (tmp_path / "o").exists()
