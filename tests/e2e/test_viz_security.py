"""The live page off loopback, its sessions, its assets and its words: a real
`marketsim viz --host 0.0.0.0` (reached only through 127.0.0.1) driven by Debian's chromium.

- Off loopback the server needs the token it prints (with a warning that the page is reachable from the
  network): without it a request is refused, with it (once, then a cookie) the page works.
- A closed tab's model is freed at once, and a tab over --max-sessions gets a message instead of a model.
- A missing page asset is 404 and the server contacts no CDN for it (its proxy variables point at a trap).
- Social influence where the market tips is said in words, not as a cut-off calibration message."""

import http.cookiejar
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import slide_to_end

from .test_viz_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHORT,
    _accepts,
    _close_tab,
    _free_port,
    _viz,
    _wait_serving,
    needs_chromium,
)

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.xdist_group("browser")]
MAX_SESSIONS = 2


class _Trap:
    """A listening socket standing in for an HTTP(S) proxy: counts the connections made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("vizsec")
    # social influence as a plain number (the base states a range, which would bound its slider to 0.25-1.25):
    # its slider spans what the format allows, up to where this market tips
    (cwd / "short.yaml").write_text(SHORT + "behaviour: {beta_social: 1.0}\n")
    port = _free_port()
    trap = _Trap()
    proxy = f"http://127.0.0.1:{trap.port}"
    env = {k: proxy for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")}
    env.update(NO_PROXY="", no_proxy="")
    log = cwd / "server.log"
    with open(log, "w") as f:
        proc = _viz(
            ["short.yaml", "--host", "0.0.0.0", "--port", port, "--max-sessions", MAX_SESSIONS],
            cwd,
            env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_serving(proc, log)
        line = next(x for x in log.read_text().splitlines() if "serving" in x)
        token = re.search(r"\?token=([A-Za-z0-9_-]+)", line)
        yield {"base": f"http://127.0.0.1:{port}", "line": line, "token": token and token.group(1), "trap": trap}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        trap.sock.close()
    deadline = time.time() + 10
    while _accepts(port) and time.time() < deadline:
        time.sleep(0.2)


def _opener():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _authorized(server):
    """An HTTP client holding the server's cookie (got by presenting the token once)."""
    op = _opener()
    assert op.open(f"{server['base']}/?token={server['token']}", timeout=30).status == 200
    return op


def _status(op, server) -> dict:
    return json.loads(op.open(f"{server['base']}/_marketsim/status", timeout=30).read())


def _wait_status(op, server, timeout=30, **want) -> dict:
    deadline = time.time() + timeout
    while True:
        st = _status(op, server)
        if all(st[k] == v for k, v in want.items()) or time.time() > deadline:
            return st
        time.sleep(0.3)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _tab(browser, server, wait="#marketsim-share-chart"):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.goto(f"{server['base']}/?token={server['token']}")
    pg.locator(wait).wait_for(timeout=90_000)
    return pg


def test_off_loopback_the_page_needs_its_token(server, browser):
    line, token, base = server["line"], server["token"], server["base"]
    assert token, f"no tokenized address printed: {line}"
    assert f":{base.rsplit(':', 1)[1]}/?token={token}" in line and "reachable from the network" in line, line
    for bad in (
        "/",
        "/?token=wrong",
        f"/?token={token[:-1]}",
        "/_marketsim/status",
        "/_solara/cdn/requirejs@2.3.6/require.js",
    ):
        with pytest.raises(urllib.error.HTTPError) as e:
            _opener().open(base + bad, timeout=30)
        assert e.value.code in (401, 403), (bad, e.value.code)
    op = _authorized(server)  # ?token= once, then the cookie
    assert op.open(f"{base}/", timeout=30).status == 200
    # the browser: refused without the token; with it the page works (its web socket and assets pass)
    context = browser.new_context()
    pg = context.new_page()
    assert pg.goto(base + "/").status in (401, 403)
    assert "token" in pg.inner_text("body")
    context.close()
    pg = _tab(browser, server)
    assert "token=" not in pg.url  # the address bar no longer shows it
    pg.get_by_role("button", name="Step").click()
    pg.locator("#marketsim-share-chart[data-week='1']").wait_for(timeout=30_000)
    assert not pg.errors, pg.errors
    _close_tab(pg)


