"""Single-port serving (Hugging Face Spaces and other hosts that expose one port).

One FastAPI app on one port carries:

* ``/``                        the Gradio page (``gr.mount_gradio_app``);
* ``/viser/<token>/...``       HTTP of the viser server of the session whose viewer token is
                               ``<token>`` (viser's client is one static page), forwarded
                               with httpx;
* ``/viser/<token>`` (WS)      that server's WebSocket, relayed frame by frame in both
                               directions (the client derives its socket URL from its page
                               URL, so it connects here by itself).

Each browser session still has its own viser server, started when the page loads and stopped
when it unloads (``Explorer.open_session`` / ``close_session``); those servers bind 127.0.0.1 on
OS-assigned ports and are reachable only through this proxy. Tokens are random (an unguessable
capability per tab, unlike the Gradio session hash, which never leaves the page's API calls);
an unknown or closed token gets 404 (HTTP) or close code 4404 (WS).

    server = serve_single_port(app, host="127.0.0.1", port=7860)   # returns once listening
    server.url; server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Module level: FastAPI reads the handlers' annotations to inject the request / websocket.
from fastapi import Request, WebSocket

__all__ = ["TOKEN_RE", "VISER_PREFIX", "ProxyServer", "add_viser_proxy", "run_uvicorn", "serve_app",
           "serve_single_port", "viewer_path"]

log = logging.getLogger("tango3d.app")

VISER_PREFIX = "viser"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Response headers worth passing on from viser's file server (the rest are hop-by-hop or recomputed).
PASS_HEADERS = ("content-type", "content-encoding", "cache-control", "last-modified", "etag")
CLOSED_MESSAGE = "This 3D viewer has closed (the tab's session ended); reload the page."

Resolver = Callable[[str], "int | None"]


def viewer_path(token: str) -> str:
    """The iframe's URL for ``token``, relative to the page (so it also works under a path prefix)."""
    return f"{VISER_PREFIX}/{token}/"


def _port(resolve: Resolver, token: str) -> int | None:
    if not TOKEN_RE.match(token):
        return None
    try:
        return resolve(token)
    except Exception:  # a broken resolver must not take the route down
        log.exception("viewer token lookup failed")
        return None


