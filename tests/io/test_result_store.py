"""Nothing lost, nothing removed that is not marketsim's: marketsim removes only what it can prove it made,
inside its own folder, and follows no link to delete; a sweep folder is recognised by marketsim's own manifest;
the results index never overwrites a user's file and lists every result; a reader that follows the protocol never
sees a mix; a result folder is made of real files (it survives a zip or a copy); the older symlink layout is
still read and migrated."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from marketsim.errors import UserError
from marketsim.io import dataset, resultsindex, store
from tests.helpers import SCENARIOS, process_env

# the layout, spelled out (a test of it must not take it from the code under test)
HIDDEN, MARKER, SET_SCHEMA, LEGACY = ".marketsim", ".marketsim.json", "marketsim-result-set/v1", ".marketsim-sets"
ISHIGAMI = """
schema: marketsim-sweep/v1
name: ish
model: ishigami
seed: 3
design: {method: lhs, size: 6}
parameters:
  - {path: x1, range: [-3.14, 3.14]}
  - {path: x2, range: [-3.14, 3.14]}
  - {path: x3, range: [-3.14, 3.14]}
batch_runs: 3
"""


def _write(out, files, kind="run"):
    with store.result_set(out, kind) as new:
        for n, text in files.items():
            (new / n).write_text(text)


def _sentinel(root: Path) -> Path:
    """A folder outside the results, with a file, a subfolder and a manifest that looks like marketsim's."""
    s = root / "sentinel"
    (s / "sub").mkdir(parents=True)
    (s / "keep.txt").write_text("SENTINEL keep")
    (s / "sub" / "deep.txt").write_text("SENTINEL deep")
    body = b"SENTINEL a"
    (s / "a.txt").write_bytes(body)
    (s / MARKER).write_text(
        json.dumps(
            {
                "schema": SET_SCHEMA,
                "id": "x",
                "kind": "projection",
                "writer": "SENTINEL",
                "files": {"a.txt": {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}},
            }
        )
    )
    return s


def _snapshot(d: Path) -> dict:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            snap[str(p.relative_to(d))] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else None)
    return snap


def _legacy(out: Path, files: dict, kind="run") -> None:
    """A result folder in the layout of earlier versions: every file a link into .marketsim-sets/current/."""
    sets = out / ".marketsim-sets"
    d = sets / "set-20240101T000000-abcd1234"
    d.mkdir(parents=True)
    for n, text in files.items():
        (d / n).write_text(text)
    (d / MARKER).write_text(
        json.dumps({"kind": kind, "writer": f"marketsim {kind}", "version": "0.1.0", "files": sorted(files)})
    )
    (sets / ".lock").write_text("")
    os.symlink(d.name, sets / "current")
    for n in [*files, MARKER]:
        os.symlink(f".marketsim-sets/current/{n}", out / n)


# --------------------------------------------------------------------------- links are never followed to delete


def _try_write(out, files):
    """Write a set; the one-line refusal, or None if it was written."""
    try:
        _write(out, files)
    except UserError as e:
        return str(e)
    return None


def test_a_current_link_pointing_outside_is_never_deleted(tmp_path):
    victim = tmp_path / "victim"  # a folder of the user's, outside the results
    (victim / "sub").mkdir(parents=True)
    (victim / "thesis.tex").write_text("years of work")
    before = _snapshot(victim)
    out = tmp_path / "results" / "R"
    _legacy(out, {"a.txt": "old"})
    os.unlink(out / LEGACY / "current")
    os.symlink(victim, out / LEGACY / "current")  # absolute, outside the folder
    refused = _try_write(out, {"a.txt": "new"})
    assert _snapshot(victim) == before and os.path.islink(out / LEGACY / "current")
    assert refused is not None and "not empty and not made by marketsim" in refused


