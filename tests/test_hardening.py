"""Hardening (issue 10): a result folder holds one run or none, a sweep folder one sweep, damaged files are
named and set aside, hostile YAML costs nothing, every bad output location is one line before any work,
user text is never markup, and no interrupted command leaves a live child process.

Real signals (SIGKILL, SIGINT, SIGTERM) on real subprocesses, a real tmpfs for full and read-only disks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from marketsim.io import dataset
from marketsim.io import store
from marketsim.scenario import yamlsafe
from marketsim.errors import ScenarioError, UserError
from marketsim.runtime.executor import local_executor, worker_count

from .conftest import SCENARIOS, alive, child_pids, marketsim_cli

ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
RUN_FILES = ("timeseries.csv", "timeseries.parquet", "flows.csv", "flows.parquet", "summary.json", "shares.png")
SMALL_RUN = ("--consumers", 1000, "--steps", 4)


def _tiny(folder: Path, seed: int) -> Path:
    """tiny.yaml with the seed in the file, not on the command line: a result of another seed may then replace
    it in the same --out (a result of other command-line settings is refused)."""
    f = folder / f"tiny_s{seed}.yaml"
    f.write_text(f"schema: marketsim/v2\nbase: {SCENARIOS / 'tiny.yaml'}\nname: tiny\nseed: {seed}\n")
    return f


def _one_line_error(r, *needles, alone=True):
    """Exit 2 with one error line naming ``needles``; ``alone``: nothing else on stderr (refused before any work)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("marketsim: error: ")]
    assert len(errors) == 1 and (not alone or err.splitlines() == errors), err
    for n in needles:
        assert n in errors[0], (n, err)
    return errors[0]


# --------------------------------------------------------------------------- 1. a result folder is one run or none


@pytest.fixture(scope="module")
def run_refs(tmp_path_factory):
    """Complete result sets of the same small run for seeds 1 and 2 (to compare killed folders with)."""
    root = tmp_path_factory.mktemp("refs")
    refs = {}
    for seed in (1, 2):
        r = marketsim_cli("run", _tiny(root, seed), *SMALL_RUN, "--out", root / f"s{seed}", cwd=root)
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
    p = subprocess.Popen([sys.executable, "-m", "marketsim.cli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV, "MARKETSIM_TEST_PAUSE": f"{point}@{seconds}"})
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


@pytest.mark.parametrize("sig,point,expect", [
    (signal.SIGKILL, "wrote timeseries.csv", 1),    # the case: first file renamed into place, then killed
    (signal.SIGKILL, "wrote shares.png", 1),
    (signal.SIGKILL, "wrote .marketsim.json", 1),   # every file written, nothing swapped yet
    (signal.SIGKILL, "before swap", 1),             # new per-file links made, `current` not yet replaced
    (signal.SIGKILL, "after swap", 2),              # swapped; the old set not yet removed
    (signal.SIGINT, "wrote timeseries.csv", 1),     # Ctrl-C while writing: nothing changes
    (signal.SIGINT, "before swap", 2),              # Ctrl-C during the commit: held back, the commit completes
], ids=lambda x: getattr(x, "name", str(x).replace(" ", "_")))
def test_killed_run_leaves_old_set_or_new_set(tmp_path, run_refs, sig, point, expect):
    root, refs = run_refs
    out = tmp_path / "R"
    shutil.copytree(root / "s1", out, symlinks=True)  # a seed-1 result set...
    (out / "notes.txt").write_text("my notes\n")  # ...with a user's file and a folder marketsim did not write
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("a,b\n1,2\n")
    assert _the_set_in(out, refs) == 1
    # the writer pauses there (long enough to be signalled; a Ctrl-C held back during the commit waits it out)
    p = _start_paused(["run", _tiny(root, 2), *SMALL_RUN, "--out", out], root, point,
                      2 if (sig, point) == (signal.SIGINT, "before swap") else 30)
    os.kill(p.pid, sig)
    _, err = p.communicate(timeout=60)
    assert _the_set_in(out, refs) == expect
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "mine" / "data.csv").read_text() == "a,b\n1,2\n"
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "Traceback" not in err
        said = [line for line in err.splitlines() if line.startswith("marketsim:")]
        assert said == (["marketsim: interrupted; no result set was changed"] if expect == 1 else
                        [f"marketsim: interrupted after {out} was written completely; nothing else was changed"]), err
    # the next run into the same place cleans up what the killed one left, and keeps the user's files
    r = marketsim_cli("run", _tiny(root, 2), *SMALL_RUN, "--out", out, cwd=root)
    assert r.returncode == 0, r.stderr
    assert _the_set_in(out, refs) == 2
    assert sorted(os.listdir(out / store.HIDDEN)) == ["lock", "write.lock"]  # no staged set, no journal left
    assert sorted(os.listdir(out)) == sorted([*RUN_FILES, ".marketsim.json", store.HIDDEN, "notes.txt", "mine"])
    assert not any((out / f).is_symlink() for f in os.listdir(out))  # real files: a zip or copy keeps them


def test_out_not_made_by_marketsim_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", out, cwd=tmp_path)
    _one_line_error(r, f"{out}: not empty and not made by marketsim")
    assert os.listdir(out) == ["thesis.tex"]
    # a folder holding only marketsim result folders (results/NAME/ with projection/ in it) is marketsim's
    shutil.rmtree(out)
    with store.result_set(out / "projection", "projection") as new:
        (new / "projection.json").write_text("{}")
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "summary.json").is_file() and (out / "projection" / "projection.json").read_text() == "{}"
    # ...and a run result is not overwritten by another kind of result
    with pytest.raises(UserError, match="holds a marketsim run result; this command writes a projection result"):
        with store.result_set(out, "projection"):
            pass


