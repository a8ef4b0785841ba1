"""Hostile inputs that used to end in a traceback or a hang: each ends in one line on stderr, exit 2, naming the
file, line and field and what would be right (a closed pipe: a quiet exit, as Unix tools do)."""

import importlib
import inspect
import os
import time

import pytest

from marketsim.cli import main
from tests.helpers import SCENARIOS

HOSTILE = r"$\notacommand$ a_b^c 50% {x}"  # TeX math, sub/superscript, percent and brace characters


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marketsim: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
def test_base_chain_limits_cycles_and_unusable_paths(tmp_path, capsys):
    """A chain of 1,000 bases (was a RecursionError), a NUL byte in ``base:`` (ValueError), a ``base:`` that is
    a loop of symbolic links (RuntimeError) and a cycle through a symbolic link: one line each, at the
    offending ``base:`` line."""
    chain = tmp_path / "chain"
    chain.mkdir()
    (chain / "b0.yaml").write_text(
        (SCENARIOS / "tiny.yaml")
        .read_text()
        .replace("base: baseline_2013q2.yaml", f"base: {SCENARIOS / 'baseline_2013q2.yaml'}")
    )
    for i in range(1, 1000):
        (chain / f"b{i}.yaml").write_text(f"# layer {i}\nbase: b{i - 1}.yaml\n")
    t0 = time.perf_counter()
    msg = _one_line_error(capsys, main(["validate", str(chain / "b999.yaml")]))
    assert time.perf_counter() - t0 < 5
    from marketsim.scenario.core import MAX_BASE_FILES

    last = 999 - (MAX_BASE_FILES - 1)  # the 32nd file (b968) names the 33rd
    assert f"b{last}.yaml:2: base: 'b{last - 1}.yaml' would be file {MAX_BASE_FILES + 1}" in msg, msg
    assert f"at most {MAX_BASE_FILES} files" in msg
    # a chain of exactly MAX_BASE_FILES files is fine: b0 is built on baseline_2013q2.yaml
    assert main(["validate", str(chain / f"b{MAX_BASE_FILES - 2}.yaml")]) == 0
    capsys.readouterr()

    (tmp_path / "nul.yaml").write_text('schema: marketsim/v2\nbase: "tiny\\0.yaml"\nname: x\n')
    msg = _one_line_error(capsys, main(["validate", str(tmp_path / "nul.yaml")]))
    assert "nul.yaml:2: base: 'tiny\\x00.yaml' contains a NUL character; allowed:" in msg, msg
    assert "\0" not in msg

    os.symlink("loop2.yaml", tmp_path / "loop1.yaml")
    os.symlink("loop1.yaml", tmp_path / "loop2.yaml")
    (tmp_path / "sl.yaml").write_text("schema: marketsim/v2\nname: x\nbase: loop1.yaml\n")
    msg = _one_line_error(capsys, main(["validate", str(tmp_path / "sl.yaml")]))
    assert "sl.yaml:3: base: base scenario 'loop1.yaml'" in msg and "a loop of symbolic links" in msg, msg

    (tmp_path / "a.yaml").write_text("schema: marketsim/v2\nname: a\nbase: link.yaml\n")
    os.symlink("a.yaml", tmp_path / "link.yaml")
    msg = _one_line_error(capsys, main(["validate", str(tmp_path / "a.yaml")]))
    assert "a.yaml:3: base: 'link.yaml' is already being read: bases form a cycle" in msg, msg


def test_an_error_in_a_base_file_is_reported_in_that_file_at_its_line(tmp_path, capsys):
    """The base's event and the user's event merge into one list (by id): an error in the base's event is the
    base file's, at the base file's line, not the user's file at the line of the user's own event."""
    base = tmp_path / "base.yaml"
    base.write_text(f"""schema: marketsim/v2
base: {SCENARIOS / "tiny.yaml"}
name: b
events:
  - id: jd_drops_weibo
    remove: true
  - id: mine
    type: remove_login
    date: 2013-03-04
    retailer: JD
    provider: weibo
    migration_cost: 700
""")
    top = tmp_path / "top.yaml"
    top.write_text("""schema: marketsim/v2
base: base.yaml
name: top
description: the user's file
events:
  - id: theirs
    type: remove_login
    date: 2013-02-04
    retailer: Tmall
    provider: weibo
    migration_cost: 0.5
""")
    msg = _one_line_error(capsys, main(["validate", str(top)]))
    # named by its path in that file: the second item of base.yaml's events (the first removes one of tiny's)
    assert f"{base}:12: events[1].migration_cost: " in msg and "out of range" in msg, msg
    # a field the user's file sets over the base's event is the user's
    top.write_text(top.read_text() + "  - {id: mine, migration_cost: 900}\n")
    msg = _one_line_error(capsys, main(["validate", str(top)]))
    assert f"{top}:12: events[1].migration_cost: " in msg, msg
    # the base's own fields of that merged event stay the base's
    top.write_text(top.read_text().replace("migration_cost: 900}", "migration_cost: 0.5}"))
    base.write_text(
        base.read_text().replace(
            "    provider: weibo\n    migration_cost: 700", "    provider: nobody\n    migration_cost: 700"
        )
    )
    msg = _one_line_error(capsys, main(["validate", str(top)]))
    assert f"{base}:11: events[1].provider: " in msg, msg