def test_a_sets_folder_that_is_a_link_is_not_emptied(tmp_path):
    sentinel = _sentinel(tmp_path)
    before = _snapshot(sentinel)
    out = tmp_path / "results" / "R"
    out.mkdir(parents=True)
    os.symlink(sentinel, out / LEGACY)
    refused = _try_write(out, {"a.txt": "new"})
    assert _snapshot(sentinel) == before
    assert refused is not None and "not empty and not made by marketsim" in refused
    # the new hidden folder as a link is refused too, with one line naming it
    shutil.rmtree(out)
    _write(out, {"a.txt": "1"})
    shutil.rmtree(out / HIDDEN)
    os.symlink(sentinel, out / HIDDEN)
    with pytest.raises(UserError, match=r"\.marketsim: is a symbolic link, not marketsim's own folder"):
        _write(out, {"a.txt": "2"})
    assert _snapshot(sentinel) == before and (out / "a.txt").read_text() == "1"


# --------------------------------------------------------------------------- a sweep folder is marketsim's manifest


def test_sweep_out_with_foreign_part_files_is_refused_and_nothing_moved(tmp_path, monkeypatch, capsys):
    from marketsim.cli import main

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "ish.yaml"
    spec.write_text(ISHIGAMI)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "part-1-draft.parquet").write_text("my draft, not a parquet file")
    (out / "part-notes.txt").write_text("notes")
    before = _snapshot(out)
    assert main(["sweep", str(spec), "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"marketsim: error: {out}: not empty and not a marketsim sweep folder"
    ), err
    assert "nothing was moved" in err[0] and _snapshot(out) == before and not (out / "quarantine").exists()
    # a real sweep folder whose manifest is damaged is still recognised (by its checksummed parts) and repaired
    sw = tmp_path / "sw"
    assert main(["sweep", str(spec), "--workers", "1", "--out", str(sw)]) == 0
    (sw / "manifest.json").write_text("{")
    assert main(["sweep", str(spec), "--workers", "1", "--out", str(sw)]) == 0
    assert dataset.manifest_problem(sw) is None and list((sw / "quarantine").glob("manifest.json*"))


# --------------------------------------------------------------------------- the results index


def test_index_keeps_a_users_index_md_and_survives_a_result_named_index_md(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    (root / "index.md").write_text("# my own index\n")
    _write(
        root / "tiny",
        {
            "summary.json": json.dumps(
                {
                    "consumers": 1000,
                    "seed": 1,
                    "first_date": "2020-01-01",
                    "last_date": "2020-02-01",
                    "settings": {"set": {"behaviour.beta_social": 2.5}, "steps": 4},
                }
            )
        },
    )
    (root / "notes").mkdir()  # a user's folder: not listed
    (root / "notes" / "summary.json").write_text("{}")
    path = resultsindex.update(root)
    assert (root / "index.md").read_text() == "# my own index\n" and path == root / "marketsim-index.md"
    text = path.read_text()
    assert (
        "| `tiny/` | run | 1,000 consumers, seed 1" in text
        and "settings: set behaviour.beta_social=2.5; steps 4" in text
    )
    assert "notes" not in text
    # a scenario named index.md: its result folder takes that name; every later command still works
    (root / "index.md").unlink()
    _write(root / "index.md", {"summary.json": json.dumps({"consumers": 5, "seed": 2})})
    path = resultsindex.update(root)
    assert path == root / "marketsim-index.md" and "| `index.md/` | run | 5 consumers" in path.read_text()
    # an index marketsim wrote is its own: rewritten in place
    shutil.rmtree(root / "index.md")
    assert resultsindex.update(root) == root / "index.md" and resultsindex.update(root) == root / "index.md"


def test_run_and_sweep_update_the_index(tmp_path, monkeypatch):
    from marketsim.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", str(SCENARIOS / "tiny.yaml"), "--consumers", "1000", "--steps", "4", "--json"]) == 0
    index = tmp_path / "results" / "index.md"
    text = index.read_text()
    assert "| `tiny--consumers1000-steps4/` | run | 1,000 consumers" in text
    assert "consumers 1000; steps 4" in text and "scenario_file_hash" not in text
    spec = tmp_path / "ish.yaml"
    spec.write_text(ISHIGAMI)
    assert main(["sweep", str(spec), "--workers", "1"]) == 0
    text = index.read_text()
    assert "| `ish/` | sweep | 6 runs, design lhs |" in text and "| `tiny--consumers1000-steps4/` | run |" in text


# --------------------------------------------------------------------------- readers: one set, never a mix


WRITER = """
import sys
from marketsim.io import store
with store.result_set(sys.argv[1], "run") as new:
    for n in ("a.txt", "b.txt", "c.txt"):
        (new / n).write_text(sys.argv[2] * 1000)
"""


def test_a_reader_waits_for_a_swap_and_finishes_a_killed_one(tmp_path):
    out = tmp_path / "R"
    _write(out, {n: "A" * 1000 for n in ("a.txt", "b.txt", "c.txt")})
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), "B"],
        stderr=subprocess.PIPE,
        text=True,
        env=process_env({"MARKETSIM_TEST_PAUSE": "moved a.txt@60"}),
    )
    try:
        assert p.stderr.readline().strip() == "marketsim-test-pause moved a.txt"
        # mid-swap: a reader that opens files by path without the protocol sees two sets...
        assert (out / "a.txt").read_text()[0] == "B" and (out / "b.txt").read_text()[0] == "A"
        got = {}
        reader = threading.Thread(target=lambda: got.update(store.read_result(out).data))
        reader.start()
        time.sleep(1.0)  # a wait for something not to happen: the reader is still waiting a second later
        assert reader.is_alive(), "read_result did not wait for the swap"  # ...read_result waits for it
        p.kill()  # the writer dies mid-swap: the reader finishes its swap (the staged set is complete)
        reader.join(60)
        assert not reader.is_alive()
    finally:
        p.kill()
        p.wait()
    assert got == {n: b"B" * 1000 for n in ("a.txt", "b.txt", "c.txt")}
    assert {n: (out / n).read_text() for n in ("a.txt", "b.txt", "c.txt")} == {
        n: "B" * 1000 for n in ("a.txt", "b.txt", "c.txt")
    }
    assert sorted(os.listdir(out / HIDDEN)) == ["lock", "write.lock"]


