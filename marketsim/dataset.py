"""A sweep's results on disk: a folder of Parquet part files plus ``manifest.json``.

Each part file holds the rows of a batch of finished runs and is written atomically (temporary file,
then ``os.replace``), so a killed sweep leaves only whole files: a run is either stored completely in
exactly one part file or not at all. Readers look only at ``part-*.parquet`` and ignore temporary files.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from . import store
from .errors import UserError

PART_GLOB = "part-*.parquet"


def part_files(path: str | Path) -> list[Path]:
    return sorted(Path(path).glob(PART_GLOB))


def stored_run_ids(path: str | Path) -> set[int]:
    """Run ids already stored (reads only the ``run_id`` column of each part file)."""
    ids: set[int] = set()
    for f in part_files(path):
        ids.update(int(x) for x in pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist())
    return ids


def remove_stray_temp_files(path: str | Path) -> int:
    """Delete the temporary files a killed writer left (``.part-*.tmp``); call only while holding the lock."""
    n = 0
    for f in Path(path).glob(".part-*.tmp"):
        f.unlink(missing_ok=True)
        n += 1
    return n


def write_part(path: str | Path, rows: list[dict]) -> Path:
    """Store the rows of a batch of finished runs as one new part file (atomic)."""
    df = pd.DataFrame(rows)
    first = int(df["run_id"].min())
    target = Path(path) / f"part-{first:07d}-{uuid.uuid4().hex[:8]}.parquet"
    with store.atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")
    return target


def load_results(path: str | Path) -> pd.DataFrame:
    """All stored rows of a sweep (one row per run and recorded step), sorted by run id and step."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise UserError(f"{path}: not a sweep results folder (no manifest.json); run `marketsim sweep` first")
    files = part_files(path)
    if not files:
        return pd.DataFrame()
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def read_manifest(path: str | Path) -> dict:
    return store.read_json(Path(path) / "manifest.json")