FIGURE_MODULES = (
    "marketsim.figures.plots",
    "marketsim.report.projection",
    "marketsim.report.decision_charts",
    "marketsim.experiments.sweep.analysis",
    "marketsim.experiments.backtest",
)


def test_text_in_charts_is_never_markup(tmp_path, monkeypatch, capsys):
    """An event id, a scenario name and a sweep label with TeX math (``$\\notacommand$``) and ``_ ^ % {}`` are
    drawn as written by every figure function (``run``, ``project``, ``analyze``, ``calibrate``, ``backtest``
    crashed in matplotlib's math parser)."""
    # the mechanism: every figure function of marketsim is built and drawn with math text and usetex off
    figure_functions = [
        f"{m}.{n}"
        for m in FIGURE_MODULES
        for n, f in vars(importlib.import_module(m)).items()
        if n.endswith("_figure") and inspect.isfunction(f) and f.__module__ == m
    ]
    assert len(figure_functions) >= 10, figure_functions
    unmarked = [
        name
        for name in figure_functions
        if not getattr(importlib.import_module(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]).__dict__.get(
            "plain_text"
        )
    ]
    assert not unmarked, f"figure functions not drawn with marketsim.figures.style.figure_function: {unmarked}"

    # run: the id of an event (marked on the chart)
    from tests.helpers import simple_market_yaml

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKETSIM_FIT_CACHE", str(tmp_path / "fits"))
    sc = tmp_path / "tex.yaml"
    sc.write_text(
        simple_market_yaml(
            n=400, steps=8, events=f"[{{id: '{HOSTILE}', type: remove_login, step: 3, retailer: B, provider: weibo}}]"
        )
    )
    rc = main(["run", str(sc), "--results", str(tmp_path / "r"), "--json"])
    assert rc == 0, capsys.readouterr().err
    assert __import__("json").loads(capsys.readouterr().out)["events"][0]["id"] == HOSTILE
    assert (tmp_path / "r" / "simple" / "shares.png").stat().st_size > 1000

    # text added to a figure after it is made, and tick labels made while it is saved, are plain too
    import io

    from marketsim.figures import plots

    fig, ax = plots.subplots()
    ax.set_xticks([0, 1], [HOSTILE, "$x_1$"])
    fig.text(0.1, 0.1, HOSTILE)
    fig.savefig(io.BytesIO(), format="png")
    plots.close(fig)

    # analyze's three figures, with the sweep's parameter label on tick labels, titles and axes (drawn on save)
    from marketsim import load_results
    from marketsim.experiments.sweep.analysis import main_effects, sensitivity, write_figures
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep
    from marketsim.io.dataset import read_manifest

    spec = tmp_path / "ish.yaml"
    spec.write_text(f"""schema: marketsim-sweep/v1
name: ish
model: ishigami
seed: 1
design: {{method: morris, size: 4, levels: 4}}
parameters:
  - {{path: x1, range: [-3, 3], label: '{HOSTILE}'}}
  - {{path: x2, range: [-3, 3], label: '$x_2$'}}
  - {{path: x3, range: [-3, 3]}}
""")
    run_sweep(load_sweep(spec), tmp_path / "ish", None, results_root=tmp_path / "results")
    manifest, df = read_manifest(tmp_path / "ish"), load_results(tmp_path / "ish")
    out = tmp_path / "figs"
    out.mkdir()
    names = write_figures(manifest, df, sensitivity(manifest, df), main_effects(manifest, df), out)
    assert len(names) >= 3 and all((out / n).stat().st_size > 1000 for n in names)


def test_an_event_id_that_a_dotted_path_cannot_address_is_refused_at_its_line(tmp_path, capsys):
    """An event id with a '.' broke its own uncertain parameter's path (events.ID.field: a KeyError traceback in
    `project`): it is refused where it is written, with what to write instead."""
    text = (SCENARIOS / "battle_lines_2013.yaml").read_text().replace("id: jd_drops_weibo\n", "id: jd.drops weibo\n")
    f = tmp_path / "dot.yaml"
    f.write_text(text.replace("base: alibaba_weibo_stake.yaml", f"base: {SCENARIOS / 'alibaba_weibo_stake.yaml'}"))
    line = 1 + text.splitlines().index("  - id: jd.drops weibo")
    for argv in (["validate", str(f)], ["project", str(f), "--draws", "2", "--consumers", "500", "--steps", "4"]):
        msg = _one_line_error(capsys, main(argv))
        assert f"dot.yaml:{line}: events[" in msg and ".id: event id 'jd.drops weibo' contains '.'" in msg, msg
        assert "'jd_drops weibo'" in msg
