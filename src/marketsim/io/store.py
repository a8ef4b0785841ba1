"""Result files: every file is written atomically, and a command's whole result set is one atomic unit.

- :func:`atomic_path`: one file, through a temporary file beside it (``.NAME.PID-RANDOM.tmp``, flock-ed by
  its writer while it exists), then ``os.replace``. :func:`remove_stale_temps` removes the temporary files
  of writers that died (provably: nobody holds the lock, and the writer's pid is gone).
- :func:`result_set`: all files of one command (``run``, ``project``) are swapped in as one set, as real
  files, in a folder that keeps whatever else is in it (see its docstring for the layout, the crash
  analysis and what marketsim may delete: only regular files inside the folder that its own manifest lists).
- :func:`consistent_read` / :func:`read_result`: how a reader gets one set, never a mix.
- :func:`check_output_dir`: the preflight before any simulation: the output location exists or can be
  created, is a folder, is writable and has some room, and (for a result set) holds nothing foreign.

This is the only module (with the report/plot code and the sweep dataset) that touches result files;
the model never does.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import secrets
import shutil
import socket
import stat as _stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from marketsim._version import __version__
from marketsim.errors import UserError
from marketsim.runtime.executor import deferred_interrupt

#: Where results go unless --out says otherwise (relative to the working directory).
RESULTS_DIR = Path("results")

#: Temporary files written by atomic_path: ``.<name>.<writer pid>-<8 random>.tmp``.
_TEMP_RE = re.compile(r"^\..+\.(\d+)-[a-z0-9_]{8}\.tmp$")
#: A temporary file whose writer pid is alive is still left alone unless it is this old (pid reused).
STALE_AFTER_S = 600.0


@contextlib.contextmanager
def atomic_path(path: str | Path, *, final: Callable[[Path], Path] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (or ``final(tmp)``, a name
    chosen from the written file, e.g. its checksum) in one step, on error it is removed.

    The temporary file is ``.<name>.<pid>-<random>.tmp`` and this process holds an exclusive ``flock`` on it
    until it is renamed or removed, so :func:`remove_stale_temps` can tell a live writer from a dead one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        _flock(fd, blocking=True)
        yield tmp_path
        os.fsync(fd)  # the data written through any descriptor of this file
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results get the usual permissions
        os.replace(tmp_path, final(tmp_path) if final else path)
        _test_pause(f"wrote {path.name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        os.close(fd)


def _test_pause(point: str) -> None:
    """Testing hook: with MARKETSIM_TEST_PAUSE="POINT[@SECONDS]" in the environment, say
    ``marketsim-test-pause POINT`` on stderr at that point and sleep (default 5 s), so a test can signal the
    writer exactly there. Points: ``wrote NAME`` after each file, ``before swap``, ``moved NAME`` after each
    staged file is moved into the result folder, and ``after swap``."""
    hook = os.environ.get("MARKETSIM_TEST_PAUSE")
    if hook and hook.rsplit("@", 1)[0] == point:
        import sys
        import time

        print(f"marketsim-test-pause {point}", file=sys.stderr, flush=True)
        time.sleep(float(hook.rsplit("@", 1)[1]) if "@" in hook else 5.0)


def _flock(fd: int, *, blocking: bool, shared: bool = False) -> bool:
    """Exclusive (or ``shared``) flock on ``fd``; False if another holder has it (non-blocking). No-op (True)
    off POSIX."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks
        return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.PID-RANDOM.tmp``, see :func:`atomic_path`) that killed writers left
    in ``folder``; returns them. Provably stale: nobody holds the file's lock (a live writer holds it from
    creation to rename; the OS drops it when the writer dies), and the writer's pid no longer exists (or, if
    the pid was reused or lives in another pid namespace, the file is older than STALE_AFTER_S). Nothing
    else is touched: a user's ``.notes.tmp`` does not match the pattern."""
    import time

    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or not e.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            continue
        try:
            if not _flock(fd, blocking=False):
                continue  # a live writer holds it
            old = time.time() - os.fstat(fd).st_mtime > STALE_AFTER_S
            if old or not _pid_alive(int(m.group(1))):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- the output location


