"""Shared test helpers, imported absolutely (``from tests.helpers import ...``) from every test folder.

Two ways to run the command line:

* ``cli(...)`` calls ``marketsim.cli.main([...])`` in this process (no interpreter start-up, no re-import of
  numpy/pandas/mesa): what every CLI test uses unless a real process is the point.
* ``run_process(...)`` runs ``python -m marketsim.cli ...`` as a real subprocess: only for what needs one
  (signals, exit codes of the interpreter, child processes, closed pipes, the browser); those tests live in
  ``tests/e2e``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The bundled scenarios, shipped inside the package (src/marketsim/scenarios/).
SCENARIOS = ROOT / "src" / "marketsim" / "scenarios"
BUNDLED = sorted(p for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("sweep_"))


@dataclass
class Result:
    """What a CLI call returned: the exit code and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args, cwd=None, env: dict | None = None, columns: int = 80) -> Result:
    """``marketsim ARGS`` in this process: ``marketsim.cli.main`` with stdout/stderr captured, run in ``cwd``
    with ``env`` added to the environment (both restored afterwards). ``--help`` and argparse's usage errors
    leave ``main`` by SystemExit; its code is the exit code, as for the ``marketsim`` process. The terminal
    is ``columns`` wide (COLUMNS), as a subprocess writing into a pipe sees it (argparse and rich fall back to
    80 there)."""
    from marketsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    env = {"COLUMNS": str(columns), **(env or {})}
    saved_env = {k: os.environ.get(k) for k in env}
    saved_cwd = os.getcwd()
    try:
        os.environ.update({k: str(v) for k, v in env.items()})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(int(code or 0), out.getvalue(), err.getvalue())


def run_process(*args, cwd, timeout=300, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m marketsim.cli ARGS`` as a user would (a real subprocess, with this checkout first on
    PYTHONPATH). For tests where the process is the point; everything else calls ``cli``."""
    return subprocess.run(
        process_args(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=process_env(env), **popen
    )


def start_process(*args, cwd, env: dict | None = None, **popen) -> subprocess.Popen:
    """``python -m marketsim.cli ARGS`` started and left running (for signals); keyword arguments go to Popen."""
    return subprocess.Popen(process_args(*args), cwd=cwd, env=process_env(env), **popen)


def process_args(*args) -> list[str]:
    return [sys.executable, "-m", "marketsim.cli", *map(str, args)]


def process_env(env: dict | None = None) -> dict:
    """This environment, with the package under test (the folder holding the imported ``marketsim``) first on
    PYTHONPATH and ``env`` added."""
    import marketsim

    here = str(Path(marketsim.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **{k: str(v) for k, v in (env or {}).items()}}


def wait_until(condition, *, timeout: float = 30.0, every: float = 0.02, what: str = "the condition"):
    """Poll ``condition()`` until it returns something true (returned) or ``timeout`` seconds pass (AssertionError):
    waiting on what a test needs, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(every)


def one_line_error(r, *needles, alone=True) -> str:
    """Exit 2 with one error line naming ``needles``; ``alone``: nothing else on stderr (refused before any work)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("marketsim: error: ")]
    assert len(errors) == 1 and (not alone or err.splitlines() == errors), err
    for n in needles:
        assert n in errors[0], (n, err)
    return errors[0]


def simple_market_yaml(**over) -> str:
    """A small market with no habit, social or friction effects unless overridden (closed-form logit)."""
    d = dict(
        n=20000,
        steps=30,
        beta_social=0.0,
        beta_habit=0.0,
        native=0.0,
        sso=0.0,
        link=0.0,
        create=0.0,
        alpha_a=-1.0,
        alpha_b=-0.5,
        price_b=1.0,
        sigma=0.0,
        events="[]",
        rate=0.5,
        warmup=0,
    )
    d.update(over)
    return f"""
schema: marketsim/v1
name: simple
seed: 11
calendar: {{start: 2020-01-06, steps: {d["steps"]}, warmup: {d["warmup"]}}}
market: {{size: 1000000}}
consumers: {{count: {d["n"]}, shopping_rate: {d["rate"]}, basket: {{mean: 100, sigma: {d["sigma"]}}}}}
providers:
  weibo: {{penetration: 0.4, network: {{model: barabasi_albert, m: 3}}, weight: 1.0}}
  qq: {{penetration: 0.9, network: {{model: watts_strogatz, k: 6, rewire: 0.1}}}}
retailers:
  - {{name: A, kind: platform, take_rate: 0.05, attractiveness: {d["alpha_a"]}, initial_share: 0.6, logins: [qq]}}
  - {{name: B, kind: direct, margin: 0.1, attractiveness: {d["alpha_b"]}, initial_share: 0.4, price_index: {d["price_b"]},
      logins: [qq, weibo], sso_share: {{weibo: 0.3, qq: 0.2}}}}
behaviour: {{beta_price: 2.0, beta_social: {d["beta_social"]}, beta_habit: {d["beta_habit"]}, beta_friction: 1.0}}
friction: {{native: {d["native"]}, sso: {d["sso"]}, link: {d["link"]}, create: {d["create"]}}}
events: {d["events"]}
"""


def fit_market_yaml(
    observations: str,
    *,
    n=5000,
    turnover=0.02,
    alpha=("calibrate",) * 3,
    trend=(0, 0, 0),
    beta_social=0.5,
    beta_habit=1.0,
    create=1.0,
    conversion=0.6,
    extra="",
) -> str:
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


def process_state(pid: int) -> str | None:
    """The state letter of a process from /proc (R, S, D, Z, ...), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: every process whose parent it is)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                kids.append(int(d))
    return kids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) that process ``pid`` has used so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie is dead: it only waits to be reaped)."""
    return process_state(pid) not in (None, "Z", "X")


# --------------------------------------------------------------------------- small runs and sweeps


#: The files of a run's result set, and a run small enough for a second.
RUN_FILES = (
    "timeseries.csv",
    "timeseries.parquet",
    "flows.csv",
    "flows.parquet",
    "summary.json",
    "shares.png",
    "shares.svg",
)


SMALL_RUN = ("--consumers", 1000, "--steps", 4)


def tiny_seeded(folder: Path, seed: int) -> Path:
    """tiny.yaml with the seed in the file, not on the command line: a result of another seed may then replace
    it in the same --out (a result of other command-line settings is refused)."""
    f = folder / f"tiny_s{seed}.yaml"
    f.write_text(f"schema: marketsim/v2\nbase: {SCENARIOS / 'tiny.yaml'}\nname: tiny\nseed: {seed}\n")
    return f


#: A small sweep of tiny.yaml (8 runs), and a sweep of the Ishigami function (12 runs, no market), for tests of
#: sweep specs and sweep folders.
SWEEP = f"""
schema: marketsim-sweep/v1
name: hard
base: {SCENARIOS / "tiny.yaml"}
seed: 7
consumers: 600
steps: 6
replicates: 2
design: {{method: grid, size: 2}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}}
  - {{path: friction.create, range: [0.5, 3.0]}}
