"""Reading YAML files safely, once: plain data (dicts, lists, str, int, float, bool, None, dates) plus a
:class:`LineMap` from field paths to lines, for one-line error messages.

A hostile or broken file costs nothing and never gives a traceback. :func:`load` works in two passes:

1. a streaming pass over the parser's events (``yaml.parse``: iterative, nothing built) that refuses
   nesting deeper than :data:`MAX_DEPTH`, an alias that refers to its own enclosing node (a recursive
   structure), and aliases whose expansion adds more than :data:`MAX_ALIAS_NODES` nodes (an "alias bomb":
   nine lines of ``&a [*a, *a, ...]`` expand to 10^9 nodes). It tracks, per anchor, the size and the height
   of its node with aliases expanded, so a refusal happens at the first alias that crosses the budget;
2. ``yaml.compose`` once (aliases stay shared references), then the data is built from the nodes here,
   with PyYAML's safe resolver and scalar constructors (no Python objects), refusing duplicate keys in
   one mapping (with both lines), impossible dates and times (``2013-02-30``, ``25:00:00``) and tags other
   than the plain YAML ones, each as ``file:line: field: problem``.

Files are read by :func:`read_file`: only regular files (a folder, a FIFO or a device is refused by
``stat`` before anything is opened, and a FIFO is never opened in blocking mode), at most
:data:`MAX_BYTES`, UTF-8. :func:`load_file` also requires the top level to be a mapping, and says what the
file is instead ("it reads as a string") without echoing its contents.

Every error is a :class:`~marketsim.errors.ScenarioError`.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, DocumentStartEvent, ScalarEvent
from yaml.nodes import ScalarNode, SequenceNode

from marketsim.errors import ScenarioError

#: Deepest nesting of mappings and lists accepted (a scenario file uses about 5).
MAX_DEPTH = 64
#: Most nodes that aliases may add to a document when expanded (a scenario file uses none or a few dozen).
MAX_ALIAS_NODES = 10_000
#: Largest file read (a scenario file is a few KB).
MAX_BYTES = 4 * 1024 * 1024
#: PyYAML's safe loader, on libyaml when PyYAML was built with it (100x faster on hostile input: the pure
#: Python scanner spends ~0.3 s looking ahead 1024 characters for a possible key in a line of '[[[[...').
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH} levels of mappings and lists"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_PLAIN_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_WHAT = {
    "tag:yaml.org,2002:timestamp": "a valid date or time (YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS)",
    "tag:yaml.org,2002:int": "a valid integer",
    "tag:yaml.org,2002:float": "a valid number",
}


class LineMap:
    """Map a field path (``retailers[1].logins[0]``, ``calendar.start``) to the file and line it is on.

    ``over(base)`` chains the map of a file to the map of the file it starts from (``base:``), so a field
    the file does not define is found in its base. A map of merged files may instead name, per field, the file
    its line is in: ``sources`` (field path -> file; fields not in it are in ``source``), and the path the field
    has in that file: ``paths`` (field path -> its path there, where they differ: a base's ``events[2]`` is
    ``events[0]`` of the file that writes it)."""

    def __init__(self, text: str | None = None, source: str = "<scenario>", lines: dict[str, int] | None = None):
        self.source = source
        self.lines: dict[str, int] = dict(lines or {})
        self.sources: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        self.fallback: LineMap | None = None
        if text:
            self.lines.update(load(text, source)[1].lines)

    def over(self, base: LineMap) -> LineMap:
        """Look fields up here first, then in ``base`` (the file this one starts from)."""
        self.fallback = base
        return self

    def find(self, path: str) -> tuple[str, int | None]:
        """(file, line) of the nearest enclosing field that a file defines."""
        return self.where(path)[:2]

    def where(self, path: str) -> tuple[str, int | None, str]:
        """(file, line, path in that file) of the nearest enclosing field that a file defines, the path extended
        again to the field asked for: ``events[2].stake`` of a merged scenario is ``events[0].stake`` of the file
        whose line it is. (source, None, path) if no file defines it."""
        p = path
        while p:
            m: LineMap | None = self
            while m is not None:  # this file, then its bases
                if p in m.lines:
                    return m.sources.get(p, m.source), m.lines[p], m.paths.get(p, p) + path[len(p) :]
                m = m.fallback
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return self.source, None, path

    def get(self, path: str) -> int | None:
        return self.find(path)[1]


# --------------------------------------------------------------------------- reading files


def describe_path(p: Path) -> str | None:
    """What ``p`` is if it is not a regular file ("a folder", "a FIFO", ...), None if it is one. Uses
    ``stat`` only (follows symbolic links), so nothing is opened."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "missing" if not os.path.lexists(p) else "a broken symbolic link"
    except NotADirectoryError:
        return "missing (a part of the path is a file)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links"
        return f"not accessible ({e.strerror})"
    except ValueError:  # a NUL character, or text no file name can hold
        return "not a usable file path"
    return _file_type(st.st_mode)


