"""Golden outputs: what the commands print and store for every bundled scenario at a small size, recorded
once and compared (numbers to 1e-9 relative: the two CI interpreters carry different numpy/scipy releases,
whose last bits differ; on one interpreter they agree bit for bit), so that a restructuring of the code (moving modules, merging helpers) cannot
change a number unnoticed. A change that is meant to change the numbers regenerates them on purpose:

    MARKETSIM_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py

and says so in its commit. Keys that describe the machine or the moment (timings, paths, versions) are left
out; everything else (shares, fitted parameters, residuals, the rows of the table files) must agree."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from marketsim.cli import main
from tests.helpers import BUNDLED, SCENARIOS

#: one worker (pytest-xdist) compares (or, with MARKETSIM_REGEN_GOLDEN=1, writes) the golden files
pytestmark = pytest.mark.xdist_group("golden")

GOLDEN = Path(__file__).parent / "golden"
#: the checkout: a path inside it in a message (a bundled scenario's, in a fit's refusal) is written relative to it
CHECKOUT = str(Path(__file__).resolve().parent.parent)
REGEN = os.environ.get("MARKETSIM_REGEN_GOLDEN") == "1"
#: Keys whose values depend on the machine, the clock or where the files are (or on the bytes of a scenario file,
#: comments included), not on the model.
VOLATILE = {
    "seconds",
    "version",
    "posterior_file",
    "scenario_file",
    "scenario_file_hash",
    "path",
    "file",
    "where",
    "cache_key",
    "key",
}


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in sorted(x.items()) if k not in VOLATILE}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, str) and x.endswith(".yaml") and "/" in x:  # a file given on the command line: where the
        return Path(x).name  # checkout lies is not an output
    if isinstance(x, str) and CHECKOUT in x:
        return x.replace(CHECKOUT, "<checkout>")
    return x


def _same(a, b, where: str = "") -> str | None:
    """Where ``a`` and ``b`` differ ("" if they agree): numbers to 1e-9 relative (the two CI interpreters carry
    other numpy/scipy releases, whose last bits differ; a changed model moves numbers by far more), the rest
    exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            return f"{where}: keys {sorted(set(a) ^ set(b))}"
        return next((d for k in sorted(a) if (d := _same(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items against {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := _same(x, y, f"{where}[{i}]"))), None)
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)):
            return None
        return f"{where}: {a!r} against {b!r}"
    return None if a == b else f"{where}: {a!r} against {b!r}"


def _compare(name: str, doc: dict) -> None:
    path = GOLDEN / f"{name}.json"
    got = json.loads(json.dumps(_clean(doc), sort_keys=True))
    if REGEN:
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert path.is_file(), f"no golden file {path}: record it with MARKETSIM_REGEN_GOLDEN=1"
    want = _clean(json.loads(path.read_text(encoding="utf-8")))
    diff = _same(got, want)
    assert diff is None, f"{name}: output differs from {path} at {diff} (a number changed; regenerate only on purpose)"


def _table(path: Path) -> dict:
    """A CSV file's header and rows, numbers parsed (compared to 1e-9 relative, not by their bytes)."""
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))

    def cell(x: str):
        try:
            return float(x)
        except ValueError:
            return x

    return {"columns": header, "rows": [[cell(x) for x in r] for r in rows]}


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKETSIM_FIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("scenario", BUNDLED, ids=lambda p: p.stem)
def test_run_of_every_bundled_scenario(scenario, place, capsys):
    out = place / "run"
    doc = _json(capsys, ["run", str(scenario), "--consumers", "2000", "--steps", "16", "--out", str(out), "--json"])
    doc["tables"] = {p.name: _table(p) for p in sorted(out.iterdir()) if p.suffix == ".csv"}
    _compare(f"run-{scenario.stem}", doc)


@pytest.mark.slow
def test_calibrate(place, capsys):
    doc = _json(capsys, ["calibrate", str(SCENARIOS / "baseline_2013q2.yaml"), "--consumers", "3000", "--json"])
    _compare("calibrate-baseline_2013q2", doc)


@pytest.mark.slow
def test_small_projection(place, capsys):
    doc = _json(
        capsys,
        [
            "project",
            str(SCENARIOS / "battle_lines_2013.yaml"),
            "--consumers",
            "2000",
            "--draws",
            "2",
            "--replicates",
            "2",
            "--workers",
            "1",
            "--compare",
            str(SCENARIOS / "jd_drops_weibo_no_offer.yaml"),
            "--json",
        ],
    )
    _compare("project-battle_lines_2013", doc)


@pytest.mark.slow
def test_small_sweep(place, capsys):
    from marketsim import load_results

    spec = place / "sweep.yaml"
    spec.write_text(
        f"""schema: marketsim-sweep/v1
name: golden_sweep
base: {SCENARIOS / "jd_drops_weibo_login.yaml"}
seed: 5
consumers: 1500
replicates: 1
design: {{method: grid, levels: 2}}
parameters:
  - {{path: behaviour.beta_social, range: [0.5, 1.5]}}
  - {{path: friction.create, range: [1.0, 2.0]}}
outputs: [shift.gmv_share.JD, gmv_share.JD]
shift_against: all
average_last: 4
""",
        encoding="utf-8",
    )
    assert main(["sweep", str(spec), "--workers", "1", "--out", str(place / "sw")]) == 0
    df = load_results(place / "sw")
    cols = sorted(c for c in df.columns if not c.startswith("_") and c not in {"seconds", "worker", "finished"})
    rows = df[cols].sort_values(sorted(c for c in cols if c in {"point", "replicate", "run"}) or cols)
    _compare("sweep-grid", {"columns": cols, "rows": json.loads(rows.to_json(orient="records", double_precision=15))})
