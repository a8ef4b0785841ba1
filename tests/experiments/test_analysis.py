"""Sweep analysis: effect sizes against closed forms (Ishigami), labels and units in the manifest and on the
charts' axes (read from the matplotlib figure objects), labels neutral for the spec hash, the resume hint."""

import json
import math

import numpy as np
import pytest

from marketsim import load_results
from marketsim.experiments.sweep.analysis import (
    effects_figure,
    main_effects,
    quantities,
    response_figure,
    sensitivity,
    sensitivity_figure,
)
from marketsim.experiments.sweep.runner import load_sweep, run_sweep
from marketsim.figures.plots import close
from marketsim.io.dataset import read_manifest
from marketsim.scenario.labels import output_quantity, parameter_quantity
from tests.helpers import SCENARIOS, cli

PI = math.pi


def ishigami_spec(method: str, size: int, extra: str = "") -> str:
    return f"""
schema: marketsim-sweep/v1
name: ish_{method}
model: ishigami
seed: 1
design: {{method: {method}, size: {size}{extra}}}
parameters:
  - {{path: x1, range: [{-PI}, {PI}], label: "Demand shock"}}
  - {{path: x2, range: [{-PI}, {PI}]}}
  - {{path: x3, range: [{-PI}, {PI}]}}
batch_runs: 100000
"""


def run(tmp_path, text: str, name: str = "s"):
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    out = tmp_path / name
    run_sweep(load_sweep(spec), out, None, results_root=tmp_path / "results")
    return read_manifest(out), load_results(out), out


@pytest.fixture(scope="module")
def ishigami_sobol(tmp_path_factory):
    return run(tmp_path_factory.mktemp("ish"), ishigami_spec("sobol", 4096))


def test_ishigami_main_effects_match_the_closed_form(ishigami_sobol):
    """E[Y|x2] = 7 sin^2(x2) + const spans 7; E[Y|x3] is flat; E[Y|x1] = (1 + 0.1 pi^4/5) sin(x1) + const."""
    manifest, df, _ = ishigami_sobol
    eff = main_effects(manifest, df)["y"]
    assert abs(eff["x2"]["range"] - 7.0) < 0.4, eff["x2"]["range"]
    assert eff["x3"]["range"] < 0.4, eff["x3"]["range"]
    c1 = 1 + 0.1 * PI**4 / 5
    assert abs(eff["x1"]["range"] - 2 * c1) < 0.4, eff["x1"]["range"]
    # lowest fifth of x1 in [-pi, -0.6 pi]: mean of sin = -(1 + cos(0.6 pi)) / (0.4 pi); the highest fifth mirrors it
    lo_fifth = -c1 * (1 + math.cos(0.6 * PI)) / (0.4 * PI)
    assert abs(eff["x1"]["low"] - (3.5 + lo_fifth)) < 0.2 and abs(eff["x1"]["high"] - (3.5 - lo_fifth)) < 0.2
    assert abs(eff["x1"]["change"] - (-2 * lo_fifth)) < 0.3 and eff["x1"]["change_ci95"] < 0.3
    assert abs(eff["x2"]["change"]) < 0.3  # symmetric: no direction, though a large effect
    curve = eff["x2"]["curve"]
    assert len(curve["x"]) == 30 and sum(curve["n"]) == len(df)
    assert all(lo <= m <= hi for lo, m, hi in zip(curve["lo"], curve["mean"], curve["hi"], strict=True))


def test_grid_main_effects_are_the_exact_marginal_means(tmp_path):
    """On a full grid (balanced) the fitted curve is exactly the mean over the other parameters at each level."""
    manifest, df, _ = run(tmp_path, ishigami_spec("grid", 8))
    eff = main_effects(manifest, df)["y"]
    mid = -PI + (np.arange(8) + 0.5) * 2 * PI / 8  # the grid's cell midpoints
    np.testing.assert_allclose(eff["x2"]["curve"]["x"], mid)
    # the mean of sin(x1) (1 + 0.1 x3^4) over the symmetric grid is 0: E[Y | x2] = 7 sin^2(x2) at the midpoints
    np.testing.assert_allclose(eff["x2"]["curve"]["mean"], 7 * np.sin(mid) ** 2, atol=1e-9)
    assert eff["x3"]["range"] < 1e-9  # sin(x1) averages to 0 over the symmetric grid: x3 acts only with x1
    assert eff["x2"]["low"] == pytest.approx(eff["x2"]["curve"]["mean"][0])  # distinct levels: the end levels


