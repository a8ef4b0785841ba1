"""A sweep's results on disk: a folder of checksummed Parquet part files plus ``manifest.json``.

- A part file holds the rows of a batch of finished runs. It is written atomically (temporary file, then
  ``os.replace``) under the name ``part-<first run id>-<sha256 of its bytes>.parquet``: the name is its own
  checksum, made in the same rename that makes the file appear, and it stays with the file even if the
  manifest is lost. A truncated, zeroed, overwritten or bit-flipped part no longer matches its name. Each
  part also records, in its Parquet metadata, the spec hash of the sweep that wrote it.
- ``manifest.json`` describes the sweep (spec, design, parameters, outputs, counts) and carries the sha256
  of its own content (``"sha256"``), so an edited or damaged manifest is detected too.
- Readers (:func:`load_results`, ``marketsim analyze``) refuse a damaged file with one line naming it and
  saying what to do; a resumed sweep (:func:`repair`) moves damaged or duplicate parts into
  ``quarantine/`` inside the folder (never deletes them) and runs their runs again.

A killed sweep leaves only whole files: a run is stored completely in exactly one part file or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marketsim.errors import UserError
from marketsim.io import store
from marketsim.runtime.digest import digest

PART_GLOB = "part-*.parquet"
#: A part file's name: the first run id it holds and the sha256 of its bytes.
PART_RE = re.compile(r"^part-(\d+)-([0-9a-f]{64})\.parquet$")
QUARANTINE = "quarantine"
MANIFEST = "manifest.json"
#: The manifest's format marker (manifests of older versions lack it; their checksum and fields identify them).
SWEEP_FORMAT = "marketsim-sweep-results/v1"
#: Parquet metadata key holding the spec hash of the sweep that wrote a part.
SPEC_KEY = b"marketsim.spec_hash"
#: Manifest keys the readers need, with their types.
MANIFEST_FIELDS = {
    "name": str,
    "spec_hash": str,
    "design": dict,
    "parameters": list,
    "outputs": list,
    "replicates": int,
    "points": int,
    "runs": int,
    "seed": int,
}


def part_files(path: str | Path) -> list[Path]:
    """Every ``part-*.parquet`` in the folder (sound or not), sorted by name."""
    return sorted(Path(path).glob(PART_GLOB))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- checking what is stored


@dataclass
class Scan:
    """What a folder holds: sound parts with their run ids and spec hash, damaged parts with the reason, and
    pairs of sound parts that share run ids."""

    good: dict[Path, list[int]] = field(default_factory=dict)
    spec_hashes: dict[Path, str | None] = field(default_factory=dict)
    bad: dict[Path, str] = field(default_factory=dict)
    duplicates: list[tuple[Path, Path, int]] = field(default_factory=list)  # (first part, later part, a shared run id)

    @property
    def run_ids(self) -> set[int]:
        return {i for ids in self.good.values() for i in ids}


def check_part(f: Path) -> tuple[list[int], str | None]:
    """(run ids, spec hash) of a sound part file; raises ValueError(reason) if it is damaged."""
    m = PART_RE.match(f.name)
    if os.path.islink(f):
        raise ValueError("a symbolic link, not a part file marketsim wrote (marketsim follows no link)")
    if not m:
        raise ValueError("its name carries no checksum (written by an older marketsim, or renamed)")
    try:
        digest = sha256_file(f)
    except OSError as e:
        raise ValueError(f"unreadable ({e.strerror})") from None
    if digest != m.group(2):
        raise ValueError("its content does not match the checksum in its name: truncated, overwritten or bit-flipped")
    try:
        pf = pq.ParquetFile(f)
        meta = pf.schema_arrow.metadata or {}
        ids = [int(x) for x in pf.read(columns=["run_id"]).column("run_id").to_pylist()]
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as e:
        raise ValueError(f"not a readable part ({type(e).__name__})") from None
    spec = meta.get(SPEC_KEY)
    return ids, (spec.decode() if spec else None)


def scan(path: str | Path) -> Scan:
    """Check every part file of a folder (checksum, readability) and find run ids stored twice."""
    s = Scan()
    owner: dict[int, Path] = {}
    for f in part_files(path):
        try:
            ids, spec = check_part(f)
        except ValueError as e:
            s.bad[f] = str(e)
            continue
        clash = next((i for i in ids if i in owner), None)
        if clash is not None:
            s.duplicates.append((owner[clash], f, clash))
        s.good[f] = ids
        s.spec_hashes[f] = spec
        for i in ids:
            owner.setdefault(i, f)
    return s


def stored_run_ids(path: str | Path) -> set[int]:
    """Run ids stored in sound part files (damaged parts count as not stored)."""
    return scan(path).run_ids


def quarantine(path: str | Path, f: Path) -> Path:
    """Move ``f`` into ``path/quarantine/`` (never deleted; a name already there gets a numeric suffix)."""
    qdir = Path(path) / QUARANTINE
    if os.path.islink(qdir) or (qdir.exists() and not qdir.is_dir()):
        raise UserError(
            f"{qdir}: is not a folder marketsim made (a link or a file); move it away and run again; nothing was moved"
        )
    qdir.mkdir(exist_ok=True)
    target = qdir / f.name
    k = 1
    while target.exists():
        target = qdir / f"{f.name}.{k}"
        k += 1
    os.replace(f, target)
    return target


def repair(path: str | Path) -> tuple[Scan, list[str]]:
    """For a resumed sweep (with its lock held): move damaged parts, and later parts that repeat run ids of
    an earlier part, into ``quarantine/``; their runs are then not stored and run again. Returns the scan of
    what remains and one note per file moved."""
    path = Path(path)
    notes = []
    s = scan(path)
    for f, reason in s.bad.items():
        q = quarantine(path, f)
        notes.append(f"{f}: damaged ({reason}); moved to {q}, its runs will be run again")
    for first, later, run_id in s.duplicates:
        if later.exists():
            q = quarantine(path, later)
            notes.append(
                f"{later}: stores run {run_id} again (also in {first.name}); moved to {q}, its runs will be run again"
            )
    return (scan(path) if notes else s), notes


def remove_stray_temp_files(path: str | Path) -> int:
    """Delete the temporary files a killed writer left: ``.part-*.tmp`` (only the sweep writes here; call while
    holding its lock) and any other stale temporary file of :func:`marketsim.io.store.atomic_path`."""
    n = 0
    for f in Path(path).glob(".part-*.tmp"):
        if f.is_symlink() or not f.is_file():
            continue  # not a temporary file marketsim wrote
        f.unlink(missing_ok=True)
        n += 1
    return n + len(store.remove_stale_temps(path))


# --------------------------------------------------------------------------- writing


def write_part(path: str | Path, rows: list[dict], spec_hash: str | None = None) -> Path:
    """Store the rows of a batch of finished runs as one new part file (atomic, named by its checksum).
    A full disk is one line (UserError); the parts stored before are intact."""
    df = pd.DataFrame(rows)
    first = int(df["run_id"].min())
    table = pa.Table.from_pandas(df, preserve_index=False)
    if spec_hash:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), SPEC_KEY: spec_hash.encode()})
    path = Path(path)
    named: list[Path] = []

    def by_checksum(tmp: Path) -> Path:
        named.append(path / f"part-{first:07d}-{sha256_file(tmp)}.parquet")
        return named[0]

    try:
        with store.atomic_path(path / f"part-{first:07d}.parquet", final=by_checksum) as tmp:
            pq.write_table(table, tmp)
    except OSError as e:
        problem = store.disk_problem(e)
        if problem is None:
            raise
        runs = df["run_id"].nunique()
        raise UserError(
            f"{path}: {problem} while storing {runs} finished runs; the parts stored before are intact; "
            f"free space, then run the same command to resume"
        ) from None
    return named[0]


def manifest_checksum(d: dict) -> str:
    """sha256 of a manifest's content without its own ``sha256`` key (canonical JSON)."""
    body = {k: v for k, v in d.items() if k != "sha256"}
    return digest(body, default=None)


