"""Output locations: every bad --out/--results is one line before any work; a read-only or full disk is one line and
leaves earlier results intact; brackets in paths print as they are (user text is never markup)."""

import os
import shutil
import time

import pytest

from marketsim.io import dataset, store
from tests.helpers import ISHIGAMI, RUN_FILES, SCENARIOS, SMALL_RUN, SWEEP, cli, one_line_error, tiny_seeded

# --------------------------------------------------------------------------- 10. output locations


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_bad_output_locations_are_one_line_before_any_work(tmp_path, own_fit_cache):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    big = ("--consumers", 5_000_000)  # minutes of simulation, if the check came after it
    cases = [
        (
            ["run", SCENARIOS / "tiny.yaml", *big, "--out", a_file],
            f"{a_file}: is a file, not a folder; choose a folder for --out",
        ),
        (
            ["run", SCENARIOS / "tiny.yaml", *big, "--out", a_file / "sub"],
            f"{a_file / 'sub'}: is under a file, not a folder",
        ),
        (["run", SCENARIOS / "tiny.yaml", *big, "--results", a_file], f"{a_file / 'calibration'}: is under a file"),
        (
            ["calibrate", SCENARIOS / "tiny.yaml", "--results", a_file / "x"],
            f"{a_file / 'x' / 'calibration'}: is under a file",
        ),
        (["sweep", SCENARIOS / "sweep_weibo_login.yaml", "--out", a_file], f"{a_file}: is a file, not a folder"),
    ]
    for args, needle in cases:
        t = time.perf_counter()
        one_line_error(cli(*args, cwd=tmp_path), needle)
        assert time.perf_counter() - t < 30
    assert a_file.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["a_file"]


def test_read_only_and_full_disk(tmp_path, tmpfs):
    ro = tmpfs(1 << 20, readonly=True)
    r = cli("run", SCENARIOS / "tiny.yaml", "--consumers", 5_000_000, "--out", ro / "r", cwd=tmp_path)
    one_line_error(r, f"{ro / 'r'}: cannot write in {ro} (read-only file system)")
    full = tmpfs(1 << 20)
    (full / "filler").write_bytes(b"\0" * ((1 << 20) - 32 * 1024))  # 32 KB left: less than the preflight's probe
    r = cli("run", SCENARIOS / "tiny.yaml", "--consumers", 5_000_000, "--out", full / "r", cwd=tmp_path)
    one_line_error(r, f"{full / 'r'}: cannot write in {full} (no space left on device)")
    assert sorted(os.listdir(full)) == ["filler"]
    # full in the middle of writing the set: one line, and the earlier set is untouched, nothing partial remains
    (full / "filler").unlink()
    out = full / "r"
    r = cli("run", tiny_seeded(tmp_path, 1), "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    before = {f: (out / f).read_bytes() for f in RUN_FILES}
    room = shutil.disk_usage(full).free
    (full / "filler").write_bytes(b"\0" * (room - 96 * 1024))  # the 64 KB probe fits, the new set (~140 KB) does not
    r = cli("run", tiny_seeded(tmp_path, 2), "--out", out, cwd=tmp_path)
    one_line_error(
        r, f"{out}: no space left on device while writing the result set", "no result set was changed", alone=False
    )
    assert {f: (out / f).read_bytes() for f in RUN_FILES} == before
    assert sorted(os.listdir(out / store.HIDDEN)) == ["lock", "write.lock"]  # the partial set's staging is gone
    # a sweep on a full disk: one line, the parts stored before are intact
    (full / "filler").unlink()
    spec = tmp_path / "s.yaml"
    spec.write_text(
        SWEEP.replace("design: {method: grid, size: 2}", "design: {method: lhs, size: 400}")
        .replace("replicates: 2", "replicates: 1")
        .replace("batch_runs: 2", "batch_runs: 4")
        .replace("consumers: 600", "consumers: 100")
        .replace("steps: 6", "steps: 2")
    )
    (full / "filler").write_bytes(b"\0" * (shutil.disk_usage(full).free - 120 * 1024))
    r = cli("sweep", spec, "--workers", 1, "--out", full / "sw", cwd=tmp_path)
    one_line_error(
        r, f"{full / 'sw'}: no space left on device while storing", "the parts stored before are intact", alone=False
    )
    kept = dataset.scan(full / "sw")
    assert kept.bad == {} and 0 < len(kept.run_ids) < 400 and not list((full / "sw").glob(".*.tmp"))


# --------------------------------------------------------------------------- 11. user text is never markup


@pytest.mark.parametrize("name", ["r_[red]x", "r_[/]y", "r_[bold]z[/bold]"])
def test_brackets_in_paths_are_printed_as_they_are(tmp_path, name):
    r = cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", tmp_path / name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / name}/" in r.stdout.replace("\n", "") and (tmp_path / name / "summary.json").is_file()
    spec = tmp_path / "s.yaml"
    spec.write_text(ISHIGAMI)
    r = cli("sweep", spec, "--workers", 1, "--out", tmp_path / f"sw{name}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"runs in {tmp_path / f'sw{name}'}/ (part-*.parquet" in r.stderr
