"""Sweeps: identical rows on 1 or 2 local workers and a real Dask cluster; SIGKILL + resume loses nothing;
Sobol indices of the Ishigami function recovered; bad sweep files get one line and exit 2."""

import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest

from marketsim import load_results
from marketsim.experiments.sweep.analysis import sensitivity
from marketsim.experiments.sweep.runner import load_sweep, run_sweep
from marketsim.io.dataset import read_manifest
from tests.helpers import SCENARIOS, cli, start_process, wait_until

SMALL = f"""
schema: marketsim-sweep/v1
name: small
base: {SCENARIOS / "tiny.yaml"}
seed: 7
consumers: 600
steps: 12
replicates: 2
design: {{method: grid, size: 2}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}}
  - {{path: friction.create, values: [1.0, 2.5]}}
outputs: [gmv_share.JD, shift.gmv_share.JD, revenue.Tmall]
shift_against: all
record_every: 4
batch_runs: 2
"""


def marketsim(*args, cwd):
    """``marketsim ARGS`` in this process (tests/helpers.py ``cli``)."""
    return cli(*args, cwd=cwd)


def _rows(path):
    return load_results(path).sort_values(["run_id", "step"]).reset_index(drop=True)


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_same_rows_on_1_and_2_workers_and_dask(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    frames = []
    for w in (1, 2):
        r = marketsim("sweep", spec, "--workers", w, "--out", tmp_path / f"w{w}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        frames.append(_rows(tmp_path / f"w{w}"))
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        r = marketsim("sweep", spec, "--scheduler", cluster.scheduler_address, "--out", tmp_path / "dask", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "Dask cluster" in r.stderr
    frames.append(_rows(tmp_path / "dask"))
    a = frames[0]
    assert len(a) == 4 * 2 * 3 and a["run_id"].nunique() == 8  # 4 points x 2 replicates x 3 recorded steps
    assert {"run_id", "point_id", "replicate", "seed", "step", "param.friction.create", "shift.gmv_share.JD"} <= set(
        a.columns
    )
    for other in frames[1:]:
        pd.testing.assert_frame_equal(a, other)
    # re-running a finished sweep changes nothing
    before = sorted(p.name for p in (tmp_path / "w1").glob("part-*.parquet"))
    r = marketsim("sweep", spec, "--out", tmp_path / "w1", cwd=tmp_path)
    assert r.returncode == 0 and "8 already stored" in r.stderr
    assert sorted(p.name for p in (tmp_path / "w1").glob("part-*.parquet")) == before


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_sigkill_then_resume_loses_nothing(tmp_path):
    spec = tmp_path / "kill.yaml"
    spec.write_text(
        SMALL.replace("name: small", "name: kill")
        .replace("design: {method: grid, size: 2}", "design: {method: lhs, size: 30}")
        .replace("  - {path: friction.create, values: [1.0, 2.5]}", "  - {path: friction.create, range: [1.0, 2.5]}")
        .replace("steps: 12", "steps: 26")
    )
    out = tmp_path / "killed"
    p = start_process(
        "sweep", spec, "--workers", 1, "--out", out, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # a real process: it is killed
    wait_until(lambda: list(out.glob("part-*.parquet")) or p.poll() is not None, timeout=120, what="a stored part")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    stored = _rows(out)["run_id"].nunique()
    assert 0 < stored < 60, "the kill must land mid-sweep"
    r = marketsim("sweep", spec, "--resume", "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    resumed = _rows(out)
    assert resumed["run_id"].nunique() == 60 and not resumed.duplicated(["run_id", "step"]).any()
    r = marketsim("sweep", spec, "--out", tmp_path / "clean", cwd=tmp_path)
    assert r.returncode == 0
    pd.testing.assert_frame_equal(resumed, _rows(tmp_path / "clean"))


def test_sobol_recovers_ishigami_indices(tmp_path):
    spec = tmp_path / "ishigami.yaml"
    pi = np.pi
    spec.write_text(f"""
schema: marketsim-sweep/v1
name: ishigami
model: ishigami
seed: 1
design: {{method: sobol, size: 4096}}
parameters:
  - {{path: x1, range: [{-pi}, {pi}]}}
  - {{path: x2, range: [{-pi}, {pi}]}}
  - {{path: x3, range: [{-pi}, {pi}]}}
batch_runs: 100000
""")
    sweep = load_sweep(spec)
    run_sweep(sweep, tmp_path / "out", None)
    idx = sensitivity(read_manifest(tmp_path / "out"), load_results(tmp_path / "out"))["y"]
    exact_s1, exact_st = (0.3139, 0.4424, 0.0), (0.5576, 0.4424, 0.2437)  # Ishigami & Homma (1990), a=7, b=0.1
    for k, name in enumerate(("x1", "x2", "x3")):
        assert abs(idx[name]["S1"] - exact_s1[k]) < 0.05, (name, idx[name])
        assert abs(idx[name]["ST"] - exact_st[k]) < 0.05, (name, idx[name])
    r = marketsim("analyze", tmp_path / "out", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "sobol"
    assert (tmp_path / "out" / "sensitivity.png").stat().st_size > 0 and (tmp_path / "out" / "response.png").exists()


def test_morris_and_grid_analysis(tmp_path):
    spec = tmp_path / "m.yaml"
    spec.write_text(
        "schema: marketsim-sweep/v1\nname: m\nmodel: ishigami\nseed: 2\ndesign: {method: morris, size: 20, levels: 4}\n"
        "parameters:\n  - {path: x1, range: [-3.14159, 3.14159]}\n  - {path: x2, range: [-3.14159, 3.14159]}\n"
        "  - {path: x3, range: [-3.14159, 3.14159]}\n"
    )
    run_sweep(load_sweep(spec), tmp_path / "m", None)
    idx = sensitivity(read_manifest(tmp_path / "m"), load_results(tmp_path / "m"))["y"]
    assert idx["x2"]["mu_star"] > idx["x3"]["mu_star"]  # x2 matters alone; x3 only with x1
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    assert marketsim("sweep", small, "--workers", 1, "--out", tmp_path / "g", cwd=tmp_path).returncode == 0
    r = marketsim("analyze", tmp_path / "g", cwd=tmp_path)
    assert r.returncode == 0 and "95% interval per point" in r.stdout


@pytest.mark.parametrize(
    "edit,needle",
    [
        (
            lambda s: s.replace("replicates: 2", "replicate: 2"),
            "replicate: unknown key 'replicate' (did you mean 'replicates'?)",
        ),
        (
            lambda s: s.replace("retailers.JD.sso_share.weibo", "retailers.JDD.sso_share.weibo"),
            "parameters[0].path: retailers.JDD: no item named 'JDD'",
        ),
        (
            lambda s: s.replace("range: [0.02, 0.2]", "range: [0.02, 1.5]"),
            "parameters[0].range[1]: value 1.5 for retailers.JD.sso_share.weibo makes an invalid scenario",
        ),
        (
            lambda s: s.replace("method: grid", "method: sobel"),
            "design.method: unknown design 'sobel' (did you mean 'sobol'?)",
        ),
        (lambda s: s.replace("gmv_share.JD,", "gmv_shares.JD,"), "outputs[0]: unknown output 'gmv_shares.JD'"),
        (lambda s: s.replace("values: [1.0, 2.5]", "values: [1.0, 250]"), "parameters[1].values[1]: value 250"),
        (
            lambda s: s.replace("design: {method: grid, size: 2}", "design: {method: sobol, size: 6}"),
            "design.size: 6 is not a power of 2",
        ),
    ],
)
def test_bad_sweep_file_one_line_exit_2(tmp_path, edit, needle):
    spec = tmp_path / "bad.yaml"
    spec.write_text(edit(SMALL))
    r = marketsim("sweep", spec, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "bad.yaml:" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_example_sweep_validates():
    sweep = load_sweep(SCENARIOS / "sweep_weibo_login.yaml")
    assert sweep.design == "sobol" and len(sweep.points()) == 128 * 5


def test_spec_change_refused_but_neutral_edits_resume(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL.replace("replicates: 2", "replicates: 1"))
    out = tmp_path / "o"
    assert marketsim("sweep", spec, "--workers", 1, "--out", out, cwd=tmp_path).returncode == 0
    # a new description or batch size changes no stored row: same hash, nothing re-run
    spec.write_text(
        SMALL.replace("replicates: 2", "replicates: 1").replace("batch_runs: 2", "batch_runs: 3\ndescription: x")
    )
    r = marketsim("sweep", spec, "--out", out, cwd=tmp_path)
    assert r.returncode == 0 and "0 runs in" in r.stderr, r.stderr
    # a different seed would mix two sweeps in one folder: refused, one line, exit 2
    spec.write_text(SMALL.replace("replicates: 2", "replicates: 1").replace("seed: 7", "seed: 8"))
    r = marketsim("sweep", spec, "--out", out, cwd=tmp_path)
    assert r.returncode == 2 and "different sweep spec" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_corners_checked_together(tmp_path):
    spec = tmp_path / "c.yaml"
    # each share alone is fine, but the (0.6, 0.6) corner sums to 1.2 > 1 (JD accepts qq and weibo in tiny.yaml)
    spec.write_text(
        SMALL.replace(
            "  - {path: friction.create, values: [1.0, 2.5]}",
            "  - {path: retailers.JD.sso_share.qq, range: [0.0, 0.6]}",
        ).replace("range: [0.02, 0.2]", "range: [0.0, 0.6]")
    )
    r = marketsim("sweep", spec, cwd=tmp_path)
    assert r.returncode == 2 and "parameters: the corner" in r.stderr and "sum" in r.stderr, r.stderr


def test_attractiveness_parameter_reaches_the_run(tmp_path):
    """A sweep over a fixed retailer's attractiveness must use each point's value, not the base scenario's."""
    from marketsim.experiments.sweep.runner import run_task, sweep_alpha, tasks

    spec = tmp_path / "a.yaml"
    spec.write_text(
        SMALL.replace("  - {path: friction.create, values: [1.0, 2.5]}\n", "")
        .replace(
            "path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]",
            "path: retailers.Tmall.attractiveness, values: [-6.0, 3.0]",
        )
        .replace("replicates: 2", "replicates: 1")
    )
    sweep = load_sweep(spec)
    alpha = sweep_alpha(sweep, tmp_path)
    lo, hi = (run_task(sweep, alpha, t)[-1]["revenue.Tmall"] for t in tasks(sweep))
    assert hi > 2 * lo
