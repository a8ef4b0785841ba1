"""Files a strategist can send (``marketsim project --export html,xlsx``): one self-contained HTML report and one
workbook whose tables are projection.json's numbers; every chart as PNG and SVG, every Parquet table with a CSV.

One small projection of three options (JD drops the Weibo login with the migration offer, keeps it, drops it
without the offer; an uncertain migration cost and the market's own uncertain parameters) is run once for the
module through the command line, with ``--export html,xlsx``, and each test reads its folder.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from marketsim.experiments import decision as core
from marketsim.io import store
from marketsim.report import decision as words
from tests.helpers import SCENARIOS, cli, one_line_error

DROP = f"""schema: marketsim/v2
base: {SCENARIOS / "tiny.yaml"}
name: drop
description: JD drops the Weibo login and offers to migrate the accounts (a small test market).
fit_until: 2013-03-03
calendar: {{start: 2013-01-06, steps: 16, warmup: 0}}
retailers:  # attractiveness given (near tiny's fit), so no draw needs a fit: the projection takes seconds
  - {{name: Tmall, attractiveness: -1.93}}
  - {{name: JD, attractiveness: -2.23}}
  - {{name: Other, attractiveness: -1.94}}
events:
  - id: jd_drops_weibo
    type: remove_login
    date: 2013-03-04
    retailer: JD
    provider: weibo
    migration_cost: {{value: 0.5, range: [0.2, 1.0], assumption: a test range for the migration cost}}
"""
KEEP = """schema: marketsim/v2
base: drop.yaml
name: keep
description: JD keeps the Weibo login.
events:
  - {id: jd_drops_weibo, remove: true}
"""
NO_OFFER = """schema: marketsim/v2
base: drop.yaml
name: no_offer
description: JD drops the Weibo login without the migration offer.
events:
  - {id: jd_drops_weibo, migration_cost: 2.0}
"""
OPTIONS = ("drop", "keep", "no_offer")
RUN = ("--consumers", 2000, "--draws", 10, "--replicates", 2)  # 10 draws: enough for the tornado's linear fit


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    for name, text in (("drop", DROP), ("keep", KEEP), ("no_offer", NO_OFFER)):
        (tmp / f"{name}.yaml").write_text(text)
    r = cli(
        "project",
        tmp / "drop.yaml",
        "--compare",
        tmp / "keep.yaml",
        tmp / "no_offer.yaml",
        *RUN,
        "--export",
        "html,xlsx",
        "--results",
        tmp / "results",
        cwd=tmp,
        env={"MARKETSIM_FIT_CACHE": tmp / "cache"},
    )
    assert r.returncode == 0, r.stderr
    (out,) = (tmp / "results" / "drop").iterdir()
    return out


class _Refs(HTMLParser):
    """Every tag and every attribute that can load something (src, href, xlink:href, srcset, data, action...)."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "srcset", "data", "action", "poster", "background", "formaction"):
                self.refs.append((tag, k, v or ""))


def test_the_html_report_is_one_self_contained_file_that_gives_the_answer(folder):
    text = (folder / "report.html").read_text(encoding="utf-8")
    p = _Refs()
    p.feed(text)
    # nothing outside the file: every reference is inline (data:) or a fragment of the page itself
    bad = [(t, k, v[:60]) for t, k, v in p.refs if not (v.startswith("data:") or v.startswith("#"))]
    assert not bad, bad
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert not re.search(r"url\(\s*['\"]?\s*(?!#|data:)", text, re.I), "a CSS url() that is not inline"
    assert not re.search(r"@import", text, re.I)
    # the only addresses are the SVG namespace names (identifiers, never fetched)
    for m in re.finditer(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'<>]*", text):
        before = text[max(0, m.start() - 24) : m.start()]
        assert re.search(r"\sxmlns(?::\w+)?=[\"']$", before), f"an external address: {m.group(0)}"
    # one page, one id space: no id twice (two charts' clip paths or glyphs would clash), every #reference resolves
    ids = re.findall(r"\sid=\"([^\"]+)\"", text)
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r"href=\"#([^\"]+)\"", text)) | set(re.findall(r"url\(#([^)]+)\)", text))
    assert refs and refs <= set(ids)
    # the charts are inline: the projection's four and none by link
    assert text.count("<svg") >= 4 and 'id="chart-fan"' in text and 'id="chart-compare"' in text
    # the answer and what it rests on
    o = core.from_folder(folder)
    summ = json.loads((folder / "projection.json").read_text())
    assert html.escape(words.conclusion(o, "JD", -0.5), quote=True) in text
    for name in OPTIONS:
        assert f"<td>{name}</td>" in text
    for prm in summ["draws"]["parameters"]:
        assert html.escape(prm["reason"].split(": ", 1)[-1], quote=True) in text
    assert '<span class="tag">assumption</span>' in text  # assumptions are labelled as such
    assert html.escape(summ["skill"]["sentence"], quote=True) in text
    assert html.escape(summ["interval_covers"], quote=True) in text
    assert "migration_cost: 2.0" in text  # the scenario files' text