def test_read_result_refuses_an_edited_file(tmp_path):
    out = tmp_path / "R"
    _write(out, {"summary.json": '{"x": 1}', "t.csv": "a,b\n1,2\n"})
    r = store.read_result(out)
    assert r.kind == "run" and r.json("summary.json") == {"x": 1} and r.table("t.csv").shape == (1, 2)
    (out / "t.csv").write_text("a,b\n9,9\n")
    with pytest.raises(UserError, match=r"t.csv: not the file marketsim wrote in this result set"):
        store.read_result(out)


# --------------------------------------------------------------------------- real files; the older layout


def test_a_result_folder_survives_zip_and_copy(tmp_path):
    out = tmp_path / "R"
    _write(out, {"summary.json": '{"x": 1}', "t.csv": "a\n1\n"})
    assert not any(os.path.islink(out / n) for n in os.listdir(out))
    z = tmp_path / "r.zip"
    with zipfile.ZipFile(z, "w") as zf:  # what an upload or "send as zip" does: files by their path
        for dirpath, _, filenames in os.walk(out):
            for n in filenames:
                zf.write(Path(dirpath) / n, str((Path(dirpath) / n).relative_to(out)))
    dst = tmp_path / "unzipped"
    zipfile.ZipFile(z).extractall(dst)
    assert store.read_result(dst).data == {"summary.json": b'{"x": 1}', "t.csv": b"a\n1\n"}
    shutil.rmtree(out / HIDDEN)  # a copy of the visible files and the manifest is enough to read
    assert store.read_result(out).json("summary.json") == {"x": 1}


