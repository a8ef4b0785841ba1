"""A result folder holds one run or none: a folder marketsim did not make is refused, a failed set changes nothing,
a later set replaces the earlier one whole (killed writers: tests/e2e/test_signals.py)."""

import os
import shutil

import pytest

from marketsim.errors import UserError
from marketsim.io import store
from tests.helpers import SCENARIOS, SMALL_RUN, cli, one_line_error


def test_out_not_made_by_marketsim_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    r = cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", out, cwd=tmp_path)
    one_line_error(r, f"{out}: not empty and not made by marketsim")
    assert os.listdir(out) == ["thesis.tex"]
    # a folder holding only marketsim result folders (results/NAME/ with projection/ in it) is marketsim's
    shutil.rmtree(out)
    with store.result_set(out / "projection", "projection") as new:
        (new / "projection.json").write_text("{}")
    r = cli("run", SCENARIOS / "tiny.yaml", *SMALL_RUN, "--out", out, cwd=tmp_path)
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