#: marketsim's own hidden folder inside a result folder (a real folder, never a link): the locks, the staged
#: new set while it is written, and the journal of a swap in progress.
HIDDEN = ".marketsim"
#: The manifest of a result folder's current set, a real file in the folder: schema marker, set id, kind,
#: writer, version, time, host, pid and every file of the set with its size and sha256.
MARKER = ".marketsim.json"
#: The manifest's schema marker: a MARKER without it is not marketsim's.
SET_SCHEMA = "marketsim-result-set/v1"
#: The layout of earlier versions (every result file a symbolic link into this folder): still read, and
#: replaced by real files at the next write.
LEGACY_SETS = ".marketsim-sets"
#: In HIDDEN: held shared by a reader (:func:`consistent_read`) and exclusively by a writer while it swaps.
READ_LOCK = "lock"
#: In HIDDEN: held exclusively by a writer from start to end (a second writer waits).
WRITE_LOCK = "write.lock"
#: In HIDDEN: exists only while a staged set is moved in; lets the next writer (or reader) finish a killed swap.
JOURNAL = "journal.json"
#: Names a result file cannot take: marketsim's own.
RESERVED = frozenset({HIDDEN, MARKER, LEGACY_SETS})
#: Free space the preflight asks of an output location (written once and removed).
PROBE_BYTES = 64 * 1024

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_STAGING_RE = re.compile(r"^staging-\d+-[A-Za-z0-9_]+$")
_LEGACY_SET_RE = re.compile(r"^(set|new)-[A-Za-z0-9_-]+$")

_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large",
}


def disk_problem(e: BaseException) -> str | None:
    """A short description if ``e`` is a disk or permission problem with an output (full disk, read-only,
    no permission), else None. Also recognises pyarrow's wrapped errors ("[errno 28] ...")."""
    if not isinstance(e, OSError):
        return None
    if e.errno in _DISK_ERRNOS:
        return _DISK_ERRNOS[e.errno]
    m = re.search(r"\[errno (\d+)\]", str(e), re.I)
    if m and int(m.group(1)) in _DISK_ERRNOS:
        return _DISK_ERRNOS[int(m.group(1))]
    return None


