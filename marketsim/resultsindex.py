"""``results/index.md``: what the results folder holds, one line per result, rewritten after every command
that writes a result (a run, a projection, a fit, a back-test, a sweep)."""

from __future__ import annotations

import json
from pathlib import Path

from . import store

#: file that marks a result folder -> what kind of result it is.
MARKERS = {"summary.json": "run", "projection.json": "projection", "posterior.json": "fit",
           "backtest.json": "back-test", "manifest.json": "sweep"}


def describe(folder: Path, kind: str, doc: dict) -> str:
    if kind == "run":
        return f"{doc.get('consumers', '?'):,} consumers, seed {doc.get('seed')}, {doc.get('first_date')} to {doc.get('last_date')}"
    if kind == "projection":
        d = doc.get("draws", {})
        return (f"vs without {', '.join(doc.get('baseline_without') or []) or 'no events'}; {d.get('k', 1)} draws x "
                f"{doc.get('replicates')} replicates; horizon {doc.get('horizon')}"
                + (f"; options {', '.join(doc['options'])}" if "options" in doc else ""))
    if kind == "back-test":
        return f"fit until {doc.get('until')}; MAE {doc.get('mae', {}).get('model', float('nan')):.2f} pp"
    if kind == "fit":
        return f"posterior of {len(doc.get('parameters', []))} parameters from {doc.get('draws')} draws"
    return f"{doc.get('runs', '?')} runs, design {doc.get('design', {}).get('method', '?')}"


def update(root: Path) -> Path | None:
    """Rewrite ``root/index.md`` from the result folders under ``root`` (two levels deep)."""
    root = Path(root)
    if not root.is_dir():
        return None
    rows = []
    for folder in sorted(p for p in list(root.glob("*")) + list(root.glob("*/*")) if p.is_dir()):
        for marker, kind in MARKERS.items():
            f = folder / marker
            if f.is_file():
                try:
                    doc = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    doc = {}
                try:
                    what = describe(folder, kind, doc)
                except (TypeError, ValueError, AttributeError):
                    what = ""
                rows.append(f"| `{folder.relative_to(root)}/` | {kind} | {what} |")
                break
    text = ("# Results\n\nWritten by marketsim after every command that stores a result.\n\n"
            "| folder | kind | what |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return store.write_text(root / "index.md", text)