def _sheet(wb, name) -> list[dict]:
    ws = wb[name]
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_the_workbook_holds_projection_json_numbers_as_numbers(folder):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.load_workbook(folder / "projection.xlsx")
    summ = json.loads((folder / "projection.json").read_text())
    assert wb.sheetnames[0] == "About"
    for name in wb.sheetnames[1:]:
        ws = wb[name]
        assert ws.freeze_panes == "A2" and all(c.font.b for c in ws[1]), name  # header bold and frozen
        assert ws.column_dimensions["A"].width and ws.column_dimensions["A"].width >= 8, name
    about = {r[0]: r[1] for r in wb["About"].iter_rows(values_only=True) if r[0]}
    assert about["Conclusion"] == words.conclusion(core.from_folder(folder), "JD", -0.5)
    for name in wb.sheetnames[1:]:
        assert name in about, f"the About sheet says what {name} holds"
    # the shifts: every mean and interval end is projection.json's, in points, as a number
    shifts = _sheet(wb, "Shifts")
    assert len(shifts) == len(OPTIONS) * 3
    seen = set()
    for row in shifts:
        s = summ["options"][row["option"]]["shift"][row["retailer"]]
        for col, want in (("shift (pp)", s["mean"]), ("95% low (pp)", s["ci95"][0]), ("95% high (pp)", s["ci95"][1])):
            assert isinstance(row[col], float | int) and abs(row[col] - want * 100) < 1e-9, (row, col)
        assert abs(row["share at horizon"] - summ["options"][row["option"]]["share"][row["retailer"]]) < 1e-9
        assert abs(row["baseline share"] - summ["share_baseline"][row["retailer"]]) < 1e-9
        seen.add((row["option"], row["retailer"]))
    assert seen == {(o, r) for o in OPTIONS for r in summ["shift"]}
    ws = wb["Shifts"]
    heads = [c.value for c in ws[1]]
    assert ws.cell(2, heads.index("shift (pp)") + 1).number_format == "+0.00;-0.00;0.00"
    assert ws.cell(2, heads.index("share at horizon") + 1).number_format == "0.0%"
    # the ranking's means and intervals: the same numbers again, per retailer, best first
    ranking = _sheet(wb, "Options")
    for row in ranking:
        s = summ["options"][row["option"]]["shift"][row["retailer"]]
        assert abs(row["mean shift (pp)"] - s["mean"] * 100) < 1e-9
        assert abs(row["95% low (pp)"] - s["ci95"][0] * 100) < 1e-9
        assert abs(row["95% high (pp)"] - s["ci95"][1] * 100) < 1e-9
    for r in summ["shift"]:
        means = [x["mean shift (pp)"] for x in ranking if x["retailer"] == r]
        assert means == sorted(means, reverse=True) and len(means) == len(OPTIONS)
    # the pairwise differences
    for row in _sheet(wb, "Differences"):
        d = summ["compare"][row["options"]][row["retailer"]]
        assert abs(row["difference (pp)"] - d["mean"] * 100) < 1e-9
        assert (
            abs(row["95% low (pp)"] - d["ci95"][0] * 100) < 1e-9
            and abs(row["95% high (pp)"] - d["ci95"][1] * 100) < 1e-9
        )
    # P(beats): complementary pairs, read from the same paired draws
    beats = {(x["retailer"], x["option"]): x for x in _sheet(wb, "P(beats)")}
    for (r, a), x in beats.items():
        for b in OPTIONS:
            if a != b:
                assert abs(x[f"beats {b}"] + beats[(r, b)][f"beats {a}"] - 1) < 1e-9
    # the assumptions: display units, the source, and the word "assumption"
    ass = {x["path"]: x for x in _sheet(wb, "Assumptions")}
    for prm in summ["draws"]["parameters"]:
        x = ass[prm["path"]]
        assert x["source"] == prm["reason"] and x["assumption"] == "assumption"
    assert abs(ass["retailers.JD.sso_share.weibo"]["central"] - 5.0) < 1e-9  # 0.05 shown as 5 (%)
    assert ass["retailers.JD.sso_share.weibo"]["unit"] == "%"
    # the draws and every draw x replicate's horizon share
    draws = pd.read_parquet(folder / "draws.parquet")
    got = pd.DataFrame(_sheet(wb, "Draws"))
    pd.testing.assert_frame_equal(got[draws.columns], draws, check_dtype=False, rtol=0, atol=1e-12)
    reps = pd.read_parquet(folder / "replicates.parquet")
    last = reps[reps["step"] == reps["step"].max()]
    hz = pd.DataFrame(_sheet(wb, "Horizon shares"))
    assert len(hz) == len(last)
    m = hz.merge(last, on=["draw", "replicate", "arm", "retailer"], validate="one_to_one")
    assert len(m) == len(last) and (m["share at horizon"] - m["gmv_share"]).abs().max() < 1e-12
    # the decision block of projection.json (retailer JD, threshold -0.5 points): the same probabilities and bars
    dec = summ["decision"]
    for r in summ["shift"]:
        best = {x["option"]: x["p_best"] for x in dec[r]["ranking"]}
        for row in (x for x in ranking if x["retailer"] == r):
            assert abs(row["P(best)"] - best[row["option"]]) < 1e-9
        for a in OPTIONS:
            for b in OPTIONS:
                if a != b:
                    assert abs(beats[(r, a)][f"beats {b}"] - dec[r]["p_beats"][a][b]) < 1e-9
    for row in _sheet(wb, "Thresholds"):
        assert abs(row["probability"] - dec[row["retailer"]]["p_beyond"]["-0.5"][row["option"]]) < 1e-9
    assert about["Conclusion"] == dec["JD"]["conclusion"]
    drivers = _sheet(wb, "Drivers")
    with_bars = {a for a in OPTIONS if dec["JD"]["tornado"][a]["rows"]}
    assert {x["option"] for x in drivers} == with_bars and "drop" in with_bars  # keep never moves: no bars
    for row in drivers:
        want = {x["path"]: x for x in dec["JD"]["tornado"][row["option"]]["rows"]}[row["path"]]
        for col, key in (("shift at low (pp)", "at_low_pp"), ("shift at high (pp)", "at_high_pp")):
            assert abs(row[col] - want[key]) < 1e-9
        assert abs(row["variance share"] - want["variance_share"]) < 1e-9
    skill = {x["what"]: x["value"] for x in _sheet(wb, "Skill")}
    assert skill["skill in words"] == summ["skill"]["sentence"]