def check_output_dir(path: str | Path, *, kind: str | None = None, option: str = "--out") -> Path:
    """Preflight an output folder before any work: it is not a symbolic link (marketsim never writes through
    one), it is a folder or can be created (no part of the path is a file), it is writable and has room for a
    first write (a PROBE_BYTES file is written, synced and removed: nothing permanent is created), and, with
    ``kind`` (a result set, see :func:`result_set`), it is empty, new, or a folder marketsim made for the
    same kind of result. Raises UserError (one line)."""
    p = Path(path)
    if os.path.islink(p):
        raise UserError(
            f"{p}: is a symbolic link; marketsim writes only into a real folder, never through a link; "
            f"give the folder it points to, or another {option}"
        )
    what = _what_is(p)
    if what not in (None, "a folder"):
        raise UserError(f"{p}: is {what}, not a folder; choose a folder for {option}")
    q = p
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    if _what_is(q) != "a folder":
        raise UserError(
            f"{p}: cannot create a folder there: {q} is {_what_is(q) or 'not a folder'}; choose another {option}"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=f".marketsim-probe.{os.getpid()}-", suffix=".tmp", dir=q)
    except OSError as e:
        raise UserError(
            f"{p}: cannot write in {q} ({disk_problem(e) or e.strerror}); choose another {option}"
        ) from None
    try:
        _flock(fd, blocking=True)
        block = memoryview(b"\0" * PROBE_BYTES)
        while block:  # a nearly full disk takes part of a write, then refuses the rest
            block = block[os.write(fd, block) :]
        os.fsync(fd)
    except OSError as e:
        raise UserError(
            f"{p}: cannot write in {q} ({disk_problem(e) or e.strerror}); free space or choose another {option}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
        os.close(fd)
    if kind is not None and what == "a folder":
        _check_owner(p, kind, option)
    return p


def _what_is(p: Path) -> str | None:
    """None if nothing is at ``p``; else "a folder", "a file", "a FIFO", ... (follows symbolic links)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.lexists(p) else None
    except NotADirectoryError:
        return "under a file"
    except OSError as e:
        return f"not accessible ({e.strerror})"
    for test, what in (
        (_stat.S_ISDIR, "a folder"),
        (_stat.S_ISREG, "a file"),
        (_stat.S_ISFIFO, "a FIFO"),
        (_stat.S_ISCHR, "a device"),
        (_stat.S_ISBLK, "a device"),
        (_stat.S_ISSOCK, "a socket"),
    ):
        if test(st.st_mode):
            return what
    return "not a folder"


def _real_dir(p: Path) -> bool:
    """``p`` is a folder itself, not a symbolic link to one."""
    try:
        return _stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _real_file(p: Path) -> bool:
    """``p`` is a regular file itself, not a symbolic link to one."""
    try:
        return _stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def _check_hidden(out: Path) -> None:
    """``out/.marketsim``, if present, must be a real folder: marketsim follows no link to its own files."""
    h = out / HIDDEN
    if os.path.lexists(h) and not _real_dir(h):
        what = "a symbolic link" if os.path.islink(h) else "not a folder"
        raise UserError(
            f"{h}: is {what}, not marketsim's own folder (marketsim follows no link to delete or replace "
            f"anything); move it away and run again; nothing was changed"
        )


def _check_owner(p: Path, kind: str, option: str) -> None:
    """A non-empty folder takes a result set only if marketsim made it (its manifest, or the older layout,
    names the same kind), or if all it holds is other marketsim result folders (``results/NAME/`` made by
    ``project`` for ``projection-*/``) and marketsim's own hidden folder."""
    _check_hidden(p)
    old = result_kind(p)
    if old is not None:
        if old != kind:
            raise UserError(
                f"{p}: holds a marketsim {old} result; this command writes a {kind} result; choose another {option}"
            )
        return
    try:
        entries = os.listdir(p)
    except OSError as e:
        raise UserError(f"{p}: cannot list the folder ({e.strerror}); choose another {option}") from None
    foreign = [e for e in entries if not (e == HIDDEN and _real_dir(p / e)) and not is_result_folder(p / e)]
    if foreign:
        raise UserError(
            f"{p}: not empty and not made by marketsim (no {MARKER}); choose a new or empty folder for {option}, "
            f"or one marketsim wrote"
        )


def is_result_folder(p: str | Path) -> bool:
    """``p`` is a real folder (not a link) that marketsim provably made: a result set's manifest (or the
    older layout) or a sweep's checksummed manifest."""
    p = Path(p)
    if not _real_dir(p):
        return False
    if result_kind(p) is not None:
        return True
    from marketsim.io import dataset

    return _real_file(p / dataset.MANIFEST) and dataset.manifest_problem(p) is None


def _read_json_nofollow(path: Path) -> Any:
    """The JSON in ``path`` if it is a regular file (a symbolic link is not followed), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _read_nofollow(path: Path) -> bytes:
    """The bytes of the regular file ``path``; OSError if it is a symbolic link or not a regular file."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(_read_nofollow(path)).hexdigest()


def _matches(path: Path, meta: Any) -> bool:
    """``path`` is a regular file with the size and sha256 that ``meta`` (a manifest entry) records."""
    if not isinstance(meta, dict) or not _real_file(path):
        return False
    try:
        return os.lstat(path).st_size == meta.get("size") and _sha256(path) == meta.get("sha256")
    except OSError:
        return False


def set_manifest(out: str | Path) -> dict | None:
    """The manifest (``out/.marketsim.json``) of the result set in ``out``, if it is a regular file with
    marketsim's schema marker, else None."""
    d = _read_json_nofollow(Path(out) / MARKER)
    if (
        isinstance(d, dict)
        and d.get("schema") == SET_SCHEMA
        and isinstance(d.get("id"), str)
        and isinstance(d.get("kind"), str)
        and isinstance(d.get("files"), dict)
        and all(
            isinstance(n, str) and n not in RESERVED and "/" not in n and n not in ("", ".", "..") for n in d["files"]
        )
    ):
        return d
    return None


def _journal(out: Path) -> dict | None:
    """The journal of a swap in progress (or killed) in ``out``, if marketsim's and sound, else None."""
    if not _real_dir(out / HIDDEN):
        return None
    j = _read_json_nofollow(out / HIDDEN / JOURNAL)
    if (
        isinstance(j, dict)
        and isinstance(j.get("staging"), str)
        and _STAGING_RE.match(j["staging"])
        and isinstance(j.get("remove"), dict)
        and isinstance(j.get("legacy"), list)
        and isinstance(j.get("manifest"), dict)
        and j["manifest"].get("schema") == SET_SCHEMA
        and isinstance(j["manifest"].get("files"), dict)
    ):
        return j
    return None


def _legacy_current(out: Path) -> Path | None:
    """The current set's folder in the older layout (``.marketsim-sets/current -> set-...``), if every part
    of it is where marketsim put it (real folders, a link naming a sibling), else None."""
    sets = out / LEGACY_SETS
    if not _real_dir(sets):
        return None
    try:
        name = os.readlink(sets / "current")
    except OSError:
        return None
    d = sets / name
    if not _LEGACY_SET_RE.match(name) or not name.startswith("set-") or not _real_dir(d):
        return None
    return d if isinstance(_read_json_nofollow(d / MARKER), dict) else None


def _legacy_target(name: str) -> str:
    return f"{LEGACY_SETS}/current/{name}"


def _legacy_links(out: Path) -> list[str]:
    """Names in ``out`` that are the older layout's per-file links (``NAME -> .marketsim-sets/current/NAME``)."""
    found = []
    with contextlib.suppress(OSError):
        for e in os.scandir(out):
            if e.is_symlink():
                with contextlib.suppress(OSError):
                    if os.readlink(e.path) == _legacy_target(e.name):
                        found.append(e.name)
    return found


def result_kind(out: str | Path) -> str | None:
    """The kind of result ("run", "projection", ...) marketsim provably wrote in ``out``, or None."""
    out = Path(out)
    j = _journal(out)
    if j is not None:
        return j["manifest"].get("kind")
    m = set_manifest(out)
    if m is not None:
        return m["kind"]
    legacy = _legacy_current(out)
    if legacy is not None:
        kind = _read_json_nofollow(legacy / MARKER).get("kind")
        return kind if isinstance(kind, str) else None
    return None


# --------------------------------------------------------------------------- result sets


_committed: list[Path] = []


def committed_sets() -> list[Path]:
    """Result folders whose new set this process has swapped in (for an honest message after Ctrl-C)."""
    return list(_committed)


@contextlib.contextmanager
def result_set(out: str | Path, kind: str, *, writer: str | None = None) -> Iterator[Path]:
    """Write a command's whole result set as one unit. Yields a fresh, empty folder: write every file of the
    set into it (with the usual ``write_json``/``write_table``/``save_figure``); when the block ends normally
    the set is swapped in, so that a reader that follows :func:`consistent_read` (or uses :func:`read_result`)
    finds the old set or the new one, never a mix. If the block raises (an error, Ctrl-C) nothing in ``out``
    changes and the new files are removed.

    Layout: the result files are real files in ``out`` (a zip, copy or upload of the folder keeps them), and
    ``out`` keeps everything marketsim did not write (a user's notes, another command's subfolder)::

        out/<file>                          the files of the current set
        out/.marketsim.json                 its manifest: schema, set id, kind, writer, version, time, and
                                            every file with its size and sha256
        out/.marketsim/write.lock           flock-ed by a writer from start to end (a second one waits)
        out/.marketsim/lock                 flock-ed by readers (shared) and by a writer while it swaps
        out/.marketsim/staging-<pid>-<r>/   the new set while it is written (files and manifest, fsynced)
        out/.marketsim/journal.json         exists only during a swap: the staged set and what it replaces

    What marketsim deletes or replaces is only ever inside ``out``, is a regular file (never a link: links are
    not followed), and is listed in marketsim's own manifest with the sha256 it wrote (a file changed since
    is left alone; one the new set must replace makes the command refuse). ``out`` and ``out/.marketsim``
    must be real folders. Steps, and what a SIGKILL after each leaves:

    1. preflight, take the write lock, recover: finish a swap whose journal exists (roll forward), remove
       staging folders of killed writers and stale temporary files. Killed here: nothing changed.
    2. write the files into the staging folder, then its manifest (sizes, sha256), fsync. Killed here: the
       old set is intact and current; the staging folder is removed by step 1 of the next writer.
    3. check every name the new set takes: absent, a file of the current set unchanged since marketsim
       wrote it, or an older-layout link; else refuse (UserError), nothing changed.
    4. take the read lock exclusively (readers finish first), write the journal (atomic, fsynced), move
       each staged file into ``out`` with ``rename(2)``, then the manifest. Killed here: the journal and the
       complete staged set exist, so the next writer (or reader) rolls the swap forward.
    5. remove the files of the old set that the new one lacks (if unchanged), the journal, the staging
       folder and an older layout's folder. Killed here: rolled forward likewise.

    Ctrl-C is held back during step 4-5 (the commit), so a KeyboardInterrupt means either "nothing changed"
    or "the new set was swapped in" (:func:`committed_sets` says which). A full disk or a read-only folder
    is one line (UserError). ``writer`` (e.g. "marketsim run") and the package version and time go into the
    manifest."""
    out = Path(out)
    check_output_dir(out, kind=kind)
    hidden = out / HIDDEN
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_hidden(out)
        hidden.mkdir(exist_ok=True)
    except OSError as e:
        raise UserError(
            f"{out}: cannot create the result folder ({disk_problem(e) or e.strerror}); choose another --out"
        ) from None
    _check_hidden(out)
    wfd = _open_lock(hidden / WRITE_LOCK)
    try:
        _flock(wfd, blocking=True)  # another command writing here finishes first (its set is whole too)
        _recover(out)
        _check_owner(out, kind, "--out")  # again, with the lock held
        staging = Path(tempfile.mkdtemp(prefix=f"staging-{os.getpid()}-", dir=hidden))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; results get the usual permissions
        swapping = False
        try:
            try:
                yield staging
                manifest = _stage_manifest(staging, kind, writer or f"marketsim {kind}", __version__)
                journal = _plan(out, staging, manifest)  # refuses before any change
                rfd = _open_lock(hidden / READ_LOCK)
                try:
                    _flock(rfd, blocking=True)  # readers of the current set finish first
                    with deferred_interrupt():
                        _test_pause("before swap")
                        write_json(hidden / JOURNAL, journal)
                        _fsync_dir(hidden)
                        swapping = True
                        _roll_forward(out, journal)
                        _committed.append(out)
                finally:
                    os.close(rfd)
            except OSError as e:
                problem = disk_problem(e)
                if problem is None:
                    raise
                what = f" ({Path(e.filename).name})" if e.filename else ""
                if swapping:
                    raise UserError(
                        f"{out}: {problem} while swapping in the new result set{what}; the next marketsim "
                        f"command writing or reading here completes the swap"
                    ) from None
                raise UserError(
                    f"{out}: {problem} while writing the result set{what}; "
                    f"no result set was changed; free space or choose another --out"
                ) from None
        finally:
            if not swapping:
                _remove_own_dir(staging)
    finally:
        os.close(wfd)


def _stage_manifest(staging: Path, kind: str, writer: str, version: str) -> dict:
    """Step 2: check the staged files (regular files, names not marketsim's own), write their manifest."""
    files = {}
    for e in sorted(os.scandir(staging), key=lambda e: e.name):
        if e.name in RESERVED or e.name.startswith("."):
            raise ValueError(f"{e.path}: a result file may not be named {e.name!r} (marketsim's own, or hidden)")
        if not e.is_file(follow_symlinks=False):
            raise ValueError(f"{e.path}: a result set holds only regular files")
        files[e.name] = {"size": os.lstat(e.path).st_size, "sha256": _sha256(Path(e.path))}
    now = _dt.datetime.now(_dt.UTC)
    manifest = {
        "schema": SET_SCHEMA,
        "id": f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(6)}",
        "kind": kind,
        "writer": writer,
        "version": version,
        "created": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "files": files,
    }
    write_json(staging / MARKER, manifest)
    _fsync_dir(staging)
    return manifest


