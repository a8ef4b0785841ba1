"""The fit cache: fitted parameters stored under ``results/calibration/<key>.json``, checked like any input.

A fit depends only on what :func:`marketsim.calibrate.cache_key` hashes (the market before the cut-off, the
observations used, the seed, the final stage's consumers, the method), so a stored fit with the same key is
reused by every command and every N at or above that size. An entry is a JSON document::

    {"format": "marketsim-fit/v1", "key": <key>, "sha256": <of the canonical JSON of "fit">, "fit": {...}}

Reading an entry checks the format, the key, the checksum, and every number (finite, within the solver's
limits, one per retailer of the scenario). An entry that fails any check is not used: the fit is done again
and the entry replaced, and the caller gets one line saying why (``note``). A hand-edited or corrupted
entry therefore costs a refit, never a wrong answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .calibrate import ALPHA_LIMIT, TREND_LIMIT, Calibration, CalibrationError, cache_key, calibrate
from .scenario import Scenario

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
    return hashlib.sha256(json.dumps(fit, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def entry(cal: Calibration) -> dict:
    fit = cal.to_dict()
    return {"format": FORMAT, "key": cal.key, "sha256": checksum(fit), "fit": fit}


class BadEntry(ValueError):
    """A cache entry that must not be used; ``str()`` says why, in a few words."""


def read_entry(path: Path, scenario: Scenario, key: str) -> Calibration:
    """The fit stored at ``path``, checked against ``scenario`` and ``key``; raises :class:`BadEntry`."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadEntry(f"unreadable ({e.__class__.__name__})") from None
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
            isinstance(d, dict) and all(_number(v) and abs(v) <= 100 for v in d.values()) for d in offsets.values()):
        raise BadEntry("'offsets' are not numbers of points")
    try:
        cal = Calibration.from_dict(fit)
    except TypeError as e:
        raise BadEntry(f"missing or unknown fields ({e})") from None
    if not all(isinstance(o, dict) and _number(o.get("residual_pp")) for o in cal.observations):
        raise BadEntry("'observations' lack residuals")
    return cal


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def cached_calibration(
    scenario: Scenario,
    cache_dir: str | Path | None,
    *,
    until: dt.date | None = None,
    tol_pp: float | None = None,
    on_progress: Callable[[str, int, float], None] | None = None,
    drop_unidentified: bool = False,
    allow_fixed: bool = False,
    start: Calibration | None = None,
) -> tuple[Calibration, bool, str | None]:
    """The fit for ``scenario``: from ``cache_dir/<key>.json`` if a valid entry is stored, else fitted now and
    stored (atomically). Returns (calibration, was_cached, note): ``note`` is one line when a stored entry was
    refused and refitted. ``cache_dir=None`` never caches."""
    from .store import write_json  # result files are the store's business; imported when a cache is used

    from .store import remove_stale_temps

    key = cache_key(scenario, until, tol_pp)
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.json"
    note = None
    if cache_dir is not None and Path(cache_dir).is_dir():
        remove_stale_temps(cache_dir)  # left by killed writers
    if path is not None and path.exists():
        try:
            failed = read_failure(path, key)
            if failed is not None:  # a fit that failed fails the same way again (it is deterministic)
                raise CalibrationError(failed)
            return read_entry(path, scenario, key), True, None
        except BadEntry as e:
            note = f"calibration cache {path}: {e}; refitting"
    try:
        cal = calibrate(scenario, until=until, tol_pp=tol_pp, on_progress=on_progress,
                        drop_unidentified=drop_unidentified, allow_fixed=allow_fixed, start=start)
    except CalibrationError as e:
        if path is not None and not str(e).startswith(f"{scenario.source}: no "):  # not "no observation..." etc.
            body = {"format": FORMAT, "key": key, "error": str(e)}
            write_json(path, {**body, "sha256": checksum(body)})
        raise
    if path is not None:
        write_json(path, entry(cal))
    return cal, False, note


def read_failure(path: Path, key: str) -> str | None:
    """The stored message of a fit that failed, or None if ``path`` holds a fit (checked like any entry)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or "error" not in doc:
        return None
    body = {k: doc.get(k) for k in ("format", "key", "error")}
    if body["format"] != FORMAT or body["key"] != key or not isinstance(body["error"], str) or doc.get("sha256") != checksum(body):
        raise BadEntry("a stored failure that does not check out")
    return body["error"]


@dataclass(frozen=True)
class Fitted:
    """The parameters a run of ``scenario`` uses: attractiveness and trend per retailer (given, or fitted)."""

    alpha: np.ndarray
    trend: np.ndarray
    calibration: Calibration | None  # None when nothing is 'calibrate'
    cached: bool = False
    note: str | None = None  # one line when a cache entry was refused


def fitted(scenario: Scenario, cache_dir: str | Path | None, **kw) -> Fitted:
    """Given parameters, or the (cached) fit of every 'calibrate' one. Keywords as :func:`cached_calibration`
    (with ``allow_fixed`` a scenario with nothing to fit but observations gets its residuals evaluated)."""
    if not scenario.needs_fit and not (kw.get("allow_fixed") and scenario.observations):
        return Fitted(np.array([r.attractiveness for r in scenario.retailers], dtype=float),
                      np.array([r.trend for r in scenario.retailers], dtype=float), None)
    cal, cached, note = cached_calibration(scenario, cache_dir, **kw)
    return Fitted(cal.alpha_vector(scenario), cal.trend_vector(scenario), cal, cached, note)
