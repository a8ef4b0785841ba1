"""The CLI end to end, as a user runs it: ``marketsim.cli.main`` in this process (tests/helpers.py ``cli``); an
interrupted run, where the process is the point, is in tests/e2e/test_signals.py."""

import json
import time

import pandas as pd
import pytest

from tests.helpers import BUNDLED, RUN_FILES, SCENARIOS, cli


def marketsim(*args, cwd):
    return cli(*args, cwd=cwd)


def test_run_tiny_end_to_end(tmp_path):
    r = marketsim("run", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Tmall" in r.stdout and "JD" in r.stdout and "change pp" in r.stdout
    out = tmp_path / "results" / "tiny"
    for f in RUN_FILES:
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
    j = marketsim(
        "run",
        SCENARIOS / "tiny.yaml",
        "--json",
        "--seed",
        4,  # seeds 5 (login-mix rule) and 6 (before it) land on a fit that 5,000 consumers cannot resolve
        "--consumers",
        1000,
        "--steps",
        4,
        "--out",
        tmp_path / "o",
        cwd=tmp_path,
    )
    assert j.returncode == 0, j.stderr
    got = json.loads(j.stdout)
    assert got == json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (got["seed"], got["consumers"], got["steps"]) == (4, 1000, 4)


def test_validate_prints_resolved(tmp_path):
    r = marketsim("validate", SCENARIOS / "battle_lines_2013.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "valid" in r.stdout and "migration_cost: 0.5" in r.stdout


def test_calibrate_command(tmp_path, own_fit_cache):
    r = marketsim("calibrate", SCENARIOS / "tiny.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cal = json.loads(r.stdout)
    for k in (
        "primary_source",
        "observations",
        "alpha",
        "trend",
        "offsets",
        "conversion_residual_pp",
        "dof",
        "iterations",
    ):
        assert k in cal, k
    assert cal["dof"] == 0 and {o["retailer"] for o in cal["observations"]} == {"Tmall", "JD", "Other"}
    for o in cal["observations"]:
        assert set(o) >= {"source", "period", "retailer", "observed", "simulated", "residual_pp"}
        assert abs(o["residual_pp"]) < cal["tol_pp"] and abs(o["simulated"] - o["observed"] - o["residual_pp"]) < 1e-9
    assert list((tmp_path / "results" / "calibration").glob("*.json"))
    assert (tmp_path / "results" / "tiny" / "calibration" / "fit.png").stat().st_size > 0
    r2 = marketsim("calibrate", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    assert r2.returncode == 0 and "(cached)" in r2.stderr and "residual" in r2.stdout
    assert "; tolerance 0.424 pp;" in " ".join(r2.stdout.split())  # 30 / sqrt(5,000), not 17 digits of it


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "nowhere.yaml"], "nowhere.yaml: no such file"),
        (["run", SCENARIOS / "tiny.yaml", "--consumers", "0"], "expected a positive integer"),
        (["run", SCENARIOS / "tiny.yaml", "--consumers", "100000000000"], "consumers.count"),
        (["project", SCENARIOS / "tiny.yaml", "--baseline-without", "nope"], "unknown event 'nope'"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, args, needle):
    r = marketsim(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1


def test_bad_field_error_names_file_line_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SCENARIOS / "baseline_2013q2.yaml").read_text().replace("  shopping_rate: 0.2", "  shopping_rate: -0.2")
    )
    r = marketsim("run", bad, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.yaml:" in r.stderr and "consumers.shopping_rate: -0.2 is out of range" in r.stderr


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_scenario_runs(tmp_path, path):
    r = marketsim("run", path, "--steps", 3, "--consumers", 2000, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- help, and output at 80 columns


def _subcommands():
    import argparse

    from marketsim.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _width(line: str) -> int:
    from rich.cells import cell_len

    return cell_len(line)


@pytest.mark.parametrize("command", [None] + _subcommands())
def test_help_works_and_says_what_a_command_does(tmp_path, command):
    """The first thing a newcomer types; every subcommand found in the parser (new ones are covered too)."""
    args = ([command] if command else []) + ["--help"]
    r = cli(*args, cwd=tmp_path, columns=80)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("usage: marketsim")
    body = r.stdout.split("\n\n")
    # a description paragraph between the usage and the argument lists
    assert len(body) > 2 and body[1].strip() and not body[1].startswith(("positional", "options")), r.stdout
    assert "examples:" in r.stdout and f"  marketsim {command or ''}" in r.stdout
    assert max(map(_width, lines)) <= 80, [ln for ln in lines if _width(ln) > 80]
    if command is None:
        for c in _subcommands():
            assert f"    {c}" in r.stdout  # every command is listed with its one-line summary


def _unbroken_intervals(text: str) -> bool:
    return all(line.count("[") == line.count("]") for line in text.splitlines())


def _narrow(*args, cwd):
    return cli(*args, cwd=cwd, columns=80)


def _fits(r) -> None:
    """Tables (stdout) and progress bars (stderr) fit 80 columns; one-line messages on stderr soft-wrap in the
    terminal instead (a path in them stays whole for copying)."""
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines() + [ln for ln in r.stderr.splitlines() if "━" in ln]
    assert max(map(_width, lines)) <= 80, [ln for ln in lines if _width(ln) > 80]
    assert _unbroken_intervals(r.stdout), r.stdout


def test_run_and_calibrate_read_at_80_columns_and_a_cached_fit_draws_no_bar(tmp_path, own_fit_cache):
    r = _narrow("calibrate", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    _fits(r)
    assert "fitting" in r.stderr and "observed %" in r.stdout and "residual pp" in r.stdout
    r = _narrow("calibrate", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    _fits(r)
    assert "(cached)" in r.stderr and "fitting" not in r.stderr and "0/?" not in r.stderr
    r = _narrow("run", SCENARIOS / "tiny.yaml", cwd=tmp_path)
    _fits(r)
    assert "fitting" not in r.stderr and "simulating tiny" in r.stderr and "26/26 steps" in r.stderr
    assert "change pp" in r.stdout and "2013-06-30 %" in r.stdout


def test_sweep_and_analyze_read_at_80_columns(tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text(f"""
schema: marketsim-sweep/v1
name: a_sweep_with_a_rather_long_name_to_see_the_bar_cut
base: {SCENARIOS / "tiny.yaml"}
seed: 3
consumers: 600
steps: 8
replicates: 2
design: {{method: grid, size: 2}}
parameters:
  - {{path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}}
  - {{path: friction.create, values: [1.0, 2.5], label: "The cost of creating a new account, in utility units"}}
outputs: [gmv_share.JD, shift.gmv_share.JD, revenue.Tmall]
shift_against: all
""")
    r = _narrow("sweep", spec, "--workers", 1, "--out", "o", cwd=tmp_path)
    _fits(r)
    assert "…" in r.stderr and "8/8 runs" in r.stderr  # the description is cut, the counter is whole
    r = _narrow("analyze", "o", cwd=tmp_path)
    _fits(r)
    assert r.stdout.count("95% interval") >= 3 and r.stdout.count("[") >= 12  # 4 points x 3 outputs
    assert "low → high pp" in r.stdout and "range RMB m" in r.stdout


def test_project_reads_at_80_columns(tmp_path):
    _fits(_narrow("project", SCENARIOS / "tiny.yaml", "--draws", 3, "--replicates", 2, "--workers", 1, cwd=tmp_path))


def _bar_output(monkeypatch, body, width=80) -> str:
    import io

    from rich.console import Console

    from marketsim.report import progress

    buf = io.StringIO()
    monkeypatch.setattr(progress, "stderr", Console(file=buf, width=width, highlight=False))
    body(progress)
    return buf.getvalue()


def test_bar_appears_only_for_work_that_takes_time(monkeypatch):
    def instant(progress):
        with progress.bar("calibrating", None, "it"):
            pass  # a cached fit: never updated
        with progress.bar("sweep done", None, "runs") as update:
            update(completed=640, total=640)  # everything already stored: nothing advances

    assert _bar_output(monkeypatch, instant) == ""

    def slow(progress):
        with progress.bar("slow start", 10, "runs", delay=0.05):
            time.sleep(0.5)  # no update yet, but the delay has passed

    assert "slow start" in _bar_output(monkeypatch, slow)


@pytest.mark.parametrize("width", [80, 60])
def test_bar_fits_the_width_and_shows_user_text_as_is(monkeypatch, width):
    desc = "sweep [red]my_sweep[/red] of results/[bold]x on 2 local workers with a long tail of words"

    def body(progress):
        with progress.bar(desc, None, "runs") as update:
            update(completed=0, total=640)
            for k in range(1, 40):
                update(completed=k)
        with progress.bar("calibrating", None, "it") as update:
            update(completed=1)
            update(completed=2)

    out = _bar_output(monkeypatch, body, width)
    lines = out.splitlines()
    assert len(lines) == 2 and all(_width(ln) <= width for ln in lines), out
    assert (
        lines[0].startswith("sweep [" if width < 80 else "sweep [red]my_sweep")
        and "…" in lines[0]
        and "39/640 runs" in lines[0]
        and "ETA" in lines[0]
    )
    assert lines[1].startswith("calibrating") and "2 it" in lines[1] and "ETA" not in lines[1] and "?" not in lines[1]


def test_bar_shown_before_its_total_is_known_gets_the_eta_once_it_is(monkeypatch):
    def body(progress):
        with progress.bar("sweep", None, "runs", delay=0.01) as update:
            time.sleep(0.3)  # drawn with an unknown total (a calibration before the first run)
            update(completed=0, total=80)
            for k in range(1, 10):
                update(completed=k)

    out = _bar_output(monkeypatch, body)
    assert "9/80 runs" in out and "ETA" in out, out