def _plan(out: Path, staging: Path, manifest: dict) -> dict:
    """Step 3: the journal of the swap, after checking that every name the new set takes is marketsim's."""
    old = set_manifest(out)
    old_files = old["files"] if old else {}
    legacy = set(_legacy_links(out))
    for n in manifest["files"]:
        t = out / n
        if not os.path.lexists(t) or n in legacy:
            continue
        if n in old_files and _matches(t, old_files[n]):
            continue
        if n in old_files and _real_file(t):
            raise UserError(
                f"{t}: changed since marketsim wrote it; move it away (it may hold your edits) and run "
                f"again; no result set was changed"
            )
        raise UserError(
            f"{t}: exists and was not written by marketsim; move it away and run again; no result set was changed"
        )
    remove = {n: m for n, m in old_files.items() if n not in manifest["files"] and _matches(out / n, m)}
    return {
        "id": manifest["id"],
        "staging": staging.name,
        "manifest": manifest,
        "remove": remove,
        "legacy": sorted(legacy - set(manifest["files"]) - {MARKER}),
    }


def _roll_forward(out: Path, j: dict) -> None:
    """Steps 4-5 from the journal ``j`` (with both locks held): move the staged files in, then the manifest,
    then remove what the old set had and the new one lacks. Idempotent: a killed swap is finished by
    calling it again."""
    hidden = out / HIDDEN
    staging = hidden / j["staging"]
    for n in [*j["manifest"]["files"], MARKER]:
        src, dst = staging / n, out / n
        if not os.path.lexists(src):
            continue  # moved in before
        if not _real_file(src):
            raise UserError(f"{src}: is not a file marketsim staged; move it away and run again")
        if (
            os.path.lexists(dst)
            and not _real_file(dst)
            and not (os.path.islink(dst) and os.readlink(dst) == _legacy_target(n))
        ):
            raise UserError(
                f"{dst}: exists and was not written by marketsim; move it away and run again "
                f"(the new result set is staged in {staging} and is moved in then)"
            )
        os.replace(src, dst)
        _test_pause(f"moved {n}")
        if n == MARKER:
            _fsync_dir(out)
    _test_pause("after swap")
    for n, meta in j["remove"].items():
        if _matches(out / n, meta):
            os.unlink(out / n)
    for n in j["legacy"]:
        t = out / n
        with contextlib.suppress(OSError):
            if os.readlink(t) == _legacy_target(n):
                os.unlink(t)
    _fsync_dir(out)
    os.unlink(hidden / JOURNAL)
    _fsync_dir(hidden)
    _remove_own_dir(staging)
    _remove_legacy(out)


