"""One home per concept: the digest helper, the distribution table, the fit options, the fork helper and the
number formatter (each checked against the values the code gave before it was consolidated)."""

from __future__ import annotations

import datetime as dt
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from marketsim.experiments.posterior import prior_key
from marketsim.experiments.sweep.runner import _simulated, load_sweep
from marketsim.fit import cache as fitcache
from marketsim.fit.calibrate import cache_key
from marketsim.fit.options import FitOptions
from marketsim.io import dataset, names
from marketsim.report.numbers import count, interval, points, probability, share, shift
from marketsim.runtime.digest import canonical_json, digest
from marketsim.scenario.core import Uncertain, load_scenario
from marketsim.scenario.distributions import FAMILIES, Lognormal, Normal, Triangular, Uniform, make
from tests.helpers import SCENARIOS

# --------------------------------------------------------------------------- one digest


def test_digest_gives_the_keys_stored_before():
    """Known hex values of today's keys: a changed canonicalisation would orphan every fit cache entry,
    posterior, sweep folder and folder-name digest (and the scenario digests recorded in results)."""
    tiny = load_scenario(SCENARIOS / "tiny.yaml")
    base = load_scenario(SCENARIOS / "baseline_2013q2.yaml")
    assert tiny.digest() == "f3a4c8a49bfa3105354b64fac2e266efaa86424074bb1b1c5857419532747275"
    assert base.digest() == "8035e48e40a3daa7a0bf5fd53f5c36ec90b47adfbf7f9da7c3ebda3bfc0161a4"
    assert cache_key(tiny) == "b71bb54804bd6eaa2c09" and cache_key(base) == "fd976cb220d8ff471254"
    assert prior_key(base, 64, 1.0, "abc") == "f481ec2755bc8b988b64"
    sweep = load_sweep(SCENARIOS / "sweep_weibo_login.yaml")
    assert sweep.digest() == "2b5d28d915b65896"
    assert _simulated(sweep.base) == "4c022af795a8df742ebcb4935898875e347007e482b37261c61f6d17204f4432"
    assert names.digest({"b": [1, 2.5, "x"], "a": dt.date(2013, 5, 1)}) == "feb4adaf72"
    assert names.digest("Hello/World") == "f6373403e7"
    assert (
        fitcache.checksum({"b": 1, "a": [1.5, None]})
        == "cf0c4895ed707baaf7f40eaf8263541a10f2599db4d8955d035dc0a8f254ee32"
    )
    assert (
        dataset.manifest_checksum({"sha256": "x", "b": 1, "a": {"z": [1, 2]}})
        == "ff4f8435129f7e769dd0beea2dfa328972b3d9e67eb9b8a627c184ba07599b38"
    )


def test_digest_spellings_and_length():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert canonical_json({"b": 1, "a": [1, 2]}, spaced=True) == '{"a": [1, 2], "b": 1}'
    assert digest({"x": 1}, 12) == digest({"x": 1})[:12] and len(digest({"x": 1})) == 64
    assert digest({"d": dt.date(2013, 1, 1)}) == digest({"d": "2013-01-01"})
    with pytest.raises(TypeError):
        digest({"d": dt.date(2013, 1, 1)}, default=None)


# --------------------------------------------------------------------------- one distribution table

U = np.array([1e-9, 0.001, 0.05, 0.25, 0.5, 0.75, 0.95, 0.999])


@pytest.mark.parametrize(
    "law, ref",
    [
        (Uniform((0.5, 3.0)), stats.uniform(loc=0.5, scale=2.5)),
        (Normal((1.0, 0.3)), stats.norm(loc=1.0, scale=0.3)),
        (Lognormal((0.4, 0.5)), stats.lognorm(s=0.5, scale=0.4)),
        (Triangular((0.1, 0.3, 0.9)), stats.triang(c=0.25, loc=0.1, scale=0.8)),
    ],
)
def test_each_family_ppf_is_scipys(law, ref):
    assert set(FAMILIES) == {"uniform", "normal", "lognormal", "triangular"}
    np.testing.assert_allclose(law.ppf(U), ref.ppf(U), rtol=1e-13, atol=0)
    np.testing.assert_allclose(law.cdf(law.ppf(U)), U, rtol=1e-9, atol=1e-12)
    # truncated to a field's bounds: within them, and the inverse CDF of the truncated distribution
    lo, hi = law.ppf(0.2), law.ppf(0.7)
    x = law.ppf(U, (lo, hi))
    assert (x >= lo).all() and (x <= hi).all()
    np.testing.assert_allclose(
        ref.cdf(x), ref.cdf(lo) + np.clip(U, 1e-12, 1 - 1e-12) * (ref.cdf(hi) - ref.cdf(lo)), rtol=1e-9
    )
    assert make(law.family, law.args) == law


def test_family_centre_rule_and_description():
    assert Uniform((1, 2.5)).describe() == "range 1 .. 2.5" and Uniform((1, 2.5)).centre == 1.75
    assert (
        Lognormal((0.4, 0.5)).describe() == "lognormal(median 0.4, sigma 0.5)" and Lognormal((0.4, 0.5)).centre == 0.4
    )
    assert Triangular((0, 1, 2)).centre == 1 and Normal((3, 1)).centre == 3
    assert not Triangular((0, 3, 2)).ok() and not Uniform((2, 1)).ok() and not Normal((0, 0)).ok()
    u = Uncertain("behaviour.beta_social", 1.0, "lognormal", (1.0, 0.5), "r", (0.0, 5.0))
    assert u.describe() == "lognormal(median 1, sigma 0.5)" and u.law == Lognormal((1.0, 0.5))


