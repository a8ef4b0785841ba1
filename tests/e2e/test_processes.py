"""Inputs whose test needs a real ``marketsim`` process: a reader that closes the pipe (exit 141, no traceback,
not even at interpreter exit) and a market too large for memory under a real address-space limit (moved from
tests/cli/test_hostile_inputs.py, whose other cases run in process)."""

import subprocess
import sys
import time

import pytest

from tests.helpers import SCENARIOS, process_env, simple_market_yaml


def test_closed_pipe_is_a_quiet_exit(tmp_path):
    """``marketsim validate X | head -1``: the reader closes the pipe; marketsim stops quietly (no traceback,
    not even Python's 'Exception ignored' at exit), as Unix tools do: exit 141 (128 + SIGPIPE)."""
    env = process_env()
    battle = str(SCENARIOS / "battle_lines_2013.yaml")
    r = subprocess.run(
        f"{sys.executable} -m marketsim validate {battle} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert len(r.stdout.splitlines()) == 1 and "valid" in r.stdout and r.stderr == "", r.stderr
    # the reader is gone before marketsim writes a byte (closed while it starts): every write fails
    for args in (["validate", battle], ["schema"]):
        p = subprocess.Popen(
            [sys.executable, "-m", "marketsim", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env,
        )
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == "", err


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_a_market_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path):
    """10^7 consumers on layers of m = 100 and k = 200 ties need ~45 GB: refused at once, in one line naming
    consumers.count (file and line), the network fields and the estimate against the memory available, instead of
    a MemoryError after allocating gigabytes (or the kernel's OOM killer). A real process, with its address space
    limited to 4 GB, so that a regression fails with a MemoryError rather than exhausting the machine."""
    big = tmp_path / "big.yaml"
    big.write_text(
        simple_market_yaml(n=10_000_000)
        .replace("{model: barabasi_albert, m: 3}", "{model: barabasi_albert, m: 100}")
        .replace("{model: watts_strogatz, k: 6,", "{model: watts_strogatz, k: 200,")
    )
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
        "from marketsim.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = process_env({"OPENBLAS_NUM_THREADS": "1", "MARKETSIM_FIT_CACHE": tmp_path / "fits"})
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", code, "run", str(big), "--results", str(tmp_path / "r"), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    took = time.perf_counter() - t0
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    msg = r.stderr.strip()
    line = next(i for i, s in enumerate(big.read_text().splitlines(), 1) if s.lstrip().startswith("consumers:"))
    assert f"big.yaml:{line}: consumers.count: 10,000,000 consumers need about " in msg, msg
    assert "providers.weibo.network.m" in msg and "providers.qq.network.k" in msg, msg
    gb = [float(x.replace(",", "")) for x in __import__("re").findall(r"([\d,.]+) GB", msg)]
    assert len(gb) == 2 and gb[0] > 40 and gb[1] < 4.5 and gb[0] > gb[1], msg  # needed vs available (the 4 GB limit)
    assert took < 60 and not (tmp_path / "r" / "simple").exists()

    # the estimate itself: no allocation, no random numbers, and above the real peak of a small market
    import tracemalloc

    import numpy as np

    from marketsim.engine.market import Market
    from marketsim.engine.population import build_world, memory_estimate
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(SCENARIOS / "tiny.yaml").with_overrides(consumers=50_000)
    small = sc.with_overrides(consumers=1_000)  # compiled first (numba's own memory is not the market's)
    Market(small, build_world(small), np.zeros(len(sc.retailers)), 1, settle=False).step()
    tracemalloc.start()
    est = memory_estimate(sc)
    assert tracemalloc.get_traced_memory()[1] < 100_000
    tracemalloc.reset_peak()
    m = Market(sc, build_world(sc), np.zeros(len(sc.retailers)), 1, settle=False)
    m.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < est.total < 3 * peak, (peak, est.total)