def test_morris_and_lhs_effects(tmp_path):
    m, dm, _ = run(tmp_path, ishigami_spec("morris", 40, ", levels: 4"), "m")
    em = main_effects(m, dm)["y"]
    assert len(em["x2"]["curve"]["x"]) == 4  # one bin per Morris level
    assert em["x2"]["range"] > em["x3"]["range"]
    lh, dl, _ = run(tmp_path, ishigami_spec("lhs", 600), "l")
    el = main_effects(lh, dl)["y"]
    assert abs(el["x2"]["range"] - 7) < 2.0 and el["x3"]["range"] < el["x2"]["range"] / 3


def test_labels_on_the_axes_and_slide_size(ishigami_sobol):
    manifest, df, _ = ishigami_sobol
    idx = sensitivity(manifest, df)
    eff = main_effects(manifest, df)
    fig = sensitivity_figure(manifest, idx)
    try:
        assert tuple(fig.get_size_inches()) == (10.0, 5.6) and fig.dpi == 150
        ax = fig.axes[0]
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert "Demand shock" in ticks and "x2" in ticks  # the file's label; the path where there is none
        assert "% of the variance" in ax.get_xlabel()
        # most influential on top: x1 (ST 0.56) above x3 (0.24)
        assert ticks.index("Demand shock") > ticks.index("x3")
    finally:
        close(fig)
    fig = effects_figure(manifest, eff, "y")
    try:
        titles = [a.get_title(loc="left") for a in fig.axes]
        assert titles[0] == "x2" and "Demand shock" in titles  # ordered by the size of the effect
        assert all(a.get_xlabel() for a in fig.axes)
    finally:
        close(fig)


SMALL = f"""
schema: marketsim-sweep/v1
name: small
base: {SCENARIOS / "tiny.yaml"}
seed: 7
consumers: 600
steps: 12
replicates: 1
design: {{method: lhs, size: 8}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}}
  - {{path: friction.create, range: [1.0, 2.5], label: "New-account hassle"}}
outputs: [shift.gmv_share.JD, gmv_share.JD, revenue.Tmall]
shift_against: all
"""


def test_shares_in_points_and_units_on_every_axis(tmp_path):
    manifest, df, _ = run(tmp_path, SMALL)
    # the manifest stores labels and display units for analyze
    p0, p1 = manifest["parameters"]
    assert (p0["label"], p0["unit"], p0["scale"]) == ("JD: share of customers logging in with Weibo", "%", 100.0)
    assert (p1["label"], p1["unit"]) == ("New-account hassle", "utility")
    assert manifest["output_labels"]["shift.gmv_share.JD"] == {
        "label": "JD: GMV share shift from the events",
        "unit": "pp",
        "scale": 100.0,
    }
    assert manifest["output_labels"]["revenue.Tmall"]["unit"] == "RMB m"
    eff = main_effects(manifest, df)
    fig = effects_figure(manifest, eff, "shift.gmv_share.JD")
    try:
        ax = {a.get_title(loc="left").replace("\n", " "): a for a in fig.axes}[
            "JD: share of customers logging in with Weibo"
        ]
        assert ax.get_xlabel() == "%" and "(pp)" in fig.axes[0].get_ylabel()
        line = next(ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1)
        curve = eff["shift.gmv_share.JD"]["retailers.JD.sso_share.weibo"]["curve"]
        np.testing.assert_allclose(line.get_xdata(), np.array(curve["x"]) * 100)  # shares in %
        np.testing.assert_allclose(line.get_ydata(), np.array(curve["mean"]) * 100)  # share shifts in pp
        assert ax.get_xlim() == pytest.approx((2.0, 20.0))  # the parameter's whole range
        assert any(t.get_text().startswith("effect: ") and t.get_text().endswith(" pp") for t in ax.texts)
    finally:
        close(fig)
    fig = response_figure(manifest, df, ["retailers.JD.sso_share.weibo", "friction.create"])
    try:
        ax, cbar = fig.axes
        assert ax.get_xlabel() == "JD: share of customers logging in with Weibo (%)"
        assert ax.get_ylabel() == "New-account hassle (utility)"
        assert "(pp)" in cbar.get_ylabel().replace("\n", " ")
        vals = ax.collections[0].get_array()
        ref = df.groupby("point_id")["shift.gmv_share.JD"].mean().to_numpy() * 100
        np.testing.assert_allclose(np.sort(vals), np.sort(ref))
    finally:
        close(fig)


