"""Local worker pools: the worker count is capped by the work and the cores; an exception kills the workers at once."""

import os
import time

import pytest

from marketsim.runtime.executor import available_cores, local_executor, worker_count
from tests.helpers import ISHIGAMI, alive, cli

#: worker pools on both cores, and a timing: one such test at a time (pyproject.toml, addopts)
pytestmark = pytest.mark.xdist_group("cores")


# --------------------------------------------------------------------------- 17, 18. processes


def test_worker_count_is_capped_by_work_and_cores(tmp_path):

    cores = available_cores()
    assert worker_count(1000, 2) == min(2, cores) and worker_count(None, 1) == 1 and worker_count(3, 0) == 1
    assert worker_count(1000, 10**6) == cores and worker_count(None, 10**6) == cores
    spec = tmp_path / "two.yaml"
    spec.write_text(ISHIGAMI.replace("size: 12", "size: 2"))
    r = cli("sweep", spec, "--workers", 1000, "--out", tmp_path / "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    n = min(2, cores)
    assert f"sweep ish on {n} local worker{'s' if n > 1 else ''}" in r.stderr, r.stderr


def _sleep(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_local_executor_kills_its_workers_on_an_exception():
    with pytest.raises(KeyboardInterrupt):
        with local_executor(2) as ex:
            futs = [ex.submit(_sleep, 60) for _ in range(4)]
            deadline = time.time() + 30
            while len(ex.worker_pids()) < 2 and time.time() < deadline:
                time.sleep(0.05)
            pids = ex.worker_pids()
            t = time.perf_counter()
            raise KeyboardInterrupt
    assert time.perf_counter() - t < 5 and len(pids) == 2
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]
    # the pool's manager thread resolves the running futures (BrokenProcessPool) once it sees the workers gone:
    # asynchronously, so later on a loaded machine
    deadline = time.time() + 10
    while time.time() < deadline and not all(f.cancelled() or f.done() for f in futs):
        time.sleep(0.05)
    assert all(f.cancelled() or f.done() for f in futs)
