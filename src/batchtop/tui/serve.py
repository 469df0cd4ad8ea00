"""`batchtop serve`: the console in a browser, through textual-serve.

textual-serve runs one console process per browser session (the same `batchtop`
console, on the same data dir) and relays its screen over a websocket. What this
module adds is the part a console that can flush and cancel needs on a network:

- Exposure: it binds 127.0.0.1 unless told otherwise, and refuses any other address
  unless the console is read-only or a token is required (`check_exposure`).
- Read-only: the command each session runs carries `--read-only`, so the console
  itself refuses every action; the page is only a view of it.
- Token: every route (page, websocket, static files, downloads) wants the token, as
  `?token=` (the page then sets an HttpOnly cookie and drops it from the address bar),
  the cookie, or `Authorization: Bearer`. The token comes from an environment
  variable, never the command line, and is compared in constant time.
- Cross-site use of a local console: the websocket refuses an `Origin` other than the
  page's own, and on a loopback address without a token only loopback `Host` names
  are served, so a web page the operator visits cannot drive the console (nor reach
  it by DNS rebinding).
- The access log names method, path and status only: no query string (a token).

textual-serve and aiohttp are imported here only, and this module only by `serve`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import WSCloseCode, web
from aiohttp.abc import AbstractAccessLogger
from textual_serve.server import Server

from batchtop.display import clean
from batchtop.errors import BatchtopError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MIN_TOKEN_LENGTH = 16
COOKIE = "batchtop_session"
SHUTDOWN_GRACE = 5.0
"""Seconds the sessions get to quit (and give the engine lease back) on SIGINT/SIGTERM."""

log = logging.getLogger("batchtop.tui.serve")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ExposureRefused(BatchtopError):
    """Serving on a non-loopback address without read-only or a token: a usage error."""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def check_exposure(host: str, *, read_only: bool, token: str | None) -> None:
    """Refuse a console anyone on the network could drive."""
    if is_loopback(host) or read_only or token:
        return
    raise ExposureRefused(
        f"refusing to serve the console on {host}: anyone who can reach it could flush, resubmit and cancel."
        " Add --read-only (a view only) or --token-env VAR (the page asks for the token in $VAR),"
        f" or serve on {DEFAULT_HOST}"
    )


def read_token(env: dict[str, str], var: str) -> str:
    """The token from `$var`: present and long enough to guard a console that cancels batches."""
    token = env.get(var, "")
    if not token:
        raise BatchtopError(f"--token-env {var}: ${var} is not set or empty; put the token there")
    if len(token) < MIN_TOKEN_LENGTH:
        raise BatchtopError(
            f"--token-env {var}: the token in ${var} is {len(token)} characters; use at least {MIN_TOKEN_LENGTH}"
            " (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return token


def console_command(data_dir: Path, config: str | None, *, read_only: bool) -> str:
    """The shell command each browser session runs: this interpreter's batchtop console
    on the same data dir (and config), read-only when the server is."""
    argv = [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir)]
    if config:
        argv += ["--config", config]
    if read_only:
        argv.append("--read-only")
    return shlex.join(argv)


class _PathOnlyAccessLog(AbstractAccessLogger):
    """Method, path and status: never the query string, where a token may be."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %s", request.remote, request.method, clean(request.path, limit=200), response.status)


