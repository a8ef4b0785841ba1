"""Result files: every write is atomic (a temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written file that looks whole.

This is the only module (with :mod:`marketsim.cli` and the report/plot code) that touches result files;
the model never does.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


#: Where results go unless --out says otherwise (relative to the working directory).
RESULTS_DIR = Path("results")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results get the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_table(df: pd.DataFrame, path_stem: str | Path, formats: tuple[str, ...] = ("csv", "parquet")) -> list[Path]:
    """Write ``df`` as ``<stem>.csv`` and/or ``<stem>.parquet`` (pyarrow), each atomically."""
    out = []
    for fmt in formats:
        p = Path(f"{path_stem}.{fmt}")
        with atomic_path(p) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            elif fmt == "parquet":
                df.to_parquet(tmp, index=False, engine="pyarrow")
            else:
                raise ValueError(f"unknown table format {fmt!r}")
        out.append(p)
    return out


def save_figure(fig, path: str | Path, **kw) -> Path:
    """Save a matplotlib figure atomically (format from the suffix of ``path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kw)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(x: Any) -> Any:
    import datetime as dt

    import numpy as np

    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (dt.date,)):
        return x.isoformat()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
