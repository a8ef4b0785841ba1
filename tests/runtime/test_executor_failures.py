"""Where the parallel work runs fails (hostile conditions that used to end in a traceback or a hang): a
--scheduler address that cannot work, a Dask cluster without workers (none at the start, or all dead mid-run), a
local worker process killed (as by the out-of-memory killer). Each is one line on stderr and exit 2, never a
traceback or a hang; a sweep keeps the runs it finished and says how to continue from them."""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from marketsim.cli import main
from marketsim.errors import UserError
from marketsim.experiments.sweep.runner import _run_batch as real_run_batch
from marketsim.experiments.tasks import map_jobs
from marketsim.io import dataset
from marketsim.runtime import executor
from marketsim.runtime.executor import available_cores, local_executor
from tests.helpers import ROOT, SCENARIOS

#: Dask clusters and worker pools on both cores: one such test at a time (pyproject.toml, addopts)
pytestmark = pytest.mark.xdist_group("cores")

SWEEP = f"""
schema: marketsim-sweep/v1
name: fails
base: {SCENARIOS / "tiny.yaml"}
seed: 7
consumers: 600
steps: 12
replicates: 2
design: {{method: lhs, size: 16}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}}
outputs: [gmv_share.JD]
record_every: 4
batch_runs: 1
"""
RUNS = 32


class Hung(AssertionError):
    pass


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail (instead of hanging forever) if the block takes more than ``seconds`` (SIGALRM, main thread)."""

    def expire(signum, frame):
        raise Hung(f"{what}: still running after {seconds} s (it hangs)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_error_line(err: str) -> str:
    """The single `marketsim: error:` line of ``err`` (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("marketsim: error:")]
    assert len(lines) == 1, err
    return lines[0]


def sweep_spec(tmp_path):
    spec = tmp_path / "fails.yaml"
    spec.write_text(SWEEP)
    return spec


def test_scheduler_addresses_that_cannot_work_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = sweep_spec(tmp_path)
    import importlib.util

    ucx = any(importlib.util.find_spec(m) for m in ("distributed_ucxx", "ucp"))
    cases = {
        "tls://127.0.0.1:8786": "tls:// needs a TLS configuration",  # TypeError before
        "wss://127.0.0.1:8786": "wss:// needs a TLS configuration",
        "inproc://10.0.0.1/1/1": "reachable only inside the process",
        "http://127.0.0.1:8786": "unknown scheme 'http://'",
        "tcp://a:b:c": "not HOST:PORT",
        "127.0.0.1": "not HOST:PORT",
        "tcp://127.0.0.1:99999": "port 99999 is not in 1-65535",
    }
    if not ucx:
        cases["ucx://127.0.0.1:8786"] = "ucx:// needs UCX support"  # TypeError before
    for address, said in cases.items():
        with deadline(30, address):
            rc = main(["sweep", str(spec), "--scheduler", address, "--out", str(tmp_path / "o")])
        line = one_error_line(capsys.readouterr().err)
        assert rc == 2 and said in line and "tcp://" in line, (address, line)
    assert not (tmp_path / "o").exists()


def _start_worker(address: str) -> subprocess.Popen:
    """A Dask worker process (no nanny: killed, it stays dead) for the scheduler at ``address``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def test_dask_cluster_without_workers_stops_with_one_line(tmp_path, monkeypatch, capsys):
    from distributed import Client, LocalCluster

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(executor, "NO_WORKER_SECONDS", 2.0, raising=False)  # raising: absent before
    spec, out = sweep_spec(tmp_path), tmp_path / "out"
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        # no worker at all: a notice, then one line (before: waited forever)
        with deadline(30, "a sweep on a scheduler without workers"):
            rc = main(["sweep", str(spec), "--scheduler", address, "--out", str(out)])
        err = capsys.readouterr().err
        line = one_error_line(err)
        assert rc == 2 and f"waiting for a Dask worker at {address}" in err, err
        assert f"no Dask worker joined the scheduler at {address} within 2 s" in line and "dask worker" in line, line
        assert not dataset.part_files(out)
        # its only worker dies mid-run: one line, the finished runs are kept (before: waited forever)
        worker = _start_worker(address)
        try:
            with Client(address, timeout="30s") as c:
                c.wait_for_workers(1, timeout=60)

            def kill_after_first_part():
                end = time.time() + 60
                while time.time() < end and not dataset.part_files(out):
                    time.sleep(0.02)
                worker.kill()

            threading.Thread(target=kill_after_first_part, daemon=True).start()
            with deadline(90, "a sweep whose workers all died"):
                rc = main(["sweep", str(spec), "--scheduler", address, "--out", str(out)])
        finally:
            worker.kill()
            worker.wait()
        line = one_error_line(capsys.readouterr().err)
        stored = len(dataset.stored_run_ids(out))
        assert rc == 2 and 0 < stored < RUNS, (rc, stored, line)
        assert f"the Dask scheduler at {address} has had no worker for 2 s" in line, line
        assert f"{stored} of {RUNS} runs are stored in {out}" in line and "--resume" in line, line
        assert dataset.scan(out).bad == {}


def _die(*args):
    """Kill the worker process running this, as the out-of-memory killer does (never the test process)."""
    if multiprocessing.parent_process() is None:
        raise RuntimeError("not in a worker process")
    os.kill(os.getpid(), signal.SIGKILL)


def _batch_or_die(sweep, alpha, batch):
    """The sweep's batch, except that the worker running the last run dies."""
    if any(t.run_id == RUNS - 1 for t in batch):
        _die()
    return real_run_batch(sweep, alpha, batch)


def test_killed_local_worker_is_one_line_and_a_sweep_resumes(tmp_path, monkeypatch, capsys):
    # the mapping shared by project, fit and backtest
    with deadline(60, "a local pool whose worker was killed"):
        with pytest.raises(UserError) as e:
            with local_executor(2) as ex:
                map_jobs(ex, _die, [(1,), (2,), (3,)], "fits", None)
    said = str(e.value)
    assert "worker process was killed by signal 9 (SIGKILL" in said and "out-of-memory" in said, said
    assert "try fewer --workers or fewer consumers" in said, said
    # a sweep: one line, the finished runs stored, and resuming completes it
    if available_cores() < 2:
        pytest.skip("needs 2 cores for 2 local workers")
    monkeypatch.chdir(tmp_path)
    spec, out = sweep_spec(tmp_path), tmp_path / "out"
    monkeypatch.setattr("marketsim.experiments.sweep.runner._run_batch", _batch_or_die)
    with deadline(120, "a sweep whose worker was killed"):
        rc = main(["sweep", str(spec), "--workers", "2", "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    stored = len(dataset.stored_run_ids(out))
    assert rc == 2 and 0 < stored < RUNS, (rc, stored, line)
    assert "killed by signal 9 (SIGKILL" in line and f"{stored} of {RUNS} runs are stored in {out}" in line, line
    assert "--resume" in line, line
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    with deadline(120, "resuming"):
        rc = main(["sweep", str(spec), "--resume", "--workers", "1", "--out", str(out)])
    assert rc == 0 and dataset.stored_run_ids(out) == set(range(RUNS)), capsys.readouterr().err
