"""The Decide view's store (src/marketsim/viz/decide.py), without a browser: a result's name is the sha256 of its
inputs (stable across processes, different for any change of input), a stored result opens without projecting
again, a malformed or unknown name is one line, and Cancel stops the work and leaves no folder behind."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

pytest.importorskip("solara")

from marketsim.errors import UserError
from marketsim.experiments import projection, workflow
from marketsim.io import store
from marketsim.viz import decide
from tests.helpers import SCENARIOS

#: a tiny market, 12 weeks, JD drops Weibo login in week 8 with an uncertain migration cost
DROP = f"""
base: {SCENARIOS / "tiny.yaml"}
name: drop
calendar: {{steps: 12}}
consumers: {{count: 1500}}
events:
  - {{id: jd_drops_weibo, migration_cost: {{value: 0.5, range: [0.1, 1.5], assumption: "test"}}}}
"""
NO_OFFER = """
base: drop.yaml
name: drop_without_offer
events:
  - {id: jd_drops_weibo, migration_cost: null}
"""
BASE_ARGS = dict(
    option_digests=[("drop", "a" * 64), ("keep", "b" * 64)],
    baseline_without=None,
    draws=6,
    replicates=2,
    consumers=2000,
    seed=7,
    steps=16,
    trend={"rule": "hold"},
)


def test_the_hash_is_stable_and_changes_with_every_input():
    h = decide.inputs_hash(**BASE_ARGS)
    assert decide.HASH_RE.match(h)
    # the same in another process (no dict order, no per-process salt such as hash())
    code = (
        "from marketsim.viz.decide import inputs_hash; import sys, json; print(inputs_hash(**json.loads(sys.argv[1])))"
    )
    import json

    other = subprocess.run([sys.executable, "-c", code, json.dumps(BASE_ARGS)], capture_output=True, text=True)
    assert other.stdout.strip() == h, other.stderr
    changes = {
        "option_digests": [("drop", "a" * 64), ("keep", "c" * 64)],
        "baseline_without": ["jd_drops_weibo"],
        "draws": 7,
        "replicates": 3,
        "consumers": 2001,
        "seed": 8,
        "steps": 17,
        "trend": {"rule": "damped"},
    }
    seen = {h}
    for k, v in changes.items():
        h2 = decide.inputs_hash(**{**BASE_ARGS, k: v})
        assert h2 not in seen, k
        seen.add(h2)
    # the options' order is part of the question (the first is the scenario)
    assert decide.inputs_hash(**{**BASE_ARGS, "option_digests": BASE_ARGS["option_digests"][::-1]}) not in seen


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "A" * 64, "../" + "a" * 61, "a" * 65])
def test_a_malformed_name_is_one_line(bad, tmp_path):
    with pytest.raises(UserError) as e:
        decide.open_stored(bad, tmp_path)
    assert "\n" not in str(e.value) and "64 hex digits" in str(e.value)


def test_an_unknown_name_is_one_line(tmp_path):
    with pytest.raises(UserError) as e:
        decide.open_stored("0" * 64, tmp_path)
    assert "\n" not in str(e.value) and "no stored result" in str(e.value)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    d = tmp_path_factory.mktemp("market")
    (d / "drop.yaml").write_text(DROP)
    (d / "nooffer.yaml").write_text(NO_OFFER)
    return d


def _inputs(market):
    return decide.DecideInputs(
        str(market / "drop.yaml"),
        option_files=(str(market / "nooffer.yaml"),),
        events_off=(("jd_drops_weibo",),),
        draws=3,
        replicates=2,
        consumers=1500,
    )


def test_a_stored_result_opens_without_projecting_again(market, tmp_path, monkeypatch):
    root = tmp_path / "results"
    h, computed = decide.run_decide(_inputs(market), root=root, workers=1)
    assert computed and decide.HASH_RE.match(h)
    folder = decide.result_folder(h, root)
    assert store.result_kind(folder) == "projection"
    names = set(store.read_result(folder).manifest["files"])
    assert {"projection.json", "replicates.parquet", "draws.parquet", decide.META} <= names
    doc = store.read_result(folder, ["projection.json"]).json("projection.json")
    assert list(doc["options"]) == ["drop", "drop_without_offer", "drop-without-jd_drops_weibo"]
    manifest = store.set_manifest(folder)
    mtime = folder.stat().st_mtime_ns

    def refuse(*a, **k):
        raise AssertionError("project() was called for a stored result")

    monkeypatch.setattr(projection, "project", refuse)
    before = decide.PROJECTIONS_RUN
    h2, computed2 = decide.run_decide(_inputs(market), root=root, workers=1)  # the same inputs: from the store
    assert (h2, computed2) == (h, False)
    s = decide.open_stored(h, root)  # the link's way
    assert s.outcomes.options == ("drop", "drop_without_offer", "drop-without-jd_drops_weibo")
    assert s.meta["hash"] == h
    assert decide.PROJECTIONS_RUN == before
    assert store.set_manifest(folder) == manifest and folder.stat().st_mtime_ns == mtime
    # another input is another result (and would project: refused here)
    other = decide.DecideInputs(**{**_inputs(market).__dict__, "replicates": 3})
    with pytest.raises(AssertionError, match="project"):
        decide.run_decide(other, root=root, workers=1)


def test_cancel_stops_the_work_and_leaves_no_folder(market, tmp_path, monkeypatch):
    root = tmp_path / "results"
    cancel = threading.Event()
    seen = []

    def on_progress(stage, done, total):
        seen.append((stage, done))
        if stage == "replicates" and done >= 1:
            cancel.set()  # Cancel pressed while the replicates run

    real = projection.project
    monkeypatch.setattr(projection, "project", real)
    with pytest.raises(workflow.Cancelled):
        decide.run_decide(_inputs(market), root=root, cancel=cancel, on_progress=on_progress, workers=1)
    assert ("replicates", 1) in seen
    # stopped at the next finished task: not every replicate ran
    assert max(d for s, d in seen if s == "replicates") <= 2
    store_dir = root / decide.STORE
    assert not store_dir.exists() or not any(store_dir.iterdir()), list(store_dir.iterdir())


def test_the_link_carries_the_token_of_this_server(monkeypatch):
    """Off loopback the page needs the server's token (PageGuard keeps it in a cookie named by the port): the link
    the page shows carries it, so that it opens for whoever it is sent to; without a token it is the bare link."""
    from types import SimpleNamespace

    import solara.lab

    h = "ab" * 32
    monkeypatch.setattr(solara.lab, "headers", SimpleNamespace(value={"host": ["example.org:8765"]}))
    monkeypatch.setattr(
        solara.lab,
        "cookies",
        SimpleNamespace(value={"marketsim-viz-token-9999": "other", "marketsim-viz-token-8765": "s3cr+t/x"}),
    )
    assert decide.token_link(h) == f"/?result={h}&token=s3cr%2Bt%2Fx"
    monkeypatch.setattr(solara.lab, "cookies", SimpleNamespace(value={}))
    assert decide.token_link(h) == f"/?result={h}"


def test_the_threshold_slider_reaches_every_outcome():
    """The slider spans at least -2..+2 points, widened to whole points around every draw's mean shift."""
    import numpy as np

    from marketsim.experiments.decision import Outcomes
    from marketsim.experiments.projection import BASELINE
    from marketsim.viz.decide import _threshold_span

    base = np.full((3, 2, 2, 1), 0.2)
    a = base.copy()
    a[:, :, -1, 0] = 0.2 + np.array([[-0.035, -0.033], [-0.01, -0.012], [0.001, 0.0]])
    o = Outcomes(
        "s",
        ("a",),
        ("JD",),
        "b",
        ("2013-01-07", "2013-01-14"),
        {BASELINE: base, "a": a},
        np.full(3, 1 / 3),
        (),
        np.zeros((3, 0)),
        np.arange(3),
    )
    assert _threshold_span(o, "JD") == (-4.0, 2.0)
    small = Outcomes(
        "s",
        ("a",),
        ("JD",),
        "b",
        ("2013-01-07", "2013-01-14"),
        {BASELINE: base, "a": base.copy()},
        np.full(3, 1 / 3),
        (),
        np.zeros((3, 0)),
        np.arange(3),
    )
    assert _threshold_span(small, "JD") == (-2.0, 2.0)