def _file_type(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return what
    return "not a regular file"


class Referrer(NamedTuple):
    """Where a file was named: the referring file, its line, the field (``base``), and how to call the named
    file in a message (``base scenario 'x.yaml'``). Errors about the named file are reported there."""

    source: str
    line: int | None
    field: str
    label: str


def read_file(path: str | Path, *, source: str | None = None, referrer: Referrer | None = None) -> str:
    """The text of a YAML file. Refuses (one line) anything but a readable regular UTF-8 file of at most
    MAX_BYTES, saying what the path is. With ``referrer`` the error is reported at the reference that named
    ``path`` (e.g. a ``base:`` line). The file's contents never appear in a message."""
    p = Path(path)
    source = source or str(p)

    def fail(problem: str) -> NoReturn:
        if referrer is None:
            raise ScenarioError(problem, source=source)
        raise ScenarioError(
            f"{referrer.label} {problem}", source=referrer.source, path=referrer.field, line=referrer.line
        )

    if "\0" in str(p):
        fail(f"({str(p)[:200]!r}) contains a NUL character; allowed: a file path without one")
    what = describe_path(p)
    if what is not None and what.startswith("missing"):
        fail(f"not found (looked for {p})" if referrer else "no such file")
    if what is not None:
        fail(
            f"({p}) is {what}, not a regular file; allowed: a YAML file"
            if referrer
            else f"is {what}, not a regular file; allowed: a YAML file"
        )
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it must not block
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        fail(f"cannot be read ({e.strerror})")
    try:
        st = os.fstat(fd)
        kind = _file_type(st.st_mode)
        if kind is not None:
            fail(f"is {kind}, not a regular file; allowed: a YAML file")
        if st.st_size > MAX_BYTES:
            fail(f"is {st.st_size:,} bytes; allowed: at most {MAX_BYTES:,} (a scenario file is a few KB)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(st.st_size + 1)  # not read(MAX_BYTES): that would allocate MAX_BYTES for a small file
            if len(raw) > st.st_size:  # it grew since the stat
                raw += fh.read(MAX_BYTES + 1 - len(raw))
    except OSError as e:
        fail(f"cannot be read ({e.strerror})")
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        fail(f"is larger than {MAX_BYTES:,} bytes; allowed: at most {MAX_BYTES:,} (a scenario file is a few KB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"is not UTF-8 text (byte {e.start} is not); allowed: a YAML text file")
    raise AssertionError


def load_file(path: str | Path, *, source: str | None = None, referrer: Referrer | None = None) -> tuple[dict, LineMap]:
    """Read and load a YAML file whose top level must be a mapping: (data, line map). See :func:`read_file`."""
    source = source or str(path)
    data, lines = load(read_file(path, source=source, referrer=referrer), source)
    if not isinstance(data, dict):
        problem = (
            f"is not a YAML mapping of keys (it reads as {_kind(data)}); allowed: a YAML file of 'key: value' lines"
        )
        if referrer is None:
            raise ScenarioError(problem, source=source)
        raise ScenarioError(
            f"{referrer.label} ({path}) {problem}", source=referrer.source, path=referrer.field, line=referrer.line
        )
    return data, lines


def _kind(x: Any) -> str:
    """What a value is, without showing it."""
    if x is None:
        return "nothing: the file is empty"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return f"one string of {len(x):,} characters"
    if isinstance(x, list):
        return f"a list of {len(x)} items"
    return type(x).__name__


# --------------------------------------------------------------------------- loading text


def load(text: str, source: str = "<scenario>") -> tuple[Any, LineMap]:
    """Plain data and a line map from YAML text (one document). Raises ScenarioError (one line)."""
    check_events(text, source)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from None
    except RecursionError:  # cannot happen after check_events; kept so that no input ever gives a traceback
        raise ScenarioError(_TOO_DEEP, source=source) from None
    lines = LineMap(source=source)
    if node is None:
        return None, lines
    return _Builder(source, lines.lines).build(node, ""), lines


def check_events(text: str, source: str = "<scenario>") -> None:
    """The streaming pass: refuse too deep nesting, recursive aliases and alias bombs before anything is
    built. Memory is O(depth + number of anchors); stops at the first offending event."""
    # per open collection: [anchor, size, height] with aliases expanded (size capped at the budget)
    stack: list[list] = []
    done: dict[str, tuple[int, int]] = {}  # anchor -> (size, height) of its finished node
    open_anchors: set[str] = set()
    added = 0  # nodes added by expanding aliases
    cap = MAX_ALIAS_NODES + 1

    def fail(ev, problem: str) -> NoReturn:
        raise ScenarioError(problem, source=source, line=ev.start_mark.line + 1)

    def finish(size: int, height: int) -> None:
        if stack:
            top = stack[-1]
            top[1] = min(cap, top[1] + size)
            top[2] = max(top[2], height)

    try:
        for ev in yaml.parse(text, Loader=_LOADER):
            if isinstance(ev, CollectionStartEvent):
                if len(stack) + 1 > MAX_DEPTH:
                    fail(ev, _TOO_DEEP)
                stack.append([ev.anchor, 1, 0])
                if ev.anchor is not None:
                    open_anchors.add(ev.anchor)
            elif isinstance(ev, CollectionEndEvent):
                anchor, size, height = stack.pop()
                if anchor is not None:
                    open_anchors.discard(anchor)
                    done[anchor] = (size, height + 1)
                finish(size, height + 1)
            elif isinstance(ev, ScalarEvent):
                if ev.anchor is not None:
                    done[ev.anchor] = (1, 0)
                finish(1, 0)
            elif isinstance(ev, AliasEvent):
                if ev.anchor in open_anchors:
                    fail(
                        ev,
                        f"alias *{ev.anchor} refers to a node that contains it (a recursive structure); allowed: aliases of finished nodes",
                    )
                if ev.anchor not in done:
                    fail(ev, f"alias *{ev.anchor} refers to no anchor &{ev.anchor} defined before it")
                size, height = done[ev.anchor]
                if len(stack) + height > MAX_DEPTH:
                    fail(
                        ev,
                        f"alias *{ev.anchor} nests deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH} levels of mappings and lists",
                    )
                added += size
                if added > MAX_ALIAS_NODES:
                    fail(
                        ev,
                        f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (an alias bomb?); allowed: at most {MAX_ALIAS_NODES:,}",
                    )
                finish(size, height)
            elif isinstance(ev, DocumentStartEvent):
                done.clear()
                open_anchors.clear()
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from None


def _yaml_error(e: yaml.YAMLError, source: str) -> ScenarioError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "nesting depth" in problem:  # libyaml >= 0.2.6 stops at 1000 levels while scanning, before our limit
        return ScenarioError(_TOO_DEEP, source=source, line=line)
    return ScenarioError(f"not valid YAML: {problem}", source=source, line=line)


class _Builder:
    """Plain data from a composed node tree, with PyYAML's safe scalar constructors; fills the line map."""

    def __init__(self, source: str, lines: dict[str, int]):
        self.source, self.lines = source, lines
        self.ctor = SafeConstructor()

    def fail(self, node, path: str, problem: str) -> NoReturn:
        raise ScenarioError(problem, source=self.source, path=path, line=node.start_mark.line + 1)

    def build(self, node, path: str) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                self.fail(node, path, f"unsupported tag {node.tag!r}; allowed: plain YAML lists")
            return [self.build(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        if node.tag != _MAP_TAG:
            self.fail(node, path, f"unsupported tag {node.tag!r}; allowed: plain YAML mappings")
        seen: dict[Any, int] = {}
        for k, _ in node.value:  # duplicates among the mapping's own keys (merged '<<' keys may be overridden)
            if k.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.key(k, path)
            line = k.start_mark.line + 1
            if key in seen:
                self.fail(
                    k,
                    _join(path, key),
                    f"duplicate key {str(key)[:80]!r} (first at line {seen[key]}, again at line {line}); "
                    f"allowed: each key once per mapping",
                )
            seen[key] = line
        try:
            self.ctor.flatten_mapping(node)
        except ConstructorError as e:
            self.fail(node, path, f"bad merge key '<<': {e.problem}")
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = self.key(k, path)
            p = _join(path, key)
            self.lines[p] = k.start_mark.line + 1
            out[key] = self.build(v, p)
        return out

    def key(self, k, path: str) -> Any:
        if not isinstance(k, ScalarNode):
            self.fail(k, path, "a mapping or list used as a key; allowed: plain keys (names, numbers)")
        return self.scalar(k, path)

    def scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag not in _PLAIN_SCALAR_TAGS:
            self.fail(
                node,
                path,
                f"unsupported tag {node.tag!r}; allowed: plain values (text, numbers, dates, true/false, null)",
            )
        try:
            value = self.ctor.construct_object(node, deep=True)
        except (ValueError, OverflowError, ConstructorError) as e:
            what = _WHAT.get(node.tag, "a valid value")
            detail = str(e.problem if isinstance(e, ConstructorError) else e).splitlines()[0].split(": ")[0][:80]
            self.fail(node, path, f"{node.value[:40]!r} is not {what} ({detail})")
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            try:  # an aware time near the ends of the calendar can overflow when compared or converted
                value.astimezone(dt.UTC)
            except OverflowError:
                self.fail(node, path, f"{node.value[:40]!r} is not {_WHAT[node.tag]} (out of range)")
        return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
