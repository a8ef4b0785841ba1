"""Hostile and mistaken YAML: alias bombs and deep nesting refused cheaply, duplicate keys and bad dates named by
file, line and field, and a ``base:`` that is not a YAML file of keys (folder, FIFO, device, another format) named
without echoing its content."""

import contextlib
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from marketsim.errors import ScenarioError
from marketsim.scenario import yamlsafe
from tests.helpers import SCENARIOS, SWEEP, cli, one_line_error

# --------------------------------------------------------------------------- 5, 6, 7, 14. hostile YAML


BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
    for p, a in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


def _refusal_cost(text: str):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ScenarioError) as ei:
            yamlsafe.load(text, "hostile.yaml")
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(ei.value), seconds, peak


@pytest.mark.xdist_group("cores")  # both cores or a timing: one such test at a time (pyproject.toml)
@pytest.mark.parametrize(
    "name,text,needle",
    [
        ("alias bomb", BOMB, "hostile.yaml:5: aliases expand to more than 10,000 nodes"),
        ("deep flow nesting", "x: " + "[" * 10_000 + "]" * 10_000, "hostile.yaml:1: nesting deeper than 64 levels"),
        (
            "deep block nesting",
            "".join(" " * i + "k:\n" for i in range(1_500)),
            "hostile.yaml:65: nesting deeper than 64 levels",
        ),
        (
            "deep through aliases",
            "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
            "hostile.yaml:2: alias *a nests deeper than 64 levels",
        ),
        ("self-referencing alias", "a: &a [1, *a]\n", "hostile.yaml:1: alias *a refers to a node that contains it"),
    ],
    ids=lambda x: x if isinstance(x, str) and len(x) < 30 and ":" not in x else "",
)
def test_hostile_yaml_is_refused_cheaply(name, text, needle):
    msg, seconds, peak = _refusal_cost(text)
    assert needle in msg and "\n" not in msg
    assert seconds < 0.5, f"{name}: refused in {seconds:.2f} s"
    assert peak < 4e6, f"{name}: refused with a {peak / 1e6:.1f} MB peak"


def test_yaml_mistakes_are_one_line_with_file_line_field(tmp_path):
    def err(text):
        with pytest.raises(ScenarioError) as ei:
            yamlsafe.load(text, "s.yaml")
        return str(ei.value)

    assert err("consumers:\n  count: 2000\n  shopping_rate: 0.2\n  count: 5000000\n") == (
        "s.yaml:4: consumers.count: duplicate key 'count' (first at line 2, again at line 4); allowed: each key once per mapping"
    )
    assert err("calendar:\n  start: 2013-02-30\n").startswith(
        "s.yaml:2: calendar.start: '2013-02-30' is not a valid date"
    )
    assert err("events:\n  - {date: 2013-03-04 25:00:00}\n").startswith(
        "s.yaml:2: events[0].date: '2013-03-04 25:00:00' is not a valid date or time"
    )
    assert "unsupported tag" in err("a: !!python/object/apply:os.system [ls]\n")
    # what stays allowed: aliases within budget, merge keys overriding merged keys, real dates
    data, lines = yamlsafe.load("d: &d {x: 1, y: [1, 2]}\ne:\n  <<: *d\n  x: 2\nstart: 2013-01-07\n", "ok.yaml")
    assert data == {
        "d": {"x": 1, "y": [1, 2]},
        "e": {"x": 2, "y": [1, 2]},
        "start": __import__("datetime").date(2013, 1, 7),
    }
    assert lines.find("e.x") == ("ok.yaml", 4) and lines.get("start") == 5
    # through the CLI: one line, exit 2, for a scenario file with a duplicate key
    bad = tmp_path / "dup.yaml"
    text = (SCENARIOS / "tiny.yaml").read_text()
    line = text[: text.index("  count: 3000\n")].count("\n") + 1
    bad.write_text(text.replace("  count: 3000\n", "  count: 3000\n  count: 5000000\n"))
    one_line_error(
        cli("validate", bad, cwd=tmp_path),
        f"dup.yaml:{line + 1}: consumers.count: duplicate key 'count' (first at line {line}",
    )


# --------------------------------------------------------------------------- 15. base: naming what is not a scenario file


def _unblock_after(fifo: Path, seconds: float) -> None:
    """If the command (run in this process) opens ``fifo`` for reading, it blocks until a writer comes: after
    ``seconds`` a writer opens and closes it, so the read ends (empty, and the test fails on the message)
    instead of hanging the suite."""
    import threading

    def writer():
        with contextlib.suppress(OSError):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails at once when no reader is waiting
            os.close(fd)

    t = threading.Timer(seconds, writer)
    t.daemon = True
    t.start()


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "passwd", "list"])
@pytest.mark.parametrize("variant", ["scenario", "sweep"])
def test_base_that_is_not_a_yaml_file(tmp_path, kind, variant):
    target = {
        "folder": tmp_path / "adir",
        "fifo": tmp_path / "fifo",
        "device": Path("/dev/null"),
        "passwd": tmp_path / "passwd",
        "list": tmp_path / "list.yaml",
    }[kind]
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
        _unblock_after(target, 30)
    elif kind == "passwd":  # /etc/passwd's shape, with a secret that must never be echoed
        target.write_text(
            "root:x:0:0:root:/root:/bin/bash\n" * 40 + "secret:x:1000:1000:SECRET-TOKEN:/home/s:/bin/sh\n"
        )
    elif kind == "list":
        target.write_text("- SECRET-TOKEN\n- b\n")
    what = {
        "folder": "is a folder, not a regular file",
        "fifo": "is a FIFO (named pipe), not a regular file",
        "device": "is a character device, not a regular file",
        "passwd": "is not a YAML mapping of keys (it reads as one string",
        "list": "is not a YAML mapping of keys (it reads as a list of 2 items)",
    }[kind]
    f = tmp_path / "top.yaml"
    if variant == "scenario":
        f.write_text(f"schema: marketsim/v1\nname: x\nbase: {target}\n")
        r = cli("validate", f, cwd=tmp_path)  # a FIFO opened for reading would block here (until _unblock_after)
        line = 3
    else:
        f.write_text(SWEEP.replace(f"base: {SCENARIOS / 'tiny.yaml'}", f"base: {target}"))
        r = cli("sweep", f, "--out", tmp_path / "o", cwd=tmp_path)
        line = 4
    err = one_line_error(r, f"top.yaml:{line}: base: base scenario '{target}'", what)
    # short: the file's content is not echoed (counted without the two paths, whose length depends on where the
    # temporary folder is: a pytest-xdist worker's is 10 characters longer)
    assert "SECRET" not in err and "root:x" not in err and len(err.replace(str(tmp_path), "<tmp>")) < 400
