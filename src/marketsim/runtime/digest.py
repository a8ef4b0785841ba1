"""One digest: the sha256 of a value written as canonical JSON (keys sorted), as hex digits.

Every key, checksum and folder-name digest marketsim makes goes through :func:`digest`: fit-cache keys
(:func:`marketsim.fit.calibrate.cache_key`), scenario digests, sweep spec hashes, posterior keys and checksums,
manifest and fit-cache checksums, folder-name digests (:mod:`marketsim.names`). Two spellings of canonical JSON
exist in files written by earlier versions, and both are kept so that every stored key stays valid:

- compact (``","`` and ``":"``, the default): scenario digests, fit-cache and manifest checksums, folder names;
- ``spaced=True`` (json.dumps' own ``", "`` and ``": "``): fit-cache keys, sweep spec hashes, posterior keys and
  checksums.

``default=str`` (the default) writes a value JSON does not know (a date, a path) as its ``str``;
``default=None`` refuses it (TypeError), for checksums of documents that are JSON already.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

COMPACT = (",", ":")
SPACED = (", ", ": ")


def canonical_json(obj: Any, *, spaced: bool = False, default: Callable[[Any], Any] | None = str) -> str:
    """``obj`` as canonical JSON text: keys sorted, separators compact (or json.dumps' spaced ones)."""
    return json.dumps(obj, sort_keys=True, separators=SPACED if spaced else COMPACT, default=default)


def digest(
    obj: Any, length: int | None = None, *, spaced: bool = False, default: Callable[[Any], Any] | None = str
) -> str:
    """The sha256 of ``obj`` as canonical JSON (:func:`canonical_json`), as its first ``length`` hex digits
    (None: all 64)."""
    h = hashlib.sha256(canonical_json(obj, spaced=spaced, default=default).encode()).hexdigest()
    return h if length is None else h[:length]