def _remove_own_dir(d: Path) -> None:
    """Remove a folder marketsim made (a real folder: a link in its place is left alone; the removal
    unlinks links inside it and never follows them)."""
    if _real_dir(d):
        shutil.rmtree(d, ignore_errors=True)


def _remove_legacy(out: Path) -> None:
    """Remove the older layout's folder and per-file links once a new-layout set is current: only the
    entries that layout made (its lock, its ``current`` links, its ``set-*``/``new-*`` real folders); the
    folder stays if anything else is in it. Nothing is followed."""
    sets = out / LEGACY_SETS
    if not _real_dir(sets) or set_manifest(out) is None:
        return
    for e in list(os.scandir(sets)):
        with contextlib.suppress(OSError):
            if e.name == ".lock" and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
            elif (e.name == "current" or e.name.startswith("current.")) and e.is_symlink():
                os.unlink(e.path)
            elif _LEGACY_SET_RE.match(e.name) and e.is_dir(follow_symlinks=False):
                _remove_own_dir(Path(e.path))
    with contextlib.suppress(OSError):
        os.rmdir(sets)
    for n in _legacy_links(out):
        with contextlib.suppress(OSError):
            os.unlink(out / n)


def _recover(out: Path) -> None:
    """Step 1 of :func:`result_set` (with the write lock held): finish a killed swap, remove what killed
    writers left (their staging folders, stale temporary files) and an older layout made obsolete."""
    hidden = out / HIDDEN
    j = _journal(out)
    if j is not None:
        rfd = _open_lock(hidden / READ_LOCK)
        try:
            _flock(rfd, blocking=True)
            with deferred_interrupt():
                _roll_forward(out, j)
        finally:
            os.close(rfd)
    elif os.path.lexists(hidden / JOURNAL) and not _real_file(hidden / JOURNAL):
        raise UserError(
            f"{hidden / JOURNAL}: is not marketsim's journal (a link or a folder); move it away and run again"
        )
    for e in list(os.scandir(hidden)):
        if _STAGING_RE.match(e.name) and e.is_dir(follow_symlinks=False):
            _remove_own_dir(Path(e.path))
    remove_stale_temps(out)
    remove_stale_temps(hidden)
    _remove_legacy(out)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_lock(path: Path, *, create: bool = True) -> int:
    """A descriptor of the lock file ``path`` (a regular file, never a link; created unless ``create`` is
    False: then FileNotFoundError if absent). UserError (one line) if a link or something else is there."""
    try:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | _NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise UserError(
                f"{path}: is a symbolic link, not marketsim's lock file (marketsim follows no link in its "
                f"own folder); move it away and run again"
            ) from None
        if isinstance(e, FileNotFoundError) or disk_problem(e) is None:
            raise
        raise UserError(f"{path}: cannot open the lock file ({disk_problem(e)})") from None
    if not _stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: is not a file, not marketsim's lock file; move it away and run again")
    return fd


