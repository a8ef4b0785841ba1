"""What history says about effects (docs/model.md section 8, "Effects learned from history"): ``marketsim fit
--ex-post --until DATE`` weighs the prior draws also by the held-out observations that end by DATE, and stores an
*ex-post* posterior that says so; without --ex-post a held-out figure changes nothing. The ex-post posterior may
not reach the skill of the scenario it saw: the scenario itself (or one holding a figure it saw) may not take a
prior from it, ``project`` refuses it in place of the decision-time posterior, and another scenario may use it
only if its decision (fit cut-off) is on or after DATE, and a back-test of it from an earlier cut-off is refused;
``validate`` shows where such a prior comes from.

The market is tests.helpers.fit_market_yaml's (monthly steps, 2000 consumers): three fitted observations up to
2013Q1, a promotion on 2013-06-01 (the fit's cut-off) with an uncertain size, an uncertain beta_social, and one
held-out 2013Q3 observation. The fits are shared by the tests (one cache): 12 draws."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.experiments.posterior import check_posterior, condition, posterior_path, refuse_ex_post_leak
from marketsim.fit.cache import CACHE_ENV, BadEntry
from marketsim.scenario.core import load_scenario, parse_text
from tests.helpers import fit_market_yaml

OBS = """primary_source: P
observations:
  - {source: P, period: 2012Q1, shares: {A: 0.52, B: 0.30}}
  - {source: P, period: 2012Q3, shares: {A: 0.53, B: 0.29}}
  - {source: P, period: 2013Q1, shares: {A: 0.55, B: 0.28}}
"""
HELD = "  - {source: P, period: 2013Q3, shares: {A: %s, B: 0.26}, holdout: true}\n"
EXTRA = """events:
  - {id: promo, type: promotion, date: 2013-06-01, retailer: B,
     utility: {value: 0.3, range: [0.1, 0.5], assumption: "a test"}}
