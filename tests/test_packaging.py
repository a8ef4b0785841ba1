"""A plain (non-editable) install works on its own: the wheel carries the bundled scenarios, and from another
folder the installed ``marketsim`` runs the headline scenario by name, builds the default Mesa model and imports
the live page; a script next to a clone named ``marketsim`` imports the installed package, not the clone.
Also: the README's Python snippet runs as written (in-process, small)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

#: one worker (pytest-xdist) builds the wheel and the venv once, for every test of this module
pytestmark = pytest.mark.xdist_group("packaging")


def _sh(args, cwd, **kw):
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _venv(venv, cwd):
    """A fresh venv that sees this interpreter's installed libraries (numpy, mesa, ...) after its own: a .pth file
    names this environment's site-packages. (``--system-site-packages`` would show the base interpreter's, which
    lack them when the tests themselves run in a venv, as CI's 3.12 line does.) Returns its python."""
    import sysconfig

    _sh([sys.executable, "-m", "venv", venv], cwd=cwd)
    py = venv / "bin" / "python"
    own = _sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=cwd).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(own) / "_marketsim_test_deps.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    return py


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (seeing this environment's libraries for the dependencies) with the wheel of this checkout installed."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "marketsim"  # a copy of the checkout, named as `git clone` names it (the build writes into it)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, src / part) if src.exists() else (src.mkdir(), shutil.copy(ROOT / part, src / part))
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src], cwd=tmp)
    wheel = next((tmp / "dist").glob("marketsim-*.whl"))
    venv = tmp / "venv"
    py = _venv(venv, tmp)
    _sh([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not this checkout
    return {"py": py, "bin": venv / "bin", "clone": src, "env": env, "wheel": wheel}


@pytest.mark.slow
def test_the_wheel_carries_the_scenarios(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "marketsim/scenarios/battle_lines_2013.yaml" in names
    assert sum(n.startswith("marketsim/scenarios/") and n.endswith(".yaml") for n in names) == len(
        list((ROOT / "src" / "marketsim" / "scenarios").glob("*.yaml"))
    )


@pytest.mark.slow
def test_installed_package_runs_the_headline_scenario_from_another_folder(installed, tmp_path):
    env = {**installed["env"], "MARKETSIM_FIT_CACHE": str(tmp_path / "cache")}
    where = _sh([installed["py"], "-c", "import marketsim; print(marketsim.__file__)"], cwd=tmp_path, env=env).stdout
    assert str(installed["bin"].parent) in where and str(ROOT) not in where, where
    r = _sh(
        [installed["bin"] / "marketsim", "run", "battle_lines_2013", "--consumers", "2000", "--steps", "4", "--json"],
        cwd=tmp_path,
        env=env,
    )
    assert '"scenario": "battle_lines_2013"' in r.stdout
    assert (tmp_path / "results" / "battle_lines_2013--consumers2000-steps4" / "summary.json").is_file()
    _sh(
        [
            installed["py"],
            "-c",
            "from marketsim import MarketModel; m = MarketModel(consumers=500, steps=2); m.step(); "
            "import marketsim.viz.page as p; print(p.Page)",
        ],
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.slow
def test_a_script_next_to_the_clone_imports_the_installed_package(installed):
    """The folder that holds the clone (named ``marketsim``) is where a new user's script often lives; the clone's
    root must not shadow the installed package (it did, as an empty namespace package, before the src layout)."""
    holder = installed["clone"].parent
    (holder / "script.py").write_text(
        "import marketsim.scenario.schema, marketsim\nprint(marketsim.__file__)\n"
        "print(marketsim.load_scenario('tiny').name)\n"
    )
    r = _sh([installed["py"], "script.py"], cwd=holder, env=installed["env"])
    assert r.stdout.split()[-1] == "tiny" and str(installed["bin"].parent) in r.stdout, r.stdout


@pytest.mark.slow
def test_a_script_next_to_an_editable_clone_imports_the_package(tmp_path):
    """The reported case: ``pip install -e .`` in a clone named ``marketsim``, then a script in the folder that
    holds it. With the package at the clone's root, the clone shadowed it (``ImportError ... marketsim.schema
    (unknown location)``); under src/ it cannot."""
    clone = tmp_path / "marketsim"
    clone.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, clone / part)
    shutil.copytree(ROOT / "src", clone / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    _venv(venv, tmp_path)
    _sh(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "-e", clone],
        cwd=tmp_path,
    )
    (tmp_path / "script.py").write_text("import marketsim.scenario.core, marketsim\nprint(marketsim.__file__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = _sh([venv / "bin" / "python", "script.py"], cwd=tmp_path, env=env)
    assert r.stdout.strip() == str(clone / "src" / "marketsim" / "__init__.py"), r.stdout


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using it from Python") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "import marketsim" in snippet
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKETSIM_FIT_CACHE", str(tmp_path / "cache"))
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "gmv_share" in out and float(out.splitlines()[-1]) < 0, out  # JD loses share when it drops Weibo login
