"""Real signals on real processes: a run killed (SIGKILL) or interrupted (Ctrl-C) at each point of writing its
result set leaves the old set or the new one, never a mix; an interrupted run leaves no half-written file; a killed
or twice-interrupted sweep leaves no worker process and no damaged part."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketsim.io import dataset, store
from tests.helpers import (
    RUN_FILES,
    SCENARIOS,
    SMALL_RUN,
    SWEEP,
    alive,
    child_pids,
    cli,
    cpu_seconds,
    start_process,
    tiny_seeded,
    wait_until,
)

# --------------------------------------------------------------------------- a killed run: the old result set or the new one


@pytest.fixture(scope="module")
def run_refs(tmp_path_factory):
    """Complete result sets of the same small run for seeds 1 and 2 (to compare killed folders with)."""
    root = tmp_path_factory.mktemp("refs")
    refs = {}
    for seed in (1, 2):
        r = cli("run", tiny_seeded(root, seed), *SMALL_RUN, "--out", root / f"s{seed}", cwd=root)
        assert r.returncode == 0, r.stderr
        refs[seed] = {f: (root / f"s{seed}" / f).read_bytes() for f in RUN_FILES}
    assert refs[1]["timeseries.csv"] != refs[2]["timeseries.csv"]
    return root, refs


def _the_set_in(out: Path, refs: dict) -> int:
    """The seed of the result set in ``out``, after checking that every file belongs to that one run."""
    seed = json.loads((out / "summary.json").read_text())["seed"]
    for f in RUN_FILES:
        assert (out / f).read_bytes() == refs[seed][f], f"{f} is not from the seed-{seed} run: a mixed result set"
    marker = json.loads((out / ".marketsim.json").read_text())
    assert marker["kind"] == "run" and marker["writer"] == "marketsim run" and marker["version"]
    return seed


def _start_paused(args, cwd, point, seconds):
    p = start_process(
        *args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"MARKETSIM_TEST_PAUSE": f"{point}@{seconds}"},
    )
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stderr.readline()
        seen.append(line)
        if line.strip() == f"marketsim-test-pause {point}":
            return p
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"the writer never reached {point!r}: {''.join(seen)[-2000:]}")


@pytest.mark.parametrize(
    "sig,point,expect",
    [
        (signal.SIGKILL, "wrote timeseries.csv", 1),  # once left a mix: first file renamed into place, then killed
        (signal.SIGKILL, "wrote shares.png", 1),
        (signal.SIGKILL, "wrote .marketsim.json", 1),  # every file written, nothing swapped yet
        (signal.SIGKILL, "before swap", 1),  # new per-file links made, `current` not yet replaced
        (signal.SIGKILL, "after swap", 2),  # swapped; the old set not yet removed
        (signal.SIGINT, "wrote timeseries.csv", 1),  # Ctrl-C while writing: nothing changes
        (signal.SIGINT, "before swap", 2),  # Ctrl-C during the commit: held back, the commit completes
    ],
    ids=lambda x: getattr(x, "name", str(x).replace(" ", "_")),
)
def test_killed_run_leaves_old_set_or_new_set(tmp_path, run_refs, sig, point, expect):
    root, refs = run_refs
    out = tmp_path / "R"
    shutil.copytree(root / "s1", out, symlinks=True)  # a seed-1 result set...
    (out / "notes.txt").write_text("my notes\n")  # ...with a user's file and a folder marketsim did not write
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("a,b\n1,2\n")
    assert _the_set_in(out, refs) == 1
    # the writer pauses there (long enough to be signalled; a Ctrl-C held back during the commit waits it out)
    p = _start_paused(
        ["run", tiny_seeded(root, 2), *SMALL_RUN, "--out", out],
        root,
        point,
        2 if (sig, point) == (signal.SIGINT, "before swap") else 30,
    )
    os.kill(p.pid, sig)
    _, err = p.communicate(timeout=60)
    assert _the_set_in(out, refs) == expect
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "mine" / "data.csv").read_text() == "a,b\n1,2\n"
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "Traceback" not in err
        said = [line for line in err.splitlines() if line.startswith("marketsim:")]
        assert said == (
            ["marketsim: interrupted; no result set was changed"]
            if expect == 1
            else [f"marketsim: interrupted after {out} was written completely; nothing else was changed"]
        ), err
    # the next run into the same place cleans up what the killed one left, and keeps the user's files
    r = cli("run", tiny_seeded(root, 2), *SMALL_RUN, "--out", out, cwd=root)
    assert r.returncode == 0, r.stderr
    assert _the_set_in(out, refs) == 2
    assert sorted(os.listdir(out / store.HIDDEN)) == ["lock", "write.lock"]  # no staged set, no journal left
    assert sorted(os.listdir(out)) == sorted([*RUN_FILES, ".marketsim.json", store.HIDDEN, "notes.txt", "mine"])
    assert not any((out / f).is_symlink() for f in os.listdir(out))  # real files: a zip or copy keeps them


KILL_SWEEP = (
    SWEEP.replace("design: {method: grid, size: 2}", "design: {method: lhs, size: 40}")
    .replace("consumers: 600", "consumers: 60000")
    .replace("steps: 6", "steps: 40")
)


def _sweep_with_workers(tmp_path):
    spec = tmp_path / "k.yaml"
    spec.write_text(KILL_SWEEP)
    out = tmp_path / "k"
    p = start_process(
        "sweep",
        spec,
        "--workers",
        2,
        "--out",
        out,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: dataset.part_files(out) or p.poll() is not None, timeout=180, what="a stored part")
    workers = [k for k in child_pids(p.pid) if alive(k)]
    assert dataset.part_files(out) and p.poll() is None, "the sweep must be running, with a part stored"
    return p, out, workers


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_sweep_leaves_no_worker(tmp_path, sig):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores for 2 workers")
    p, out, workers = _sweep_with_workers(tmp_path)
    assert len(workers) == 2, workers
    p.send_signal(sig)
    p.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "orphaned workers"
    assert dataset.scan(out).bad == {} and dataset.scan(out).good


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
@pytest.mark.slow
def test_ctrl_c_twice_stops_a_sweep_promptly(tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores for 2 workers")
    p, out, workers = _sweep_with_workers(tmp_path)
    t = time.perf_counter()
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and time.perf_counter() - t < 5, (p.returncode, err)
    assert "Traceback" not in err and "Exception" not in err, err
    said = [line for line in err.splitlines() if line.startswith("marketsim:")]
    stored = dataset.stored_run_ids(out)
    assert said == [
        f"marketsim: interrupted; {len(stored)} of 80 runs are stored in {out}; run the same command again to resume"
    ], err
    assert dataset.scan(out).bad == {} and 0 < len(stored) < 80
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "orphaned workers"


def test_interrupt_leaves_no_half_written_files(tmp_path):
    p = start_process(
        "run",
        SCENARIOS / "battle_lines_2013.yaml",
        "--consumers",
        400000,
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # interrupted in the middle of the work: once it has used 3 s of CPU (imports take about 1 s; the fit or the
    # simulation of 400,000 consumers many more), however loaded the machine is
    wait_until(lambda: cpu_seconds(p.pid) > 3 or p.poll() is not None, timeout=120, what="3 s of work")
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    leftovers = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert not [f for f in leftovers if f.name.endswith(".tmp")], leftovers
    assert not (tmp_path / "out" / "summary.json").exists()
