"""The scenarios that ship inside the package (``marketsim/scenarios/*.yaml``, read with :mod:`importlib.resources`).

On the command line a scenario argument that is not an existing file and has no folder part, such as
``battle_lines_2013`` or ``battle_lines_2013.yaml``, names the bundled file of that name; ``marketsim scenarios
copy DIR`` copies them all into a folder for editing (their ``base:`` references are relative, so the copies
keep working together).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from marketsim.errors import UserError

#: The headline scenario (the live page's default).
HEADLINE = "battle_lines_2013"
#: The small market of tests, demos and the default :class:`marketsim.MarketModel`.
TINY = "tiny"


def folder() -> Path:
    """The folder that holds the bundled scenario files (the package is installed unzipped, so a real folder)."""
    return Path(str(resources.files("marketsim").joinpath("scenarios")))


def path(name: str) -> Path:
    """The bundled file named ``name`` (with or without ``.yaml``); it may not exist (the caller says so)."""
    return folder() / (name if name.endswith(".yaml") else f"{name}.yaml")


def names() -> list[str]:
    """The bundled scenario and sweep files, by file name, sorted."""
    return sorted(p.name for p in folder().glob("*.yaml"))


def resolve(arg: str) -> str:
    """``arg`` as given if it names an existing path or has a folder part, else the bundled file it names if there
    is one, else ``arg`` unchanged (so the usual "not found" line names what the user typed)."""
    p = Path(arg)
    if p.exists() or p.parent != Path(".") or not arg:
        return arg
    bundled = path(arg)
    return str(bundled) if bundled.is_file() else arg


def copy(dest: str | Path) -> list[Path]:
    """Copy every bundled file into the folder ``dest`` (made if missing) and return the copies. A file that is
    already there is never overwritten: UserError naming it, before anything is copied."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: not a folder; name a folder to copy the bundled scenarios into")
    clash = [n for n in names() if (dest / n).exists()]
    if clash:
        raise UserError(
            f"{dest / clash[0]}: already exists; copy into an empty folder or remove "
            f"{'it' if len(clash) == 1 else f'the {len(clash)} files of that name'}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names():
        shutil.copyfile(folder() / n, dest / n)
        out.append(dest / n)
    return out
