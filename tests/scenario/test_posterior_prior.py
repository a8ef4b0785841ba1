"""A prior taken from another scenario's stored posterior (docs/model.md section 8, "Effects learned from
history"): ``prior: {posterior: FILE, parameter: PATH}``. The posterior is stored by the real writer
(:func:`save_posterior`); the second scenario's draws come from its weighted sample (the same quantiles),
``validate`` shows where it comes from, and a parameter of another kind, a missing parameter or file and a
tampered file are each refused in one line."""

import json
import shutil

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.errors import ScenarioError
from marketsim.experiments.posterior import Posterior, save_posterior
from marketsim.experiments.uncertainty import prior_draws, weighted_quantile
from marketsim.scenario.core import load_scenario
from tests.helpers import SCENARIOS

BETA = "behaviour.beta_social"
OLD = """  beta_social:             # utility for j when every friend on a layer last bought at j (Brock & Durlauf 2001 form [brock-durlauf-2001])
    value: 1.0
    range: [0.25, 1.25]"""


@pytest.fixture
def posterior(tmp_path):
    """A posterior of tiny.yaml (40 draws, uneven weights) stored by `marketsim fit`'s writer; its beta_social
    draws and weights."""
    sc = load_scenario(SCENARIOS / "tiny.yaml")
    rng = np.random.default_rng(3)
    samples = [{p.path: float(p.ppf(rng.uniform())) for p in sc.uncertain} for _ in range(40)]
    w = rng.uniform(0.5, 1.5, 40)
    post = Posterior(sc.uncertain, samples, w / w.sum(), 1.0)
    path = save_posterior(post, sc, tmp_path / "cache", [])
    return path, np.array([s[BETA] for s in samples]), w / w.sum()


def _scenario(tmp_path, posterior_file: str, parameter: str = BETA) -> str:
    """tiny.yaml (and its base) copied into tmp_path/b with beta_social's prior taken from the posterior."""
    d = tmp_path / "b"
    d.mkdir(exist_ok=True)
    shutil.copy(SCENARIOS / "tiny.yaml", d / "tiny.yaml")
    base = (SCENARIOS / "baseline_2013q2.yaml").read_text()
    assert OLD in base
    lines = base.replace(
        OLD,
        f"  beta_social:\n    prior: {{posterior: {posterior_file}, parameter: {parameter}}}\n"
        "    source: the same consumers a year on",
    ).splitlines()
    # the comment lines that followed the range stay (comments); the range's assumption goes
    lines = [ln for ln in lines if not ln.startswith('    assumption: "no source for shopping')]
    (d / "baseline_2013q2.yaml").write_text("\n".join(lines) + "\n")
    return str(d / "tiny.yaml")


def test_draws_come_from_the_stored_posterior(tmp_path, posterior):
    path, x, w = posterior
    sc = load_scenario(_scenario(tmp_path, f"../cache/{path.name}"))
    p = next(u for u in sc.uncertain if u.path == BETA)
    assert p.prior == "posterior" and p.value == pytest.approx(weighted_quantile(x, w, 0.5))
    assert p.reason.startswith(f"posterior of tiny ({path.name}, ESS ") and "40 draws" in p.reason
    assert "fitted on observations through 2013-03-04" in p.reason and p.reason.endswith("a year on")
    draws = prior_draws(sc, 400, 1)
    got = np.array([v[BETA] for v in draws.values])
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(got, q), weighted_quantile(x, w, q), atol=0.02)
    assert got.min() >= x.min() and got.max() <= x.max()


def test_validate_shows_the_provenance(tmp_path, posterior, capsys):
    path, _, _ = posterior
    assert main(["validate", _scenario(tmp_path, f"../cache/{path.name}")]) == 0
    out = capsys.readouterr().out
    head = " ".join(
        ln.lstrip("# ").strip() for ln in out.split("# Uncertain parameters")[1].split("#\n")[0].splitlines()
    )
    assert f"- {BETA}: " in head and "posterior(median " in head, head
    assert f"posterior of tiny ({path.name}, ESS " in head and "40 draws, fitted on observations" in head
    resolved = tmp_path / "resolved.yaml"  # the resolved scenario names the file, and reads back the same
    resolved.write_text(out)
    again, first = (
        load_scenario(resolved).uncertain[1],
        load_scenario(_scenario(tmp_path, f"../cache/{path.name}")).uncertain[1],
    )
    assert (again.value, again.args, again.posterior) == (first.value, first.args, (str(path), BETA))