def write_manifest(path: str | Path, d: dict) -> Path:
    """Write ``manifest.json`` (atomically) with the checksum of its content."""
    plain = json.loads(json.dumps(d, default=store._json_default))
    plain.setdefault("format", SWEEP_FORMAT)
    plain["sha256"] = manifest_checksum(plain)
    return store.write_json(Path(path) / MANIFEST, plain)


def manifest_problem(path: str | Path) -> str | None:
    """Why ``path/manifest.json`` cannot be trusted (not JSON, checksum mismatch, a field missing), or None."""
    f = Path(path) / MANIFEST
    if os.path.islink(f):
        return "a symbolic link, not a file marketsim wrote (marketsim follows no link)"
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except OSError as e:
        return f"unreadable ({e.strerror})"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
    except (UnicodeDecodeError, ValueError) as e:
        return f"not valid JSON ({type(e).__name__})"
    if not isinstance(d, dict):
        return "not a JSON object"
    if d.get("format", SWEEP_FORMAT) != SWEEP_FORMAT:
        return f"format {str(d.get('format'))[:40]!r} is not {SWEEP_FORMAT}"
    if "sha256" not in d:
        return "it carries no checksum (written by an older marketsim)"
    if d["sha256"] != manifest_checksum(d):
        return "its content does not match its checksum (edited or damaged)"
    for k, t in MANIFEST_FIELDS.items():
        if not isinstance(d.get(k), t) or isinstance(d.get(k), bool):
            return f"field {k!r} is missing or not a {t.__name__}"
    return None