# --------------------------------------------------------------------------- reading a result set


@dataclass(frozen=True)
class ResultView:
    """A result set held still for reading: open ``path / NAME`` for each NAME in ``files``."""

    path: Path
    manifest: dict

    @property
    def kind(self) -> str | None:
        return self.manifest.get("kind")

    @property
    def id(self) -> str:
        return str(self.manifest.get("id"))

    @property
    def files(self) -> list[str]:
        f = self.manifest.get("files") or []
        return sorted(f)


@dataclass(frozen=True)
class ResultSet:
    """The files of one result set, read whole (:func:`read_result`): ``data[NAME]`` is the bytes of a file."""

    path: Path
    kind: str | None
    id: str
    manifest: dict
    data: dict[str, bytes]

    def json(self, name: str) -> Any:
        """A JSON file of the set, parsed."""
        return json.loads(self.data[name].decode("utf-8"))

    def table(self, name: str) -> pd.DataFrame:
        """A ``.csv`` or ``.parquet`` file of the set as a DataFrame."""
        import io

        buf = io.BytesIO(self.data[name])
        return pd.read_parquet(buf) if name.endswith(".parquet") else pd.read_csv(buf)


def _not_a_result(out: Path) -> UserError:
    return UserError(
        f"{out}: not a marketsim result folder (no {MARKER} written by marketsim); give the folder a "
        f"`marketsim run` (or project, fit, backtest, calibrate) wrote"
    )