def test_the_older_symlink_layout_is_read_and_migrated(tmp_path):
    out = tmp_path / "R"
    _legacy(out, {"summary.json": '{"seed": 1}', "old.csv": "a\n1\n"})
    (out / "notes.txt").write_text("mine")
    assert store.read_result(out).data == {"summary.json": b'{"seed": 1}', "old.csv": b"a\n1\n"}
    _write(out, {"summary.json": '{"seed": 2}'})
    assert sorted(os.listdir(out)) == sorted([HIDDEN, MARKER, "summary.json", "notes.txt"])
    assert not (out / "summary.json").is_symlink() and store.read_result(out).json("summary.json") == {"seed": 2}


# --------------------------------------------------------------------------- property: random link layouts


def _attack(rng, tmp: Path, root: Path, out: Path, sentinel: Path, sweep: Path) -> list[str]:
    """Plant a random set of links pointing outside (at the sentinel folder or a file in it)."""
    target = {"dir": sentinel, "file": sentinel / "keep.txt", "manifest": sentinel / MARKER, "a": sentinel / "a.txt"}
    done = []

    def link(path: Path, what: str):
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target[what], path)
        done.append(f"{path.relative_to(tmp)} -> {what}")

    places = [
        (out / HIDDEN, "dir"),
        (out / HIDDEN / "lock", "file"),
        (out / HIDDEN / "write.lock", "file"),
        (out / HIDDEN / "journal.json", "manifest"),
        (out / HIDDEN / "staging-1-abcdefgh", "dir"),
        (out / LEGACY, "dir"),
        (out / LEGACY / "current", "dir"),
        (out / MARKER, "manifest"),
        (out / "a.txt", "a"),
        (out / "b.txt", "file"),
        (out / "c.txt", "file"),
        (root / "index.md", "file"),
        (root / "marketsim-index.md", "file"),
        (root / "L", "dir"),
        (sweep / "manifest.json", "file"),
        (sweep / "quarantine", "dir"),
        (sweep / ".lock", "file"),
        (sweep / f"part-0000000-{'0' * 64}.parquet", "file"),
    ]
    if rng.random() < 0.15:
        places.append((out, "dir"))  # the result folder itself
    for path, what in places:
        if rng.random() < 0.2:
            link(path, what)
    return done


def test_property_no_link_layout_makes_marketsim_touch_anything_outside(tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec = tmp_path / "ish.yaml"
    spec.write_text(ISHIGAMI)
    sweep_spec = load_sweep(spec)
    rng = np.random.default_rng(20170)
    for case in range(40):
        tmp = tmp_path / f"case{case}"
        root, sentinel = tmp / "results", _sentinel(tmp)
        out, sweep = root / "R", root / "S"
        start = rng.integers(3)  # nothing yet, a current set, the older layout
        if start == 1:
            _write(out, {"a.txt": "first", "c.txt": "first"})
        elif start == 2:
            _legacy(out, {"a.txt": "first", "c.txt": "first"})
        if rng.random() < 0.5:
            run_sweep(sweep_spec, sweep, None)
        planted = _attack(rng, tmp, root, out, sentinel, sweep)
        before = _snapshot(sentinel)
        for writer in ("set", "set2", "index", "read", "sweep", "load"):
            try:
                if writer in ("set", "set2"):
                    _write(out, {"a.txt": "new", "b.txt": "new"} if writer == "set" else {"b.txt": "again"})
                elif writer == "index":
                    resultsindex.update(root)
                elif writer == "read" and hasattr(store, "read_result"):
                    data = store.read_result(out).data
                    assert not any(b"SENTINEL" in b for b in data.values()), (planted, data)
                elif writer == "sweep":
                    from marketsim.experiments.sweep.runner import check_sweep_folder

                    check_sweep_folder(sweep)
                    run_sweep(sweep_spec, sweep, None)
                else:
                    assert not dataset.load_results(sweep).empty
            except UserError as e:
                assert "\n" not in str(e) and "SENTINEL" not in str(e), (planted, writer, e)
            assert _snapshot(sentinel) == before, (case, planted, writer)
        for p in (root / "index.md", root / "marketsim-index.md"):
            if os.path.isfile(p) and not os.path.islink(p):
                assert "SENTINEL" not in p.read_text() and "`L/`" not in p.read_text(), planted
