"""Stale temporary files: those of a writer that is gone are removed; a live writer's (it holds the lock) and files
marketsim did not write are kept, in a result folder, the fit cache and a sweep folder."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import SCENARIOS, SMALL_RUN, cli, ishigami_sweep


def _hold_lock(path: Path) -> subprocess.Popen:
    """A live process holding an exclusive flock on ``path``, as a writer in atomic_path does."""
    h = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert h.stdout.readline().strip() == "held"
    return h


def test_stale_temp_files_are_removed_live_and_foreign_ones_kept(tmp_path, own_fit_cache):
    dead_pid = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )  # a process that has exited
    folders = {"result": tmp_path / "R", "cache": tmp_path / "results" / "calibration", "sweep": tmp_path / "ish"}
    r = cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", folders["result"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec, _ = ishigami_sweep(tmp_path)
    planted, holders = {}, []
    try:
        for kind, d in folders.items():
            stale = d / f".summary.json.{dead_pid}-abcdefgh.tmp"  # its writer is gone and holds no lock
            live = d / f".summary.json.{dead_pid}-livelive.tmp"  # its writer (in another pid namespace?) holds the lock
            mine = d / ".notes.tmp"  # not marketsim's pattern
            for f in (stale, live, mine):
                f.write_text("x")
            holders.append(_hold_lock(live))
            planted[kind] = (stale, live, mine)
        r = cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", folders["result"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = cli("sweep", spec, "--out", folders["sweep"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        for kind, (stale, live, mine) in planted.items():
            assert not stale.exists(), f"{kind}: stale temporary file kept"
            assert live.exists(), f"{kind}: a live writer's file was removed"
            assert mine.read_text() == "x", f"{kind}: a file marketsim did not write was touched"
    finally:
        for h in holders:
            h.kill()
            h.wait()
