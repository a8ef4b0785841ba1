"""The documentation does what it says: every source a scenario cites is in docs/sources.md, the tutorial
of docs/scenarios.md runs as written (its files are written, its `$ marketsim ...` commands run, and the
lines it shows appear in their output), and the code, tests and docs cite only what a reader of the repository
has (docs/model.md, docs/sources.md), never the documents the project was written from or issue numbers."""

import datetime as dt
import re
import shutil

import pytest
import yaml

from marketsim.scenario import describe
from marketsim.scenario.core import load_scenario
from tests.helpers import ROOT, SCENARIOS, cli

SOURCES = ROOT / "docs" / "sources.md"
GUIDE = ROOT / "docs" / "scenarios.md"
EXAMPLE = ROOT / "docs" / "examples" / "tencent_jd_wechat.yaml"
KEY = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
CITATION = re.compile(rf"\[({KEY}(?:, *{KEY})*)\]")


def source_entries() -> set[str]:
    return set(re.findall(rf"^### `\[({KEY})\]`", SOURCES.read_text(), flags=re.M))


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def cited_keys(path) -> set[str]:
    """Keys cited in brackets in a YAML file's comments and in its text values (assumption, source, ...).
    YAML flow lists such as ``[qq, sohu]`` are values, not text, so they are not read as citations."""
    text = path.read_text()
    comments = [m.group(1) for m in re.finditer(r"(?:^|\s)#(.*)$", text, flags=re.M)]
    found = set()
    for chunk in comments + list(_strings(yaml.safe_load(text))):
        for group in CITATION.findall(chunk):
            found.update(k.strip() for k in group.split(","))
    return found


def test_every_cited_source_is_an_entry_of_sources_md():
    entries = source_entries()
    assert len(entries) >= 20
    files = (
        sorted(SCENARIOS.glob("*.yaml"))
        + sorted((ROOT / "docs" / "examples").glob("*.yaml"))
        + sorted((ROOT / "validation").glob("*.yaml"))
    )
    cited = {}
    for f in files:
        for k in cited_keys(f):
            cited.setdefault(k, []).append(f.name)
    assert {
        "iresearch-2013q2",
        "cecrc-2012",
        "jd-prospectus",
        "seed-article-2013",
        "baymard",
        "bapna-umyarov-2015",
        "brock-durlauf-2001",
        "weibo-taobao-links",
        "tencent-2013q4",
    } <= set(cited)
    missing = {k: v for k, v in cited.items() if k not in entries}
    assert not missing, f"cited but not in docs/sources.md: {missing}"
    # the field reference cites keys for the sources of defaults: they resolve too
    in_guide = {k for g in CITATION.findall(GUIDE.read_text()) for k in g.split(", ") if "-" in k or k == "baymard"}
    assert in_guide - entries == set()


