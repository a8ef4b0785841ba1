"""JD's question answered in a real browser, end to end, at small size: the "Decide" view of `marketsim viz`
(src/marketsim/viz/decide.py) driven by Debian's chromium through Playwright (the launch pattern of
tests/e2e/test_viz_browser.py).

Three options of a tiny market (JD drops Weibo login with the migration offer, keeps it, drops it without the
offer), 8 draws x 2 replicates, 2000 consumers (the page's defaults; 8: the fewest draws PRIM searches): Run; the ranking and the probabilities; the tornado; a PRIM box;
the HTML and XLSX exports downloaded and opened (the workbook's numbers are projection.json's, the HTML refers to
nothing outside itself); then the link /?result=<hash> shows the same answer read-only without projecting again
(the stored folder is untouched). Saves a screenshot in the test's temporary folder (never in the checkout)."""

from __future__ import annotations

import math
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from marketsim.io import store
from tests.e2e.test_viz_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _viz, _wait_serving
from tests.helpers import SCENARIOS

pytest.importorskip("solara")
pytestmark = pytest.mark.xdist_group("browser")
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)

#: tiny's market for 12 weeks (JD drops Weibo login in week 8) with one uncertain input, social influence
#: (tiny's range; tiny's other uncertain inputs fixed, so that 6 draws read a tornado)
DROP = f"""
base: {SCENARIOS / "tiny.yaml"}
name: drop
calendar: {{steps: 12}}
friction: {{create: 1.5}}
consumers: {{count: 2000}}
retailers:
  - {{name: JD, sso_share: {{weibo: 0.3}}}}
events:
  - {{id: jd_drops_weibo, migration_cost: 0.5}}
"""
KEEP = """
base: drop.yaml
name: keep
events: null
fit_until: 2013-03-04
"""
NO_OFFER = """
base: drop.yaml
name: drop_without_offer
events:
  - {id: jd_drops_weibo, migration_cost: null}
"""
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("decide")
    (cwd / "drop.yaml").write_text(DROP)
    (cwd / "keep.yaml").write_text(KEEP)
    (cwd / "nooffer.yaml").write_text(NO_OFFER)
    port = _free_port()
    log = cwd / "server.log"
    with open(log, "w") as f:
        proc = _viz(["drop.yaml", "--port", port], cwd, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_serving(proc, log)
        assert urllib.request.urlopen(url, timeout=10).status == 200
        yield {"url": url, "cwd": cwd, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _pick(pg, label: str, items: list[str]) -> None:
    """Choose ``items`` in the (multiple) select labelled ``label``."""
    pg.locator(".v-select", has_text=label).first.click()
    for it in items:
        pg.locator(".v-menu__content .v-list-item", has_text=it).first.click()
    pg.keyboard.press("Escape")


def _workbook_numbers_equal_projection_json(xlsx: Path, doc: dict) -> int:
    """Every row of the workbook's table of shifts (option, retailer, shift in points with its 95% interval)
    equals projection.json's numbers (fractions there, x 100); returns how many rows were compared."""
    import openpyxl

    wb = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
    compared = 0
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        if not rows:
            continue
        head = [str(h).strip().lower() if h is not None else "" for h in rows[0]]
        if not {"option", "retailer", "shift (pp)", "95% low (pp)", "95% high (pp)"} <= set(head):
            continue
        i, j = head.index("option"), head.index("retailer")
        for r in rows[1:]:
            want = doc["options"][r[i]]["shift"][r[j]]
            got = [float(r[head.index(c)]) for c in ("shift (pp)", "95% low (pp)", "95% high (pp)")]
            exp = [100 * want["mean"], 100 * want["ci95"][0], 100 * want["ci95"][1]]
            assert all(math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-9) for g, e in zip(got, exp, strict=True)), (
                ws.title,
                r,
                exp,
            )
            compared += 1
    return compared


@pytest.mark.browser
@needs_chromium
def test_jd_question_end_to_end_in_the_browser(server, browser, tmp_path):
    t0 = time.monotonic()
    context = browser.new_context(viewport={"width": 1400, "height": 2300}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server["url"])
    pg.get_by_role("button", name="Decide").click()
    pg.get_by_text("Decide: compare options").wait_for(timeout=60_000)
    _pick(pg, "Option files", ["keep.yaml", "nooffer.yaml"])
    pg.locator("#marketsim-options", has_text="Options: drop, keep, drop_without_offer").wait_for(timeout=10_000)
    pg.get_by_role("button", name="Run").click()
    pg.locator("#marketsim-conclusion").wait_for(timeout=170_000)
    assert "Traceback" not in pg.inner_text("body")

    # the ranking of the three options for JD, with the chance each beats each other
    rows = pg.locator("#marketsim-ranking tr[data-option]")
    assert rows.count() == 3
    assert {rows.nth(i).get_attribute("data-option") for i in range(3)} == {"drop", "keep", "drop_without_offer"}
    assert re.search(r"\d+%|<1%|>99%", rows.first.inner_text())
    sentence = pg.locator("#marketsim-conclusion").inner_text()
    assert sentence.startswith("For JD") and "%" in sentence, sentence
    h = pg.locator("#marketsim-conclusion").get_attribute("data-hash")
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    # what drives it: a tornado with a bar per uncertain parameter
    assert pg.locator("#marketsim-tornado svg").count() == 1
    # what would flip it: a box under some threshold (the slider, recomputed in the page without a rerun)
    slider = pg.locator("#marketsim-threshold [role=slider]")
    box = pg.locator("#marketsim-boxes li.box")
    t = -0.3
    pg.locator("#marketsim-boxes[data-threshold='-0.3']").wait_for(timeout=60_000)
    while not box.count() and t > -2:  # from -0.3 down to -2 points, a tenth at a time, until the draws split
        slider.focus()
        pg.keyboard.press("ArrowLeft")
        t = round(t - 0.1, 1)
        pg.locator(f"#marketsim-boxes[data-threshold='{t:+.1f}']").wait_for(timeout=60_000)
    assert box.count() >= 1, pg.locator("#marketsim-boxes").inner_text()
    assert "coverage" in box.first.inner_text() and "density" in box.first.inner_text()

    folder = server["cwd"] / "results" / "decide" / h
    doc = __import__("json").loads((folder / "projection.json").read_text())
    # the exports, downloaded as a browser does
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Export HTML").click()
    html = tmp_path / "decide.html"
    dl.value.save_as(html)
    text = html.read_text(encoding="utf-8")
    assert "<html" in text.lower() and not EXTERNAL.search(text), EXTERNAL.search(text)
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Export XLSX").click()
    xlsx = tmp_path / "decide.xlsx"
    dl.value.save_as(xlsx)
    assert _workbook_numbers_equal_projection_json(xlsx, doc) >= 9  # 3 options x 3 retailers

    pg.screenshot(path=str(tmp_path / "decide.png"), full_page=True)  # (docs/img/decide.png: devtools/screenshots.py)

    # the link opens the same answer read-only, from the store: nothing is projected or written again
    mtime = folder.stat().st_mtime_ns
    manifest = (folder / store.MARKER).read_text()
    link = pg.locator("#marketsim-link a").get_attribute("href")
    assert link == f"/?result={h}"
    other = context.new_page()
    other.goto(server["url"].rstrip("/") + link)
    other.locator("#marketsim-conclusion").wait_for(timeout=60_000)
    assert other.locator("#marketsim-conclusion").get_attribute("data-hash") == h
    assert other.locator("#marketsim-conclusion").inner_text().split(".")[0] == sentence.split(".")[0]
    assert other.get_by_role("button", name="Run").count() == 0
    assert other.locator("#marketsim-ranking tr[data-option]").count() == 3
    assert folder.stat().st_mtime_ns == mtime and (folder / store.MARKER).read_text() == manifest
    # a malformed or unknown name: one line on the page
    for bad in ("nothex", "0" * 64):
        other.goto(server["url"] + f"?result={bad}")
        other.locator("#marketsim-error").wait_for(timeout=30_000)
        msg = other.locator("#marketsim-error").inner_text().strip()
        assert msg.startswith("marketsim: result=") and "\n" not in msg, msg
    # Cancel: other inputs (3 replicates) start a new projection; Cancel stops it and stores nothing
    pg.get_by_label("Replicates").fill("3")
    pg.get_by_role("button", name="Run").click()
    pg.locator("#marketsim-decide-status", has_text="Running").wait_for(timeout=60_000)
    pg.get_by_role("button", name="Cancel").click()
    pg.locator("#marketsim-decide-status", has_text="Cancelled").wait_for(timeout=60_000)
    assert [p.name for p in folder.parent.iterdir()] == [h]
    assert not errors, errors
    context.close()
    assert time.monotonic() - t0 < 170, time.monotonic() - t0
