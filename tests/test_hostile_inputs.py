"""Inputs that used to end in a traceback or a hang (issue 17, class 3): each ends in one line on stderr, exit 2,
naming the file, line and field and what would be right (a closed pipe: a quiet exit, as Unix tools do)."""

import importlib
import inspect
import os
import subprocess
import sys
import time

import pytest

from marketsim.cli import main

from .conftest import ROOT, SCENARIOS

HOSTILE = r"$\notacommand$ a_b^c 50% {x}"  # TeX math, sub/superscript, percent and brace characters


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marketsim: error: ") and "Traceback" not in err, err
    return lines[0]


def test_base_chain_limits_cycles_and_unusable_paths(tmp_path, capsys):
    """A chain of 1,000 bases (was a RecursionError), a NUL byte in ``base:`` (ValueError), a ``base:`` that is
    a loop of symbolic links (RuntimeError) and a cycle through a symbolic link: one line each, at the
    offending ``base:`` line."""
    chain = tmp_path / "chain"
    chain.mkdir()
    (chain / "b0.yaml").write_text((SCENARIOS / "tiny.yaml").read_text().replace("base: baseline_2013q2.yaml",
                                                                              f"base: {SCENARIOS / 'baseline_2013q2.yaml'}"))
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
base: {SCENARIOS / 'tiny.yaml'}
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
    assert f"{base}:12: events[0].migration_cost: " in msg and "out of range" in msg, msg
    # a field the user's file sets over the base's event is the user's
    top.write_text(top.read_text() + "  - {id: mine, migration_cost: 900}\n")
    msg = _one_line_error(capsys, main(["validate", str(top)]))
    assert f"{top}:12: events[0].migration_cost: " in msg, msg
    # the base's own fields of that merged event stay the base's
    top.write_text(top.read_text().replace("migration_cost: 900}", "migration_cost: 0.5}"))
    base.write_text(base.read_text().replace("    provider: weibo\n    migration_cost: 700", "    provider: nobody\n    migration_cost: 700"))
    msg = _one_line_error(capsys, main(["validate", str(top)]))
    assert f"{base}:11: events[0].provider: " in msg, msg


FIGURE_MODULES = ("marketsim.figures.plots", "marketsim.report.projection", "marketsim.experiments.sweep.analysis", "marketsim.experiments.backtest")


def test_text_in_charts_is_never_markup(tmp_path, monkeypatch, capsys):
    """An event id, a scenario name and a sweep label with TeX math (``$\\notacommand$``) and ``_ ^ % {}`` are
    drawn as written by every figure function (``run``, ``project``, ``analyze``, ``calibrate``, ``backtest``
    crashed in matplotlib's math parser)."""
    # the mechanism: every figure function of marketsim is built and drawn with math text and usetex off
    figure_functions = [f"{m}.{n}" for m in FIGURE_MODULES for n, f in vars(importlib.import_module(m)).items()
                        if n.endswith("_figure") and inspect.isfunction(f) and f.__module__ == m]
    assert len(figure_functions) >= 10, figure_functions
    unmarked = [name for name in figure_functions
                if not getattr(importlib.import_module(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]).__dict__.get("plain_text")]
    assert not unmarked, f"figure functions not drawn with marketsim.figures.style.figure_function: {unmarked}"

    # run: the id of an event (marked on the chart)
    from .conftest import simple_market_yaml

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKETSIM_FIT_CACHE", str(tmp_path / "fits"))
    sc = tmp_path / "tex.yaml"
    sc.write_text(simple_market_yaml(n=400, steps=8, events=f"[{{id: '{HOSTILE}', type: remove_login, step: 3, "
                                                             f"retailer: B, provider: weibo}}]"))
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
    from marketsim.experiments.sweep.analysis import main_effects, sensitivity, write_figures
    from marketsim.io.dataset import read_manifest
    from marketsim import load_results
    from marketsim.experiments.sweep.runner import load_sweep, run_sweep

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


def test_closed_pipe_is_a_quiet_exit(tmp_path):
    """``marketsim validate X | head -1``: the reader closes the pipe; marketsim stops quietly (no traceback,
    not even Python's 'Exception ignored' at exit), as Unix tools do: exit 141 (128 + SIGPIPE)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    battle = str(SCENARIOS / "battle_lines_2013.yaml")
    r = subprocess.run(f"{sys.executable} -m marketsim validate {battle} | head -1",
                       shell=True, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert len(r.stdout.splitlines()) == 1 and "valid" in r.stdout and r.stderr == "", r.stderr
    # the reader is gone before marketsim writes a byte (closed while it starts): every write fails
    for args in (["validate", battle], ["schema"]):
        p = subprocess.Popen([sys.executable, "-m", "marketsim", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=tmp_path, env=env)
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == "", err


def test_a_market_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path):
    """10^7 consumers on layers of m = 100 and k = 200 ties need ~100 GB: refused at once, in one line naming
    consumers.count (file and line), the network fields and the estimate against the memory available, instead of
    a MemoryError after allocating gigabytes (or the kernel's OOM killer). A real process, with its address space
    limited to 4 GB, so that a regression fails with a MemoryError rather than exhausting the machine."""
    from .conftest import simple_market_yaml

    big = tmp_path / "big.yaml"
    big.write_text(simple_market_yaml(n=10_000_000).replace("{model: barabasi_albert, m: 3}", "{model: barabasi_albert, m: 100}")
                   .replace("{model: watts_strogatz, k: 6,", "{model: watts_strogatz, k: 200,"))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
            "from marketsim.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1", "MARKETSIM_FIT_CACHE": str(tmp_path / "fits")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, "run", str(big), "--results", str(tmp_path / "r"), "--json"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    took = time.perf_counter() - t0
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    msg = r.stderr.strip()
    line = next(i for i, s in enumerate(big.read_text().splitlines(), 1) if s.lstrip().startswith("consumers:"))
    assert f"big.yaml:{line}: consumers.count: 10,000,000 consumers need about " in msg, msg
    assert "providers.weibo.network.m" in msg and "providers.qq.network.k" in msg, msg
    gb = [float(x.replace(",", "")) for x in __import__("re").findall(r"([\d,.]+) GB", msg)]
    assert len(gb) == 2 and gb[0] > 50 and gb[1] < 4.5 and gb[0] > gb[1], msg  # needed vs available (the 4 GB limit)
    assert took < 60 and not (tmp_path / "r" / "simple").exists()

    # the estimate itself: no allocation, no random numbers, and above the real peak of a small market
    import tracemalloc

    import numpy as np

    from marketsim.engine.market import Market
    from marketsim.engine.population import build_world, memory_estimate
    from marketsim.scenario.core import load_scenario

    sc = load_scenario(SCENARIOS / "tiny.yaml").with_overrides(consumers=50_000)
    tracemalloc.start()
    est = memory_estimate(sc)
    assert tracemalloc.get_traced_memory()[1] < 100_000
    tracemalloc.reset_peak()
    m = Market(sc, build_world(sc), np.zeros(len(sc.retailers)), 1, settle=False)
    m.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < est.total < 3 * peak, (peak, est.total)