def test_a_missing_source_would_be_caught(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text('a: 1   # 42% [no-such-source-2013]\nb: {assumption: "see [baymard, cnnic-2012]"}\nc: [qq, sohu]\n')
    assert cited_keys(f) == {"no-such-source-2013", "baymard", "cnnic-2012"}  # the flow list is a value
    assert "no-such-source-2013" not in source_entries()


#: What a reader of the repository does not have: the model contract and the fact sheet the project was written
#: from (docs/model.md and docs/sources.md are their twins here), and issue numbers. Spelled so that this file
#: does not match itself: "[.]" for the dot, "[0-9]" after the word.
UNSHIPPED = re.compile(r"\b(?:MODEL|FACTS)[.]md\b|\b[Ii]ssues? #?[0-9]")
#: Where the rule holds: the package (its bundled scenarios too), the tests, benchmarks, developer tools and docs.
CHECKED = ("src", "tests", "benchmarks", "devtools", "docs", "validation", "README.md")
#: The one place the contract may be named: docs/model.md's title, which says whose twin the page is.
TWIN_TITLE = ("docs/model.md", 1)


def unshipped_references() -> list[str]:
    """``path:line: text`` for every line of a text file under CHECKED that cites a document a reader does not
    have or an issue number (binary files, such as the figures, and caches are skipped)."""
    found = []
    for top in CHECKED:
        base = ROOT / top
        for f in sorted([base] if base.is_file() else base.rglob("*")):
            rel = f.relative_to(ROOT)
            if not f.is_file() or any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            data = f.read_bytes()
            if b"\0" in data:
                continue
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if UNSHIPPED.search(line) and (rel.as_posix(), n) != TWIN_TITLE:
                    found.append(f"{rel}:{n}: {line.strip()[:100]}")
    return found


def test_nothing_cites_documents_a_reader_does_not_have():
    """The model contract and the fact sheet the project was written from are not in the repository; a reader has
    docs/model.md (the same section numbers, the properties in section 11) and docs/sources.md. An issue number
    says nothing to a reader: say what the rule or the test is about."""
    found = unshipped_references()
    assert not found, "cite docs/model.md, docs/sources.md or the concept instead:\n" + "\n".join(found)


def test_the_citation_rule_would_catch_them():
    for text in (
        "MODEL" + ".md section 8",
        "see FACTS" + ".md",
        "(issue" + " 17, class 3)",
        "Issue" + " 12 lists",
        "(issues" + " 8 and 9)",
        "issue " + "#" + "12",
    ):
        assert UNSHIPPED.search(text), text
    for text in (
        "docs/model.md section 8",
        "docs/sources.md",
        "a tissue 3",
        "issue a warning",
        "#E69F00",
        "docs/model.md property 4",
    ):
        assert not UNSHIPPED.search(text), text


def _normal(text: str) -> str:
    """Output and expected lines compared without comment markers, wrapping or repeated spaces."""
    return " ".join(text.replace("#", " ").split())


def tutorial_steps(heading: str = "## Tutorial"):
    """A section of docs/scenarios.md (the tutorial by default; the worked case is tested in
    tests/test_docs_worked_case.py) in order: ("file", path, text) for a YAML block under ``<!-- file: PATH -->``,
    and ("run", command, expected lines) for each ``console`` block."""
    text = GUIDE.read_text()
    start = text.index(heading)
    text = text[start : text.index("\n## ", start)]
    steps = []
    for m in re.finditer(r"(<!-- file: (\S+) -->\n)?```(yaml|console)\n(.*?)```", text, flags=re.S):
        marker, path, kind, body = m.groups()
        if kind == "yaml" and marker:
            steps.append(("file", path, body))
        elif kind == "console":
            lines = body.strip("\n").splitlines()
            assert lines[0].startswith("$ marketsim "), lines[0]
            steps.append(("run", lines[0][2:], lines[1:]))
    return steps


def test_the_tutorials_final_file_is_the_bundled_example():
    files = [s for s in tutorial_steps() if s[0] == "file"]
    assert len(files) >= 3 and {p for _, p, _ in files} == {"docs/examples/tencent_jd_wechat.yaml"}
    assert files[-1][2] == EXAMPLE.read_text()


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path):
    shutil.copytree(SCENARIOS, tmp_path / "src" / "marketsim" / "scenarios")  # where the tutorial's base: points
    shutil.copytree(ROOT / "schema", tmp_path / "schema")
    ran = 0
    for kind, what, body in tutorial_steps():
        if kind == "file":
            (tmp_path / what).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / what).write_text(body)
            continue
        args = what.split()[1:]
        r = cli(*args, cwd=tmp_path)
        out = _normal(r.stdout + "\n" + r.stderr)
        expect_error = any(line.startswith("marketsim: error:") for line in body)
        assert r.returncode == (2 if expect_error else 0), (what, r.stderr[-2000:])
        for line in body:
            assert _normal(line) in out, f"`{what}` does not print: {line}\n--- it printed:\n{r.stdout}{r.stderr}"
        ran += 1
    assert ran >= 4
    assert (tmp_path / "results" / "tencent_jd_wechat--consumers3000-steps120" / "summary.json").is_file()


def test_until_is_as_the_tutorial_says():
    """`until: 2014-05-01` on the entry point: until_step 121, written back as 2014-04-27 (the tutorial's words)."""
    sc = load_scenario(EXAMPLE).with_values({"events.tencent_buys_jd_stake.effects.1.until": dt.date(2014, 5, 1)})
    promo = next(e for e in sc.events if e.id == "tencent_buys_jd_stake").action.effects[1]
    assert promo.until_step == 121 and sc.calendar.date_of(121) == dt.date(2014, 4, 27)
    doc = describe.scenario_document(sc)
    assert next(e for e in doc["events"] if e["id"] == "tencent_buys_jd_stake")["effects"][1]["until"] == dt.date(
        2014, 4, 27
    )
    guide = " ".join(GUIDE.read_text().split())
    assert (
        "`until: 2014-04-27`" in guide
        and "`until_step: 121`" in guide
        and "(step 121, which starts on 2014-04-27)" in guide
    )
    resolved = next(e for e in sc.to_dict()["events"] if e["id"] == "tencent_buys_jd_stake")
    assert resolved["action"]["effects"][1]["until_step"] == 121


def test_readme_points_editors_at_the_schema_and_links_the_guides():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/scenarios.md)" in readme and "](docs/sources.md)" in readme
    assert "# yaml-language-server: $schema=" in readme and '"yaml.schemas"' in readme
    for path in re.findall(r'"(schema/[a-z]+\.schema\.json)"', readme):
        assert (ROOT / path).is_file(), path
    modeline = EXAMPLE.read_text().splitlines()[0]
    target = modeline.split("$schema=")[1]
    assert (EXAMPLE.parent / target).resolve() == (ROOT / "schema" / "scenario.schema.json").resolve()
