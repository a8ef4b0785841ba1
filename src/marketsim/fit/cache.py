"""The fit cache: fitted parameters stored under ``results/calibration/<key>.json``, checked like any input.

A fit depends only on what :func:`marketsim.fit.calibrate.cache_key` hashes (the market before the cut-off, the
observations used, the seed, the final stage's consumers, the method), so a stored fit with the same key is
reused by every command and every N at or above that size. An entry is a JSON document::

    {"format": "marketsim-fit/v1", "key": <key>, "sha256": <of the canonical JSON of "fit">, "fit": {...}}

Reading an entry checks the format, the key, the checksum, and every number (finite, within the solver's
limits, one per retailer of the scenario). An entry that fails any check is not used: the fit is done again
and the entry replaced, and the caller gets one line saying why (``note``). A hand-edited or corrupted
entry therefore costs a refit, never a wrong answer. Only a regular file is ever opened (a folder, a FIFO, a
socket or a symbolic link at an entry's name is a damaged entry: never read, so a FIFO cannot hang the
command), and an entry that cannot be replaced (a non-empty folder, a read-only cache) is one line naming
the cache folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marketsim.errors import UserError
from marketsim.fit.calibrate import (
    ALPHA_LIMIT,
    EVENT_LIMIT,
    TREND_LIMIT,
    Calibration,
    CalibrationError,
    cache_key,
    calibrate,
    stored_trend_se,
    with_event_values,
)
from marketsim.fit.options import FitOptions, fit_options
from marketsim.io.store import disk_problem, remove_stale_temps, write_json
from marketsim.runtime.digest import digest
from marketsim.scenario.core import Scenario

FORMAT = "marketsim-fit/v1"
#: Environment variable naming a fit cache folder shared by every results root (default: <results>/calibration).
CACHE_ENV = "MARKETSIM_FIT_CACHE"


def cache_dir(results_root: str | Path) -> Path:
    """Where fits are cached: $MARKETSIM_FIT_CACHE if set (one cache for several projects or result roots; a
    fit's key says everything it depends on, so sharing is safe), else ``results_root/calibration``."""
    import os

    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(results_root) / "calibration"


def checksum(fit: dict) -> str:
    """sha256 of the canonical JSON of a fit (sorted keys, no spaces)."""
    return digest(fit, default=None)


def entry(cal: Calibration) -> dict:
    fit = cal.to_dict()
    return {"format": FORMAT, "key": cal.key, "sha256": checksum(fit), "fit": fit}


class BadEntry(ValueError):
    """A cache entry that must not be used; ``str()`` says why, in a few words."""


def what_is(path: Path) -> str | None:
    """None if nothing is at ``path`` (not even a broken link); "a file" for a regular file; else what is
    there ("a folder", "a FIFO", "a symbolic link", ...). Never follows a link, never opens anything."""
    import os
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"not accessible ({e.strerror})"
    for test, what in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(st.st_mode):
            return what
    return "not a regular file"


def read_regular(path: Path) -> str:
    """The text of the regular file at ``path``. Anything else (a folder, a FIFO, a device, a symbolic link) is
    never read: opened with O_NOFOLLOW | O_NONBLOCK (a FIFO cannot block) and checked with fstat. Raises
    :class:`BadEntry` saying what is there instead, or why it cannot be read."""
    import os
    import stat

    what = what_is(path)
    if what != "a file":
        raise BadEntry(f"is {what or 'missing'}, not a file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise BadEntry(f"unreadable ({e.strerror or e.__class__.__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the lstat and the open
            raise BadEntry("is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as e:
        raise BadEntry(f"unreadable ({e.strerror or e.__class__.__name__})") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise BadEntry("unreadable (not UTF-8 text)") from None


def make_room(path: Path, what: str) -> None:
    """Clear the name ``path`` for a new entry when something other than a file holds it: an empty folder is
    removed, a FIFO, socket or link is unlinked (a rename replaces them anyway). Raises UserError (one line) if
    it cannot be (a folder with something in it is never touched)."""
    import os

    kind = what_is(path)
    if kind in (None, "a file"):
        return
    try:
        os.rmdir(path) if kind == "a folder" else os.unlink(path)
    except OSError as e:
        raise UserError(
            f"{path}: is {kind}, not {what}, and cannot be replaced ({e.strerror}); remove it, or point "
            f"${CACHE_ENV} at another folder"
        ) from None


def check_folder(folder: Path) -> None:
    """One line (UserError) if the cache ``folder`` is something other than a folder (or nothing yet, made
    when a fit is stored), or lies under a file."""
    import os

    q = folder
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    if not q.is_dir():
        where = "" if q == folder else f" ({q} is {what_is(q) or 'not a folder'})"
        raise UserError(
            f"{folder}: the fit cache is not a folder{where}; point ${CACHE_ENV} at a folder "
            f"(unset, the cache is <--results>/calibration)"
        )


def check_writable(folder: Path, what: str) -> None:
    """One line (UserError) before a costly fit whose result could not be stored: the cache ``folder`` exists
    and is not writable (a read-only shared cache that lacks the entry). Names the folder and $MARKETSIM_FIT_CACHE
    (the cache may not be under --results at all)."""
    import os

    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"{folder}: the fit cache is not writable, so {what} cannot be stored there; make it "
            f"writable, or point ${CACHE_ENV} at a writable folder (unset, the cache is "
            f"<--results>/calibration)"
        )


def store_entry(path: Path, doc: dict, what: str) -> None:
    """Write ``doc`` at ``path`` (atomically), first clearing a non-file at that name (:func:`make_room`); a cache
    that refuses the write is one line naming it and $MARKETSIM_FIT_CACHE."""
    make_room(path, what)
    try:
        write_json(path, doc)
    except OSError as e:
        problem = disk_problem(e)
        if problem is None and not isinstance(e, (IsADirectoryError, NotADirectoryError)):
            raise
        raise UserError(
            f"{path.parent}: cannot store {what} in the fit cache ({problem or e.strerror}); free space, "
            f"make it writable, or point ${CACHE_ENV} at another folder"
        ) from None


def read_entry(path: Path, scenario: Scenario, key: str) -> Calibration:
    """The fit stored at ``path``, checked against ``scenario`` and ``key``; raises :class:`BadEntry`."""
    text = read_regular(path)
    try:
        doc = json.loads(text)
    except ValueError:
        raise BadEntry("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadEntry(f"not a {FORMAT} document")
    fit = doc.get("fit")
    if doc.get("key") != key or not isinstance(fit, dict) or fit.get("key") != key:
        raise BadEntry("its key does not match the scenario")
    if doc.get("sha256") != checksum(fit):
        raise BadEntry("checksum mismatch (edited or corrupted)")
    names = set(scenario.retailer_names)
    for field, limit in (("alpha", ALPHA_LIMIT), ("trend", TREND_LIMIT)):
        vals = fit.get(field)
        if not isinstance(vals, dict) or set(vals) != names:
            raise BadEntry(f"'{field}' does not name exactly the scenario's retailers")
        for n, v in vals.items():
            if not _number(v) or abs(v) > limit:
                raise BadEntry(f"{field}[{n}] = {v!r} is not a number within +-{limit:g}")
    offsets = fit.get("offsets")
    if not isinstance(offsets, dict) or not all(
        isinstance(d, dict) and all(_number(v) and abs(v) <= 100 for v in d.values()) for d in offsets.values()
    ):
        raise BadEntry("'offsets' are not numbers of points")
    events = fit.get("event_values", {})
    if not isinstance(events, dict) or not set(events) <= set(scenario.calibrated_events):
        raise BadEntry("'event_values' do not name exactly the scenario's calibrated recurring effects")
    if not all(_number(v) and abs(v) <= EVENT_LIMIT for v in events.values()):
        raise BadEntry(f"'event_values' are not numbers within +-{EVENT_LIMIT:g}")
    levels = fit.get("level_sources", {})  # (absent in fits stored before it existed: none)
    if not isinstance(levels, dict) or not all(n in names and isinstance(v, str) for n, v in levels.items()):
        raise BadEntry("'level_sources' do not name the scenario's retailers and a source each")
    try:
        cal = Calibration.from_dict(fit)
    except TypeError as e:
        raise BadEntry(f"missing or unknown fields ({e})") from None
    if not all(isinstance(o, dict) and _number(o.get("residual_pp")) for o in cal.observations):
        raise BadEntry("'observations' lack residuals")
    se = fit.get("trend_se", {})
    if not isinstance(se, dict) or not all(
        n in names and isinstance(v, (int, float)) and not isinstance(v, bool) and not v < 0 for n, v in se.items()
    ):
        raise BadEntry("'trend_se' are not standard errors of the scenario's retailers' trends")
    if "trend_se" not in fit:  # stored before the trends' standard errors: from its Jacobian and residuals
        cal = dataclasses.replace(cal, trend_se=stored_trend_se(scenario, cal))
    return cal


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def cached_calibration(
    scenario: Scenario,
    cache_dir: str | Path | None,
    *,
    options: FitOptions | None = None,
    on_progress: Callable[[str, int, float], None] | None = None,
    **fields,
) -> tuple[Calibration, bool, str | None]:
    """The fit for ``scenario`` with ``options`` (:class:`marketsim.fit.options.FitOptions`; keyword ``fields``
    change single ones): from ``cache_dir/<key>.json`` if a valid entry is stored, else fitted now and
    stored (atomically). Returns (calibration, was_cached, note): ``note`` is one line when a stored entry was
    refused and refitted. ``cache_dir=None`` never caches."""
    options = fit_options(options, fields)
    until, tol_pp = options.until, options.tol_pp
    key = cache_key(scenario, until, tol_pp)
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.json"
    note = None
    if cache_dir is not None:
        check_folder(Path(cache_dir))
    if cache_dir is not None and Path(cache_dir).is_dir():
        remove_stale_temps(cache_dir)  # left by killed writers
    if path is not None and what_is(path) is not None:
        try:
            failed = read_failure(path, key)
            if failed is not None:  # a fit that failed fails the same way again (it is deterministic)
                raise CalibrationError(failed)
            return read_entry(path, scenario, key), True, None
        except BadEntry as e:
            note = f"calibration cache {path}: {e}; refitting"
            make_room(path, "a fit")  # a folder or FIFO there: cleared now (or one line), not after the fit
    if cache_dir is not None:  # (so path is not None)
        check_writable(
            Path(cache_dir), "this scenario's fit (none usable is stored)"
        )  # before the costly fit: a result that could not be stored
    try:
        cal = calibrate(scenario, options=options, on_progress=on_progress)
    except CalibrationError as e:
        if path is not None and not str(e).startswith(f"{scenario.source}: no "):  # not "no observation..." etc.
            body = {"format": FORMAT, "key": key, "error": str(e)}
            store_entry(path, {**body, "sha256": checksum(body)}, "a fit")
        raise
    if path is not None:
        store_entry(path, entry(cal), "a fit")
    return cal, False, note


def read_failure(path: Path, key: str) -> str | None:
    """The stored message of a fit that failed, or None if ``path`` holds a fit (checked like any entry)."""
    try:
        doc = json.loads(read_regular(path))
    except ValueError:  # BadEntry included: read_entry says why
        return None
    if not isinstance(doc, dict) or "error" not in doc:
        return None
    body = {k: doc.get(k) for k in ("format", "key", "error")}
    if (
        body["format"] != FORMAT
        or body["key"] != key
        or not isinstance(body["error"], str)
        or doc.get("sha256") != checksum(body)
    ):
        raise BadEntry("a stored failure that does not check out")
    return body["error"]


@dataclass(frozen=True)
class Fitted:
    """The parameters a run of ``scenario`` uses: attractiveness and trend per retailer (given, or fitted), and
    ``scenario`` itself with its fitted recurring effects' sizes (:func:`marketsim.fit.calibrate.with_event_values`):
    the scenario to simulate."""

    alpha: np.ndarray
    trend: np.ndarray
    calibration: Calibration | None  # None when nothing is 'calibrate'
    cached: bool = False
    note: str | None = None  # one line when a cache entry was refused
    scenario: Scenario | None = None  # the scenario with the fitted event sizes (None: the one given)


def fitted(
    scenario: Scenario,
    cache_dir: str | Path | None,
    *,
    options: FitOptions | None = None,
    on_progress: Callable[[str, int, float], None] | None = None,
    **fields,
) -> Fitted:
    """Given parameters, or the (cached) fit of every 'calibrate' one. Keywords as :func:`cached_calibration`
    (with ``options.allow_fixed`` a scenario with nothing to fit but observations gets its residuals evaluated)."""
    options = fit_options(options, fields)
    if not scenario.needs_fit and not (options.allow_fixed and scenario.fittable_observations):
        return Fitted(
            np.array([r.attractiveness for r in scenario.retailers], dtype=float),
            np.array([r.trend for r in scenario.retailers], dtype=float),
            None,
        )
    cal, cached, note = cached_calibration(scenario, cache_dir, options=options, on_progress=on_progress)
    return Fitted(
        cal.alpha_vector(scenario),
        cal.trend_vector(scenario),
        cal,
        cached,
        note,
        with_event_values(scenario, cal.event_values) if cal.event_values else None,
    )
