from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The bundled scenarios, shipped inside the package (src/marketsim/scenarios/).
SCENARIOS = ROOT / "src" / "marketsim" / "scenarios"
BUNDLED = sorted(p for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("sweep_"))


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


def simple_market_yaml(**over) -> str:
    """A small market with no habit, social or friction effects unless overridden (closed-form logit)."""
    d = dict(n=20000, steps=30, beta_social=0.0, beta_habit=0.0, native=0.0, sso=0.0, link=0.0, create=0.0,
             alpha_a=-1.0, alpha_b=-0.5, price_b=1.0, sigma=0.0, events="[]", rate=0.5, warmup=0)
    d.update(over)
    return f"""
schema: marketsim/v1
name: simple
seed: 11
calendar: {{start: 2020-01-06, steps: {d['steps']}, warmup: {d['warmup']}}}
market: {{size: 1000000}}
consumers: {{count: {d['n']}, shopping_rate: {d['rate']}, basket: {{mean: 100, sigma: {d['sigma']}}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.9, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: {d['alpha_a']}, initial_share: 0.6, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: {d['alpha_b']}, initial_share: 0.4, price_index: {d['price_b']},
      logins: [qq, weibo], sso_share: {{weibo: 0.3, qq: 0.2}}}}
behaviour: {{beta_price: 2.0, beta_social: {d['beta_social']}, beta_habit: {d['beta_habit']}, beta_friction: 1.0}}
friction: {{native: {d['native']}, sso: {d['sso']}, link: {d['link']}, create: {d['create']}}}
events: {d['events']}
"""


def fit_market_yaml(observations: str, *, n=5000, turnover=0.02, alpha=("calibrate",) * 3, trend=(0, 0, 0),
                    beta_social=0.5, beta_habit=1.0, create=1.0, conversion=0.6, extra="") -> str:
    """A small market on monthly steps (cheap to fit: 24 steps cover two years), three retailers A (platform),
    B and C (direct), with turnover (so a burn-in pilot runs) and the given ``observations`` block."""
    a, t = alpha, trend
    return f"""
schema: marketsim/v2
name: fitmarket
seed: 5
calendar: {{start: 2012-01-01, step_days: 30, steps: 24, warmup: 3}}
market: {{size: 1000000}}
consumers: {{count: {n}, shopping_rate: 0.5, conversion: {conversion}, turnover: {turnover}, basket: {{mean: 100, sigma: 0.5}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.9, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: {a[0]}, trend: {t[0]}, initial_share: 0.5, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: {a[1]}, trend: {t[1]}, initial_share: 0.3,
      logins: [qq, weibo], sso_share: {{weibo: 0.3, qq: 0.2}}}}
  - {{name: C, kind: direct, margin: 0.1, attractiveness: {a[2]}, trend: {t[2]}, initial_share: 0.2, logins: []}}
behaviour: {{beta_price: 2.0, beta_social: {beta_social}, beta_habit: {beta_habit}, beta_friction: 1.0}}
friction: {{native: 0.2, sso: 0.0, link: 0.3, create: {create}}}
{extra}
{observations}
"""


def marketsim_cli(*args, cwd, timeout=300, env=None):
    """Run ``python -m marketsim.cli ARGS`` as a user would (a real subprocess)."""
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "marketsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=None if env is None else {**os.environ, **env})


def process_state(pid: int) -> str | None:
    """The state letter of a process from /proc (R, S, D, Z, ...), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(b")") + 2:].split()[0].decode()


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: every process whose parent it is)."""
    import os

    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2:].split()[1]) == pid:
                kids.append(int(d))
    return kids


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie is dead: it only waits to be reaped)."""
    return process_state(pid) not in (None, "Z", "X")


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
    names everything it depends on, so tests that fit the same scenario share it instead of refitting. Tests
    about the default cache location use the ``own_fit_cache`` fixture."""
    import os

    from marketsim.fit.cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("fit-cache"))
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
