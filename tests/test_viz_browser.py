"""The live page in a real browser: a real Solara server (`marketsim viz`) driven by Debian's chromium
through Playwright. Checks: no console errors, the agent picture and share chart are drawn, Step advances
the counter and changes the chart, a slider + Reset changes the model. Saves a screenshot."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import SCENARIOS

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"),
]
playwright = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("viz")
    port = _free_port()
    log = open(cwd / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "marketsim.cli", "viz", str(SCENARIOS / "tiny.yaml"), "--port", str(port)],
                            cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"viz server did not start: {(cwd / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()  # marketsim viz stops its solara server on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        time.sleep(0.5)
        leftover = subprocess.run(["pgrep", "-f", f"solara run marketsim.app .*--port {port}"], capture_output=True, text=True)
        assert not leftover.stdout.strip(), "marketsim viz left its solara server running"


@pytest.fixture
def page(server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1100})
        pg.errors = []
        pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.goto(server)
        pg.locator("#marketsim-week").wait_for(timeout=90_000)
        yield pg
        browser.close()


def _images(pg) -> list[str]:
    return [pg.locator("img").nth(i).get_attribute("src") or "" for i in range(pg.locator("img").count())]


def _shares(pg) -> list[str]:
    return pg.locator("#marketsim-numbers td.share").all_inner_texts()


def _step(pg, n: int, start: int) -> None:
    for k in range(n):
        pg.get_by_role("button", name="Step").click()
        pg.get_by_text(f"Week {start + k + 1}", exact=False).first.wait_for(timeout=30_000)


def test_page_shows_agents_and_shares_and_steps(page, tmp_path):
    assert page.get_by_text("consumers and their social ties").count() == 0  # drawn as an image, not text
    imgs = _images(page)
    assert len(imgs) >= 2 and all(s.startswith("data:image") or s.startswith("blob:") for s in imgs[:2]), imgs[:2]
    assert "Week 0" in page.locator("#marketsim-week").inner_text()
    _step(page, 3, 0)
    # Mesa's own counter in the sidebar: "Step: 3" (Mesa 3.3) or "Time: 3.0" (Mesa 3.5)
    assert page.get_by_text("Step: 3").count() + page.get_by_text("Time: 3.0").count() >= 1
    assert "Week 3" in page.locator("#marketsim-week").inner_text()
    after = _images(page)
    assert after[:2] != imgs[:2], "the agent picture and the share chart must change as the model steps"
    assert all(s.endswith("%") for s in _shares(page))
    shot = tmp_path / "viz_after_3_steps.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not page.errors, page.errors


def test_slider_and_reset_change_the_model(page):
    _step(page, 3, 0)
    before = _shares(page)
    sliders = page.get_by_role("slider")
    labels = page.locator(".v-input").all_inner_texts()
    assert any("new-account cost" in t for t in labels)
    # the new-account cost slider: focus it and push it to its maximum with the keyboard, as a user can
    idx = [i for i, t in enumerate(page.locator(".v-slider").evaluate_all(
        "els => els.map(e => e.closest('.v-input').innerText)")) if "new-account cost" in t][0]
    sliders.nth(idx).focus()
    sliders.nth(idx).press("End")
    page.get_by_role("button", name="Reset").click()
    page.get_by_text("Week 0").first.wait_for(timeout=90_000)
    _step(page, 3, 0)
    assert _shares(page) != before, "a changed slider + Reset must rebuild the model with the new value"
    # the seed input + Reset
    page.get_by_label("seed").fill("7")
    page.get_by_label("seed").press("Enter")
    page.get_by_role("button", name="Reset").click()
    page.get_by_text("Week 0").first.wait_for(timeout=90_000)
    _step(page, 3, 0)
    assert not page.errors, page.errors
