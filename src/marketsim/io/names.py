"""Folder names built from user text (scenario names, event ids, option names, command-line settings), and the
settings a result records.

Every name that reaches a path goes through this module. A *plain* part (lower-case letters, digits and ``_``;
scenario names also ``.`` and single ``-``) is used as written, so the usual folders keep their readable names
(``results/tiny/``, ``projection-vs-without-jd_drops_weibo``). Anything else (a ``/``, ``..``, upper case, a
``-`` inside an id, a very long name, a reserved word) becomes a readable slug plus ``--`` and a digest of the
exact text: ``--`` never occurs in a plain name, and the digest (sha256, 40 bits) tells different texts apart,
so two different inputs never give the same folder and no name can leave its folder.

Settings suffixes (:func:`settings_suffix`): ``--`` then ``key<int>`` tokens (``--consumers3000-steps120``) for
the integer and flag settings; when a setting has free text or a real number (``--set``, ``--threshold``), also
the names of the others and a digest of all the settings (``--steps10-set-threshold-3f2a9c1d07``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from marketsim.errors import UserError
from marketsim.runtime.digest import digest as _digest

#: An id or option name used as written in a folder name.
PLAIN_PART = re.compile(r"[a-z0-9_]{1,64}")
#: A scenario name used as written (``results/<name>/``): no ``--`` (that marks a digest or a settings suffix).
PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_.]*(?:-[a-z0-9_.]+)*")
#: Words a part may not be, because the folder layout gives them a meaning.
RESERVED = {"options", "calibration", "index.md"}
MAX_NAME = 64
DIGEST_CHARS = 10

#: Settings written as ``key<int>`` (or a bare flag) in a folder suffix, in this order; others go into the digest.
READABLE_INT = ("seed", "consumers", "steps", "draws", "replicates")
READABLE_FLAG = ("prior", "independent_baseline")
#: Settings that do not change a result (recorded for the record only): never in a folder name or a comparison.
NOT_COMPARED = ("scenario_file", "scenario_file_hash")


def digest(obj: Any, n: int = DIGEST_CHARS) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    return _digest(obj, n)


def readable(text: str, n: int = 32) -> str:
    """A lower-case slug of ``text`` for people: runs of anything but [a-z0-9_] become one ``-`` (never ``--``)."""
    s = re.sub(r"[^a-z0-9_]+", "-", str(text).lower()).strip("-")[:n].strip("-")
    return s or "x"


def part(text: str) -> str:
    """An event id or option name as a folder-name part: as written if plain, else ``<slug>--<digest>``."""
    t = str(text)
    if PLAIN_PART.fullmatch(t) and t not in RESERVED:
        return t
    return f"{readable(t)}--{digest(t)}"


def scenario_folder(name: str) -> str:
    """The folder name of a scenario (``results/<this>/``): the name if plain, else ``<slug>--<digest>``."""
    n = str(name)
    if PLAIN_NAME.fullmatch(n) and len(n) <= MAX_NAME and n not in RESERVED:
        return n
    return f"{readable(n)}--{digest(n)}"


def projection_label(baseline_without: list[str] | None, options: list[str]) -> str:
    """``vs-no-events`` or ``vs-without-<ids>``, plus ``-options-<names>`` when options were compared (the
    options after the first); a label that is not plain or too long is ``<slug>--<digest>`` of the whole."""
    ids = None if not baseline_without else sorted(set(map(str, baseline_without)))
    others = [str(o) for o in options[1:]]
    plain = all(PLAIN_PART.fullmatch(x) and x not in RESERVED for x in (ids or []) + others)
    label = "vs-no-events" if not ids else "vs-without-" + "-".join(ids)
    if others:
        label += "-options-" + "-".join(others)
    if plain and len(label) <= 120:
        return label
    return f"{readable(label, 60)}--{digest(['projection', ids, others])}"


def settings_suffix(settings: dict, named: tuple[str, ...] = ()) -> str:
    """``""`` for no settings; else ``--`` and the settings as a folder-name suffix (see the module docstring).
    ``settings``: option -> value, as recorded (:func:`compared`); ``named``: settings the folder's name already
    says (``baseline_without`` in ``projection-vs-without-...``), left out."""
    s = {k: v for k, v in compared(settings).items() if k not in named}
    if not s:
        return ""
    tokens = [f"{k}{s[k]}" for k in READABLE_INT if k in s and type(s[k]) is int and s[k] >= 0]
    tokens += [k for k in READABLE_FLAG if s.get(k) is True]
    if len(tokens) == len(s):  # integers and flags only: readable as it stands, and unambiguous
        return "--" + "-".join(tokens)
    tokens += sorted(readable(k) for k in s if k not in READABLE_INT + READABLE_FLAG)
    shown: list[str] = []
    for t in tokens:  # as many whole tokens as fit in 60 characters
        if len("-".join(shown + [t])) > 60:
            break
        shown.append(t)
    return "--" + "-".join(shown or ["settings"]) + "-" + digest(s)


def compared(settings: dict | None) -> dict:
    """The settings that decide a result (without the scenario file's path and hash), as plain JSON data."""
    if not settings:
        return {}
    return json.loads(
        json.dumps({k: v for k, v in settings.items() if k not in NOT_COMPARED and v is not None}, default=str)
    )


def differences(old: dict, new: dict) -> list[str]:
    """``key old -> new`` for each compared setting that differs (``-`` for one not given)."""
    a, b = compared(old), compared(new)
    return [
        f"{k} {_short(a.get(k, '-'))} -> {_short(b.get(k, '-'))}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def describe(settings: dict | None) -> str:
    """The settings a command was given, for captions: ``--set behaviour.beta_social=0.5, --steps 10``; "" if none."""
    s = compared(settings)
    out = []
    for k, v in s.items():
        if k == "set":
            out += [f"--set {p}={x}" for p, x in v.items()]
        elif v is True:
            out.append(f"--{k.replace('_', '-')}")
        elif isinstance(v, list):
            out.append(f"--{k.replace('_', '-')} " + " ".join(map(str, v)))
        else:
            out.append(f"--{k.replace('_', '-')} {v}")
    return ", ".join(out)


def _short(v: Any, n: int = 40) -> str:
    t = json.dumps(v, default=str) if not isinstance(v, str) else v
    return t if len(t) <= n else t[: n - 3] + "..."


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it lies inside ``root`` (compared as normalised absolute paths, so no ``..`` part can leave
    it); else UserError. The last guard before a folder built from user text is written."""
    r = os.path.normpath(os.path.abspath(root))
    p = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([r, p]) != r or p == r:
        raise UserError(f"{path}: would be written outside the results folder {root}; this is a bug, please report it")
    return Path(path)