def test_a_closed_tab_frees_its_model_and_tabs_over_the_cap_get_a_message(server, browser):
    op = _authorized(server)
    assert _wait_status(op, server, sessions=0, models=0) == {"sessions": 0, "max_sessions": MAX_SESSIONS, "models": 0}
    tabs = [_tab(browser, server) for _ in range(MAX_SESSIONS)]
    assert _wait_status(op, server, sessions=MAX_SESSIONS, models=MAX_SESSIONS)["models"] == MAX_SESSIONS
    extra = _tab(browser, server, wait="#marketsim-full")  # one tab too many: a message, no model
    msg = extra.locator("#marketsim-full").inner_text()
    assert f"already open in {MAX_SESSIONS} browser tabs" in msg and "Close one of them" in msg, msg
    assert extra.locator("#marketsim-share-chart").count() == 0
    assert _status(op, server)["models"] == MAX_SESSIONS
    _close_tab(tabs.pop(0))
    st = _wait_status(op, server, sessions=MAX_SESSIONS - 1, models=MAX_SESSIONS - 1)
    assert st["sessions"] == MAX_SESSIONS - 1 and st["models"] == MAX_SESSIONS - 1, st
    extra.reload()  # a place is free now
    extra.locator("#marketsim-share-chart").wait_for(timeout=90_000)
    assert _wait_status(op, server, sessions=MAX_SESSIONS)["sessions"] == MAX_SESSIONS
    for pg in [*tabs, extra]:
        _close_tab(pg)
    assert _wait_status(op, server, sessions=0, models=0) == {"sessions": 0, "max_sessions": MAX_SESSIONS, "models": 0}


def test_a_missing_asset_is_404_and_no_cdn_is_contacted(server):
    op = _authorized(server)
    base, trap = server["base"], server["trap"]
    page = op.open(f"{base}/", timeout=30).read().decode()
    assert "/_solara/cdn/requirejs@2.3.6/require.js" in page and "cdn.jsdelivr.net" not in page
    assert op.open(f"{base}/_solara/cdn/requirejs@2.3.6/require.js", timeout=30).status == 200  # the local copy
    before = trap.hits
    for missing in (
        "marketsim-no-such-package@0.0.1/dist/index.js",
        "marketsim-no-such-package@0.0.1",
        "@widgetti/solara-vuetify-app@10.1.1/dist/no-such-file.js",
    ):
        with pytest.raises(urllib.error.HTTPError) as e:
            op.open(f"{base}/_solara/cdn/{missing}", timeout=30)
        assert e.value.code == 404, (missing, e.value.code)
    time.sleep(0.5)
    assert trap.hits == before, "the page server tried to fetch a missing asset from the internet"


def test_social_influence_where_the_market_tips_is_said_in_words(server, browser):
    pg = _tab(browser, server)
    knob = pg.locator(".marketsim-knob", has_text="Social influence")
    slider = knob.get_by_role("slider")
    slide_to_end(slider, "End", knob.get_by_text("5.00 utils"))  # 5 utils: this market tips (no fit exists)
    pg.get_by_role("button", name="Reset").click()
    pg.locator("#marketsim-error").wait_for(timeout=120_000)
    msg = pg.locator("#marketsim-error").inner_text().strip()
    assert "social influence 5.00 utils" in msg and "the market tips" in msg, msg
    assert "Lower the social influence" in msg and "previous run continues" in msg, msg
    assert "\n" not in msg and not msg.endswith("...") and msg.endswith("."), msg
    for jargon in ("Error", "residual", " pp", "observation target_share", "(with behaviour"):
        assert jargon not in msg, msg
    # the fit's own reason is there, whole, for whoever wants it
    assert "market tips" in pg.locator("details").text_content()
    pg.get_by_role("button", name="Step").click()  # the previous run continues
    pg.locator("#marketsim-share-chart[data-week='1']").wait_for(timeout=30_000)
    _close_tab(pg)