def _session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie is not the token itself."""
    return hmac.new(token.encode(), b"batchtop serve session", hashlib.sha256).hexdigest()


class ConsoleServer(Server):
    """textual-serve's Server with batchtop's guard in front of every route."""

    def __init__(self, command: str, host: str, port: int, *, token: str | None, read_only: bool) -> None:
        super().__init__(command, host=host, port=port, title="batchtop")
        self.token = token
        self.read_only = read_only
        self.loopback = is_loopback(host)
        self._sessions: set[web.WebSocketResponse] = set()
        self._services: set[Any] = set()
        """Every session's textual-serve AppService, to close its process at shutdown."""
        self.allowed_hosts: set[str] | None = None
        """On a loopback address, the Host names served (set once the port is bound)."""

    def bound(self, port: int) -> None:
        self.port = port
        # Without a token, a loopback console trusts whoever can reach it: only local
        # names, so that no other site's name (rebound to 127.0.0.1) is served. With a
        # token the cookie does that, and a reverse proxy may pass its own Host.
        if self.loopback and self.token is None:
            names = {"127.0.0.1", "localhost", "[::1]", self.host.lower()}
            self.allowed_hosts = {f"{n}:{port}" for n in names} | (names if port == 80 else set())

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.host.lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return web.Response(status=403, text="batchtop serve: unexpected Host header\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and urlsplit(origin).netloc.lower() != host:
            return web.Response(status=403, text="batchtop serve: cross-origin websocket refused\n")
        if self.token is not None:
            refused = self._check_token(request)
            if refused is not None:
                return refused
        response = await handler(request)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path == "/":
            response.headers["Cache-Control"] = "no-store"
        return response

    def _check_token(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request carries the token; else the response to send."""
        assert self.token is not None
        session = _session_value(self.token)
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return web.Response(status=401, text="batchtop serve: wrong token\n")
            if request.path == "/" and request.method == "GET":
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                target = "/" + (f"?{urlencode(rest)}" if rest else "")
                response = web.HTTPSeeOther(target)
                response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/",
                                    secure=_scheme(request) == "https")
                return response
            return None
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), self.token.encode()):
            return None
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), session.encode()):
            return None
        return web.Response(
            status=401, text="batchtop serve: this console needs its token: open /?token=TOKEN once\n"
        )

    async def handle_index(self, request: web.Request) -> web.Response:  # type: ignore[override, unused-ignore]  # textual-serve releases differ
        """The page, with its websocket and static URLs on the address the browser used
        (textual-serve builds them from the bind address: 0.0.0.0 would not work)."""
        scheme = _scheme(request)
        base = f"{scheme}://{request.host}"
        router = request.app.router
        ws_scheme = "wss" if scheme == "https" else "ws"
        context: dict[str, Any] = {
            "font_size": _to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{ws_scheme}://{request.host}{router['websocket'].url_for()}",
            "config": {"static": {"url": f"{base}{router['static'].url_for(filename='/')}".rstrip("/") + "/"}},
            "application": {"name": "batchtop" + (" (read-only)" if self.read_only else "")},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def on_startup(self, app: web.Application) -> None:
        """Quiet start: the URL is printed once the port is bound (`serve`)."""

    async def _process_messages(self, websocket: web.WebSocketResponse, app_service: Any) -> None:
        """Each session's message loop, with its websocket kept so shutdown can close it."""
        self._sessions.add(websocket)
        self._services.add(app_service)
        try:
            await super()._process_messages(websocket, app_service)
        finally:
            self._sessions.discard(websocket)

    async def close_processes(self) -> None:
        """Wait (briefly) for every session's console to exit and close its pipes while
        the loop still runs: left to the garbage collector after the loop closed, they
        printed "Event loop is closed" tracebacks on the way out."""
        for service in list(self._services):
            process = getattr(service, "_process", None)
            if process is None:
                continue
            try:
                await asyncio.wait_for(process.wait(), timeout=SHUTDOWN_GRACE)
            except (TimeoutError, ProcessLookupError):
                pass
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
        self._services.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every session's websocket: each console then gets textual-serve's quit
        (so an engine in it gives the lease back) before the server stops."""
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"batchtop serve is stopping") for ws in list(self._sessions)),
            return_exceptions=True,
        )


def _scheme(request: web.Request) -> str:
    """The scheme the browser used: https behind a TLS-terminating reverse proxy that
    says so (X-Forwarded-Proto), so the page's websocket URL is wss:// and not blocked."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return "https" if request.secure or forwarded == "https" else "http"


def _to_int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


async def _run(server: ConsoleServer, say: Callable[[str], None], stop: asyncio.Event) -> None:
    app = await server._make_app()
    runner = web.AppRunner(app, access_log_class=_PathOnlyAccessLog, access_log=log, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        site = web.TCPSite(runner, server.host, server.port)
        try:
            await site.start()
        except OSError as exc:
            raise BatchtopError(f"cannot listen on {server.host} port {server.port}: {exc.strerror or exc}") from None
        port = int(runner.addresses[0][1])
        server.bound(port)
        shown = f"[{server.host}]" if ":" in server.host else server.host
        mode = "read-only" if server.read_only else "actions enabled"
        guard = "token required" if server.token else "no token"
        say(f"batchtop serve: http://{shown}:{port}/ ({mode}, {guard}); Ctrl-C stops")
        await stop.wait()
    finally:
        await runner.cleanup()
        await server.close_processes()


def serve(
    command: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    read_only: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the console until SIGINT or SIGTERM; each browser session runs `command`."""
    check_exposure(host, read_only=read_only, token=token)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = ConsoleServer(command, host, port, token=token, read_only=read_only)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(_run(server, say, stop))
    finally:
        loop.close()
