"""No silent wrong answers from a fit or a posterior: a posterior worth too few draws is refused and
a stored one is checked in full where it is used (its effective sample size shown); a market where nobody buys,
or observations that leave nothing for the rest, fail in one line naming the cause (never "converged", never
cached as a fit); a fit-cache entry that is not a regular file is never opened, and a read-only shared cache is
read (or named) without blaming --results."""

import hashlib
import json
import os
import re
import threading

import numpy as np
import pytest

from marketsim.cli import main
from marketsim.errors import UserError
from marketsim.experiments.posterior import FORMAT, posterior_path
from marketsim.fit.cache import CACHE_ENV, cached_calibration
from marketsim.fit.calibrate import CalibrationError, cache_key, calibrate
from marketsim.scenario.core import load_scenario, parse_text
from tests.helpers import SCENARIOS, fit_market_yaml, simple_market_yaml

TINY = SCENARIOS / "tiny.yaml"
KEYS = ("params", "samples", "weights", "sigma_pp", "priors", "report")  # what a posterior file's checksum covers
SMALL = ["--consumers", "1000", "--steps", "10"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("marketsim: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


# --------------------------------------------------------------------------- the posterior


def _posterior_doc(sc, samples, weights, sigma=1.0) -> dict:
    """A posterior file as `marketsim fit` writes it (with a valid checksum), for ``samples`` and ``weights``."""
    params = sc.uncertain
    body = {
        "params": [p.path for p in params],
        "samples": samples,
        "weights": weights,
        "sigma_pp": sigma,
        "priors": [[p.path, p.prior, list(p.args)] for p in params],
        "report": [],
    }
    return {"format": FORMAT, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), **body}


def _resigned(doc: dict) -> dict:
    body = {k: doc[k] for k in KEYS if k in doc}
    return {**doc, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()}


def test_fit_refuses_a_posterior_under_the_ess_floor(tmp_path, monkeypatch, capsys):
    """`fit --draws 1` stored a one-point posterior and reported every parameter "narrowed 100%"; now it is one
    line (the ESS, the floor, what to do), exit 2, and nothing is stored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert main(["fit", str(TINY), "--draws", "1", "--results", str(tmp_path / "res")]) == 2
    line = _error_line(capsys)
    assert "--draws 1" in line and "floor of 10" in line and "--draws 64" in line, line
    assert not list((tmp_path / "cache").glob("*.posterior.json")) and not (tmp_path / "res" / "tiny" / "fit").exists()
    from marketsim.experiments import posterior as conditioning

    assert conditioning.ess_floor(64) == 10 and conditioning.ess_floor(1000) == 50  # max(10, 5% of the draws)


def test_project_uses_a_checked_posterior_and_shows_its_ess(tmp_path, monkeypatch, capsys):
    """A stored posterior is used only when it checks out; the ESS is on the stderr line, in projection.json
    and in report.md. A damaged or inconsistent one (truncated, a valid checksum over a missing key, a string
    or negative weight, a value outside the support, other priors, too few effective draws) is one line naming
    the file, exit 2, never a silent fallback to the priors and never a traceback."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    sc = load_scenario(TINY).with_overrides(consumers=1000, steps=10)
    path = posterior_path(sc, cache)
    path.parent.mkdir(parents=True)
    # the central values sixteen times (all draws share the central fit: cheap), one weight twice the rest
    centre = {p.path: p.value for p in sc.uncertain}
    good = _posterior_doc(sc, [dict(centre) for _ in range(16)], [2.0] + [1.0] * 15)
    ess = 1 / np.sum((np.array([2.0] + [1.0] * 15) / 17) ** 2)
    path.write_text(json.dumps(good))
    out = tmp_path / "proj"
    assert main(["project", str(TINY), *SMALL, "--draws", "3", "--replicates", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert str(path) in err and f"effective sample size {ess:.1f} of 16" in err, err
    summ = json.loads((out / "projection.json").read_text())
    assert summ["draws_from"]["source"] == "posterior" and summ["draws_from"]["posterior"] == str(path)
    assert summ["draws_from"]["ess"] == pytest.approx(ess, abs=0.01) and summ["draws"]["source"] == "posterior"
    assert f"effective sample size {ess:.1f} of 16" in (out / "report.md").read_text()

    p0 = sc.uncertain[0]
    damaged = {
        "truncated": json.dumps(good)[:-40],
        "a missing key": json.dumps(_resigned({k: v for k, v in good.items() if k != "weights"})),
        "a string weight": json.dumps(_resigned({**good, "weights": ["1"] + good["weights"][1:]})),
        "a negative weight": json.dumps(_resigned({**good, "weights": [-1.0] + good["weights"][1:]})),
        "a value outside the support": json.dumps(
            _resigned({**good, "samples": [{**centre, p0.path: p0.bounds[1] + 5}] + good["samples"][1:]})
        ),
        "other priors": json.dumps(
            _resigned({**good, "priors": [[p0.path, "uniform", [0, 1e6]]] + good["priors"][1:]})
        ),
        "one effective draw": json.dumps(_posterior_doc(sc, [dict(centre)] * 16, [1.0] + [0.0] * 15)),
        "edited": json.dumps({**good, "weights": [5.0] + good["weights"][1:]}),
    }
    for what, text in damaged.items():
        path.write_text(text)
        out = tmp_path / f"proj-{len(what)}"
        assert main(["project", str(TINY), *SMALL, "--draws", "3", "--replicates", "2", "--out", str(out)]) == 2, what
        line = _error_line(capsys)
        assert line.startswith(f"marketsim: error: {path}: ") and "--prior ignores it" in line, (what, line)
        assert not out.exists(), what
    os.unlink(path)
    os.mkfifo(path)  # never opened (it would block)
    assert main(["project", str(TINY), *SMALL, "--draws", "3", "--out", str(tmp_path / "fifo")]) == 2
    assert "is a FIFO" in _error_line(capsys)


# --------------------------------------------------------------------------- a market nobody buys in


def test_a_market_where_nobody_buys_fails_naming_the_cause(tmp_path, monkeypatch, capsys):
    """A shopping rate of 1e-9 was "fitted" with 50-point residuals, exit 0 and cached (a flat Jacobian counted as
    converged), and `project` then printed nan shares; all frictions at 100 were blamed on the attractiveness
    limit. Observed shares that leave nothing for the rest were blamed on tipping. Each is now one line naming
    the cause, exit 2, and no fit is cached as a success."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert main(["calibrate", str(TINY), "--set", "consumers.shopping_rate=0.000000001", "--results", "res"]) == 2
    line = _error_line(capsys)
    assert re.search(
        r"consumers\.shopping_rate 1e-09 per 7-day step: the simulated market had 0 shoppers and 0 "
        r"purchases in target_share",
        line,
    ), line
    stored = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert stored and all("error" in d and "fit" not in d for d in stored), stored  # a failure, never a fit
    assert (
        main(
            [
                "project",
                str(TINY),
                "--set",
                "consumers.shopping_rate=0.000000001",
                *SMALL,
                "--replicates",
                "2",
                "--out",
                str(tmp_path / "proj"),
            ]
        )
        == 2
    )
    line = _error_line(capsys)
    assert "shopping_rate 1e-09" in line and "nan" not in line, line

    # given attractiveness (nothing to fit): the projection printed nan shares
    for over, cause in (
        ({"rate": "0.000000001"}, "consumers.shopping_rate 1e-09 per 7-day step"),
        ({"native": 100, "sso": 100, "link": 100, "create": 100}, "native 100, sso 100, link 100"),
    ):
        f = tmp_path / "given.yaml"
        f.write_text(simple_market_yaml(n=2000, steps=5, **over))
        assert main(["project", str(f), "--replicates", "2", "--out", str(tmp_path / "given")]) == 2
        line = _error_line(capsys)
        assert cause in line and "nan" not in line and not (tmp_path / "given").exists(), line

    frictions = [a for k in ("native", "sso", "link", "create") for a in ("--set", f"friction.{k}=100")]
    assert main(["calibrate", str(TINY), *frictions, "--results", "res"]) == 2
    line = _error_line(capsys)
    assert "every retailer's friction (native 100, sso 100, link 100, create 100 utility" in line, line
    assert "purchase probability ~0" in line and "tips" not in line, line


def test_a_flat_market_is_never_converged(monkeypatch):
    """The solver's own guard: where the shares do not respond to the fitted parameters (the simulation is
    replaced by one that ignores them) and the observations are 3 points away (close enough for the coarse
    stage to hand over), the fit fails; it never returns "converged" at its starting point."""
    import marketsim.fit.calibrate as cal
    from marketsim.fit.calibrate import expected_path

    fixed = np.array([-1.0, -1.5, -2.0])
    probe = parse_text(fit_market_yaml("", turnover=0))  # no burn-in pilot (it would see the real alphas)
    path = expected_path(probe, fixed, np.zeros(3), probe.seed, 5000, 12)
    s = path.gmv.sum(axis=0) / path.gmv.sum()
    obs = "\n".join(
        [
            "primary_source: P",
            "fit_until: 2013-01-01",
            "observations:",
            f"  - {{source: P, period: 2012H1, shares: {{A: {s[0] + 0.03:.4f}, B: {s[1] - 0.03:.4f}}}}}",
            f"  - {{source: P, period: 2012H2, shares: {{A: {s[0] - 0.03:.4f}, B: {s[1] + 0.03:.4f}}}}}",
        ]
    )
    sc = parse_text(fit_market_yaml(obs, turnover=0, conversion=round(path.conversion + 0.03, 4)))

    def frozen(scenario, alpha, trend, *a, **kw):  # the shares and conversion of fixed alphas, whatever is asked
        return expected_path(scenario, fixed, trend, *a, **kw)

    monkeypatch.setattr(cal, "expected_path", frozen)
    with pytest.raises(CalibrationError, match="do not respond to the fitted parameters"):
        calibrate(sc)


def test_observed_shares_that_leave_nothing_for_the_rest(capsys):
    obs = "\n".join(
        [
            "primary_source: P",
            "fit_until: 2013-01-01",
            "observations:",
            "  - {source: P, period: 2012H1, shares: {A: 0.7, B: 0.3}}",
            "  - {source: P, period: 2012H2, shares: {A: 0.6, B: 0.3}}",
        ]
    )
    sc = parse_text(fit_market_yaml(obs))
    with pytest.raises(CalibrationError) as e:
        calibrate(sc)
    assert (
        "observations[0].shares: the observed shares for P 2012H1 sum to 100.0%: nothing is left for C" in str(e.value)
    ) and "tips" not in str(e.value), e.value


# --------------------------------------------------------------------------- the fit cache


def _small_fit_market():
    from tests.fit.test_calibrate import synthetic_observations

    obs, conv = synthetic_observations()
    return parse_text(fit_market_yaml(obs, trend=("calibrate", "calibrate", 0), conversion=round(conv, 5)))


def test_a_cache_entry_that_is_not_a_file_is_never_opened(tmp_path):
    """An entry replaced by a folder gave a traceback, by a FIFO hung forever: now each is a damaged entry (one
    note), refitted and replaced; a folder that holds something is one line, never touched."""
    sc = _small_fit_market()
    cal, cached, _ = cached_calibration(sc, tmp_path)
    entry = tmp_path / f"{cache_key(sc)}.json"
    good = entry.read_text()

    entry.unlink()
    os.mkfifo(entry)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=cached_calibration(sc, tmp_path)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "a FIFO in the cache hung the fit"
    again, cached, note = box["r"]
    assert not cached and "is a FIFO, not a file; refitting" in note and again.alpha == cal.alpha
    assert entry.is_file() and not entry.is_symlink() and json.loads(entry.read_text()) == json.loads(good)

    entry.unlink()
    entry.mkdir()
    again, cached, note = cached_calibration(sc, tmp_path)
    assert not cached and "is a folder, not a file; refitting" in note and entry.is_file()

    entry.unlink()
    entry.mkdir()
    (entry / "keep.txt").write_text("mine")
    with pytest.raises(UserError) as e:
        cached_calibration(sc, tmp_path)
    assert "is a folder" in str(e.value) and "cannot be replaced" in str(e.value) and CACHE_ENV in str(e.value)
    assert (entry / "keep.txt").read_text() == "mine"


def test_a_read_only_shared_cache_is_read_and_named(tmp_path, tmpfs, monkeypatch, capsys):
    """A read-only $MARKETSIM_FIT_CACHE that holds the fit is simply used (it was refused, blaming a --results
    nobody gave); one that lacks it is one line naming the cache and $MARKETSIM_FIT_CACHE, not --results."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    ro = tmpfs(4 << 20)
    monkeypatch.setenv(CACHE_ENV, str(ro))
    assert main(["calibrate", str(TINY), "--json"]) == 0  # fills the cache while writable
    capsys.readouterr()
    r = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
    assert main(["calibrate", str(TINY), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == cache_key(load_scenario(TINY))
    assert main(["calibrate", str(TINY), "--set", "behaviour.beta_habit=2.5"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"marketsim: error: {ro}: the fit cache is not writable") and CACHE_ENV in line, line
    assert "--results" not in line.split(";")[0] and "choose another --results" not in line, line
