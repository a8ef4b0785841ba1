"""Regenerate docs/img/decide.png: the browser's Decide view answering JD's question on the bundled headline market
(battle_lines_2013 against JD's two other options, at the view's default size), as a strategist sees it.

    python devtools/screenshots.py [--consumers 2000] [--out docs/img/decide.png]

Starts `marketsim viz` on a free loopback port with its results in a temporary folder, drives Debian's chromium
(/usr/bin/chromium) through Playwright, and saves a full-page screenshot. A developer tool (a few minutes on two
cores, most of it the fits), not part of CI; the browser tests check the same view on a small market.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--consumers", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=-3.0, help="points; where the draws split (PRIM's boxes)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "decide.png"))
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="marketsim-shots-") as tmp:
        cmd = [sys.executable, "-m", "marketsim", "viz", "battle_lines_2013", "--port", str(port)]
        cmd += ["--consumers", str(args.consumers), "--results", tmp]
        server = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(1)
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                pg = b.new_page(
                    viewport={"width": 1400, "height": 2700}
                )  # the view scrolls inside the page: show it all
                pg.goto(f"http://127.0.0.1:{port}/")
                pg.get_by_role("button", name="Decide").click()
                pg.get_by_text("Decide: compare options").wait_for(timeout=120_000)
                try:
                    pg.locator(".v-select", has_text="Option files").first.click()
                    for name in ("jd_keeps_weibo_login", "jd_drops_weibo_no_offer"):
                        pg.locator(".v-menu__content .v-list-item", has_text=name).first.click()
                    pg.keyboard.press("Escape")
                except Exception:
                    pg.screenshot(path=str(Path(args.out).with_suffix(".failed.png")), full_page=True)
                    print(f"the page at the failure: {Path(args.out).with_suffix('.failed.png')}", file=sys.stderr)
                    raise
                pg.get_by_label("Draws").fill(str(args.draws))  # enough draws for the tornado of six parameters
                pg.get_by_role("button", name="Run").click()
                pg.locator("#marketsim-conclusion").wait_for(timeout=1_800_000)
                thumb = pg.locator("#marketsim-threshold [role=slider]")
                thumb.focus()
                steps = round((-0.3 - args.threshold) / 0.1)  # from the view's -0.3, in its steps of 0.1
                for _ in range(steps):
                    thumb.press("ArrowLeft")
                pg.locator(f"#marketsim-boxes[data-threshold='{args.threshold:+.1f}']").wait_for(timeout=300_000)
                time.sleep(2)
                pg.screenshot(path=args.out, full_page=True)
                b.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
