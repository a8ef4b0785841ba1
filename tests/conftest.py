from pathlib import Path

import pytest

from tests.helpers import (  # noqa: F401  (re-exported: older tests import them from here)
    BUNDLED,
    ROOT,
    SCENARIOS,
    alive,
    child_pids,
    fit_market_yaml,
    process_state,
    run_process,
    simple_market_yaml,
)


def pytest_addoption(parser, pluginmanager):
    """pyproject.toml's addopts run the suite on 2 pytest-xdist workers (``-n 2 --dist loadgroup``). Where xdist is
    not loaded (``-p no:xdist`` for debugging, or an environment without the ``test`` extra), those two options are
    accepted here and ignored, and the suite runs in this one process."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "distributed testing (pytest-xdist is not loaded: ignored)")
    group._addoption("-n", "--numprocesses", dest="ignored_numprocesses", help="ignored without pytest-xdist")
    group._addoption("--dist", dest="ignored_dist", help="ignored without pytest-xdist")


def pytest_collection_modifyitems(config, items):
    """Under mutmut (docs/testing.md), run a mutant's tests quickest first: mutmut stops at the first failure, so a
    killed mutant then costs its quickest failing test rather than whatever test came first. (mutmut passes the
    tests as an unordered set; it records each test's duration in mutmut-stats.json, in its working folder.)"""
    import json
    import os

    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):  # a mutant's run, not mutmut's own set-up
        return
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


@pytest.fixture
def tiny_path() -> Path:
    return SCENARIOS / "tiny.yaml"


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a real tmpfs (size in bytes) at a fresh folder; skips the test where mounting is not permitted."""
    import subprocess

    mounted = []

    def mount(size: int, *, readonly: bool = False) -> Path:
        d = tmp_path / f"mnt{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture(autouse=True, scope="session")
def shared_fit_cache(tmp_path_factory):
    """One fit cache for the whole session ($MARKETSIM_FIT_CACHE, inherited by the CLI subprocesses): a fit's key
    names everything it depends on, so tests that fit the same scenario share it instead of refitting. Under
    pytest-xdist the workers share one cache too (in the run's temporary folder, above each worker's own): the
    cache is made for concurrent writers (atomic, locked writes of deterministic fits). Tests about the default
    cache location use the ``own_fit_cache`` fixture."""
    import os

    from marketsim.fit.cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the worker's basetemp is <the run's basetemp>/popen-gwN
        cache = tmp_path_factory.getbasetemp().parent / "fit-cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("fit-cache")
    os.environ[CACHE_ENV] = str(cache)
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture
def own_fit_cache(monkeypatch):
    """The default fit cache location (<results>/calibration), for tests about it."""
    from marketsim.fit.cache import CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
