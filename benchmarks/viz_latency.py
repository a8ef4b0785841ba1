"""How long a step takes to reach the screen on the live page, measured in a real browser.

Starts ``marketsim viz SCENARIO`` (default: the headline scenario at its 100,000 consumers) on a free
loopback port, opens the page in headless Chromium (Playwright, Debian's /usr/bin/chromium), and for
each of N steps measures, inside the page, the time from the click on Step to the first frame painted
after the share chart shows that step (its ``data-week``), and, for comparison, to the week counter.
Prints the median, 90th percentile and maximum, then stops the server.

    python benchmarks/viz_latency.py [--scenario FILE] [--consumers N] [--steps 20] [--warmup 3]

Target (the live page's responsiveness): median click-to-share-chart under 150 ms at 100,000 consumers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

#: Runs in the page: click Step, resolve with [ms to the painted share chart of `week`, ms to the week counter].
MEASURE_JS = """
async (week) => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim().toUpperCase() === 'STEP');
  const painted = () => new Promise(r => requestAnimationFrame(() => { const c = new MessageChannel();
                                          c.port1.onmessage = () => r(); c.port2.postMessage(0); }));
  return await new Promise(resolve => {
    let counter = null, done = false;
    const t0 = performance.now();
    const check = () => {
      if (done) return;
      const w = document.getElementById('marketsim-week');
      if (counter === null && w && w.innerText.includes('Week ' + week + ' ')) counter = performance.now() - t0;
      const svg = document.getElementById('marketsim-share-chart');
      if (svg && svg.getAttribute('data-week') === String(week)) {
        done = true; obs.disconnect();
        painted().then(() => resolve([performance.now() - t0, counter === null ? NaN : counter]));
      }
    };
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
    button.click();
  });
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(scenario: Path, consumers: int | None, port: int, cwd: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "marketsim.cli", "viz", str(scenario), "--port", str(port)]
    if consumers:
        cmd += ["--consumers", str(consumers)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 600
    while "serving" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"viz server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(url: str, steps: int, warmup: int, pause: float) -> tuple[list[float], list[float], int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url)
        page.locator("#marketsim-share-chart").wait_for(timeout=600_000)
        n = int(page.locator("#marketsim-week").inner_text().split("of")[1].split()[0])
        if warmup + steps > n:
            raise SystemExit(f"the scenario has {n} steps; --warmup + --steps must not exceed that")
        chart, counter = [], []
        for k in range(1, warmup + steps + 1):
            ms_chart, ms_counter = page.evaluate(MEASURE_JS, k)
            if k > warmup:
                chart.append(ms_chart)
                counter.append(ms_counter)
            time.sleep(pause)
        consumers = page.locator("h3", has_text="consumers and their social ties").inner_text()
        browser.close()
    return chart, counter, int(consumers.split(" of ")[1].split()[0].replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenario", type=Path, default=ROOT / "src" / "marketsim" / "scenarios" / "battle_lines_2013.yaml"
    )
    ap.add_argument("--consumers", type=int, help="override consumers.count (default: the scenario's)")
    ap.add_argument("--steps", type=int, default=20, help="measured steps (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (default 3)")
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between steps (default 0.2)")
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="viz_latency_") as tmp:
        # the calibration cache of the repository's results/ is reused when it exists
        cwd = ROOT if (ROOT / "results").is_dir() else Path(tmp)
        proc = start_server(args.scenario.resolve(), args.consumers, port, cwd, Path(tmp) / "server.log")
        try:
            chart, counter, n = measure(f"http://127.0.0.1:{port}/", args.steps, args.warmup, args.pause)
        finally:
            stop_server(proc)

    def row(name, xs):
        xs = sorted(xs)
        p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
        return f"| {name:<38} | {statistics.median(xs):7.1f} | {p90:7.1f} | {max(xs):7.1f} |"

    print(
        f"\n{args.scenario.name}, {n:,} consumers, {len(chart)} steps (after {args.warmup} unmeasured), "
        f"headless Chromium, {os.cpu_count()} cores"
    )
    print("| click -> ...                           | median  |   p90   |   max   |   (ms)")
    print("|----------------------------------------|---------|---------|---------|")
    print(row("share chart repainted (the target)", chart))
    print(row("week counter updated", counter))
    med = statistics.median(chart)
    print(f"\ntarget: median under 150 ms: {'met' if med < 150 else 'NOT met'} ({med:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