def _finish_killed_swap(out: Path) -> None:
    """A reader found the journal of a killed writer: finish its swap (with the write lock, as a writer)."""
    try:
        fd = _open_lock(out / HIDDEN / WRITE_LOCK, create=False)
    except OSError as e:
        raise UserError(
            f"{out}: a writer was killed while swapping in a new result set, and it cannot be "
            f"finished from here ({e.strerror}); run the command that writes there again"
        ) from None
    try:
        _flock(fd, blocking=True)
        _recover(out)
    except OSError as e:
        raise UserError(
            f"{out}: a writer was killed while swapping in a new result set, and it cannot be "
            f"finished from here ({disk_problem(e) or e.strerror}); run the command that writes there "
            f"again"
        ) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def consistent_read(out: str | Path) -> Iterator[ResultView]:
    """Hold the result set of ``out`` still while the block reads it: THE protocol for a reader that opens
    result files by path. Yields a :class:`ResultView`; open ``view.path / NAME`` for NAME in ``view.files``.

    Holds a shared ``flock`` on ``out/.marketsim/lock`` (a writer takes it exclusively to swap a new set in,
    so it waits for the block to end); a swap a killed writer left half done is finished first. A folder in
    the older layout (links into ``.marketsim-sets/``) is read from its current set's folder, resolved once.
    UserError (one line) if ``out`` is not a result folder marketsim wrote."""
    out = Path(out)
    if os.path.islink(out):
        raise UserError(
            f"{out}: is a symbolic link; marketsim reads a result folder only as itself, never "
            f"through a link; give the folder it points to"
        )
    for _ in range(5):
        if not _real_dir(out / HIDDEN):  # a copy of the files and the manifest, or the older layout: no writer here
            man = set_manifest(out)
            legacy = None if man is not None else _legacy_current(out)
            if man is not None:
                yield ResultView(out, man)
            elif legacy is not None:
                yield ResultView(legacy, {**_read_json_nofollow(legacy / MARKER), "id": legacy.name})
            else:
                raise _not_a_result(out)
            return
        try:
            fd: int | None = _open_lock(out / HIDDEN / READ_LOCK, create=False)
        except FileNotFoundError:
            fd = None  # no set was ever swapped in here
        try:
            if fd is not None:
                _flock(fd, blocking=True, shared=True)
            if _journal(out) is None:
                man = set_manifest(out)
                if man is None:
                    legacy = _legacy_current(out)
                    if legacy is None:
                        raise _not_a_result(out)
                    man, path = {**_read_json_nofollow(legacy / MARKER), "id": legacy.name}, legacy
                else:
                    path = out
                yield ResultView(path, man)
                return
        finally:
            if fd is not None:
                os.close(fd)
        _finish_killed_swap(out)
    raise UserError(f"{out}: a half-swapped result set could not be finished; run the command that writes there again")


