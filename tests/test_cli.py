"""The CLI end to end, as a user runs it (real subprocesses)."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from .conftest import BUNDLED, SCENARIOS


def marketsim(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "marketsim.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_run_tiny_end_to_end(tmp_path):
    r = marketsim("run", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Tmall" in r.stdout and "JD" in r.stdout and "change (pp)" in r.stdout
    out = tmp_path / "results" / "tiny"
    for f in ("timeseries.csv", "timeseries.parquet", "flows.csv", "flows.parquet", "summary.json", "shares.png"):
        assert (out / f).stat().st_size > 0, f
    csv, pq = pd.read_csv(out / "timeseries.csv"), pd.read_parquet(out / "timeseries.parquet")
    assert len(pq) == 26 * 3 and list(csv.columns) == list(pq.columns)
    pd.testing.assert_frame_equal(csv, pq, check_dtype=False)
    s = json.loads((out / "summary.json").read_text())
    for k in ("scenario", "scenario_hash", "seed", "consumers", "steps", "version", "share_first", "share_last"):
        assert k in s
    assert s["scenario"] == "tiny" and s["steps"] == 26 and s["consumers"] == 3000
    assert abs(sum(s["share_last"].values()) - 1) < 1e-9
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*tmp"))
    # --json prints the same summary; overrides are reflected
    j = marketsim("run", SCENARIOS / "tiny.yaml", "--json", "--seed", 5, "--consumers", 1000, "--steps", 4,
                  "--out", tmp_path / "o", cwd=tmp_path)
    assert j.returncode == 0, j.stderr
    got = json.loads(j.stdout)
    assert got == json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (got["seed"], got["consumers"], got["steps"]) == (5, 1000, 4)


def test_validate_prints_resolved(tmp_path):
    r = marketsim("validate", SCENARIOS / "battle_lines_2013.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "valid" in r.stdout and "migration_cost: 0.5" in r.stdout


def test_calibrate_command(tmp_path):
    r = marketsim("calibrate", SCENARIOS / "tiny.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cal = json.loads(r.stdout)
    assert max(abs(v) for v in cal["residual_pp"].values()) < 0.2
    assert list((tmp_path / "results" / "calibration").glob("*.json"))
    r2 = marketsim("calibrate", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    assert r2.returncode == 0 and "(cached)" in r2.stderr and "residual" in r2.stdout


@pytest.mark.parametrize("args,needle", [
    (["run", "nowhere.yaml"], "nowhere.yaml: no such file"),
    (["run", SCENARIOS / "tiny.yaml", "--consumers", "0"], "expected a positive integer"),
    (["run", SCENARIOS / "tiny.yaml", "--consumers", "100000000000"], "consumers.count"),
    (["project", SCENARIOS / "tiny.yaml", "--baseline-without", "nope"], "unknown event 'nope'"),
])
def test_errors_are_one_line_exit_2(tmp_path, args, needle):
    r = marketsim(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([l for l in r.stderr.splitlines() if "error" in l]) == 1


def test_bad_field_error_names_file_line_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((SCENARIOS / "baseline_2013q2.yaml").read_text().replace("  shopping_rate: 0.2", "  shopping_rate: -0.2"))
    r = marketsim("run", bad, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.yaml:" in r.stderr and "consumers.shopping_rate: -0.2 is out of range" in r.stderr


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_scenario_runs(tmp_path, path):
    r = marketsim("run", path, "--steps", 3, "--consumers", 2000, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_interrupt_leaves_no_half_written_files(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "marketsim.cli", "run", str(SCENARIOS / "battle_lines_2013.yaml"),
                          "--consumers", "400000", "--out", str(tmp_path / "out")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    leftovers = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert not [f for f in leftovers if f.name.endswith(".tmp")], leftovers
    assert not (tmp_path / "out" / "summary.json").exists()