def test_labels_are_neutral_for_the_spec_hash_and_reach_the_manifest(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL)
    labelled = load_sweep(spec)
    spec.write_text(SMALL.replace(', label: "New-account hassle"', ""))
    plain = load_sweep(spec)
    assert labelled.digest() == plain.digest()
    # and a file without labels keeps the hash it had before labels existed (its stored results still resume)
    import hashlib

    from marketsim.experiments.sweep.runner import NEUTRAL_KEYS

    before = {"spec": {k: v for k, v in plain.raw.items() if k not in NEUTRAL_KEYS}, "base": plain.base.digest()}
    assert plain.digest() == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert plain.parameters[1].label is None and labelled.parameters[1].label == "New-account hassle"
    out = tmp_path / "o"
    run_sweep(plain, out, None, results_root=tmp_path / "results")
    assert read_manifest(out)["parameters"][1]["label"] == "Cost of creating a new account"
    # a new label resumes the same sweep (nothing re-runs) and reaches the manifest, so analyze shows it
    assert run_sweep(labelled, out, None, results_root=tmp_path / "results")["ran"] == 0
    pq, _ = quantities(read_manifest(out))
    assert pq["friction.create"].label == "New-account hassle"
    spec.write_text(SMALL.replace('label: "New-account hassle"', "label: [1, 2]"))
    r = cli("sweep", spec, cwd=tmp_path)
    assert r.returncode == 2 and "parameters[1].label: expected a string" in r.stderr, r.stderr


def test_old_manifest_without_labels_gets_the_defaults():
    manifest = {
        "parameters": [{"path": "behaviour.beta_social", "kind": "range", "args": [0, 2]}],
        "outputs": ["shift.gmv_share.JD"],
    }
    pq, oq = quantities(manifest)
    assert pq["behaviour.beta_social"].axis() == "Social influence: weight of friends' purchases (utility)"
    assert oq["shift.gmv_share.JD"].axis() == "JD: GMV share shift from the events (pp)"


@pytest.mark.parametrize(
    "path,label,unit",
    [
        ("retailers.JD.sso_share.weibo", "JD: share of customers logging in with Weibo", "%"),
        ("retailers.Tmall.sso_share.qq", "Tmall: share of customers logging in with QQ", "%"),
        ("providers.weibo.penetration", "Share of consumers with a Weibo account", "%"),
        ("providers.qq.network.k", "QQ network: neighbours per member", "neighbours"),
        ("events.jd_drops_weibo.migration_cost", "jd drops weibo: cost of migrating the account", "utility"),
        ("consumers.basket.mean", "Mean basket value", "RMB"),
        ("behaviour.beta_novelty", "Behaviour: beta novelty", ""),  # not a known field: the readable fallback
    ],
)
def test_parameter_labels(path, label, unit):
    q = parameter_quantity(path)
    assert (q.label, q.unit) == (label, unit)
    assert parameter_quantity(path, "Mine").label == "Mine" and parameter_quantity(path, "Mine").unit == unit


def test_output_labels():
    assert output_quantity("gmv_share.JD").axis() == "JD: GMV share (%)"
    assert output_quantity("gmv_share.JD").diff_unit == "pp"  # a difference of two shares is in points
    assert output_quantity("revenue.Tmall", currency="USD").axis() == "Tmall: revenue per week (USD m)"
    assert (
        output_quantity("shift.accounts_created.JD", step_days=30).label
        == "JD: extra new accounts per 30 days from the events"
    )


def test_incomplete_sweep_names_the_sweep_file_to_resume(tmp_path, ishigami_sobol):
    spec = tmp_path / "inc.yaml"
    spec.write_text(ishigami_spec("sobol", 8).replace("batch_runs: 100000", "batch_runs: 4"))
    r = cli("sweep", "inc.yaml", "--out", "out/inc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    parts = sorted((tmp_path / "out" / "inc").glob("part-*.parquet"))
    parts[-1].unlink()
    r = cli("analyze", "out/inc", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "finish it with `marketsim sweep inc.yaml --out out/inc`" in r.stderr, r.stderr


def test_analyze_writes_effects_to_json_and_charts(tmp_path):
    spec = tmp_path / "ish.yaml"
    spec.write_text(ishigami_spec("sobol", 256))
    r = cli("sweep", spec, "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("analyze", "o", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res == json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert set(res["effects"]["y"]) == {"x1", "x2", "x3"} and res["effects"]["y"]["x2"]["range"] > 5
    assert res["parameters"]["x1"]["label"] == "Demand shock"
    assert res["figures"] == ["sensitivity.png", "effects.png", "response.png"]
    from PIL import Image

    for f in res["figures"]:
        with Image.open(tmp_path / "o" / f) as im:
            assert im.size == (1500, 840), f  # 10 x 5.6 in at 150 dpi: 16:9, for a slide