def _refused(capsys, file: str) -> str:
    assert main(["validate", file]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_share_used_for_a_utility_is_refused(tmp_path, posterior, capsys):
    path, _, _ = posterior
    line = _refused(capsys, _scenario(tmp_path, f"../cache/{path.name}", "retailers.JD.sso_share.weibo"))
    assert "baseline_2013q2.yaml:" in line and f"{BETA}.prior.parameter" in line, line
    assert "is a fraction of 1" in line and "this field a utility" in line, line


def test_a_missing_parameter_lists_what_the_file_has(tmp_path, posterior, capsys):
    path, _, _ = posterior
    line = _refused(capsys, _scenario(tmp_path, f"../cache/{path.name}", "behaviour.beta_habit"))
    assert "'behaviour.beta_habit' is not a parameter" in line and "it has: retailers.JD.sso_share.weibo" in line


def test_a_missing_or_tampered_file_is_refused(tmp_path, posterior, capsys):
    path, _, _ = posterior
    line = _refused(capsys, _scenario(tmp_path, "../cache/nothing.posterior.json"))
    assert "nothing.posterior.json: the posterior is missing" in line and "marketsim fit" in line, line
    doc = json.loads(path.read_text())
    doc["weights"][0] *= 3
    path.write_text(json.dumps(doc))
    line = _refused(capsys, _scenario(tmp_path, f"../cache/{path.name}"))
    assert "fails its checksum" in line and f"{BETA}.prior.posterior" in line, line
    with pytest.raises(ScenarioError, match="checksum"):
        load_scenario(_scenario(tmp_path, f"../cache/{path.name}"))


def test_a_projection_names_the_posterior_in_its_parameter_table(tmp_path, posterior, monkeypatch):
    from marketsim.fit.cache import CACHE_ENV

    path, _, _ = posterior
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "fits"))
    out = tmp_path / "proj"
    args = ["--consumers", "1000", "--steps", "10", "--draws", "3", "--replicates", "1", "--prior", "--out", str(out)]
    assert main(["project", _scenario(tmp_path, f"../cache/{path.name}"), *args]) == 0
    report = " ".join((out / "report.md").read_text().split())
    assert f"posterior of tiny ({path.name}, ESS " in report and "posterior(median " in report


def test_an_older_posterior_without_provenance_is_checked_by_range(tmp_path, posterior, capsys):
    """A posterior file stored before files recorded where they come from (no `fitted` block): a parameter whose
    draws leave the field's range is refused all the same."""
    from marketsim.scenario.posterior_file import body_of, checksum

    path, _, _ = posterior
    doc = json.loads(path.read_text())
    del doc["fitted"]
    doc["sha256"] = checksum(body_of(doc))
    path.write_text(json.dumps(doc))
    assert main(["validate", _scenario(tmp_path, f"../cache/{path.name}")]) == 0
    capsys.readouterr()
    base = tmp_path / "b" / "baseline_2013q2.yaml"  # friction.create's draws (0.5 .. 3) as a share (0 .. 1)
    old = "        value: 0.05\n        range: [0.02, 0.15]\n"
    text = base.read_text()
    assert old in text
    base.write_text(
        text.replace(old, f"        prior: {{posterior: ../cache/{path.name}, parameter: friction.create}}\n")
    )
    line = _refused(capsys, str(tmp_path / "b" / "tiny.yaml"))
    assert "retailers[1].sso_share.weibo.prior.parameter" in line or "sso_share.weibo.prior.parameter" in line, line
    assert "friction.create in ../cache/" in line and "outside this field's range (0 <= x <= 1)" in line, line