def _sweep(tmp_path, dist: str) -> Path:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "schema: marketsim-sweep/v1\nname: m\nmodel: ishigami\nseed: 2\ndesign: {method: lhs, size: 8}\n"
        f"parameters:\n  - path: x1\n    distribution: {dist}\n  - path: x2\n    range: [-3, 3]\n"
        "  - path: x3\n    range: [-3, 3]\noutputs: [y]\n"
    )
    return spec


def test_sweep_lognormal_is_written_like_a_prior_and_the_old_spelling_loads_with_a_note(tmp_path, capsys):
    new = load_sweep(_sweep(tmp_path, "{type: lognormal, median: 1.5, sigma: 0.4}")).parameters[0]
    assert capsys.readouterr().err == ""
    np.testing.assert_allclose(new.from_unit(U), stats.lognorm(s=0.4, scale=1.5).ppf(np.clip(U, 1e-9, 1)), rtol=1e-13)
    old = load_sweep(_sweep(tmp_path, "{type: lognormal, mu: 0.5, sigma: 0.4}")).parameters[0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "note:" in err and "s.yaml:8: parameters[0].distribution" in err
    assert "'mu' is the old spelling" in err and "median: 1.64872, sigma: 0.4" in err
    # the same numbers as before: lognorm with scale exp(mu); the manifest keeps (mu, sigma)
    assert (
        old.from_unit(U).tobytes()
        == stats.lognorm.ppf(np.clip(U, 1e-9, 1 - 1e-9), s=0.4, scale=math.exp(0.5)).tobytes()
    )
    assert old.args == (0.5, 0.4) and old.distribution() == Lognormal((math.exp(0.5), 0.4))
    from marketsim.errors import ScenarioError

    with pytest.raises(ScenarioError, match="'mu' is the old spelling of 'median'"):
        load_sweep(_sweep(tmp_path, "{type: lognormal, mu: 0.5, median: 2, sigma: 0.4}"))
    with pytest.raises(ScenarioError, match="out of range"):
        load_sweep(_sweep(tmp_path, "{type: lognormal, median: 0, sigma: 0.4}"))


# --------------------------------------------------------------------------- fit options and the tasks


def test_fit_options_travel_by_keyword_to_the_fit(monkeypatch):
    """FitOptions pickles (it goes to worker processes) and reaches calibrate unchanged through the fit task,
    the cache and the calibration; the fields still work one by one."""
    from marketsim.experiments.tasks import fit_task
    from marketsim.fit import calibrate as C

    opts = FitOptions(until=dt.date(2013, 1, 1), tol_pp=0.7, drop_unidentified=True, allow_fixed=True)
    assert pickle.loads(pickle.dumps(opts)) == opts and opts.but(tol_pp=None).tol_pp is None
    with pytest.raises(TypeError):
        opts.but(tolerance=1)
    seen = []

    def fake(scenario, options, on_progress):
        seen.append(options)
        raise C.CalibrationError("stop")

    monkeypatch.setattr(C, "_calibrate", fake)
    sc = load_scenario(SCENARIOS / "baseline_2013q2.yaml")
    assert fit_task(sc, None, opts) == {"error": "stop"}
    assert seen == [opts]
    with pytest.raises(C.CalibrationError):
        C.calibrate(sc, until=dt.date(2012, 12, 31), allow_fixed=True)
    assert seen[-1] == FitOptions(until=dt.date(2012, 12, 31), allow_fixed=True)


def test_run_forked_is_the_same_as_running_each_arm_alone():
    from marketsim.engine.market import Market
    from marketsim.engine.population import build_world
    from marketsim.experiments.tasks import divergence, run_forked
    from marketsim.fit.cache import fitted

    sc = load_scenario(SCENARIOS / "tiny.yaml").with_overrides(consumers=1000)
    base = sc.without_events(None)
    assert sc.events and divergence(sc, base) == min(e.step for e in sc.events) and divergence(sc, sc) > 10**8
    fit = fitted(sc, None)
    steps = sc.calendar.steps

    def fresh(s):
        return Market(s, build_world(sc, sc.seed), fit.alpha, sc.seed, trend=fit.trend)

    got = run_forked(fresh(sc), [("s", sc), ("b", base)], steps)
    for (_, recs), s in zip(got, (sc, base), strict=True):
        alone = fresh(s)
        want = [alone.step() for _ in range(steps)]
        assert len(recs) == steps
        assert all(np.array_equal(a.gmv, b.gmv) for a, b in zip(recs, want, strict=True))


# --------------------------------------------------------------------------- one number formatter


def test_numbers_are_written_one_way():
    assert count(15_634_000) == "15.6 million" and count(16e6) == "16 million" and count(156_400_000) == "156 million"
    assert count(2.5e9) == "2.5 billion" and count(12_345) == "12,300" and count(950.4) == "950" and count(0) == "0"
    assert count(999_999) == "1 million"
    assert share(0.156) == "15.6%" and share(0.156, unit="") == "15.6" and share(0.42, 0) == "42%"
    assert shift(0.0123) == "+1.23" and shift(-0.0123, 1) == "-1.2" and points(1.234) == "+1.23"
    assert interval(-0.95, 0.861) == "[-0.95, +0.86]" and interval(1, 2, "{:.1f}") == "[1.0, 2.0]"
    assert probability(0.424) == "42%"


def test_the_report_and_the_live_page_write_a_count_alike():
    """The same count reads the same in the projection report and on the live page (15.6 million, not 16)."""
    from marketsim.report import projection as report
    from marketsim.viz import page as app

    assert "count" in vars(report) and "count" in vars(app)
    assert report.count is app.count is count
