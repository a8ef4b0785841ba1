"""The page server that ``marketsim viz`` starts in a child process: Solara's app behind :class:`PageGuard` (token,
local assets, status) on uvicorn, and the checks made before it starts (port free, loopback or not).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from marketsim.errors import UserError
from marketsim.viz.page import status


def check_port(host: str, port: int) -> None:
    """Refuse, before anything starts, a port out of range or one already in use on ``host``."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: out of range; allowed: 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: cannot be resolved ({e.strerror}); e.g. 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket (uvicorn)
        try:
            s.bind(addr)
        except OSError as e:
            raise UserError(
                f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); choose another --port"
            ) from None


def loopback_only(host: str) -> bool:
    """True when every address ``host`` stands for is this machine's loopback (127.0.0.1, ::1, localhost)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


#: The page's assets that ``solara-assets`` installs (Solara's CDN cache), served here and never fetched.
CDN_PATH = "/_solara/cdn"


#: What the page server reports about itself (JSON, see :func:`status`).
STATUS_PATH = "/_marketsim/status"


class PageGuard:
    """ASGI middleware around Solara's app, what ``marketsim viz`` serves.

    - With a ``token`` (a server reachable from the network): every request, web socket included, needs it,
      as ``?token=`` once (answered by a redirect to the same address without it, with a cookie holding it)
      or that cookie; anything else is refused with 403.
    - Solara's page assets under ``/_solara/cdn/`` come from ``cdn_dir`` (the ``solara-assets`` package's
      files) or are 404: Solara's asset proxy, which fetches a missing one from a public CDN, is off.
    - ``/_marketsim/status``: :func:`status` as JSON (sessions, their cap, models in memory).
    """

    def __init__(self, app, token: str | None, cdn_dir: Path, port: int):
        self.app, self.token, self.cdn_dir = app, token, Path(cdn_dir).resolve()
        self.cookie = f"marketsim-viz-token-{port}"  # cookies ignore the port: one per server

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        from starlette.requests import HTTPConnection
        from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        if self.token is not None:
            via_query = self._ok(conn.query_params.get("token"))
            if not (via_query or self._ok(conn.cookies.get(self.cookie))):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
                return await PlainTextResponse(
                    "marketsim viz: this page needs its token: open the address `marketsim viz` printed "
                    "(it ends in ?token=...)\n",
                    status_code=403,
                )(scope, receive, send)
            if via_query and scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
                from urllib.parse import urlencode

                rest = urlencode([(k, v) for k, v in conn.query_params.multi_items() if k != "token"])
                resp = RedirectResponse(conn.url.path + (f"?{rest}" if rest else ""), status_code=303)
                resp.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
                return await resp(scope, receive, send)
        path = scope["path"]
        if scope["type"] == "http" and path == STATUS_PATH:
            return await Response(json.dumps(status()), media_type="application/json")(scope, receive, send)
        if scope["type"] == "http" and path.startswith(CDN_PATH + "/"):
            local = self._asset(path[len(CDN_PATH) + 1 :])
            if local is None:
                return await PlainTextResponse("not among the page's assets\n", status_code=404)(scope, receive, send)
            return await FileResponse(local)(scope, receive, send)
        return await self.app(scope, receive, send)

    def _asset(self, rel: str) -> Path | None:
        """The local file for an asset path (a bare package name means its __main.js, as Solara stores it)."""
        from urllib.parse import unquote

        rel = unquote(rel)
        if "/" not in rel.strip("/"):
            rel = rel.strip("/") + "/__main.js"
        p = (self.cdn_dir / rel).resolve()
        return p if self.cdn_dir in p.parents and p.is_file() else None


def serve(host: str, port: int) -> None:
    """The page server (run by ``marketsim viz`` in a child process): Solara's app behind :class:`PageGuard`,
    on uvicorn. Solara's settings come from the environment ``cmd_viz`` gives it; the token from
    $MARKETSIM_VIZ_TOKEN (an environment variable, not an argument that any user's ``ps`` shows)."""
    import solara.server.settings
    import solara.server.starlette
    import uvicorn

    app = PageGuard(
        solara.server.starlette.app,
        os.environ.pop("MARKETSIM_VIZ_TOKEN", None) or None,
        solara.server.settings.assets.proxy_cache_dir,
        port,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when this process dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec():
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def wait_until_listening(proc: subprocess.Popen, host: str, port: int, timeout: float = 180.0) -> bool:
    """True once the server accepts connections; False if it exited first or did not start in time."""
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection((probe, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
