"""Result files: every file is written atomically, and a command's whole result set is one atomic unit.

- :func:`atomic_path`: one file, through a temporary file beside it (``.NAME.PID-RANDOM.tmp``, flock-ed by
  its writer while it exists), then ``os.replace``. :func:`remove_stale_temps` removes the temporary files
  of writers that died (provably: nobody holds the lock, and the writer's pid is gone).
- :func:`result_set`: all files of one command (``run``, ``project``) appear together or not at all, in a
  folder that keeps whatever else is in it (see its docstring for the layout and the crash analysis).
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
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from .errors import UserError

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
    writer exactly there. Points: ``wrote NAME`` after each file, ``before swap`` and ``after swap``."""
    hook = os.environ.get("MARKETSIM_TEST_PAUSE")
    if hook and hook.rsplit("@", 1)[0] == point:
        import sys
        import time

        print(f"marketsim-test-pause {point}", file=sys.stderr, flush=True)
        time.sleep(float(hook.rsplit("@", 1)[1]) if "@" in hook else 5.0)


def _flock(fd: int, *, blocking: bool) -> bool:
    """Exclusive flock on ``fd``; False if another holder has it (non-blocking). No-op (True) off POSIX."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
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

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or not e.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY)
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


#: Hidden folder inside a result folder that holds its result sets (see result_set).
SETS_DIR = ".marketsim-sets"
#: The marker file of a result set: kind, writer, version, time (also reachable as OUT/.marketsim.json).
MARKER = ".marketsim.json"
#: Free space the preflight asks of an output location (written once and removed).
PROBE_BYTES = 64 * 1024

_DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EFBIG: "file too large"}


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
    """Preflight an output folder before any work: it is a folder or can be created (no part of the path is
    a file), it is writable and has room for a first write (a PROBE_BYTES file is written, synced and
    removed: nothing permanent is created), and, with ``kind`` (a result set, see :func:`result_set`), it is
    empty, new, or a folder marketsim made for the same kind of result. Raises UserError (one line)."""
    p = Path(path)
    what = _what_is(p)
    if what not in (None, "a folder"):
        raise UserError(f"{p}: is {what}, not a folder; choose a folder for {option}")
    q = p
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    if _what_is(q) != "a folder":
        raise UserError(f"{p}: cannot create a folder there: {q} is {_what_is(q) or 'not a folder'}; choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".marketsim-probe.{os.getpid()}-", suffix=".tmp", dir=q)
    except OSError as e:
        raise UserError(f"{p}: cannot write in {q} ({disk_problem(e) or e.strerror}); choose another {option}") from None
    try:
        _flock(fd, blocking=True)
        block = memoryview(b"\0" * PROBE_BYTES)
        while block:  # a nearly full disk takes part of a write, then refuses the rest
            block = block[os.write(fd, block):]
        os.fsync(fd)
    except OSError as e:
        raise UserError(f"{p}: cannot write in {q} ({disk_problem(e) or e.strerror}); free space or choose another {option}") from None
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
    for test, what in ((_stat.S_ISDIR, "a folder"), (_stat.S_ISREG, "a file"), (_stat.S_ISFIFO, "a FIFO"),
                       (_stat.S_ISCHR, "a device"), (_stat.S_ISBLK, "a device"), (_stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return what
    return "not a folder"


def _check_owner(p: Path, kind: str, option: str) -> None:
    """A non-empty folder takes a result set only if marketsim made it (for the same kind), or if all it
    holds is other marketsim result folders (``results/NAME/`` made by ``project`` for ``projection/``)."""
    if (p / SETS_DIR).is_dir():
        old = _current_kind(p)
        if old not in (None, kind):
            raise UserError(f"{p}: holds a marketsim {old} result; this command writes a {kind} result; choose another {option}")
        return
    try:
        foreign = [e for e in os.listdir(p) if not (p / e / SETS_DIR).is_dir()]
    except OSError as e:
        raise UserError(f"{p}: cannot list the folder ({e.strerror}); choose another {option}") from None
    if foreign:
        raise UserError(f"{p}: not empty and not made by marketsim (no {MARKER}); choose a new or empty folder for {option}, "
                        f"or one marketsim wrote")


def _current_kind(p: Path) -> str | None:
    try:
        return json.loads((p / SETS_DIR / "current" / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------- result sets


_committed: list[Path] = []


def committed_sets() -> list[Path]:
    """Result folders whose new set this process has swapped in (for an honest message after Ctrl-C)."""
    return list(_committed)


def current_set(out: str | Path) -> Path | None:
    """The folder holding the current result set of ``out`` (resolved once: reading every file from it
    gives one consistent set even while a new set is swapped in), or None."""
    cur = Path(out) / SETS_DIR / "current"
    return cur.resolve() if cur.is_dir() else None


@contextlib.contextmanager
def result_set(out: str | Path, kind: str, *, writer: str | None = None) -> Iterator[Path]:
    """Write a command's whole result set as one atomic unit. Yields a fresh, empty folder: write every file
    of the set into it (with the usual ``write_json``/``write_table``/``save_figure``); when the block ends
    normally the set is swapped in at once, so a reader of ``out`` finds the old set or the new one, never
    a mix. If the block raises (an error, Ctrl-C) nothing in ``out`` changes and the new files are removed.

    Layout (``out`` keeps everything marketsim did not write: a user's notes, another command's subfolder
    such as ``projection/``; they are never moved or deleted)::

        out/.marketsim-sets/set-<time>-<random>/   the files of one set, and its marker .marketsim.json
        out/.marketsim-sets/current                symlink -> set-...: THE one pointer that is swapped
        out/.marketsim-sets/.lock                  flock-ed while a command writes here (a second one waits)
        out/<file>                                 symlink -> .marketsim-sets/current/<file>, one per file

    The per-file links never change (their target goes through ``current``); only ``current`` is replaced,
    by ``rename(2)`` of a new symlink over it, which is atomic. So at every instant a name in ``out``
    resolves into exactly one set: the one ``current`` names. Steps, and what a SIGKILL after each leaves:

    1. preflight, mkdir, take the lock (waiting for another writer), recover: remove every entry of
       ``.marketsim-sets`` that ``current`` does not name (sets of killed writers, half-made links),
       dangling per-file links and stale temporary files. Killed here: nothing changed.
    2. write the files into ``.marketsim-sets/new-<pid>-<random>/`` and the marker, fsync, rename the folder
       to ``set-...``. Killed here: the old set is intact and current; the new folder is removed by step 1
       of the next command writing here.
    3. create the per-file links the new set needs and the old one lacked: they dangle (the file is absent,
       as in the old set) until step 4. Killed here: same as 2; dangling links are removed by recovery.
    4. ``symlink(set-..., current.<random>)``, then ``rename(current.<random>, current)``: the swap. Killed
       before the rename: the old set is current, the stray link is removed by recovery. After it: the new
       set is current and complete.
    5. remove per-file links that now dangle (files of the old set that the new one lacks), and the old set's
       folder. Killed here: the new set is current; leftovers are removed by recovery.

    Ctrl-C is held back during steps 3-5 (the commit), so a KeyboardInterrupt means either "nothing
    changed" or "the new set was swapped in" (:func:`committed_sets` says which). A full disk or a
    read-only folder is one line (UserError) and changes nothing. ``writer`` (e.g. "marketsim run") and the
    package version and time go into the marker. Off POSIX (no symlinks) the files are replaced one by one.
    """
    from . import __version__
    from .executor import deferred_interrupt

    out = Path(out)
    check_output_dir(out, kind=kind)
    try:
        (out / SETS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the result folder ({disk_problem(e) or e.strerror}); choose another --out") from None
    sets = out / SETS_DIR
    with _exclusive(sets / ".lock"):  # another command writing here finishes first (its set is whole too)
        _recover(out)
        new = Path(tempfile.mkdtemp(prefix=f"new-{os.getpid()}-", dir=sets))
        os.chmod(new, 0o777 & ~_umask())  # mkdtemp makes 0700; results get the usual permissions
        committed = False
        try:
            try:
                yield new
                names = sorted(os.listdir(new))
                write_json(new / MARKER, {
                    "kind": kind, "writer": writer or f"marketsim {kind}", "version": __version__,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "host": socket.gethostname(), "pid": os.getpid(), "files": names,
                })
                _fsync_dir(new)
                final = sets / f"set-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
                os.rename(new, final)
                new = final
                with deferred_interrupt():
                    _commit(out, final, names + [MARKER])
                    committed = True
                    _committed.append(out)
            except OSError as e:
                problem = disk_problem(e)
                if problem is None:
                    raise
                what = f" ({Path(e.filename).name})" if e.filename else ""
                raise UserError(f"{out}: {problem} while writing the result set{what}; "
                                f"no result set was changed; free space or choose another --out") from None
        finally:
            cur = sets / "current"
            if not committed and not (cur.is_symlink() and os.readlink(cur) == new.name):  # never the current set
                shutil.rmtree(new, ignore_errors=True)


def _commit(out: Path, new: Path, names: list[str]) -> None:
    """Steps 3-5 of :func:`result_set`: per-file links, the swap of ``current``, the clean-up."""
    sets = out / SETS_DIR
    if os.name != "posix":  # no symlinks: replace file by file (not atomic as a set)
        for n in names:
            os.replace(new / n, out / n)
        return
    links = {n: f"{SETS_DIR}/current/{n}" for n in names}
    for n, target in links.items():  # refuse before changing anything
        link = out / n
        if os.path.lexists(link) and not (link.is_symlink() and os.readlink(link) == target):
            raise UserError(f"{link}: exists and was not written by marketsim; move it away and run again; no result set was changed")
    for n, target in links.items():
        if not os.path.lexists(out / n):
            os.symlink(target, out / n)
    cur = sets / "current"
    old = os.readlink(cur) if cur.is_symlink() else None
    tmp = sets / f"current.{secrets.token_hex(4)}"
    os.symlink(new.name, tmp)
    _test_pause("before swap")
    os.replace(tmp, cur)  # the swap
    _fsync_dir(sets)
    _fsync_dir(out)
    _test_pause("after swap")
    for link in _our_links(out):
        if link.name not in links:
            link.unlink()
    if old and old != new.name:
        shutil.rmtree(sets / old, ignore_errors=True)


def _our_links(out: Path) -> list[Path]:
    prefix = f"{SETS_DIR}/current/"
    found = []
    for e in os.scandir(out):
        if e.is_symlink() and os.readlink(e.path).startswith(prefix):
            found.append(Path(e.path))
    return found


def _recover(out: Path) -> None:
    """Step 1 of :func:`result_set` (with the lock held): remove what killed writers left."""
    sets = out / SETS_DIR
    cur = sets / "current"
    keep = os.readlink(cur) if cur.is_symlink() else None
    for e in os.scandir(sets):
        if e.name in (".lock", "current") or e.name == keep:
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    for link in _our_links(out):
        if not link.exists():
            link.unlink()
    remove_stale_temps(out)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` (waiting for another holder; released by the OS even on SIGKILL)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _flock(fd, blocking=True)
        yield
    finally:
        os.close(fd)


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