def add_viser_proxy(app: Any, resolve: Resolver, *, upstream_host: str = "127.0.0.1",
                    timeout_s: float = 30.0) -> None:
    """Add the ``/viser/<token>`` HTTP and WebSocket routes to the FastAPI ``app``.

    resolve  token -> local port of that session's viser server, or None when there is none
    """
    import httpx
    import websockets
    from fastapi.responses import PlainTextResponse, RedirectResponse, Response
    from websockets.asyncio.client import connect

    clients: dict[int, httpx.AsyncClient] = {}

    def client() -> httpx.AsyncClient:
        # One pooled client per event loop (uvicorn runs one loop; tests may run others).
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in clients:
            clients[loop_id] = httpx.AsyncClient(timeout=timeout_s)
        return clients[loop_id]

    @app.get(f"/{VISER_PREFIX}/{{token}}", include_in_schema=False)
    async def viser_root(token: str) -> Response:
        # Relative, so it stays right behind a reverse proxy's path prefix.
        return RedirectResponse(f"{token}/", status_code=307)

    @app.api_route(f"/{VISER_PREFIX}/{{token}}/{{path:path}}", methods=["GET", "HEAD"], include_in_schema=False)
    async def viser_http(token: str, path: str, request: Request) -> Response:
        port = _port(resolve, token)
        if port is None:
            return PlainTextResponse(CLOSED_MESSAGE, status_code=404)
        url = f"http://{upstream_host}:{port}/{path}"
        headers = {"accept-encoding": request.headers.get("accept-encoding", "identity")}
        try:
            # Always GET upstream: viser's file server (websockets' HTTP handler) knows no HEAD.
            req = client().build_request("GET", url, headers=headers, params=request.query_params)
            upstream = await client().send(req, stream=True)
            try:
                body = b"".join([chunk async for chunk in upstream.aiter_raw()])  # still encoded: passed as is
            finally:
                await upstream.aclose()
        except httpx.HTTPError:
            return PlainTextResponse(CLOSED_MESSAGE, status_code=502)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() in PASS_HEADERS}
        if request.method == "HEAD":
            kept["content-length"] = str(len(body))
            return Response(b"", status_code=upstream.status_code, headers=kept)
        return Response(body, status_code=upstream.status_code, headers=kept)

    async def viser_ws(websocket: WebSocket, token: str) -> None:
        port = _port(resolve, token)
        if port is None:
            await websocket.close(code=4404, reason="viewer closed")
            return
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        try:
            upstream = await connect(f"ws://{upstream_host}:{port}/",
                                     subprotocols=offered or None,  # type: ignore[arg-type]
                                     max_size=None, compression=None, open_timeout=timeout_s, ping_interval=None)
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
            await websocket.close(code=1011, reason="viewer unavailable")
            return
        await websocket.accept(subprotocol=upstream.subprotocol)

        async def downstream() -> None:
            async for message in upstream:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)

        async def upstream_pump() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                elif message.get("text") is not None:
                    await upstream.send(message["text"])

        tasks = [asyncio.create_task(downstream()), asyncio.create_task(upstream_pump())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            for t in done:
                exc = t.exception()
                if exc is not None and not isinstance(exc, (websockets.exceptions.ConnectionClosed, RuntimeError)):
                    log.debug("viser relay ended: %r", exc)
        finally:
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await websocket.close()

    app.add_api_websocket_route(f"/{VISER_PREFIX}/{{token}}", viser_ws)
    app.add_api_websocket_route(f"/{VISER_PREFIX}/{{token}}/", viser_ws)


@dataclass
class ProxyServer:
    """A uvicorn server running on a thread; ``close()`` stops it."""

    url: str
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def serve_single_port(app: Any, *, host: str = "127.0.0.1", port: int | None = None, quiet: bool = True,
                      startup_timeout: float = 60.0) -> ProxyServer:
    """Serve ``app`` (an :class:`app.main.App` built with ``single_port=True``) on one port.

    Returns once the server accepts connections. ``port=None`` picks a free port.
    """
    return serve_app(app, host=host, port=port, quiet=quiet, startup_timeout=startup_timeout, proxy=True)


def serve_app(app: Any, *, host: str = "127.0.0.1", port: int | None = None, quiet: bool = True,
              startup_timeout: float = 60.0, proxy: bool = False) -> ProxyServer:
    """Mount ``app.demo`` on a FastAPI app (with the ``/viser`` proxy routes when ``proxy``) and
    serve it with uvicorn on a thread. Used for both serving modes (Gradio's own ``launch`` is
    kept for ``--share``): it returns once the socket listens, without ``launch``'s start-up
    self-check, which gives up after 3 s on a busy machine."""
    import fastapi
    import gradio as gr

    from .ui import CSS

    explorer = app.explorer
    api = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    if proxy:
        add_viser_proxy(api, explorer.viewer_port)
    app.demo.queue(default_concurrency_limit=4)
    limit_mb = max(explorer.limits.max_mesh_bytes, explorer.limits.max_image_bytes) // 2**20
    gr.mount_gradio_app(api, app.demo, path="/", server_name=host, server_port=port or 0,
                        max_file_size=f"{limit_mb}mb", css=CSS, footer_links=[], show_error=False)
    # Gradio refuses event inputs that name files it did not receive ("not uploaded by a user")
    # only for Blocks that went through launch(); mount_gradio_app leaves the flag off, which
    # would let a hand-made request pass any server file as an upload.
    app.demo.has_launched = True
    return run_uvicorn(api, host=host, port=port, quiet=quiet, startup_timeout=startup_timeout)


def run_uvicorn(api: Any, *, host: str = "127.0.0.1", port: int | None = None, quiet: bool = True,
                startup_timeout: float = 60.0) -> ProxyServer:
    """Run the ASGI app ``api`` with uvicorn on a daemon thread; returns once it listens."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port or 0))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(api, log_level="warning" if quiet else "info", ws_max_size=64 * 2**20,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tango3d-uvicorn", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > startup_timeout:
            raise RuntimeError(f"the single-port server did not start on {host}:{bound}")
        time.sleep(0.02)
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return ProxyServer(url=f"http://{shown}:{bound}/", host=host, port=bound, _server=server, _thread=thread)