def read_result(out: str | Path, names: list[str] | None = None) -> ResultSet:
    """Every file (or the ``names`` given) of the current result set of ``out``, read whole under
    :func:`consistent_read`, each checked against the size and sha256 in the set's manifest: one set, never
    a mix. Also checks, for file systems without locks, that the set id is the same before and after
    (else reads again). UserError (one line) for a folder marketsim did not write or a file changed since."""
    out = Path(out)
    for _ in range(5):
        with consistent_read(out) as v:
            files = v.manifest.get("files") or []
            data = {}
            for n in names if names is not None else v.files:
                if n not in files:
                    raise UserError(f"{out}: its result set ({v.kind}) has no file {n}; it has {', '.join(v.files)}")
                try:
                    b = _read_nofollow(v.path / n)
                except OSError as e:
                    raise UserError(
                        f"{v.path / n}: cannot be read ({e.strerror}); run the command that wrote {out} again"
                    ) from None
                meta = files[n] if isinstance(files, dict) else None
                if meta is not None:
                    import hashlib

                    if len(b) != meta.get("size") or hashlib.sha256(b).hexdigest() != meta.get("sha256"):
                        raise UserError(
                            f"{v.path / n}: not the file marketsim wrote in this result set (edited, "
                            f"damaged or replaced); run the command that wrote {out} again"
                        )
                data[n] = b
            view = v
        again = set_manifest(out)
        if view.path != out or (_journal(out) is None and again is not None and again["id"] == view.id):
            return ResultSet(out, view.kind, view.id, view.manifest, data)
    raise UserError(f"{out}: its result set kept changing while it was read; read it again when the writer is done")


# --------------------------------------------------------------------------- single files


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def dumps(obj: Any) -> str:
    """JSON text of a result: numpy numbers and dates converted, and a number that does not exist (NaN: no
    purchases in a step, no interval from one replicate) written as null, so the file is valid JSON
    (``json.dumps`` would write the bare token NaN, which JSON does not allow)."""
    return json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)


def _finite(x: Any) -> Any:
    import math

    import numpy as np

    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, dumps(obj) + "\n")


#: The formats every result table is written in: CSV (opens in Excel and any text tool) beside Parquet (typed,
#: compact, for pandas/pyarrow). One mechanism: a table asked for as Parquet always gets its CSV too.
TABLE_FORMATS = ("csv", "parquet")


def write_table(df: pd.DataFrame, path_stem: str | Path, formats: tuple[str, ...] = TABLE_FORMATS) -> list[Path]:
    """Write ``df`` as ``<stem>.csv`` and/or ``<stem>.parquet`` (pyarrow), each atomically. A Parquet table is
    always written with a CSV of the same rows beside it (a file a strategist can open in Excel)."""
    if "parquet" in formats and "csv" not in formats:
        formats = ("csv", *formats)
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


#: The formats every chart is written in: PNG (a picture for slides and mail) and SVG (vector: sharp at any
#: size, and what the self-contained HTML report inlines).
FIGURE_FORMATS = ("png", "svg")


def figure_paths(path: str | Path) -> list[Path]:
    """The files :func:`save_figure` writes for ``path``: ``path`` itself, then the same stem in each other
    format of :data:`FIGURE_FORMATS` (``fan.png`` -> ``fan.png``, ``fan.svg``)."""
    path = Path(path)
    own = path.suffix.lstrip(".").lower() or "png"
    return [path.with_suffix(f".{own}")] + [path.with_suffix(f".{f}") for f in FIGURE_FORMATS if f != own]


def save_figure(fig, path: str | Path, **kw) -> Path:
    """Save a matplotlib figure atomically in the format of the suffix of ``path`` and, beside it, in every
    other format of :data:`FIGURE_FORMATS` (a chart is always a PNG and an SVG). Returns ``path``. The SVG
    carries no date (the same chart gives the same bytes) and its text as paths (no font is needed to view it)."""
    import matplotlib

    for p in figure_paths(path):
        fmt = p.suffix.lstrip(".")
        extra = {"metadata": {"Date": None}} if fmt == "svg" and "metadata" not in kw else {}
        # the SVG's element ids are hashes salted with a random uuid unless a salt is set: fix it
        with atomic_path(p) as tmp, matplotlib.rc_context({"svg.hashsalt": "marketsim"}):
            fig.savefig(tmp, format=fmt, **kw, **extra)
    return Path(path)


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