def test_result_set_error_changes_nothing(tmp_path):
    out = tmp_path / "o"
    with store.result_set(out, "run") as new:
        (new / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with store.result_set(out, "run") as new:
            (new / "a.txt").write_text("2")
            (new / "b.txt").write_text("2")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "1" and not os.path.lexists(out / "b.txt")
    assert sorted(os.listdir(out / store.HIDDEN)) == ["lock", "write.lock"]  # the failed set's staging is gone
    # a later set that lacks a file of the earlier one removes it (the set is swapped whole)
    with store.result_set(out, "run") as new:
        (new / "b.txt").write_text("3")
    assert (out / "b.txt").read_text() == "3" and not os.path.lexists(out / "a.txt")


# --------------------------------------------------------------------------- sweeps: shared spec


SWEEP = f"""
schema: marketsim-sweep/v1
name: hard
base: {SCENARIOS / 'tiny.yaml'}
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


def _ishigami_sweep(tmp_path, text=ISHIGAMI):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec = tmp_path / "ish.yaml"
    spec.write_text(text)
    out = tmp_path / "ish"
    run_sweep(load_sweep(spec), out, None)
    return spec, out


# --------------------------------------------------------------------------- 2. a sweep folder holds one sweep


def test_resume_checks_rows_against_the_spec_not_only_the_manifest(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "o"
    assert marketsim_cli("sweep", spec, "--workers", 1, "--out", out, cwd=tmp_path).returncode == 0
    rows = dataset.load_results(out)
    # the manifest is lost, the spec is the same: the rows match it, the manifest is rebuilt, nothing re-runs
    (out / "manifest.json").unlink()
    r = marketsim_cli("sweep", spec, "--out", out, cwd=tmp_path)
    assert r.returncode == 0 and "0 runs in" in r.stderr, r.stderr
    pd.testing.assert_frame_equal(dataset.load_results(out), rows)
    # the manifest is lost again and the range is edited: the stored rows belong to another sweep
    (out / "manifest.json").unlink()
    spec.write_text(SWEEP.replace("range: [0.5, 3.0]", "range: [0.5, 2.0]"))
    r = marketsim_cli("sweep", spec, "--out", out, cwd=tmp_path)
    _one_line_error(r, f"{out}: stored run 0 does not match this sweep spec (param.friction.create is 1.125 there, 0.875 here)")
    assert not (out / "manifest.json").exists()
    kept = pd.concat([pd.read_parquet(f) for f in dataset.part_files(out)]).sort_values(["run_id", "step"])
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), rows)  # nothing stored was touched
    # an edit that keeps every run's values but changes the outputs is caught by the parts' own spec hash
    spec.write_text(SWEEP.replace("outputs: [gmv_share.JD]", "outputs: [gmv_share.JD]\naverage_last: 3"))
    r = marketsim_cli("sweep", spec, "--out", out, cwd=tmp_path)
    _one_line_error(r, "was written by a different sweep spec")


# --------------------------------------------------------------------------- 3. damaged files


def _truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _zero(f: Path):
    f.write_bytes(b"\0" * f.stat().st_size)


def _overwrite(f: Path):
    f.write_bytes(b"PAR1 not a part at all")


def _bitflip(f: Path):
    b = bytearray(f.read_bytes())
    b[len(b) // 3] ^= 0x04
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [_truncate, _zero, _overwrite, _bitflip], ids=lambda f: f.__name__.strip("_"))
def test_damaged_part_is_named_then_set_aside_and_redone(tmp_path, damage):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec, out = _ishigami_sweep(tmp_path)
    clean = dataset.load_results(out)
    part = dataset.part_files(out)[1]
    held = pd.read_parquet(part)["run_id"].nunique()
    damage(part)
    with pytest.raises(UserError) as ei:
        dataset.load_results(out)
    msg = str(ei.value)
    assert msg.startswith(f"{part}: damaged (") and "quarantine" in msg and "marketsim sweep" in msg and "\n" not in msg
    r = marketsim_cli("analyze", out, cwd=tmp_path)
    _one_line_error(r, f"{part.name}: damaged")
    notes = []
    counts = run_sweep(load_sweep(spec), out, None, on_note=notes.append)
    assert counts["ran"] == held  # exactly the damaged part's runs are run again
    assert (out / "quarantine" / part.name).is_file() and not part.exists()
    assert len(notes) == 1 and f"{part}: damaged" in notes[0] and "run again" in notes[0]
    pd.testing.assert_frame_equal(dataset.load_results(out), clean)


def test_duplicate_run_ids_and_broken_manifest(tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec, out = _ishigami_sweep(tmp_path)
    clean = dataset.load_results(out)
    sweep = load_sweep(spec)
    # a sound part (valid checksum, this spec) that stores run 4 again
    again = dataset.write_part(out, clean[clean.run_id == 4].to_dict("records"), spec_hash=sweep.digest())
    assert again.name.startswith("part-0000004-") and len(dataset.part_files(out)) == 4
    with pytest.raises(UserError, match=r"part-0000004-[0-9a-f]{64}.parquet: stores run 4 again \(also in part-0000004-"):
        dataset.load_results(out)
    notes = []
    run_sweep(sweep, out, None, on_note=notes.append)  # the later of the two (by name) is set aside, its runs redone
    assert len(os.listdir(out / "quarantine")) == 1 and any("stores run 4 again" in n for n in notes)
    pd.testing.assert_frame_equal(dataset.load_results(out), clean)
    # manifest.json: not JSON, then valid JSON edited by hand (its checksum no longer matches)
    man = out / "manifest.json"
    good = man.read_text()
    for broken in (good[:40], good.replace('"replicates": 1', '"replicates": 2')):
        man.write_text(broken)
        r = marketsim_cli("analyze", out, cwd=tmp_path)
        _one_line_error(r, f"{man}: damaged (", "to rebuild it")
        with pytest.raises(UserError, match="manifest.json: damaged"):
            dataset.load_results(out)
        notes = []
        run_sweep(sweep, out, None, on_note=notes.append)  # resume: set aside and rebuilt from the spec
        assert any("manifest.json: damaged" in n and "rebuilt" in n for n in notes), notes
        assert dataset.manifest_problem(out) is None and json.loads(man.read_text())["runs"] == 12
    assert len(list((out / "quarantine").glob("manifest.json*"))) == 2


# --------------------------------------------------------------------------- 5, 6, 7, 14. hostile YAML


BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, a in zip([None, *"abcdefgh"], "abcdefghi"))


def _refusal_cost(text: str):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ScenarioError) as ei:
            yamlsafe.load(text, "hostile.yaml")
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(ei.value), seconds, peak


@pytest.mark.parametrize("name,text,needle", [
    ("alias bomb", BOMB, "hostile.yaml:5: aliases expand to more than 10,000 nodes"),
    ("deep flow nesting", "x: " + "[" * 10_000 + "]" * 10_000, "hostile.yaml:1: nesting deeper than 64 levels"),
    ("deep block nesting", "".join(" " * i + "k:\n" for i in range(1_500)), "hostile.yaml:65: nesting deeper than 64 levels"),
    ("deep through aliases", "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
     "hostile.yaml:2: alias *a nests deeper than 64 levels"),
    ("self-referencing alias", "a: &a [1, *a]\n", "hostile.yaml:1: alias *a refers to a node that contains it"),
], ids=lambda x: x if isinstance(x, str) and len(x) < 30 and ":" not in x else "")
def test_hostile_yaml_is_refused_cheaply(name, text, needle):
    msg, seconds, peak = _refusal_cost(text)
    assert needle in msg and "\n" not in msg
    assert seconds < 0.5, f"{name}: refused in {seconds:.2f} s"
    assert peak < 4e6, f"{name}: refused with a {peak / 1e6:.1f} MB peak"


def test_yaml_mistakes_are_one_line_with_file_line_field(tmp_path):
    def err(text):
        with pytest.raises(ScenarioError) as ei:
            yamlsafe.load(text, "s.yaml")
        return str(ei.value)

    assert err("consumers:\n  count: 2000\n  shopping_rate: 0.2\n  count: 5000000\n") == (
        "s.yaml:4: consumers.count: duplicate key 'count' (first at line 2, again at line 4); allowed: each key once per mapping")
    assert err("calendar:\n  start: 2013-02-30\n").startswith("s.yaml:2: calendar.start: '2013-02-30' is not a valid date")
    assert err("events:\n  - {date: 2013-03-04 25:00:00}\n").startswith(
        "s.yaml:2: events[0].date: '2013-03-04 25:00:00' is not a valid date or time")
    assert "unsupported tag" in err("a: !!python/object/apply:os.system [ls]\n")
    # what stays allowed: aliases within budget, merge keys overriding merged keys, real dates
    data, lines = yamlsafe.load("d: &d {x: 1, y: [1, 2]}\ne:\n  <<: *d\n  x: 2\nstart: 2013-01-07\n", "ok.yaml")
    assert data == {"d": {"x": 1, "y": [1, 2]}, "e": {"x": 2, "y": [1, 2]}, "start": __import__("datetime").date(2013, 1, 7)}
    assert lines.find("e.x") == ("ok.yaml", 4) and lines.get("start") == 5
    # through the CLI: one line, exit 2, for a scenario file with a duplicate key
    bad = tmp_path / "dup.yaml"
    text = (SCENARIOS / "tiny.yaml").read_text()
    line = text[: text.index("  count: 3000\n")].count("\n") + 1
    bad.write_text(text.replace("  count: 3000\n", "  count: 3000\n  count: 5000000\n"))
    _one_line_error(marketsim_cli("validate", bad, cwd=tmp_path),
                    f"dup.yaml:{line + 1}: consumers.count: duplicate key 'count' (first at line {line}")


# --------------------------------------------------------------------------- 15. base: naming what is not a scenario file


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "passwd", "list"])
@pytest.mark.parametrize("variant", ["scenario", "sweep"])
def test_base_that_is_not_a_yaml_file(tmp_path, kind, variant):
    target = {"folder": tmp_path / "adir", "fifo": tmp_path / "fifo", "device": Path("/dev/null"),
              "passwd": tmp_path / "passwd", "list": tmp_path / "list.yaml"}[kind]
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "passwd":  # /etc/passwd's shape, with a secret that must never be echoed
        target.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40 + "secret:x:1000:1000:SECRET-TOKEN:/home/s:/bin/sh\n")
    elif kind == "list":
        target.write_text("- SECRET-TOKEN\n- b\n")
    what = {"folder": "is a folder, not a regular file", "fifo": "is a FIFO (named pipe), not a regular file",
            "device": "is a character device, not a regular file", "passwd": "is not a YAML mapping of keys (it reads as one string",
            "list": "is not a YAML mapping of keys (it reads as a list of 2 items)"}[kind]
    f = tmp_path / "top.yaml"
    if variant == "scenario":
        f.write_text(f"schema: marketsim/v1\nname: x\nbase: {target}\n")
        r = marketsim_cli("validate", f, cwd=tmp_path, timeout=60)  # a FIFO opened for reading would block here
        line = 3
    else:
        f.write_text(SWEEP.replace(f"base: {SCENARIOS / 'tiny.yaml'}", f"base: {target}"))
        r = marketsim_cli("sweep", f, "--out", tmp_path / "o", cwd=tmp_path, timeout=60)
        line = 4
    err = _one_line_error(r, f"top.yaml:{line}: base: base scenario '{target}'", what)
    assert "SECRET" not in err and "root:x" not in err and len(err) < 400


# --------------------------------------------------------------------------- 8, 9. sweep sizes and parameters


def test_huge_grid_refused_before_building(tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep

    spec = tmp_path / "g.yaml"
    spec.write_text(ISHIGAMI.replace("design: {method: lhs, size: 12}", "design: {method: grid, size: 3000}"))
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ScenarioError) as ei:
            load_sweep(spec)
    finally:
        seconds, peak = time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "g.yaml:6: design: 27,000,000,000 runs (grid design, size 3000, 3 parameters, 1 replicates); allowed: at most 1,000,000" in str(ei.value)
    assert seconds < 0.5 and peak < 4e6, (seconds, peak)
    big = tmp_path / "big.yaml"
    big.write_text(SWEEP.replace("design: {method: grid, size: 2}", "design: {method: grid, size: 3000}")
                   .replace("outputs:", "  - {path: behaviour.beta_social, range: [0, 2]}\noutputs:"))
    _one_line_error(marketsim_cli("sweep", big, cwd=tmp_path, timeout=60), "design: 54,000,000,000 runs")


@pytest.mark.parametrize("param,needle", [
    ("{path: retailers.JD.name, values: [JD, JE]}", "parameters[0].path: retailers.JD.name cannot vary: it names or identifies"),
    ("{path: events.jd_drops_weibo.id, values: [a, b]}", "events.jd_drops_weibo.id cannot vary"),
    ("{path: schema, values: [marketsim/v1]}", "parameters[0].path: schema cannot vary"),
    ("{path: seed, values: [1, 2]}", "parameters[0].path: seed cannot vary"),
    ("{path: providers.weibo, values: [{penetration: 0.3}, {penetration: 0.4}]}", "providers.weibo cannot take a mapping"),
    ("{path: retailers.JD.logins, values: [[qq], [qq, weibo]]}", "retailers.JD.logins cannot take a list"),
    ("{path: market.currency, values: [RMB, USD]}", "market.currency cannot vary: its values change nothing that is simulated"),
    ("{path: calendar.steps, values: [6, 8]}", "calendar.steps cannot vary: it changes calendar.steps, so runs would end at different steps"),
], ids=lambda x: x.split(",")[0].replace("{path: ", "") if x.startswith("{") else "")
def test_parameters_that_cannot_vary_are_refused_at_load(tmp_path, param, needle):
    spec = tmp_path / "p.yaml"
    spec.write_text(SWEEP.replace("  - {path: friction.create, range: [0.5, 3.0]}", f"  - {param}")
                    .replace("  - {path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}\n", ""))
    r = marketsim_cli("sweep", spec, "--out", tmp_path / "o", cwd=tmp_path)
    _one_line_error(r, "p.yaml:11: ", needle)
    assert not (tmp_path / "o").exists()


def test_a_date_and_an_option_can_vary(tmp_path):
    spec = tmp_path / "d.yaml"
    spec.write_text(SWEEP.replace("  - {path: friction.create, range: [0.5, 3.0]}",
                                  "  - {path: events.jd_drops_weibo.date, values: [2013-02-04, 2013-03-04]}\n"
                                  "  - {path: events.jd_drops_weibo.provider, values: [weibo, qq]}")
                    .replace("  - {path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}\n", "").replace("replicates: 2", "replicates: 1"))
    out = tmp_path / "o"
    assert marketsim_cli("sweep", spec, "--out", out, cwd=tmp_path).returncode == 0
    r = marketsim_cli("sweep", spec, "--out", out, cwd=tmp_path)  # stored dates compare equal to the spec's on resume
    assert r.returncode == 0 and "0 runs in" in r.stderr and "4 already stored" in r.stderr, r.stderr


# --------------------------------------------------------------------------- 10. output locations


def test_bad_output_locations_are_one_line_before_any_work(tmp_path, own_fit_cache):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    big = ("--consumers", 5_000_000)  # minutes of simulation, if the check came after it
    cases = [
        (["run", SCENARIOS / "tiny.yaml", *big, "--out", a_file], f"{a_file}: is a file, not a folder; choose a folder for --out"),
        (["run", SCENARIOS / "tiny.yaml", *big, "--out", a_file / "sub"], f"{a_file / 'sub'}: is under a file, not a folder"),
        (["run", SCENARIOS / "tiny.yaml", *big, "--results", a_file], f"{a_file / 'calibration'}: is under a file"),
        (["calibrate", SCENARIOS / "tiny.yaml", "--results", a_file / "x"], f"{a_file / 'x' / 'calibration'}: is under a file"),
        (["sweep", SCENARIOS / "sweep_weibo_login.yaml", "--out", a_file], f"{a_file}: is a file, not a folder"),
    ]
    for args, needle in cases:
        t = time.perf_counter()
        _one_line_error(marketsim_cli(*args, cwd=tmp_path, timeout=120), needle)
        assert time.perf_counter() - t < 30
    assert a_file.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["a_file"]


def test_read_only_and_full_disk(tmp_path, tmpfs):
    ro = tmpfs(1 << 20, readonly=True)
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", "--consumers", 5_000_000, "--out", ro / "r", cwd=tmp_path, timeout=120)
    _one_line_error(r, f"{ro / 'r'}: cannot write in {ro} (read-only file system)")
    full = tmpfs(1 << 20)
    (full / "filler").write_bytes(b"\0" * ((1 << 20) - 32 * 1024))  # 32 KB left: less than the preflight's probe
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", "--consumers", 5_000_000, "--out", full / "r", cwd=tmp_path, timeout=120)
    _one_line_error(r, f"{full / 'r'}: cannot write in {full} (no space left on device)")
    assert sorted(os.listdir(full)) == ["filler"]
    # full in the middle of writing the set: one line, and the earlier set is untouched, nothing partial remains
    (full / "filler").unlink()
    out = full / "r"
    r = marketsim_cli("run", _tiny(tmp_path, 1), "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    before = {f: (out / f).read_bytes() for f in RUN_FILES}
    room = shutil.disk_usage(full).free
    (full / "filler").write_bytes(b"\0" * (room - 96 * 1024))  # the 64 KB probe fits, the new set (~140 KB) does not
    r = marketsim_cli("run", _tiny(tmp_path, 2), "--out", out, cwd=tmp_path)
    _one_line_error(r, f"{out}: no space left on device while writing the result set", "no result set was changed", alone=False)
    assert {f: (out / f).read_bytes() for f in RUN_FILES} == before
    assert sorted(os.listdir(out / store.HIDDEN)) == ["lock", "write.lock"]  # the partial set's staging is gone
    # a sweep on a full disk: one line, the parts stored before are intact
    (full / "filler").unlink()
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("design: {method: grid, size: 2}", "design: {method: lhs, size: 400}")
                    .replace("replicates: 2", "replicates: 1").replace("batch_runs: 2", "batch_runs: 4")
                    .replace("consumers: 600", "consumers: 100").replace("steps: 6", "steps: 2"))
    (full / "filler").write_bytes(b"\0" * (shutil.disk_usage(full).free - 120 * 1024))
    r = marketsim_cli("sweep", spec, "--workers", 1, "--out", full / "sw", cwd=tmp_path)
    _one_line_error(r, f"{full / 'sw'}: no space left on device while storing", "the parts stored before are intact", alone=False)
    kept = dataset.scan(full / "sw")
    assert kept.bad == {} and 0 < len(kept.run_ids) < 400 and not list((full / "sw").glob(".*.tmp"))


# --------------------------------------------------------------------------- 11. user text is never markup


@pytest.mark.parametrize("name", ["r_[red]x", "r_[/]y", "r_[bold]z[/bold]"])
def test_brackets_in_paths_are_printed_as_they_are(tmp_path, name):
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", tmp_path / name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / name}/" in r.stdout.replace("\n", "") and (tmp_path / name / "summary.json").is_file()
    spec = tmp_path / "s.yaml"
    spec.write_text(ISHIGAMI)
    r = marketsim_cli("sweep", spec, "--workers", 1, "--out", tmp_path / f"sw{name}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"runs in {tmp_path / f'sw{name}'}/ (part-*.parquet" in r.stderr


# --------------------------------------------------------------------------- 17, 18. processes


def test_worker_count_is_capped_by_work_and_cores(tmp_path):
    from marketsim.runtime.executor import available_cores

    cores = available_cores()
    assert worker_count(1000, 2) == min(2, cores) and worker_count(None, 1) == 1 and worker_count(3, 0) == 1
    assert worker_count(1000, 10**6) == cores and worker_count(None, 10**6) == cores
    spec = tmp_path / "two.yaml"
    spec.write_text(ISHIGAMI.replace("size: 12", "size: 2"))
    r = marketsim_cli("sweep", spec, "--workers", 1000, "--out", tmp_path / "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    n = min(2, cores)
    assert f"sweep ish on {n} local worker{'s' if n > 1 else ''}" in r.stderr, r.stderr


KILL_SWEEP = SWEEP.replace("design: {method: grid, size: 2}", "design: {method: lhs, size: 40}").replace(
    "consumers: 600", "consumers: 60000").replace("steps: 6", "steps: 40")


def _sweep_with_workers(tmp_path):
    spec = tmp_path / "k.yaml"
    spec.write_text(KILL_SWEEP)
    out = tmp_path / "k"
    p = subprocess.Popen([sys.executable, "-m", "marketsim.cli", "sweep", str(spec), "--workers", "2", "--out", str(out)],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    deadline = time.time() + 180
    while time.time() < deadline and not dataset.part_files(out):
        time.sleep(0.05)
    workers = [k for k in child_pids(p.pid) if alive(k)]
    assert dataset.part_files(out) and p.poll() is None, "the sweep must be running, with a part stored"
    return p, out, workers


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
    assert said == [f"marketsim: interrupted; {len(stored)} of 80 runs are stored in {out}; run the same command again to resume"], err
    assert dataset.scan(out).bad == {} and 0 < len(stored) < 80
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "orphaned workers"


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


# --------------------------------------------------------------------------- 19. stale temporary files


def _hold_lock(path: Path) -> subprocess.Popen:
    """A live process holding an exclusive flock on ``path``, as a writer in atomic_path does."""
    h = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                          "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)", str(path)],
                         stdout=subprocess.PIPE, text=True)
    assert h.stdout.readline().strip() == "held"
    return h


def test_stale_temp_files_are_removed_live_and_foreign_ones_kept(tmp_path, own_fit_cache):
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout)  # a process that has exited
    folders = {"result": tmp_path / "R", "cache": tmp_path / "results" / "calibration", "sweep": tmp_path / "ish"}
    r = marketsim_cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", folders["result"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec, _ = _ishigami_sweep(tmp_path)
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
        r = marketsim_cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", folders["result"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = marketsim_cli("sweep", spec, "--out", folders["sweep"], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        for kind, (stale, live, mine) in planted.items():
            assert not stale.exists(), f"{kind}: stale temporary file kept"
            assert live.exists(), f"{kind}: a live writer's file was removed"
            assert mine.read_text() == "x", f"{kind}: a file marketsim did not write was touched"
    finally:
        for h in holders:
            h.kill()
            h.wait()
