"""A sweep folder holds one sweep: resuming checks the stored rows against the spec, not only the manifest; a
damaged part or manifest is named, set aside and redone; a run stored twice is caught."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from marketsim.errors import UserError
from marketsim.io import dataset
from tests.helpers import SWEEP, cli, ishigami_sweep, one_line_error

# --------------------------------------------------------------------------- 2. a sweep folder holds one sweep


def test_resume_checks_rows_against_the_spec_not_only_the_manifest(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "o"
    assert cli("sweep", spec, "--workers", 1, "--out", out, cwd=tmp_path).returncode == 0
    rows = dataset.load_results(out)
    # the manifest is lost, the spec is the same: the rows match it, the manifest is rebuilt, nothing re-runs
    (out / "manifest.json").unlink()
    r = cli("sweep", spec, "--out", out, cwd=tmp_path)
    assert r.returncode == 0 and "0 runs in" in r.stderr, r.stderr
    pd.testing.assert_frame_equal(dataset.load_results(out), rows)
    # the manifest is lost again and the range is edited: the stored rows belong to another sweep
    (out / "manifest.json").unlink()
    spec.write_text(SWEEP.replace("range: [0.5, 3.0]", "range: [0.5, 2.0]"))
    r = cli("sweep", spec, "--out", out, cwd=tmp_path)
    one_line_error(
        r, f"{out}: stored run 0 does not match this sweep spec (param.friction.create is 1.125 there, 0.875 here)"
    )
    assert not (out / "manifest.json").exists()
    kept = pd.concat([pd.read_parquet(f) for f in dataset.part_files(out)]).sort_values(["run_id", "step"])
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), rows)  # nothing stored was touched
    # an edit that keeps every run's values but changes the outputs is caught by the parts' own spec hash
    spec.write_text(SWEEP.replace("outputs: [gmv_share.JD]", "outputs: [gmv_share.JD]\naverage_last: 3"))
    r = cli("sweep", spec, "--out", out, cwd=tmp_path)
    one_line_error(r, "was written by a different sweep spec")


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

    spec, out = ishigami_sweep(tmp_path)
    clean = dataset.load_results(out)
    part = dataset.part_files(out)[1]
    held = pd.read_parquet(part)["run_id"].nunique()
    damage(part)
    with pytest.raises(UserError) as ei:
        dataset.load_results(out)
    msg = str(ei.value)
    assert msg.startswith(f"{part}: damaged (") and "quarantine" in msg and "marketsim sweep" in msg and "\n" not in msg
    r = cli("analyze", out, cwd=tmp_path)
    one_line_error(r, f"{part.name}: damaged")
    notes = []
    counts = run_sweep(load_sweep(spec), out, None, on_note=notes.append)
    assert counts["ran"] == held  # exactly the damaged part's runs are run again
    assert (out / "quarantine" / part.name).is_file() and not part.exists()
    assert len(notes) == 1 and f"{part}: damaged" in notes[0] and "run again" in notes[0]
    pd.testing.assert_frame_equal(dataset.load_results(out), clean)


def test_duplicate_run_ids_and_broken_manifest(tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

    spec, out = ishigami_sweep(tmp_path)
    clean = dataset.load_results(out)
    sweep = load_sweep(spec)
    # a sound part (valid checksum, this spec) that stores run 4 again
    again = dataset.write_part(out, clean[clean.run_id == 4].to_dict("records"), spec_hash=sweep.digest())
    assert again.name.startswith("part-0000004-") and len(dataset.part_files(out)) == 4
    with pytest.raises(
        UserError, match=r"part-0000004-[0-9a-f]{64}.parquet: stores run 4 again \(also in part-0000004-"
    ):
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
        r = cli("analyze", out, cwd=tmp_path)
        one_line_error(r, f"{man}: damaged (", "to rebuild it")
        with pytest.raises(UserError, match="manifest.json: damaged"):
            dataset.load_results(out)
        notes = []
        run_sweep(sweep, out, None, on_note=notes.append)  # resume: set aside and rebuilt from the spec
        assert any("manifest.json: damaged" in n and "rebuilt" in n for n in notes), notes
        assert dataset.manifest_problem(out) is None and json.loads(man.read_text())["runs"] == 12
    assert len(list((out / "quarantine").glob("manifest.json*"))) == 2


def test_a_date_and_an_option_can_vary(tmp_path):
    spec = tmp_path / "d.yaml"
    spec.write_text(
        SWEEP.replace(
            "  - {path: friction.create, range: [0.5, 3.0]}",
            "  - {path: events.jd_drops_weibo.date, values: [2013-02-04, 2013-03-04]}\n"
            "  - {path: events.jd_drops_weibo.provider, values: [weibo, qq]}",
        )
        .replace("  - {path: retailers.JD.sso_share.weibo, range: [0.02, 0.2]}\n", "")
        .replace("replicates: 2", "replicates: 1")
    )
    out = tmp_path / "o"
    assert cli("sweep", spec, "--out", out, cwd=tmp_path).returncode == 0
    r = cli("sweep", spec, "--out", out, cwd=tmp_path)  # stored dates compare equal to the spec's on resume
    assert r.returncode == 0 and "0 runs in" in r.stderr and "4 already stored" in r.stderr, r.stderr