def read_manifest(path: str | Path) -> dict:
    """The manifest of a sweep folder, checked (UserError, one line, if missing or damaged)."""
    path = Path(path)
    f = path / MANIFEST
    if not os.path.lexists(f):
        raise UserError(
            f"{path}: not a sweep results folder (no {MANIFEST}); run `marketsim sweep SWEEP.yaml --out {path}` first"
        )
    problem = manifest_problem(path)
    if problem:
        raise UserError(
            f"{f}: damaged ({problem}); run the sweep again into the same folder "
            f"(`marketsim sweep SWEEP.yaml --out {path}`) to rebuild it"
        )
    return store.read_json(f)


def is_sweep_folder(path: str | Path) -> bool:
    """``path`` provably holds a marketsim sweep: a sound ``manifest.json`` (a regular file, checksum and
    fields), or, with that manifest lost or damaged, at least one sound part file (its name carries the
    sha256 of its bytes and its metadata the spec hash of the sweep that wrote it). File names alone never
    make a folder a sweep folder."""
    path = Path(path)
    if os.path.islink(path) or not path.is_dir():
        return False
    if os.path.isfile(path / MANIFEST) and manifest_problem(path) is None:
        return True
    for f in part_files(path):
        try:
            _, spec = check_part(f)
        except ValueError:
            continue
        if spec:
            return True
    return False


# --------------------------------------------------------------------------- reading


def load_results(path: str | Path) -> pd.DataFrame:
    """All stored rows of a sweep (one row per run and recorded step), sorted by run id and step.

    Refuses (UserError, one line) a damaged manifest, a damaged part (or a link in a part's place), run ids
    stored twice, and a part written by another sweep spec than the manifest's (rows of two sweeps are never
    mixed). Part files are immutable (named by their checksum), so a sweep that stores more runs meanwhile
    only adds parts; a part set aside meanwhile (a resumed sweep's repair) makes it read again."""
    path = Path(path)
    for _ in range(5):
        man = read_manifest(path)
        s = scan(path)
        resume = f"run `marketsim sweep {man.get('source') or 'SWEEP.yaml'} --out {path}` to set it aside (into {path / QUARANTINE}/) and run its runs again"
        if any(not os.path.lexists(f) for f in s.bad):
            continue  # set aside while we read: read again
        for f, reason in s.bad.items():
            raise UserError(f"{f}: damaged ({reason}); {resume}")
        for first, later, run_id in s.duplicates:
            raise UserError(f"{later}: stores run {run_id} again (also in {first.name}); {resume}")
        for f, spec in s.spec_hashes.items():
            if spec is not None and spec != man["spec_hash"]:
                raise UserError(
                    f"{f}: written by another sweep spec (hash {spec}) than {MANIFEST} describes "
                    f"({man['spec_hash']}); its rows are not this sweep's; move it out of {path}"
                )
        if not s.good:
            return pd.DataFrame()
        try:
            df = pd.concat([pd.read_parquet(f) for f in s.good], ignore_index=True)
        except FileNotFoundError:
            continue  # set aside while we read: read again
        return df.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    raise UserError(f"{path}: its part files kept changing while they were read; read again when the sweep is done")