def test_every_chart_is_png_and_svg_and_every_parquet_has_its_csv_in_one_result_set(folder):
    files = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    charts = {Path(f).stem for f in files if f.endswith((".png", ".svg"))}
    assert {"fan", "shift", "flows", "compare"} <= charts
    for c in charts:
        assert f"{c}.png" in files and f"{c}.svg" in files, c
        assert (folder / f"{c}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    parquets = [f for f in files if f.endswith(".parquet")]
    assert "replicates.parquet" in parquets
    for f in parquets:
        pq, csv = pd.read_parquet(folder / f), pd.read_csv(folder / f.replace(".parquet", ".csv"))
        assert list(csv.columns) == list(pq.columns)
        pd.testing.assert_frame_equal(csv, pq, check_dtype=False)
    # the exports belong to the projection's result set (they appear with the rest, checked like the rest)
    listed = store.read_result(folder).manifest["files"]
    assert {"report.html", "projection.xlsx"} <= set(listed)
    # exporting is not a setting of the numbers: the folder's name and the recorded settings do not mention it
    assert (
        "export" not in folder.name and "export" not in json.loads((folder / "projection.json").read_text())["settings"]
    )


def test_a_stored_folder_exports_the_same_html_as_the_command(folder, tmp_path):
    """The browser's Decide view exports from the stored folder; the command line from the folder it was filling:
    the same file."""
    from marketsim.report.export import export

    written = export(folder, ["html", "xlsx"], dest_dir=tmp_path)
    assert [p.name for p in written] == ["report.html", "projection.xlsx"]
    assert (tmp_path / "report.html").read_text() == (folder / "report.html").read_text()


def test_an_unknown_export_format_is_one_line_naming_the_valid_ones(tmp_path):
    r = cli("project", SCENARIOS / "tiny.yaml", "--export", "html,pdf", "--results", tmp_path, cwd=tmp_path)
    line = one_line_error(r)
    assert "pdf" in line and "html" in line and "xlsx" in line and "all" in line
    assert not (tmp_path / "tiny").exists()  # refused before any work


def test_a_workbook_without_openpyxl_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl now raises ImportError
    r = cli("project", SCENARIOS / "tiny.yaml", "--export", "all", "--results", tmp_path, cwd=tmp_path)
    assert "pip install 'marketsim[decide]'" in one_line_error(r)
