"""``marketsim viz``: fit first (one line if that fails), then serve the live page (:mod:`marketsim.viz.page`) from a
child process (:mod:`marketsim.viz.server`) until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

from marketsim.errors import UserError
from marketsim.mesa_model.live import fitted_alpha
from marketsim.report.progress import bar
from marketsim.scenario.core import Scenario, load_scenario
from marketsim.viz.page import one_line
from marketsim.viz.server import CDN_PATH, check_port, die_with_parent, loopback_only, wait_until_listening


def _prefit(sc: Scenario, path: str) -> None:
    """Fit the attractiveness before serving (a progress bar while it runs; none when cached), so the page's
    first load finds it in the cache and a fit that fails is one line here."""
    import contextlib

    with contextlib.ExitStack() as stack:
        update = None

        def on_iter(it: int, worst: float) -> None:
            nonlocal update
            if update is None:
                update = stack.enter_context(bar(f"fitting {sc.name}", None, "it"))
            update(completed=it)

        try:
            fitted_alpha(sc, on_iter=on_iter)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{path}: cannot fit the attractiveness: {one_line(e)}") from None


def cmd_viz(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    sc = load_scenario(args.scenario)  # validate before starting anything
    if args.consumers:
        sc = sc.with_overrides(consumers=args.consumers)
    os.environ["MARKETSIM_VIZ_RESULTS"] = str(Path(args.results).resolve())  # here and in the page server
    _prefit(sc, args.scenario)
    print(f"marketsim viz: starting the page server for {sc.name} ...", file=sys.stderr, flush=True)
    warn = os.environ.get("PYTHONWARNINGS")
    token = None if loopback_only(args.host) else secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "MARKETSIM_VIZ_SCENARIO": str(Path(args.scenario).resolve()),
        "SOLARA_APP": "marketsim.viz.page",
        "SOLARA_MODE": "production",
        "SOLARA_THEME_LOADER": "plain",  # no Solara banner
        "MARKETSIM_VIZ_MAX_SESSIONS": str(args.max_sessions),
        # no usage telemetry (Solara's mixpanel) from a strategist's machine
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
        # Solara's asset proxy fetches an asset it does not have from a public CDN: off. The page's assets
        # come from the solara-assets package's files, served by PageGuard at the same address
        "SOLARA_ASSETS_PROXY": "False",
        "SOLARA_ASSETS_CDN": CDN_PATH,
        # Solara's default keeps a tab that vanished without closing (no unload beacon) for 24 hours
        "SOLARA_KERNEL_CULL_TIMEOUT": os.environ.get("SOLARA_KERNEL_CULL_TIMEOUT", "2m"),
        # Solara warns on every page load over plain http on an address other than "localhost" (its cookie
        # falls back to samesite=lax, which is right for a page served to this machine)
        "PYTHONWARNINGS": ",".join(filter(None, [warn, "ignore:Cookies with samesite=none require https:UserWarning"])),
    }
    env.pop("MARKETSIM_VIZ_TOKEN", None)
    if token is not None:
        env["MARKETSIM_VIZ_TOKEN"] = token
    if args.consumers:
        env["MARKETSIM_VIZ_CONSUMERS"] = str(args.consumers)
    # not `solara run`: that would also ask pypi.org for Solara's latest version, and cannot wrap the app
    cmd = [
        sys.executable,
        "-c",
        "import sys; from marketsim.viz.server import serve; serve(sys.argv[1], int(sys.argv[2]))",
        args.host,
        str(args.port),
    ]
    proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent())

    def stop(signum, frame):  # SIGTERM (a service manager, a test) stops the server like Ctrl-C does
        raise _Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        if not wait_until_listening(proc, args.host, args.port):
            rc = proc.poll()
            raise UserError(
                f"the page server did not start on {args.host}:{args.port}"
                + (f" (it exited with code {rc}; its messages are above)" if rc is not None else " in time")
            )
        if token is None:
            print(f"marketsim viz: serving {sc.name} at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
        else:
            wild = args.host in ("0.0.0.0", "::", "")
            host = socket.gethostname() if wild else args.host
            host = f"[{host}]" if ":" in host else host
            print(
                f"marketsim viz: serving {sc.name} at http://{host}:{args.port}/?token={token} (Ctrl-C stops); "
                f"the page is reachable from the network (--host {args.host}): anyone who can reach this machine "
                f"and has this address, token included, can use it"
                + (f"; on this machine: http://127.0.0.1:{args.port}/?token={token}" if wild else ""),
                flush=True,
            )
        rc = proc.wait()
        if rc:
            raise UserError(f"the page server stopped with exit code {rc} (its messages are above)")
        return 0
    except KeyboardInterrupt:
        print("marketsim viz: stopped", file=sys.stderr)
        return 130
    except _Terminated:
        return 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class _Terminated(Exception):
    """SIGTERM arrived."""
