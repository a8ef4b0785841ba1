"""The results index: what the results folder holds, one line per result, rewritten after every command
that writes a result (a run, a calibration, a projection, a fit, a back-test, a sweep).

It is ``results/index.md`` when that name is free or holds an index marketsim wrote (its first line is
:data:`MARK`); a user's own ``index.md`` (or a folder of that name, e.g. a scenario named ``index.md``) is
never touched, and the index goes to ``results/marketsim-index.md`` instead. It lists only folders marketsim
provably wrote (a result set's manifest, a sweep's checksummed manifest), read without following links."""

from __future__ import annotations

import os
from pathlib import Path

from marketsim.errors import UserError
from marketsim.io import dataset, store

#: The index's file names, in order of preference.
NAMES = ("index.md", "marketsim-index.md")
#: The first line of an index marketsim wrote: only a file starting with it is replaced.
MARK = "<!-- marketsim results index: rewritten by marketsim after every command that stores a result -->"

#: kind of a result set -> its main file and how the index names the kind.
MAIN = {
    "run": ("summary.json", "run"),
    "projection": ("projection.json", "projection"),
    "fit": ("posterior.json", "fit"),
    "backtest": ("backtest.json", "back-test"),
    "calibration": ("fit.json", "calibration"),
}


def describe(folder: Path, kind: str, doc: dict) -> str:
    if kind == "run":
        return f"{doc.get('consumers', '?'):,} consumers, seed {doc.get('seed')}, {doc.get('first_date')} to {doc.get('last_date')}"
    if kind == "projection":
        d = doc.get("draws", {})
        return (
            f"vs without {', '.join(doc.get('baseline_without') or []) or 'no events'}; {d.get('k', 1)} draws x "
            f"{doc.get('replicates')} replicates; horizon {doc.get('horizon')}"
            + (f"; options {', '.join(doc['options'])}" if "options" in doc else "")
        )
    if kind == "back-test" and doc.get("rolling"):
        hs = doc.get("horizons") or []
        maes = ", ".join(f"{h.get('quarters')}q {h.get('mae', {}).get('model', float('nan')):.2f}" for h in hs)
        k = len(doc.get("origins") or [])
        return f"rolling, {k} origin{'s' if k != 1 else ''}; model MAE by horizon (pp): {maes or 'none'}"
    if kind == "back-test":
        return f"fit until {doc.get('until')}; MAE {doc.get('mae', {}).get('model', float('nan')):.2f} pp"
    if kind == "fit":
        return f"posterior of {len(doc.get('parameters', []))} parameters from {doc.get('draws')} draws"
    if kind == "calibration":
        return f"fit to {len(doc.get('observations', []))} observations until {doc.get('until')}"
    return f"{doc.get('runs', '?')} runs, design {doc.get('design', {}).get('method', '?')}"


def settings_text(settings: object) -> str:
    """A result's ``settings`` (``{"set": {path: value}, "steps": .., "draws": .., ...}``) in one phrase."""
    if not isinstance(settings, dict):
        return ""
    parts = []
    for k, v in settings.items():
        if v is None or v == {} or v == [] or k == "scenario_file_hash":
            continue  # the hash is for machines: it stays in the result's JSON
        if k == "scenario_file" and isinstance(v, str):
            parts.append(f"scenario {v}")
        elif k == "set" and isinstance(v, dict):
            parts.append("set " + ", ".join(f"{p}={x}" for p, x in v.items()))
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def entry(folder: Path) -> tuple[str, str] | None:
    """(kind, what) of a folder marketsim provably wrote, read consistently; None for anything else."""
    if not store._real_dir(folder):
        return None
    kind = store.result_kind(folder)
    if kind is not None:
        main, label = MAIN.get(kind, (None, kind))
        doc: dict = {}
        if main is not None:
            try:
                got = store.read_result(folder, [main]).json(main)
            except (UserError, ValueError, OSError):
                got = {}
            doc = got if isinstance(got, dict) else {}
    elif store._real_file(folder / dataset.MANIFEST) and dataset.manifest_problem(folder) is None:
        label, doc = "sweep", store.read_json(folder / dataset.MANIFEST)
    else:
        return None
    try:
        what = describe(folder, label, doc)
    except (TypeError, ValueError, AttributeError, KeyError):
        what = ""
    extra = settings_text(doc.get("settings"))
    return label, what + (f"; settings: {extra}" if extra else "")


def _ours_or_free(p: Path) -> bool:
    if not os.path.lexists(p):
        return True
    if not store._real_file(p):
        return False
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            return fh.readline().rstrip("\n") == MARK
    except OSError:
        return False


def index_path(root: Path) -> Path | None:
    """Where the index of ``root`` goes: the first of NAMES that is free or marketsim's, else None."""
    return next((root / n for n in NAMES if _ours_or_free(root / n)), None)


def update(root: Path) -> Path | None:
    """Rewrite the index of ``root`` from the result folders under it (two levels deep, no links followed);
    returns its path, or None if ``root`` is not a folder or both index names are taken by the user."""
    root = Path(root)
    if not root.is_dir():
        return None
    target = index_path(root)
    if target is None:
        return None
    folders = []
    for top in sorted(os.scandir(root), key=lambda e: e.name):
        if top.is_dir(follow_symlinks=False):
            folders.append(Path(top.path))
            with os.scandir(top.path) as it:
                folders.extend(
                    Path(e.path) for e in sorted(it, key=lambda e: e.name) if e.is_dir(follow_symlinks=False)
                )
    rows = []
    for folder in folders:
        e = entry(folder)
        if e is not None:
            rows.append(f"| `{_cell(folder.relative_to(root))}/` | {e[0]} | {_cell(e[1])} |")
    text = (
        f"{MARK}\n# Results\n\nWritten by marketsim after every command that stores a result.\n\n"
        "| folder | kind | what |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    return store.write_text(target, text)