"""
SOCIAL = '{value: 0.5, range: [0.2, 0.8], assumption: "a test"}'
UNTIL = "2013-10-01"  # after the held-out 2013Q3 (ends 2013-09-30)
K, SIGMA = 12, 20.0  # a wide kernel: 12 draws keep an effective sample size above the floor of 10
BETA = "behaviour.beta_social"


def _text(a_held: str | None = "0.58", *, name: str = "fitmarket", social: str = SOCIAL, extra: str = "") -> str:
    """The market with its held-out 2013Q3 line saying A has ``a_held`` (None: without the line)."""
    obs = OBS + ("" if a_held is None else HELD % a_held)
    text = fit_market_yaml(obs, n=2000, extra=EXTRA + extra, beta_social=social)
    return text.replace("name: fitmarket", f"name: {name}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fits")


@pytest.fixture(scope="module")
def stored(tmp_path_factory, cache):
    """The ex-post posterior `marketsim fit --ex-post` stores (and copies with --save), with what it printed."""
    d = tmp_path_factory.mktemp("expost")
    f = d / "market.yaml"
    f.write_text(_text())
    saved = d / "posteriors" / "market.expost.json"
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(cache))
    try:
        args = ["fit", str(f), "--ex-post", "--until", UNTIL, "--draws", str(K), "--sigma", str(SIGMA)]
        with _capture() as out:
            assert main([*args, "--results", str(d / "results"), "--save", str(saved)]) == 0
    finally:
        mp.undo()
    return f, saved, out.text


class _capture:
    """stdout of an in-process command (rich prints to the console it was given at import: read sys.stdout)."""

    def __enter__(self):
        import contextlib
        import io

        self.buf = io.StringIO()
        self._cm = contextlib.redirect_stdout(self.buf)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        self.text = self.buf.getvalue()


def test_held_out_figures_weigh_the_draws_only_ex_post(cache):
    """Changing a held-out figure leaves the decision-time weights exactly as they were, and moves the ex-post
    ones; the fits (attractiveness, trends, offsets) are the same either way (never fitted to a held-out line)."""
    until = dt.date.fromisoformat(UNTIL)
    near, far = parse_text(_text("0.58")), parse_text(_text("0.30"))
    w_near = condition(near, k=K, sigma_pp=SIGMA, cache_dir=cache)[0].weights
    w_far = condition(far, k=K, sigma_pp=SIGMA, cache_dir=cache)[0].weights
    np.testing.assert_array_equal(w_near, w_far)
    (p_near, s_near), (p_far, s_far) = (
        condition(sc, k=K, sigma_pp=SIGMA, cache_dir=cache, ex_post_until=until) for sc in (near, far)
    )
    assert np.abs(p_near.weights - p_far.weights).max() > 1e-3
    assert not np.allclose(p_near.weights, w_near)  # the held-out figure weighs in ex post
    assert s_near["ex_post"]["until"] == UNTIL
    assert [(f["source"], f["period"]) for f in s_near["ex_post"]["figures"]] == [("P", "2013Q3")]
    # a held-out figure that ends after DATE is not what "followed" by then: no held-out line left, refused
    with pytest.raises(Exception, match="no held-out observation"):
        condition(near, k=K, sigma_pp=SIGMA, cache_dir=cache, ex_post_until=dt.date(2013, 9, 29))


def test_the_stored_file_is_ex_post_with_its_figures_and_the_output_says_so(stored, cache):
    f, saved, out = stored
    doc = json.loads(saved.read_text())
    fitted = doc["fitted"]
    assert fitted["ex_post"] is True and fitted["conditioned_until"] == UNTIL
    assert [(x["source"], x["period"], x["end"]) for x in fitted["figures"]] == [("P", "2013Q3", "2013-09-30")]
    said = " ".join(out.split())
    assert "EX POST" in said and "P 2013Q3" in said and "may not be used to score fitmarket's own forecasts" in said
    # stored apart: `marketsim project` of this scenario never finds it where it looks for a posterior
    sc = load_scenario(f)
    assert not posterior_path(sc, cache).exists()
    # and refuses it there (a copy put in its place): it saw the held-out figures
    with pytest.raises(BadEntry, match="ex-post posterior"):
        check_posterior(doc, sc)


def test_until_goes_with_ex_post(tmp_path, capsys):
    f = tmp_path / "m.yaml"
    f.write_text(_text())
    for args in (["--until", UNTIL], ["--ex-post"]):
        assert main(["fit", str(f), *args, "--draws", str(K), "--results", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--ex-post" in err[0] and "--until" in err[0], err


def _refused(capsys, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _taking(tmp_path, saved, **kw) -> str:
    """A scenario whose beta_social takes its prior from the saved ex-post posterior (a path relative to it)."""
    rel = "../" + saved.parent.name + "/" + saved.name
    (tmp_path / "s").mkdir(exist_ok=True)
    social = f'{{prior: {{posterior: "{rel}", parameter: {BETA}}}, source: "what followed"}}'
    f = tmp_path / "s" / "user.yaml"
    f.write_text(_text(social=social, **kw))
    (tmp_path / saved.parent.name).mkdir(exist_ok=True)
    (tmp_path / saved.parent.name / saved.name).write_bytes(saved.read_bytes())
    return str(f)


def test_the_same_scenario_may_not_take_a_prior_from_its_ex_post_posterior(
    tmp_path, stored, cache, capsys, monkeypatch
):
    _, saved, _ = stored
    monkeypatch.setenv(CACHE_ENV, str(cache))
    late = "fit_until: 2014-01-01\n"  # a decision after DATE: the refusal is for what it saw, not the date
    same = _taking(tmp_path, saved, extra=late)
    for cmd in (["validate", same], ["backtest", same, "--until", "2013-01-01"], ["project", same, "--draws", "2"]):
        line = _refused(capsys, *cmd)
        assert "ex-post posterior of this same scenario" in line and "P 2013Q3" in line, (cmd, line)
        assert f"{BETA}.prior.posterior" in line and "already saw" in line, line
    # another name, but it holds the figure the posterior saw: refused all the same
    other = _taking(tmp_path, saved, name="renamed", extra=late)
    line = _refused(capsys, "validate", other)
    assert "ex-post posterior of figures this scenario holds" in line, line


def test_another_scenario_may_use_it_only_from_its_date_on_and_validate_shows_where_it_comes_from(
    tmp_path, stored, capsys
):
    _, saved, _ = stored
    early = _taking(tmp_path, saved, a_held=None, name="other")  # without the held-out line the posterior saw
    f = tmp_path / "s" / "user.yaml"
    line = _refused(capsys, "validate", early)
    assert f"conditioned on figures up to {UNTIL}, after this scenario's decision on 2013-06-01" in line, line
    f.write_text(f.read_text() + f"fit_until: {UNTIL}\n")
    assert main(["validate", str(f)]) == 0
    out = " ".join(capsys.readouterr().out.replace("#", " ").split())
    assert (
        f"{BETA}: " in out
        and f"ex-post posterior of fitmarket.{BETA} ({saved.name}, conditioned on the "
        f"held-out P 2013Q3, {K} draws, ESS "
        in out
        and f"until {UNTIL}, fitted on observations through 2013-06-01)" in out
    ), out
    sc = load_scenario(f)
    u = next(u for u in sc.uncertain if u.path == BETA)
    assert u.prior == "posterior" and u.reason.startswith("ex-post posterior of fitmarket.")
    # a back-test moves the decision earlier: from a cut-off up to DATE the prior saw what it would be scored on
    for cmd in (["backtest", str(f), "--until", "2013-01-01"], ["backtest", str(f), "--rolling"]):
        line = _refused(capsys, *cmd, "--draws", "2", "--results", str(tmp_path / "r"))
        assert f"{BETA} takes its prior from an ex-post posterior" in line and f"up to {UNTIL}" in line, line
    refuse_ex_post_leak(sc, dt.date(2013, 10, 2), list(sc.observations))  # from after DATE: nothing it saw