outputs: [gmv_share.JD]
batch_runs: 2
"""


ISHIGAMI = """
schema: marketsim-sweep/v1
name: ish
model: ishigami
seed: 3
design: {method: lhs, size: 12}
parameters:
  - {path: x1, range: [-3.14, 3.14]}
  - {path: x2, range: [-3.14, 3.14]}
  - {path: x3, range: [-3.14, 3.14]}
batch_runs: 3
"""


def ishigami_sweep(tmp_path, text=ISHIGAMI):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec = tmp_path / "ish.yaml"
    spec.write_text(text)
    out = tmp_path / "ish"
    run_sweep(load_sweep(spec), out, None)
    return spec, out


#: A small market with every move that changes who is in it: Suning enters (step 3), JD buys Yihaodian (step 6,
#: 60% of its customers retained; Yihaodian closes), Dangdang leaves (step 10), and Tmall's yearly sale
#: (11 November, 3 days) fires twice within the 100 weekly steps. Every attractiveness is given: no fit.
MOVES_YAML = """
schema: marketsim/v2
name: moves
seed: 7
calendar: {start: 2013-01-07, step_days: 7, steps: 100}
market: {size: 200000000}
consumers: {count: 3000, shopping_rate: 0.5, basket: {mean: 100, sigma: 0.5}}
providers:
  qq: {penetration: 0.6, network: {model: watts_strogatz, k: 6, rewire: 0.1}, weight: 1.0}
retailers:
  - {name: Tmall, kind: platform, take_rate: 0.05, attractiveness: -0.2, initial_share: 0.5, logins: [qq]}
  - {name: JD, kind: direct, margin: 0.1, attractiveness: -0.5, initial_share: 0.25, logins: [qq]}
  - {name: Yihaodian, kind: direct, margin: 0.1, attractiveness: -0.9, initial_share: 0.15, logins: [qq]}
  - {name: Dangdang, kind: direct, margin: 0.1, attractiveness: -1.0, initial_share: 0.1, logins: []}
  - {name: Suning, kind: direct, margin: 0.1, attractiveness: -0.6, initial_share: 0, enters_later: true,
     logins: [qq]}
behaviour: {beta_price: 2.0, beta_social: 0.3, beta_habit: 1.0, beta_friction: 1.0}
friction: {native: 0.2, sso: 0.0, link: 0.3, create: 1.0}
events:
  - {id: singles_day, type: promotion, date: 2013-11-11, retailer: Tmall, utility: 0.5, every: year, days: 3}
  - {id: suning_enters, type: entry, date: 2013-01-28, retailer: Suning}
  - {id: jd_buys_yhd, type: acquisition, date: 2013-02-18, acquirer: JD, target: Yihaodian, retention: 0.6}
  - {id: dangdang_leaves, type: exit, date: 2013-03-18, retailer: Dangdang}
"""


def slide_to_end(slider, key: str, shown, tries: int = 3, timeout: int = 10_000) -> None:
    """Press ``key`` (``Home`` or ``End``) on a live-page slider until ``shown`` (a locator: the value label the
    slider should then show) is visible. On a loaded machine the page may still be wiring the slider when the first
    key arrives and drop it; pressing Home or End again on a slider already there changes nothing, so a retry is
    safe. Raises the last wait's timeout if the label never shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        # sliders are disabled while the page builds a model (the fit can take long on a loaded machine)
        slider.page.locator("#marketsim-busy").wait_for(state="detached", timeout=120_000)
        slider.focus()
        slider.press(key)
        try:
            shown.wait_for(timeout=timeout)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
